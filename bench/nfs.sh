#!/usr/bin/env bash
# Benchmark `raypack env --nfs` (issue 18), a local directory standing in for the mount:
#   1. the dev loop: a warm re-run after a one-file edit of the seeded 10,000-file / 200 MiB
#      tree (bench/gen_tree.py): collect, hash the edited file, a new snapshot with the other
#      9,999 files hard-linked from the previous one, rename; target <= 100 ms;
#   2. the acceptance set (tests/data/acceptance/requirements.txt) installed into a new
#      environment from a warm wheel cache, vs `uv pip install --no-deps --target` of the same
#      hashed file from uv's warm cache, in the same run; target ratio <= 1.0. uv is measured
#      twice: UV_LINK_MODE=copy, what it does when the target is on another filesystem than its
#      cache (a local cache, an NFS mount: the case this command is for), and its default
#      (hard links from the cache, possible here only because both are on one disk). The recipe's base
#      is a repository the harness registry does not have (a quick 404), so raypack installs the
#      whole set, as uv does (with a readable base it would leave out what the base ships).
#   bench/nfs.sh [RUNS]      (needs the harness registry: eval "$(scripts/services start)")
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
runs=${1:-5}
uv=${RAYPACK_TEST_UV:-${XDG_CACHE_HOME:-$HOME/.cache}/raypack-test/tools/bin/uv}
[ -x "$uv" ] || { echo "bench: no uv at $uv; run scripts/services install (or scripts/test)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/raypack
cache=${RAYPACK_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raypack-bench}
mkdir -p "$cache"
export UV_CACHE_DIR=$cache/uv RAYPACK_CACHE_DIR=$cache/raypack
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# 1. The dev loop.
tree=$work/tree
python3 "$here/gen_tree.py" "$tree"
mkdir -p "$work/mnt"
"$bin" -q -C "$tree" env --nfs "$work/mnt" >/dev/null
sleep 2.1  # the stat cache skips files modified in the last 2 s
"$bin" -q -C "$tree" env --nfs "$work/mnt" >/dev/null
edit_t=()
for i in $(seq "$runs"); do
  echo "edit $i" >>"$tree/pkg00/sub0/f00000.py"
  sleep 2.1
  s=$(now); "$bin" -q -C "$tree" env --nfs "$work/mnt" >/dev/null; e=$(now)
  edit_t+=("$(echo "$e - $s" | bc -l)")
done
echo "one-file edit, warm: $(printf '%.1f ms ' $(printf '%s\n' "${edit_t[@]}" | awk '{print $1*1000}'))" >&2

# 2. A new environment from warm caches.
proj=$work/proj
mkdir -p "$proj"
cp "$repo/tests/data/acceptance/requirements.txt" "$proj/"
cat >"$proj/raypack.toml" <<'EOF'
[project]
name = "accept"
[dependencies]
requirements_file = "requirements.txt"
[base]
image = "REGISTRY/raypack-bench/absent:2.60.0-py311-cpu"
python = "/usr/bin/python3"
python_version = "3.11"
manylinux = "2_36"
EOF
sed -i "s|REGISTRY|${RAYPACK_TEST_REGISTRY:-127.0.0.1:5000}|" "$proj/raypack.toml"
uv_install() { env -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_FIND_LINKS UV_LINK_MODE=${UV_LINK_MODE:-hardlink} "$uv" pip install -q --no-deps \
  --python-platform x86_64-manylinux_2_36 --python-version 3.11 --target "$1" -r "$2"; }
uv_install "$work/warm-uv" "$proj/requirements.txt"
mkdir -p "$work/mnt-warm"; "$bin" -q -C "$proj" env --nfs "$work/mnt-warm" >/dev/null
rp_t=(); uv_t=(); uvc_t=()
for i in $(seq "$runs"); do
  rm -rf "$work/uv" && s=$(now); uv_install "$work/uv" "$proj/requirements.txt"; e=$(now)
  uv_t+=("$(echo "$e - $s" | bc -l)")
  rm -rf "$work/uv" && s=$(now); UV_LINK_MODE=copy uv_install "$work/uv" "$proj/requirements.txt"; e=$(now)
  uvc_t+=("$(echo "$e - $s" | bc -l)")
  chmod -R u+w "$work/mnt-$i" 2>/dev/null || true; rm -rf "$work/mnt-$i"; mkdir -p "$work/mnt-$i"
  s=$(now); "$bin" -q -C "$proj" env --nfs "$work/mnt-$i" >/dev/null 2>&1; e=$(now)
  rp_t+=("$(echo "$e - $s" | bc -l)")
  echo "run $i: uv --target ${uvc_t[-1]} s (copy) ${uv_t[-1]} s (hardlink), raypack env --nfs (new environment) ${rp_t[-1]} s" >&2
done
em=$(printf '%s\n' "${edit_t[@]}" | median); um=$(printf '%s\n' "${uv_t[@]}" | median); rm_=$(printf '%s\n' "${rp_t[@]}" | median)
ucm=$(printf '%s\n' "${uvc_t[@]}" | median)
printf 'median: one-file edit re-run %.1f ms | new environment: raypack %.3f s, uv --target copy %.3f s (ratio %.2f), hardlink %.3f s (ratio %.2f)\n' \
  "$(echo "$em * 1000" | bc -l)" "$rm_" "$ucm" "$(echo "$rm_ / $ucm" | bc -l)" "$um" "$(echo "$rm_ / $um" | bc -l)"
