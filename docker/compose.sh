#!/usr/bin/env bash
# docker/compose.sh ARGS...: `docker compose ARGS` over compose.yaml on a machine without a
# registry: starts the engine (and installs a compose command) if needed, builds the offline
# stand-in images if missing, and points compose.yaml at them, unless LEADVIBE_*_IMAGE
# already name others.
#   docker/compose.sh up -d        docker/compose.sh ps        docker/compose.sh down -v
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/docker/engine.sh" compose
"$ROOT/docker/images.sh" build
eval "$("$ROOT/docker/images.sh" env)"
if docker compose version > /dev/null 2>&1; then
  exec docker compose -f "$ROOT/compose.yaml" "$@"
fi
exec docker-compose -f "$ROOT/compose.yaml" "$@"
