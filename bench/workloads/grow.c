/* grow: string builders and vectors grown with realloc.
 *
 * Each thread keeps 64 string builders and 16 vectors under construction at once and extends a
 * random one at every step, so growing blocks are interleaved with each other.
 * - A string grows by 1-48 random bytes at a time and is reallocated to its exact new length (plus
 *   a terminating NUL) at every append, the way a naive string builder does: cheap only if the
 *   allocator can often grow in place. Its target length is log-uniform in 16 B .. 64 KiB. A running
 *   hash of the appended bytes is compared with a hash of the finished string.
 * - A vector of 64-bit values doubles its capacity with realloc when full; its target length is
 *   log-uniform in 16 .. 256 Ki elements (2 MiB). Element i holds a value derived from (vector, i)
 *   and every element is checked when the vector is complete. */
#include "common.h"

#include <string.h>

#define NSTR 64
#define NVEC 16

typedef struct str {
  char *p;
  size_t len, target;
  uint64_t hash, id;
} str;

typedef struct vec {
  uint64_t *p;
  size_t len, cap, target;
  uint64_t id;
} vec;

typedef struct worker {
  int id;
  const wl_args *a;
  size_t steps;
  uint64_t strings_done, vectors_done, reallocs;
  char pad[64];
} worker;

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

static void str_start(str *s, wl_rng *r, uint64_t id) {
  s->p = NULL;
  s->len = 0;
  s->target = wl_log_uniform(r, 16, 64 * 1024);
  s->hash = 0xcbf29ce484222325ULL;
  s->id = id;
}

static void str_finish(str *s) {
  if (s->p[s->len] != 0 || strlen(s->p) != s->len)
    wl_corrupt("string %llu: length %zu but terminator moved", (unsigned long long)s->id, s->len);
  if (fnv(0xcbf29ce484222325ULL, (unsigned char *)s->p, s->len) != s->hash)
    wl_corrupt("string %llu of %zu bytes at %p: content differs from what was appended",
               (unsigned long long)s->id, s->len, (void *)s->p);
  free(s->p);
}

static void vec_start(vec *v, wl_rng *r, uint64_t id) {
  v->p = NULL;
  v->len = v->cap = 0;
  v->target = wl_log_uniform(r, 16, 256 * 1024);
  v->id = id;
}

static uint64_t vec_value(const vec *v, size_t i) { return wl_mix((v->id << 24) ^ i); }

static void vec_finish(vec *v) {
  for (size_t i = 0; i < v->len; i++)
    if (v->p[i] != vec_value(v, i))
      wl_corrupt("vector %llu (%zu elements at %p): element %zu is %#llx, expected %#llx",
                 (unsigned long long)v->id, v->len, (void *)v->p, i,
                 (unsigned long long)v->p[i], (unsigned long long)vec_value(v, i));
  free(v->p);
}

static void *run(void *arg) {
  worker *w = arg;
  wl_rng r;
  wl_rng_seed(&r, w->a->seed, (uint64_t)w->id);
  str s[NSTR];
  vec v[NVEC];
  uint64_t next_id = (uint64_t)w->id << 32;
  for (int i = 0; i < NSTR; i++) str_start(&s[i], &r, next_id++);
  for (int i = 0; i < NVEC; i++) vec_start(&v[i], &r, next_id++);
  for (size_t step = 0; step < w->steps; step++) {
    uint64_t k = wl_below(&r, 5);
    if (k < 4) { /* 4 in 5 steps extend a string by one piece */
      str *x = &s[wl_below(&r, NSTR)];
      unsigned char piece[48];
      size_t n = wl_between(&r, 1, sizeof piece);
      uint64_t bits = wl_rand(&r);
      for (size_t i = 0; i < n; i++) piece[i] = (unsigned char)('A' + (bits >> (i % 58)) % 26);
      x->p = wl_realloc(x->p, x->len + n + 1);
      memcpy(x->p + x->len, piece, n);
      x->len += n;
      x->p[x->len] = 0;
      x->hash = fnv(x->hash, piece, n);
      w->reallocs++;
      if (x->len >= x->target) {
        str_finish(x);
        w->strings_done++;
        str_start(x, &r, next_id++);
      }
    } else { /* the other step pushes 64 elements onto a vector */
      vec *x = &v[wl_below(&r, NVEC)];
      for (int j = 0; j < 64 && x->len < x->target; j++) {
        if (x->len == x->cap) {
          x->cap = x->cap ? 2 * x->cap : 4;
          x->p = wl_realloc(x->p, x->cap * sizeof *x->p);
          w->reallocs++;
        }
        x->p[x->len] = vec_value(x, x->len);
        x->len++;
      }
      if (x->len >= x->target) {
        vec_finish(x);
        w->vectors_done++;
        vec_start(x, &r, next_id++);
      }
    }
  }
  for (int i = 0; i < NSTR; i++)
    if (s[i].p) str_finish(&s[i]);
  for (int i = 0; i < NVEC; i++)
    if (v[i].p) vec_finish(&v[i]);
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "grow", argc, argv, 0, 1);
  worker *w = wl_calloc((size_t)a.threads, sizeof *w);
  size_t steps = wl_scaled(&a, 4.0e6 / a.threads, 2000);
  for (int i = 0; i < a.threads; i++) {
    w[i].id = i;
    w[i].a = &a;
    w[i].steps = steps;
  }
  double t0 = wl_now();
  wl_run_threads(a.threads, run, w, sizeof *w);
  double t = wl_now() - t0;
  uint64_t sd = 0, vd = 0, re = 0;
  for (int i = 0; i < a.threads; i++)
    sd += w[i].strings_done, vd += w[i].vectors_done, re += w[i].reallocs;
  wl_summary(&a, t, "reallocs=%llu strings=%llu vectors=%llu", (unsigned long long)re,
             (unsigned long long)sd, (unsigned long long)vd);
  free(w);
  return 0;
}
