/* large: big blocks, 64 KiB to 64 MiB.
 *
 * Each thread keeps a window of 4 live blocks with log-uniform sizes between 64 KiB and 64 MiB
 * (at most 256 MiB live per thread). An operation picks a slot: its block is checked, then one
 * time in four resized with realloc (the kept part is checked again), otherwise freed and replaced
 * by a fresh allocation. Every block is written on every page (a word per 4 KiB plus both ends),
 * as a program that uses its memory would, so the cost of fresh pages shows. */
#include "common.h"

#define WINDOW 4
#define MIN_SIZE (64u << 10)
#define MAX_SIZE (64u << 20)

typedef struct worker {
  int id;
  const wl_args *a;
  size_t ops;
  uint64_t reallocs, bytes;
  char pad[64];
} worker;

static void *run(void *arg) {
  worker *w = arg;
  wl_rng r;
  wl_rng_seed(&r, w->a->seed, (uint64_t)w->id);
  unsigned char *p[WINDOW] = {0};
  size_t n[WINDOW] = {0};
  uint64_t tag[WINDOW] = {0}, next_tag = ((uint64_t)w->id << 40) + 1;
  for (size_t op = 0; op < w->ops; op++) {
    int k = (int)wl_below(&r, WINDOW);
    size_t size = wl_log_uniform(&r, MIN_SIZE, MAX_SIZE);
    if (p[k]) {
      wl_verify_sparse(p[k], n[k], tag[k], "large block");
      if (wl_below(&r, 4) == 0) {
        size_t keep = n[k] < size ? n[k] : size;
        p[k] = wl_realloc(p[k], size);
        size_t bad = wl_check_sparse_prefix(p[k], n[k], keep, tag[k]);
        if (bad != (size_t)-1)
          wl_corrupt("large block realloc %zu -> %zu bytes lost content at byte %zu (now %p)", n[k],
                     size, bad, (void *)p[k]);
        w->reallocs++;
      } else {
        free(p[k]);
        p[k] = wl_malloc(size);
      }
    } else {
      p[k] = wl_malloc(size);
    }
    n[k] = size;
    tag[k] = next_tag++;
    wl_fill_sparse(p[k], size, tag[k]);
    w->bytes += size;
  }
  for (int k = 0; k < WINDOW; k++) {
    if (!p[k]) continue;
    wl_verify_sparse(p[k], n[k], tag[k], "large block at the end");
    free(p[k]);
  }
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "large", argc, argv, 0, 1);
  worker *w = wl_calloc((size_t)a.threads, sizeof *w);
  size_t ops = wl_scaled(&a, 200.0 / a.threads, 8);
  for (int i = 0; i < a.threads; i++) {
    w[i].id = i;
    w[i].a = &a;
    w[i].ops = ops;
  }
  double t0 = wl_now();
  wl_run_threads(a.threads, run, w, sizeof *w);
  double t = wl_now() - t0;
  uint64_t re = 0, bytes = 0;
  for (int i = 0; i < a.threads; i++) re += w[i].reallocs, bytes += w[i].bytes;
  wl_summary(&a, t, "ops=%zu reallocs=%llu mib_allocated=%.0f", ops * (size_t)a.threads,
             (unsigned long long)re, wl_mib(bytes));
  free(w);
  return 0;
}
