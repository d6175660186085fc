# supervise NAME LOG COMMAND...: run COMMAND (output appended to LOG) and start it again
# whenever it exits, after a backoff, until this (background) shell gets SIGTERM (or
# SIGHUP; SIGINT is ignored, as the Ctrl-C that run.sh turns into SIGTERM); then
# pass SIGTERM on, give the command STOP_GRACE seconds to finish, kill it past them, and
# return. Sourced by scripts/run.sh, which runs one `supervise ... &` per service.
#
# The backoff starts at SUPERVISE_BACKOFF (1 s), doubles after each quick exit up to
# SUPERVISE_BACKOFF_MAX (30 s), and starts over once the command ran SUPERVISE_STEADY
# seconds (60): a service that crashes once is back in a second; one that cannot start
# (a wrong setting) is retried twice a minute, not in a loop. Each exit is reported on
# stderr and in LOG:
#   supervise: gateway exited with status 137; restarting in 1 s (restart 1)
supervise() {
  local name=$1 log=$2
  shift 2
  local first=${SUPERVISE_BACKOFF:-1} max=${SUPERVISE_BACKOFF_MAX:-30}
  local steady=${SUPERVISE_STEADY:-60} grace=${STOP_GRACE:-20}
  local delay=$first restarts=0 child='' status started stopping=0
  # Ctrl-C reaches the whole process group: run.sh answers it by sending SIGTERM here, so
  # the supervisor must not die of it first (it would leave its service unwatched).
  trap '' INT
  trap 'stopping=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null || true' TERM HUP
  while [ "$stopping" = 0 ]; do
    started=$SECONDS
    "$@" >> "$log" 2>&1 &
    child=$!
    # A trapped SIGTERM ends `wait` early (status > 128): wait again for the real exit.
    status=0
    wait "$child" 2>/dev/null || status=$?  # (without bash's own "Killed" line)
    while [ "$stopping" = 1 ] && kill -0 "$child" 2>/dev/null; do
      local deadline=$((SECONDS + grace))
      while kill -0 "$child" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
      kill -KILL "$child" 2>/dev/null || true
      wait "$child" 2>/dev/null || true
    done
    [ "$stopping" = 0 ] || break
    if [ $((SECONDS - started)) -ge "$steady" ]; then delay=$first; fi
    restarts=$((restarts + 1))
    local line="supervise: $name exited with status $status; restarting in $delay s (restart $restarts)"
    echo "$line" >&2
    echo "$(date -u +%FT%TZ) $line" >> "$log"
    child=''
    sleep "$delay" &
    wait $! 2>/dev/null || true
    delay=$(awk -v d="$delay" -v m="$max" 'BEGIN { d *= 2; print (d > m ? m : d) }')
  done
}
