/* Options from the environment and ramalloc's own output on Windows (getenv and write(2) through
 * the C runtime, before and without any allocation): run by ctest with RAMALLOC_VERBOSE=1 and
 * small arenas, its stderr is matched against the lines the options contract promises. The Windows
 * counterpart of tests/test_verbose.c, which re-executes itself with fork and exec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ramalloc.h"

int main(void) {
  enum { N = 1280 };
  static void *p[N];
  for (int i = 0; i < N; i++) { /* 40 MiB in 32 KiB blocks: a few 16 MiB arenas */
    p[i] = ra_malloc(32 * 1024);
    if (p[i] == NULL) return 3;
    memset(p[i], i, 64);
  }
  ra_stats_t st;
  ra_stats_get(&st);
  for (int i = 0; i < N; i++) ra_free(p[i]);
  printf("arenas=%zu\n", st.arenas);
  ra_stats_print(1);
  return st.arenas >= 3 ? 0 : 4;
}
