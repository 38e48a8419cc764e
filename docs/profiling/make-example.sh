#!/usr/bin/env bash
# Remake the worked example of docs/profiling.md: python3 (every object through malloc) running
# docs/profiling/work.py on ramalloc with the profiler and the timeline on; a profile and a layout
# dump at its peak (SIGUSR2). Writes the pictures next to this script and prints the text shown in
# the document. Usage: docs/profiling/make-example.sh [BUILD_DIR]   (default: build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
PYTHONMALLOC=malloc RAMALLOC_DUMP_SIGNAL=USR2 RAMALLOC_DUMP_LAYOUT="$tmp/layout.json" \
  RAMALLOC_PROFILE_FILE="$tmp/python.heap" \
  "$build/ramalloc-run" --profile --timeline="$here/python-timeline.svg" -- "$py" "$here/work.py"
rm -f "$here/python-timeline.csv"
echo "== google-pprof --text (profile at the peak)"
google-pprof --text "$py" "$tmp/python.heap.1" 2>/dev/null | head -14
echo "== ramalloc-fold (profile at the peak), first lines"
"$root/tools/ramalloc-fold" "$tmp/python.heap.1" | head -6 | cut -c1-220
google-pprof --svg --nodecount=25 "$py" "$tmp/python.heap.1" > "$here/python-pprof.svg" 2>/dev/null
"$root/tools/ramalloc-map" "$tmp/layout.1.json" -o "$here/python-sites.svg" --by-site --no-tooltips --max-chunks 10
echo "== sites in the layout dump"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print(s['live_bytes'], s['live_blocks'], s['where']) for s in d['sites'][:8]]" "$tmp/layout.1.json"
ls -l "$here"/*.svg
