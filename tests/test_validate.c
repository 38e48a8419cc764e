/* The allocator's own invariants (docs/design.md), checked by _ra_heap_validate after random
 * sequences of every kind of call, including frees from another thread and a thread's exit. */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"

enum { SLOTS = 4096 };
static void *slot[SLOTS];
static size_t slot_size[SLOTS];

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static size_t random_size(void) {
  uint64_t r = rnd() % 1000;
  if (r < 700) return rnd() % 256;
  if (r < 950) return rnd() % 16384;
  if (r < 995) return rnd() % 300000;
  return 2500000 + rnd() % 3000000; /* huge */
}

static void fill(void *p, size_t n, size_t i) { memset(p, (int)(i * 7 + 1) & 0xff, n < 64 ? n : 64); }
static void check(const void *p, size_t n, size_t i) {
  const unsigned char *b = p;
  for (size_t k = 0; k < (n < 64 ? n : 64); k++) assert_int_equal(b[k], (i * 7 + 1) & 0xff);
}

static void random_step(size_t i) {
  if (slot[i] != NULL) {
    check(slot[i], slot_size[i], i);
    if (rnd() % 4 == 0) {
      size_t n = random_size();
      void *q = ra_realloc(slot[i], n);
      assert_non_null(q);
      size_t keep = n < slot_size[i] ? n : slot_size[i];
      check(q, keep, i);
      slot[i] = q;
      slot_size[i] = n;
      fill(q, n, i);
      return;
    }
    ra_free(slot[i]);
    slot[i] = NULL;
    return;
  }
  size_t n = random_size();
  switch (rnd() % 4) {
    case 0: slot[i] = ra_calloc(1, n); break;
    case 1: slot[i] = ra_aligned_alloc((size_t)1 << (4 + rnd() % 10), n); break;
    default: slot[i] = ra_malloc(n); break;
  }
  assert_non_null(slot[i]);
  slot_size[i] = n;
  fill(slot[i], n, i);
}

static void test_random_sequence_keeps_invariants(void **state) {
  (void)state;
  for (int round = 0; round < 40; round++) {
    for (int k = 0; k < 2000; k++) random_step(rnd() % SLOTS);
    assert_true(_ra_heap_validate());
  }
  for (size_t i = 0; i < SLOTS; i++) {
    ra_free(slot[i]);
    slot[i] = NULL;
  }
  assert_true(_ra_heap_validate());
}

static void *free_half(void *arg) {
  (void)arg;
  for (size_t i = 0; i < SLOTS; i += 2) {
    if (slot[i]) check(slot[i], slot_size[i], i);
    ra_free(slot[i]);
    slot[i] = NULL;
  }
  return NULL;
}

static void test_remote_frees_are_collected(void **state) {
  (void)state;
  for (size_t i = 0; i < SLOTS; i++) {
    slot_size[i] = 16 + rnd() % 2000;
    slot[i] = ra_malloc(slot_size[i]);
    fill(slot[i], slot_size[i], i);
  }
  pthread_t t;
  pthread_create(&t, NULL, free_half, NULL);
  pthread_join(t, NULL);
  /* Allocating again collects the remote frees into the owner's lists. */
  for (int k = 0; k < 20000; k++) random_step(1 + 2 * (rnd() % (SLOTS / 2)));
  assert_true(_ra_heap_validate());
  for (size_t i = 0; i < SLOTS; i++) {
    ra_free(slot[i]);
    slot[i] = NULL;
  }
  assert_true(_ra_heap_validate());
  ra_stats_t st;
  ra_stats_get(&st);
  assert_int_equal(st.live_blocks, 0);
}

/* The blocks of page `pg` on its own free list, walked to its end; *end gets the end. */
static size_t own_list_length(const ra_page_t *pg, const ra_block_t **end) {
  size_t n = 0;
  const ra_block_t *b = pg->free;
  for (; !_ra_list_end(b); b = _ra_block_next(b)) {
    assert_true(n <= pg->capacity);
    n++;
  }
  *end = b;
  return n;
}

/* A page allocated to its end holds its chunk's base in `free` (the marker ending its list, never
 * a block); the owner's frees then refill it and malloc pops it to the end again, round after
 * round. Every block handed out is one just freed into the page (the owner's free brings a full
 * page to the front of its queue), none twice, no live block is overwritten, and the invariants
 * hold (and, with RAMALLOC_DEBUG >= 2, were checked at every change). */
static void test_page_popped_to_end_and_refilled(void **state) {
  (void)state;
  enum { SZ = 200, MAX = 1024, OTHERS = 4096 };
  static void *mine[MAX], *others[OTHERS]; /* mine[i]: block i of the page */
  static bool out[MAX];
  size_t nothers = 0;
  void *first = ra_malloc(SZ);
  assert_non_null(first);
  ra_chunk_t *c = _ra_chunk_of(first);
  ra_page_t *pg = _ra_page_of(c, first);
  uint8_t *start = _ra_page_start(c, pg);
  size_t n = pg->reserved, bs = pg->block_size;
  assert_true(n <= MAX);
  for (void *p = first; p != NULL; p = pg->used < n ? ra_malloc(SZ) : NULL) {
    if (_ra_chunk_of(p) == c && _ra_page_of(c, p) == pg) {
      size_t i = (size_t)((uint8_t *)p - start) / bs;
      assert_null(mine[i]);
      mine[i] = p;
      fill(p, SZ, i);
    } else {
      assert_true(nothers < OTHERS);
      others[nothers++] = p;
    }
  }
  for (size_t i = 0; i < n; i++) assert_non_null(mine[i]);
  assert_ptr_equal(pg->free, (ra_block_t *)c); /* popped to the end of a carved list */
  assert_true(_ra_heap_validate());

  for (int round = 0; round < 300; round++) {
    /* One block (as in the malloc/free pair loop), a few, or all of them. */
    size_t k = round % 3 == 0 ? 1 : round % 3 == 1 ? 1 + rnd() % 8 : n;
    for (size_t j = 0; j < k; j++) {
      size_t i = k == n ? j : rnd() % n;
      while (out[i]) i = (i + 1) % n;
      out[i] = true;
      check(mine[i], SZ, i);
      ra_free(mine[i]);
    }
    const ra_block_t *end;
    assert_int_equal(own_list_length(pg, &end), k);
    assert_ptr_equal(end, (const ra_block_t *)c);
    assert_int_equal(pg->used, n - k);
    if (round % 10 == 0) assert_true(_ra_heap_validate());
    for (size_t j = 0; j < k; j++) {
      uint8_t *p = ra_malloc(SZ);
      assert_non_null(p);
      assert_true(p >= start && p < start + n * bs && (size_t)(p - start) % bs == 0);
      size_t i = (size_t)(p - start) / bs;
      assert_true(out[i]); /* freed this round, and not handed out again yet */
      out[i] = false;
      fill(p, SZ, i);
    }
    assert_ptr_equal(pg->free, (ra_block_t *)c);
    assert_int_equal(pg->used, n);
    if (round % 10 == 0) assert_true(_ra_heap_validate());
  }
  for (size_t i = 0; i < n; i++) check(mine[i], SZ, i);
  assert_true(_ra_heap_validate());
  for (size_t i = 0; i < n; i++) ra_free(mine[i]);
  for (size_t i = 0; i < nothers; i++) ra_free(others[i]);
  assert_true(_ra_heap_validate());
}

static void *allocate_and_exit(void *arg) {
  (void)arg;
  for (size_t i = 0; i < SLOTS; i++) {
    slot_size[i] = 16 + rnd() % 5000;
    slot[i] = ra_malloc(slot_size[i]);
    fill(slot[i], slot_size[i], i);
  }
  return NULL;
}

static void test_adopted_chunks_keep_invariants(void **state) {
  (void)state;
  pthread_t t;
  pthread_create(&t, NULL, allocate_and_exit, NULL);
  pthread_join(t, NULL);
  /* The exited thread's chunks are abandoned; freeing into them adopts them here. */
  for (size_t i = 0; i < SLOTS; i += 3) {
    check(slot[i], slot_size[i], i);
    ra_free(slot[i]);
    slot[i] = NULL;
  }
  assert_true(_ra_heap_validate());
  for (int k = 0; k < 20000; k++) random_step(rnd() % SLOTS);
  assert_true(_ra_heap_validate());
  for (size_t i = 0; i < SLOTS; i++) {
    ra_free(slot[i]);
    slot[i] = NULL;
  }
  assert_true(_ra_heap_validate());
}

/* _ra_slice_runs (one OS call per run of slices): every set bit in exactly one call, each run
 * maximal, lowest first; a nonzero return stops the walk and comes back. */
typedef struct runs_seen_s {
  uint64_t mask, seen;
  size_t calls, last_end, stop_at;
} runs_seen_t;

static int note_run(ra_chunk_t *c, size_t first, size_t count, void *arg) {
  runs_seen_t *r = arg;
  assert_null(c);
  assert_true(count >= 1 && first + count <= RA_SLICES);
  assert_true(r->calls == 0 || first > r->last_end); /* ascending, with a gap: maximal runs */
  uint64_t run = (count == 64 ? ~0ULL : (1ULL << count) - 1) << first;
  assert_true((r->mask & run) == run);
  if (first > 0) assert_false((r->mask >> (first - 1)) & 1);
  if (first + count < RA_SLICES) assert_false((r->mask >> (first + count)) & 1);
  r->seen |= run;
  r->last_end = first + count;
  return ++r->calls == r->stop_at ? 5 : 0;
}

static void test_slice_runs(void **state) {
  (void)state;
  const uint64_t fixed[] = {0, ~0ULL, 1, 1ULL << 63, 0x5555555555555555ULL, 0x8000000000000001ULL,
                            0x7FFFFFFFFFFFFFFEULL, 0xFFFFFFFF00000000ULL, 0x00000000FFFFFFFFULL};
  for (size_t k = 0; k < sizeof fixed / sizeof fixed[0] + 10000; k++) {
    uint64_t m = k < sizeof fixed / sizeof fixed[0] ? fixed[k] : rnd() & rnd();
    runs_seen_t r = {m, 0, 0, 0, 0};
    assert_int_equal(_ra_slice_runs(NULL, m, note_run, &r), 0);
    assert_true(r.seen == m);
    if (r.calls >= 2) { /* stopped by the second run */
      runs_seen_t s = {m, 0, 0, 0, 2};
      assert_int_equal(_ra_slice_runs(NULL, m, note_run, &s), 5);
      assert_int_equal(s.calls, 2);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_slice_runs),
    cmocka_unit_test(test_random_sequence_keeps_invariants),
    cmocka_unit_test(test_remote_frees_are_collected),
    cmocka_unit_test(test_page_popped_to_end_and_refilled),
    cmocka_unit_test(test_adopted_chunks_keep_invariants),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
