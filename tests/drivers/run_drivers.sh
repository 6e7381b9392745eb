#!/usr/bin/env bash
# Usage: tests/drivers/run_drivers.sh postgresql://user:pass@host:port/db?sslmode=disable
# Runs each real-driver test against the URL with the driver's default prepared-statement
# behaviour and prints one summary line per driver:
#   postgresjs: 8000 queries, 0 errors
#   psycopg: 2400 queries, 0 errors
#   node-postgres: 8000 queries, 0 errors
# A driver that dies without its summary gets `<driver>: FAILED (exit N)`. Exits 0 only when
# every driver passed. PGMUX_DRIVERS="postgresjs psycopg" runs a subset.
# The tests create (and truncate) tables drivers_js, drivers_py and drivers_pg in the database.
set -uo pipefail

if (($# != 1)); then
  echo "usage: $0 postgresql://user:pass@host:port/db" >&2
  exit 2
fi
url=$1
here=$(cd "$(dirname "$0")" && pwd)

# npm ci writes node_modules/.package-lock.json; an older one means package-lock.json changed.
if [[ ! -f "$here/node_modules/.package-lock.json" ||
      "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]]; then
  if ! npm ci --no-audit --no-fund --loglevel=error --prefix "$here" >&2; then
    echo "run_drivers: npm ci in $here failed" >&2
    exit 1
  fi
fi

run() {
  local name=$1
  shift
  local out rc
  out=$("$@" "$url")
  rc=$?
  if [[ -n "$out" ]]; then
    echo "$out"
  fi
  if ((rc != 0)); then
    [[ "$out" == "$name: "* ]] || echo "$name: FAILED (exit $rc)"
    return 1
  fi
}

failed=0
for driver in ${PGMUX_DRIVERS:-postgresjs psycopg node-postgres}; do
  case "$driver" in
    postgresjs) run postgresjs node "$here/postgresjs.mjs" || failed=1 ;;
    psycopg) run psycopg /usr/bin/python3 "$here/psycopg_test.py" || failed=1 ;;
    node-postgres) run node-postgres node "$here/node_postgres.mjs" || failed=1 ;;
    *)
      echo "run_drivers: unknown driver '$driver'" >&2
      failed=1
      ;;
  esac
done
exit "$failed"
