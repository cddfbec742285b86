#!/usr/bin/env bash
# bench/gateway/profile.sh — where Switchyard's CPU per request goes, counted rather than timed.
#
# Runs the stack hop (src/bin/stack_hop.rs: the same HTTP stack with no gateway logic) and
# `switchyard serve` (auth, limits, ledger in SQLite, metrics: as bench/gateway/run.sh runs it)
# under valgrind's callgrind, each in front of the same static nginx upstream, and sends each
# $REQUESTS non-streamed chat requests with wrk ($CONNS connections) after a warm-up that is
# not counted. callgrind counts instructions, not seconds: the figures repeat for the same
# binary whatever else the machine does, so a change's effect shows even on a shared VM.
#
# Prints instructions per request for both, their ratio (the issue's target is CPU per request
# <= 1.5x the stack hop's), and the top functions of Switchyard by inclusive and exclusive cost;
# writes the callgrind files to bench/out/profile-<UTC time>/ for callgrind_annotate or
# kcachegrind. STREAM=1 profiles streamed requests instead (sim worker, 16 tokens each).
# Knobs: REQUESTS=2000 CONNS=8 STREAM=0 TOP=40. About 2 minutes after the release build.
set -euo pipefail

REQUESTS=${REQUESTS:-2000}
CONNS=${CONNS:-8}
STREAM=${STREAM:-0}
TOP=${TOP:-40}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$ROOT/bench/out/profile-$STAMP"
mkdir -p "$OUT"

log() { printf '[profile %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# shellcheck source=bench/lib.sh
source "$HERE/../lib.sh"
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
apt_install "${need[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

log "building (release)"
(cd "$ROOT" && cargo build --release --quiet -p switchyard -p switchyard-bench-gateway)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SWITCHYARD="$TARGET_DIR/release/switchyard"
STACK_HOP="$TARGET_DIR/release/stack_hop"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-profile.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -s $WORK/upstream/nginx.pid ]] && kill -TERM "$(cat "$WORK/upstream/nginx.pid")" 2>/dev/null
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if ((rc != 0)); then log "failed (exit $rc); logs kept in $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

KEY=sk-bench-profile-0123456789abcdef
export BENCH_KEY=$KEY BENCH_BODY_FILE="$HERE/chat.json"
pick_port UP_PORT
pick_port SIM_PORT
pick_port GW_PORT
pick_port STACK_PORT

mkdir -p "$WORK/upstream/tmp"
CHAT_JSON='{"id":"chatcmpl-bench0001","object":"chat.completion","created":1735689600,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Because every millisecond it adds is paid by every request, on top of the model itself."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":38,"completion_tokens":19,"total_tokens":57}}'
cat >"$WORK/upstream/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/upstream/nginx.pid;
error_log $WORK/upstream/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/upstream/tmp;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UP_PORT;
        location = /v1/chat/completions { default_type application/json; return 200 '$CHAT_JSON'; }
        location = /v1/models { default_type application/json; return 200 '{"object":"list","data":[]}'; }
    }
}
EOF
"$NGINX" -q -c "$WORK/upstream/nginx.conf" -p "$WORK/upstream"
wait_http "http://127.0.0.1:$UP_PORT/v1/models" "nginx upstream"

UPSTREAM="http://127.0.0.1:$UP_PORT"
RUNTIME=openai
if [[ $STREAM == 1 ]]; then
    # A SIMULATED worker: no prefill or decode time, 16 tokens per answer.
    cat >"$WORK/sim.toml" <<EOF
model = "bench-model"
prefill_base_ms = 0.0
prefill_per_token_ms = 0.0
decode_ms_per_token = 0.0
decode_slowdown_per_seq = 0.0
kv_capacity_tokens = 1000000000
max_queue = 100000
EOF
    "$SWITCHYARD" sim --listen "127.0.0.1:$SIM_PORT" --config "$WORK/sim.toml" >"$WORK/sim.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$SIM_PORT/health" "sim"
    UPSTREAM="http://127.0.0.1:$SIM_PORT"
    RUNTIME=vllm
    printf '%s' '{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"Why should an inference gateway add little latency?"}],"max_tokens":16}' >"$WORK/stream.json"
    export BENCH_BODY_FILE="$WORK/stream.json"
fi

cat >"$WORK/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$GW_PORT"
max_connections_per_ip = 0

[state]
path = "$WORK/state.db"

[dev_tenant]
tier = "bench"

[tiers.bench]
requests_per_minute = 1000000000
tokens_per_minute = 1000000000000
max_concurrent = 100000
max_tokens = 4096
default_max_tokens = 256

[[workers]]
name = "upstream"
url = "$UPSTREAM"
runtime = "$RUNTIME"
model = "bench-model"
max_concurrency = 1024
EOF

# profile NAME PORT -- COMMAND...: runs COMMAND under callgrind with collection off, warms it
# up, counts $REQUESTS requests, and prints the instructions per request.
profile() {
    local name=$1 port=$2 pid out
    shift 3
    out="$OUT/$name.callgrind"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@" \
        >"$WORK/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 600); do
        curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/v1/models" \
            -H "authorization: Bearer $KEY" && break
        kill -0 "$pid" 2>/dev/null || die "$name exited (see $WORK/$name.log)"
        sleep 0.2
    done
    wrk -t1 -c"$CONNS" -d3s -s "$HERE/chat.lua" "http://127.0.0.1:$port/v1/chat/completions" >/dev/null
    callgrind_control -z "$pid" >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    local served
    served=$(python3 - "$port" "$REQUESTS" "$CONNS" <<'PY'
import http.client, json, os, sys, threading
port, total, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
body = open(os.environ["BENCH_BODY_FILE"], "rb").read()
headers = {"authorization": "Bearer " + os.environ["BENCH_KEY"], "content-type": "application/json"}
done = [0]
lock = threading.Lock()
def run(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(n):
        c.request("POST", "/v1/chat/completions", body, headers)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            sys.exit(f"status {r.status}")
        with lock:
            done[0] += 1
threads = [threading.Thread(target=run, args=(total // conns,)) for _ in range(conns)]
[t.start() for t in threads]
[t.join() for t in threads]
print(done[0])
PY
)
    callgrind_control -i off "$pid" >/dev/null
    callgrind_control -d "$pid" >/dev/null
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    local file ir
    file="$out.1" # the dump asked for above (the file without a suffix is the exit)
    ir=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n++ {gsub(",", "", $1); print $1}')
    printf '%s %s %s %s\n' "$name" "$served" "$ir" "$file"
}

log "stack hop under callgrind ($REQUESTS requests, $CONNS connections)"
read -r _ HOP_N HOP_IR _ < <(profile stack_hop "$STACK_PORT" -- \
    "$STACK_HOP" --listen "127.0.0.1:$STACK_PORT" --upstream "$UPSTREAM")
log "switchyard under callgrind"
read -r _ GW_N GW_IR GW_FILE < <(SWITCHYARD_DEV_KEY=$KEY SWITCHYARD_LOG=warn profile switchyard "$GW_PORT" -- \
    "$SWITCHYARD" serve --config "$WORK/gateway.toml" --admin-listen 127.0.0.1:0)

set +o pipefail # the report is cut short by head on purpose
HOP_PER=$((HOP_IR / HOP_N))
GW_PER=$((GW_IR / GW_N))
{
    echo "instructions per request ($( [[ $STREAM == 1 ]] && echo "streamed, 16 tokens" || echo "non-streamed"), callgrind, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)):"
    printf '  stack hop   %12d  (%d requests)\n' "$HOP_PER" "$HOP_N"
    printf '  switchyard  %12d  (%d requests)  = %s x the stack hop (target <= 1.5)\n' "$GW_PER" "$GW_N" \
        "$(awk -v a="$GW_PER" -v b="$HOP_PER" 'BEGIN { printf "%.2f", a / b }')"
    echo
    echo "switchyard, top $TOP by inclusive cost:"
    callgrind_annotate --inclusive=yes --threshold=100 "$GW_FILE" 2>/dev/null |
        grep -E '^ *[0-9,]+ \(' | head -n "$TOP"
    echo
    echo "switchyard, top $TOP by exclusive cost:"
    callgrind_annotate --threshold=100 "$GW_FILE" 2>/dev/null |
        grep -E '^ *[0-9,]+ \(' | head -n "$TOP"
} | tee "$OUT/report.txt"
log "callgrind files and report in $OUT"
