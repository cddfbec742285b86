#!/usr/bin/env bash
# bench/chaos/run.sh — does Switchyard hold its SLA while the fleet misbehaves? One run, two phases.
#
# A fleet of 12 SIMULATED workers (`switchyard sim` processes, one per worker) on 3 simulated
# providers of different speed (A fast, B medium, C slower and cheaper) serves open-loop streamed
# chat load at ~$LOAD of the fleet's capacity (computed below from the sims' timing model) for
# $DURATION s, while a fault schedule kills a worker (SIGKILL, restarted later), hangs one,
# slows one 5x, cuts streams mid-way on one and takes a whole provider away for a while. The
# same load (same seed: same arrival times, same max_tokens) and the same schedule run twice:
#   adaptive     `[routing] policy = "adaptive"`: expected-wait routing, retries on another
#                provider under a retry budget, TTFT hedging, passive outlier ejection
#   round_robin  `[routing] policy = "round_robin"`: the naive baseline (next worker passing
#                active health checks; no retry, hedge or passive ejection)
# each with a fresh gateway and freshly started sims. `switchyard bench` drives the load (open
# loop, seeded Poisson arrivals, `--records`: one JSON line per request); `chaos report` (this
# crate's binary) prints both phases side by side and writes bench/out/chaos-<UTC time>.json
# (and the raw records, bench results and gateway logs next to it).
#
# This is a benchmark, not a test: it exits non-zero only when a measurement is invalid (the
# fleet or gateway did not come up, the load generator fell behind its schedule, nothing
# succeeded), never because a target is missed.
#
# Knobs (environment): DURATION=180 (seconds of load per phase; the fault schedule scales with
# it) LOAD=0.70 (share of the computed capacity) TIMEOUT=60 (client timeout per request, s)
# HEDGE_MS=800 (the tier's hedge_after_ms) PROVIDER_FAULT=kill (kill: SIGKILL every worker of
# provider C; hang: make them accept and never answer) PHASES="adaptive round_robin" SEED=1
# BUILD=1 (0: use the release binaries already built, e.g. while the tree does not compile).
# CARGO_TARGET_DIR is honoured; BENCH_COMMIT names the code when it is not a git checkout.
# Everything listens on 127.0.0.1; every process started here is stopped on exit.
set -euo pipefail

DURATION=${DURATION:-180}
LOAD=${LOAD:-0.70}
TIMEOUT=${TIMEOUT:-60}
HEDGE_MS=${HEDGE_MS:-800}
PROVIDER_FAULT=${PROVIDER_FAULT:-kill}
PHASES=${PHASES:-"adaptive round_robin"}
SEED=${SEED:-1}
BUILD=${BUILD:-1}
MIN_TOKENS=64
MAX_TOKENS=128
# The sim counts a chat prompt as ceil(chars / 4) + 3 per message; the load's prompt is 75
# characters, so 22 tokens.
PROMPT="Write a short note about how rail yards sort freight cars into their trains."
PROMPT_TOKENS=22
MODEL=sim-small

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT_DIR="$ROOT/bench/out"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_JSON="$OUT_DIR/chaos-$STAMP.json"

log() { printf '[chaos %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

case $PROVIDER_FAULT in kill | hang) ;; *) die "PROVIDER_FAULT must be kill or hang" ;; esac
for p in $PHASES; do
    case $p in adaptive | round_robin) ;; *) die "PHASES may only name adaptive and round_robin" ;; esac
done
awk -v d="$DURATION" -v l="$LOAD" 'BEGIN { exit !(d >= 20 && l > 0 && l <= 2) }' ||
    die "DURATION must be >= 20 s and LOAD within (0, 2]"

# ---------------------------------------------------------------------------------------
# Tools
# shellcheck source=bench/lib.sh
source "$HERE/../lib.sh"
need=()
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v awk >/dev/null || need+=(gawk)
apt_install "${need[@]}"

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [[ $BUILD == 1 ]]; then
    log "building (release)"
    (cd "$ROOT" && cargo build --release --quiet -p switchyard -p switchyard-bench-chaos)
else
    log "BUILD=0: using the binaries already in $TARGET_DIR/release"
fi
SWITCHYARD="$TARGET_DIR/release/switchyard"
CHAOS="$TARGET_DIR/release/chaos"
awk -v p="$PROMPT" -v t="$PROMPT_TOKENS" 'BEGIN { n = length(p); exit !(int((n + 3) / 4) + 3 == t) }' ||
    die "PROMPT is not $PROMPT_TOKENS tokens by the sim's count"
[[ -x $SWITCHYARD && -x $CHAOS ]] || die "missing $SWITCHYARD or $CHAOS (run with BUILD=1)"

# ---------------------------------------------------------------------------------------
# Processes, ports, cleanup. Sims are started and killed by the fault schedule, which runs in
# a background subshell, so every sim's pid lives in a file under $WORK/pids.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-chaos.XXXXXX")
mkdir -p "$WORK/pids"
PIDS=()

stop_pid() { # pid: TERM, then KILL after 3 s
    local p=$1
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq 30); do
        kill -0 "$p" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
}

stop_sims() {
    local f
    for f in "$WORK"/pids/*.pid; do
        [[ -e $f ]] || continue
        kill -KILL "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done # schedule, switchyard bench, gateway
    stop_sims
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

now_ms() { date +%s%3N; }

KEY="sk-chaos-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# ---------------------------------------------------------------------------------------
# The fleet. Per provider: workers, prefill base ms, decode ms per token (one sequence),
# decode slowdown per extra running sequence, KV cache tokens, price per hour (USD), region.
PROVIDERS=(a b c)
declare -A P_WORKERS=([a]=5 [b]=4 [c]=3)
declare -A P_PREFILL=([a]=40 [b]=70 [c]=120)
declare -A P_DECODE=([a]=18 [b]=24 [c]=32)
declare -A P_SLOWDOWN=([a]=0.05 [b]=0.05 [c]=0.05)
declare -A P_KV=([a]=720 [b]=960 [c]=1200)
declare -A P_PRICE=([a]=2.49 [b]=1.79 [c]=0.89)
declare -A P_REGION=([a]=us-east [b]=eu-west [c]=us-central)

# Capacity from the timing model: a request needs PROMPT + max_tokens of KV, mean
# T = (MIN+MAX)/2 completion tokens, so a worker runs N = floor(KV / (PROMPT + T)) at once;
# at N running, a request takes S = prefill_base + 0.2 ms x PROMPT + T x decode x (1 + s x (N-1))
# (the sim's default prefill_per_token_ms is 0.2), and the worker completes N / S per second.
declare -A W_PROVIDER=() W_PORT=() P_N=() P_S=() P_CAP=()
WORKERS=()
CAPACITY=0
for p in "${PROVIDERS[@]}"; do
    read -r n s cap < <(awk -v kv="${P_KV[$p]}" -v pr="${P_PREFILL[$p]}" -v d="${P_DECODE[$p]}" \
        -v sl="${P_SLOWDOWN[$p]}" -v pt="$PROMPT_TOKENS" -v lo="$MIN_TOKENS" -v hi="$MAX_TOKENS" 'BEGIN {
            t = (lo + hi) / 2; n = int(kv / (pt + t)); s = pr + 0.2 * pt + t * d * (1 + sl * (n - 1));
            printf "%d %.1f %.3f\n", n, s, n / (s / 1000) }')
    P_N[$p]=$n P_S[$p]=$s P_CAP[$p]=$cap
    CAPACITY=$(awk -v c="$CAPACITY" -v k="${P_WORKERS[$p]}" -v x="$cap" 'BEGIN { printf "%.3f", c + k * x }')
    for ((i = 1; i <= P_WORKERS[$p]; i++)); do
        w="$p-$i"
        WORKERS+=("$w")
        W_PROVIDER[$w]=$p
        pick_port "W_PORT[$w]"
        seed=$((SEED * 1000 + ${#WORKERS[@]}))
        cat >"$WORK/$w.toml" <<EOF
# SIMULATED worker $w of simulated provider $p (switchyard sim; not a real model)
model = "$MODEL"
prefill_base_ms = ${P_PREFILL[$p]}.0
decode_ms_per_token = ${P_DECODE[$p]}.0
decode_slowdown_per_seq = ${P_SLOWDOWN[$p]}
kv_capacity_tokens = ${P_KV[$p]}
natural_tokens = 100000
seed = $seed
EOF
    done
done
RATE=$(awk -v c="$CAPACITY" -v l="$LOAD" 'BEGIN { printf "%.2f", c * l }')
CAP_NO_C=$(awk -v c="$CAPACITY" -v k="${P_WORKERS[c]}" -v x="${P_CAP[c]}" 'BEGIN { printf "%.2f", c - k * x }')
for p in "${PROVIDERS[@]}"; do
    log "provider $p: ${P_WORKERS[$p]} workers, prefill ${P_PREFILL[$p]} ms, ${P_DECODE[$p]} ms/token (+${P_SLOWDOWN[$p]}/extra seq), KV ${P_KV[$p]} tokens -> ~${P_N[$p]} at once, ${P_S[$p]} ms each -> ${P_CAP[$p]} req/s per worker"
done
log "fleet capacity ~$CAPACITY req/s; load $LOAD x capacity = $RATE req/s (without provider c: $CAP_NO_C req/s)"

start_sim() { # worker: (re)start its sim on its port; the pid goes to a file
    local w=$1
    "$SWITCHYARD" sim --listen "127.0.0.1:${W_PORT[$w]}" --config "$WORK/$w.toml" \
        >>"$PHASE_DIR/sim-$w.log" 2>&1 &
    echo $! >"$WORK/pids/$w.pid"
    disown $! # its SIGKILL is part of the plan, not news for the job table
}

kill_sim() { # worker: SIGKILL, as a provider reclaiming the machine would
    local f="$WORK/pids/$1.pid"
    if [[ -s $f ]]; then kill -KILL "$(cat "$f")" 2>/dev/null || true; fi
    rm -f "$f"
}

put_faults() { # worker json
    curl -sf -o /dev/null --max-time 2 -X PUT -H 'Content-Type: application/json' \
        -d "$2" "http://127.0.0.1:${W_PORT[$1]}/sim/faults" || log "WARNING: could not set faults on $1"
}

gateway_config() { # policy port state
    cat <<EOF
[server]
listen = "127.0.0.1:$2"
max_connections_per_ip = 0      # every client of the bench is 127.0.0.1

[state]
path = "$3"

[health]
interval_ms = 1000
timeout_ms = 1000
healthy_after = 1
unhealthy_after = 2

[outlier]
base_ejection_ms = 5000

[routing]
policy = "$1"

[dev_tenant]
tier = "chaos"

[tiers.chaos]
requests_per_minute = 1000000000
tokens_per_minute = 1000000000000
max_concurrent = 100000
max_tokens = 4096
default_max_tokens = 256
slo_availability_bp = 9990
slo_ttft_p95_ms = 1500
hedge_after_ms = $HEDGE_MS
EOF
    local w p
    for w in "${WORKERS[@]}"; do
        p=${W_PROVIDER[$w]}
        cat <<EOF

[[workers]]
name = "sim-$w"
url = "http://127.0.0.1:${W_PORT[$w]}"
runtime = "vllm"
model = "$MODEL"
provider = "sim-provider-$p"
region = "${P_REGION[$p]}"
gpu = "simulated"
price_per_hour = ${P_PRICE[$p]}
max_concurrency = ${P_N[$p]}
EOF
    done
}

# ---------------------------------------------------------------------------------------
# The fault schedule, as fractions of DURATION: "start end fault target"
SCHEDULE=(
    "0.10 0.25 kill_worker a-1"
    "0.20 0.40 hang_worker b-1"
    "0.35 0.55 slow_worker_5x a-2"
    "0.50 0.65 cut_streams b-2"
    "0.72 0.87 remove_provider c"
)

fault_event() { # t_ms fault what target action
    printf '{"t_ms":%s,"fault":"%s","what":"%s","target":"%s","action":"%s"}\n' "$1" "$2" "$3" "$4" "$5" \
        >>"$PHASE_DIR/events.jsonl"
    log "  t=$(awk -v t="$1" 'BEGIN { printf "%6.1f", t / 1000 }') s  $2 $3: $5"
}

apply_fault() { # fault what target
    local fault=$1 what=$2 target=$3 w action
    case "$fault/$what" in
        kill_worker/start)
            kill_sim "$target"
            action="SIGKILL sim-$target"
            ;;
        kill_worker/end)
            start_sim "$target"
            action="restart sim-$target"
            ;;
        hang_worker/start)
            put_faults "$target" '{"hang": 1.0}'
            action="sim-$target: every new request hangs (faults.hang = 1.0)"
            ;;
        slow_worker_5x/start)
            put_faults "$target" '{"slow_factor": 5.0}'
            action="sim-$target: all timings x5 (faults.slow_factor = 5.0)"
            ;;
        cut_streams/start)
            put_faults "$target" '{"cut_stream": 1.0, "cut_after_tokens": 16}'
            action="sim-$target: every new stream aborted after 16 tokens (faults.cut_stream = 1.0)"
            ;;
        hang_worker/end | slow_worker_5x/end | cut_streams/end)
            put_faults "$target" '{}'
            action="sim-$target: faults cleared"
            ;;
        remove_provider/start)
            for w in "${WORKERS[@]}"; do
                [[ ${W_PROVIDER[$w]} == "$target" ]] || continue
                if [[ $PROVIDER_FAULT == kill ]]; then kill_sim "$w"; else put_faults "$w" '{"hang": 1.0}'; fi
            done
            action="provider $target gone: $(if [[ $PROVIDER_FAULT == kill ]]; then echo "SIGKILL"; else echo "hang"; fi) all ${P_WORKERS[$target]} of its sims"
            ;;
        remove_provider/end)
            for w in "${WORKERS[@]}"; do
                [[ ${W_PROVIDER[$w]} == "$target" ]] || continue
                if [[ $PROVIDER_FAULT == kill ]]; then start_sim "$w"; else put_faults "$w" '{}'; fi
            done
            action="provider $target back: $(if [[ $PROVIDER_FAULT == kill ]]; then echo "restarted"; else echo "faults cleared on"; fi) its sims"
            ;;
        *) die "unknown fault $fault/$what" ;;
    esac
    fault_event "$(($(now_ms) - T0))" "$fault" "$what" "$target" "$action"
}

run_schedule() { # runs in the background; T0 and PHASE_DIR are set
    local entries=() e at end fault target
    for e in "${SCHEDULE[@]}"; do
        read -r at end fault target <<<"$e"
        entries+=("$(awk -v f="$at" -v d="$DURATION" 'BEGIN { printf "%d", f * d * 1000 }') $fault start $target")
        entries+=("$(awk -v f="$end" -v d="$DURATION" 'BEGIN { printf "%d", f * d * 1000 }') $fault end $target")
    done
    local sorted ms what wait_ms
    sorted=$(printf '%s\n' "${entries[@]}" | sort -n -k1,1)
    while read -r ms fault what target; do
        wait_ms=$((T0 + ms - $(now_ms)))
        if ((wait_ms > 0)); then sleep "$(awk -v w="$wait_ms" 'BEGIN { printf "%.3f", w / 1000 }')"; fi
        apply_fault "$fault" "$what" "$target"
    done <<<"$sorted"
}

# One streamed request through the gateway must come back whole before a phase is timed.
check_stream() { # url
    local body
    body=$(curl -sS -N --max-time 20 -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":8,\"stream\":true}" \
        "$1/v1/chat/completions") || die "the check request through the gateway failed"
    grep -q '^data: \[DONE\]' <<<"$body" || die "the check stream did not end with [DONE]: $body"
}

# ---------------------------------------------------------------------------------------
# Phases
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
PHASE_ARGS=()
GW_PORT=""
for POLICY in $PHASES; do
    PHASE_DIR="$WORK/$POLICY"
    mkdir -p "$PHASE_DIR"
    : >"$PHASE_DIR/events.jsonl"
    log "phase $POLICY: starting ${#WORKERS[@]} simulated workers"
    for w in "${WORKERS[@]}"; do start_sim "$w"; done
    for w in "${WORKERS[@]}"; do
        wait_http "http://127.0.0.1:${W_PORT[$w]}/health" "sim-$w" "$(cat "$WORK/pids/$w.pid")"
    done
    pick_port GW_PORT
    gateway_config "$POLICY" "$GW_PORT" "$PHASE_DIR/state.db" >"$PHASE_DIR/gateway.toml"
    SWITCHYARD_DEV_KEY=$KEY SWITCHYARD_LOG=info "$SWITCHYARD" --log-format json serve \
        --config "$PHASE_DIR/gateway.toml" --admin-listen 127.0.0.1:0 >"$PHASE_DIR/gateway.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_http "http://127.0.0.1:$GW_PORT/readyz" "switchyard serve ($POLICY)" "$GW_PID"
    check_stream "http://127.0.0.1:$GW_PORT"

    T0=$(($(now_ms) + 1000))
    printf '{"policy":"%s","t0_ms":%s}\n' "$POLICY" "$T0" >"$PHASE_DIR/phase.json"
    log "phase $POLICY: $RATE req/s for $DURATION s (open loop, streamed, max_tokens $MIN_TOKENS..$MAX_TOKENS), faults on schedule"
    # Open loop from the phase's time zero, the same seeded schedule in every phase; one JSON
    # line per request in requests.jsonl, the summary in bench.json / bench.txt.
    SWITCHYARD_API_KEY=$KEY SWITCHYARD_LOG=warn "$SWITCHYARD" bench --url "http://127.0.0.1:$GW_PORT" \
        --model "$MODEL" --prompt "$PROMPT" --rate "$RATE" --arrivals poisson --seed "$SEED" \
        --duration "$DURATION" --start-at "$T0" --max-tokens "$MIN_TOKENS-$MAX_TOKENS" \
        --timeout "$TIMEOUT" --records "$PHASE_DIR/requests.jsonl" --output "$PHASE_DIR/bench.json" \
        --quiet >"$PHASE_DIR/bench.txt" 2>"$PHASE_DIR/bench.log" &
    LOAD_PID=$!
    PIDS+=("$LOAD_PID")
    run_schedule &
    SCHED_PID=$!
    PIDS+=("$SCHED_PID")
    wait "$SCHED_PID" || die "the fault schedule failed"
    if ! wait "$LOAD_PID"; then
        # It exits non-zero also when no request succeeded; its records then still say what
        # happened, and the report judges them (such a run is invalid).
        [[ -s $PHASE_DIR/requests.jsonl ]] ||
            die "switchyard bench failed (phase $POLICY): $(cat "$PHASE_DIR/bench.log")"
        log "phase $POLICY: switchyard bench: $(tail -n1 "$PHASE_DIR/bench.log")"
    fi
    log "phase $POLICY: $(jq -r '"\(.requests.sent) requests sent, \(.requests.ok) ok, \(.requests.failed) failed"' \
        "$PHASE_DIR/bench.json" 2>/dev/null || echo "no bench.json")"
    stop_pid "$GW_PID"
    stop_sims
    PIDS=()
    PHASE_ARGS+=(--phase "$POLICY=$PHASE_DIR")
    sleep 1
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------
# Report
mkdir -p "$OUT_DIR"
if [[ -n ${BENCH_COMMIT:-} ]]; then
    COMMIT=$BENCH_COMMIT
else
    COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -n1) ]]; then COMMIT+="-dirty"; fi
fi

fleet_json=$(for p in "${PROVIDERS[@]}"; do
    jq -n --arg p "sim-provider-$p" --arg region "${P_REGION[$p]}" \
        --argjson workers "${P_WORKERS[$p]}" --argjson prefill "${P_PREFILL[$p]}" \
        --argjson decode "${P_DECODE[$p]}" --argjson slowdown "${P_SLOWDOWN[$p]}" \
        --argjson kv "${P_KV[$p]}" --argjson price "${P_PRICE[$p]}" --argjson n "${P_N[$p]}" \
        --argjson s "${P_S[$p]}" --argjson cap "${P_CAP[$p]}" \
        '{provider: $p, region: $region, workers: $workers, prefill_base_ms: $prefill,
          decode_ms_per_token: $decode, decode_slowdown_per_seq: $slowdown, kv_capacity_tokens: $kv,
          price_per_hour: $price, concurrent_requests: $n, request_ms_at_that_concurrency: $s,
          capacity_req_per_s_per_worker: $cap}'
done | jq -s .)
schedule_json=$(for e in "${SCHEDULE[@]}"; do
    read -r at end fault target <<<"$e"
    jq -n --argjson at "$at" --argjson stop "$end" --arg fault "$fault" --arg target "$target" \
        --argjson d "$DURATION" \
        '{fault: $fault, target: $target, start_s: ($at * $d), end_s: ($stop * $d)}'
done | jq -s .)
jq -n --arg stamp "$STAMP" --arg commit "$COMMIT" --argjson nproc "$(nproc)" --arg kernel "$(uname -r)" \
    --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" --argjson fleet "$fleet_json" \
    --argjson schedule "$schedule_json" --argjson capacity "$CAPACITY" --argjson rate "$RATE" \
    --argjson load "$LOAD" --argjson duration "$DURATION" --argjson timeout "$TIMEOUT" \
    --argjson hedge "$HEDGE_MS" --arg provider_fault "$PROVIDER_FAULT" --argjson seed "$SEED" \
    --argjson cap_no_c "$CAP_NO_C" --argjson lo "$MIN_TOKENS" --argjson hi "$MAX_TOKENS" \
    --argjson pt "$PROMPT_TOKENS" '
    { timestamp: $stamp, commit: $commit,
      machine: { nproc: $nproc, kernel: $kernel, loadavg_start: $load_start, loadavg_end: $load_end,
                 note: "shared, noisy machine; gateway, 12 sims and the load generator share its cores" },
      simulated: true,
      fleet: $fleet,
      load: { capacity_req_per_s: $capacity, capacity_without_provider_c: $cap_no_c, load_share: $load,
              rate_req_per_s: $rate, arrivals: "Poisson (open loop)", seconds: $duration,
              generator: "switchyard bench --arrivals poisson --records",
              max_tokens: [$lo, $hi], prompt_tokens: $pt, client_timeout_s: $timeout, seed: $seed },
      gateway: { hedge_after_ms: $hedge, health_interval_ms: 1000, outlier_base_ejection_ms: 5000,
                 upstream: "defaults (max_attempts 3, retry budget 20% + 10/s, first-token and stall timeouts 30 s)" },
      fault_schedule: $schedule, provider_fault: $provider_fault,
      summary: "12 simulated workers on 3 simulated providers, ~\($capacity) req/s capacity; open-loop \($rate) req/s (\($load) x) for \($duration) s per phase, streamed, max_tokens \($lo)-\($hi); same faults in both phases" }' \
    >"$WORK/meta.json"

# The raw material stays next to the JSON, for a closer look: per-request records, the bench
# result, fault events and the gateway's JSON log of each phase.
RAW_DIR="$OUT_DIR/chaos-$STAMP"
for POLICY in $PHASES; do
    mkdir -p "$RAW_DIR/$POLICY"
    cp "$WORK/$POLICY"/{requests.jsonl,events.jsonl,phase.json,gateway.log,gateway.toml} "$RAW_DIR/$POLICY/"
    cp "$WORK/$POLICY"/bench.{json,txt,log} "$RAW_DIR/$POLICY/" 2>/dev/null || true
done
cp "$WORK/meta.json" "$RAW_DIR/"

rc=0
"$CHAOS" report "${PHASE_ARGS[@]}" --meta "$WORK/meta.json" --out "$OUT_JSON" || rc=$?
((rc == 0)) || ((rc == 1)) || die "the report failed"
log "fault events:"
for POLICY in $PHASES; do
    jq -r --arg p "$POLICY" '"  \($p) t=\(.t_ms / 1000 | . * 10 | round / 10) s  \(.fault) \(.what): \(.action)"' \
        "$WORK/$POLICY/events.jsonl" >&2
done
log "JSON: $OUT_JSON (raw records and gateway logs: $RAW_DIR)"
((rc == 0)) || die "the measurement is INVALID (see above); logs in $WORK"
