#!/usr/bin/env bash
# Side-by-side of one workload under several preloaded libraries (e.g. ramalloc before and after a
# change): runs are interleaved, and the median of each library's results is printed with all the
# samples. The result is the workload's scored_s where it reports one (throughput-scored), else its
# own time= figure (the timed part, without start-up and exit), then the median CPU time (user plus
# system seconds of the whole process).
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
declare -A res cpu
cpu_file=$(mktemp)
trap 'rm -f "$cpu_file"' EXIT
TIMEFORMAT='%U %S' # the process's user and system seconds, from bash's own `time`
for ((r = 0; r < reps; r++)); do
  for lib in "${libs[@]}"; do
    out=$({ time LD_PRELOAD=$lib "$bin/wl-$w" "${args[@]}" 2>/dev/null; } 2>"$cpu_file")
    v=$(grep -o 'scored_s=[0-9.]*' <<<"$out" | cut -d= -f2 || true)
    [ -n "$v" ] || v=$(grep -o 'time=[0-9.]*' <<<"$out" | cut -d= -f2)
    res[$lib]="${res[$lib]:-} $v"
    cpu[$lib]="${cpu[$lib]:-} $(awk '{printf "%.2f", $1 + $2}' "$cpu_file")"
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for lib in "${libs[@]}"; do
  echo "$w $lib: median $(median "${res[$lib]}") of $reps [${res[$lib]} ], CPU median $(median "${cpu[$lib]}") s [${cpu[$lib]} ]"
done
