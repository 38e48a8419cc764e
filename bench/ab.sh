#!/usr/bin/env bash
# Side-by-side of one workload under several preloaded libraries (e.g. ramalloc before and after a
# change): runs are interleaved, and the median of each library's results is printed with all the
# samples. The result is the workload's scored_s where it reports one (throughput-scored), else its
# own time= figure (the timed part, without start-up and exit).
#
#   bench/ab.sh BIN_DIR WORKLOAD REPS LIB... [-- WORKLOAD ARGS]     (default args: quick -t 2)
#   bench/ab.sh build-bench/bench hugeloop 5 old/libramalloc.so build-bench/libramalloc.so
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,9p "$0" >&2; exit 2; }
bin=$1 w=$2 reps=$3
shift 3
libs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do libs+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(quick -t 2)
declare -A res
for ((r = 0; r < reps; r++)); do
  for lib in "${libs[@]}"; do
    out=$(LD_PRELOAD=$lib "$bin/wl-$w" "${args[@]}")
    v=$(grep -o 'scored_s=[0-9.]*' <<<"$out" | cut -d= -f2 || true)
    [ -n "$v" ] || v=$(grep -o 'time=[0-9.]*' <<<"$out" | cut -d= -f2)
    res[$lib]="${res[$lib]:-} $v"
  done
done
for lib in "${libs[@]}"; do
  med=$(tr ' ' '\n' <<<"${res[$lib]}" | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
  echo "$w $lib: median $med of $reps [${res[$lib]} ]"
done
