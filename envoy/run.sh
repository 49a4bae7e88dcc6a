#!/usr/bin/env bash
# Builds the tokengate filter and runs Envoy with it in front of the mock backend (or $TOKENGATE_UPSTREAM).
#
# Usage: envoy/run.sh [--port N] [--admin-port N] [--mock-port N] [--listen-address ADDR]
#                     [--concurrency N] [--log-level LEVEL] [--no-build] [--wasm PATH (a prebuilt module; no build)]
# Environment:
#   TOKENGATE_UPSTREAM  send requests there instead of the bundled mock, e.g. https://api.openai.com
#                       or http://10.0.0.5:8000 (scheme://host[:port], TLS with SNI for https)
#   TOKENGATE_CONFIG    the filter's JSON configuration, e.g. '{"max_prompt_tokens": 8192}'
# Ctrl-C stops Envoy and the mock.
set -euo pipefail

LISTEN_ADDRESS=127.0.0.1
LISTEN_PORT=10000
ADMIN_PORT=9901
MOCK_PORT=8000
CONCURRENCY=2
LOG_LEVEL=warning
BUILD=1
WASM=""

usage() { sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --port) LISTEN_PORT="$2"; shift 2 ;;
    --admin-port) ADMIN_PORT="$2"; shift 2 ;;
    --mock-port) MOCK_PORT="$2"; shift 2 ;;
    --listen-address) LISTEN_ADDRESS="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --log-level) LOG_LEVEL="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --wasm) WASM="$(realpath "$2")"; BUILD=0; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
WASM="${WASM:-target/wasm32-wasip1/release/tokengate.wasm}"
RUN_DIR="envoy/.run"

if [ "$BUILD" -eq 1 ]; then
  if command -v rustup >/dev/null; then
    rustup target add wasm32-wasip1
  fi
  cargo build --release --target wasm32-wasip1 -p tokengate
fi
if [ ! -f "$WASM" ]; then
  echo "run.sh: $WASM is missing; build it with: cargo build --release --target wasm32-wasip1 -p tokengate" >&2
  exit 1
fi

envoy/setup.sh
PY=.venv/bin/python
mkdir -p "$RUN_DIR"

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${TOKENGATE_UPSTREAM:-}" ]; then
  UPSTREAM="$TOKENGATE_UPSTREAM"
else
  "$PY" envoy/mock_backend.py --host 127.0.0.1 --port "$MOCK_PORT" &
  pids+=("$!")
  UPSTREAM="127.0.0.1:$MOCK_PORT"
fi

render_args=(--listen-address "$LISTEN_ADDRESS" --listen-port "$LISTEN_PORT" --admin-port "$ADMIN_PORT"
             --upstream "$UPSTREAM" --wasm "$WASM" -o "$RUN_DIR/envoy.yaml")
if [ -n "${TOKENGATE_CONFIG:-}" ]; then
  render_args+=(--filter-config "$TOKENGATE_CONFIG")
fi
"$PY" envoy/render_config.py "${render_args[@]}"

# --base-id from the admin port: another Envoy on this machine (tests, benches) has another one.
.venv/bin/envoy -c "$RUN_DIR/envoy.yaml" --concurrency "$CONCURRENCY" --base-id "$ADMIN_PORT" \
  --log-level "$LOG_LEVEL" --file-flush-interval-msec 500 &
ENVOY_PID=$!
pids+=("$ENVOY_PID")

"$PY" - "$ADMIN_PORT" "$ENVOY_PID" <<'EOF'
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("run.sh: Envoy exited during start-up (see its log above)")
    time.sleep(0.1)
sys.exit("run.sh: Envoy not ready after 60 s")
EOF

HOST="$LISTEN_ADDRESS"
[ "$HOST" = "0.0.0.0" ] && HOST=127.0.0.1
cat <<EOF

tokengate is up: Envoy on http://$HOST:$LISTEN_PORT -> ${UPSTREAM}
  admin: http://127.0.0.1:$ADMIN_PORT (stats: /stats/prometheus)   config: $RUN_DIR/envoy.yaml
Try:
  curl -s http://$HOST:$LISTEN_PORT/v1/chat/completions -H 'content-type: application/json' \\
    -H 'authorization: Bearer sk-test' \\
    -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Hello, world!"}]}'
Access log lines appear below. Ctrl-C stops everything.

EOF

status=0
wait -n "${pids[@]}" || status=$?
echo "run.sh: a process exited (status $status); stopping" >&2
exit "$status"
