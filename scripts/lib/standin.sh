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
#
# The layout's tag is $STANDIN_TAG (2.60.0-py311-cpu).

RAYPACK_TEST_CACHE=${RAYPACK_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raypack-test}

STANDIN_SCRIPT=$(realpath "${BASH_SOURCE[0]}")
# The Python environment, exactly: ray[default]==2.60.0 and every dependency, hashed
# (scripts/locks/compile). Tests read "what the base has" from this file.
STANDIN_LOCK=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../locks/standin.txt")
STANDIN_REPO=rayproject/ray
STANDIN_TAG=2.60.0-py311-cpu
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

standin_image() {  # standin_image LAYOUT LAYER_TAR
  local layout=$1 image="$1:$STANDIN_TAG"
  umoci init --layout "$layout" \
    && umoci new --image "$image" \
    && umoci raw add-layer --image "$image" "$2" \
    && umoci config --image "$image" \
      --architecture amd64 --os linux \
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
  standin_rm_tree "$rootfs" && rm -f "$tmp/layer.tar" || return 1
  mv "$tmp" "$root/$key" || return 1
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
    "oci:$layout:$STANDIN_TAG" "docker://$1/$STANDIN_REPO:$STANDIN_TAG" >&2
}
