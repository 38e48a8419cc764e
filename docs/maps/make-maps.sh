#!/usr/bin/env bash
# Regenerate the maps in docs/layout.md from real programs running on ramalloc:
#   python3: a script that indexes the words of a licence text, dumped mid-run by RAMALLOC_DUMP_SIGNAL
#   gcc -O2 -g -c allocator/arena.c: every process dumps at exit (RAMALLOC_DUMP_LAYOUT with %p); the
#   map is cc1's, the compiler proper
# Usage: docs/maps/make-maps.sh [BUILD_DIR]   (default build/; needs libramalloc.so built there)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
lib=$build/libramalloc.so
map=$root/tools/ramalloc-map
out=$root/docs/maps
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -f "$lib" ] || { echo "no $lib: build first (cmake -S . -B build && cmake --build build)" >&2; exit 1; }
unset $(env | grep -o '^RAMALLOC_[A-Z_]*' || true)

# python3, with every object through malloc (PYTHONMALLOC=malloc: pymalloc would serve small ones
# from its own arenas), dumped by the signal while the script still holds its data
cat > "$tmp/index.py" <<'PY'
import collections, json, os, re, signal, time
text = open('/usr/share/common-licenses/GPL-3').read()
words = re.findall(r"[a-z]+", text.lower()) * 4
index = collections.defaultdict(list)
for i, w in enumerate(words):
    index[w].append(i)
doc = json.dumps({w: v[:50] for w, v in index.items()})
back = json.loads(doc)
os.kill(os.getpid(), signal.SIGUSR2)  # RAMALLOC_DUMP_SIGNAL: the dump is written by ramalloc's thread
want = os.environ['RAMALLOC_DUMP_LAYOUT'].replace('%p', str(os.getpid())).replace('.json', '.1.json')
while not os.path.exists(want):
    time.sleep(0.01)
print(len(words), 'words,', len(index), 'distinct,', len(doc), 'bytes of JSON')
PY
(cd "$tmp" && LD_PRELOAD=$lib PYTHONMALLOC=malloc RAMALLOC_DUMP_LAYOUT="$tmp/python.%p.json" \
  RAMALLOC_DUMP_SIGNAL=SIGUSR2 python3 index.py)
py=$(ls "$tmp"/python.*.1.json)
python3 "$map" "$py" -o "$out/python.svg" --no-tooltips --text > "$out/python.txt"

# gcc: the driver, cc1 and as each write their own dump at exit; keep cc1's
(cd "$tmp" && LD_PRELOAD=$lib RAMALLOC_DUMP_LAYOUT="$tmp/gcc.%p.json" \
  gcc -O2 -g -I"$root/include" -I"$root/allocator" -c "$root/allocator/arena.c" -o arena.o)
cc1=$(grep -l '"command": "[^"]*/cc1 ' "$tmp"/gcc.*.json)
python3 "$map" "$cc1" -o "$out/gcc-cc1.svg" --text > "$out/gcc-cc1.txt"
ls -l "$out"
