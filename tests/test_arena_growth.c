/* Arena growth: run with a small RAMALLOC_ARENA_RESERVE (set by ctest's ENVIRONMENT), allocate far
 * more than one reservation holds, and check that new arenas are added and every block keeps its
 * content. A huge block larger than one reservation must work too. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"
#include "ramalloc.h"

/* The reservation size the environment asks for, parsed the documented way (bytes with an optional
 * K/M/G suffix); 0 when unset or unparsable. */
static size_t env_reserve(void) {
  const char *s = getenv("RAMALLOC_ARENA_RESERVE");
  if (!s || !isdigit((unsigned char)*s)) return 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  switch (toupper((unsigned char)*end)) {
    case 'K': v <<= 10; end++; break;
    case 'M': v <<= 20; end++; break;
    case 'G': v <<= 30; end++; break;
    default: break;
  }
  return *end ? 0 : (size_t)v;
}

typedef struct blk_s {
  void *p;
  size_t n;
} blk_t;

enum { MAXBLK = 20000 };
static blk_t blocks[MAXBLK];
static size_t nblocks;

static void test_first_arena_is_small(void **state) {
  (void)state;
  size_t want = env_reserve();
  if (want == 0 || want >= RA_GiB) {
    skip(); /* run without the environment the test is registered with */
    return;
  }
  void *p = ra_malloc(64);
  assert_non_null(p);
  ra_stats_t st;
  ra_stats_get(&st);
  assert_int_equal(st.arenas, 1);
  /* the option took effect: far below the 1 GiB default */
  if (st.reserved >= 256 * RA_MiB) fail_msg("RAMALLOC_ARENA_RESERVE=%zu ignored: %zu bytes reserved", want, st.reserved);
  assert_true(st.reserved >= want);
  ra_free(p);
}

static void test_grow_past_one_arena(void **state) {
  (void)state;
  ra_stats_t st0, st1, st2;
  ra_stats_get(&st0);
  rt_rng_t r;
  rt_rng_seed(&r, 77);
  size_t total = 0;
  const size_t target = 100 * RA_MiB;
  nblocks = 0;
  while (total < target && nblocks < MAXBLK) {
    size_t pick = rt_rng_range(&r, 0, 99);
    size_t n = pick < 50   ? rt_rng_range(&r, 1, 1024)
               : pick < 85 ? rt_rng_range(&r, 1025, 64 * RA_KiB)
               : pick < 98 ? rt_rng_range(&r, 64 * RA_KiB + 1, 2 * RA_MiB)
                           : rt_rng_range(&r, 2 * RA_MiB + 1, 6 * RA_MiB);
    void *p = ra_malloc(n);
    if (!p) fail_msg("ra_malloc(%zu) returned NULL after %zu bytes in %zu blocks", n, total, nblocks);
    assert_true(rt_is_aligned(p, 16));
    assert_true(ra_owns(p));
    assert_true(ra_usable_size(p) >= n);
    rt_fill(p, n, rt_seed_of(p, n, nblocks));
    blocks[nblocks].p = p;
    blocks[nblocks].n = n;
    nblocks++;
    total += n;
  }
  assert_true(total >= target);

  ra_stats_get(&st1);
  if (st1.arenas <= 1) fail_msg("%zu bytes live in %zu arena(s), reserved %zu", total, st1.arenas, st1.reserved);
  assert_true(st1.reserved >= total);
  assert_true(st1.live_bytes >= st0.live_bytes + total);
  assert_int_equal(st1.live_blocks, st0.live_blocks + nblocks);

  for (size_t i = 0; i < nblocks; i++) {
    size_t bad = rt_check(blocks[i].p, blocks[i].n, rt_seed_of(blocks[i].p, blocks[i].n, i));
    if (bad != SIZE_MAX) fail_msg("block %zu (%p, %zu bytes) corrupted at offset %zu", i, blocks[i].p, blocks[i].n, bad);
  }

  /* free every other block, reallocate into the holes, check again, then free everything */
  for (size_t i = 0; i < nblocks; i += 2) ra_free(blocks[i].p);
  for (size_t i = 0; i < nblocks; i += 2) {
    size_t n = blocks[i].n;
    void *p = ra_malloc(n);
    assert_non_null(p);
    rt_fill(p, n, rt_seed_of(p, n, i + 1000000));
    blocks[i].p = p;
  }
  for (size_t i = 0; i < nblocks; i++) {
    uint64_t tag = (i % 2 == 0) ? i + 1000000 : i;
    size_t bad = rt_check(blocks[i].p, blocks[i].n, rt_seed_of(blocks[i].p, blocks[i].n, tag));
    if (bad != SIZE_MAX) fail_msg("block %zu corrupted at offset %zu after refill", i, bad);
    ra_free(blocks[i].p);
  }
  ra_stats_get(&st2);
  assert_int_equal(st2.live_blocks, st0.live_blocks);
  assert_int_equal(st2.live_bytes, st0.live_bytes);
}

static void test_huge_larger_than_reserve(void **state) {
  (void)state;
  size_t reserve = env_reserve();
  size_t n = 40 * RA_MiB;
  if (reserve && reserve + RA_MiB > n) n = reserve + 8 * RA_MiB;
  for (int round = 0; round < 3; round++) {
    uint8_t *p = ra_malloc(n);
    if (!p) fail_msg("ra_malloc(%zu) returned NULL", n);
    assert_true(rt_is_aligned(p, 16));
    assert_true(ra_owns(p));
    assert_true(ra_owns(p + n - 1));
    assert_true(ra_usable_size(p) >= n);
    for (size_t i = 0; i < n; i += 4096) p[i] = (uint8_t)(i >> 12) ^ (uint8_t)round;
    p[n - 1] = 0x99;
    for (size_t i = 0; i < n; i += 4096) assert_int_equal(p[i], (uint8_t)((i >> 12) ^ (size_t)round));
    assert_int_equal(p[n - 1], 0x99);
    /* and a normal block still works next to it */
    void *q = ra_malloc(100);
    assert_non_null(q);
    ra_free(q);
    /* growing it further keeps the content */
    uint8_t *g = ra_realloc(p, n + 10 * RA_MiB);
    assert_non_null(g);
    for (size_t i = 0; i < n; i += 4096) assert_int_equal(g[i], (uint8_t)((i >> 12) ^ (size_t)round));
    ra_free(g);
  }
  /* zeroed huge block over memory just freed */
  uint8_t *z = ra_calloc(1, n);
  assert_non_null(z);
  for (size_t i = 0; i < n; i += 512) assert_int_equal(z[i], 0);
  ra_free(z);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_first_arena_is_small),
      cmocka_unit_test(test_grow_past_one_arena),
      cmocka_unit_test(test_huge_larger_than_reserve),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
