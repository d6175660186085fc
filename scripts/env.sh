# Shared defaults for the local stack; sourced by the other scripts.
# Every value can be overridden from the environment.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="${LEADVIBE_LOCAL_DIR:-$ROOT/.local}"
KAFKA_PORT="${KAFKA_PORT:-39092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-39093}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
PG_PORT="${PG_PORT:-55432}"
PG_DB="${PG_DB:-leadvibe}"
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}"
export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:$PG_PORT/$PG_DB}"

# wait_for_port PORT SECONDS [PID]: true once something accepts on 127.0.0.1:PORT;
# false at the deadline, or at once if process PID (the server starting) has died.
wait_for_port() {
  local port=$1 deadline=$((SECONDS + $2)) pid=${3:-}
  until port_open "$port"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
