#!/usr/bin/env bash
# Benchmark the shared layer cache (issue 20): what a fresh CI machine (an empty
# RAYPACK_CACHE_DIR) waits for when it re-bakes the ML acceptance set under a new tag after
# another machine pushed it. The set is ray-project's e2e-xgboost example (tests/data/projects:
# xgboost with nvidia-nccl-cu12, mlflow, scikit-learn, matplotlib, ray[data,train]) on the
# stand-in base, pushed to the harness registry.
#   - machine A: bakes and pushes (records the plan and its layers in the repository);
#   - fresh machine, shared cache: bake --push under a new tag, empty cache;
#   - fresh machine, no shared cache (the peer: raypack without this feature, i.e.
#     `--cache none`): the same bake downloads every wheel and builds every layer.
# Each fresh bake also changes the code, so a new image is pushed each time. Reported: medians
# of wall time, the bytes each fresh machine downloaded (its blob cache: wheels, base, layers)
# and how many of the dependency layers' bytes were among them.
# Needs the harness servers: eval "$(scripts/services start)" first.
#   bench/shared-cache.sh [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
runs=${1:-1}
: "${RAYPACK_TEST_BASE:?run: eval \"\$(scripts/services start)\"}"
: "${RAYPACK_TEST_REGISTRY:?run: eval \"\$(scripts/services start)\"}"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/raypack
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
target="$RAYPACK_TEST_REGISTRY/bench/shared-cache-$$-$(date +%s)"

p=$work/p
mkdir -p "$p"
(cd "$repo/tests/data/projects/e2e-xgboost" && tar -cf - .) | tar -xf - -C "$p"
"$bin" -q -C "$p" init >/dev/null
printf -- '-r requirements.txt\nray[data,train]\n' > "$p/requirements-cluster.txt"
sed -i -e "s|^image = .*|image = \"$RAYPACK_TEST_BASE\"|" \
  -e 's|requirements_file = "requirements.txt"|requirements_file = "requirements-cluster.txt"|' \
  "$p/raypack.toml"
printf '\n[image]\nrepository = "%s"\ntags = ["a"]\n' "$target" >> "$p/raypack.toml"

# Machine A.
RAYPACK_CACHE_DIR=$work/a "$bin" -q -C "$p" --output json bake --push > "$work/a.json"
layers=$(python3 -c 'import json,sys; print(" ".join(l["digest"].split(":")[1] for l in json.load(open(sys.argv[1]))["bake"]["dependencies"]["layers"]))' "$work/a.json")
layer_bytes=0
for h in $layers; do layer_bytes=$((layer_bytes + $(stat -c %s "$work/a/blobs/sha256/$h"))); done
echo "machine A: $(echo "$layers" | wc -w) dependency layers, $layer_bytes bytes" >&2

fresh() {  # fresh NAME RUN [bake args…]: prints "seconds downloaded layer_bytes_downloaded"
  local name=$1 i=$2; shift 2
  local cache=$work/$name-$i s e got=0 lb=0
  sed -i "s|^tags = .*|tags = [\"$name-$i\"]|" "$p/raypack.toml"
  echo "$name $i" > "$p/BENCH_RUN.txt"
  s=$(now)
  RAYPACK_CACHE_DIR=$cache "$bin" -q -C "$p" bake --push "$@" >/dev/null
  e=$(now)
  got=$(du -sb "$cache/blobs" | cut -f1)
  for h in $layers; do
    [ -f "$cache/blobs/sha256/$h" ] && lb=$((lb + $(stat -c %s "$cache/blobs/sha256/$h")))
  done
  rm -rf "$cache"
  echo "$(echo "$e - $s" | bc -l) $got $lb"
}

declare -a shared_t shared_b shared_l none_t none_b
for i in $(seq "$runs"); do
  read -r t b l < <(fresh shared "$i")
  shared_t+=("$t"); shared_b+=("$b"); shared_l+=("$l")
  read -r t b _ < <(fresh none "$i" --cache none)
  none_t+=("$t"); none_b+=("$b")
  echo "run $i done" >&2
done
st=$(printf '%s\n' "${shared_t[@]}" | median)
sb=$(printf '%s\n' "${shared_b[@]}" | median)
sl=$(printf '%s\n' "${shared_l[@]}" | median)
nt=$(printf '%s\n' "${none_t[@]}" | median)
nb=$(printf '%s\n' "${none_b[@]}" | median)
printf '\nfresh-machine re-bake of e2e-xgboost (%s runs, medians)\n' "$runs"
printf '| | wall s | downloaded MiB | dependency-layer bytes downloaded |\n|---|---|---|---|\n'
printf '| shared cache | %.2f | %.1f | %s of %s (%.2f %%) |\n' "$st" "$(echo "$sb/1048576" | bc -l)" "$sl" "$layer_bytes" "$(echo "100*$sl/$layer_bytes" | bc -l)"
printf '| --cache none (peer) | %.2f | %.1f | (wheels, then built) |\n' "$nt" "$(echo "$nb/1048576" | bc -l)"
printf 'shared cache / peer: %.3fx\n' "$(echo "$st/$nt" | bc -l)"
