#!/usr/bin/env bash
# Benchmark `raypack bake` in one run:
#   1. incremental bake after a one-file edit, pushing to the local registry (target: <= 1 s);
#   2. cold bake of examples/hello (empty blob cache, base pulled from the local registry,
#      code layer built, pushed to a new repository) vs `buildah bud` of the equivalent
#      Dockerfile (FROM the same base as an oci: layout, COPY the code) + `buildah push`.
# Needs the harness servers: eval "$(scripts/services start)" first (it builds the stand-in base).
#   bench/bake.sh [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
runs=${1:-3}
: "${RAYPACK_TEST_BASE:?run: eval \"\$(scripts/services start)\"}"
: "${RAYPACK_TEST_BASE_LAYOUT:?run: eval \"\$(scripts/services start)\"}"
: "${RAYPACK_TEST_REGISTRY:?}"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/raypack
# buildah names an oci: base after its path, so the path must be a valid lowercase reference
# (no ".cache", no mixed-case mktemp names).
work=/tmp/raypack-bench-$$
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
ln -s "$RAYPACK_TEST_BASE_LAYOUT" "$work/base"
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

setup() {  # setup DIR REPO
  rm -rf "$1"; mkdir -p "$1"
  (cd "$repo/examples/hello" && tar --exclude=.raypack -cf - .) | tar -xf - -C "$1"
  sed -i "s|image = \"rayproject/ray:2.60.0-py311-cpu\"|image = \"$RAYPACK_TEST_BASE\"\n\n[image]\nrepository = \"$2\"\ntags = [\"bench\"]|" "$1/raypack.toml"
}

inc=(); cold=(); bud=()
for i in $(seq "$runs"); do
  n=$(date +%s%N)
  # cold raypack
  setup "$work/p$i" "$RAYPACK_TEST_REGISTRY/bench/raypack-$n"
  export RAYPACK_CACHE_DIR=$work/cache$i
  s=$(now); "$bin" -q -C "$work/p$i" bake --skip-deps --push >/dev/null; e=$(now)
  cold+=("$(echo "$e - $s" | bc -l)")
  # incremental: one-file edit, push
  echo "# edit $i" >> "$work/p$i/helpers.py"
  s=$(now); "$bin" -q -C "$work/p$i" bake --skip-deps --push >/dev/null; e=$(now)
  inc+=("$(echo "$e - $s" | bc -l)")
  # buildah, cold storage
  setup "$work/b$i" unused
  printf 'FROM oci:%s:2.60.0-py311-cpu\nCOPY --chown=1000:100 . /home/ray/app\n' "$work/base" > "$work/b$i/Dockerfile"
  st=$work/buildah$i
  s=$(now)
  buildah --root "$st/root" --runroot "$st/run" --storage-driver vfs bud --quiet --isolation chroot -t "localhost/bench:$i" "$work/b$i" >/dev/null
  buildah --root "$st/root" --runroot "$st/run" --storage-driver vfs push --quiet --tls-verify=false "localhost/bench:$i" "docker://$RAYPACK_TEST_REGISTRY/bench/buildah-$n:1" >/dev/null
  e=$(now)
  bud+=("$(echo "$e - $s" | bc -l)")
  rm -rf "$st" "$work/cache$i"
  echo "run $i: raypack cold ${cold[-1]} s, incremental ${inc[-1]} s; buildah bud+push ${bud[-1]} s" >&2
done
cm=$(printf '%s\n' "${cold[@]}" | median); im=$(printf '%s\n' "${inc[@]}" | median); bm=$(printf '%s\n' "${bud[@]}" | median)
printf 'median: raypack cold %.2f s | buildah %.2f s | ratio %.3f | raypack incremental %.3f s\n' "$cm" "$bm" "$(echo "$cm / $bm" | bc -l)" "$im"
