/* pstress: a stress test with a power-law size distribution, blocks handed between threads
 * through a shared array, and threads re-created every round.
 *
 * A round starts T threads and joins them. Each thread keeps up to 512 blocks of its own and
 * performs a number of steps: allocate a block (half the steps) with a size from a power-law
 * distribution (size class k, 16 << k bytes give or take, has probability about 2^-k: nearly all
 * small, now and then 64 KiB to 1 MiB), free one of its blocks (a quarter), or swap one of its
 * blocks with a random slot of a shared transfer array of 1024 (a quarter): the block it gets back
 * was usually allocated by another thread, and perhaps in an earlier round. When a thread ends it
 * leaves half of its blocks in the transfer array (freeing what they displace) and frees the rest,
 * so part of every thread's memory outlives it. Each block describes itself (a tag, its size, and
 * a word derived from the tag at its end), checked whenever a thread takes it over or frees it. */
#include "common.h"

#include <stdatomic.h>
#include <string.h>

#define LOCAL 512
#define TRANSFER 1024

static _Atomic(uint64_t *) g_transfer[TRANSFER];

typedef struct worker {
  const wl_args *a;
  int id;
  size_t steps;
  uint64_t next_tag, allocated, swaps;
  char pad[64];
} worker;

static size_t power_law_size(wl_rng *r) {
  unsigned k = 0;
  while (k < 16 && (wl_rand(r) & 1)) k++; /* P(k) = 2^-(k+1) */
  size_t base = (size_t)16 << k;
  size_t n = base + wl_below(r, base); /* 16 B .. 2 MiB, rarely past 64 KiB */
  return n < 24 ? 24 : n;            /* room for the tag, the size and the end word */
}

static uint64_t *make(worker *w, wl_rng *r) {
  size_t n = power_law_size(r);
  uint64_t *p = wl_malloc(n), tag = w->next_tag++;
  p[0] = tag;
  p[1] = n;
  memcpy((unsigned char *)p + n - 8, &(uint64_t){wl_mix(tag)}, 8);
  w->allocated++;
  return p;
}

static void check(const uint64_t *p) {
  uint64_t end;
  if (p[1] < 24 || p[1] > ((size_t)4 << 20)) wl_corrupt("block %p: size word %#llx", (void *)p, (unsigned long long)p[1]);
  memcpy(&end, (const unsigned char *)p + p[1] - 8, 8);
  if (end != wl_mix(p[0])) wl_corrupt("block %p of %llu bytes (tag %#llx) was written over", (void *)p,
                                      (unsigned long long)p[1], (unsigned long long)p[0]);
}

static void drop(uint64_t *p) {
  if (!p) return;
  check(p);
  free(p);
}

static void *run(void *arg) {
  worker *w = arg;
  wl_rng r;
  wl_rng_seed(&r, w->a->seed, w->next_tag);
  uint64_t *mine[LOCAL];
  size_t have = 0;
  for (size_t s = 0; s < w->steps; s++) {
    uint64_t op = wl_below(&r, 4);
    if (op < 2) {
      uint64_t *p = make(w, &r);
      if (have == LOCAL) {
        size_t k = wl_below(&r, LOCAL);
        drop(mine[k]);
        mine[k] = p;
      } else {
        mine[have++] = p;
      }
    } else if (op == 2) {
      if (have == 0) continue;
      size_t k = wl_below(&r, have);
      drop(mine[k]);
      mine[k] = mine[--have];
    } else {
      if (have == 0) continue;
      size_t k = wl_below(&r, have);
      uint64_t *got = atomic_exchange(&g_transfer[wl_below(&r, TRANSFER)], mine[k]);
      w->swaps++;
      if (got) {
        check(got);
        mine[k] = got;
      } else {
        mine[k] = mine[--have];
      }
    }
  }
  for (size_t k = 0; k < have; k++) {
    if (k % 2 == 0)
      drop(atomic_exchange(&g_transfer[wl_below(&r, TRANSFER)], mine[k]));
    else
      drop(mine[k]);
  }
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "pstress", argc, argv, 0, 1);
  size_t rounds = wl_scaled(&a, 50, 3);
  size_t steps = wl_scaled(&a, 1.0e7 / 50 / a.threads, 2000);
  worker *w = wl_calloc((size_t)a.threads, sizeof *w);
  uint64_t allocated = 0, swaps = 0;
  double t0 = wl_now();
  for (size_t round = 0; round < rounds; round++) {
    for (int i = 0; i < a.threads; i++)
      w[i] = (worker){.a = &a, .id = i, .steps = steps, .next_tag = ((uint64_t)(round * a.threads + i) << 40) + 1};
    wl_run_threads(a.threads, run, w, sizeof *w);
    for (int i = 0; i < a.threads; i++) allocated += w[i].allocated, swaps += w[i].swaps;
  }
  for (size_t k = 0; k < TRANSFER; k++) drop(atomic_exchange(&g_transfer[k], NULL));
  double t = wl_now() - t0;
  wl_summary(&a, t, "rounds=%zu steps_per_thread=%zu allocated=%llu swaps=%llu", rounds, steps,
             (unsigned long long)allocated, (unsigned long long)swaps);
  free(w);
  return 0;
}
