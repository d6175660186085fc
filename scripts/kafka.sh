#!/usr/bin/env bash
# Runs Apache Kafka (single node, KRaft) from its Maven Central jars.
#   scripts/kafka.sh start   fetch jars once, format storage once, start, wait until it listens
#   scripts/kafka.sh stop    stop the broker started here
#   scripts/kafka.sh fetch   only fetch the jars (docker/images.sh builds its image from them)
set -euo pipefail
source "$(dirname "$0")/env.sh"
DIR="$LOCAL/kafka"
LIBS="$DIR/libs"
PIDFILE="$DIR/kafka.pid"

fetch() {
  [ -f "$LIBS/.complete" ] && return
  echo "kafka: fetching Apache Kafka jars with Maven into $LIBS (once)"
  mkdir -p "$LIBS"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIBS" -DincludeScope=runtime
  touch "$LIBS/.complete"
}

write_config() {
  { cat "$ROOT/scripts/kafka/server.properties"
    echo "listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT"
    echo "controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT"
    echo "log.dirs=$DIR/data"
  } > "$DIR/server.properties"
}

# KAFKA_JVM_OPTS: more JVM flags (the fault suite starts brokers with
# -XX:TieredStopAtLevel=1: about half the CPU to start, on a busy machine half the time).
# shellcheck disable=SC2206
JAVA=(java -Xmx"$KAFKA_HEAP" -Xms"$KAFKA_HEAP" -XX:+UseG1GC ${KAFKA_JVM_OPTS:-}
  -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" -cp "$LIBS/*")

# A cluster id as `StorageTool random-uuid` makes one (16 random bytes, URL-safe base64
# without padding, not starting with "-"), without starting a JVM for it.
cluster_id() {
  local id
  id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  echo "${id/#-/A}"
}

start() {
  if port_open "$KAFKA_PORT"; then
    echo "kafka: already listening on 127.0.0.1:$KAFKA_PORT"
    return
  fi
  fetch
  mkdir -p "$DIR"
  write_config
  if [ ! -f "$DIR/data/meta.properties" ]; then
    echo "kafka: formatting storage in $DIR/data (once)"
    "${JAVA[@]}" kafka.tools.StorageTool format --standalone \
      -t "$(cluster_id)" \
      -c "$DIR/server.properties" > "$DIR/format.log"
  fi
  echo "kafka: starting on 127.0.0.1:$KAFKA_PORT (log: $DIR/kafka.log)"
  # setsid: the broker outlives this script and ignores the terminal's Ctrl-C;
  # `make run` stops it itself, in order, after the services that use it.
  setsid "${JAVA[@]}" kafka.Kafka "$DIR/server.properties" >> "$DIR/kafka.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  if ! wait_for_port "$KAFKA_PORT" 90 "$(cat "$PIDFILE")"; then
    echo "kafka: did not listen within 90 s; last log lines:" >&2
    tail -n 20 "$DIR/kafka.log" >&2
    exit 1
  fi
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid; pid=$(cat "$PIDFILE")
  if kill "$pid" 2>/dev/null; then
    echo "kafka: stopping (pid $pid)"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  fetch) fetch ;;
  *) echo "usage: $0 start|stop|fetch" >&2; exit 2 ;;
esac
