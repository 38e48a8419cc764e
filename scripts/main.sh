#!/usr/bin/env bash
# The main job: install what is missing, build ramalloc, run the demo (what its arenas hold), then
# the benchmark suite's quick set: every workload and a set of microbenchmarks under ramalloc,
# mimalloc, glibc, jemalloc and tcmalloc, side by side, with the Markdown table printed at the end
# (also in bench/results/latest.md, with JSON and an SVG chart). A few minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j"$(nproc)" >/dev/null
"$root/build/ramalloc-demo"
echo
bash "$root/bench/run.sh"
