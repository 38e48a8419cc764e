/* Inspection (docs/layout.md): exact statistics after known patterns, the visitor seeing every live
 * block exactly once (remote frees, delayed frees, abandoned chunks, huge and aligned blocks
 * included), the JSON dump, and the options that act at exit and on a signal.
 *
 * Also a fixture for tests/test_layout.py: `test_inspect --dump FILE` allocates a known pattern,
 * writes the layout to FILE and prints the pattern's expected figures as one line of JSON. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_child.h"
#include "test_common.h"
#include "internal.h"

/* ---- helpers ------------------------------------------------------------------------------------ */

static const ra_class_stats_t *class_of(const ra_stats_t *st, size_t block_size) {
  for (size_t i = 0; i < st->class_count; i++)
    if (st->classes[i].block_size == block_size) return &st->classes[i];
  return NULL;
}

/* A set of pointers the test handed out, sorted, each with a count of times the visitor saw the
 * block holding it. */
enum { TRACK_MAX = 20000 };
typedef struct tracked_s {
  size_t n;
  uintptr_t p[TRACK_MAX];
  unsigned seen_live[TRACK_MAX];
  unsigned seen_free[TRACK_MAX];
} tracked_t;

static tracked_t trk;

static void track_reset(void) { memset(&trk, 0, sizeof trk); }

static void track_add(const void *p) {
  assert_true(trk.n < TRACK_MAX);
  size_t i = trk.n++;
  for (; i > 0 && trk.p[i - 1] > (uintptr_t)p; i--) trk.p[i] = trk.p[i - 1];
  trk.p[i] = (uintptr_t)p;
}

static size_t track_lower(uintptr_t x) {
  size_t lo = 0, hi = trk.n;
  while (lo < hi) {
    size_t m = lo + (hi - lo) / 2;
    if (trk.p[m] < x) lo = m + 1;
    else hi = m;
  }
  return lo;
}

typedef struct visit_count_s {
  size_t arenas, chunks, pages, live, free, huge, calls;
  size_t live_bytes;
  size_t page_live_sum;  /* sum of the pages' blocks_used */
  size_t page_free_sum;
  size_t cur_page_live, cur_page_reported;
  bool order_ok;
  uintptr_t last_block_end;
  size_t stop_after;     /* 0: never stop */
  bool allocate_inside;  /* the callback allocates and frees */
} visit_count_t;

static bool count_visit(const ra_visit_info_t *v, void *arg) {
  visit_count_t *c = arg;
  c->calls++;
  if (c->allocate_inside) {
    void *p = ra_malloc(1 + c->calls % 3000);
    assert_non_null(p);
    ra_free(p);
  }
  switch (v->kind) {
    case RA_VISIT_ARENA: c->arenas++; break;
    case RA_VISIT_CHUNK:
      c->chunks++;
      if (v->huge) c->huge++;
      break;
    case RA_VISIT_PAGE:
      if (c->cur_page_reported != c->cur_page_live) c->order_ok = false;
      c->pages++;
      c->page_live_sum += v->blocks_used;
      c->page_free_sum += v->blocks_free;
      c->cur_page_live = v->blocks_used;
      c->cur_page_reported = 0;
      c->last_block_end = 0;
      break;
    case RA_VISIT_BLOCK:
    case RA_VISIT_FREE: {
      uintptr_t s = (uintptr_t)v->start, e = s + v->size;
      if (s < c->last_block_end) c->order_ok = false;
      c->last_block_end = e;
      if (v->kind == RA_VISIT_BLOCK) {
        assert_true(v->live);
        c->live++;
        c->live_bytes += v->size;
        if (!v->huge) c->cur_page_reported++;
      } else {
        assert_false(v->live);
        c->free++;
      }
      for (size_t i = track_lower(s); i < trk.n && trk.p[i] < e; i++) {
        if (v->live) trk.seen_live[i]++;
        else trk.seen_free[i]++;
      }
      break;
    }
    default: fail_msg("unexpected kind %d", (int)v->kind);
  }
  return c->stop_after == 0 || c->calls < c->stop_after;
}

static void visit_all(visit_count_t *c) {
  memset(c, 0, sizeof *c);
  c->order_ok = true;
  assert_true(ra_visit(RA_VISIT_ALL, count_visit, c));
  if (c->cur_page_reported != c->cur_page_live) c->order_ok = false;
}

/* Every tracked pointer seen live exactly once and never free; totals match the statistics. */
static void expect_visit_exact(void) {
  ra_stats_t st;
  ra_stats_get(&st);
  for (size_t i = 0; i < trk.n; i++) trk.seen_live[i] = trk.seen_free[i] = 0;
  visit_count_t c;
  visit_all(&c);
  for (size_t i = 0; i < trk.n; i++) {
    if (trk.seen_live[i] != 1 || trk.seen_free[i] != 0)
      fail_msg("block %p seen live %u times, free %u times", (void *)trk.p[i], trk.seen_live[i], trk.seen_free[i]);
  }
  assert_true(c.order_ok);
  assert_int_equal(c.live, st.live_blocks);
  assert_int_equal(c.live_bytes, st.live_bytes);
  assert_int_equal(c.huge, st.huge_blocks);
  assert_int_equal(c.pages, st.pages);
  assert_int_equal(c.page_live_sum + c.huge, st.live_blocks);
  assert_int_equal(c.arenas, st.arenas);
  size_t free_sum = 0;
  for (size_t i = 0; i < st.class_count; i++) free_sum += st.classes[i].blocks_free;
  assert_int_equal(c.page_free_sum, free_sum);
  assert_int_equal(c.free, free_sum);
}

/* ---- exact statistics after a known pattern ------------------------------------------------------ */

typedef struct pattern_s {
  size_t size, count;
} pattern_t;

static const pattern_t pattern[] = {
  {1, 300},   {16, 200},  {17, 250},   {100, 1000}, {128, 64},     {700, 90},     {1000, 40},
  {5000, 20}, {9000, 12}, {70000, 5},  {300000, 3}, {2097152, 1},  {3 << 20, 2},  {0, 7},
};
#define PATTERN_N (sizeof pattern / sizeof pattern[0])

static void *pat_blocks[4096];
static size_t pat_n;

/* Allocate the pattern; returns the usable bytes, and per class index the blocks, in `per_class`. */
static size_t pattern_alloc(size_t per_class[RA_CLASS_COUNT + 1], size_t *slack) {
  size_t bytes = 0;
  pat_n = 0;
  *slack = 0;
  for (size_t k = 0; k < PATTERN_N; k++)
    for (size_t j = 0; j < pattern[k].count; j++) {
      void *p = ra_malloc(pattern[k].size);
      assert_non_null(p);
      pat_blocks[pat_n++] = p;
      size_t u = ra_usable_size(p);
      bytes += u;
      if (pattern[k].size > RA_LARGE_MAX) {
        per_class[RA_CLASS_COUNT]++;
        *slack += _ra_os_info()->page_size;
        continue;
      }
      size_t cls = _ra_size_class(pattern[k].size ? pattern[k].size : 1);
      assert_int_equal(u, _ra_class_size[cls]);
      per_class[cls]++;
      *slack += _ra_class_size[cls] - (cls == 0 ? 0 : _ra_class_size[cls - 1] + 1);
    }
  return bytes;
}

static void pattern_free(void) {
  for (size_t i = 0; i < pat_n; i++) ra_free(pat_blocks[i]);
  pat_n = 0;
}

static void test_stats_exact_after_pattern(void **state) {
  (void)state;
  static ra_stats_t st0, st1, st2;
  size_t per_class[RA_CLASS_COUNT + 1] = {0}, slack;
  ra_free(ra_malloc(1)); /* this thread's heap exists */
  ra_stats_get(&st0);
  size_t bytes = pattern_alloc(per_class, &slack);
  ra_stats_get(&st1);
  assert_int_equal(st1.live_blocks - st0.live_blocks, pat_n);
  assert_int_equal(st1.live_bytes - st0.live_bytes, bytes);
  assert_int_equal(st1.huge_blocks - st0.huge_blocks, per_class[RA_CLASS_COUNT]);
  assert_int_equal(st1.rounding_max - st0.rounding_max, slack);
  size_t tail = 0, pages = 0;
  for (size_t i = 0; i < RA_CLASS_COUNT; i++) {
    const ra_class_stats_t *a = &st0.classes[i], *b = &st1.classes[i];
    assert_int_equal(b->block_size, _ra_class_size[i]);
    assert_int_equal(b->blocks_used - a->blocks_used, per_class[i]);
    /* every page's blocks are either used or free, and its tail is what the span leaves over */
    if (b->pages > 0) {
      size_t bs = b->block_size;
      size_t span = bs <= RA_SMALL_MAX ? RA_SLICE_SIZE : bs <= RA_MEDIUM_MAX ? RA_MEDIUM_SLICES * RA_SLICE_SIZE
                                                                              : _ra_align_up(bs, RA_SLICE_SIZE);
      assert_int_equal(b->blocks_used + b->blocks_free, b->pages * (span / bs));
      assert_int_equal(b->tail_bytes, b->pages * (span - (span / bs) * bs));
    }
    tail += b->tail_bytes;
    pages += b->pages;
  }
  assert_int_equal(st1.tail_bytes, tail);
  assert_int_equal(st1.pages, pages);
  assert_true(st1.meta_bytes > st0.meta_bytes);         /* new chunk headers */
  assert_true(st1.meta_committed >= st1.chunks_in_use * RA_SLICE_SIZE);
  assert_true(st1.meta_committed <= st1.committed);
  pattern_free();
  ra_stats_get(&st2);
  assert_int_equal(st2.live_blocks, st0.live_blocks);
  assert_int_equal(st2.live_bytes, st0.live_bytes);
  assert_int_equal(st2.huge_blocks, st0.huge_blocks);
  for (size_t i = 0; i < RA_CLASS_COUNT; i++) assert_int_equal(st2.classes[i].blocks_used, st0.classes[i].blocks_used);
}

static void collect_out(const char *text, size_t len, void *arg) {
  char *buf = arg;
  size_t have = strlen(buf);
  if (have + len >= 65536) len = 65535 - have;
  memcpy(buf + have, text, len);
  buf[have + len] = '\0';
}

static void test_stats_print_callback(void **state) {
  (void)state;
  static char text[65536];
  void *p = ra_malloc(48);
  text[0] = '\0';
  ra_stats_print_out(collect_out, text);
  assert_non_null(strstr(text, "ramalloc statistics\n"));
  assert_non_null(strstr(text, "metadata:"));
  assert_non_null(strstr(text, "rounding:"));
  assert_non_null(strstr(text, "        48 "));
  ra_free(p);
}

/* ---- other threads: remote frees, delayed frees, abandoned chunks ------------------------------ */

enum { REMOTE_N = 12000 }; /* 48-byte blocks: 1365 a page, so 8 full pages and one in use */

typedef struct remote_s {
  pthread_barrier_t allocated, freed, done;
  void *blocks[REMOTE_N];
  ra_heap_t *heap;
  size_t keep; /* blocks the thread leaves live when it exits */
} remote_t;

static remote_t rmt;

static void *remote_owner(void *arg) {
  (void)arg;
  for (size_t i = 0; i < REMOTE_N; i++) {
    rmt.blocks[i] = ra_malloc(48);
    assert_non_null(rmt.blocks[i]);
  }
  rmt.heap = _ra_heap_current();
  pthread_barrier_wait(&rmt.allocated); /* main frees most of them from its side */
  pthread_barrier_wait(&rmt.freed);     /* main inspects */
  pthread_barrier_wait(&rmt.done);
  return NULL; /* exits with `keep` blocks live: its chunk is abandoned */
}

static void test_remote_and_delayed_frees_are_free(void **state) {
  (void)state;
  static ra_stats_t st0, st1, st2, st3;
  ra_free(ra_malloc(1));
  ra_stats_get(&st0);
  memset(&rmt, 0, sizeof rmt);
  rmt.keep = 100;
  pthread_barrier_init(&rmt.allocated, NULL, 2);
  pthread_barrier_init(&rmt.freed, NULL, 2);
  pthread_barrier_init(&rmt.done, NULL, 2);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, remote_owner, NULL), 0);
  pthread_barrier_wait(&rmt.allocated);
  ra_stats_get(&st1);
  assert_int_equal(st1.live_blocks - st0.live_blocks, REMOTE_N);
  /* Free all but `keep` from this thread: the first free into each full page goes to the owner's
   * delayed list, the others to the pages' remote lists. None is collected by the owner (it waits). */
  track_reset();
  for (size_t i = 0; i < REMOTE_N; i++) {
    if (i % (REMOTE_N / rmt.keep) == 0 && trk.n < rmt.keep) {
      track_add(rmt.blocks[i]);
      continue;
    }
    ra_free(rmt.blocks[i]);
  }
  assert_non_null(atomic_load(&rmt.heap->delayed_free)); /* the delayed path was taken */
  pthread_barrier_wait(&rmt.freed);
  ra_stats_get(&st2);
  assert_int_equal(st2.live_blocks - st0.live_blocks, rmt.keep);
  assert_int_equal(st2.live_bytes - st0.live_bytes, rmt.keep * 48);
  assert_int_equal(class_of(&st2, 48)->blocks_used - class_of(&st0, 48)->blocks_used, rmt.keep);
  expect_visit_exact();
  pthread_barrier_wait(&rmt.done);
  assert_int_equal(pthread_join(t, NULL), 0);
  /* The owner exited: its chunk is abandoned, its live blocks still seen exactly once. */
  ra_stats_get(&st3);
  assert_true(st3.chunks_abandoned >= 1);
  assert_int_equal(st3.live_blocks - st0.live_blocks, rmt.keep);
  expect_visit_exact();
  for (size_t i = 0; i < trk.n; i++) ra_free((void *)trk.p[i]);
  track_reset();
  pthread_barrier_destroy(&rmt.allocated);
  pthread_barrier_destroy(&rmt.freed);
  pthread_barrier_destroy(&rmt.done);
}

/* ---- the visitor ----------------------------------------------------------------------------------- */

static void test_visit_sees_every_live_block_once(void **state) {
  (void)state;
  enum { N = 6000 };
  static void *p[N];
  rt_rng_t r;
  rt_rng_seed(&r, 77);
  track_reset();
  for (size_t i = 0; i < N; i++) {
    size_t kind = rt_rng_range(&r, 0, 99), n;
    if (kind < 70) n = rt_rng_range(&r, 0, 512);
    else if (kind < 95) n = rt_rng_range(&r, 513, 70000);
    else if (kind < 99) n = rt_rng_range(&r, 70001, RA_LARGE_MAX);
    else n = rt_rng_range(&r, RA_LARGE_MAX + 1, 5 * RA_MiB);
    switch (i % 5) {
      case 0: p[i] = ra_calloc(1, n); break;
      case 1: p[i] = ra_aligned_alloc((size_t)1 << rt_rng_range(&r, 5, 12), n); break;
      default: p[i] = ra_malloc(n); break;
    }
    assert_non_null(p[i]);
  }
  for (size_t i = 0; i < N; i += 3) { /* holes: free blocks between live ones */
    ra_free(p[i]);
    p[i] = NULL;
  }
  for (size_t i = 0; i < N; i++)
    if (p[i]) track_add(p[i]);
  /* What the thread of the test before left at exit (its parked heap) goes back on the purger's
   * clock, which would change the page count between the walks of expect_visit_exact: give it
   * back first, so that only this thread's pages are in play. */
  ra_collect(true);
  expect_visit_exact();
  for (size_t i = 0; i < N; i++) ra_free(p[i]);
  track_reset();
}

/* One page seen by ra_visit: its figures, and its blocks as reported, live or free. */
typedef struct page_seen_s {
  const uint8_t *start;
  size_t bs, n;
  bool found;
  size_t used, free, reserved;
  unsigned live_at[1024], free_at[1024];
  size_t at_chunk_base; /* block or free reports at a chunk's base: never */
} page_seen_t;

static bool see_page(const ra_visit_info_t *v, void *arg) {
  page_seen_t *s = arg;
  const uint8_t *u = v->start;
  bool block = v->kind == RA_VISIT_BLOCK || v->kind == RA_VISIT_FREE;
  if (block && ((uintptr_t)u & RA_CHUNK_MASK) == 0) s->at_chunk_base++;
  if (v->kind == RA_VISIT_PAGE && u == s->start) {
    s->found = true;
    s->used = v->blocks_used;
    s->free = v->blocks_free;
    s->reserved = v->reserved;
  }
  if (block && u >= s->start && u < s->start + s->n * s->bs) {
    size_t i = (size_t)(u - s->start) / s->bs;
    assert_int_equal((size_t)(u - s->start) % s->bs, 0);
    if (v->kind == RA_VISIT_BLOCK) s->live_at[i]++;
    else s->free_at[i]++;
  }
  return true;
}

/* A page allocated to its end, its list ending in the chunk's base (_ra_list_end), then partly
 * freed by its owner: the walk reports each block once, in the state it is in, the page's figures
 * count the blocks alone (not the end), and nothing is reported at a chunk's base. */
static void test_visit_exact_when_lists_end_in_chunk_base(void **state) {
  (void)state;
  enum { SZ = 400 };
  static void *others[4096];
  static page_seen_t seen;
  size_t nothers = 0;
  ra_collect(true); /* only this thread's pages in play (as above) */
  uint8_t *first = ra_malloc(SZ);
  assert_non_null(first);
  ra_chunk_t *c = _ra_chunk_of(first);
  ra_page_t *pg = _ra_page_of(c, first);
  memset(&seen, 0, sizeof seen);
  seen.start = _ra_page_start(c, pg);
  seen.bs = pg->block_size;
  seen.n = pg->reserved;
  assert_true(seen.n <= 1024);
  static void *mine[1024];
  memset(mine, 0, sizeof mine);
  for (uint8_t *p = first; p != NULL; p = pg->used < seen.n ? ra_malloc(SZ) : NULL) {
    if (p >= seen.start && p < seen.start + seen.n * seen.bs) mine[(size_t)(p - seen.start) / seen.bs] = p;
    else others[nothers++] = p;
    assert_true(nothers < 4096);
  }
  assert_ptr_equal(pg->free, (ra_block_t *)c);
  /* Free every third block: the list is those blocks, then the chunk's base. */
  size_t k = 0;
  track_reset();
  for (size_t i = 0; i < seen.n; i++) {
    assert_non_null(mine[i]);
    if (i % 3 == 0) {
      ra_free(mine[i]);
      k++;
    } else {
      track_add(mine[i]);
    }
  }
  const ra_block_t *b = pg->free;
  size_t len = 0;
  for (; !_ra_list_end(b); b = _ra_block_next(b)) len++;
  assert_int_equal(len, k);
  assert_ptr_equal(b, (ra_block_t *)c);
  assert_true(ra_visit(RA_VISIT_ALL, see_page, &seen));
  assert_true(seen.found);
  assert_int_equal(seen.reserved, seen.n);
  assert_int_equal(seen.used, seen.n - k);
  assert_int_equal(seen.free, k);
  assert_int_equal(seen.at_chunk_base, 0);
  for (size_t i = 0; i < seen.n; i++) {
    assert_int_equal(seen.live_at[i], i % 3 != 0);
    assert_int_equal(seen.free_at[i], i % 3 == 0);
  }
  expect_visit_exact();
  for (size_t i = 0; i < seen.n; i++)
    if (i % 3 != 0) ra_free(mine[i]);
  for (size_t i = 0; i < nothers; i++) ra_free(others[i]);
  track_reset();
}

static bool count_only(const ra_visit_info_t *v, void *arg) {
  (void)v;
  ++*(size_t *)arg;
  return true;
}
static void discard_output(const char *text, size_t len, void *arg) {
  (void)text;
  *(size_t *)arg += len;
}
/* A chunk callback that walks again: statistics, a nested visit, a layout dump. */
static bool walk_inside(const ra_visit_info_t *v, void *arg) {
  (void)v;
  (void)arg;
  ra_stats_t st;
  ra_stats_get(&st);
  assert_true(st.chunks_in_use >= 1);
  size_t n = 0, bytes = 0;
  assert_true(ra_visit(RA_VISIT_ARENA, count_only, &n));
  assert_true(n >= 1);
  ra_dump_layout_out(discard_output, &bytes);
  assert_true(bytes > 0);
  return true;
}

static void test_visit_stops_and_allows_allocation(void **state) {
  (void)state;
  void *keep[64];
  for (int i = 0; i < 64; i++) keep[i] = ra_malloc(24);
  visit_count_t c;
  memset(&c, 0, sizeof c);
  c.stop_after = 10;
  assert_false(ra_visit(RA_VISIT_ALL, count_visit, &c));
  assert_int_equal(c.calls, 10);
  /* Callbacks run with no lock held: allocating inside them neither deadlocks nor breaks the walk. */
  memset(&c, 0, sizeof c);
  c.allocate_inside = true;
  assert_true(ra_visit(RA_VISIT_ALL, count_visit, &c));
  assert_true(c.live >= 64);
  /* ... and so does reading the statistics, walking again, or dumping the layout inside them. */
  assert_true(ra_visit(RA_VISIT_CHUNK, walk_inside, NULL));
  /* Kinds filter what is reported. */
  memset(&c, 0, sizeof c);
  assert_true(ra_visit(RA_VISIT_ARENA | RA_VISIT_PAGE, count_visit, &c));
  assert_int_equal(c.chunks + c.live + c.free, 0);
  assert_true(c.arenas >= 1 && c.pages >= 1);
  for (int i = 0; i < 64; i++) ra_free(keep[i]);
}

/* While other threads allocate and free, a block that stays live in a page no other thread touches
 * is reported live exactly once, and walking, counting and dumping never fault. Skipped under
 * ThreadSanitizer: reading other threads' page fields while they change them is the documented
 * racy part of the walk. */
#if !defined(__SANITIZE_THREAD__)
typedef struct churn_s {
  atomic_bool stop;
  uint64_t seed;
} churn_t;

static void *churner(void *arg) {
  churn_t *c = arg;
  enum { SLOTS = 512 };
  void *slot[SLOTS] = {0};
  rt_rng_t r;
  rt_rng_seed(&r, c->seed);
  while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
    size_t i = rt_rng_range(&r, 0, SLOTS - 1);
    ra_free(slot[i]);
    size_t kind = rt_rng_range(&r, 0, 99);
    size_t n = kind < 80 ? rt_rng_range(&r, 1, 600) : kind < 99 ? rt_rng_range(&r, 601, 300000)
                                                               : rt_rng_range(&r, RA_LARGE_MAX + 1, 3 * RA_MiB);
    slot[i] = ra_malloc(n);
    if (slot[i]) memset(slot[i], 0xa5, n < 64 ? n : 64);
  }
  for (size_t i = 0; i < SLOTS; i++) ra_free(slot[i]);
  return NULL;
}

static void discard_out(const char *text, size_t len, void *arg) {
  (void)text;
  *(size_t *)arg += len;
}

#endif

static void test_walk_while_threads_allocate(void **state) {
  (void)state;
#if defined(__SANITIZE_THREAD__)
  skip();
#else
  enum { N = 3000, T = 3 };
  static void *p[N];
  track_reset();
  for (size_t i = 0; i < N; i++) {
    p[i] = ra_malloc(1 + (i * 37) % 2000);
    assert_non_null(p[i]);
    track_add(p[i]);
  }
  static churn_t ch[T];
  pthread_t t[T];
  for (int i = 0; i < T; i++) {
    atomic_store(&ch[i].stop, false);
    ch[i].seed = 1000 + (uint64_t)i;
    assert_int_equal(pthread_create(&t[i], NULL, churner, &ch[i]), 0);
  }
  for (int round = 0; round < 40 / RA_TEST_SCALE; round++) {
    for (size_t i = 0; i < trk.n; i++) trk.seen_live[i] = trk.seen_free[i] = 0;
    visit_count_t c;
    visit_all(&c);
    for (size_t i = 0; i < trk.n; i++)
      if (trk.seen_live[i] != 1 || trk.seen_free[i] != 0)
        fail_msg("round %d: block %p seen live %u, free %u times", round, (void *)trk.p[i], trk.seen_live[i],
                 trk.seen_free[i]);
    ra_stats_t st;
    ra_stats_get(&st);
    assert_true(st.live_blocks >= N);
    size_t bytes = 0;
    ra_dump_layout_out(discard_out, &bytes);
    assert_true(bytes > 1000);
  }
  for (int i = 0; i < T; i++) atomic_store(&ch[i].stop, true);
  for (int i = 0; i < T; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
  for (size_t i = 0; i < N; i++) ra_free(p[i]);
  track_reset();
#endif
}

/* ---- the JSON dump --------------------------------------------------------------------------------- */

static char dump_text[1 << 22];

static void dump_collect(const char *text, size_t len, void *arg) {
  size_t *have = arg;
  assert_true(*have + len < sizeof dump_text);
  memcpy(dump_text + *have, text, len);
  *have += len;
  dump_text[*have] = '\0';
}

/* Brackets balance outside strings, and strings close: enough to catch a truncated or interleaved
 * dump here; tests/test_layout.py checks it against the schema. */
static void expect_json_shape(const char *s) {
  int depth = 0;
  bool in_str = false;
  for (; *s; s++) {
    if (in_str) {
      if (*s == '\\') s++;
      else if (*s == '"') in_str = false;
      continue;
    }
    if (*s == '"') in_str = true;
    else if (*s == '{' || *s == '[') depth++;
    else if (*s == '}' || *s == ']') assert_true(--depth >= 0);
  }
  assert_false(in_str);
  assert_int_equal(depth, 0);
}

static void test_dump_layout(void **state) {
  (void)state;
  void *p = ra_malloc(4000), *h = ra_malloc(3 * RA_MiB);
  size_t have = 0;
  ra_dump_layout_out(dump_collect, &have);
  assert_true(have > 0);
  expect_json_shape(dump_text);
  assert_non_null(strstr(dump_text, "\"format\": \"ramalloc-layout\""));
  assert_non_null(strstr(dump_text, "\"reason\": \"call\""));
  assert_non_null(strstr(dump_text, "\"kind\": \"huge\""));
  assert_non_null(strstr(dump_text, "\"block_size\": 4096"));
  /* to a descriptor, and to a file put in place whole */
  char path[] = "/tmp/ra-inspect-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(ra_dump_layout(fd), 0);
  off_t size = lseek(fd, 0, SEEK_END);
  close(fd);
  assert_true(size > 1000);
  assert_int_equal(ra_dump_layout_file(path), 0);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_true(sb.st_size > 1000);
  unlink(path);
  assert_int_equal(ra_dump_layout(-1), EBADF);
  assert_int_equal(ra_dump_layout_file("/nonexistent-dir/x.json"), ENOENT);
  ra_free(p);
  ra_free(h);
}

/* ---- options at exit and on a signal ------------------------------------------------------------ */

static char self_path[4096];

/* Run this program with `mode` as argument and the extra environment; stderr comes back in err. */
static int run_self(const char *mode, const char *const *extra, char *err, size_t cap) {
  static const char *const drop[] = {"RAMALLOC_", NULL};
  char *argv[] = {self_path, (char *)mode, NULL};
  child_exec_t c = {self_path, argv, drop, extra, NULL, 0, err, cap};
  int status = child_exec(&c);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool file_contains(const char *path, const char *what) {
  static char buf[1 << 20];
  int fd = open(path, O_RDONLY);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  return strstr(buf, what) != NULL;
}

static int child_exit_mode(void) {
  void *p = ra_malloc(777);
  (void)p; /* live at exit */
  return 0;
}

/* Raise the dump signal, wait for the numbered dump, exit. The block stays live and nothing is
 * allocated meanwhile: the dumper thread reads this thread's pages, and the file appearing is no
 * synchronisation ThreadSanitizer knows of. */
static int child_signal_mode(void) {
  void *p = ra_malloc(333);
  (void)p;
  const char *want = getenv("INSPECT_EXPECT");
  raise(SIGUSR2);
  for (int i = 0; i < 500; i++) {
    if (access(want, F_OK) == 0) return 0;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return 4;
}

static void test_exit_and_signal_options(void **state) {
  (void)state;
  static char err[1 << 16];
  char dir[] = "/tmp/ra-inspect-dir-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char opt[4200], want[4200], expect_env[4300];
  /* at exit: statistics on stderr, and the layout in a file named after the pid */
  snprintf(opt, sizeof opt, "RAMALLOC_DUMP_LAYOUT=%s/exit.%%p.json", dir);
  const char *exit_env[] = {"RAMALLOC_SHOW_STATS=1", opt, NULL};
  assert_int_equal(run_self("--child-exit", exit_env, err, sizeof err), 0);
  assert_non_null(strstr(err, "ramalloc statistics\n"));
  assert_non_null(strstr(err, "live blocks:"));
  int found = 0;
  char cmd[4400];
  snprintf(cmd, sizeof cmd, "ls %s/exit.*.json", dir);
  FILE *ls = popen(cmd, "r");
  assert_non_null(ls);
  char line[4200];
  while (fgets(line, sizeof line, ls)) {
    line[strcspn(line, "\n")] = '\0';
    assert_true(file_contains(line, "\"reason\": \"exit\""));
    assert_true(file_contains(line, "\"block_size\": 832")); /* the 777-byte block's class */
    unlink(line);
    found++;
  }
  pclose(ls);
  assert_int_equal(found, 1);
  /* on the signal: a numbered dump while the program runs */
  snprintf(opt, sizeof opt, "RAMALLOC_DUMP_LAYOUT=%s/sig.json", dir);
  snprintf(want, sizeof want, "%s/sig.1.json", dir);
  snprintf(expect_env, sizeof expect_env, "INSPECT_EXPECT=%s", want);
  const char *sig_env[] = {"RAMALLOC_DUMP_SIGNAL=SIGUSR2", opt, expect_env, NULL};
  assert_int_equal(run_self("--child-signal", sig_env, err, sizeof err), 0);
  assert_true(file_contains(want, "\"reason\": \"signal\""));
  unlink(want);
  snprintf(want, sizeof want, "%s/sig.json", dir); /* and the exit dump */
  assert_true(file_contains(want, "\"reason\": \"exit\""));
  unlink(want);
  /* a bad signal name is reported and ignored */
  const char *bad_env[] = {"RAMALLOC_DUMP_SIGNAL=SIGNOPE", NULL};
  assert_int_equal(run_self("--child-exit", bad_env, err, sizeof err), 0);
  assert_non_null(strstr(err, "ignoring RAMALLOC_DUMP_SIGNAL=SIGNOPE"));
  assert_int_equal(rmdir(dir), 0);
}

/* ---- fixture for tests/test_layout.py ------------------------------------------------------------ */

/* Allocate the pattern (plus remote frees from a thread and an abandoned chunk), dump, and print
 * what the dump must show. */
static void *fixture_thread(void *arg) {
  void **out = arg;
  for (int i = 0; i < 50; i++) out[i] = ra_malloc(200);
  return NULL; /* exits with them live: an abandoned chunk */
}

static int fixture_dump(const char *path) {
  size_t per_class[RA_CLASS_COUNT + 1] = {0}, slack;
  size_t bytes = pattern_alloc(per_class, &slack);
  void *orphans[50];
  pthread_t t;
  if (pthread_create(&t, NULL, fixture_thread, orphans) != 0 || pthread_join(t, NULL) != 0) return 2;
  for (int i = 0; i < 50; i += 2) ra_free(orphans[i]); /* frees into an abandoned chunk: adopted */
  void *aligned = ra_aligned_alloc(4096, 100); /* an interior pointer: its page is marked "aligned" */
  size_t aligned_block = _ra_page_of(_ra_chunk_of(aligned), aligned)->block_size;
  int err = ra_dump_layout_file(path);
  if (err != 0) {
    fprintf(stderr, "dump failed: %s\n", strerror(err));
    return 3;
  }
  ra_stats_t st;
  ra_stats_get(&st);
  printf("{\"pattern_blocks\": %zu, \"pattern_bytes\": %zu, \"live_blocks\": %zu, \"live_bytes\": %zu, "
         "\"huge_blocks\": %zu, \"classes\": {",
         pat_n + 25 + 1, bytes + 25 * 208 + aligned_block, st.live_blocks, st.live_bytes, st.huge_blocks);
  bool first = true;
  for (size_t i = 0; i < RA_CLASS_COUNT; i++) {
    size_t n = per_class[i] + (_ra_class_size[i] == 208 ? 25 : 0) + (_ra_class_size[i] == aligned_block ? 1 : 0);
    if (n == 0) continue;
    printf("%s\"%u\": %zu", first ? "" : ", ", _ra_class_size[i], n);
    first = false;
  }
  printf("}}\n");
  return 0;
}

int main(int argc, char **argv) {
  ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
  if (n > 0) self_path[n] = '\0';
  if (argc == 2 && !strcmp(argv[1], "--child-exit")) return child_exit_mode();
  if (argc == 2 && !strcmp(argv[1], "--child-signal")) return child_signal_mode();
  if (argc == 3 && !strcmp(argv[1], "--dump")) return fixture_dump(argv[2]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stats_exact_after_pattern),
      cmocka_unit_test(test_stats_print_callback),
      cmocka_unit_test(test_remote_and_delayed_frees_are_free),
      cmocka_unit_test(test_visit_sees_every_live_block_once),
      cmocka_unit_test(test_visit_exact_when_lists_end_in_chunk_base),
      cmocka_unit_test(test_visit_stops_and_allows_allocation),
      cmocka_unit_test(test_walk_while_threads_allocate),
      cmocka_unit_test(test_dump_layout),
      cmocka_unit_test(test_exit_and_signal_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
