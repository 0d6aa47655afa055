#!/usr/bin/env bash
# Benchmark zstd against gzip layers on the heavy GPU set (issue 20), in one run:
#   1. bake time, wheels cached, fragments and layers cold: raypack gzip, raypack zstd, and
#      `buildah bud` of the same install (COPY the same wheels, RUN pip install --no-index
#      --no-deps, commit), all on the stand-in base and written out locally (an OCI layout /
#      buildah's storage; no push on either side); peak RSS of each raypack bake;
#   2. what a node pays: decompressing and unpacking the layers raypack added, with
#      independent tools (`gzip -dc | tar -x`, `zstd -dc | tar -x`), gzip vs zstd.
# The heavy set is bench/data/heavy-requirements.txt (torch 2.9 with nvidia-cublas and
# nvidia-cudnn, pyarrow, scipy): about 2 GiB of wheels, downloaded once into the bench cache.
# Needs the harness servers: eval "$(scripts/services start)" first.
#   bench/zstd.sh [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
runs=${1:-1}
: "${RAYPACK_TEST_BASE:?run: eval \"\$(scripts/services start)\"}"
: "${RAYPACK_TEST_BASE_LAYOUT:?run: eval \"\$(scripts/services start)\"}"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/raypack
cache=${RAYPACK_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raypack-bench}
mkdir -p "$cache"
export RAYPACK_CACHE_DIR=$cache/raypack
# buildah names an oci: base after its path: lowercase, no dots.
work=/tmp/raypack-zstd-bench-$$
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
ln -s "$RAYPACK_TEST_BASE_LAYOUT" "$work/base"
req=$here/data/heavy-requirements.txt
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

setup() {  # setup DIR CODEC
  rm -rf "$1"; mkdir -p "$1"
  (cd "$repo/examples/hello" && tar --exclude=.raypack -cf - .) | tar -xf - -C "$1"
  sed -i "s|image = \"rayproject/ray:2.60.0-py311-cpu\"|image = \"$RAYPACK_TEST_BASE\"\n\n[image]\ncompression = \"$2\"\ncompile_bytecode = false|" "$1/raypack.toml"
  cp "$req" "$1/requirements.txt"
}

# Download the wheels once (and pull the base).
setup "$work/warm" gzip
"$bin" -q -C "$work/warm" bake --oci-layout "$work/warm/oci" >/dev/null
wheels_mib=$(du -sm --apparent-size "$RAYPACK_CACHE_DIR/blobs" | cut -f1)

bake_once() {  # bake_once CODEC RUN: "seconds peak-KiB"
  local d=$work/$1-$2 s e rss
  setup "$d" "$1"
  rm -rf "$RAYPACK_CACHE_DIR/fragments"
  find "$RAYPACK_CACHE_DIR/blobs" -name '*.deplayer.json' -delete 2>/dev/null || true
  s=$(now)
  rss=$( { /usr/bin/time -f '%M' "$bin" -q -C "$d" bake --oci-layout "$d/oci" >/dev/null; } 2>&1 | tail -1)
  e=$(now)
  echo "$(echo "$e - $s" | bc -l) $rss"
}

# The layers raypack added (all but the base's), unpacked with independent tools.
unpack_added() {  # unpack_added LAYOUT DECOMPRESSOR: seconds
  local layout=$1 tool=$2 m out s e
  m=$(python3 -c 'import json,sys; i=json.load(open(sys.argv[1]+"/index.json")); print(i["manifests"][0]["digest"].split(":")[1])' "$layout")
  out=$work/unpacked
  rm -rf "$out"; mkdir -p "$out"
  s=$(now)
  for l in $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/blobs/sha256/"+sys.argv[2])); print(" ".join(x["digest"].split(":")[1] for x in m["layers"][1:]))' "$layout" "$m"); do
    "$tool" -dc "$layout/blobs/sha256/$l" | tar -x -C "$out"
  done
  e=$(now)
  echo "$e - $s" | bc -l
}

gz_t=(); zs_t=(); bud_t=(); gz_rss=(); zs_rss=(); gz_unpack=(); zs_unpack=()
for i in $(seq "$runs"); do
  read -r t r < <(bake_once gzip "$i"); gz_t+=("$t"); gz_rss+=("$r")
  read -r t r < <(bake_once zstd "$i"); zs_t+=("$t"); zs_rss+=("$r")
  sync
  gz_unpack+=("$(unpack_added "$work/gzip-$i/oci" gzip)")
  zs_unpack+=("$(unpack_added "$work/zstd-$i/oci" zstd)")
  # buildah: the same wheels, installed by the base's pip, committed.
  b=$work/bud$i
  mkdir -p "$b/wheels"
    # The blob cache names wheels by digest: copy them under their real names.
    python3 - "$req" "$RAYPACK_CACHE_DIR/blobs" "$b/wheels" <<'PY'
import hashlib, os, re, shutil, sys, zipfile
req, blobs, out = sys.argv[1:]
want = {}
for line in open(req):
    for h in re.findall(r"sha256:([0-9a-f]{64})", line):
        want[h] = True
for root, _, files in os.walk(blobs):
    for f in files:
        p = os.path.join(root, f)
        if f in want or f.split(".")[0] in want:
            try:
                z = zipfile.ZipFile(p)
            except zipfile.BadZipFile:
                continue
            wheel = [n for n in z.namelist() if n.endswith(".dist-info/WHEEL")]
            if not wheel:
                continue
            di = wheel[0].split("/")[0][: -len(".dist-info")]
            tag = [l.split(": ", 1)[1].strip() for l in z.read(wheel[0]).decode().splitlines() if l.startswith("Tag: ")][0]
            shutil.copy(p, os.path.join(out, f"{di}-{tag}.whl"))
PY
  printf 'FROM oci:%s:2.60.0-py311-cpu\nCOPY wheels /tmp/wheels\nRUN pip install --no-index --no-deps --no-compile /tmp/wheels/*.whl\n' "$work/base" >"$b/Containerfile"
  st=$work/buildah$i
  s=$(now)
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root buildah --root "$st/root" --runroot "$st/run" \
    --storage-driver vfs bud --quiet --isolation chroot -f "$b/Containerfile" -t "localhost/heavy:$i" "$b" >/dev/null
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root buildah --root "$st/root" --runroot "$st/run" \
    --storage-driver vfs push --quiet "localhost/heavy:$i" "oci:$work/bud-out$i:heavy" >/dev/null
  e=$(now)
  bud_t+=("$(echo "$e - $s" | bc -l)")
  rm -rf "$st" "$b" "$work/bud-out$i"
  echo "run $i: raypack gzip ${gz_t[-1]} s (peak ${gz_rss[-1]} KiB), zstd ${zs_t[-1]} s (peak ${zs_rss[-1]} KiB), buildah ${bud_t[-1]} s; unpack gzip ${gz_unpack[-1]} s, zstd ${zs_unpack[-1]} s" >&2
done
g=$(printf '%s\n' "${gz_t[@]}" | median); z=$(printf '%s\n' "${zs_t[@]}" | median); b=$(printf '%s\n' "${bud_t[@]}" | median)
gu=$(printf '%s\n' "${gz_unpack[@]}" | median); zu=$(printf '%s\n' "${zs_unpack[@]}" | median)
gs=$(du -sm "$work/gzip-1/oci" | cut -f1); zsz=$(du -sm "$work/zstd-1/oci" | cut -f1)
printf 'heavy set (%s MiB of wheels): bake, wheels cached: raypack gzip %.1f s (%.2f x buildah), raypack zstd %.1f s (%.2f x buildah), buildah bud %.1f s; peak RSS gzip %s MiB, zstd %s MiB\n' \
  "$wheels_mib" "$g" "$(echo "$g / $b" | bc -l)" "$z" "$(echo "$z / $b" | bc -l)" "$b" \
  "$(( $(printf '%s\n' "${gz_rss[@]}" | sort -n | tail -1) / 1024 ))" "$(( $(printf '%s\n' "${zs_rss[@]}" | sort -n | tail -1) / 1024 ))"
printf 'what a node pays for the added layers: gzip -dc | tar -x %.1f s, zstd -dc | tar -x %.1f s (zstd %.2f x faster); layouts incl. base: gzip %s MiB, zstd %s MiB\n' \
  "$gu" "$zu" "$(echo "$gu / $zu" | bc -l)" "$gs" "$zsz"
