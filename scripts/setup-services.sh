#!/usr/bin/env bash
# Postgres and Redis, which the tests use for real: checks that each answers on this machine
# (127.0.0.1:5432, trust auth, database `test`; 127.0.0.1:6379) and starts it if it does not,
# then drops the schemas earlier test runs left in `test`.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432

pg_up() { pg_isready -h "$PG_HOST" -p "$PG_PORT" -q 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  echo "setup-services: Postgres is not answering; starting it"
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header | while read -r version cluster _; do
      pg_ctlcluster "$version" "$cluster" start || true
    done
  else
    service postgresql start || true
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "setup-services: Postgres did not come up on $PG_HOST:$PG_PORT" >&2; exit 1; }
fi

if ! redis_up; then
  echo "setup-services: Redis is not answering; starting it"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
  redis_up || { echo "setup-services: Redis did not come up on 127.0.0.1:6379" >&2; exit 1; }
fi

# Each test makes a schema of its own (test_<random>) and leaves it; earlier runs' go here, one
# schema per statement (dropping hundreds in one transaction runs out of lock slots).
PGOPTIONS='-c client_min_messages=warning' psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d test \
  -v ON_ERROR_STOP=1 -qAt <<'SQL'
SELECT format('DROP SCHEMA %I CASCADE', nspname) FROM pg_namespace WHERE nspname LIKE 'test\_%' \gexec
SQL
echo "setup-services: Postgres and Redis answer"
