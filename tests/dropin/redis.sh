#!/usr/bin/env bash
# redis-server on 127.0.0.1 (a free port, no persistence) driven by redis-benchmark with a bounded
# number of requests, once on the system allocator and once with ramalloc preloaded into the
# server. Both runs must complete every benchmark test, a data check (SET/GET/APPEND/LRANGE/
# DBSIZE through redis-cli) must give the same answers, and the server stops cleanly when its
# PID is signalled. Debian's redis-server is linked to jemalloc: its "system allocator" run is
# jemalloc, and preloading ramalloc replaces jemalloc's malloc family.
. "$(dirname "$0")/common.sh"
need redis-server redis-benchmark redis-cli

REQUESTS=${DROPIN_REDIS_REQUESTS:-20000}
server_pid=
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap stop_server EXIT

cli() { timeout 20 redis-cli -h 127.0.0.1 -p "$port" "$@"; }

# start_server LABEL [PRELOAD...]: start on a free port (the next candidate if the port is taken).
start_server() {
  local label=$1
  shift
  for attempt in $(seq 1 20); do
    port=$((20000 + (RANDOM % 20000)))
    "$@" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
      --protected-mode yes --logfile "$WORK/$label-server.log" &
    server_pid=$!
    for _ in $(seq 1 100); do
      if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
      if [ "$(cli ping 2>/dev/null)" = PONG ]; then return 0; fi
      sleep 0.1
    done
    stop_server
  done
  fail "could not start redis-server ($label): $(tail -n 5 "$WORK/$label-server.log" 2>/dev/null)"
}

# run LABEL [PRELOAD...]: server up, data check, benchmark, server stopped by PID.
run() {
  local label=$1
  shift
  start_server "$label" "$@"
  {
    cli flushall
    for i in $(seq 1 200); do echo "SET key:$i value-$i-$(printf '%*s' $((i * 50)) '' | tr ' ' x)"; done | cli > /dev/null
    for i in $(seq 1 100); do echo "RPUSH list $(seq -s ' ' "$i" $((i + 20)))"; done | cli > /dev/null
    for i in $(seq 1 50); do echo "APPEND key:$i -appended-$i"; done | cli > /dev/null
    cli dbsize
    cli get key:7 | md5sum
    cli get key:150 | md5sum
    cli lrange list 0 -1 | md5sum
    cli llen list
    cli strlen key:199
    cli del key:1 key:2 key:3
    cli dbsize
  } > "$label.data" 2>&1
  timed "redis-benchmark -n $REQUESTS ($label)" timeout 300 redis-benchmark -h 127.0.0.1 -p "$port" \
    -n "$REQUESTS" -c 20 -q > "$label.bench" 2>&1 || fail "redis-benchmark failed ($label): $(tail -n 5 "$label.bench")"
  cli info memory | grep -E '^used_memory_peak_human:' | tr -d '\r' | sed "s/^/redis-server ($label) /" >> "$WORK/figures" || true
  grep -E '^(VmHWM):' "/proc/$server_pid/status" | sed "s/^/redis-server ($label) /" >> "$WORK/figures" || true
  kill -0 "$server_pid" 2>/dev/null || fail "redis-server ($label) died: $(tail -n 20 "$WORK/$label-server.log")"
  local pid=$server_pid
  kill "$pid"
  local rc=0
  wait "$pid" || rc=$?
  server_pid=
  [ "$rc" -eq 0 ] || fail "redis-server ($label) exited with status $rc on SIGTERM: $(tail -n 5 "$WORK/$label-server.log")"
  # The list of tests that ran, without their timings.
  tr '\r' '\n' < "$label.bench" | sed -n 's/^\([A-Z][^:]*\): .*requests per second.*/\1/p' | sort > "$label.tests"
}

run system
run ramalloc "${RAMALLOC[@]}"
assert_ramalloc_active redis-server --version

diff -u system.data ramalloc.data || fail "redis answered differently under ramalloc"
diff -u system.tests ramalloc.tests || fail "the benchmark ran different tests"
[ "$(wc -l < ramalloc.tests)" -ge 10 ] || fail "too few benchmark results: $(cat ramalloc.bench)"
echo "--- ramalloc"
tr '\r' '\n' < ramalloc.bench | grep 'requests per second'
show_figures
echo "redis: $(wc -l < ramalloc.tests) benchmark tests and the data check agree"
