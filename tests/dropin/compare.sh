#!/usr/bin/env bash
# compare.sh LIBRAMALLOC WORKDIR PROGRAM [ARGS...]: run a test program under the system allocator
# and with ramalloc preloaded; both must exit 0, and their standard outputs must be identical.
. "$(dirname "$0")/common.sh"
shift 2
name=$(basename "$1")
timed "$name (system allocator)" "$@" > system.out 2> system.err ||
  fail "$name failed under the system allocator: $(cat system.out system.err | tail -n 20)"
timed "$name (ramalloc)" "${RAMALLOC[@]}" "$@" > ramalloc.out 2> ramalloc.err ||
  fail "$name failed under ramalloc: $(cat ramalloc.out ramalloc.err | tail -n 20)"
diff -u system.out ramalloc.out || fail "$name printed different results under ramalloc"
cat ramalloc.out ramalloc.err
show_figures
