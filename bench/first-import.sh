#!/usr/bin/env bash
# Benchmark what a pod waits for on its first import (issue 14 #4): the vendored Ray Serve +
# MLflow project (tests/data/projects/mlflow-ray-serve-demo) baked on the stand-in base
#   a. with `[image] compile_bytecode = false` (no .pyc in the dependency layers),
#   b. with bytecode (the default: checked-hash .pyc compiled by a host CPython of the image's X.Y),
#   c. the peer: image (a) after `python -m compileall` run by the image's own interpreter, which
#      is what `pip install` does at install time in a Dockerfile build;
# each unpacked with umoci and run in bubblewrap as the ray user with PYTHONDONTWRITEBYTECODE=1
# (every run is a fresh container: nothing written back), timing `import mlray.app, mlflow.pyfunc,
# sklearn, pandas`. Also reports the bake time of (b) with a cold and a warm fragment cache.
# Needs the harness servers: eval "$(scripts/services start)" first.
#   bench/first-import.sh [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
runs=${1:-3}
: "${RAYPACK_TEST_BASE:?run: eval \"\$(scripts/services start)\"}"
: "${RAYPACK_TEST_REGISTRY:?}"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/raypack
work=/tmp/raypack-bench-fi-$$
mkdir -p "$work"
chmod 711 "$work"
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

project() {  # project DIR COMPILE
  rm -rf "$1"; mkdir -p "$1"
  cp -r "$repo/tests/data/projects/mlflow-ray-serve-demo/." "$1/"
  "$bin" -q -C "$1" init >/dev/null
  sed -i "s|^image = \".*\"|image = \"$RAYPACK_TEST_BASE\"|; s|^# Python .*||" "$1/raypack.toml"
  printf '\n[image]\nrepository = "%s/bench/first-import"\ncompile_bytecode = %s\n' \
    "$RAYPACK_TEST_REGISTRY" "$2" >> "$1/raypack.toml"
}

unpack() {  # unpack LAYOUT BUNDLE
  umoci unpack --image "$1:latest" "$2" >/dev/null 2>&1 \
    || umoci unpack --image "$1" "$2" >/dev/null
  chmod 711 "$2"
}

sandbox() {  # sandbox BUNDLE COMMAND
  setpriv --reuid=1000 --regid=100 --clear-groups bwrap --bind "$1/rootfs" / --proc /proc \
    --dev /dev --tmpfs /tmp --unshare-pid --unshare-net --die-with-parent \
    --chdir /home/ray/app /usr/bin/env -i PATH=/home/ray/anaconda3/bin:/usr/bin:/bin \
    HOME=/home/ray PYTHONDONTWRITEBYTECODE=1 sh -c "$2"
}

import='python -c "import time; t=time.perf_counter(); import mlray.app, mlflow.pyfunc, sklearn, pandas; print(\"%.3f\" % (time.perf_counter()-t))"'

export RAYPACK_CACHE_DIR=$work/cache
project "$work/plain" false
"$bin" -q -C "$work/plain" bake --oci-layout "$work/plain.oci" >/dev/null
project "$work/pyc" true
rm -rf "$RAYPACK_CACHE_DIR/fragments"   # wheels stay downloaded; fragments compile anew
s=$(now); "$bin" -q -C "$work/pyc" bake --oci-layout "$work/pyc.oci" >/dev/null; e=$(now)
cold_bake=$(echo "$e - $s" | bc -l)
touch "$work/pyc/mlray/app.py"
s=$(now); "$bin" -q -C "$work/pyc" bake --oci-layout "$work/pyc2.oci" >/dev/null; e=$(now)
warm_bake=$(echo "$e - $s" | bc -l)

unpack "$work/plain.oci" "$work/b-plain"
unpack "$work/pyc.oci" "$work/b-pyc"
unpack "$work/plain.oci" "$work/b-pip"
# The peer: what pip does after installing, by the image's own interpreter (as root, since
# pip would run as the image's build user with write access).
s=$(now)
bwrap --bind "$work/b-pip/rootfs" / --proc /proc --dev /dev --tmpfs /tmp --unshare-net \
  /usr/bin/env -i PATH=/home/ray/anaconda3/bin:/usr/bin:/bin \
  python -m compileall -q -j 0 /home/ray/anaconda3/lib >/dev/null 2>&1 || true
e=$(now)
peer_compile=$(echo "$e - $s" | bc -l)

plain=(); pyc=(); pip=()
for i in $(seq "$runs"); do
  plain+=("$(sandbox "$work/b-plain" "$import" | tail -1)")
  pyc+=("$(sandbox "$work/b-pyc" "$import" | tail -1)")
  pip+=("$(sandbox "$work/b-pip" "$import" | tail -1)")
done
mp=$(printf '%s\n' "${plain[@]}" | median)
my=$(printf '%s\n' "${pyc[@]}" | median)
mq=$(printf '%s\n' "${pip[@]}" | median)
printf 'first import, no bytecode (s):        %s (median of %s)\n' "$mp" "$runs"
printf 'first import, raypack bytecode (s):   %s\n' "$my"
printf 'first import, compileall (peer) (s):  %s\n' "$mq"
printf 'ratio raypack bytecode / no bytecode: %.2f\n' "$(echo "$my / $mp" | bc -l)"
printf 'ratio raypack bytecode / peer:        %.2f\n' "$(echo "$my / $mq" | bc -l)"
printf 'bake with bytecode, cold fragments (s): %.1f; warm, code edit (s): %.2f; peer compileall (s): %.1f\n' \
  "$cold_bake" "$warm_bake" "$peer_compile"
