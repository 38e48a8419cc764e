/* memreturn: is memory given back to the system after a peak?
 *
 * The threads allocate a peak of mixed blocks (half the bytes in 16-512 B blocks, 30% in
 * 1-64 KiB, 20% in 256 KiB-4 MiB; 256 MiB in all at the quick scale), writing every page. Then
 * each thread checks and frees its blocks and stays alive but idle. The resident set size (RSS)
 * is read before the peak, at the peak, right after the frees, after a wait during which the main
 * thread makes one small allocation every 10 ms (quick: 1 s), and once more after the threads have
 * exited. Results: rss_*_mib, and returned_pct = share of the peak's growth given back by the end
 * of the wait. */
#include "common.h"

#include <pthread.h>

typedef struct blk {
  void *p;
  size_t n;
  uint64_t tag;
} blk;

typedef struct worker {
  int id;
  const wl_args *a;
  size_t bytes_target;
  size_t count;
  blk *b;
  char pad[64];
} worker;

static pthread_barrier_t g_allocated, g_freed, g_measured;

static size_t pick_size(wl_rng *r) {
  /* The classes average about 264 B, 15 KiB and 1.35 MiB; drawing them in the proportions
   * 98.94% : 1.052% : 0.008% splits the bytes about 50% : 30% : 20%. */
  uint64_t k = wl_below(r, 100000);
  if (k < 98940) return wl_between(r, 16, 512);
  if (k < 99992) return wl_log_uniform(r, 1024, 64 * 1024);
  return wl_log_uniform(r, 256 * 1024, 4 * 1024 * 1024);
}

static void *run(void *arg) {
  worker *w = arg;
  wl_rng r;
  wl_rng_seed(&r, w->a->seed, (uint64_t)w->id);
  size_t cap = 1024, total = 0;
  w->b = wl_malloc(cap * sizeof *w->b);
  while (total < w->bytes_target) {
    if (w->count == cap) w->b = wl_realloc(w->b, (cap *= 2) * sizeof *w->b);
    size_t n = pick_size(&r);
    void *p = wl_malloc(n);
    uint64_t tag = ((uint64_t)w->id << 40) ^ w->count;
    wl_fill_sparse(p, n, tag);
    w->b[w->count++] = (blk){p, n, tag};
    total += n;
  }
  pthread_barrier_wait(&g_allocated);
  pthread_barrier_wait(&g_measured);
  /* free in a shuffled order, as a program tearing down a structure would */
  for (size_t i = w->count; i > 1; i--) {
    size_t j = wl_below(&r, i);
    blk t = w->b[i - 1];
    w->b[i - 1] = w->b[j];
    w->b[j] = t;
  }
  for (size_t i = 0; i < w->count; i++) {
    wl_verify_sparse(w->b[i].p, w->b[i].n, w->b[i].tag, "memreturn block");
    free(w->b[i].p);
  }
  free(w->b);
  w->b = NULL;
  pthread_barrier_wait(&g_freed);   /* main measures right after the frees */
  pthread_barrier_wait(&g_measured); /* ... and after the wait; then the thread exits */
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "memreturn", argc, argv, 0, 1);
  size_t peak_target = wl_scaled(&a, 256.0 * 1024 * 1024, 4 * 1024 * 1024);
  if (peak_target > (size_t)1536 << 20) peak_target = (size_t)1536 << 20;
  double wait = a.scale < 0.1 ? 0.1 : a.scale > 2 ? 2 : a.scale;
  worker *w = wl_calloc((size_t)a.threads, sizeof *w);
  pthread_t *t = wl_calloc((size_t)a.threads, sizeof *t);
  unsigned nt = (unsigned)a.threads + 1;
  pthread_barrier_init(&g_allocated, NULL, nt);
  pthread_barrier_init(&g_freed, NULL, nt);
  pthread_barrier_init(&g_measured, NULL, nt);
  size_t rss_base = wl_rss_bytes();
  double t0 = wl_now();
  for (int i = 0; i < a.threads; i++) {
    w[i].id = i;
    w[i].a = &a;
    w[i].bytes_target = peak_target / (size_t)a.threads;
    if (pthread_create(&t[i], NULL, run, &w[i])) wl_die("pthread_create failed");
  }
  pthread_barrier_wait(&g_allocated);
  size_t rss_peak = wl_rss_bytes();
  pthread_barrier_wait(&g_measured);
  pthread_barrier_wait(&g_freed);
  size_t rss_freed = wl_rss_bytes();
  double until = wl_now() + wait;
  while (wl_now() < until) {
    void *p = wl_malloc(64);
    ((volatile char *)p)[0] = 1;
    free(p);
    wl_sleep(0.01);
  }
  size_t rss_wait = wl_rss_bytes();
  pthread_barrier_wait(&g_measured);
  for (int i = 0; i < a.threads; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 10; i++) {
    void *p = wl_malloc(64);
    ((volatile char *)p)[0] = 1;
    free(p);
    wl_sleep(0.01);
  }
  size_t rss_exit = wl_rss_bytes();
  double secs = wl_now() - t0;
  double grown = (double)rss_peak - (double)rss_base;
  double returned = grown > 0 ? 100.0 * ((double)rss_peak - (double)rss_wait) / grown : 0;
  wl_summary(&a, secs,
             "peak_target_mib=%.0f rss_base_mib=%.1f rss_peak_mib=%.1f rss_freed_mib=%.1f "
             "rss_wait_mib=%.1f rss_exit_mib=%.1f returned_pct=%.1f wait_s=%.2f",
             wl_mib(peak_target), wl_mib(rss_base), wl_mib(rss_peak), wl_mib(rss_freed),
             wl_mib(rss_wait), wl_mib(rss_exit), returned, wait);
  pthread_barrier_destroy(&g_allocated);
  pthread_barrier_destroy(&g_freed);
  pthread_barrier_destroy(&g_measured);
  free(t);
  free(w);
  return 0;
}
