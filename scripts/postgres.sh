#!/usr/bin/env bash
# Runs a PostgreSQL server of the project's own, from the installed binaries.
#   scripts/postgres.sh start   initdb once (as the postgres user), start, create the database
#   scripts/postgres.sh stop    stop it (fast shutdown)
# Loopback only, trust authentication: a development server, never exposed.
# Sized for long imports: 1,000,000 scored events write about 1.3 GB of WAL. With the
# settings before (1 GB of WAL between checkpoints, Postgres's default; 256 MB of buffers)
# a checkpoint came about every half-gigabyte, and the first change to each page after one
# logs the whole page: 2.0 GB of WAL instead of 1.26 GB, and 46 instead of 38-43 us of
# Postgres CPU per scored event (bench.scorer_alone, 1M events, 2 scorers).
set -euo pipefail
source "$(dirname "$0")/env.sh"
DIR="$LOCAL/postgres"
DATA="$DIR/data"
BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
[ -x "$BIN/initdb" ] || { echo "postgres: no server binaries under /usr/lib/postgresql/*/bin (set PG_BIN)" >&2; exit 1; }

# initdb and postgres refuse to run as root: run them as the postgres user when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  mkdir -p "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    echo "postgres: initdb in $DATA (once)"
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 > "$DIR/initdb.log"
  fi
  if as_pg "$BIN/pg_ctl" -D "$DATA" status > /dev/null 2>&1; then
    echo "postgres: already running on 127.0.0.1:$PG_PORT"
  else
    echo "postgres: starting on 127.0.0.1:$PG_PORT (log: $DIR/postgres.log)"
    # The socket goes into the data folder's parent so no system folder is needed.
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DIR/postgres.log" -w -t 60 start -o \
      "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $DIR -c max_connections=200 \
       -c shared_buffers=1GB -c max_wal_size=4GB -c checkpoint_timeout=15min \
       -c synchronous_commit=on -c fsync=on" > /dev/null
  fi
  if ! as_pg "$BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB"
  fi
}

stop() {
  [ -f "$DATA/postmaster.pid" ] || return 0
  echo "postgres: stopping"
  as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop > /dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
