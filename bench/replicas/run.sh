#!/usr/bin/env bash
# bench/replicas/run.sh — what shared state costs, and what a second replica buys, on this
# machine. One SIMULATED worker (`switchyard sim`, 1 ms per token, 8 tokens) behind:
#   sqlite        one gateway, state in a SQLite file, limits in the process (the default)
#   postgres      one gateway, state in the machine's Postgres (a fresh schema per round)
#   pg+redis      one gateway, Postgres, limits shared in the machine's Redis
#   1 via lb      the same, behind haproxy (the hop a deployment has anyway)
#   2 via lb      two gateways on the same Postgres and Redis, behind haproxy
# Closed loop, `switchyard bench` at concurrency $C for $DURATION s, unstreamed; targets
# interleaved for $ROUNDS rounds, MEDIANS printed with ratios to `sqlite` (and `2 via lb` to
# `1 via lb`). Also, per request: Redis commands run (INFO commandstats) and Postgres rows
# written (pg_stat_user_tables), the figures that bound a bigger deployment.
# Needs: the machine's Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379), haproxy.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
C="${C:-32}"
PG="${PG:-postgres://postgres@127.0.0.1:5432/test}"
REDIS="${REDIS:-redis://127.0.0.1:6379}"
BUILD="${BUILD:-1}"
if [ "$BUILD" = 1 ]; then cargo build --release -q -p switchyard; fi
BIN="${CARGO_TARGET_DIR:-target}/release/switchyard"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rc" != 0 ]; then
    for f in "$WORK"/*.err; do [ -s "$f" ] && { echo "== $f" >&2; tail -5 "$f" >&2; }; done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
export SWITCHYARD_ADMIN_TOKEN=sy-admin-bench-replicas-0123456789
export SWITCHYARD_DEV_KEY=sk-dev-bench-replicas-0123456789abcd
export SWITCHYARD_LOG=error

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }

SIM_PORT=$(free_port)
"$BIN" sim --listen "127.0.0.1:$SIM_PORT" --model sim-small --decode-ms 1 >/dev/null 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SIM_PORT/health"

# gateway <name> <port> <extra TOML>: starts one, leaves its pid in PIDS.
gateway() {
  local name=$1 port=$2 extra=$3
  cat > "$WORK/$name.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
$extra
[tiers.pro]
requests_per_minute = 100000000
tokens_per_minute = 100000000000
max_concurrent = 100000
[[workers]]
name = "sim"
url = "http://127.0.0.1:$SIM_PORT"
runtime = "vllm"
model = "sim-small"
provider = "sim"
region = "local"
gpu = "simulated"
price_per_hour = 1.0
max_concurrency = 1024
TOML
  "$BIN" serve --config "$WORK/$name.toml" --admin-listen 127.0.0.1:0 >/dev/null 2>"$WORK/$name.err" &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/readyz"
}

lb() {
  local port=$1; shift
  { printf 'global\n  maxconn 4000\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  option http-keep-alive\n'
    printf 'frontend f\n  bind 127.0.0.1:%s\n  default_backend b\nbackend b\n  balance roundrobin\n' "$port"
    local i=0; for p in "$@"; do printf '  server g%s 127.0.0.1:%s\n' "$i" "$p"; i=$((i+1)); done
  } > "$WORK/haproxy-$port.cfg"
  haproxy -f "$WORK/haproxy-$port.cfg" >/dev/null 2>&1 &
  PIDS+=($!)
  sleep 0.3
}

redis_calls() { redis-cli INFO commandstats | awk -F'[=,:]' '/^cmdstat_/ {s += $3} END {print s+0}'; }
pg_rows() { psql -qtA "$PG" -c "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables WHERE schemaname = '$1'"; }

# run <label> <url> <schema or -> : one measurement; prints "label req/s redis/req pgrows/req".
run() {
  local label=$1 url=$2 schema=$3
  echo "bench/replicas: $label" >&2
  local r0 p0=0; r0=$(redis_calls); [ "$schema" != - ] && p0=$(pg_rows "$schema")
  "$BIN" bench --url "$url" --api-key "$SWITCHYARD_DEV_KEY" --concurrency "$C" --duration "$DURATION" \
    --max-tokens 8 --no-stream --json -q > "$WORK/out.json"
  sleep 1  # the ledger's last batches
  local r1 p1=0; r1=$(redis_calls); [ "$schema" != - ] && p1=$(pg_rows "$schema")
  python3 - "$WORK/out.json" "$label" "$r0" "$r1" "$p0" "$p1" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
label, r0, r1, p0, p1 = sys.argv[2], *map(float, sys.argv[3:])
ok = out["requests"]["ok"]; total = out["requests"]["sent"]
if ok != total:
    sys.exit(f"{label}: {total - ok} of {total} requests failed")
rps = out["throughput"]["requests_per_s"]
n = max(ok, 1)
print(f"{label}\t{rps:.1f}\t{(r1 - r0) / n:.2f}\t{(p1 - p0) / n:.2f}")
PY
}

: > "$WORK/results.tsv"
for round in $(seq "$ROUNDS"); do
  schema="bench_replicas_$$_$round"
  prefix="bench:$$:$round:"
  P1=$(free_port); gateway "sqlite-$round" "$P1" "[state]
path = \"$WORK/state-$round.db\""
  run sqlite "http://127.0.0.1:$P1" - >> "$WORK/results.tsv"
  P2=$(free_port); gateway "pg-$round" "$P2" "[state]
url = \"$PG\"
schema = \"${schema}_a\""
  run postgres "http://127.0.0.1:$P2" "${schema}_a" >> "$WORK/results.tsv"
  shared="[state]
url = \"$PG\"
schema = \"${schema}_b\"
[limits]
redis_url = \"$REDIS\"
redis_prefix = \"$prefix\""
  P3=$(free_port); gateway "pgr-$round" "$P3" "$shared"
  run pg+redis "http://127.0.0.1:$P3" "${schema}_b" >> "$WORK/results.tsv"
  L1=$(free_port); lb "$L1" "$P3"
  run "1 via lb" "http://127.0.0.1:$L1" "${schema}_b" >> "$WORK/results.tsv"
  P4=$(free_port); gateway "pgr2-$round" "$P4" "$shared"
  L2=$(free_port); lb "$L2" "$P3" "$P4"
  run "2 via lb" "http://127.0.0.1:$L2" "${schema}_b" >> "$WORK/results.tsv"
  # This round's processes (all but the sim) go; the next round starts afresh.
  for p in "${PIDS[@]:1}"; do kill "$p" 2>/dev/null || true; done
  wait "${PIDS[@]:1}" 2>/dev/null || true
  PIDS=("${PIDS[0]}")
  for s in "${schema}_a" "${schema}_b"; do psql -qtA "$PG" -c "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1; done
  redis-cli --scan --pattern "${prefix}*" | xargs -r redis-cli DEL >/dev/null
done

python3 - "$WORK/results.tsv" "$ROUNDS" "$C" "$DURATION" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
labels = ["sqlite", "postgres", "pg+redis", "1 via lb", "2 via lb"]
med = {}
for lab in labels:
    vals = [r for r in rows if r[0] == lab]
    med[lab] = [statistics.median(float(v[i]) for v in vals) for i in (1, 2, 3)]
print(f"bench/replicas: medians of {sys.argv[2]} interleaved rounds, c={sys.argv[3]}, {sys.argv[4]} s each, one simulated worker")
print(f"{'target':<10} {'req/s':>9} {'vs sqlite':>9} {'redis cmds/req':>15} {'pg rows/req':>12}")
for lab in labels:
    rps, rc, pr = med[lab]
    print(f"{lab:<10} {rps:>9.1f} {rps / med['sqlite'][0]:>8.2f}x {rc:>15.2f} {pr:>12.2f}")
print(f"2 replicas / 1 replica behind the same haproxy: {med['2 via lb'][0] / med['1 via lb'][0]:.2f}x")
PY
