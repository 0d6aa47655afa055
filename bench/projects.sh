#!/usr/bin/env bash
# The corpus table of issue 14: for each vendored real project (tests/data/projects/*), on the
# stand-in base, with wheels already downloaded (the download is the network's, not raypack's):
#   - cold bake: empty fragment and layer cache, written as an OCI layout;
#   - warm bake after a one-file code edit;
#   - what the image adds to the base (compressed bytes of the dependency and code layers);
#   - the first import of the project's modules in a fresh sandboxed container (bubblewrap, as
#     the ray user, PYTHONDONTWRITEBYTECODE=1), median of RUNS.
# Needs the harness servers: eval "$(scripts/services start)" first.
#   bench/projects.sh [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
runs=${1:-3}
: "${RAYPACK_TEST_BASE:?run: eval \"\$(scripts/services start)\"}"
: "${RAYPACK_TEST_REGISTRY:?}"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/raypack
work=/tmp/raypack-bench-projects-$$
mkdir -p "$work"
chmod 711 "$work"
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
export RAYPACK_CACHE_DIR=$work/cache

# name | vendored dir | recipe tweak (sed) | extra requirements file line | modules to import
projects=(
  "serve-demo|mlflow-ray-serve-demo|||mlray.app, mlray.mlflow, mlflow.pyfunc"
  "e2e-xgboost|e2e-xgboost||ray[data,train]|dist_xgboost.train, dist_xgboost.infer, xgboost, mlflow"
  "tune-mlflow|tune-mlflow|s/requirements = \\[\\]/requirements = [\"mlflow\", \"ray[tune]\"]/||mlflow, ray.tune, ray.air.integrations.mlflow"
)

printf '| project | cold bake (s) | warm bake (s) | layers over the base | first import, median of %s (s) |\n' "$runs"
printf '|---|---|---|---|---|\n'
for p in "${projects[@]}"; do
  IFS='|' read -r name dir tweak extra modules <<<"$p"
  d=$work/$name
  cp -r "$repo/tests/data/projects/$dir" "$d"
  "$bin" -q -C "$d" init >/dev/null
  sed -i "s|^image = \".*\"|image = \"$RAYPACK_TEST_BASE\"|; s|^# Python .*||" "$d/raypack.toml"
  [ -n "$tweak" ] && sed -i "$tweak" "$d/raypack.toml"
  if [ -n "$extra" ]; then
    printf -- '-r requirements.txt\n%s\n' "$extra" > "$d/requirements-cluster.txt"
    sed -i 's|requirements_file = "requirements.txt"|requirements_file = "requirements-cluster.txt"|' "$d/raypack.toml"
  fi
  # Download (and lock) first, outside the timing.
  "$bin" -q -C "$d" bake --oci-layout "$work/$name-warmup.oci" >/dev/null
  rm -rf "$RAYPACK_CACHE_DIR/fragments" "$work/$name-warmup.oci"
  find "$RAYPACK_CACHE_DIR" -name '*.deplayer.json' -delete
  s=$(now); "$bin" -q --output json -C "$d" bake --oci-layout "$work/$name.oci" > "$work/$name.json"; e=$(now)
  cold=$(echo "$e - $s" | bc -l)
  echo "# edit" >> "$(find "$d" -name '*.py' | sort | head -1)"
  s=$(now); "$bin" -q -C "$d" bake --oci-layout "$work/$name-2.oci" >/dev/null; e=$(now)
  warm=$(echo "$e - $s" | bc -l)
  added=$(python3 - "$work/$name.oci" <<'EOF'
import json, sys, os
root = sys.argv[1]
idx = json.load(open(os.path.join(root, "index.json")))
m = idx["manifests"][0]["digest"].split(":")[1]
man = json.load(open(os.path.join(root, "blobs/sha256", m)))
hist = [h for h in json.load(open(os.path.join(root, "blobs/sha256", man["config"]["digest"].split(":")[1])))["history"] if not h.get("empty_layer")]
size = sum(l["size"] for l, h in zip(man["layers"], hist) if h.get("created_by", "").startswith("raypack"))
print(f"{size / 2**20:.0f} MiB")
EOF
)
  umoci unpack --image "$work/$name.oci" "$work/$name-b" >/dev/null 2>&1 \
    || umoci unpack --image "$work/$name.oci:latest" "$work/$name-b" >/dev/null
  chmod 711 "$work/$name-b"
  times=()
  for i in $(seq "$runs"); do
    times+=("$(setpriv --reuid=1000 --regid=100 --clear-groups bwrap --bind "$work/$name-b/rootfs" / \
      --proc /proc --dev /dev --tmpfs /tmp --unshare-pid --unshare-net --die-with-parent \
      --chdir /home/ray/app /usr/bin/env -i PATH=/home/ray/anaconda3/bin:/usr/bin:/bin \
      HOME=/home/ray PYTHONDONTWRITEBYTECODE=1 \
      python -c "import time; t=time.perf_counter(); import $modules; print('%.2f' % (time.perf_counter()-t))" | tail -1)")
  done
  fi=$(printf '%s\n' "${times[@]}" | median)
  printf '| %s | %.1f | %.2f | %s | %s |\n' "$name" "$cold" "$warm" "$added" "$fi"
  rm -rf "$work/$name-b" "$work/$name.oci" "$work/$name-2.oci"
done
