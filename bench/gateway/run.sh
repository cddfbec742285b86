#!/usr/bin/env bash
# bench/gateway/run.sh — what Switchyard costs on top of the worker it fronts, in one run.
#
# Part 1, non-streamed POST /v1/chat/completions with wrk (bench/gateway/chat.lua: a 226-byte
# chat request, the same `Authorization: Bearer` header to every target), against six
# targets that all end at the SAME upstream:
#   direct      nginx returning a static chat.completion JSON (with `usage`): the upstream itself
#   nginx hop   a second nginx reverse-proxying to that upstream (upstream block with keepalive,
#               proxy_http_version 1.1, Connection ""): what a well-configured plain hop costs
#   stack hop   src/bin/stack_hop.rs: a pass-through proxy on Switchyard's own HTTP stack (axum
#               server, hyper-util pooled client), no gateway logic: the stack's ceiling
#   hyper hop   src/bin/hyper_hop.rs: the same pass-through served by hyper directly (a tokio
#               accept loop, hyper-util's auto connection builder, a service_fn), no axum
#   pingora hop pingora_hop/ (its own cargo project, outside the workspace): the same
#               pass-through on Cloudflare's Pingora (ProxyHttp to one HttpPeer, its keep-alive
#               pool); skipped with PINGORA=0
#   switchyard  `switchyard serve` with one [[workers]] entry, runtime "openai", at that upstream;
#               its full request path runs (auth, shape, admit/reserve, route, upstream, settle,
#               usage ledger in SQLite) under a tier whose limits the benchmark cannot reach
# Each target is measured at c=1 (latency) and c=$HIGH_C (saturation), for $ROUNDS rounds of
# $DURATION s, targets interleaved (their order rotates every round); the figures are MEDIANS
# of the rounds. Any non-2xx answer or socket error voids the run. Besides wrk's req/s and
# latency, the CPU time each server process used (from /proc/<pid>/task/*/schedstat) is
# divided by the requests served: CPU µs per request is the figure that other load on a
# shared machine disturbs least. Before any timing, each target must answer a non-streamed POST
# with the upstream's body; whether each keeps an HTTP/1.1 connection alive and answers HTTP/2
# with prior knowledge (h2c) is probed and reported, not required.
#
# Part 2, streamed time-to-first-token: `switchyard sim` (a SIMULATED worker: 5 ms prefill,
# 5 ms per token, 8 tokens) called directly and through a second `switchyard serve` with the
# sim as a runtime = "vllm" worker. The `ttft` binary (this crate) sends sequential streamed
# requests twice: "paced" ($TTFT_REQUESTS per side, alternating in ABBA pairs, 50 ms idle before
# each: the headline figure) and "back to back" ($TTFT_B2B_REQUESTS per side, in ABBA blocks so
# that each side's requests follow each other on one connection, no idle time), which exposes
# Nagle/delayed-ACK stalls on servers that do not set TCP_NODELAY (see README.md).
#
# CPU pinning (PIN=1, the default): this box has 2 cores shared with other work. Everything
# that serves (both nginx instances, both switchyard instances, the sim) runs on CPU 0 and
# every load generator (wrk, ttft) on CPU 1. Unpinned, wrk and the servers migrate and contend
# for the same core and the saturated figures swing more between rounds; pinned, each system
# under test (upstream alone, hop + upstream, switchyard + upstream) gets the same single core,
# so saturated req/s compare CPU cost per request on equal terms and the load generator never
# steals from the servers. Switchyard's tokio runtime then sees one CPU and runs one worker
# thread, like nginx's one worker process. nginx: worker_processes 1 for both roles (one core
# for the servers: a second worker would only contend with the other process on that core).
# PIN=0 runs unpinned, with worker_processes 2.
#
# Output: a table on stdout and the same figures as JSON in bench/out/gateway-<UTC time>.json.
# PERF=1 adds one profiled saturated run of switchyard (perf record -g) and writes the top of
# `perf report` to bench/out/gateway-<UTC time>-perf.txt.
# Knobs (environment): ROUNDS=5 DURATION=5 HIGH_C=64 TTFT_REQUESTS=300 TTFT_B2B_REQUESTS=100 LATENCY_ROUNDS=3000
# PIN=1 PERF=0 PINGORA=1; CARGO_TARGET_DIR is honoured (the Pingora hop is built into it too;
# without it, into pingora_hop/target); BENCH_COMMIT names the code when it is not a git
# checkout. Only 127.0.0.1 is ever targeted; every wrk run is time-bounded; every process
# started here is stopped on exit. About 7 minutes after the release builds (ROUNDS=3: 5).
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
HIGH_C=${HIGH_C:-64}
TTFT_REQUESTS=${TTFT_REQUESTS:-300}
TTFT_B2B_REQUESTS=${TTFT_B2B_REQUESTS:-100}
LATENCY_ROUNDS=${LATENCY_ROUNDS:-3000}
PIN=${PIN:-1}
PERF=${PERF:-0}
PINGORA=${PINGORA:-1}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT_DIR="$ROOT/bench/out"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_JSON="$OUT_DIR/gateway-$STAMP.json"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------
# Tools
# shellcheck source=bench/lib.sh
source "$HERE/../lib.sh"
need=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v taskset >/dev/null || need+=(util-linux)
command -v pgrep >/dev/null || need+=(procps)
if [[ $PERF == 1 ]] && ! command -v perf >/dev/null; then need+=(linux-perf); fi
# Pingora compresses with zlib-ng (libz-ng-sys), which is built with cmake.
if [[ $PINGORA == 1 ]] && ! command -v cmake >/dev/null; then need+=(cmake); fi
apt_install "${need[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ $PIN == 1 && $(nproc) -ge 2 ]]; then
    SRV=(taskset -c 0)
    GEN=(taskset -c 1)
    NGINX_WORKERS=1
    PINNING="servers on CPU 0, load generators on CPU 1"
else
    SRV=()
    GEN=()
    NGINX_WORKERS=2
    PINNING="none"
fi

log "building (release)"
(cd "$ROOT" && cargo build --release --quiet -p switchyard -p switchyard-bench-gateway)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SWITCHYARD="$TARGET_DIR/release/switchyard"
TTFT="$TARGET_DIR/release/ttft"
LATENCY="$TARGET_DIR/release/latency"
STACK_HOP="$TARGET_DIR/release/stack_hop"
HYPER_HOP="$TARGET_DIR/release/hyper_hop"
if [[ $PINGORA == 1 ]]; then
    # Its own project and lock file (pingora_hop/Cargo.toml has an empty [workspace]), so that
    # the workspace never compiles Pingora; the first build takes a few minutes.
    log "building pingora_hop (release)"
    (cd "$ROOT" && cargo build --release --quiet --manifest-path "$HERE/pingora_hop/Cargo.toml")
    PINGORA_HOP="${CARGO_TARGET_DIR:-$HERE/pingora_hop/target}/release/pingora_hop"
fi

# ---------------------------------------------------------------------------------------
# Processes, ports, cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")
PIDS=()
NGINX_PIDFILES=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local f p
    for f in "${NGINX_PIDFILES[@]}"; do
        if [[ -s $f ]]; then kill -TERM "$(cat "$f")" 2>/dev/null || true; fi
    done
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for f in "${NGINX_PIDFILES[@]}"; do # nginx daemonizes: its master removes the pid file last
        for _ in $(seq 50); do
            [[ -e $f ]] || break
            sleep 0.1
        done
    done
    if ((rc != 0 && rc != 130)); then
        log "failed (exit $rc); logs kept in $WORK"
    else
        ((rc == 0)) || log "interrupted"
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# pick_port, wait_http: shared with the other benchmarks.

# cpu_ns PID...: CPU time used so far by these processes, all threads, in ns.
cpu_ns() {
    local total=0 p f v
    for p in "$@"; do
        for f in /proc/"$p"/task/*/schedstat; do
            read -r v _ <"$f" 2>/dev/null && total=$((total + v))
        done
    done
    echo "$total"
}

# nginx_pids PIDFILE: the master and its workers.
nginx_pids() {
    local m
    m=$(cat "$1")
    # shellcheck disable=SC2046 # one pid per word
    echo "$m" $(pgrep -P "$m" || true)
}

KEY="sk-bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export BENCH_KEY=$KEY
export BENCH_BODY_FILE="$HERE/chat.json" # the request body, for chat.lua and `latency`
MODEL=bench-model

pick_port UP_PORT
pick_port HOP_PORT
pick_port GW_PORT
pick_port STACK_PORT
pick_port HYPER_PORT
pick_port PINGORA_PORT
pick_port SIM_PORT
pick_port GW2_PORT

# ---------------------------------------------------------------------------------------
# nginx: the upstream and the hop, two instances with the same process settings
CHAT_JSON='{"id":"chatcmpl-bench0001","object":"chat.completion","created":1735689600,"model":"bench-model","system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant","content":"Because every millisecond it adds is paid by every request, on top of the model itself."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":38,"completion_tokens":19,"total_tokens":57}}'
MODELS_JSON='{"object":"list","data":[{"id":"bench-model","object":"model","created":1735689600,"owned_by":"bench"}]}'

nginx_common() { # $1 = instance dir
    cat <<EOF
worker_processes $NGINX_WORKERS;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
EOF
}

start_nginx() { # $1 = name; the server part of the config on stdin
    local dir="$WORK/$1"
    mkdir -p "$dir/tmp"
    {
        nginx_common "$dir"
        cat
        echo "}"
    } >"$dir/nginx.conf"
    "${SRV[@]}" "$NGINX" -q -c "$dir/nginx.conf" -p "$dir" || die "nginx $1 did not start (see $dir)"
    NGINX_PIDFILES+=("$dir/nginx.pid")
}

start_nginx upstream <<EOF
    server {
        listen 127.0.0.1:$UP_PORT;
        location = /v1/chat/completions { default_type application/json; return 200 '$CHAT_JSON'; }
        location = /v1/models { default_type application/json; return 200 '$MODELS_JSON'; }
        location / { return 404; }
    }
EOF

start_nginx hop <<EOF
    upstream llm {
        server 127.0.0.1:$UP_PORT;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$HOP_PORT;
        location / {
            proxy_pass http://llm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
wait_http "http://127.0.0.1:$UP_PORT/v1/models" "nginx upstream"
wait_http "http://127.0.0.1:$HOP_PORT/v1/models" "nginx hop"

# ---------------------------------------------------------------------------------------
# switchyard in front of the nginx upstream. The metering path runs in full (reserve,
# settle, SQLite ledger in the temp dir) under a tier whose limits the benchmark cannot reach.
gateway_config() { # $1 = listen port, $2 = state file; the [[workers]] entry on stdin
    cat <<EOF
[server]
listen = "127.0.0.1:$1"
max_connections_per_ip = 0      # every client of the bench is 127.0.0.1
max_connections = 10240         # the streams-at-scale runs open up to 10,000 at once

[state]
path = "$2"

[dev_tenant]
tier = "bench"

[tiers.bench]
requests_per_minute = 1000000000
tokens_per_minute = 1000000000000
max_concurrent = 100000
max_tokens = 4096
default_max_tokens = 256

EOF
    cat
}

# max_concurrency: a GPU worker takes a handful of sequences at once and the gateway queues the
# rest (default 8); the static nginx upstream has no such limit, and neither does the nginx hop
# in front of it, so the gateway must not hold requests back that the hop lets through.
gateway_config "$GW_PORT" "$WORK/gateway-state.db" >"$WORK/gateway.toml" <<EOF
[[workers]]
name = "nginx-upstream"
url = "http://127.0.0.1:$UP_PORT"
runtime = "openai"
model = "$MODEL"
max_concurrency = 1024
EOF
SWITCHYARD_DEV_KEY=$KEY SWITCHYARD_LOG=warn "${SRV[@]}" "$SWITCHYARD" serve \
    --config "$WORK/gateway.toml" --listen "127.0.0.1:$GW_PORT" --admin-listen 127.0.0.1:0 \
    >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
wait_http "http://127.0.0.1:$GW_PORT/readyz" "switchyard (HTTP bench)" "$GW_PID"

# The stack hop: a pass-through proxy on Switchyard's own HTTP stack (src/bin/stack_hop.rs), the
# ceiling of what any gateway built on it can reach.
"${SRV[@]}" "$STACK_HOP" --listen "127.0.0.1:$STACK_PORT" --upstream "http://127.0.0.1:$UP_PORT" \
    >"$WORK/stack_hop.log" 2>&1 &
STACK_PID=$!
PIDS+=("$STACK_PID")
wait_http "http://127.0.0.1:$STACK_PORT/v1/models" "stack hop" "$STACK_PID"

# The same pass-through served by hyper without axum (src/bin/hyper_hop.rs), and on Pingora
# (pingora_hop/): is the ceiling axum's, hyper's, or neither?
"${SRV[@]}" "$HYPER_HOP" --listen "127.0.0.1:$HYPER_PORT" --upstream "http://127.0.0.1:$UP_PORT" \
    >"$WORK/hyper_hop.log" 2>&1 &
HYPER_PID=$!
PIDS+=("$HYPER_PID")
wait_http "http://127.0.0.1:$HYPER_PORT/v1/models" "hyper hop" "$HYPER_PID"
PINGORA_PID=""
if [[ $PINGORA == 1 ]]; then
    # Its runtime is sized like the stack hop's tokio runtime: one worker per CPU it may use.
    "${SRV[@]}" "$PINGORA_HOP" --listen "127.0.0.1:$PINGORA_PORT" --upstream "http://127.0.0.1:$UP_PORT" \
        >"$WORK/pingora_hop.log" 2>&1 &
    PINGORA_PID=$!
    PIDS+=("$PINGORA_PID")
    wait_http "http://127.0.0.1:$PINGORA_PORT/v1/models" "pingora hop" "$PINGORA_PID"
fi

declare -A URL=(
    [direct]="http://127.0.0.1:$UP_PORT/v1/chat/completions"
    [nginx_hop]="http://127.0.0.1:$HOP_PORT/v1/chat/completions"
    [stack_hop]="http://127.0.0.1:$STACK_PORT/v1/chat/completions"
    [hyper_hop]="http://127.0.0.1:$HYPER_PORT/v1/chat/completions"
    [pingora_hop]="http://127.0.0.1:$PINGORA_PORT/v1/chat/completions"
    [switchyard]="http://127.0.0.1:$GW_PORT/v1/chat/completions"
)
TARGETS=(direct nginx_hop stack_hop hyper_hop)
if [[ $PINGORA == 1 ]]; then TARGETS+=(pingora_hop); fi
TARGETS+=(switchyard)
UP_PIDS=$(nginx_pids "$WORK/upstream/nginx.pid")
HOP_PIDS=$(nginx_pids "$WORK/hop/nginx.pid")
declare -A PROXY_PIDS=([direct]="" [nginx_hop]="$HOP_PIDS" [stack_hop]="$STACK_PID" [hyper_hop]="$HYPER_PID"
    [pingora_hop]="$PINGORA_PID" [switchyard]="$GW_PID")

# Every target must give the same, complete answer before it is timed: a non-streamed POST over
# HTTP/1.1 that returns the upstream's body. Then two probes that are reported, not required:
# does a second request reuse the first one's connection (HTTP/1.1 keep-alive), and does the
# target answer the same POST over HTTP/2 with prior knowledge (h2c)?
CHAT_REQ='{"model":"bench-model","messages":[{"role":"user","content":"hi"}],"max_tokens":64}'
CHAT_OK='.object == "chat.completion" and .usage.total_tokens == 57 and (.choices[0].message.content | length > 0)'
: >"$WORK/correctness.jsonl"
for t in "${TARGETS[@]}"; do
    resp=$(curl -sS --max-time 5 -w '\n%{http_code}' -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' -d "$CHAT_REQ" "${URL[$t]}")
    code=${resp##*$'\n'}
    json=${resp%$'\n'*}
    [[ $code == 200 ]] || die "$t answered HTTP $code: $json"
    jq -e "$CHAT_OK" <<<"$json" >/dev/null || die "$t answered an unexpected body: $json"
    # Two requests in one curl: the second opens no connection if the first was kept alive.
    connects=$(curl -sS --max-time 5 -o /dev/null -o /dev/null -w '%{http_code}:%{num_connects} ' \
        -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$CHAT_REQ" \
        "${URL[$t]}" "${URL[$t]}" 2>/dev/null || true)
    keepalive=false
    [[ $connects == "200:1 200:0 " ]] && keepalive=true
    h2c=false
    resp=$(curl -sS --max-time 5 --http2-prior-knowledge -w '\n%{http_code} %{http_version}' \
        -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$CHAT_REQ" \
        "${URL[$t]}" 2>/dev/null || true)
    if [[ ${resp##*$'\n'} == "200 2" ]] && jq -e "$CHAT_OK" <<<"${resp%$'\n'*}" >/dev/null 2>&1; then
        h2c=true
    fi
    jq -nc --arg t "$t" --argjson ka "$keepalive" --argjson h2c "$h2c" \
        '{target: $t, http1_post: true, http1_keepalive: $ka, h2c_post: $h2c}' >>"$WORK/correctness.jsonl"
    log "$(printf '%-12s' "$t") POST over HTTP/1.1: upstream body; keep-alive: $keepalive; h2c: $h2c"
done
ready="direct :$UP_PORT, nginx hop :$HOP_PORT, stack hop :$STACK_PORT, hyper hop :$HYPER_PORT"
if [[ $PINGORA == 1 ]]; then ready+=", pingora hop :$PINGORA_PORT"; fi
log "targets ready: $ready, switchyard :$GW_PORT (pinning: $PINNING)"

# ---------------------------------------------------------------------------------------
# Part 1: wrk rounds
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

run_wrk() { # target concurrency seconds -> the WRKJSON object, with CPU per request, on stdout
    local target=$1 c=$2 secs=$3 out line
    local proxy_pids=${PROXY_PIDS[$target]}
    local up0 px0 up1 px1
    # shellcheck disable=SC2086 # pid lists are meant to split
    up0=$(cpu_ns $UP_PIDS) px0=$(cpu_ns $proxy_pids)
    out=$("${GEN[@]}" wrk -t1 -c"$c" -d"${secs}s" --timeout 5s -s "$HERE/chat.lua" "${URL[$target]}" 2>&1) ||
        die "wrk against $target failed: $out"
    # shellcheck disable=SC2086
    up1=$(cpu_ns $UP_PIDS) px1=$(cpu_ns $proxy_pids)
    line=$(grep '^WRKJSON ' <<<"$out" | head -n1)
    [[ -n $line ]] || die "wrk against $target printed no result: $out"
    line=${line#WRKJSON }
    jq -e '.requests > 0 and ([.errors[]] | add) == 0' <<<"$line" >/dev/null ||
        die "wrk against $target (c=$c) saw errors or no requests: $line"
    jq -c --argjson up "$((up1 - up0))" --argjson px "$((px1 - px0))" '
        . + { upstream_cpu_us_per_req: ($up / 1000 / .requests * 100 | round / 100),
              proxy_cpu_us_per_req: ($px / 1000 / .requests * 100 | round / 100) }' <<<"$line"
}

log "warm-up: 2 s per target at c=$HIGH_C"
for t in "${TARGETS[@]}"; do run_wrk "$t" "$HIGH_C" 2 >/dev/null; done

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= ROUNDS; r++)); do
    # Rotate the order so that no target always runs first or last in a round.
    order=()
    for i in "${!TARGETS[@]}"; do order+=("${TARGETS[$(((i + r - 1) % ${#TARGETS[@]}))]}"); done
    for c in 1 "$HIGH_C"; do
        for t in "${order[@]}"; do
            res=$(run_wrk "$t" "$c" "$DURATION")
            jq -c --arg t "$t" --argjson c "$c" --argjson r "$r" '{target: $t, c: $c, round: $r} + .' <<<"$res" >>"$RESULTS"
            log "round $r/$ROUNDS c=$c $(printf '%-11s' "$t") $(jq -r '"\(.rps | floor) req/s  p50 \(.p50_us) us  p99 \(.p99_us) us  cpu/req: proxy \(.proxy_cpu_us_per_req) us, upstream \(.upstream_cpu_us_per_req) us"' <<<"$res")"
        done
    done
done

# Part 1b: the same request at c=1, to every target in turn (order rotating each round), so
# that the drift of this machine (an idle core's wake-up cost changes from one 5 s window to the
# next) falls on both sides of each difference: `latency` reports each hop's median per-round
# difference to direct, the steadier figure for "added p50 at c=1".
log "paired c=1 latency: $LATENCY_ROUNDS rounds, one request per target each"
latency_targets=()
for t in "${TARGETS[@]}"; do latency_targets+=(--target "$t=${URL[$t]}"); done # direct first: the baseline
"${GEN[@]}" "$LATENCY" --body-file "$BENCH_BODY_FILE" --rounds "$LATENCY_ROUNDS" --json "$WORK/latency.json" \
    "${latency_targets[@]}" >"$WORK/latency.txt" || die "latency failed: $(cat "$WORK/latency.txt")"

PERF_TXT=""
if [[ $PERF == 1 ]]; then
    PERF_TXT="$OUT_DIR/gateway-$STAMP-perf.txt"
    mkdir -p "$OUT_DIR"
    log "profiling switchyard: one more ${DURATION} s run at c=$HIGH_C under perf record -g"
    perf record -q -F 999 -g -p "$GW_PID" -o "$WORK/perf.data" -- sleep "$DURATION" 2>"$WORK/perf.log" &
    PERF_PID=$!
    PIDS+=("$PERF_PID")
    run_wrk switchyard "$HIGH_C" "$DURATION" >/dev/null
    wait "$PERF_PID" || die "perf record failed: $(cat "$WORK/perf.log")"
    {
        echo "# perf profile of switchyard at c=$HIGH_C, $STAMP (self time, top symbols)"
        perf report -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
            awk '/%/ && n++ < 60' | cut -c1-200
    } >"$PERF_TXT"
fi

# ---------------------------------------------------------------------------------------
# Part 2: streamed TTFT through switchyard, against the simulated worker
cat >"$WORK/sim.toml" <<EOF
model = "sim-small"
prefill_base_ms = 5.0
prefill_per_token_ms = 0.0
decode_ms_per_token = 5.0
EOF
"${SRV[@]}" "$SWITCHYARD" sim --listen "127.0.0.1:$SIM_PORT" --config "$WORK/sim.toml" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
PIDS+=("$SIM_PID")
wait_http "http://127.0.0.1:$SIM_PORT/health" "switchyard sim" "$SIM_PID"

gateway_config "$GW2_PORT" "$WORK/gateway-sim-state.db" >"$WORK/gateway-sim.toml" <<EOF
[[workers]]
name = "sim"
url = "http://127.0.0.1:$SIM_PORT"
runtime = "vllm"
model = "sim-small"
EOF
SWITCHYARD_DEV_KEY=$KEY SWITCHYARD_LOG=warn "${SRV[@]}" "$SWITCHYARD" serve \
    --config "$WORK/gateway-sim.toml" --listen "127.0.0.1:$GW2_PORT" --admin-listen 127.0.0.1:0 \
    >"$WORK/gateway-sim.log" 2>&1 &
GW2_PID=$!
PIDS+=("$GW2_PID")
wait_http "http://127.0.0.1:$GW2_PORT/readyz" "switchyard (TTFT bench)" "$GW2_PID"

run_ttft() { # name requests gap_ms order
    log "streamed TTFT ($1): $2 requests per side, sequential, ABBA $4, $3 ms idle before each"
    SWITCHYARD_DEV_KEY=$KEY "${GEN[@]}" "$TTFT" --direct "http://127.0.0.1:$SIM_PORT" \
        --gateway "http://127.0.0.1:$GW2_PORT" --model sim-small --requests "$2" --gap-ms "$3" \
        --order "$4" --stall-ms 30 \
        --warmup 20 --max-tokens 8 --json "$WORK/ttft-$1.json" --samples "$WORK/ttft-$1.csv" \
        >"$WORK/ttft-$1.txt" || die "ttft ($1) failed"
}
run_ttft paced "$TTFT_REQUESTS" 50 pairs
run_ttft back_to_back "$TTFT_B2B_REQUESTS" 0 blocks
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------
# Report
mkdir -p "$OUT_DIR"
if [[ -n ${BENCH_COMMIT:-} ]]; then
    COMMIT=$BENCH_COMMIT # e.g. when run from an exported snapshot of a commit
else
    COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -n1) ]]; then COMMIT+="-dirty"; fi
fi

jq -s \
    --arg stamp "$STAMP" --arg commit "$COMMIT" --arg pinning "$PINNING" \
    --arg kernel "$(uname -r)" --argjson nproc "$(nproc)" \
    --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" --arg perf "$PERF_TXT" \
    --argjson rounds "$ROUNDS" --argjson duration "$DURATION" --argjson high "$HIGH_C" \
    --argjson nginx_workers "$NGINX_WORKERS" \
    --argjson targets "$(printf '%s\n' "${TARGETS[@]}" | jq -R . | jq -sc .)" \
    --slurpfile correctness "$WORK/correctness.jsonl" \
    --slurpfile paced "$WORK/ttft-paced.json" --slurpfile b2b "$WORK/ttft-back_to_back.json" \
    --slurpfile latency "$WORK/latency.json" '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                       else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def r3: . * 1000 | round / 1000;
    . as $rows
    | def cell($t; $c): [$rows[] | select(.target == $t and .c == $c)]
        | { rps: ([.[].rps] | median), p50_us: ([.[].p50_us] | median), p99_us: ([.[].p99_us] | median),
            proxy_cpu_us_per_req: ([.[].proxy_cpu_us_per_req] | median),
            upstream_cpu_us_per_req: ([.[].upstream_cpu_us_per_req] | median),
            rounds: [.[] | {round, rps, p50_us, p99_us, proxy_cpu_us_per_req, upstream_cpu_us_per_req, requests}] };
      def target($t): { "c1": cell($t; 1), ("c\($high)"): cell($t; $high) };
      (reduce $targets[] as $t ({}; . + {($t): target($t)})) as $http
    | ("c\($high)") as $hk
    | def ratio($a; $b): if $b == null or $b <= 0 or $a == null then null else $a / $b | r3 end;
      def per_round($a; $b):
        [range(1; $rounds + 1) as $r
         | ([$rows[] | select(.target == $a and .c == $high and .round == $r)][0].rps
            / [$rows[] | select(.target == $b and .c == $high and .round == $r)][0].rps) | r3];
      def added($t): $latency[0].targets[$t].added_paired_median_us;
      # A hop measured against another: req/s at c=high, proxy CPU per request at c=high, wrk p50
      # at c=1, and the paired c=1 latency added over direct.
      def against($a; $b): {
        "rps_c\($high)": ratio($http[$a][$hk].rps; $http[$b][$hk].rps),
        "proxy_cpu_us_per_req_c\($high)": ratio($http[$a][$hk].proxy_cpu_us_per_req; $http[$b][$hk].proxy_cpu_us_per_req),
        p50_us_c1: ratio($http[$a].c1.p50_us; $http[$b].c1.p50_us),
        added_paired_median_us_c1: ratio(added($a); added($b)) };
      def alternative($t): {
        "rps_c\($high)": $http[$t][$hk].rps, "proxy_cpu_us_per_req_c\($high)": $http[$t][$hk].proxy_cpu_us_per_req,
        p50_us_c1: $http[$t].c1.p50_us, added_p50_us_c1: ($http[$t].c1.p50_us - $http.direct.c1.p50_us),
        added_paired_median_us_c1: added($t),
        over_stack_hop: against($t; "stack_hop"), over_nginx_hop: against($t; "nginx_hop"),
        "rps_c\($high)_over_stack_hop_per_round": per_round($t; "stack_hop") }
        | .lifts_stack_ceiling_by_1_3x = (.over_stack_hop["rps_c\($high)"] >= 1.3);
      (reduce ($correctness[] | {(.target): del(.target)}) as $x ({}; . + $x)) as $checks
    | {
        timestamp: $stamp, commit: $commit,
        machine: { nproc: $nproc, kernel: $kernel, loadavg_start: $load_start, loadavg_end: $load_end,
                   note: "shared, noisy machine" },
        setup: { rounds: $rounds, seconds_per_run: $duration, concurrency: [1, $high], pinning: $pinning,
                 nginx_worker_processes: $nginx_workers, request_body_bytes: $rows[0].body_bytes,
                 targets: $targets,
                 statistic: "median across rounds", perf_report: (if $perf == "" then null else $perf end) },
        http: $http,
        correctness: $checks,
        stack_alternatives: (reduce ($targets[] | select(. == "hyper_hop" or . == "pingora_hop")) as $t
                               ({}; . + {($t): alternative($t)})),
        summary: {
          saturated_rps_switchyard_over_nginx_hop: ($http.switchyard[$hk].rps / $http.nginx_hop[$hk].rps | r3),
          saturated_rps_switchyard_over_nginx_hop_per_round: per_round("switchyard"; "nginx_hop"),
          saturated_rps_switchyard_over_stack_hop: ($http.switchyard[$hk].rps / $http.stack_hop[$hk].rps | r3),
          saturated_rps_stack_hop_over_nginx_hop: ($http.stack_hop[$hk].rps / $http.nginx_hop[$hk].rps | r3),
          proxy_cpu_us_per_req_stack_hop: $http.stack_hop[$hk].proxy_cpu_us_per_req,
          saturated_rps_nginx_hop_over_direct: ($http.nginx_hop[$hk].rps / $http.direct[$hk].rps | r3),
          proxy_cpu_us_per_req_switchyard: $http.switchyard[$hk].proxy_cpu_us_per_req,
          proxy_cpu_us_per_req_nginx_hop: $http.nginx_hop[$hk].proxy_cpu_us_per_req,
          proxy_cpu_per_req_switchyard_over_nginx_hop:
            ($http.switchyard[$hk].proxy_cpu_us_per_req / $http.nginx_hop[$hk].proxy_cpu_us_per_req | r3),
          added_p50_us_c1_switchyard: ($http.switchyard.c1.p50_us - $http.direct.c1.p50_us),
          added_p50_us_c1_nginx_hop: ($http.nginx_hop.c1.p50_us - $http.direct.c1.p50_us),
          added_paired_median_us_c1_switchyard: $latency[0].targets.switchyard.added_paired_median_us,
          added_paired_median_us_c1_stack_hop: $latency[0].targets.stack_hop.added_paired_median_us,
          added_paired_median_us_c1_nginx_hop: $latency[0].targets.nginx_hop.added_paired_median_us,
          added_p99_us_c1_switchyard: ($http.switchyard.c1.p99_us - $http.direct.c1.p99_us),
          added_p99_us_c1_nginx_hop: ($http.nginx_hop.c1.p99_us - $http.direct.c1.p99_us),
          ttft_added_p50_us: $paced[0].added.ttft_p50,
          ttft_added_p99_us: $paced[0].added.ttft_p99,
          ttft_added_paired_median_us: $paced[0].added.ttft_paired_median,
          ttft_back_to_back_added_p50_us: $b2b[0].added.ttft_p50,
          ttft_back_to_back_stalled: { direct: $b2b[0].direct.stalled, gateway: $b2b[0].gateway.stalled,
                                       of: $b2b[0].requests_per_side, above_ms: $b2b[0].stall_ms },
          targets: { saturated_rps_ratio_min: 0.75, added_p50_us_c1_max: 100 }
        },
        latency_c1_paired: $latency[0],
        ttft: { paced: $paced[0], back_to_back: $b2b[0] }
      }
    | .summary.meets_rps_target = (.summary.saturated_rps_switchyard_over_nginx_hop >= 0.75)
    | .summary.meets_latency_target = (.summary.added_p50_us_c1_switchyard <= 100)
    | .summary.meets_latency_target_paired = (.summary.added_paired_median_us_c1_switchyard <= 100)
    ' "$RESULTS" >"$OUT_JSON"

# The table, from the JSON just written.
jq -r --argjson high "$HIGH_C" '
    def pad($n): tostring | (" " * ([$n - length, 0] | max)) + .;
    def rpad($n): tostring | . + (" " * ([$n - length, 0] | max));
    def names: {direct: "direct (nginx upstream)", nginx_hop: "nginx hop -> upstream",
                 stack_hop: "stack hop -> upstream", hyper_hop: "hyper hop -> upstream",
                 pingora_hop: "pingora hop -> upstream", switchyard: "switchyard -> upstream"};
    def short: {direct: "direct", nginx_hop: "nginx hop", stack_hop: "stack hop", hyper_hop: "hyper hop",
                pingora_hop: "pingora hop", switchyard: "switchyard"}[.];
    def yn: if . then "yes" else "no" end;
    def met: if . then "met" else "NOT met" end;
    def sgn: if . >= 0 then "+\(.)" else "\(.)" end;
    def ttft_rows($t):
      ($t | ["direct", "gateway"][] as $s | .[$s] as $x
        | ((if $s == "direct" then "  sim direct" else "  switchyard -> sim" end) | rpad(26))
          + ($x.ttft.p50 | pad(10)) + ($x.ttft.p99 | pad(10)) + ($x.total.p50 | pad(11)) + ($x.total.p99 | pad(11))
          + ("\($x.stalled)/\($t.requests_per_side)" | pad(14)));
    ("c\($high)") as $hk
    | .summary as $s
    | "",
      "Switchyard gateway overhead  \(.timestamp)  commit \(.commit)",
      "machine: \(.machine.nproc) cores, shared and noisy (loadavg \(.machine.loadavg_start) -> \(.machine.loadavg_end)); pinning: \(.setup.pinning)",
      "non-streamed POST /v1/chat/completions, \(.setup.request_body_bytes)-byte body; medians of \(.setup.rounds) rounds x \(.setup.seconds_per_run) s",
      "",
      ("target" | rpad(26)) + ("c" | pad(4)) + ("req/s" | pad(10)) + ("p50 us" | pad(10)) + ("p99 us" | pad(10))
        + ("proxy cpu us/req" | pad(18)) + ("upstream cpu us/req" | pad(21)),
      (. as $r | ["c1", $hk][] as $k | $r.setup.targets[] as $t
        | $r.http[$t][$k] as $x
        | (names[$t] | rpad(26)) + ($k[1:] | pad(4)) + ($x.rps | floor | pad(10)) + ($x.p50_us | pad(10)) + ($x.p99_us | pad(10))
          + (if $t == "direct" then "-" else $x.proxy_cpu_us_per_req end | pad(18)) + ($x.upstream_cpu_us_per_req | pad(21))),
      "",
      "saturated req/s (c=\($high)): switchyard / nginx hop = \($s.saturated_rps_switchyard_over_nginx_hop)  (target >= 0.75: \($s.meets_rps_target | met));  nginx hop / direct = \($s.saturated_rps_nginx_hop_over_direct)",
      "  switchyard / nginx hop by round: \($s.saturated_rps_switchyard_over_nginx_hop_per_round | map(tostring) | join(", "))",
      "  ceiling of the stack: stack hop / nginx hop = \($s.saturated_rps_stack_hop_over_nginx_hop);  switchyard / stack hop = \($s.saturated_rps_switchyard_over_stack_hop)",
      "  alternatives to the stack hop (axum server + hyper-util client), the same pass-through:",
      (.stack_alternatives | to_entries[] | .key as $t | .value as $a
        | "    \($t | short | rpad(12)) req/s at c=\($high): x\($a.over_stack_hop["rps_c\($high)"]) stack hop, x\($a.over_nginx_hop["rps_c\($high)"]) nginx hop (by round vs stack hop: \($a["rps_c\($high)_over_stack_hop_per_round"] | map(tostring) | join(", ")));  lifts the ceiling >= 1.3x: \($a.lifts_stack_ceiling_by_1_3x | yn)",
          "    \("" | rpad(12)) proxy CPU/req at c=\($high): \($a["proxy_cpu_us_per_req_c\($high)"]) us = x\($a.over_stack_hop["proxy_cpu_us_per_req_c\($high)"]) stack hop, x\($a.over_nginx_hop["proxy_cpu_us_per_req_c\($high)"]) nginx hop;  c=1 p50: \($a.p50_us_c1) us = x\($a.over_stack_hop.p50_us_c1) stack hop, x\($a.over_nginx_hop.p50_us_c1) nginx hop;  added at c=1, paired: \($a.added_paired_median_us_c1 | sgn) us"),
      "proxy CPU per request (c=\($high)): switchyard \($s.proxy_cpu_us_per_req_switchyard) us vs nginx hop \($s.proxy_cpu_us_per_req_nginx_hop) us, stack hop \($s.proxy_cpu_us_per_req_stack_hop) us  (x\($s.proxy_cpu_per_req_switchyard_over_nginx_hop))",
      "added p50 at c=1 over direct: switchyard \($s.added_p50_us_c1_switchyard | sgn) us  (target <= 100 us: \($s.meets_latency_target | met));  nginx hop \($s.added_p50_us_c1_nginx_hop | sgn) us",
      "added p99 at c=1 over direct: switchyard \($s.added_p99_us_c1_switchyard | sgn) us;  nginx hop \($s.added_p99_us_c1_nginx_hop | sgn) us",
      "added at c=1, paired (median of per-round differences to direct, \(.latency_c1_paired.rounds) rounds): switchyard \($s.added_paired_median_us_c1_switchyard | sgn) us  (target <= 100 us: \($s.meets_latency_target_paired | met));  stack hop \($s.added_paired_median_us_c1_stack_hop | sgn) us;  nginx hop \($s.added_paired_median_us_c1_nginx_hop | sgn) us",
      "correctness before timing (POST over HTTP/1.1 answered with the upstream body: required; keep-alive, h2c: probed):",
      "  " + ([.correctness | to_entries[] | "\(.key | short): keep-alive \(.value.http1_keepalive | yn), h2c \(.value.h2c_post | yn)"] | join(";  ")),
      "",
      "streamed chat via a SIMULATED worker (5 ms prefill, 5 ms/token, \(.ttft.paced.max_tokens) tokens), sequential, ABBA-interleaved (us):",
      ("" | rpad(26)) + ("TTFT p50" | pad(10)) + ("TTFT p99" | pad(10)) + ("total p50" | pad(11)) + ("total p99" | pad(11))
        + ("TTFT>\(.ttft.paced.stall_ms)ms" | pad(14)),
      "paced: \(.ttft.paced.requests_per_side) requests per side, alternating in pairs, \(.ttft.paced.gap_ms) ms idle before each",
      ttft_rows(.ttft.paced),
      "  TTFT added by switchyard: p50 \(.ttft.paced.added.ttft_p50 | sgn), p99 \(.ttft.paced.added.ttft_p99 | sgn), median of paired differences \(.ttft.paced.added.ttft_paired_median | sgn)",
      "back to back: \(.ttft.back_to_back.requests_per_side) requests per side, in blocks, no idle time (exposes servers without TCP_NODELAY)",
      ttft_rows(.ttft.back_to_back),
      "  TTFT added by switchyard: p50 \(.ttft.back_to_back.added.ttft_p50 | sgn), p99 \(.ttft.back_to_back.added.ttft_p99 | sgn), median of paired differences \(.ttft.back_to_back.added.ttft_paired_median | sgn)",
      (if .setup.perf_report then "", "perf profile: \(.setup.perf_report)" else empty end),
      ""
    ' "$OUT_JSON"
log "JSON: $OUT_JSON"
