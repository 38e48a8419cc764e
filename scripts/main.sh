#!/usr/bin/env bash
# The main job: install what is missing, build ramalloc and the benchmark programs once (in build/),
# run the demo (what its arenas hold), then the benchmark suite's quick set: every workload and a
# set of microbenchmarks under ramalloc, mimalloc, glibc, jemalloc and tcmalloc, side by side,
# ending with a table made for the terminal. The full report (Markdown, JSON, SVG chart) goes to
# build/results/ (untracked). A few minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
t_start=$(date +%s)
times=()
step() { printf '\n== %s\n' "$*"; t_step=$(date +%s); }
took() { times+=("$1 $(( $(date +%s) - t_step )) s"); }

step "packages (scripts/install-deps.sh)"
bash "$root/scripts/install-deps.sh"
took packages

step "configure build/ (CMake, Release)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DRAMALLOC_BENCH=ON
step "build the library, the demo and the benchmark programs"
cmake --build "$build" -j"$(nproc)" --target ramalloc ramalloc_static ramalloc-demo bench-all
took build

step "demo: build/ramalloc-demo (--classes for the table of size classes)"
"$build/ramalloc-demo"

step "benchmarks: bench/run.sh --quick (bench/README.md has every option)"
status=0
bash "$root/bench/run.sh" --quick --build-dir "$build" || status=$?
took benchmarks

total=$(( $(date +%s) - t_start ))
joined=$(printf '%s, ' "${times[@]}")
printf '\nmain: %d min %02d s in all (%s)\n' $((total / 60)) $((total % 60)) "${joined%, }"
exit $status
