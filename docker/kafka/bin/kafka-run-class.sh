#!/usr/bin/env bash
# kafka-run-class.sh CLASS ARGS...: Kafka's own launcher, reduced to what the image uses: the
# jars of libs/ and the same option variables (KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS,
# KAFKA_JMX_OPTS, KAFKA_LOG4J_OPTS, KAFKA_OPTS).
base_dir=$(cd "$(dirname "$0")/.." && pwd)
heap=${KAFKA_HEAP_OPTS:--Xmx256M}
performance=${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}
log4j=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.yaml}
# shellcheck disable=SC2086  # each variable holds several options
exec java $heap $performance ${KAFKA_JMX_OPTS:-} $log4j ${KAFKA_OPTS:-} -cp "$base_dir/libs/*" "$@"
