#!/usr/bin/env bash
# bench/peers/run.sh — Switchyard beside peer gateways, all in front of the SAME SIMULATED worker,
# measured by the same client (`switchyard bench`), interleaved.
#
# One `switchyard sim` (a SIMULATED worker: 5 ms prefill, 5 ms per token, no slowdown with load,
# room for every request, replies exactly max_tokens long) and, in front of it:
#   nginx       an nginx hop: one worker process, keepalive upstream, HTTP/1.1, proxy_buffering off
#   litellm     LiteLLM's proxy (litellm[proxy]==$LITELLM_VERSION from PyPI, in its own venv),
#               --num_workers 1, model openai/sim-small at the sim, a master key, no database,
#               LITELLM_LOG=ERROR (no access log), local model cost map (no network)
#   switchyard  `switchyard serve`, the sim as its one [[workers]] entry (max_concurrency high
#               enough never to queue), a key on a tier whose limits the bench cannot reach: auth,
#               limits, routing, the SQLite usage ledger and metrics all do their work
# and the sim itself ("direct"), the baseline. Every round (their order rotates each round):
#   1. c=1: $REQUESTS sequential streamed requests (max_tokens 4) per target; the TTFT it adds
#      is its TTFT p50 minus the direct TTFT p50 of the same round;
#   2. c=$HIGH_C: a streamed closed loop for $DURATION s (max_tokens $TOKENS) per target:
#      requests/s, and the CPU time of the target's whole process tree (every thread of every
#      process, /proc/PID/task/*/schedstat) divided by the requests it served.
# Figures are medians of the rounds; RSS is the sum of VmRSS over each target's process tree
# after the last round. Output: a table and bench/out/peers-<UTC time>.json. Exit status 1 only
# when a measurement is invalid (a failed request, a target not answering), never for a ratio.
# Knobs (environment): ROUNDS=3 REQUESTS=200 HIGH_C=32 DURATION=10 TOKENS=16
# LITELLM_VERSION=1.108.7. The venv is ${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/bench-peers-venv
# (reused; rebuilt when LITELLM_VERSION differs). CARGO_TARGET_DIR is honoured. Only 127.0.0.1
# is used; every process started here is stopped on exit. About 3½ minutes after the build.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-200}
HIGH_C=${HIGH_C:-32}
DURATION=${DURATION:-10}
TOKENS=${TOKENS:-16}
LITELLM_VERSION=${LITELLM_VERSION:-1.108.7}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT_DIR="$ROOT/bench/out"
NOW=$(date -u +%s)
STAMP=$(date -u -d "@$NOW" +%Y%m%dT%H%M%SZ)
OUT_JSON="$OUT_DIR/peers-$STAMP.json"
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/bench-peers-venv
KEY="sk-bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
MODEL=sim-small

log() { printf '[peers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
# pick_port, wait_http, proc_tree, tree_cpu_ns, tree_rss_kb
# shellcheck source=bench/lib.sh
source "$HERE/../lib.sh"

# ---------------------------------------------------------------------------------------
# Tools: nginx, jq, curl from apt; LiteLLM from PyPI into its own venv
need=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v pgrep >/dev/null || need+=(procps)
command -v python3 >/dev/null || need+=(python3 python3-venv)
apt_install "${need[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ $(cat "$VENV/.litellm-version" 2>/dev/null || true) != "$LITELLM_VERSION" ]]; then
    log "installing litellm[proxy]==$LITELLM_VERSION into $VENV (a few minutes)"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
    "$VENV/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION" >"$VENV.log" 2>&1 ||
        die "pip install litellm[proxy]==$LITELLM_VERSION failed: $(tail -n 20 "$VENV.log")"
    echo "$LITELLM_VERSION" >"$VENV/.litellm-version" # written last: a half-built venv is rebuilt
fi
LITELLM_INSTALLED=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')

log "building switchyard (release)"
(cd "$ROOT" && nice -n 19 cargo build --release -q -p switchyard)
SWITCHYARD="${CARGO_TARGET_DIR:-$ROOT/target}/release/switchyard"

# ---------------------------------------------------------------------------------------
# Processes, cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-peers.XXXXXX")
PIDS=()
cleanup() {
    local rc=$? p alive all=()
    trap - EXIT INT TERM
    for p in "${PIDS[@]}" "$(cat "$WORK/nginx/nginx.pid" 2>/dev/null || true)"; do
        [[ -n $p ]] && mapfile -t -O "${#all[@]}" all < <(proc_tree "$p")
    done
    for p in "${all[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 100); do # 10 s to exit gracefully, then KILL
        alive=0
        for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${all[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if ((rc != 0)); then log "failed (exit $rc); logs kept in $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for v in SIM_PORT NGINX_PORT LITELLM_PORT GW_PORT; do pick_port "$v"; done

# The SIMULATED worker, shared by every target.
cat >"$WORK/sim.toml" <<EOF
model = "$MODEL"
prefill_base_ms = 5.0
prefill_per_token_ms = 0.0
decode_ms_per_token = 5.0
decode_slowdown_per_seq = 0.0
kv_capacity_tokens = 1000000000
max_queue = 100000
natural_tokens = 100000
EOF
"$SWITCHYARD" sim --listen "127.0.0.1:$SIM_PORT" --config "$WORK/sim.toml" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
PIDS+=("$SIM_PID")
wait_http "http://127.0.0.1:$SIM_PORT/health" "switchyard sim" "$SIM_PID"

# (a) the nginx hop
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    keepalive_requests 1000000;
    upstream llm { server 127.0.0.1:$SIM_PORT; keepalive 256; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
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
"$NGINX" -q -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" || die "nginx did not start (see $WORK/nginx)"
wait_http "http://127.0.0.1:$NGINX_PORT/v1/models" "nginx hop"
NGINX_PID=$(cat "$WORK/nginx/nginx.pid")

# (b) LiteLLM's proxy
cat >"$WORK/litellm.yaml" <<EOF
model_list:
  - model_name: $MODEL
    litellm_params:
      model: openai/$MODEL
      api_base: http://127.0.0.1:$SIM_PORT/v1
      api_key: sk-unused
litellm_settings:
  telemetry: false
  turn_off_message_logging: true
  request_timeout: 600
general_settings:
  master_key: $KEY
  disable_spend_logs: true
  disable_error_logs: true
EOF
(cd "$WORK" && exec env -u DATABASE_URL LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
    "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" \
    --num_workers 1) >"$WORK/litellm.log" 2>&1 &
LITELLM_PID=$!
PIDS+=("$LITELLM_PID")
wait_http "http://127.0.0.1:$LITELLM_PORT/health/liveliness" "LiteLLM proxy" "$LITELLM_PID" 180

# (c) switchyard serve
cat >"$WORK/gateway.toml" <<EOF
[server]
max_connections_per_ip = 0

[state]
path = "$WORK/gateway.db"

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
model = "$MODEL"
max_concurrency = 4096
EOF
SWITCHYARD_DEV_KEY=$KEY SWITCHYARD_LOG=warn "$SWITCHYARD" serve --config "$WORK/gateway.toml" \
    --listen "127.0.0.1:$GW_PORT" --admin-listen 127.0.0.1:0 >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
wait_http "http://127.0.0.1:$GW_PORT/readyz" "switchyard serve" "$GW_PID"

TARGETS=(direct nginx litellm switchyard)
declare -A PORT=([direct]=$SIM_PORT [nginx]=$NGINX_PORT [litellm]=$LITELLM_PORT [switchyard]=$GW_PORT)
declare -A TREE=([direct]=$SIM_PID [nginx]=$NGINX_PID [litellm]=$LITELLM_PID [switchyard]=$GW_PID)

# bench TARGET TAG ARGS...: one `switchyard bench` run (streamed), checked; its report's path.
bench() {
    local t=$1 out="$WORK/bench-$1-$2.json"
    shift 2
    SWITCHYARD_API_KEY=$KEY "$SWITCHYARD" bench --url "http://127.0.0.1:${PORT[$t]}" --model "$MODEL" \
        --timeout 60 --json --quiet "$@" >"$out" 2>"$out.err" ||
        die "switchyard bench against $t failed: $(tail -c 600 "$out.err")"
    jq -e '.requests.ok > 0 and .requests.failed == 0 and .latency_ms.ttft.count == .requests.ok' "$out" >/dev/null ||
        die "switchyard bench against $t: not every request succeeded: $(jq -c .requests "$out")"
    echo "$out"
}

log "warm-up: 50 streamed requests per target at c=8 (SIMULATED worker on :$SIM_PORT)"
for t in "${TARGETS[@]}"; do bench "$t" warmup --concurrency 8 -n 50 --max-tokens "$TOKENS" >/dev/null; done
log "targets ready: nginx :$NGINX_PORT, litellm $LITELLM_INSTALLED :$LITELLM_PORT, switchyard :$GW_PORT"

ROWS="$WORK/rows.jsonl"
: >"$ROWS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= ROUNDS; r++)); do
    order=() # rotated, so that no target always goes first or last
    for i in "${!TARGETS[@]}"; do order+=("${TARGETS[$(((i + r - 1) % ${#TARGETS[@]}))]}"); done
    for t in "${order[@]}"; do
        f=$(bench "$t" "c1-$r" --concurrency 1 -n "$REQUESTS" --max-tokens 4 --warmup 5)
        jq -c --arg t "$t" --argjson r "$r" '{round: $r, target: $t, c: 1, simulated: .target.simulated,
            ttft_p50_ms: .latency_ms.ttft.p50, ttft_p99_ms: .latency_ms.ttft.p99}' "$f" >>"$ROWS"
        log "round $r/$ROUNDS $(printf 'c=%-4s %-10s' 1 "$t") TTFT p50 $(jq -r '.latency_ms.ttft.p50' "$f") ms"
    done
    for t in "${order[@]}"; do
        px0=$(tree_cpu_ns "${TREE[$t]}") sim0=$(tree_cpu_ns "$SIM_PID")
        f=$(bench "$t" "high-$r" --concurrency "$HIGH_C" --duration "$DURATION" --max-tokens "$TOKENS")
        px1=$(tree_cpu_ns "${TREE[$t]}") sim1=$(tree_cpu_ns "$SIM_PID")
        [[ $t == direct ]] && px1=$px0 # the sim is the worker, not a proxy
        jq -c --arg t "$t" --argjson r "$r" --argjson c "$HIGH_C" --argjson px $((px1 - px0)) \
            --argjson sim $((sim1 - sim0)) '{round: $r, target: $t, c: $c, requests: .requests.ok,
            rps: .throughput.requests_per_s, ttft_p50_ms: .latency_ms.ttft.p50,
            cpu_us_per_req: ($px / 1000 / .requests.ok), sim_cpu_us_per_req: ($sim / 1000 / .requests.ok)}' "$f" >>"$ROWS"
        log "round $r/$ROUNDS $(printf 'c=%-4s %-10s' "$HIGH_C" "$t") $(tail -n1 "$ROWS" | jq -r '"\(.rps | floor) req/s, CPU \(.cpu_us_per_req | round) us/request"')"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
RSS_KB=$(for t in nginx litellm switchyard; do echo "{\"$t\": $(tree_rss_kb "${TREE[$t]}")}"; done | jq -s add)

# ---------------------------------------------------------------------------------------
# Report
mkdir -p "$OUT_DIR"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] || COMMIT+="-dirty"
jq -s --arg date "$(date -u -d "@$NOW" +%FT%TZ)" --arg commit "$COMMIT" --arg litellm "$LITELLM_INSTALLED" \
    --argjson nproc "$(nproc)" --arg cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
    --arg kernel "$(uname -r)" --arg load_start "$LOAD_START" --arg load_end "$LOAD_END" \
    --argjson rounds "$ROUNDS" --argjson requests "$REQUESTS" --argjson high "$HIGH_C" \
    --argjson duration "$DURATION" --argjson tokens "$TOKENS" \
    --argjson rss "$RSS_KB" '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def r2: . * 100 | round / 100;
    def r3: . * 1000 | round / 1000;
    . as $rows
    | def c1($t; $r): [$rows[] | select(.target == $t and .c == 1 and .round == $r)][0].ttft_p50_ms;
      def hi($t): [$rows[] | select(.target == $t and .c == $high)];
      def target($t): {
          ttft_p50_ms_c1: ([$rows[] | select(.target == $t and .c == 1) | .ttft_p50_ms] | median | r2),
          ttft_added_ms_c1: ([range(1; $rounds + 1) as $r | c1($t; $r) - c1("direct"; $r)] | median | r2),
          rps: ([hi($t)[].rps] | median | r2),
          cpu_us_per_req: (if $t == "direct" then null else [hi($t)[].cpu_us_per_req] | median | r2 end),
          sim_cpu_us_per_req: ([hi($t)[].sim_cpu_us_per_req] | median | r2),
          rss_mb: (if $rss[$t] then $rss[$t] / 1024 | r2 else null end) };
      { direct: target("direct"), nginx: target("nginx"), litellm: target("litellm"),
        switchyard: target("switchyard") } as $x
    | def vs($p): { rps: ($x.switchyard.rps / $x[$p].rps | r3),
                    cpu_us_per_req: ($x.switchyard.cpu_us_per_req / $x[$p].cpu_us_per_req | r3),
                    rss: ($x.switchyard.rss_mb / $x[$p].rss_mb | r3),
                    ttft_added_ms: { switchyard: $x.switchyard.ttft_added_ms_c1, ($p): $x[$p].ttft_added_ms_c1 } };
    { date: $date, commit: $commit, litellm_version: $litellm,
      machine: { nproc: $nproc, cpu_model: $cpu, kernel: $kernel, loadavg_start: $load_start, loadavg_end: $load_end },
      worker: { simulated: true, what: "switchyard sim", prefill_ms: 5, decode_ms_per_token: 5 },
      setup: { rounds: $rounds, c1_requests: $requests, c1_max_tokens: 4, high_concurrency: $high,
               high_duration_s: $duration, high_max_tokens: $tokens, statistic: "median of the rounds",
               ttft_added: "per round: target TTFT p50 minus direct TTFT p50, c=1" },
      targets: $x, switchyard_over: { litellm: vs("litellm"), nginx: vs("nginx") }, rounds: $rows }
    ' "$ROWS" >"$OUT_JSON"

jq -r '
    def pad($n): tostring | (" " * ([$n - length, 0] | max)) + .;
    def rpad($n): tostring | . + (" " * ([$n - length, 0] | max));
    def fixed($d): (. * pow(10; $d) | round | tostring | ("0" * ($d + 1 - length)) + .) as $s | $s[:-$d] + "." + $s[-$d:];
    def x2: "x" + (if . < 0.1 then fixed(3) else fixed(2) end);
    def sgn: if . == null then "-" elif . >= 0 then "+\(.) ms" else "\(.) ms" end;
    def names: {direct: "sim direct (baseline)", nginx: "nginx hop", litellm: "LiteLLM \(.litellm_version)",
                switchyard: "switchyard"};
    . as $j | .setup as $s
    | "",
      "Switchyard vs peers  \(.date)  commit \(.commit)  \(.machine.nproc) cores (\(.machine.cpu_model)), loadavg \(.machine.loadavg_start) -> \(.machine.loadavg_end)",
      "all in front of ONE SIMULATED worker (switchyard sim: 5 ms prefill, 5 ms/token); client: switchyard bench, streamed",
      "medians of \($s.rounds) interleaved rounds; TTFT: \($s.c1_requests) requests at c=1; req/s and CPU: c=\($s.high_concurrency), \($s.high_duration_s) s, \($s.high_max_tokens) tokens",
      "",
      ("target" | rpad(24)) + ("TTFT added c=1" | pad(16)) + ("streamed req/s c=\($s.high_concurrency)" | pad(22))
        + ("CPU us/request" | pad(16)) + ("RSS MB" | pad(9)),
      (["direct", "nginx", "litellm", "switchyard"][] as $t | $j.targets[$t] as $x
        | ($j | names[$t] | rpad(24))
          + (if $t == "direct" then "(\($x.ttft_p50_ms_c1) ms)" else $x.ttft_added_ms_c1 | sgn end | pad(16))
          + ($x.rps | floor | pad(22)) + ($x.cpu_us_per_req // "-" | if type == "number" then round else . end | pad(16))
          + ($x.rss_mb // "-" | if type == "number" then round else . end | pad(9))),
      "",
      (["litellm", "nginx"][] as $p | $j.switchyard_over[$p] as $v
        | "switchyard / \($j | names[$p]): req/s \($v.rps | x2), CPU per request \($v.cpu_us_per_req | x2), RSS \($v.rss | x2); TTFT added \($v.ttft_added_ms.switchyard | sgn) vs \($v.ttft_added_ms[$p] | sgn)"),
      ""' "$OUT_JSON"
log "JSON: $OUT_JSON"
