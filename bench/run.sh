#!/bin/sh
# Run ramalloc's benchmark suite: builds what it needs, runs every workload and microbenchmark
# under every installed allocator, writes latest.{md,json,svg} to build-bench/results/ (untracked)
# and prints a report made for the terminal.
#   bench/run.sh [--quick|--full|--tiny] [--allocators a,b,c] [--reps N] [--publish] [--help]
# Needs python3 (standard library only), cmake, a C/C++ compiler and libbenchmark-dev.
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v python3 >/dev/null 2>&1; then
  echo "run.sh: python3 is needed (Debian: apt-get install python3)" >&2
  exit 2
fi
exec python3 "$here/runner.py" "$@"
