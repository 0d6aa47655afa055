#!/usr/bin/env bash
# Benchmark `raypack env` against Ray 2.60's own packaging on the same seeded tree, in one run.
#   bench/env.sh [RUNS]      (needs the test venv: scripts/services install, or RAYPACK_TEST_PYTHON)
# Prints per-run times and the ratios the closing notes quote.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
runs=${1:-3}
py=${RAYPACK_TEST_PYTHON:-${XDG_CACHE_HOME:-$HOME/.cache}/raypack-test/venv/bin/python}
[ -x "$py" ] || { echo "bench: no Python with ray at $py; run scripts/test or set RAYPACK_TEST_PYTHON" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/raypack
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree=$work/tree
python3 "$here/gen_tree.py" "$tree"
echo "tree: $(find "$tree" -type f | wc -l) files, $(du -sm --apparent-size "$tree" | cut -f1) MiB" >&2
cat "$tree"/pkg00/sub0/*.py >/dev/null  # warm the page cache the same way for both tools
find "$tree" -type f -exec cat {} + >/dev/null

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ray_t=(); cold_t=(); warm_t=(); pack_t=(); pub_t=()
for i in $(seq "$runs"); do
  r=$("$py" "$here/ray_pack.py" "$tree")
  ray_t+=("$(echo "$r" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["total_s"])')")
  rm -rf "$tree/.raypack" "$work/store"; mkdir -p "$work/store"
  s=$(now); "$bin" -vv -C "$tree" env --store "file://$work/store" >/dev/null 2>"$work/cold.log"; e=$(now)
  cold_t+=("$(echo "$e - $s" | bc -l)")
  # raypack's own phase timings: "planned" = walk + hash + zip (one pass for a file:// store),
  # "published" = fsync + rename
  plain=$(sed 's/\x1b\[[0-9;]*m//g' "$work/cold.log")
  pack_t+=("$(echo "$plain" | sed -n 's/.*planned ms=\([0-9]*\).*/\1/p' | head -1 | awk '{print $1/1000}')")
  pub_t+=("$(echo "$plain" | sed -n 's/.*published .*ms=\([0-9]*\).*/\1/p' | head -1 | awk '{print $1/1000}')")
  # warm: unchanged tree, stat cache present, objects already in the store (the stat cache
  # skips files modified in the last 2 s, so let the tree age first)
  sleep 2.1; "$bin" -q -C "$tree" env --store "file://$work/store" >/dev/null
  # five warm re-runs per run (one is at the mercy of whatever the machine does that moment)
  w=()
  for _ in 1 2 3 4 5; do
    s=$(now); "$bin" -q -C "$tree" env --store "file://$work/store" >/dev/null; e=$(now)
    w+=("$(echo "$e - $s" | bc -l)")
  done
  warm_t+=("${w[@]}")
  echo "run $i: ray ${ray_t[-1]} s, raypack cold ${cold_t[-1]} s (pack ${pack_t[-1]} s + publish ${pub_t[-1]} s), raypack warm $(printf '%s\n' "${w[@]}" | median) s (median of 5) ($(echo "$r" | "$py" -c 'import json,sys; d=json.load(sys.stdin); print("ray hash %.2f s + zip %.2f s, %.1f MiB" % (d["hash_s"], d["zip_s"], d["zip_bytes"] / 2**20))'); raypack zip $(du -m --apparent-size "$work"/store/*.zip | cut -f1) MiB)" >&2
done
rm=$(printf '%s\n' "${ray_t[@]}" | median); cm=$(printf '%s\n' "${cold_t[@]}" | median); wm=$(printf '%s\n' "${warm_t[@]}" | median)
pm=$(printf '%s\n' "${pack_t[@]}" | median); um=$(printf '%s\n' "${pub_t[@]}" | median)
printf 'median: ray %.3f s | raypack cold command %.3f s (ratio %.3f) | raypack pack (walk+hash+zip) %.3f s (ratio %.3f), publish (fsync+rename) %.3f s | raypack warm %.1f ms\n' \
  "$rm" "$cm" "$(echo "$cm / $rm" | bc -l)" "$pm" "$(echo "$pm / $rm" | bc -l)" "$um" "$(echo "$wm * 1000" | bc -l)"
