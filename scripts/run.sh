#!/usr/bin/env bash
# `make run`: the whole stack as local processes, until Ctrl-C.
set -euo pipefail
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/supervise.sh"
VENV_BIN="$ROOT/.venv/bin"
LOGS="$LOCAL/logs"
mkdir -p "$LOGS"

# Local runs deliver webhooks to receivers on this machine, and sign with a local key.
export LEADVIBE_ALLOW_PRIVATE_WEBHOOKS="${LEADVIBE_ALLOW_PRIVATE_WEBHOOKS:-true}"
if [ -z "${LEADVIBE_WEBHOOK_SECRET:-}" ]; then
  [ -f "$LOCAL/webhook-secret" ] || head -c 32 /dev/urandom | base64 > "$LOCAL/webhook-secret"
  LEADVIBE_WEBHOOK_SECRET=$(cat "$LOCAL/webhook-secret")
  export LEADVIBE_WEBHOOK_SECRET
fi

STARTED="$LOCAL/run-started"
"$ROOT/scripts/stack.sh" up "$STARTED"

pids=()
stop_all() {
  trap '' INT TERM HUP  # a second Ctrl-C, or the terminal closing, must not cut the cleanup short
  echo
  echo "stopping the services..."
  [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  # They finish their batch and commit first; each supervisor kills its service past 20 s.
  local deadline=$((SECONDS + 25))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if grep -q kafka "$STARTED"; then "$ROOT/scripts/kafka.sh" stop; fi
  if grep -q postgres "$STARTED"; then "$ROOT/scripts/postgres.sh" stop; fi
  echo "stopped."
}
trap stop_all EXIT
trap 'exit 130' INT TERM HUP

start() {  # start NAME MODULE [HEALTH_PORT]: run `python -m MODULE` in the background, log
  # to a file, and start it again whenever it exits (scripts/supervise.sh), until Ctrl-C
  supervise "$1" "$LOGS/$1.log" env LEADVIBE_HEALTH_PORT="${3:-}" "$VENV_BIN/python" -m "$2" &
  pids+=($!)
}
# The gateway as one process per core by default, all on one port (SO_REUSEPORT): one
# Python process cannot take live events at the rate of two cores (README, Performance).
export LEADVIBE_GATEWAY_PROCESSES="${LEADVIBE_GATEWAY_PROCESSES:-auto}"
start gateway ingest_gateway
# One scorer per core by default: they share the events topic's partitions, and one
# process alone leaves a core idle while it waits for Postgres (docs/scorer.md, "Speed").
# Each consumer answers GET /health on the ports after the gateway's (README, Health).
SCORERS="${LEADVIBE_SCORERS:-$(nproc)}"
HEALTH_BASE="${LEADVIBE_PORT:-8000}"
for n in $(seq 1 "$SCORERS"); do start "scorer-$n" scorer $((HEALTH_BASE + n)); done
start triggers trigger_service $((HEALTH_BASE + SCORERS + 1))

if ! wait_for_port "${LEADVIBE_PORT:-8000}" 30 "${pids[0]}"; then
  echo "the gateway did not start; last lines of $LOGS/gateway.log:" >&2
  tail -n 20 "$LOGS/gateway.log" >&2
  exit 1
fi
TOKEN=$("$VENV_BIN/leadvibe" token create --org default --unit default)
echo
echo "LeadVibe is up on http://127.0.0.1:${LEADVIBE_PORT:-8000} (logs: $LOGS). Ctrl-C stops it."
echo "API token (org 'default', unit 'default'): export TOKEN=$TOKEN"
echo "API description: http://127.0.0.1:${LEADVIBE_PORT:-8000}/docs (OpenAPI: /openapi.json)"
echo "Consumers' health (GET /health on 127.0.0.1): the scorers on ports" \
  "$((HEALTH_BASE + 1))-$((HEALTH_BASE + SCORERS)), the trigger service on $((HEALTH_BASE + SCORERS + 1))"
echo

# A service that dies is started again by its supervisor (a line on stderr says which, and
# with what status); the others run on. Ctrl-C stops everything.
wait
