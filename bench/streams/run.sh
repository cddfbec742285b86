#!/usr/bin/env bash
# bench/streams/run.sh — many streams open at once through the gateway, and through an nginx hop
# (proxy_buffering off) in front of the same SIMULATED worker: what an open stream costs.
#
# For each N in $STREAMS and each target (switchyard, nginx hop), a fresh target process:
#   1. its RSS when idle (after one request, so that lazy set-up is paid);
#   2. `switchyard bench --concurrency N -n N` streams, each $TOKENS tokens at $DECODE_MS ms per
#      token (the sim decodes every sequence at that pace, no slowdown, no KV limit), so all N
#      are open at once for most of the run; once the sim holds N streams, RSS and CPU time are
#      sampled for $HOLD s while the streams sit between tokens;
#   3. the bench's report: every stream must have its first token and end well (no error);
#   4. RSS $AFTER_S s after the last stream ended, and again after one more request.
# CPU per relayed token is the target's CPU time over the whole bench run divided by the
# completion tokens the bench received: `DECODE_MS=0` measures the relay at full speed.
# Per-stream memory is (RSS open - RSS idle) / N. CPU is the target's user+system time during
# the hold, as a share of one core. The gateway runs as `serve` does (auth, limits, ledger in
# SQLite, metrics); nginx is one worker process. Output: a table, and JSON in
# bench/out/streams-<UTC time>.json. Knobs: STREAMS="1000 5000" TOKENS=40 DECODE_MS=500 HOLD=5
# AFTER_S=5 NGINX=1 (0: the gateway alone) GATEWAY_ENV="" (VAR=value words for the gateway's
# environment, e.g. MALLOC_ARENA_MAX=2). Each process gets the open-file limit's hard maximum
# (two descriptors per stream through a proxy). Only 127.0.0.1 is used; every process started
# here is stopped on exit.
set -euo pipefail

STREAMS=${STREAMS:-"1000 5000"}
TOKENS=${TOKENS:-40}
DECODE_MS=${DECODE_MS:-500}
HOLD=${HOLD:-5}
AFTER_S=${AFTER_S:-5}
WITH_NGINX=${NGINX:-1}
GATEWAY_ENV=${GATEWAY_ENV:-}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT_DIR="$ROOT/bench/out"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_JSON="$OUT_DIR/streams-$STAMP.json"
KEY=sk-bench-streams-0123456789abcdef

log() { printf '[streams %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need=()
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
if [[ $WITH_NGINX == 1 ]]; then
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
fi
apt_install "${need[@]}"
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
ulimit -n "$(ulimit -Hn)"

log "building (release)"
(cd "$ROOT" && cargo build --release --quiet -p switchyard)
SWITCHYARD="${CARGO_TARGET_DIR:-$ROOT/target}/release/switchyard"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-streams.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -s $WORK/nginx/nginx.pid ]]; then kill -TERM "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true; fi
    if [[ $rc -eq 0 ]]; then rm -rf "$WORK"; else log "logs kept in $WORK"; fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# CPU ticks (user + system) of a process and all its threads.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# The sim: every stream decodes at DECODE_MS per token however many run, with room for all.
pick_port SIM_PORT
cat >"$WORK/sim.toml" <<EOF
model = "sim-small"
prefill_base_ms = 5.0
prefill_per_token_ms = 0.0
decode_ms_per_token = $DECODE_MS
decode_slowdown_per_seq = 0.0
kv_capacity_tokens = 1000000000
max_queue = 100000
natural_tokens = 100000
EOF
"$SWITCHYARD" sim --listen "127.0.0.1:$SIM_PORT" --config "$WORK/sim.toml" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
PIDS+=("$SIM_PID")
wait_http "http://127.0.0.1:$SIM_PORT/health" "switchyard sim" "$SIM_PID"

start_switchyard() { # $1 = port; sets TARGET_PID
    cat >"$WORK/gateway.toml" <<EOF
[server]
max_connections_per_ip = 0
max_connections = 30000

[state]
path = "$WORK/gateway-$1.db"

[dev_tenant]
tier = "bench"

[tiers.bench]
requests_per_minute = 1000000000
tokens_per_minute = 1000000000000
max_concurrent = 100000
max_tokens = 4096

[[workers]]
name = "sim"
url = "http://127.0.0.1:$SIM_PORT"
runtime = "vllm"
model = "sim-small"
max_concurrency = 100000
EOF
    # shellcheck disable=SC2086 # GATEWAY_ENV is a list of VAR=value words
    env $GATEWAY_ENV SWITCHYARD_DEV_KEY=$KEY SWITCHYARD_LOG=warn "$SWITCHYARD" serve --config "$WORK/gateway.toml" \
        --listen "127.0.0.1:$1" --admin-listen 127.0.0.1:0 >"$WORK/gateway-$1.log" 2>&1 &
    TARGET_PID=$!
    PIDS+=("$TARGET_PID")
    wait_http "http://127.0.0.1:$1/readyz" "switchyard" "$TARGET_PID"
}

start_nginx() { # $1 = port; sets TARGET_PID (the worker process)
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 100000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 60000; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    upstream llm { server 127.0.0.1:$SIM_PORT; keepalive 1024; }
    server {
        listen 127.0.0.1:$1;
        location / {
            proxy_pass http://llm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 600s;
        }
    }
}
EOF
    "$NGINX_BIN" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >/dev/null 2>&1 || die "nginx did not start"
    wait_http "http://127.0.0.1:$1/v1/models" "nginx hop"
    TARGET_PID=$(pgrep -P "$(cat "$WORK/nginx/nginx.pid")" | head -1)
}

stop_target() { # $1 = target name
    if [[ $1 == nginx ]]; then
        kill -TERM "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
        sleep 1
    else
        kill -TERM "$TARGET_PID" 2>/dev/null || true
        wait "$TARGET_PID" 2>/dev/null || true
    fi
}

one_request() { # $1 = port
    curl -sf -o /dev/null --max-time 30 "http://127.0.0.1:$1/v1/chat/completions" \
        -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        -d '{"model":"sim-small","messages":[{"role":"user","content":"hi"}],"max_tokens":2}' ||
        die "a single request failed"
}

sim_in_flight() { curl -sf "http://127.0.0.1:$SIM_PORT/sim/stats" | jq -r .in_flight; }

RESULTS=()
TARGETS=(switchyard)
[[ $WITH_NGINX == 1 ]] && TARGETS+=(nginx)
for n in $STREAMS; do
    for target in "${TARGETS[@]}"; do
        pick_port PORT
        "start_$target" "$PORT"
        one_request "$PORT"
        sleep 2
        idle=$(rss_kb "$TARGET_PID")
        log "$target, $n streams: idle RSS $((idle / 1024)) MB"
        run_t0=$(cpu_ticks "$TARGET_PID")
        SWITCHYARD_API_KEY=$KEY "$SWITCHYARD" bench --url "http://127.0.0.1:$PORT" --model sim-small \
            --concurrency "$n" -n "$n" --max-tokens "$TOKENS" --ignore-eos --timeout 600 \
            --json --quiet >"$WORK/bench-$target-$n.json" 2>"$WORK/bench-$target-$n.log" &
        BENCH_PID=$!
        # Until the sim holds all n streams (60 s at most), then the hold.
        for _ in $(seq 600); do
            [[ $(sim_in_flight) -ge $n ]] && break
            kill -0 "$BENCH_PID" 2>/dev/null || break
            sleep 0.1
        done
        open_at=$(sim_in_flight)
        t0=$(cpu_ticks "$TARGET_PID")
        peak=0
        for _ in $(seq $((HOLD * 5))); do
            r=$(rss_kb "$TARGET_PID")
            ((r > peak)) && peak=$r
            sleep 0.2
        done
        t1=$(cpu_ticks "$TARGET_PID")
        wait "$BENCH_PID" || log "bench against $target exited non-zero (see its report)"
        run_t1=$(cpu_ticks "$TARGET_PID")
        sleep "$AFTER_S"
        after=$(rss_kb "$TARGET_PID")
        # Descriptors still open: mostly idle upstream connections the pool keeps.
        fds_after=$(find "/proc/$TARGET_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        one_request "$PORT"
        after_one=$(rss_kb "$TARGET_PID")
        report="$WORK/bench-$target-$n.json"
        ok=$(jq -r '.requests.ok // 0' "$report")
        failed=$(jq -r '.requests.failed // 0' "$report")
        first=$(jq -r '.latency_ms.ttft.count // 0' "$report")
        errors=$(jq -c '.requests.errors // {}' "$report")
        # CPU per relayed token over the whole run (set-up of the N requests included: at
        # thousands of tokens a stream it is lost in the rounding).
        relayed=$(jq -r '.tokens.completion // 0' "$report")
        per_token=$(awk -v a="$run_t0" -v b="$run_t1" -v hz="$hz" -v t="$relayed" \
            'BEGIN { if (t > 0) printf "%.2f", (b - a) / hz * 1e6 / t; else print "null" }')
        # A worker taken out of rotation shows as a state change in the gateway's log.
        changes=0
        if [[ $target == switchyard ]]; then
            changes=$(grep -c "worker state changed" "$WORK/gateway-$PORT.log" || true)
        fi
        cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$HOLD" 'BEGIN {printf "%.1f", 100 * (b - a) / hz / s}')
        per=$(awk -v p="$peak" -v i="$idle" -v n="$n" 'BEGIN {printf "%.1f", (p - i) / n}')
        log "$target, $n streams: $open_at open, RSS $((peak / 1024)) MB ($per KB each), CPU $cpu% while open, $per_token us per relayed token ($relayed tokens); after: $((after / 1024)) MB, $fds_after descriptors; ok $ok, failed $failed $errors; worker state changes $changes"
        RESULTS+=("$(jq -n --arg target "$target" --argjson n "$n" --argjson open "$open_at" \
            --argjson idle "$idle" --argjson peak "$peak" --argjson after "$after" \
            --argjson after_one "$after_one" --argjson fds "$fds_after" --argjson per "$per" --argjson cpu "$cpu" \
            --argjson ok "$ok" --argjson failed "$failed" --argjson first "$first" --argjson errors "$errors" --argjson changes "$changes" \
            --argjson relayed "$relayed" --argjson per_token "$per_token" \
            '{target: $target, streams: $n, open_at_sim: $open, rss_idle_kb: $idle,
              rss_open_kb: $peak, kb_per_stream: $per, cpu_pct_open: $cpu,
              rss_after_kb: $after, rss_after_one_more_kb: $after_one, fds_after: $fds,
              ok: $ok, failed: $failed, errors: $errors, worker_state_changes: $changes, first_tokens: $first,
              tokens_relayed: $relayed, cpu_us_per_token: $per_token}')")
        stop_target "$target"
    done
done

mkdir -p "$OUT_DIR"
printf '%s\n' "${RESULTS[@]}" | jq -s --arg commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --arg at "$STAMP" --argjson tokens "$TOKENS" --argjson decode "$DECODE_MS" \
    '{at: $at, commit: $commit, tokens: $tokens, decode_ms: $decode, simulated_worker: true, runs: .}' >"$OUT_JSON"

printf '\nstreams through each target, %s tokens at %s ms each (SIMULATED worker)\n' "$TOKENS" "$DECODE_MS"
printf '%-10s %7s %9s %9s %10s %9s %9s %8s %8s %10s\n' TARGET STREAMS IDLE_MB OPEN_MB KB/STREAM CPU%OPEN AFTER_MB OK FAILED US/TOKEN
jq -r '.runs[] | [.target, .streams, (.rss_idle_kb/1024|floor), (.rss_open_kb/1024|floor), .kb_per_stream,
    .cpu_pct_open, (.rss_after_kb/1024|floor), .ok, .failed, .cpu_us_per_token] | @tsv' "$OUT_JSON" |
    awk -F'\t' '{printf "%-10s %7s %9s %9s %10s %9s %9s %8s %8s %10s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}'
printf '\nJSON: %s\n' "$OUT_JSON"
