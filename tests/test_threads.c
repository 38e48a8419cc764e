/* Multi-threaded use: blocks allocated in one thread and freed (or reallocated) in another, threads
 * that exit with live blocks, new threads reusing what exited threads left, producer/consumer
 * reuse of remotely freed memory. Every block carries a pattern derived from its address, size and
 * a unique tag, checked before every free wherever it happens. Runs under ThreadSanitizer in CI. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"
#include "ramalloc.h"

/* ---- errors from worker threads (cmocka asserts only work on the test's own thread) ----------- */

static atomic_int n_errors;
static char first_error[512];
static pthread_mutex_t error_mu = PTHREAD_MUTEX_INITIALIZER;

static void report(const char *fmt, size_t a, size_t b, const void *p) {
  if (atomic_fetch_add(&n_errors, 1) == 0) {
    pthread_mutex_lock(&error_mu);
    char msg[400];
    snprintf(msg, sizeof msg, fmt, a, b);
    snprintf(first_error, sizeof first_error, "%s (block %p)", msg, p);
    pthread_mutex_unlock(&error_mu);
  }
}

static void assert_no_worker_errors(void) {
  int n = atomic_load(&n_errors);
  if (n != 0) {
    char msg[sizeof first_error];
    pthread_mutex_lock(&error_mu);
    memcpy(msg, first_error, sizeof msg);
    pthread_mutex_unlock(&error_mu); /* before fail_msg, which does not return */
    fail_msg("%d error(s) in worker threads; first: %s", n, msg);
  }
}

static void reset_errors(void) { atomic_store(&n_errors, 0); }

/* ---- blocks ----------------------------------------------------------------------------------- */

typedef struct item_s {
  void *p;
  size_t n;
  uint64_t tag;
} item_t;

static atomic_uint_fast64_t next_tag = 1;

static size_t random_size(rt_rng_t *r) {
  size_t pick = rt_rng_range(r, 0, 999);
  if (pick < 985) { /* log-uniform 8 B .. 64 KiB */
    unsigned e = (unsigned)rt_rng_range(r, 3, 15);
    return rt_rng_range(r, (size_t)1 << e, ((size_t)2 << e));
  }
  if (pick < 998) return rt_rng_range(r, 64 * RA_KiB + 1, RA_MiB);
  return rt_rng_range(r, 2 * RA_MiB + 1, 4 * RA_MiB);
}

static bool new_item(rt_rng_t *r, item_t *it) {
  size_t n = random_size(r);
  size_t how = rt_rng_range(r, 0, 99);
  void *p;
  if (how < 5) {
    size_t align = (size_t)16 << rt_rng_range(r, 0, 8);
    p = ra_aligned_alloc(align, n);
    if (p && !rt_is_aligned(p, align)) report("aligned_alloc(%zu, %zu) misaligned", align, n, p);
  } else if (how < 8) {
    p = ra_calloc(1, n);
    if (p) {
      const uint8_t *b = p;
      for (size_t i = 0; i < n; i += (n > 4096 ? 61 : 1))
        if (b[i] != 0) {
          report("calloc(%zu) byte %zu not zero", n, i, p);
          break;
        }
    }
  } else {
    p = ra_malloc(n);
  }
  if (!p) {
    report("allocation of %zu bytes failed (%zu)", n, how, NULL);
    return false;
  }
  if (!rt_is_aligned(p, 16)) report("block of %zu not 16-aligned (%zu)", n, 0, p);
  if (ra_usable_size(p) < n) report("usable %zu < size %zu", ra_usable_size(p), n, p);
  it->p = p;
  it->n = n;
  it->tag = atomic_fetch_add_explicit(&next_tag, 1, memory_order_relaxed);
  rt_fill(p, n, rt_seed_of(p, n, it->tag));
  return true;
}

static void check_item(const item_t *it) {
  if (!ra_owns(it->p)) report("ra_owns false for a live block of %zu (%zu)", it->n, 0, it->p);
  size_t bad = rt_check(it->p, it->n, rt_seed_of(it->p, it->n, it->tag));
  if (bad != SIZE_MAX) report("block of %zu bytes corrupted at offset %zu", it->n, bad, it->p);
}

static void free_item(item_t *it) {
  check_item(it);
  ra_free(it->p);
  it->p = NULL;
}

/* Reallocate to a new random size (possibly remote), checking the kept prefix. */
static void realloc_item(rt_rng_t *r, item_t *it) {
  check_item(it);
  size_t m = random_size(r);
  void *q = ra_realloc(it->p, m);
  if (!q) {
    report("realloc to %zu failed (%zu)", m, it->n, it->p);
    ra_free(it->p);
    it->p = NULL;
    return;
  }
  /* the kept prefix still has the old pattern, computed with the old address */
  uint64_t old_seed = rt_seed_of(it->p, it->n, it->tag);
  size_t bad = rt_check_prefix(q, it->n, m, old_seed);
  if (bad != SIZE_MAX) report("realloc %zu -> lost byte %zu", it->n, bad, q);
  it->p = q;
  it->n = m;
  it->tag = atomic_fetch_add_explicit(&next_tag, 1, memory_order_relaxed);
  rt_fill(q, m, rt_seed_of(q, m, it->tag));
}

/* ---- mutex-protected queues, one per thread --------------------------------------------------- */

enum { QCAP = 512 };

typedef struct queue_s {
  pthread_mutex_t mu;
  size_t head, count;
  item_t buf[QCAP];
} queue_t;

static void queue_init(queue_t *q) {
  pthread_mutex_init(&q->mu, NULL);
  q->head = q->count = 0;
}

static bool queue_push(queue_t *q, const item_t *it) {
  bool ok = false;
  pthread_mutex_lock(&q->mu);
  if (q->count < QCAP) {
    q->buf[(q->head + q->count) % QCAP] = *it;
    q->count++;
    ok = true;
  }
  pthread_mutex_unlock(&q->mu);
  return ok;
}

static bool queue_pop(queue_t *q, item_t *it) {
  bool ok = false;
  pthread_mutex_lock(&q->mu);
  if (q->count > 0) {
    *it = q->buf[q->head];
    q->head = (q->head + 1) % QCAP;
    q->count--;
    ok = true;
  }
  pthread_mutex_unlock(&q->mu);
  return ok;
}

/* ---- stress ----------------------------------------------------------------------------------- */

enum { MAXT = 8, SLOTS = 256 };

typedef struct stress_s {
  int nthreads;
  long iters;
  queue_t queues[MAXT];
} stress_t;

typedef struct worker_s {
  stress_t *s;
  int id;
  bool keep_live; /* exit with the live blocks still allocated and hand them back */
  item_t slots[SLOTS];
} worker_t;

static void drain(queue_t *q, rt_rng_t *r, item_t *slots) {
  item_t it;
  while (queue_pop(q, &it)) {
    size_t act = rt_rng_range(r, 0, 9);
    if (act == 0) {
      realloc_item(r, &it); /* remote realloc: the old block is freed by a non-owner */
      if (!it.p) continue;
      size_t i = rt_rng_range(r, 0, SLOTS - 1);
      if (!slots[i].p) {
        slots[i] = it;
        continue;
      }
    }
    free_item(&it);
  }
}

static void *stress_worker(void *arg) {
  worker_t *w = arg;
  stress_t *s = w->s;
  rt_rng_t r;
  rt_rng_seed(&r, 1000 + (uint64_t)w->id);
  memset(w->slots, 0, sizeof w->slots);
  for (long k = 0; k < s->iters; k++) {
    if ((k & 15) == 0) drain(&s->queues[w->id], &r, w->slots);
    item_t *it = &w->slots[rt_rng_range(&r, 0, SLOTS - 1)];
    if (!it->p) {
      new_item(&r, it);
      continue;
    }
    size_t act = rt_rng_range(&r, 0, 99);
    if (act < 35 && s->nthreads > 1) {
      int to = (int)rt_rng_range(&r, 0, (size_t)s->nthreads - 2);
      if (to >= w->id) to++;
      check_item(it);
      if (queue_push(&s->queues[to], it)) {
        it->p = NULL;
        continue;
      }
    }
    if (act >= 35 && act < 42) {
      realloc_item(&r, it);
      continue;
    }
    free_item(it);
  }
  drain(&s->queues[w->id], &r, w->slots);
  if (!w->keep_live)
    for (int i = 0; i < SLOTS; i++)
      if (w->slots[i].p) free_item(&w->slots[i]);
  return NULL;
}

static size_t live_blocks(void) {
  ra_stats_t st;
  ra_stats_get(&st);
  return st.live_blocks;
}

static stress_t g_stress;
static worker_t g_workers[MAXT];

static void run_stress(int nthreads, long iters, bool keep_live) {
  stress_t *s = &g_stress;
  s->nthreads = nthreads;
  s->iters = iters;
  for (int i = 0; i < nthreads; i++) queue_init(&s->queues[i]);
  pthread_t th[MAXT];
  for (int i = 0; i < nthreads; i++) {
    g_workers[i].s = s;
    g_workers[i].id = i;
    g_workers[i].keep_live = keep_live;
    assert_int_equal(pthread_create(&th[i], NULL, stress_worker, &g_workers[i]), 0);
  }
  for (int i = 0; i < nthreads; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
  /* blocks pushed to a thread that had already finished: check and free them here */
  for (int i = 0; i < nthreads; i++) {
    item_t it;
    while (queue_pop(&s->queues[i], &it)) free_item(&it);
    pthread_mutex_destroy(&s->queues[i].mu);
  }
}

static void free_leftovers(int nthreads) {
  for (int i = 0; i < nthreads; i++)
    for (int k = 0; k < SLOTS; k++)
      if (g_workers[i].slots[k].p) free_item(&g_workers[i].slots[k]);
}

static void test_stress_2(void **state) {
  (void)state;
  reset_errors();
  size_t base = live_blocks();
  run_stress(2, 200000 / RA_TEST_SCALE, false);
  assert_no_worker_errors();
  assert_int_equal(live_blocks(), base);
}

static void test_stress_8(void **state) {
  (void)state;
  reset_errors();
  size_t base = live_blocks();
  run_stress(8, 60000 / RA_TEST_SCALE, false);
  assert_no_worker_errors();
  assert_int_equal(live_blocks(), base);
}

/* ---- threads that exit with live blocks ------------------------------------------------------- */

enum { ABANDON_N = 3000 };
static item_t abandoned[ABANDON_N];

static void *alloc_and_exit(void *arg) {
  (void)arg;
  rt_rng_t r;
  rt_rng_seed(&r, 4242);
  for (int i = 0; i < ABANDON_N; i++) new_item(&r, &abandoned[i]);
  return NULL; /* exits with every block live */
}

static void *check_and_free_half(void *arg) {
  (void)arg;
  for (int i = 0; i < ABANDON_N; i += 2) free_item(&abandoned[i]);
  for (int i = 1; i < ABANDON_N; i += 2) check_item(&abandoned[i]);
  return NULL;
}

static void test_abandoned_blocks(void **state) {
  (void)state;
  reset_errors();
  size_t base = live_blocks();
  pthread_t t;

  /* A allocates and exits */
  assert_int_equal(pthread_create(&t, NULL, alloc_and_exit, NULL), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_no_worker_errors();
  assert_int_equal(live_blocks(), base + ABANDON_N);

  /* B checks all of A's blocks and frees half of them */
  assert_int_equal(pthread_create(&t, NULL, check_and_free_half, NULL), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_no_worker_errors();
  /* blocks freed by a thread other than the owner may still count until they are collected */
  size_t lb = live_blocks();
  assert_true(lb >= base + ABANDON_N / 2 && lb <= base + ABANDON_N);

  /* new threads allocate a lot (reusing what A left) and exit with their blocks live */
  run_stress(4, 30000 / RA_TEST_SCALE, true);
  assert_no_worker_errors();

  /* nothing handed out to them overlapped A's live blocks, and theirs are intact too */
  for (int i = 1; i < ABANDON_N; i += 2) free_item(&abandoned[i]);
  free_leftovers(4);
  assert_no_worker_errors();
  assert_int_equal(live_blocks(), base);

  /* and after all that, fresh threads still work */
  run_stress(3, 10000 / RA_TEST_SCALE, false);
  assert_no_worker_errors();
  assert_int_equal(live_blocks(), base);
}

/* ---- thread churn: memory of exited threads is reused ----------------------------------------- */

typedef struct churn_s {
  uint64_t seed;
  item_t survivor;
} churn_t;

static void *churn_worker(void *arg) {
  churn_t *c = arg;
  rt_rng_t r;
  rt_rng_seed(&r, c->seed);
  enum { K = 1024 };
  item_t items[K];
  /* about 16 MiB live at the peak, in blocks of 16 B .. 32 KiB */
  size_t total = 0;
  int n = 0;
  while (total < 16 * RA_MiB / RA_TEST_SCALE && n < K) {
    size_t sz = rt_rng_range(&r, 16, 32 * RA_KiB);
    void *p = ra_malloc(sz);
    if (!p) {
      report("churn: ra_malloc(%zu) failed after %zu bytes", sz, total, NULL);
      break;
    }
    items[n].p = p;
    items[n].n = sz;
    items[n].tag = (uint64_t)n;
    rt_fill(p, sz, rt_seed_of(p, sz, (uint64_t)n));
    total += sz;
    n++;
  }
  /* free all but one, which the main thread frees after we exit */
  for (int i = 1; i < n; i++) free_item(&items[i]);
  c->survivor = items[0];
  return NULL;
}

static void test_thread_churn_reuses_memory(void **state) {
  (void)state;
  reset_errors();
  size_t base = live_blocks();
  ra_stats_t st0, st;
  ra_stats_get(&st0);
  const int rounds = 32 / RA_TEST_SCALE;
  size_t worst = 0;
  for (int k = 0; k < rounds; k++) {
    churn_t c = {.seed = (uint64_t)k + 99};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, churn_worker, &c), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_no_worker_errors();
    free_item(&c.survivor); /* remote free into an exited thread's page */
    ra_stats_get(&st);
    if (st.committed > worst) worst = st.committed;
  }
  assert_no_worker_errors();
  assert_int_equal(live_blocks(), base);
  /* each round peaks at ~16 MiB live; without reuse of exited threads' memory the committed total
   * would climb by that much every round */
  size_t growth = worst > st0.committed ? worst - st0.committed : 0;
  if (growth > 8 * 16 * RA_MiB / RA_TEST_SCALE)
    fail_msg("committed grew by %zu bytes over %d rounds of thread churn", growth, rounds);
}

/* ---- producer / consumers: the producer reuses blocks freed remotely -------------------------- */

enum { NCONS = 3 };
static queue_t pc_queue;
static atomic_bool pc_done;
static atomic_long pc_consumed;

static void *consumer(void *arg) {
  (void)arg;
  item_t it;
  for (;;) {
    if (queue_pop(&pc_queue, &it)) {
      free_item(&it);
      atomic_fetch_add(&pc_consumed, 1);
    } else if (atomic_load(&pc_done)) {
      if (!queue_pop(&pc_queue, &it)) break;
      free_item(&it);
      atomic_fetch_add(&pc_consumed, 1);
    } else {
      sched_yield();
    }
  }
  return NULL;
}

static void test_producer_consumers(void **state) {
  (void)state;
  reset_errors();
  size_t base = live_blocks();
  ra_stats_t st0, st1;
  ra_stats_get(&st0);
  queue_init(&pc_queue);
  atomic_store(&pc_done, false);
  atomic_store(&pc_consumed, 0);
  pthread_t th[NCONS];
  for (int i = 0; i < NCONS; i++) assert_int_equal(pthread_create(&th[i], NULL, consumer, NULL), 0);

  rt_rng_t r;
  rt_rng_seed(&r, 5);
  const long total = 200000 / RA_TEST_SCALE;
  size_t worst = st0.committed;
  for (long k = 0; k < total; k++) {
    if (k % 1024 == 0) {
      ra_stats_get(&st1);
      if (st1.committed > worst) worst = st1.committed;
    }
    item_t it;
    size_t n = rt_rng_range(&r, 8, 2048);
    it.p = ra_malloc(n);
    if (!it.p) {
      report("producer: ra_malloc(%zu) failed at item %zu", n, (size_t)k, NULL);
      break;
    }
    it.n = n;
    it.tag = (uint64_t)k;
    rt_fill(it.p, n, rt_seed_of(it.p, n, it.tag));
    while (!queue_push(&pc_queue, &it)) sched_yield();
  }
  atomic_store(&pc_done, true);
  for (int i = 0; i < NCONS; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
  assert_no_worker_errors();
  assert_int_equal(atomic_load(&pc_consumed), total);
  assert_int_equal(live_blocks(), base);
  /* at most QCAP blocks (about 1 MiB) were in flight at once, but ~200 MiB went through: the
   * producer must have reused the blocks the consumers freed */
  size_t growth = worst - st0.committed;
  if (growth > 64 * RA_MiB) fail_msg("committed grew by %zu bytes with ~1 MiB in flight", growth);
  pthread_mutex_destroy(&pc_queue.mu);
}

/* ---- threads exiting while their blocks are being freed remotely ------------------------------ */

/* Short-lived threads fill pages (so pages go full and remote frees take the delayed path), hand
 * every block to one long-lived freer thread and exit at once, while the freer is still freeing
 * into their pages. Races thread exit against in-flight remote frees. */
static queue_t ex_queue;
static atomic_bool ex_done;

static void *ex_freer(void *arg) {
  (void)arg;
  item_t it;
  for (;;) {
    if (queue_pop(&ex_queue, &it)) {
      free_item(&it);
    } else if (atomic_load(&ex_done)) {
      if (!queue_pop(&ex_queue, &it)) break;
      free_item(&it);
    } else {
      sched_yield();
    }
  }
  return NULL;
}

static void *ex_short_lived(void *arg) {
  rt_rng_t r;
  rt_rng_seed(&r, (uint64_t)(uintptr_t)arg);
  const int n = 3000 / RA_TEST_SCALE;
  item_t mine[64];
  int nm = 0;
  for (int i = 0; i < n; i++) {
    item_t it;
    /* mostly one small class so its pages fill up; a few of other sizes */
    size_t sz = (i % 16 == 0) ? rt_rng_range(&r, 8, 70000) : 64;
    it.p = ra_malloc(sz);
    if (!it.p) {
      report("ra_malloc(%zu) failed in a short-lived thread (%zu)", sz, (size_t)i, NULL);
      break;
    }
    it.n = sz;
    it.tag = atomic_fetch_add_explicit(&next_tag, 1, memory_order_relaxed);
    rt_fill(it.p, sz, rt_seed_of(it.p, sz, it.tag));
    if (nm < 64 && (i % 7 == 0)) {
      mine[nm++] = it; /* some are freed locally, just before exit */
      continue;
    }
    while (!queue_push(&ex_queue, &it)) sched_yield();
  }
  for (int i = 0; i < nm; i++) free_item(&mine[i]);
  return NULL;
}

static void test_exit_during_remote_frees(void **state) {
  (void)state;
  reset_errors();
  size_t base = live_blocks();
  queue_init(&ex_queue);
  atomic_store(&ex_done, false);
  pthread_t freer;
  assert_int_equal(pthread_create(&freer, NULL, ex_freer, NULL), 0);
  const int rounds = 24 / RA_TEST_SCALE;
  for (int k = 0; k < rounds; k++) {
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
      assert_int_equal(pthread_create(&th[i], NULL, ex_short_lived, (void *)(uintptr_t)(k * 3 + i + 1)), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
  }
  atomic_store(&ex_done, true);
  assert_int_equal(pthread_join(freer, NULL), 0);
  pthread_mutex_destroy(&ex_queue.mu);
  assert_no_worker_errors();
  assert_int_equal(live_blocks(), base);
  /* a thread started now allocates from what the exited threads left */
  run_stress(2, 5000, false);
  assert_no_worker_errors();
  assert_int_equal(live_blocks(), base);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_producer_consumers),
      cmocka_unit_test(test_stress_2),
      cmocka_unit_test(test_stress_8),
      cmocka_unit_test(test_abandoned_blocks),
      cmocka_unit_test(test_thread_churn_reuses_memory),
      cmocka_unit_test(test_exit_during_remote_frees),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
