#!/usr/bin/env bash
# Envoy load comparison, all in one run on loopback: no filter, the no-op wasm filter
# (benches/noop-filter: buffer + parse JSON + add header) and tokengate, with a 4 KB chat body.
# Per configuration: time to /ready and Envoy's CPU time until then, req/s and latency (wrk, 1
# worker), Envoy's CPU time per request during the wrk run (user + system; steadier than req/s on
# a shared machine, where wrk and the backend compete for the same cores), tokengate's tokenize_us
# p50, RSS at one worker (idle after start, and after the load), and RSS per additional worker
# (concurrency 1 vs 5, idle after start). The backend is a second
# Envoy answering with a direct response, so it is never the bottleneck.
#
# Usage: benches/envoy_load.sh [--duration 10s] [--connections 16] [--no-build] [--also NAME=WASM ...]
#        benches/envoy_load.sh --ab NAME=WASM [--rounds 8] [--duration 5s] [--no-build]
#        benches/envoy_load.sh --rls [--rounds 8] [--duration 5s] [--no-build]
# `--also` adds a row for another build of tokengate (e.g. the module of an earlier commit), run
# with the same configuration in the same run, so builds compare as ratios of one run.
# `--ab` compares tokengate with one other build closely: both Envoys run at once (1 worker each),
# and each round loads one then the other (the order alternating), so drift of the machine's speed
# during the run falls on both alike; it prints every round and the median ratios.
# `--log-without-meter` renders envoy.yaml with an access log that leaves out the meter's response
# fields (backend_prompt_tokens ... usage): Envoy formats each field present in every line, which
# is part of what a logged field costs.
# `--rls` compares fleet-wide quotas with local ones in the same way: one Envoy with a local quota,
# one with quota.backend.rls (the test rate limit service, envoy/rls, on Redis, both on loopback);
# every round loads each at --connections (req/s) and at one connection (latency p50/p99: what the
# RLS round trip adds to a request, without queueing), and counts the service's calls per request.
# Needs: wrk (apt-get install wrk), Envoy at .venv/bin/envoy (envoy/setup.sh) or $ENVOY; for --rls
# redis-server and target/rls/release/tokengate-test-rls (test.sh builds it).
set -euo pipefail

DURATION=10s
CONNECTIONS=16
BUILD=1
ALSO=()
AB=""
ROUNDS=8
LOG_WITHOUT_METER=0
RLS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rls) RLS=1; shift ;;
    --also) ALSO+=("$2"); shift 2 ;;
    --ab) AB="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --log-without-meter) LOG_WITHOUT_METER=1; shift ;;
    --duration) DURATION="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "envoy_load.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || { echo "envoy_load.sh: wrk is required (apt-get install wrk)" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
ENVOY="${ENVOY:-$ROOT/.venv/bin/envoy}"
[ -x "$ENVOY" ] || ENVOY=/tmp/probe-venv/bin/envoy
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3
RUN="$ROOT/target/envoy-load"
mkdir -p "$RUN"

if [ "$BUILD" -eq 1 ]; then
  cargo build --release --target wasm32-wasip1 -p tokengate
  cargo build --release --target wasm32-wasip1 --manifest-path benches/noop-filter/Cargo.toml --target-dir target
fi
TOKENGATE_WASM="$ROOT/target/wasm32-wasip1/release/tokengate.wasm"
NOOP_WASM="$ROOT/target/wasm32-wasip1/release/tokengate_noop.wasm"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The 4 KB chat body: English prose from the benches' sentences.
"$PY" - "$RUN/chat.json" <<'PYEOF'
import json, re, sys
src = open("benches/src/lib.rs", encoding="utf-8").read()
block = src[src.index("const SENTENCES"):src.index("];", src.index("const SENTENCES"))]
sentences = [json.loads('"' + s + '"') for s in re.findall(r'^\s*"((?:[^"\\]|\\.)*)",\s*$', block, re.M)]
text, i = "", 0
while len(text.encode()) < 4000:
    text += sentences[(i * 7) % len(sentences)] + (" " if i % 5 != 4 else "\n\n")
    i += 1
body = {"model": "gpt-4o", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                         {"role": "user", "content": text}]}
open(sys.argv[1], "w").write(json.dumps(body))
print(f"chat body: {len(json.dumps(body).encode())} bytes", file=sys.stderr)
PYEOF
cat > "$RUN/post.lua" <<LUA
wrk.method = "POST"
wrk.body = io.open("$RUN/chat.json"):read("*a")
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer sk-load"
LUA

# Backend: Envoy answering every request itself.
BACKEND_PORT=$(free_port); BACKEND_ADMIN=$(free_port)
cat > "$RUN/backend.yaml" <<YAML
admin: {address: {socket_address: {address: 127.0.0.1, port_value: $BACKEND_ADMIN}}}
static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: $BACKEND_PORT}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: backend
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                response_headers_to_add:
                - header: {key: content-type, value: application/json}
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
                direct_response:
                  status: 200
                  body: {inline_string: '{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":900,"completion_tokens":1,"total_tokens":901}}'}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
YAML
"$ENVOY" -c "$RUN/backend.yaml" --concurrency 2 --base-id "$BACKEND_ADMIN" --log-level error >"$RUN/backend.log" 2>&1 &
pids+=("$!")

TEMPLATE="$ROOT/envoy/envoy.yaml"
if [ "$LOG_WITHOUT_METER" -eq 1 ]; then
  TEMPLATE="$RUN/envoy-log-without-meter.yaml"
  sed -E 's/ (backend_prompt_tokens|completion_tokens|cached_tokens|drift|usage)=%FILTER_STATE\(wasm\.tokengate\.[a-z_]+:PLAIN\)%//g' \
    "$ROOT/envoy/envoy.yaml" >"$TEMPLATE"
  grep -q 'usage=%FILTER' "$TEMPLATE" && { echo "envoy_load.sh: could not drop the meter's log fields" >&2; exit 1; }
fi

# start_envoy NAME CONCURRENCY RENDER_ARGS... : starts Envoy and waits for /ready; sets ENVOY_PID,
# PORT, ADMIN and READY_S (seconds from exec to ready).
start_envoy() {
  local name="$1" conc="$2"; shift 2
  PORT=$(free_port); ADMIN=$(free_port)
  "$PY" envoy/render_config.py --template "$TEMPLATE" --listen-port "$PORT" --admin-port "$ADMIN" \
    --upstream "127.0.0.1:$BACKEND_PORT" --access-log /dev/null "$@" -o "$RUN/$name.yaml"
  local t0; t0=$(date +%s.%N)
  "$ENVOY" -c "$RUN/$name.yaml" --concurrency "$conc" --base-id "$ADMIN" --log-level error >"$RUN/$name.log" 2>&1 &
  ENVOY_PID=$!
  pids+=("$ENVOY_PID")
  for _ in $(seq 1 3000); do
    if curl -fs "http://127.0.0.1:$ADMIN/ready" >/dev/null 2>&1; then break; fi
    kill -0 "$ENVOY_PID" 2>/dev/null || { cat "$RUN/$name.log" >&2; echo "Envoy ($name) exited" >&2; exit 1; }
    sleep 0.01
  done
  READY_S=$(echo "$(date +%s.%N) - $t0" | bc)
  READY_CPU_S=$(echo "$(cpu_ticks "$ENVOY_PID") / $TICKS" | bc -l)
}

stop_envoy() { kill "$ENVOY_PID" 2>/dev/null || true; wait "$ENVOY_PID" 2>/dev/null || true; }

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# User + system CPU of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat; the command
# name in field 2 has no spaces here).
TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

args_for() {
  case "$1" in
    none) echo "--no-filter" ;;
    noop) echo "--wasm $NOOP_WASM --filter-config {}" ;;
    tokengate) echo "--wasm $TOKENGATE_WASM --filter-config {\"max_prompt_tokens\":100000}" ;;
    *) echo "--wasm ${WASM_OF[$1]} --filter-config {\"max_prompt_tokens\":100000}" ;;
  esac
}
declare -A WASM_OF
NAMES=(none noop tokengate)
for also in "${ALSO[@]}"; do
  WASM_OF["${also%%=*}"]="${also#*=}"
  NAMES+=("${also%%=*}")
done

# wrk_run PORT PID: loads one Envoy for $DURATION; sets RPS and CPU_US (Envoy CPU per request).
wrk_run() {
  local port="$1" pid="$2" cpu0 cpu1 reqs
  cpu0=$(cpu_ticks "$pid")
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$RUN/post.lua" "http://127.0.0.1:$port/v1/chat/completions" >"$RUN/ab.wrk" 2>&1
  cpu1=$(cpu_ticks "$pid")
  reqs=$(awk '/requests in/ {print $1}' "$RUN/ab.wrk")
  RPS=$(awk '/Requests\/sec/ {print $2}' "$RUN/ab.wrk")
  CPU_US=$(echo "($cpu1 - $cpu0) * 1000000 / $TICKS / $reqs" | bc -l)
  grep -q "Non-2xx" "$RUN/ab.wrk" && echo "warning: non-2xx answers: $(grep Non-2xx "$RUN/ab.wrk")" >&2
  return 0
}

# wrk_latency PORT: one connection for $DURATION; sets P50_US and P99_US.
wrk_latency() {
  wrk -t1 -c1 -d"$DURATION" --latency -s "$RUN/post.lua" "http://127.0.0.1:$1/v1/chat/completions" >"$RUN/lat.wrk" 2>&1
  grep -q "Non-2xx" "$RUN/lat.wrk" && echo "warning: non-2xx answers: $(grep Non-2xx "$RUN/lat.wrk")" >&2
  to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'; }
  P50_US=$(to_us "$(awk '$1 == "50%" {print $2}' "$RUN/lat.wrk")")
  P99_US=$(to_us "$(awk '$1 == "99%" {print $2}' "$RUN/lat.wrk")")
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

if [ "$RLS" -eq 1 ]; then
  RLS_BIN="$ROOT/target/rls/release/tokengate-test-rls"
  [ -x "$RLS_BIN" ] || { echo "envoy_load.sh: $RLS_BIN missing (envoy/rls/build.sh)" >&2; exit 1; }
  command -v redis-server >/dev/null || { echo "envoy_load.sh: redis-server is required" >&2; exit 1; }
  REDIS_PORT=$(free_port); RLS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$RUN/redis.log" 2>&1 &
  pids+=("$!")
  cat > "$RUN/limits.yaml" <<LIMITS
- namespace: tokengate
  max_value: 1000000000000
  seconds: 60
  conditions: []
  variables: ["descriptors[0].api_key"]
LIMITS
  sleep 0.5
  "$RLS_BIN" --listen "127.0.0.1:$RLS_PORT" --redis "redis://127.0.0.1:$REDIS_PORT" --limits "$RUN/limits.yaml" >"$RUN/rls.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 500); do grep -q listening "$RUN/rls.log" && break; sleep 0.01; done
  grep -q listening "$RUN/rls.log" || { cat "$RUN/rls.log" >&2; exit 1; }
  start_envoy local 1 --wasm "$TOKENGATE_WASM" --filter-config '{"max_prompt_tokens":100000,"quota":{"tokens_per_minute":1000000000}}'
  a_pid=$ENVOY_PID a_port=$PORT
  start_envoy rls 1 --wasm "$TOKENGATE_WASM" --rls-port "$RLS_PORT" \
    --filter-config '{"max_prompt_tokens":100000,"quota":{"backend":{"rls":{"cluster":"ratelimit","domain":"tokengate","timeout_ms":1000}}}}'
  b_pid=$ENVOY_PID b_port=$PORT b_admin=$ADMIN
  for port in "$a_port" "$b_port"; do DURATION=2s wrk_run "$port" "$a_pid" >/dev/null; done
  read -r load1 _ < /proc/loadavg
  echo "load average at start: $load1; $ROUNDS rounds of $DURATION per configuration and load, order alternating"
  echo "| round | local req/s | rls req/s | ratio | local Envoy CPU/req (µs) | rls Envoy CPU/req (µs) | local p50 (µs) | rls p50 (µs) | local p99 (µs) | rls p99 (µs) |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  ratios=() add50=() add99=() addcpu=()
  for round in $(seq 1 "$ROUNDS"); do
    for side in $( [ $((round % 2)) -eq 1 ] && echo "a b" || echo "b a"); do
      if [ "$side" = a ]; then
        wrk_run "$a_port" "$a_pid"; a_rps=$RPS a_cpu=$CPU_US; wrk_latency "$a_port"; a50=$P50_US a99=$P99_US
      else
        wrk_run "$b_port" "$b_pid"; b_rps=$RPS b_cpu=$CPU_US; wrk_latency "$b_port"; b50=$P50_US b99=$P99_US
      fi
    done
    r=$(echo "$b_rps / $a_rps" | bc -l)
    ratios+=("$r"); add50+=("$(echo "$b50 - $a50" | bc -l)"); add99+=("$(echo "$b99 - $a99" | bc -l)")
    addcpu+=("$(echo "$b_cpu - $a_cpu" | bc -l)")
    printf '| %d | %s | %s | %.3f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n' "$round" "$a_rps" "$b_rps" "$r" "$a_cpu" "$b_cpu" \
      "$a50" "$b50" "$a99" "$b99"
  done
  sleep 6  # stats_flush_interval: histograms are merged every 5 s
  stats=$(curl -s "http://127.0.0.1:$b_admin/stats")
  # The filter's own measure of an admission call: sending to answer, cumulative P50 and P99.
  quantile() { echo "$stats" | grep 'tokengate.rls_round_trip_us:' | grep -o "$1([^)]*)" | head -1 | sed 's/.*,\(.*\))/\1/'; }
  printf 'admission call round trip as the filter measures it (tokengate_rls_round_trip_us, whole run): p50 %s µs, p99 %s µs\n' \
    "$(quantile P50)" "$(quantile P99)"
  calls=$(echo "$stats" | awk -F': ' '$1 == "cluster.ratelimit.upstream_rq_total" {print $2}')
  requests=$(echo "$stats" | awk -F': ' '$1 ~ /tokengate\.requests_total$/ {print $2}')
  failures=$(echo "$stats" | awk -F': ' '$1 ~ /tokengate\.rls_failures_total$/ {print $2}')
  printf 'median rls / local req/s %.3f; Envoy CPU added per request %.0f µs; added latency at one connection: p50 %.0f µs, p99 %.0f µs\n' \
    "$(median "${ratios[@]}")" "$(median "${addcpu[@]}")" "$(median "${add50[@]}")" "$(median "${add99[@]}")"
  printf 'rate limit service calls per request: %.3f (%s calls, %s requests: one admission + one settlement each); failures %s\n' \
    "$(echo "$calls / $requests" | bc -l)" "$calls" "$requests" "${failures:-0}"
  exit 0
fi

if [ -n "$AB" ]; then
  other="${AB%%=*}"
  start_envoy tokengate 1 --wasm "$TOKENGATE_WASM" --filter-config '{"max_prompt_tokens":100000}'
  a_pid=$ENVOY_PID a_port=$PORT
  start_envoy "$other" 1 --wasm "${AB#*=}" --filter-config '{"max_prompt_tokens":100000}'
  b_pid=$ENVOY_PID b_port=$PORT
  for port in "$a_port" "$b_port"; do  # warm both up
    DURATION=2s wrk_run "$port" "$a_pid" >/dev/null
  done
  read -r load1 _ < /proc/loadavg
  echo "load average at start: $load1; $ROUNDS rounds of $DURATION per build, order alternating"
  echo "| round | tokengate req/s | $other req/s | ratio | tokengate CPU/request (µs) | $other CPU/request (µs) | ratio |"
  echo "|---:|---:|---:|---:|---:|---:|---:|"
  rps_ratios=() cpu_ratios=()
  for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
      wrk_run "$a_port" "$a_pid"; a_rps=$RPS a_cpu=$CPU_US
      wrk_run "$b_port" "$b_pid"; b_rps=$RPS b_cpu=$CPU_US
    else
      wrk_run "$b_port" "$b_pid"; b_rps=$RPS b_cpu=$CPU_US
      wrk_run "$a_port" "$a_pid"; a_rps=$RPS a_cpu=$CPU_US
    fi
    r=$(echo "$a_rps / $b_rps" | bc -l); c=$(echo "$a_cpu / $b_cpu" | bc -l)
    rps_ratios+=("$r"); cpu_ratios+=("$c")
    printf '| %d | %s | %s | %.3f | %.0f | %.0f | %.3f |\n' "$round" "$a_rps" "$b_rps" "$r" "$a_cpu" "$b_cpu" "$c"
  done
  printf 'median tokengate / %s: req/s %.3f, Envoy CPU per request %.3f\n' "$other" "$(median "${rps_ratios[@]}")" "$(median "${cpu_ratios[@]}")"
  exit 0
fi

# Every number here is wall or CPU time on a shared 2-core machine: say how busy it was.
read -r load1 _ < /proc/loadavg
echo "load average at start: $load1 (above ~0.5, expect slower and noisier numbers; compare rows of one run)"
echo "| configuration | ready (s) | CPU to ready (s) | req/s | latency p50 | Envoy CPU per request (µs) | tokenize p50 (µs) | RSS 1 worker (MB) | RSS after load (MB) | extra RSS per worker (MB) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for name in "${NAMES[@]}"; do
  # shellcheck disable=SC2046
  start_envoy "$name" 5 $(args_for "$name")
  sleep 1
  rss5=$(rss_kb "$ENVOY_PID")
  stop_envoy
  # shellcheck disable=SC2046
  start_envoy "$name" 1 $(args_for "$name")
  ready=$READY_S
  ready_cpu=$READY_CPU_S
  sleep 1
  rss1=$(rss_kb "$ENVOY_PID")
  check=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/v1/chat/completions" \
    -H 'content-type: application/json' -H 'authorization: Bearer sk-load' --data-binary @"$RUN/chat.json")
  [ "$check" = 200 ] || echo "warning: $name answered $check" >&2
  cpu0=$(cpu_ticks "$ENVOY_PID")
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$RUN/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" \
    >"$RUN/$name.wrk" 2>&1
  cpu1=$(cpu_ticks "$ENVOY_PID")
  rss_loaded=$(rss_kb "$ENVOY_PID")
  reqs=$(awk '/requests in/ {print $1}' "$RUN/$name.wrk")
  cpu_us=nan
  [ "${reqs:-0}" -gt 0 ] 2>/dev/null && cpu_us=$(echo "($cpu1 - $cpu0) * 1000000 / $TICKS / $reqs" | bc -l)
  rps=$(awk '/Requests\/sec/ {print $2}' "$RUN/$name.wrk")
  p50=$(awk '$1 == "50%" {print $2}' "$RUN/$name.wrk")
  tok="–"
  if [ "$name" != none ] && [ "$name" != noop ]; then
    sleep 6  # stats_flush_interval: histograms are merged every 5 s
    tok=$(curl -s "http://127.0.0.1:$ADMIN/stats?filter=tokenize_us" | grep -o 'P50([^,]*,[^)]*)' | head -1 \
      | sed 's/P50(\([^,]*\),\([^)]*\))/\2/')
    case "$tok" in ''|nan) ;; *) tok=$(printf '%.0f' "$tok") ;; esac
  fi
  stop_envoy
  printf '| %s | %.2f | %.2f | %s | %s | %s | %s | %.0f | %.0f | %.1f |\n' "$name" "$ready" "$ready_cpu" "$rps" "$p50" \
    "$(printf '%.0f' "$cpu_us" 2>/dev/null || echo "$cpu_us")" "${tok:-?}" \
    "$(echo "$rss1/1024" | bc -l)" "$(echo "$rss_loaded/1024" | bc -l)" "$(echo "($rss5-$rss1)/4/1024" | bc -l)"
done
