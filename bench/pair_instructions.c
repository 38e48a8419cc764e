/* Steady-state malloc/free pair: 1,024 live 32-byte blocks; each step frees a random one and
 * allocates its replacement. Run under `valgrind --tool=callgrind` at two step counts: the
 * difference divided by the difference in steps is the cost of one step, start-up cancelled.
 * Built three ways: -DPAIR_RAMALLOC (ra_malloc/ra_free), plain (the C library's malloc, or a
 * preloaded one), -DPAIR_NONE (the loop alone, to subtract its own cost). */
#include <stdio.h>
#include <stdlib.h>
#ifdef PAIR_RAMALLOC
#include <ramalloc.h>
#define MALLOC ra_malloc
#define FREE ra_free
#elif defined(PAIR_NONE)
static char pool[1024][32];
static unsigned pool_next;
#define MALLOC(n) ((void *)pool[pool_next++ & 1023])
#define FREE(p) ((void)(p))
#else
#define MALLOC malloc
#define FREE free
#endif

int main(int argc, char **argv) {
  long steps = argc > 1 ? atol(argv[1]) : 1000000;
  static void *live[1024];
  for (int i = 0; i < 1024; i++) live[i] = MALLOC(32);
  unsigned x = 2463534242u;
  for (long s = 0; s < steps; s++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    unsigned i = x & 1023;
    FREE(live[i]);
    live[i] = MALLOC(32);
    *(volatile char *)live[i] = (char)s;
  }
  for (int i = 0; i < 1024; i++) FREE(live[i]);
  return 0;
}
