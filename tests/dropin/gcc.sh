#!/usr/bin/env bash
# gcc -O2 compiling a generated C file (a few thousand functions with loops, switches, structs and
# inlining chances: work for the optimiser, whose passes allocate heavily), under the system
# allocator and with ramalloc preloaded into the driver, cc1 and the assembler. The object files
# must be byte-identical.
. "$(dirname "$0")/common.sh"
need gcc

gen_source() {
  # awk writes the file (plain shell is slow at this size).
  awk -v N="${1:-1500}" 'BEGIN {
    print "#include <stddef.h>"
    print "struct rec { int a, b; long c; double d; char name[16]; };"
    for (i = 0; i < N; i++) {
      printf "static int helper%d(int x) { return (x * %d + %d) ^ (x >> %d); }\n", i, i * 31 + 7, i, i % 13 + 1
      printf "long fn%d(struct rec *r, size_t n, int k) {\n", i
      printf "  long acc = %d;\n", i
      printf "  for (size_t j = 0; j < n; j++) {\n"
      printf "    switch ((r[j].a + k + %d) %% 8) {\n", i
      for (c = 0; c < 8; c++)
        printf "      case %d: acc += helper%d(r[j].b + %d) * (long)r[j].c; break;\n", c, (i + c) % (i + 1), c
      printf "    }\n"
      printf "    if (r[j].d > %d.5) acc ^= (long)(r[j].d * %d);\n", i % 100, i % 17 + 2
      printf "    for (int q = 0; q < %d; q++) r[j].name[q %% 16] = (char)(acc + q);\n", i % 9 + 1
      printf "  }\n"
      if (i > 0) printf "  if (k > 0) acc += fn%d(r, n / 2, k - 1);\n", i - 1
      printf "  return acc;\n}\n"
    }
  }'
}
gen_source 500 > gen.c

timed "gcc -O2 (system allocator)" gcc -O2 -c gen.c -o glibc.o 2> glibc.err ||
  fail "gcc failed under the system allocator: $(cat glibc.err)"
timed "gcc -O2 (ramalloc)" "${RAMALLOC[@]}" gcc -O2 -c gen.c -o ramalloc.o 2> ramalloc.err ||
  fail "gcc failed under ramalloc: $(cat ramalloc.err)"
assert_ramalloc_active gcc --version
cmp glibc.o ramalloc.o || fail "the object files differ"
echo "gen.c: $(wc -l < gen.c) lines, object $(wc -c < ramalloc.o) bytes"
show_figures
echo "gcc: identical object files"
