#!/usr/bin/env bash
# Brings the local Kafka and Postgres up (starting only what is not running), applies
# the migrations and creates the topics.
#   scripts/stack.sh up [STARTED_FILE]   STARTED_FILE receives the names of the servers
#                                        started now, so the caller can stop only those
#   scripts/stack.sh down                stop both
set -euo pipefail
source "$(dirname "$0")/env.sh"
VENV_BIN="$ROOT/.venv/bin"

up() {
  local started=${1:-/dev/null}
  : > "$started"
  port_open "$KAFKA_PORT" || echo kafka >> "$started"
  "$ROOT/scripts/kafka.sh" start
  port_open "$PG_PORT" || echo postgres >> "$started"
  "$ROOT/scripts/postgres.sh" start
  "$VENV_BIN/leadvibe" migrate
  "$VENV_BIN/leadvibe" topics create
}

down() {
  "$ROOT/scripts/kafka.sh" stop
  "$ROOT/scripts/postgres.sh" stop
}

case "${1:-}" in
  up) up "${2:-}" ;;
  down) down ;;
  *) echo "usage: $0 up [STARTED_FILE]|down" >&2; exit 2 ;;
esac
