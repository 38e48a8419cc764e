/* leak: a program that never frees part of what it allocates, with many tiny blocks.
 *
 * Like a big-number program (cfrac's pattern): one thread, blocks of 16-64 bytes built in short
 * bursts (a "number" of 2-16 limbs' worth of small blocks), most of them freed soon after in the
 * reverse order, and one block in eight never freed. Live memory therefore grows steadily while
 * the allocator serves a stream of tiny pairs; the peak RSS shows what the leaked blocks cost.
 * Every block carries a tag in its first and last 8 bytes, checked before it is freed; the leaked
 * ones are checked once more at the end. */
#include "common.h"

#include <string.h>

#define BURST_MAX 16

static void stamp(unsigned char *p, size_t n, uint64_t tag) {
  memcpy(p, &tag, 8);
  memcpy(p + n - 8, &tag, 8);
}

static void check(const unsigned char *p, size_t n, uint64_t tag) {
  uint64_t a, b;
  memcpy(&a, p, 8);
  memcpy(&b, p + n - 8, 8);
  if (a != tag || b != tag) wl_corrupt("block %p of %zu bytes (tag %#llx) was written over", (void *)p, n,
                                       (unsigned long long)tag);
}

typedef struct kept {
  unsigned char *p;
  uint32_t n;
  uint64_t tag;
} kept;

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "leak", argc, argv, 1, 1);
  a.threads = 1;
  wl_rng r;
  wl_rng_seed(&r, a.seed, 0);
  size_t bursts = wl_scaled(&a, 1.5e6, 2000);
  /* The leaked blocks are remembered (in a growing array) only to be checked at the end. */
  size_t nleak = 0, cap = 1024;
  kept *leaked = wl_malloc(cap * sizeof *leaked);
  uint64_t tag = 1, blocks = 0, leaked_bytes = 0;
  double t0 = wl_now();
  for (size_t b = 0; b < bursts; b++) {
    kept burst[BURST_MAX];
    size_t m = wl_between(&r, 2, BURST_MAX);
    for (size_t i = 0; i < m; i++) {
      burst[i].n = (uint32_t)wl_between(&r, 16, 64);
      burst[i].p = wl_malloc(burst[i].n);
      burst[i].tag = tag++;
      stamp(burst[i].p, burst[i].n, burst[i].tag);
    }
    blocks += m;
    for (size_t i = m; i-- > 0;) {
      if (wl_below(&r, 8) == 0) {
        if (nleak == cap) leaked = wl_realloc(leaked, (cap *= 2) * sizeof *leaked);
        leaked[nleak++] = burst[i];
        leaked_bytes += burst[i].n;
        continue;
      }
      check(burst[i].p, burst[i].n, burst[i].tag);
      free(burst[i].p);
    }
  }
  double t = wl_now() - t0;
  for (size_t i = 0; i < nleak; i++) check(leaked[i].p, leaked[i].n, leaked[i].tag);
  wl_summary(&a, t, "blocks=%llu leaked=%zu leaked_mib=%.1f", (unsigned long long)blocks, nleak,
             wl_mib(leaked_bytes));
  free(leaked);
  return 0;
}
