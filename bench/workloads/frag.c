/* frag: fragmentation. How much memory stays resident against the bytes a program holds?
 *
 * A heap of mixed sizes (70% of blocks 16-512 B, 25% 0.5-4 KiB, 5% 4-32 KiB) is built up to
 * 192 MiB of live data (quick scale). Then, for 4 rounds, every other live block (in allocation
 * order) is freed, which leaves holes all over the heap, and new blocks are allocated from a size
 * mix shifted a quarter larger each round, replacing half the bytes freed. Freed blocks are checked
 * first, all survivors at the end. Results: live_mib (bytes requested and still held), rss_mib,
 * and rss_over_live, after the first free of every other block and at the end. With -t N each
 * thread builds its own heap of 1/N of the size. */
#include "common.h"

#include <pthread.h>

#define ROUNDS 4

typedef struct blk {
  void *p;
  size_t n;
  uint64_t tag;
} blk;

typedef struct worker {
  int id;
  const wl_args *a;
  size_t target;
  pthread_barrier_t *bar;
  size_t live, live_half;
  size_t count;
  char pad[64];
} worker;

static size_t pick_size(wl_rng *r, double shift) {
  uint64_t k = wl_below(r, 100);
  size_t n;
  if (k < 70)
    n = wl_between(r, 16, 512);
  else if (k < 95)
    n = wl_between(r, 513, 4096);
  else
    n = wl_between(r, 4097, 32768);
  return (size_t)((double)n * shift);
}

static size_t g_rss_half;

static void *run(void *arg) {
  worker *w = arg;
  wl_rng r;
  wl_rng_seed(&r, w->a->seed, (uint64_t)w->id);
  size_t cap = 4096, n = 0, live = 0;
  uint64_t next_tag = ((uint64_t)w->id << 40) + 1;
  blk *b = wl_malloc(cap * sizeof *b);
  while (live < w->target) {
    if (n == cap) b = wl_realloc(b, (cap *= 2) * sizeof *b);
    size_t sz = pick_size(&r, 1.0);
    b[n] = (blk){wl_malloc(sz), sz, next_tag++};
    wl_fill(b[n].p, sz, b[n].tag);
    live += sz;
    n++;
  }
  double shift = 1.0;
  for (int round = 0; round < ROUNDS; round++) {
    /* free every other block, keeping the survivors in allocation order */
    size_t kept = 0, freed = 0;
    for (size_t i = 0; i < n; i++) {
      if (i % 2) {
        wl_verify(b[i].p, b[i].n, b[i].tag, "frag block before free");
        free(b[i].p);
        freed += b[i].n;
      } else {
        b[kept++] = b[i];
      }
    }
    n = kept;
    live -= freed;
    if (round == 0) {
      w->live_half = live;
      pthread_barrier_wait(w->bar); /* main reads RSS with every thread at this point */
      pthread_barrier_wait(w->bar);
    }
    /* refill half of what was freed with somewhat larger blocks */
    shift *= 1.25;
    size_t added = 0;
    while (added < freed / 2) {
      if (n == cap) b = wl_realloc(b, (cap *= 2) * sizeof *b);
      size_t sz = pick_size(&r, shift);
      b[n] = (blk){wl_malloc(sz), sz, next_tag++};
      wl_fill(b[n].p, sz, b[n].tag);
      added += sz;
      n++;
    }
    live += added;
  }
  w->live = live;
  w->count = n;
  pthread_barrier_wait(w->bar); /* main reads the final RSS */
  pthread_barrier_wait(w->bar);
  for (size_t i = 0; i < n; i++) {
    wl_verify(b[i].p, b[i].n, b[i].tag, "frag block at the end");
    free(b[i].p);
  }
  free(b);
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "frag", argc, argv, 1, 1);
  size_t target = wl_scaled(&a, 192.0 * 1024 * 1024, 2 * 1024 * 1024);
  if (target > (size_t)1024 << 20) target = (size_t)1024 << 20;
  worker *w = wl_calloc((size_t)a.threads, sizeof *w);
  pthread_t *t = wl_calloc((size_t)a.threads, sizeof *t);
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, (unsigned)a.threads + 1);
  double t0 = wl_now();
  for (int i = 0; i < a.threads; i++) {
    w[i] = (worker){.id = i, .a = &a, .target = target / (size_t)a.threads, .bar = &bar};
    if (pthread_create(&t[i], NULL, run, &w[i])) wl_die("pthread_create failed");
  }
  pthread_barrier_wait(&bar);
  g_rss_half = wl_rss_bytes();
  pthread_barrier_wait(&bar);
  pthread_barrier_wait(&bar);
  size_t rss_end = wl_rss_bytes();
  pthread_barrier_wait(&bar);
  for (int i = 0; i < a.threads; i++) pthread_join(t[i], NULL);
  double secs = wl_now() - t0;
  size_t live = 0, live_half = 0, count = 0;
  for (int i = 0; i < a.threads; i++)
    live += w[i].live, live_half += w[i].live_half, count += w[i].count;
  wl_summary(&a, secs,
             "blocks=%zu half_live_mib=%.1f half_rss_mib=%.1f half_rss_over_live=%.2f "
             "live_mib=%.1f rss_mib=%.1f rss_over_live=%.2f",
             count, wl_mib(live_half), wl_mib(g_rss_half),
             (double)g_rss_half / (double)live_half, wl_mib(live), wl_mib(rss_end),
             (double)rss_end / (double)live);
  pthread_barrier_destroy(&bar);
  free(t);
  free(w);
  return 0;
}
