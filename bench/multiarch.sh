#!/usr/bin/env bash
# Benchmark a two-platform bake (issue 17) in one run: the acceptance set
# (tests/data/acceptance/requirements.txt) on the stand-in base, written as an OCI layout,
#   - bake for linux/amd64 alone, bake for linux/arm64 alone (the two bakes a team runs today),
#   - one bake for linux/amd64,linux/arm64 (one index),
# each twice per run: "wheels cached" (every wheel downloaded before, fragments and layers
# rebuilt: an empty fragment cache) and "warm" (everything cached, e.g. a code edit).
# Reported: medians, and the two-platform bake over one single-platform bake and over the sum
# of the two. Needs the harness servers: eval "$(scripts/services start)" first.
#   bench/multiarch.sh [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
runs=${1:-3}
: "${RAYPACK_TEST_BASE:?run: eval \"\$(scripts/services start)\"}"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/raypack
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
export RAYPACK_CACHE_DIR=$work/cache

setup() {  # setup DIR
  rm -rf "$1"; mkdir -p "$1"
  (cd "$repo/examples/hello" && tar --exclude=.raypack -cf - .) | tar -xf - -C "$1"
  sed -i "s|image = \"rayproject/ray:2.60.0-py311-cpu\"|image = \"$RAYPACK_TEST_BASE\"|" "$1/raypack.toml"
  cp "$repo/tests/data/acceptance/requirements.txt" "$1/requirements.txt"
}

bake() {  # bake DIR PLATFORMS: seconds
  local s e
  rm -rf "$1/.raypack/oci"
  s=$(now)
  "$bin" -q -C "$1" bake --platform "$2" --oci-layout "$1/.raypack/oci" >/dev/null
  e=$(now)
  echo "$e - $s" | bc -l
}

setup "$work/p"
# Download every wheel and pull both bases once.
bake "$work/p" linux/amd64,linux/arm64 >/dev/null
declare -A cold warm
for i in $(seq "$runs"); do
  for p in linux/amd64 linux/arm64 linux/amd64,linux/arm64; do
    rm -rf "$RAYPACK_CACHE_DIR/fragments"
    find "$RAYPACK_CACHE_DIR/blobs" -name '*.deplayer.json' -delete
    cold[$p]+="$(bake "$work/p" "$p") "
    warm[$p]+="$(bake "$work/p" "$p") "
  done
  echo "run $i done" >&2
done
report() {  # report NAME ARRAY-NAME
  local -n a=$2
  local amd arm both
  amd=$(printf '%s\n' ${a[linux/amd64]} | median)
  arm=$(printf '%s\n' ${a[linux/arm64]} | median)
  both=$(printf '%s\n' ${a[linux/amd64,linux/arm64]} | median)
  local larger=$amd
  [ "$(echo "$arm > $amd" | bc -l)" = 1 ] && larger=$arm
  printf '%s: amd64 %.2f s | arm64 %.2f s | both in one bake %.2f s = %.2f x one bake (the larger), %.2f x the two bakes\n' \
    "$1" "$amd" "$arm" "$both" "$(echo "$both / $larger" | bc -l)" "$(echo "$both / ($amd + $arm)" | bc -l)"
}
report "wheels cached, fragments rebuilt" cold
report "warm" warm
