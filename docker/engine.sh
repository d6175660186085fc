#!/usr/bin/env bash
# The Docker engine the container path needs, from Debian's packages.
#   docker/engine.sh up        install docker.io if dockerd is missing (root), start dockerd if
#                              no engine answers, wait until it does
#   docker/engine.sh compose   as `up`, and install docker-compose if no compose command exists
#   docker/engine.sh down      stop the dockerd started here (an engine started otherwise stays)
#   docker/engine.sh install PACKAGE...   install Debian packages (root), lists refreshed if stale
# An engine that already answers (Docker Desktop, a system service, DOCKER_HOST) is used as is.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
DIR="$LOCAL/docker"
PIDFILE="$DIR/dockerd.pid"
LOG="$DIR/dockerd.log"

answers() { docker info > /dev/null 2>&1; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "docker: $* not installed, and installing needs root: install it, or run as root" >&2
    exit 1
  fi
  echo "docker: installing $* from Debian's packages"
  # The package lists are refreshed once a day at most: CI machines start with none.
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null)" ]; then
    apt-get update -q
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

up() {
  if answers; then
    return
  fi
  command -v dockerd > /dev/null || apt_install docker.io
  command -v docker > /dev/null || apt_install docker.io
  if [ "$(id -u)" != 0 ]; then
    echo "docker: no engine answers, and starting dockerd needs root (or start Docker yourself)" >&2
    exit 1
  fi
  mkdir -p "$DIR"
  echo "docker: starting dockerd (log: $LOG)"
  # setsid: the engine outlives this script and the terminal's Ctrl-C, like a system service.
  setsid dockerd > "$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  local deadline=$((SECONDS + 60))
  until answers; do
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
      echo "docker: dockerd did not answer within 60 s; last log lines:" >&2
      tail -n 20 "$LOG" >&2
      exit 1
    fi
    sleep 0.2
  done
}

compose() {
  up
  docker compose version > /dev/null 2>&1 || command -v docker-compose > /dev/null \
    || apt_install docker-compose
}

down() {
  [ -f "$PIDFILE" ] || return 0
  local pid; pid=$(cat "$PIDFILE")
  if kill "$pid" 2>/dev/null; then
    echo "docker: stopping dockerd (pid $pid)"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  up) up ;;
  compose) compose ;;
  down) down ;;
  install) shift; apt_install "$@" ;;
  *) echo "usage: $0 up|compose|down|install PACKAGE..." >&2; exit 2 ;;
esac
