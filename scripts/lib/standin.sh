# shellcheck shell=bash
#
# A stand-in for the Docker Hub image rayproject/ray:2.60.0-py311-cpu (Docker
# Hub is not reachable from the test machines), built with independent tools
# (debootstrap, tar, umoci, skopeo), never with raypack itself. Like the real
# image: user 1000 (`ray`, group 100 = users), HOME and workdir /home/ray, a
# Python 3.11 environment with ray[default]==2.60.0 at /home/ray/anaconda3
# (a venv here, conda upstream) first on PATH, label io.ray.ray-version.
#
# Sourced by scripts/lib/services.sh. Recipe and gotchas:
# shared/notes/test-infrastructure.md §3 and "HTTPS and chroot gotchas".
#
#   standin_build           build the OCI image layout once; cached under
#                           $RAYPACK_TEST_CACHE/standin/<key>/layout, where
#                           <key> is the sha256 (16 hex) of this file and of
#                           the hashed lock it installs (scripts/locks/
#                           standin.txt): editing either rebuilds. Cold build ~2 min (network:
#                           deb.debian.org, PyPI); cache hit well under 1 s.
#   standin_push REGISTRY   copy it to REGISTRY/rayproject/ray:2.60.0-py311-cpu
#                           (plain HTTP, OCI media types kept)
#   standin_layout          print the layout directory for the current key
#   standin_build_arm64     the same image for linux/arm64, assembled without running
#                           arm64 code (below); cached as layout-arm64 beside it
#
# The layout's tag is $STANDIN_TAG (2.60.0-py311-cpu). standin_push also pushes the arm64
# image as $STANDIN_ARM_TAG (rayproject/ray publishes arm64 as separate `-aarch64` tags) and
# both as one image index, $STANDIN_MULTI_TAG (how multi-platform bases are published
# elsewhere), with curl: raypack never builds its own test bases.
#
# The arm64 stand-in: `debootstrap --foreign --arch arm64` downloads and unpacks the same
# Debian packages (every .deb is then extracted with dpkg-deb; no maintainer script runs),
# the venv is laid out by hand (as `python3 -m venv` does), the locked wheels are the aarch64
# builds of the same pins, installed by the host's pip (`--platform … --target`, same hashes),
# and the .pyc files are compiled by the host's CPython 3.11 (bytecode depends only on X.Y).
# Where qemu-aarch64-static exists, tests run its Python under emulation.

RAYPACK_TEST_CACHE=${RAYPACK_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raypack-test}

STANDIN_SCRIPT=$(realpath "${BASH_SOURCE[0]}")
# The Python environment, exactly: ray[default]==2.60.0 and every dependency, hashed
# (scripts/locks/compile). Tests read "what the base has" from this file.
STANDIN_LOCK=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../locks/standin.txt")
STANDIN_REPO=rayproject/ray
STANDIN_TAG=2.60.0-py311-cpu
STANDIN_ARM_TAG=2.60.0-py311-cpu-aarch64
STANDIN_MULTI_TAG=2.60.0-py311-cpu-multiarch
STANDIN_RAY_VERSION=2.60.0
STANDIN_SUITE=bookworm
STANDIN_MIRROR=http://deb.debian.org/debian
STANDIN_PATH=/home/ray/anaconda3/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Old keys kept besides the current one (another checkout may use them).
STANDIN_KEEP=1

standin_log() { printf '[standin] %s\n' "$*" >&2; }
standin_now() { printf '%s\n' "${EPOCHREALTIME:-$(date +%s.%N)}"; }
standin_elapsed() { awk -v a="$(standin_now)" -v b="$1" 'BEGIN { printf "%.1f\n", a - b }'; }

standin_key() { cat "$STANDIN_SCRIPT" "$STANDIN_LOCK" | sha256sum | cut -c1-16; }
standin_root() { printf '%s/standin\n' "$RAYPACK_TEST_CACHE"; }
standin_layout() {
  local key
  key=$(standin_key) || return 1
  printf '%s/%s/layout\n' "$(standin_root)" "$key"
}

# Run CMD in ROOTFS with a clean environment: the host's PIP_CERT,
# REQUESTS_CA_BUNDLE, PIP_FIND_LINKS, ... name host files and break pip there.
# Proxy settings (values, not paths) are passed on when set.
standin_cleanenv() {  # standin_cleanenv CMD...
  local v pass=()
  for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -n "${!v:-}" ] && pass+=("$v=${!v}")
  done
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "${pass[@]}" "$@"
}
standin_chroot() { standin_cleanenv chroot "$@"; }  # standin_chroot ROOTFS CMD...

standin_step() {  # standin_step LOG LABEL CMD...: run CMD (output to LOG), report its duration
  local log=$1 label=$2 t0 rc=0
  shift 2
  t0=$(standin_now)
  printf '\n==> %s: %s\n' "$label" "$*" >>"$log"
  "$@" >>"$log" 2>&1 </dev/null || rc=$?
  if [ "$rc" -eq 0 ]; then
    standin_log "$(printf '%-10s %6ss' "$label" "$(standin_elapsed "$t0")")"
  else
    standin_log "$(printf '%-10s %6ss FAILED (exit %s); last lines of %s:' \
      "$label" "$(standin_elapsed "$t0")" "$rc" "$log")"
    tail -n 30 "$log" >&2
  fi
  return "$rc"
}

standin_mounts_under() { findmnt -rn -o TARGET 2>/dev/null | awk -v d="$1/" 'index($0, d) == 1'; }

# Remove a build tree, unmounting whatever an interrupted debootstrap left
# mounted inside it (proc, sys); refuse when something stays mounted.
standin_rm_tree() {  # standin_rm_tree DIR
  local dir=$1 m
  [ -e "$dir" ] || return 0
  dir=$(realpath "$dir")
  for m in $(standin_mounts_under "$dir" | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  if [ -n "$(standin_mounts_under "$dir")" ]; then
    standin_log "not removing $dir: something is still mounted under it"
    return 1
  fi
  rm -rf "$dir"
}

# standin_pip_install ROOTFS: the locked environment into the venv (exactly the lock's
# files: --require-hashes --no-deps), host CA for this step only.
standin_pip_install() {
  local rootfs=$1 ca=${SSL_CERT_FILE:-} rc=0
  [ -n "$ca" ] && [ -f "$ca" ] || ca=/etc/ssl/certs/ca-certificates.crt
  # Debian's own bundle in the rootfs lacks the egress proxy's CA.
  cp "$ca" "$rootfs/tmp/host-ca.crt" && cp "$STANDIN_LOCK" "$rootfs/tmp/standin.txt" || return 1
  standin_chroot "$rootfs" /home/ray/anaconda3/bin/pip install --no-cache-dir \
    --disable-pip-version-check --progress-bar off --cert /tmp/host-ca.crt \
    --require-hashes --no-deps -r /tmp/standin.txt || rc=$?
  rm -f "$rootfs/tmp/host-ca.crt" "$rootfs/tmp/standin.txt"
  return "$rc"
}

standin_clean_rootfs() {  # standin_clean_rootfs ROOTFS
  local r=$1
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/archives/partial/* \
    "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* "$r"/var/cache/debconf/*-old \
    "$r"/root/.cache || return 1
  find "$r/tmp" "$r/var/tmp" -mindepth 1 -delete || return 1
  # debootstrap copies the host's resolver and hostname; containers get them at run time.
  : >"$r/etc/resolv.conf" && echo localhost >"$r/etc/hostname" \
    && chmod 644 "$r/etc/resolv.conf" "$r/etc/hostname"
}

# tar --mtime=@1 makes every timestamp-based .pyc stale: each Python process
# would recompile the stdlib and ray in memory (root-owned files can't be
# rewritten by user 1000); a ray.init() took 13 s instead of 5.5 s. Hash-based
# pycs don't depend on mtimes. (No -j: the chroot has no /dev/shm for SemLock.)
standin_compile() {  # standin_compile ROOTFS
  standin_chroot "$1" python3 -m compileall -q -f --invalidation-mode checked-hash \
    /usr/lib/python3.11 /usr/lib/python3/dist-packages \
    /home/ray/anaconda3/lib/python3.11/site-packages
}

standin_tar() {  # standin_tar ROOTFS OUT: the single layer, reproducible metadata
  # dev, proc and sys stay as empty directories (the runtime mounts them).
  tar -C "$1" --numeric-owner --sort=name --mtime=@1 \
    --anchored --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$2" .
}

standin_image() {  # standin_image LAYOUT LAYER_TAR [ARCH]
  local layout=$1 image="$1:$STANDIN_TAG" arch=${3:-amd64}
  umoci init --layout "$layout" \
    && umoci new --image "$image" \
    && umoci raw add-layer --image "$image" "$2" \
    && umoci config --image "$image" \
      --architecture "$arch" --os linux \
      --config.user 1000 \
      --config.workingdir /home/ray \
      --config.env "PATH=$STANDIN_PATH" \
      --config.env HOME=/home/ray \
      --config.label "io.ray.ray-version=$STANDIN_RAY_VERSION" \
    && umoci gc --layout "$layout" \
    && chmod -R go+rX "$layout"  # umoci writes blobs 0600
}

standin_prune() {  # standin_prune ROOT KEY: drop all but the newest $STANDIN_KEEP other keys
  local root=$1 key=$2 d n=0
  # shellcheck disable=SC2045  # key names are hex
  for d in $(ls -1t "$root" 2>/dev/null); do
    [ "$d" = "$key" ] && continue
    [ -f "$root/$d/layout/index.json" ] || continue
    n=$((n + 1))
    [ "$n" -le "$STANDIN_KEEP" ] && continue
    standin_log "removing old stand-in $root/$d"
    rm -rf "${root:?}/$d" "$root/build-$d.log"
  done
}

standin_build_locked() {  # standin_build_locked ROOT KEY (holds the lock)
  local root=$1 key=$2 tmp rootfs log t0 d size
  # Leftovers of interrupted builds (nobody else builds while we hold the lock).
  for d in "$root"/.build.*; do
    [ -e "$d" ] || continue
    standin_rm_tree "$d" || return 1
  done
  tmp=$(mktemp -d "$root/.build.$key.XXXXXX") && chmod 755 "$tmp" || return 1
  # shellcheck disable=SC2064  # expand now
  trap "standin_rm_tree '$tmp'" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  rootfs="$tmp/rootfs"
  log="$root/build-$key.log"
  : >"$log"
  t0=$(standin_now)
  standin_log "building the $STANDIN_REPO:$STANDIN_TAG stand-in (key $key, log $log)"
  standin_step "$log" debootstrap \
      standin_cleanenv debootstrap --variant=minbase \
        --include=python3,python3-venv,ca-certificates \
        "$STANDIN_SUITE" "$rootfs" "$STANDIN_MIRROR" \
    && standin_step "$log" useradd \
      standin_chroot "$rootfs" useradd -m -u 1000 -g 100 -s /bin/bash ray \
    && standin_step "$log" venv \
      standin_chroot "$rootfs" python3 -m venv /home/ray/anaconda3 \
    && standin_step "$log" pip standin_pip_install "$rootfs" \
    && standin_step "$log" compileall standin_compile "$rootfs" \
    && standin_step "$log" chown \
      standin_chroot "$rootfs" chown -R 1000:100 /home/ray \
    && standin_step "$log" clean standin_clean_rootfs "$rootfs" \
    && standin_step "$log" tar standin_tar "$rootfs" "$tmp/layer.tar" \
    && standin_step "$log" umoci standin_image "$tmp/layout" "$tmp/layer.tar" \
    || return 1
  size=$(du -sh "$tmp/layout" | cut -f1)
  # The arm64 layout may already be in $root/$key (built separately).
  mkdir -p "$root/$key" && mv "$tmp/layout" "$root/$key/layout" || return 1
  standin_rm_tree "$tmp" || return 1
  trap - EXIT INT TERM
  standin_log "built $root/$key/layout ($size) in $(standin_elapsed "$t0")s"
  standin_prune "$root" "$key"
}

standin_build() {
  local root key
  root=$(standin_root)
  key=$(standin_key) || return 1
  if [ -f "$root/$key/layout/index.json" ]; then
    touch "$root/$key" 2>/dev/null || true  # most recently used, for standin_prune
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    standin_log "building the stand-in needs root (debootstrap, chroot); run services_install as root once"
    return 1
  fi
  mkdir -p "$root" || return 1
  (
    flock 8 || exit 1
    # Someone else may have built it while we waited for the lock.
    [ -f "$root/$key/layout/index.json" ] && exit 0
    standin_build_locked "$root" "$key"
  ) 8>"$root/.lock"
}

standin_push() {  # standin_push REGISTRY (host:port, plain HTTP)
  local layout
  layout=$(standin_layout) || return 1
  if [ ! -f "$layout/index.json" ]; then
    standin_log "no stand-in image at $layout (standin_build, run by services_install, builds it)"
    return 1
  fi
  # A local registry: keep any proxy settings away from skopeo.
  env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY \
    skopeo copy --quiet --dest-tls-verify=false \
    "oci:$layout:$STANDIN_TAG" "docker://$1/$STANDIN_REPO:$STANDIN_TAG" >&2 || return 1
  layout=$(standin_arm64_layout) || return 1
  if [ ! -f "$layout/index.json" ]; then
    standin_log "no arm64 stand-in image at $layout (standin_build_arm64 builds it)"
    return 1
  fi
  env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY \
    skopeo copy --quiet --dest-tls-verify=false \
    "oci:$layout:$STANDIN_TAG" "docker://$1/$STANDIN_REPO:$STANDIN_ARM_TAG" >&2 \
    && standin_push_index "$1"
}

# --- linux/arm64 -------------------------------------------------------------

standin_arm64_layout() {
  local key
  key=$(standin_key) || return 1
  printf '%s/%s/layout-arm64\n' "$(standin_root)" "$key"
}

standin_arm64_unpack() {  # standin_arm64_unpack ROOTFS: every downloaded package's files
  local r=$1 d
  for d in "$r"/var/cache/apt/archives/*.deb; do
    dpkg-deb -x "$d" "$r" || return 1
  done
  rm -rf "$r/debootstrap"
}

standin_arm64_user() {  # standin_arm64_user ROOTFS: what `useradd -m -u 1000 -g 100 ray` writes
  local r=$1 f
  # base-passwd's postinst would install these (no maintainer script ran).
  for f in passwd group; do
    [ -f "$r/etc/$f" ] || sed 's/^\([^:]*\):\*:/\1:x:/' "$r/usr/share/base-passwd/$f.master" \
      >"$r/etc/$f" || return 1
  done
  [ -f "$r/etc/shadow" ] || { cut -d: -f1 "$r/etc/passwd" | sed 's/$/:*:20000:0:99999:7:::/' >"$r/etc/shadow" \
    && chmod 640 "$r/etc/shadow"; } || return 1
  grep -q '^users:x:100:' "$r/etc/group" || return 1
  echo 'ray:x:1000:100::/home/ray:/bin/bash' >>"$r/etc/passwd" \
    && echo 'ray:!:20000:0:99999:7:::' >>"$r/etc/shadow" \
    && mkdir -p "$r/home/ray" && cp -a "$r/etc/skel/." "$r/home/ray/"
}

standin_arm64_venv() {  # standin_arm64_venv ROOTFS: the layout `python3 -m venv` makes
  local v=$1/home/ray/anaconda3 version
  version=$(sed -n 's/^Version: \(3\.11\.[0-9]*\).*/\1/p' "$1/var/lib/dpkg/status" 2>/dev/null | head -1)
  mkdir -p "$v/bin" "$v/include" "$v/lib/python3.11/site-packages" \
    && ln -s lib "$v/lib64" \
    && ln -s /usr/bin/python3 "$v/bin/python" \
    && ln -s python "$v/bin/python3" \
    && ln -s python "$v/bin/python3.11" \
    && printf 'home = /usr/bin\ninclude-system-site-packages = false\nversion = %s\nexecutable = /usr/bin/python3.11\ncommand = /usr/bin/python3 -m venv /home/ray/anaconda3\n' \
      "${version:-3.11.2}" >"$v/pyvenv.cfg"
}

# The aarch64 wheels of the same pins (the lock's hashes cover every platform's files), by the
# host's pip; console scripts get the venv's interpreter, as pip in the venv would write them.
standin_arm64_pip() {  # standin_arm64_pip ROOTFS
  local v=$1/home/ray/anaconda3 sp m platforms=() f
  sp=$v/lib/python3.11/site-packages
  for m in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${m}_aarch64"); done
  platforms+=(--platform manylinux2014_aarch64 --platform linux_aarch64)
  standin_cleanenv python3 -m pip install --no-cache-dir --disable-pip-version-check \
    --progress-bar off --root-user-action=ignore --target "$sp" "${platforms[@]}" \
    --python-version 3.11 --implementation cp --abi cp311 --only-binary=:all: \
    --require-hashes --no-deps -r "$STANDIN_LOCK" || return 1
  for f in "$sp"/bin/*; do
    [ -f "$f" ] || continue
    sed -i '1s|^#!.*python.*$|#!/home/ray/anaconda3/bin/python|' "$f" && mv "$f" "$v/bin/" || return 1
  done
  rmdir "$sp/bin"
}

standin_arm64_compile() {  # standin_arm64_compile ROOTFS: checked-hash pycs, paths as in the image
  local r=$1 d
  python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' || return 1
  for d in /usr/lib/python3.11 /usr/lib/python3/dist-packages \
    /home/ray/anaconda3/lib/python3.11/site-packages; do
    [ -d "$r$d" ] || continue
    standin_cleanenv python3 -m compileall -q -f --invalidation-mode checked-hash \
      -s "$r" -p / "$r$d" >/dev/null || return 1
  done
}

standin_arm64_build_locked() {  # standin_arm64_build_locked ROOT KEY (holds the lock)
  local root=$1 key=$2 tmp rootfs log t0 size
  tmp=$(mktemp -d "$root/.build-arm64.$key.XXXXXX") && chmod 755 "$tmp" || return 1
  # shellcheck disable=SC2064  # expand now
  trap "standin_rm_tree '$tmp'" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  rootfs="$tmp/rootfs"
  log="$root/build-arm64-$key.log"
  : >"$log"
  t0=$(standin_now)
  standin_log "building the linux/arm64 stand-in (key $key, log $log)"
  standin_step "$log" debootstrap \
      standin_cleanenv debootstrap --foreign --arch arm64 --variant=minbase \
        --include=python3,python3-venv,ca-certificates \
        "$STANDIN_SUITE" "$rootfs" "$STANDIN_MIRROR" \
    && standin_step "$log" unpack standin_arm64_unpack "$rootfs" \
    && standin_step "$log" useradd standin_arm64_user "$rootfs" \
    && standin_step "$log" venv standin_arm64_venv "$rootfs" \
    && standin_step "$log" pip standin_arm64_pip "$rootfs" \
    && standin_step "$log" compileall standin_arm64_compile "$rootfs" \
    && standin_step "$log" chown chown -R 1000:100 "$rootfs/home/ray" \
    && standin_step "$log" clean standin_clean_rootfs "$rootfs" \
    && standin_step "$log" tar standin_tar "$rootfs" "$tmp/layer.tar" \
    && standin_step "$log" umoci standin_image "$tmp/layout" "$tmp/layer.tar" arm64 \
    || return 1
  size=$(du -sh "$tmp/layout" | cut -f1)
  mkdir -p "$root/$key" && mv "$tmp/layout" "$root/$key/layout-arm64" || return 1
  standin_rm_tree "$tmp" || return 1
  trap - EXIT INT TERM
  standin_log "built $root/$key/layout-arm64 ($size) in $(standin_elapsed "$t0")s"
}

standin_build_arm64() {
  local root key
  root=$(standin_root)
  key=$(standin_key) || return 1
  [ -f "$root/$key/layout-arm64/index.json" ] && return 0
  mkdir -p "$root" || return 1
  (
    flock 8 || exit 1
    [ -f "$root/$key/layout-arm64/index.json" ] && exit 0
    standin_arm64_build_locked "$root" "$key"
  ) 8>"$root/.lock-arm64"
}

# The two platform manifests as one OCI image index under $STANDIN_MULTI_TAG (both already
# pushed): digests and sizes as the registry serves them, the index PUT with curl.
standin_push_index() {  # standin_push_index REGISTRY
  local reg=$1 amd arm index
  amd=$(standin_descriptor "$reg" "$STANDIN_TAG" amd64) \
    && arm=$(standin_descriptor "$reg" "$STANDIN_ARM_TAG" arm64) || return 1
  index=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s,%s]}' "$amd" "$arm")
  curl -sSf --noproxy '*' -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
    --data-binary "$index" "http://$reg/v2/$STANDIN_REPO/manifests/$STANDIN_MULTI_TAG" >/dev/null
}

standin_descriptor() {  # standin_descriptor REGISTRY TAG ARCH: the manifest's index entry
  local tmp digest size
  tmp=$(mktemp) || return 1
  # To a file: $(…) would strip a trailing newline, and the digest is of the exact bytes.
  env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY \
    skopeo inspect --raw --tls-verify=false "docker://$1/$STANDIN_REPO:$2" >"$tmp" \
    || { rm -f "$tmp"; return 1; }
  digest=sha256:$(sha256sum "$tmp" | cut -d' ' -f1)
  size=$(wc -c <"$tmp")
  rm -f "$tmp"
  printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"%s","os":"linux"}}' \
    "$digest" "$size" "$3"
}
