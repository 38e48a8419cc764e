#!/usr/bin/env bash
# The main job: install what is missing, build ramalloc, and run the demo, which allocates through
# ramalloc and prints what its arenas hold.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j"$(nproc)" >/dev/null
"$root/build/ramalloc-demo"
