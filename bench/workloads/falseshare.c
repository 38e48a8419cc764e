/* falseshare: does the allocator make threads share cache lines?
 *
 * Built twice. FS_ACTIVE=1 (wl-fs-active): every thread repeatedly allocates a small object,
 * writes to it many times and frees it. An allocator that hands neighbouring small blocks to
 * different threads makes them fight over a cache line.
 * FS_ACTIVE=0 (wl-fs-passive): the main thread allocates GIVEN small objects per thread, back to
 * back and interleaved (one for thread 0, one for thread 1, ...), and hands them over; each thread
 * writes to its objects, frees them, and then goes on like the active case. An allocator that lets
 * a thread reuse a block freed there but allocated by another thread keeps the threads' objects
 * next to each other, in shared cache lines.
 *
 * Each object is checked after its writes. Run time is dominated by the writes, so a slowdown
 * against the other allocators means false sharing. */
#include "common.h"

#include <string.h>

#ifndef FS_ACTIVE
#error "define FS_ACTIVE to 1 (active false sharing) or 0 (passive)"
#endif

#define OBJ 8        /* object size */
#define WRITES 1000  /* writes per object, a multiple of OBJ */
#define GIVEN 8      /* passive: objects the main thread allocates for each thread */

typedef struct worker {
  int id;
  size_t rounds;
  unsigned char *given[GIVEN]; /* passive: objects the main thread allocated */
  char pad[64];
} worker;

static void hammer(unsigned char *p, int id, size_t round) {
  volatile unsigned char *v = p;
  unsigned char start = (unsigned char)(id * 31 + round);
  for (int k = 0; k < OBJ; k++) v[k] = start;
  for (int j = 0; j < WRITES; j++) v[j % OBJ]++;
  unsigned char want = (unsigned char)(start + WRITES / OBJ);
  for (int k = 0; k < OBJ; k++)
    if (v[k] != want)
      wl_corrupt("thread %d round %zu: object %p byte %d is %u, expected %u", id, round,
                 (void *)p, k, v[k], want);
}

static void *run(void *arg) {
  worker *w = arg;
  size_t round = 0;
  for (int i = 0; i < GIVEN; i++) {
    if (!w->given[i]) continue;
    hammer(w->given[i], w->id, round++);
    free(w->given[i]);
  }
  for (; round < w->rounds; round++) {
    unsigned char *p = wl_malloc(OBJ);
    hammer(p, w->id, round);
    free(p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, FS_ACTIVE ? "fs-active" : "fs-passive", argc, argv, 0, 2);
  worker *w = wl_calloc((size_t)a.threads, sizeof *w);
  size_t rounds = wl_scaled(&a, 250000, 200);
  for (int i = 0; i < a.threads; i++) {
    w[i].id = i;
    w[i].rounds = rounds;
  }
  for (int k = 0; k < GIVEN && !FS_ACTIVE; k++)
    for (int i = 0; i < a.threads; i++) w[i].given[k] = wl_malloc(OBJ);
  double t0 = wl_now();
  wl_run_threads(a.threads, run, w, sizeof *w);
  double t = wl_now() - t0;
  wl_summary(&a, t, "objects=%zu writes=%llu", rounds * (size_t)a.threads,
             (unsigned long long)rounds * (unsigned long long)a.threads * WRITES);
  free(w);
  return 0;
}
