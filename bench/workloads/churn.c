/* churn: random-size allocation churn with content verification.
 *
 * Each thread owns a table of slots. An operation picks a random slot; if it holds a block, the
 * block's content is checked and the block freed (or, one time in eight, resized with realloc,
 * checking that the kept prefix survived); then a new block of a random size is allocated and
 * filled with a pattern derived from a fresh tag. At the end every remaining block is checked and
 * freed. Sizes follow a "typical program" mix: mostly 8-128 B, some up to 8 KiB, rarely up to
 * 64 KiB. */
#include "common.h"

#include <string.h>

typedef struct slot {
  unsigned char *p;
  size_t n;
  uint64_t tag;
} slot;

typedef struct worker {
  const wl_args *a;
  int id;
  size_t ops, nslots;
  uint64_t bytes_allocated, reallocs;
  char pad[64];
} worker;

static void *run(void *arg) {
  worker *w = arg;
  wl_rng r;
  wl_rng_seed(&r, w->a->seed, (uint64_t)w->id);
  slot *s = wl_calloc(w->nslots, sizeof *s);
  uint64_t next_tag = ((uint64_t)w->id << 48) + 1;
  for (size_t op = 0; op < w->ops; op++) {
    slot *x = &s[wl_below(&r, w->nslots)];
    size_t n = wl_typical_size(&r, 64 * 1024);
    if (x->p && wl_below(&r, 8) == 0) {
      /* resize: the prefix must survive, then the block is rewritten under a new tag */
      wl_verify(x->p, x->n, x->tag, "churn block before realloc");
      size_t keep = x->n < n ? x->n : n;
      x->p = wl_realloc(x->p, n);
      wl_verify(x->p, keep, x->tag, "churn block prefix after realloc");
      w->reallocs++;
    } else {
      if (x->p) {
        wl_verify(x->p, x->n, x->tag, "churn block before free");
        free(x->p);
      }
      x->p = wl_malloc(n);
    }
    x->n = n;
    x->tag = next_tag++;
    wl_fill(x->p, n, x->tag);
    w->bytes_allocated += n;
  }
  for (size_t i = 0; i < w->nslots; i++) {
    if (!s[i].p) continue;
    wl_verify(s[i].p, s[i].n, s[i].tag, "churn block at the end");
    free(s[i].p);
  }
  free(s);
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "churn", argc, argv, 0, 1);
  worker *w = wl_calloc((size_t)a.threads, sizeof *w);
  size_t ops = wl_scaled(&a, 1.5e6 / a.threads, 2000);
  size_t nslots = wl_scaled(&a, 20000, 500);
  if (nslots > 20000) nslots = 20000;
  for (int i = 0; i < a.threads; i++) {
    w[i].a = &a;
    w[i].id = i;
    w[i].ops = ops;
    w[i].nslots = nslots;
  }
  double t0 = wl_now();
  wl_run_threads(a.threads, run, w, sizeof *w);
  double t = wl_now() - t0;
  uint64_t bytes = 0, reallocs = 0;
  for (int i = 0; i < a.threads; i++) bytes += w[i].bytes_allocated, reallocs += w[i].reallocs;
  wl_summary(&a, t, "ops=%zu reallocs=%llu slots=%zu mib_allocated=%.0f",
             ops * (size_t)a.threads, (unsigned long long)reallocs, nslots, wl_mib(bytes));
  free(w);
  return 0;
}
