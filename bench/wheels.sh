#!/usr/bin/env bash
# Benchmark wheel installation in one run, warm caches on both sides:
#   1. the acceptance set (tests/data/acceptance/requirements.txt: requests, pyyaml, numpy,
#      pydantic, click, jaraco.*, ruff + deps) installed by
#        uv pip install --no-deps --target DIR --python-platform x86_64-manylinux_2_36 --python-version 3.11
#      vs raypack install -r … --target DIR (a directory, like uv) and --layer FILE (a gzip layer,
#      assembled from the per-wheel fragments cached by the warm-up run, as uv installs from the
#      unpacked wheels its warm-up left in its cache); also a layer with the fragment cache
#      emptied first (each wheel installed and compressed again), reported on its own;
#   2. with --heavy: peak RSS of raypack building one gzip layer from ~2 GiB of wheels
#      (bench/data/heavy-requirements.txt: torch, nvidia-cudnn, nvidia-cublas, pyarrow, scipy).
#   bench/wheels.sh [RUNS] [--heavy]
# Caches live in ${RAYPACK_BENCH_CACHE:-~/.cache/raypack-bench} (the first run warms them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
runs=${1:-5}
heavy=${2:-}
uv=${RAYPACK_TEST_UV:-${XDG_CACHE_HOME:-$HOME/.cache}/raypack-test/tools/bin/uv}
[ -x "$uv" ] || { echo "bench: no uv at $uv; run scripts/services install (or scripts/test)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/raypack
cache=${RAYPACK_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raypack-bench}
mkdir -p "$cache"
export UV_CACHE_DIR=$cache/uv RAYPACK_CACHE_DIR=$cache/raypack
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
req=$repo/tests/data/acceptance/requirements.txt
target=(--python-version 3.11 --manylinux 2_36)
uv_install() { env -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_FIND_LINKS "$uv" pip install -q --no-deps \
  --python-platform x86_64-manylinux_2_36 --python-version 3.11 --target "$1" -r "$2"; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { local s e; s=$(now); "$@" >/dev/null; e=$(now); echo "$e - $s" | bc -l; }

# Warm both caches.
uv_install "$work/warm-uv" "$req"
"$bin" -q install -r "$req" --target "$work/warm-rp" "${target[@]}"
"$bin" -q install -r "$req" --layer "$work/warm.tgz" "${target[@]}"
uv_t=(); dir_t=(); layer_t=(); cold_t=()
for i in $(seq "$runs"); do
  rm -rf "$work/uv" "$work/rp" "$work/layer.tgz"
  uv_t+=("$(timeit uv_install "$work/uv" "$req")")
  dir_t+=("$(timeit "$bin" -q install -r "$req" --target "$work/rp" "${target[@]}")")
  layer_t+=("$(timeit "$bin" -q install -r "$req" --layer "$work/layer.tgz" "${target[@]}")")
  cmp -s "$work/layer.tgz" "$work/warm.tgz" || { echo "bench: layer bytes differ between runs" >&2; exit 1; }
  rm -rf "$RAYPACK_CACHE_DIR/fragments"
  cold_t+=("$(timeit "$bin" -q install -r "$req" --layer "$work/layer.tgz" "${target[@]}")")
  echo "run $i: uv ${uv_t[-1]} s, raypack dir ${dir_t[-1]} s, raypack layer ${layer_t[-1]} s (fragments rebuilt: ${cold_t[-1]} s)" >&2
done
u=$(printf '%s\n' "${uv_t[@]}" | median); d=$(printf '%s\n' "${dir_t[@]}" | median); l=$(printf '%s\n' "${layer_t[@]}" | median)
c=$(printf '%s\n' "${cold_t[@]}" | median)
printf 'acceptance set (%s files installed, %s): median uv %.3f s | raypack dir %.3f s (ratio %.2f) | raypack gzip layer %.3f s (ratio %.2f) | layer with fragments rebuilt %.3f s (ratio %.2f)\n' \
  "$(find "$work/rp" -type f | wc -l)" "$(du -sh "$work/rp" | cut -f1)" "$u" "$d" "$(echo "$d / $u" | bc -l)" "$l" "$(echo "$l / $u" | bc -l)" "$c" "$(echo "$c / $u" | bc -l)"

if [ "$heavy" = --heavy ]; then
  hreq=$here/data/heavy-requirements.txt
  "$bin" -q install -r "$hreq" --target "$work/heavy-warm" "${target[@]}"  # download once
  rm -rf "$work/heavy-warm"
  wheels=$(du -sh --apparent-size "$cache/raypack/blobs" | cut -f1)
  rm -rf "$RAYPACK_CACHE_DIR/fragments"  # the whole build: every wheel installed and compressed
  out=$( { /usr/bin/time -f '%M %e' "$bin" -q install -r "$hreq" --layer "$work/heavy.tgz" "${target[@]}"; } 2>&1 | tail -1)
  printf 'heavy set (blob cache %s): layer %s in %s s, peak RSS %s MiB\n' "$wheels" \
    "$(du -sh "$work/heavy.tgz" | cut -f1)" "${out#* }" "$(( ${out%% *} / 1024 ))"
fi
