/* kvstore: a long-lived mixed workload, a key-value store built on chained hash maps.
 *
 * Each thread owns a map and all threads share a second one split into 16 locked stripes. An
 * operation picks the private map (4 in 5) or the shared one, a random key, and then looks the key
 * up (half the time; the value is checked), inserts or updates it (a quarter; an update either
 * reallocates the value or replaces it), or deletes it (a quarter; the value is checked first).
 * Nodes carry their key as text; values have typical sizes up to 16 KiB. Tables grow and shrink
 * (calloc a new bucket array, rehash, free the old). Entries in the shared map are created and
 * destroyed by different threads. At the end every map is walked, counted, checked and freed. */
#include "common.h"

#include <pthread.h>
#include <string.h>

#define STRIPES 16
#define KEYLEN 17 /* "k" and 16 hex digits */

typedef struct node {
  struct node *next;
  uint64_t key, tag;
  size_t vlen;
  unsigned char *val;
  char keytext[KEYLEN + 1];
} node;

typedef struct map {
  node **b;
  size_t nb, count;
} map;

typedef struct stripe {
  pthread_mutex_t mu;
  map m;
  char pad[64];
} stripe;

typedef struct worker {
  int id;
  const wl_args *a;
  size_t ops;
  uint64_t lookups, hits, inserts, updates, deletes;
  map m;
  char pad[64];
} worker;

static stripe g_shared[STRIPES];
static uint64_t g_private_keys, g_shared_keys;

static void key_text(char *out, uint64_t key) {
  static const char hex[] = "0123456789abcdef";
  out[0] = 'k';
  for (int i = 0; i < 16; i++) out[1 + i] = hex[(key >> (60 - 4 * i)) & 15];
  out[KEYLEN] = 0;
}

static void map_init(map *m) {
  m->nb = 1024;
  m->count = 0;
  m->b = wl_calloc(m->nb, sizeof *m->b);
}

static void map_resize(map *m, size_t nb) {
  node **b = wl_calloc(nb, sizeof *b);
  for (size_t i = 0; i < m->nb; i++) {
    node *x = m->b[i];
    while (x) {
      node *next = x->next;
      size_t h = wl_mix(x->key) & (nb - 1);
      x->next = b[h];
      b[h] = x;
      x = next;
    }
  }
  free(m->b);
  m->b = b;
  m->nb = nb;
}

static node **map_find(map *m, uint64_t key) {
  node **pp = &m->b[wl_mix(key) & (m->nb - 1)];
  while (*pp && (*pp)->key != key) pp = &(*pp)->next;
  return pp;
}

static void check_node(const node *x, const char *what) {
  char t[KEYLEN + 1];
  key_text(t, x->key);
  if (memcmp(t, x->keytext, sizeof t))
    wl_corrupt("%s: node %p for key %s holds key text '%.*s'", what, (const void *)x, t, KEYLEN,
               x->keytext);
  wl_verify(x->val, x->vlen, x->tag, what);
}

static void set_value(node *x, wl_rng *r, int realloc_it) {
  size_t n = wl_typical_size(r, 16384);
  if (realloc_it) {
    x->val = wl_realloc(x->val, n);
  } else {
    free(x->val);
    x->val = wl_malloc(n);
  }
  x->vlen = n;
  x->tag = wl_mix(x->key) ^ wl_rand(r);
  wl_fill(x->val, n, x->tag);
}

/* One operation on map m; returns nothing, counts into w. */
static void op(worker *w, wl_rng *r, map *m, uint64_t key) {
  uint64_t k = wl_below(r, 4);
  node **pp = map_find(m, key);
  node *x = *pp;
  if (k < 2) {
    w->lookups++;
    if (x) {
      w->hits++;
      check_node(x, "kvstore value on lookup");
    }
  } else if (k == 2) {
    if (x) {
      check_node(x, "kvstore value before update");
      set_value(x, r, (int)wl_below(r, 2));
      w->updates++;
    } else {
      x = wl_malloc(sizeof *x);
      x->next = NULL;
      x->key = key;
      x->val = NULL;
      key_text(x->keytext, key);
      set_value(x, r, 0);
      *pp = x;
      if (++m->count > m->nb) map_resize(m, m->nb * 2);
      w->inserts++;
    }
  } else if (x) {
    check_node(x, "kvstore value before delete");
    *pp = x->next;
    free(x->val);
    free(x);
    if (--m->count < m->nb / 8 && m->nb > 1024) map_resize(m, m->nb / 2);
    w->deletes++;
  }
}

static size_t map_destroy(map *m, const char *what) {
  size_t n = 0;
  for (size_t i = 0; i < m->nb; i++) {
    node *x = m->b[i];
    while (x) {
      node *next = x->next;
      if ((wl_mix(x->key) & (m->nb - 1)) != i)
        wl_corrupt("%s: key %s found in bucket %zu of %zu", what, x->keytext, i, m->nb);
      check_node(x, what);
      free(x->val);
      free(x);
      n++;
      x = next;
    }
  }
  if (n != m->count) wl_corrupt("%s: map holds %zu nodes but counted %zu", what, n, m->count);
  free(m->b);
  return n;
}

static void *run(void *arg) {
  worker *w = arg;
  wl_rng r;
  wl_rng_seed(&r, w->a->seed, (uint64_t)w->id);
  map_init(&w->m);
  for (size_t i = 0; i < w->ops; i++) {
    if (wl_below(&r, 5)) {
      op(w, &r, &w->m, ((uint64_t)w->id << 48) | wl_below(&r, g_private_keys));
    } else {
      uint64_t key = (1ULL << 63) | wl_below(&r, g_shared_keys);
      stripe *s = &g_shared[wl_mix(key ^ 0x5bd1e995) % STRIPES];
      pthread_mutex_lock(&s->mu);
      op(w, &r, &s->m, key);
      pthread_mutex_unlock(&s->mu);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "kvstore", argc, argv, 0, 1);
  size_t ops = wl_scaled(&a, 2.0e6 / a.threads, 2000);
  g_private_keys = wl_scaled(&a, 100000, 1000);
  if (g_private_keys > 200000) g_private_keys = 200000;
  g_shared_keys = g_private_keys;
  worker *w = wl_calloc((size_t)a.threads, sizeof *w);
  for (int i = 0; i < STRIPES; i++) {
    pthread_mutex_init(&g_shared[i].mu, NULL);
    map_init(&g_shared[i].m);
  }
  for (int i = 0; i < a.threads; i++) {
    w[i].id = i;
    w[i].a = &a;
    w[i].ops = ops;
  }
  double t0 = wl_now();
  wl_run_threads(a.threads, run, w, sizeof *w);
  size_t live = 0;
  uint64_t lookups = 0, hits = 0, inserts = 0, updates = 0, deletes = 0;
  for (int i = 0; i < a.threads; i++) {
    live += map_destroy(&w[i].m, "kvstore private map at the end");
    lookups += w[i].lookups, hits += w[i].hits, inserts += w[i].inserts;
    updates += w[i].updates, deletes += w[i].deletes;
  }
  for (int i = 0; i < STRIPES; i++) {
    live += map_destroy(&g_shared[i].m, "kvstore shared map at the end");
    pthread_mutex_destroy(&g_shared[i].mu);
  }
  double t = wl_now() - t0;
  if (inserts - deletes != live)
    wl_corrupt("%llu inserts and %llu deletes but %zu entries left", (unsigned long long)inserts,
               (unsigned long long)deletes, live);
  wl_summary(&a, t, "ops=%zu lookups=%llu hits=%llu inserts=%llu updates=%llu deletes=%llu",
             ops * (size_t)a.threads, (unsigned long long)lookups, (unsigned long long)hits,
             (unsigned long long)inserts, (unsigned long long)updates,
             (unsigned long long)deletes);
  free(w);
  return 0;
}
