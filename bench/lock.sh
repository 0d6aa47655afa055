#!/usr/bin/env bash
# bench/lock.sh: `raypack lock` vs `uv pip compile` on a 30-package ML requirement set, for the
# same target (CPython 3.11, manylinux_2_36, x86_64), both printing a pinned, hashed lock, wheels
# only (`--only-binary :all:` for uv, as raypack never builds sdists). Known difference: both
# answers are valid; uv decides python-dateutil first (4.0.0, so graphene 3.4, the last release
# without `python-dateutil<3`), raypack decides graphene first (3.4.3, so python-dateutil
# 2.9.0.post0). With the harness's stand-in base (RAYPACK_TEST_BASE), raypack also prefers the
# versions the base ships (charset-normalizer, idna, pydantic, … one release behind uv's).
#
#   cold: empty caches for both (same network), one run each
#   warm: caches filled by the cold run; median of RUNS runs each; ratio = raypack / uv, also
#         against `uv pip compile --offline` (no network for either)
#
# Usage: bench/lock.sh [RUNS]    (env: RAYPACK=path/to/raypack, UV=path/to/uv)
# Prints one line per measurement and `warm ratio: X.XX` last. The release build is used
# unless RAYPACK is set.
set -euo pipefail
RUNS=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
UV=${UV:-${RAYPACK_TEST_UV:-$HOME/.cache/raypack-test/tools/bin/uv}}
if [ -z "${RAYPACK:-}" ]; then
  (cd "$here" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target} cargo build -q --release)
  RAYPACK=${CARGO_TARGET_DIR:-$here/target}/release/raypack
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

REQS=(numpy scipy pandas pyarrow scikit-learn xgboost lightgbm torch torchvision
  transformers tokenizers datasets accelerate safetensors huggingface-hub
  matplotlib seaborn plotly statsmodels sympy networkx pillow opencv-python-headless
  tqdm rich pydantic fastapi uvicorn mlflow optuna)
[ "${#REQS[@]}" -eq 30 ] || { echo "expected 30 requirements" >&2; exit 1; }

mkdir -p "$work/p"
{
  printf '[project]\nname = "bench"\n\n[code]\nworking_dir = "."\n\n[dependencies]\nrequirements = ['
  printf '"%s", ' "${REQS[@]}"
  # The harness's stand-in base when it is up (eval "$(scripts/services start)"): the catalog
  # base on Docker Hub is unreachable here, and waiting for that timeout was most of the time.
  printf ']\n\n[base]\nimage = "%s"\n' "${RAYPACK_TEST_BASE:-rayproject/ray:2.60.0-py311-cpu}"
} >"$work/p/raypack.toml"
printf '%s\n' "${REQS[@]}" >"$work/requirements.in"

now() { date +%s.%N; }
raypack_lock() {
  RAYPACK_CACHE_DIR="$work/rp-cache" "$RAYPACK" -q -C "$work/p" lock \
    --python-version 3.11 --manylinux 2_36 --upgrade >/dev/null
}
uv_compile() {
  UV_CACHE_DIR="$work/uv-cache" "$UV" pip compile -q --generate-hashes --only-binary :all: \
    --python-platform x86_64-manylinux_2_36 --python-version 3.11 \
    -o "$work/uv.txt" "$work/requirements.in" "$@"
}
uv_offline() { uv_compile --offline; }
time_it() { local t0; t0=$(now); "$@"; echo "$(now) - $t0" | bc; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# --upgrade makes every raypack run resolve from scratch (no preferences from the previous
# lock; index pages revalidated), as uv pip compile does without an -o file to read.
echo "cold raypack lock: $(time_it raypack_lock)s"
echo "cold uv pip compile: $(time_it uv_compile)s"
pk=$(grep -c '^\[\[packages\]\]' "$work/p/pylock.raypack.toml")
uvn=$(grep -cE '^[a-z0-9]' "$work/uv.txt")
echo "packages: raypack $pk, uv $uvn"
# Same pins? (names normalized; uv's `name==version \` lines vs the lock's name/version.)
python3 - "$work/p/pylock.raypack.toml" "$work/uv.txt" <<'PY'
import re, sys, tomllib
ours = {p["name"]: p["version"] for p in tomllib.load(open(sys.argv[1], "rb"))["packages"]}
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
theirs = dict(
    (norm(m.group(1)), m.group(2))
    for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)", open(sys.argv[2]).read(), re.M)
)
diff = sorted(n for n in ours.keys() | theirs.keys() if ours.get(n) != theirs.get(n))
print("versions differing from uv:", ", ".join(f"{n} ({ours.get(n)} vs {theirs.get(n)})" for n in diff) or "none")
PY
rp=$(for _ in $(seq "$RUNS"); do time_it raypack_lock; done | median)
uv=$(for _ in $(seq "$RUNS"); do time_it uv_compile; done | median)
echo "warm raypack lock (median of $RUNS): ${rp}s"
echo "warm uv pip compile (median of $RUNS): ${uv}s"
uvo=$(for _ in $(seq "$RUNS"); do time_it uv_offline; done | median)
echo "warm uv pip compile --offline (median of $RUNS): ${uvo}s"
# raypack's warm run makes no request while cached pages are fresh (max-age, 600 s when the index
# sends none); uv revalidates pages that came without cache headers, so --offline is the
# no-network comparison.
echo "warm ratio: $(echo "scale=2; $rp / $uv" | bc)"
echo "warm ratio vs uv --offline: $(echo "scale=2; $rp / $uvo" | bc)"
