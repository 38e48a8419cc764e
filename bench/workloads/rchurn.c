/* rchurn: random-size churn through a pool of slots, the allocator's cost alone.
 *
 * Each thread owns a pool of 4096 slots, filled at the start. Every step frees the block of a
 * random slot and puts a block of a random size there: mostly 8-128 bytes, a quarter up to 1 KiB,
 * a tail up to 8 KiB (wl_typical_size). Unlike churn, nothing but a tag in the first and last 8
 * bytes of each block is written and checked, and there is no realloc: the time is the
 * allocator's. Built twice: wl-rchurn1 always runs one thread, wl-rchurn takes -t. */
#include "common.h"

#include <string.h>

#define SLOTS 4096
#define MAX_SIZE 8192

#ifdef RCHURN_SINGLE
#define RC_NAME "rchurn1"
#else
#define RC_NAME "rchurn"
#endif

typedef struct worker {
  const wl_args *a;
  int id;
  size_t steps;
  char pad[64];
} worker;

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

static void *run(void *arg) {
  worker *w = arg;
  wl_rng r;
  wl_rng_seed(&r, w->a->seed, (uint64_t)w->id);
  unsigned char **p = wl_malloc(SLOTS * sizeof *p);
  uint32_t *n = wl_malloc(SLOTS * sizeof *n);
  uint64_t *tag = wl_malloc(SLOTS * sizeof *tag), next = ((uint64_t)w->id << 48) + 1;
  for (size_t k = 0; k < SLOTS; k++) {
    n[k] = (uint32_t)wl_typical_size(&r, MAX_SIZE);
    if (n[k] < 16) n[k] = 16;
    p[k] = wl_malloc(n[k]);
    stamp(p[k], n[k], tag[k] = next++);
  }
  for (size_t i = 0; i < w->steps; i++) {
    size_t k = wl_below(&r, SLOTS);
    check(p[k], n[k], tag[k]);
    free(p[k]);
    n[k] = (uint32_t)wl_typical_size(&r, MAX_SIZE);
    if (n[k] < 16) n[k] = 16;
    p[k] = wl_malloc(n[k]);
    stamp(p[k], n[k], tag[k] = next++);
  }
  for (size_t k = 0; k < SLOTS; k++) {
    check(p[k], n[k], tag[k]);
    free(p[k]);
  }
  free(p);
  free(n);
  free(tag);
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, RC_NAME, argc, argv, 0, 1);
#ifdef RCHURN_SINGLE
  a.threads = 1;
#endif
  worker *w = wl_calloc((size_t)a.threads, sizeof *w);
  size_t steps = wl_scaled(&a, 1.0e7 / a.threads, 10000);
  for (int i = 0; i < a.threads; i++) w[i] = (worker){.a = &a, .id = i, .steps = steps};
  double t0 = wl_now();
  wl_run_threads(a.threads, run, w, sizeof *w);
  double t = wl_now() - t0;
  wl_summary(&a, t, "steps=%zu slots=%d", steps * (size_t)a.threads, SLOTS);
  free(w);
  return 0;
}
