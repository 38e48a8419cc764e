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
    cmocka_unit_test(test_adopted_chunks_keep_invariants),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
