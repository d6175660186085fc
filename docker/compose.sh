#!/usr/bin/env bash
# docker/compose.sh ARGS...: `docker compose ARGS` over compose.yaml on a machine without a
# registry: starts the engine (and installs a compose command) if needed, builds the offline
# stand-in images if missing, and points compose.yaml at them, unless LEADVIBE_*_IMAGE
# already name others.
#   docker/compose.sh up -d        docker/compose.sh ps        docker/compose.sh down -v
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LOCAL="${LEADVIBE_LOCAL_DIR:-$ROOT/.local}"
"$ROOT/docker/engine.sh" compose
"$ROOT/docker/images.sh" build
eval "$("$ROOT/docker/images.sh" env)"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-leadvibe}"

# Webhooks are signed with LEADVIBE_WEBHOOK_SECRET; when it is not set, the key `make run`
# keeps in .local/webhook-secret is used (and made now if missing).
if [ -z "${LEADVIBE_WEBHOOK_SECRET:-}" ]; then
  mkdir -p "$LOCAL"
  [ -f "$LOCAL/webhook-secret" ] || (umask 077 && head -c 32 /dev/urandom | base64 > "$LOCAL/webhook-secret")
  LEADVIBE_WEBHOOK_SECRET=$(cat "$LOCAL/webhook-secret")
  export LEADVIBE_WEBHOOK_SECRET
fi

if docker compose version > /dev/null 2>&1; then
  exec docker compose -f "$ROOT/compose.yaml" "$@"
fi
exec docker-compose -f "$ROOT/compose.yaml" "$@"
