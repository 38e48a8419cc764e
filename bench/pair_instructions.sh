#!/usr/bin/env bash
# Instructions per malloc/free pair (32-byte blocks, 1,024 live, random replacement), counted by
# callgrind as the difference between two step counts, minus the loop's own cost. ramalloc twice:
# ra_malloc/ra_free from a program linked to libramalloc.so, and malloc/free with it preloaded.
# The same loop through C++'s operator new and sized / plain delete (pair_new.cpp), with
# libramalloc.so preloaded, follows.
# Usage: bench/pair_instructions.sh [BUILD_DIR]   (BUILD_DIR holds libramalloc.so; default build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc=${CC:-cc}
$cc -O2 -o "$tmp/pair_glibc" "$here/pair_instructions.c"
$cc -O2 -DPAIR_NONE -o "$tmp/pair_none" "$here/pair_instructions.c"
$cc -O2 -DPAIR_RAMALLOC -I"$here/../include" -o "$tmp/pair_ra" "$here/pair_instructions.c" \
  -L"$build" -lramalloc -Wl,-rpath,"$build"
count() { # binary steps [env...] -> total instructions
  local bin=$1 steps=$2; shift 2
  env "$@" valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$bin" "$steps" >/dev/null 2>"$tmp/cg.err"
  awk '/^summary:/ {print $2}' "$tmp/cg.out"
}
per_step() { # name binary [env...]
  local name=$1 bin=$2; shift 2
  local a b
  a=$(count "$bin" 200000 "$@")
  b=$(count "$bin" 1200000 "$@")
  echo "$name $(( (b - a) / 1000000 ))"
}
none=$(per_step none "$tmp/pair_none" | awk '{print $2}')
printf '%-22s %s\n' "allocator" "instructions per pair (loop cost $none subtracted)"
report() { local n=$2; printf '%-22s %d\n' "$1" $(( n - none )); }
report ramalloc "$(per_step ra "$tmp/pair_ra" | awk '{print $2}')"
# the same library as a drop-in: the program's malloc and free, through the PLT
report "ramalloc (preloaded)" "$(per_step ra_preload "$tmp/pair_glibc" LD_PRELOAD="$build/libramalloc.so" | awk '{print $2}')"
report glibc "$(per_step glibc "$tmp/pair_glibc" | awk '{print $2}')"
for lib in /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
           /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4; do
  [ -e "$lib" ] || continue
  name=$(basename "$lib" | sed 's/^lib//; s/\.so.*//')
  report "$name (preloaded)" "$(per_step "$name" "$tmp/pair_glibc" LD_PRELOAD="$lib" | awk '{print $2}')"
done
cxx=${CXX:-c++}
$cxx -O2 -std=c++17 -o "$tmp/pair_new_sized" "$here/pair_new.cpp"
$cxx -O2 -std=c++17 -DPAIR_UNSIZED -o "$tmp/pair_new_plain" "$here/pair_new.cpp"
report "new + sized delete (ramalloc preloaded)" \
  "$(per_step new_sized "$tmp/pair_new_sized" LD_PRELOAD="$build/libramalloc.so" | awk '{print $2}')"
report "new + delete (ramalloc preloaded)" \
  "$(per_step new_plain "$tmp/pair_new_plain" LD_PRELOAD="$build/libramalloc.so" | awk '{print $2}')"
report "new + sized delete (glibc)" "$(per_step new_glibc "$tmp/pair_new_sized" | awk '{print $2}')"
