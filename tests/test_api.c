/* The public allocation API: sizes, alignment, errors, realloc content, calloc zeroing, ra_owns,
 * usable sizes against the documented size classes, and the statistics a user can read. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test_common.h"
#include "ramalloc.h"

/* Sizes the compiler cannot see: with alloc_size on the API, constant absurd sizes would trigger
 * -Walloc-size-larger-than warnings. */
static volatile size_t v_size_max = SIZE_MAX;
static volatile size_t v_ptrdiff_max = (size_t)PTRDIFF_MAX;
static volatile size_t v_two33 = (size_t)1 << 33;

/* ---- size classes ------------------------------------------------------------------------------ */

/* The documented rounding: 16-byte steps up to 128, then 8 classes per doubling up to 2 MiB, then
 * whole 4 KiB pages. */
static size_t expected_class(size_t n) {
  if (n <= 16) return 16;
  if (n <= 128) return (n + 15) & ~(size_t)15;
  if (n <= 2 * RA_MiB) {
    size_t p = 128;
    while (p * 2 < n) p *= 2; /* p < n <= 2p */
    size_t step = p / 8;
    return (n + step - 1) / step * step;
  }
  return (n + 4095) & ~(size_t)4095;
}

static void check_block(void *p, size_t size) {
  assert_non_null(p);
  assert_true(rt_is_aligned(p, 16));
  assert_true(ra_owns(p));
  size_t u = ra_usable_size(p);
  if (u < size) fail_msg("size %zu: usable %zu is smaller", size, u);
  size_t waste = u - size;
  if (size <= 128) {
    if (waste > 15) fail_msg("size %zu: usable %zu wastes more than 15 bytes", size, u);
  } else if (waste * 8 >= u) {
    fail_msg("size %zu: usable %zu wastes 12.5%% or more", size, u);
  }
  if (size > 2 * RA_MiB && waste >= 4096) fail_msg("huge size %zu: usable %zu not page-rounded", size, u);
  uint8_t *b = (uint8_t *)p;
  if (size > 0) {
    b[0] = 0xA1;
    b[size - 1] = 0xA2;
  }
  b[u - 1] = 0xA3; /* the whole usable size is ours */
  if (size > 1) assert_int_equal(b[0], 0xA1);
  if (size > 1 && size < u) assert_int_equal(b[size - 1], 0xA2);
}

/* Every size from 1 to a little past the medium limit, one at a time. */
static void test_every_small_size(void **state) {
  (void)state;
  const size_t limit = 70000;
  for (size_t n = 1; n <= limit; n++) {
    void *p = ra_malloc(n);
    if (!p) fail_msg("ra_malloc(%zu) returned NULL", n);
    check_block(p, n);
    if (n % 97 == 0) memset(p, 0x5C, ra_usable_size(p));
    ra_free(p);
  }
}

/* Class boundaries up to 2 MiB: the class size itself is served exactly, one byte more moves up. */
static void test_class_boundaries(void **state) {
  (void)state;
  for (size_t c = 16; c <= 2 * RA_MiB; c = expected_class(c + 1)) {
    const size_t sizes[] = {c - 1, c, c + 1};
    for (int k = 0; k < 3; k++) {
      size_t n = sizes[k];
      void *p = ra_malloc(n);
      if (!p) fail_msg("ra_malloc(%zu) returned NULL", n);
      check_block(p, n);
      size_t u = ra_usable_size(p);
      if (u != expected_class(n))
        fail_msg("ra_malloc(%zu): usable %zu, documented class %zu", n, u, expected_class(n));
      ra_free(p);
    }
  }
}

static void test_huge_sizes(void **state) {
  (void)state;
  const size_t sizes[] = {2 * RA_MiB + 1,     2 * RA_MiB + 4096, 3 * RA_MiB - 1, 4 * RA_MiB - 1,
                          4 * RA_MiB,         4 * RA_MiB + 1,    5 * RA_MiB + 123, 16 * RA_MiB,
                          33 * RA_MiB + 7,    64 * RA_MiB};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    void *p = ra_malloc(n);
    if (!p) fail_msg("ra_malloc(%zu) returned NULL", n);
    check_block(p, n);
    /* every page is usable */
    uint8_t *b = (uint8_t *)p;
    for (size_t i = 0; i < n; i += 4096) b[i] = (uint8_t)(i >> 12);
    for (size_t i = 0; i < n; i += 4096) assert_int_equal(b[i], (uint8_t)(i >> 12));
    ra_free(p);
  }
}

/* Many live blocks of mixed sizes never overlap: each keeps its own pattern. */
static void test_live_blocks_do_not_overlap(void **state) {
  (void)state;
  enum { N = 4000 };
  static void *ptr[N];
  static size_t len[N];
  rt_rng_t r;
  rt_rng_seed(&r, 1);
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) {
      if (ptr[i]) continue;
      size_t pick = rt_rng_range(&r, 0, 999);
      size_t n = pick < 700   ? rt_rng_range(&r, 0, 512)
                 : pick < 950 ? rt_rng_range(&r, 513, 70000)
                 : pick < 997 ? rt_rng_range(&r, 70001, 2 * RA_MiB)
                              : rt_rng_range(&r, 2 * RA_MiB + 1, 6 * RA_MiB);
      ptr[i] = ra_malloc(n);
      if (!ptr[i]) fail_msg("ra_malloc(%zu) returned NULL", n);
      assert_true(rt_is_aligned(ptr[i], 16));
      len[i] = n;
      rt_fill(ptr[i], n, rt_seed_of(ptr[i], n, (uint64_t)i));
    }
    for (int i = 0; i < N; i++) {
      size_t bad = rt_check(ptr[i], len[i], rt_seed_of(ptr[i], len[i], (uint64_t)i));
      if (bad != SIZE_MAX) fail_msg("block %d (%p, %zu bytes) corrupted at offset %zu", i, ptr[i], len[i], bad);
    }
    /* free a random half, then refill those slots */
    for (int i = 0; i < N; i++) {
      if (rt_rng_next(&r) & 1) {
        ra_free(ptr[i]);
        ptr[i] = NULL;
      }
    }
  }
  for (int i = 0; i < N; i++) {
    if (!ptr[i]) continue;
    size_t bad = rt_check(ptr[i], len[i], rt_seed_of(ptr[i], len[i], (uint64_t)i));
    if (bad != SIZE_MAX) fail_msg("block %d corrupted at offset %zu", i, bad);
    ra_free(ptr[i]);
    ptr[i] = NULL;
  }
}

/* ---- zero size, errors -------------------------------------------------------------------------- */

static void test_malloc_zero(void **state) {
  (void)state;
  enum { N = 100 };
  void *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = ra_malloc(0);
    assert_non_null(p[i]);
    assert_true(rt_is_aligned(p[i], 16));
    assert_true(ra_owns(p[i]));
    for (int j = 0; j < i; j++) assert_ptr_not_equal(p[i], p[j]);
  }
  for (int i = 0; i < N; i++) ra_free(p[i]);
  ra_free(NULL); /* ignored */
  assert_int_equal(ra_usable_size(NULL), 0);
}

static void expect_enomem(void *p) {
  assert_null(p);
  assert_int_equal(errno, ENOMEM);
}

static void test_enomem(void **state) {
  (void)state;
  errno = 0;
  expect_enomem(ra_malloc(v_size_max));
  errno = 0;
  expect_enomem(ra_malloc(v_ptrdiff_max + 1));
  errno = 0;
  expect_enomem(ra_malloc(v_size_max - 4095));
  errno = 0;
  expect_enomem(ra_malloc(v_size_max - 15));

  /* calloc: count * size overflows */
  errno = 0;
  expect_enomem(ra_calloc(v_size_max / 2 + 1, 2));
  errno = 0;
  expect_enomem(ra_calloc(2, v_size_max / 2 + 1));
  errno = 0;
  expect_enomem(ra_calloc(v_two33, v_two33));
  errno = 0;
  expect_enomem(ra_calloc(v_size_max, v_size_max));
  errno = 0;
  expect_enomem(ra_calloc(1, v_size_max));

  /* aligned variants */
  errno = 0;
  expect_enomem(ra_aligned_alloc(64, v_size_max));
  errno = 0;
  expect_enomem(ra_aligned_alloc(4096, v_ptrdiff_max + 1));
  void *out = (void *)&out;
  assert_int_equal(ra_posix_memalign(&out, 64, v_size_max), ENOMEM);
  assert_ptr_equal(out, (void *)&out);

  /* realloc failure leaves the block untouched */
  uint8_t *p = ra_malloc(1000);
  assert_non_null(p);
  rt_fill_all(p, 1000, 3);
  errno = 0;
  expect_enomem(ra_realloc(p, v_size_max));
  errno = 0;
  expect_enomem(ra_realloc(p, v_ptrdiff_max + 1));
  assert_int_equal(rt_check_all(p, 1000, 3), SIZE_MAX);
  assert_true(ra_usable_size(p) >= 1000);
  ra_free(p);

  /* and the allocator still works afterwards */
  p = ra_malloc(100);
  assert_non_null(p);
  ra_free(p);
}

static void test_einval(void **state) {
  (void)state;
  const size_t bad_aligned[] = {0, 3, 5, 6, 24, 48, 100, 4097, (size_t)1 << 20 | 1, SIZE_MAX};
  for (size_t k = 0; k < sizeof bad_aligned / sizeof bad_aligned[0]; k++) {
    errno = 0;
    void *p = ra_aligned_alloc(bad_aligned[k], 16);
    if (p != NULL) fail_msg("ra_aligned_alloc(%zu, 16) did not fail", bad_aligned[k]);
    if (errno != EINVAL) fail_msg("ra_aligned_alloc(%zu, 16): errno %d, want EINVAL", bad_aligned[k], errno);
  }
  const size_t bad_posix[] = {0, 1, 2, 3, 4, 12, 24, 40, 48, 4097};
  for (size_t k = 0; k < sizeof bad_posix / sizeof bad_posix[0]; k++) {
    void *out = (void *)&out;
    int rc = ra_posix_memalign(&out, bad_posix[k], 16);
    if (rc != EINVAL) fail_msg("ra_posix_memalign(%zu): returned %d, want EINVAL", bad_posix[k], rc);
    if (out != (void *)&out) fail_msg("ra_posix_memalign(%zu) changed *out on error", bad_posix[k]);
  }
  /* small powers of two are fine for aligned_alloc, sizeof(void *) for posix_memalign */
  const size_t small[] = {1, 2, 4, 8};
  for (size_t k = 0; k < 4; k++) {
    void *p = ra_aligned_alloc(small[k], 24);
    assert_non_null(p);
    assert_true(rt_is_aligned(p, 16));
    ra_free(p);
  }
  void *out = NULL;
  assert_int_equal(ra_posix_memalign(&out, sizeof(void *), 24), 0);
  assert_non_null(out);
  assert_true(rt_is_aligned(out, 16));
  ra_free(out);
}

/* ---- alignment -------------------------------------------------------------------------------- */

typedef struct live_s {
  void *p;
  size_t n;
} live_t;

static void check_aligned(void *p, size_t align, size_t n) {
  if (!p) fail_msg("alignment %zu size %zu: NULL", align, n);
  if (!rt_is_aligned(p, align)) fail_msg("alignment %zu size %zu: got %p", align, n, p);
  assert_true(ra_owns(p));
  if (ra_usable_size(p) < n) fail_msg("alignment %zu size %zu: usable %zu", align, n, ra_usable_size(p));
}

static void test_alignment_sweep(void **state) {
  (void)state;
  enum { MAXLIVE = 64 };
  live_t live[MAXLIVE];
  for (size_t align = 16; align <= RA_MiB; align *= 2) {
    const size_t sizes[] = {0, 1, 8, 100, 5000, 70000, align / 2, align - 1, align, align + 1, 3 * align + 5,
                            2 * RA_MiB - align / 2};
    int nl = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      size_t n = sizes[k];
      /* an ordinary block in between, to vary what the aligned block lands next to */
      void *q = ra_malloc(n);
      assert_non_null(q);
      live[nl++] = (live_t){q, n};

      void *p = ra_aligned_alloc(align, n);
      check_aligned(p, align, n);
      live[nl++] = (live_t){p, n};

      void *m = NULL;
      int rc = ra_posix_memalign(&m, align, n);
      if (rc != 0) fail_msg("ra_posix_memalign(%zu, %zu) returned %d", align, n, rc);
      check_aligned(m, align, n);
      live[nl++] = (live_t){m, n};
    }
    for (int i = 0; i < nl; i++) rt_fill(live[i].p, live[i].n, rt_seed_of(live[i].p, live[i].n, align));
    for (int i = 0; i < nl; i++) {
      size_t bad = rt_check(live[i].p, live[i].n, rt_seed_of(live[i].p, live[i].n, align));
      if (bad != SIZE_MAX) fail_msg("alignment %zu: block of %zu corrupted at %zu", align, live[i].n, bad);
    }
    for (int i = 0; i < nl; i++) ra_free(live[i].p);
  }
}

static void test_alignment_big(void **state) {
  (void)state;
  const size_t aligns[] = {2 * RA_MiB, 4 * RA_MiB, 8 * RA_MiB, 64 * RA_MiB};
  for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
    size_t align = aligns[a];
    const size_t sizes[] = {1, 100, 70000, RA_MiB, align, align + 1};
    void *ps[6];
    for (int k = 0; k < 6; k++) {
      ps[k] = ra_aligned_alloc(align, sizes[k]);
      check_aligned(ps[k], align, sizes[k]);
      uint8_t *b = (uint8_t *)ps[k];
      b[0] = (uint8_t)k;
      b[sizes[k] - 1] = (uint8_t)(k + 1);
    }
    for (int k = 0; k < 6; k++) {
      uint8_t *b = (uint8_t *)ps[k];
      if (sizes[k] > 1) assert_int_equal(b[0], (uint8_t)k);
      assert_int_equal(b[sizes[k] - 1], (uint8_t)(k + 1));
      ra_free(ps[k]);
    }
    void *m = NULL;
    assert_int_equal(ra_posix_memalign(&m, align, 3 * align / 2), 0);
    check_aligned(m, align, 3 * align / 2);
    ra_free(m);
  }
  /* up to the default arena reservation (1 GiB): address space only, nothing touched but a byte */
  const size_t huge_aligns[] = {256 * RA_MiB, RA_GiB};
  for (int k = 0; k < 2; k++) {
    uint8_t *p = ra_aligned_alloc(huge_aligns[k], 100);
    check_aligned(p, huge_aligns[k], 100);
    p[0] = 1;
    p[99] = 2;
    ra_free(p);
  }
}

/* Aligned blocks are ordinary blocks afterwards: realloc keeps their content. */
static void test_aligned_realloc(void **state) {
  (void)state;
  for (size_t align = 32; align <= 4 * RA_MiB; align *= 4) {
    size_t n = align + 100;
    void *p = ra_aligned_alloc(align, n);
    check_aligned(p, align, n);
    rt_fill_all(p, n, align);
    void *q = ra_realloc(p, 2 * n + 3 * RA_MiB);
    assert_non_null(q);
    assert_int_equal(rt_check_all(q, n, align), SIZE_MAX);
    void *s = ra_realloc(q, n / 3 + 1);
    assert_non_null(s);
    assert_int_equal(rt_check_all(s, n / 3 + 1, align), SIZE_MAX);
    ra_free(s);
  }
}

/* ---- realloc ---------------------------------------------------------------------------------- */

static void test_realloc_null_is_malloc(void **state) {
  (void)state;
  const size_t sizes[] = {0, 1, 100, 70000, 3 * RA_MiB};
  for (int k = 0; k < 5; k++) {
    void *p = ra_realloc(NULL, sizes[k]);
    assert_non_null(p);
    assert_true(rt_is_aligned(p, 16));
    assert_true(ra_owns(p));
    assert_true(ra_usable_size(p) >= sizes[k]);
    if (sizes[k]) memset(p, 1, sizes[k]);
    ra_free(p);
  }
}

/* Content survives through small -> medium -> large -> huge -> back, every byte checked. */
static void test_realloc_content(void **state) {
  (void)state;
  const size_t chain[] = {10,         100,        1000,       70000,      RA_MiB,     3 * RA_MiB,
                          40 * RA_MiB, 3 * RA_MiB, 2 * RA_MiB, RA_MiB - 1, 70000,      65536,
                          1000,       129,        128,        100,        10,         1,
                          5 * RA_MiB, 17,         500 * RA_KiB};
  size_t n = chain[0];
  uint64_t seed = 11;
  uint8_t *p = ra_realloc(NULL, n);
  assert_non_null(p);
  rt_fill_all(p, n, seed);
  for (size_t k = 1; k < sizeof chain / sizeof chain[0]; k++) {
    size_t m = chain[k];
    uint8_t *q = ra_realloc(p, m);
    if (!q) fail_msg("ra_realloc(%zu -> %zu) returned NULL", n, m);
    assert_true(rt_is_aligned(q, 16));
    assert_true(ra_usable_size(q) >= m);
    size_t keep = n < m ? n : m;
    size_t bad = rt_check_all(q, keep, seed);
    if (bad != SIZE_MAX) fail_msg("ra_realloc(%zu -> %zu) lost byte %zu", n, m, bad);
    seed++;
    rt_fill_all(q, m, seed);
    p = q;
    n = m;
  }
  ra_free(p);
}

/* Growing a byte at a time, as string builders do; then within the usable size. */
static void test_realloc_by_one(void **state) {
  (void)state;
  uint8_t *p = NULL;
  for (size_t n = 1; n <= 5000; n++) {
    p = ra_realloc(p, n);
    assert_non_null(p);
    p[n - 1] = rt_pat_byte(5, n - 1);
    if (n % 64 == 0 || n < 300) assert_int_equal(rt_check_all(p, n, 5), SIZE_MAX);
  }
  assert_int_equal(rt_check_all(p, 5000, 5), SIZE_MAX);
  size_t u = ra_usable_size(p);
  uint8_t *q = ra_realloc(p, u); /* up to the usable size */
  assert_non_null(q);
  assert_int_equal(rt_check_all(q, 5000, 5), SIZE_MAX);
  q = ra_realloc(q, 5000); /* same size */
  assert_non_null(q);
  assert_int_equal(rt_check_all(q, 5000, 5), SIZE_MAX);
  ra_free(q);
}

static void test_realloc_zero(void **state) {
  (void)state;
  ra_stats_t st0, st1;
  void *warm = ra_malloc(8);
  ra_stats_get(&st0);
  const size_t sizes[] = {100, 70000, 3 * RA_MiB};
  for (int k = 0; k < 3; k++) {
    void *p = ra_malloc(sizes[k]);
    assert_non_null(p);
    void *q = ra_realloc(p, 0);
    assert_non_null(q);
    assert_true(ra_owns(q));
    /* p was freed and q is one new block: one more live block than before, not two */
    ra_stats_get(&st1);
    assert_int_equal(st1.live_blocks, st0.live_blocks + 1);
    ra_free(q);
  }
  ra_stats_get(&st1);
  assert_int_equal(st1.live_blocks, st0.live_blocks);
  ra_free(warm);
}

/* ---- calloc ----------------------------------------------------------------------------------- */

static void expect_zero(const void *p, size_t n) {
  const uint8_t *b = (const uint8_t *)p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0) fail_msg("calloc block %p of %zu bytes: byte %zu is 0x%02x", p, n, i, b[i]);
}

static void test_calloc_zero_on_reuse(void **state) {
  (void)state;
  const size_t sizes[] = {1, 16, 100, 1000, 5000, 65536, 70000, 300000, 2 * RA_MiB, 3 * RA_MiB};
  enum { N = 16 };
  void *p[N];
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    int rounds = n > RA_MiB ? 6 : 40;
    for (int r = 0; r < rounds; r++) {
      /* dirty blocks of this size, free them, then calloc the same size: must be zero */
      for (int i = 0; i < N; i++) {
        p[i] = ra_malloc(n);
        assert_non_null(p[i]);
        memset(p[i], 0xAB, ra_usable_size(p[i]));
      }
      for (int i = 0; i < N; i++) ra_free(p[i]);
      for (int i = 0; i < N; i++) {
        p[i] = ra_calloc(1, n);
        assert_non_null(p[i]);
        expect_zero(p[i], n);
        memset(p[i], 0xAB, n);
      }
      for (int i = 0; i < N; i++) ra_free(p[i]);
      /* count * size form */
      void *q = ra_calloc(n, 1);
      assert_non_null(q);
      expect_zero(q, n);
      memset(q, 0xAB, n);
      ra_free(q);
      if (n % 8 == 0) {
        q = ra_calloc(n / 8, 8);
        assert_non_null(q);
        expect_zero(q, n);
        memset(q, 0xCD, n);
        ra_free(q);
      }
    }
  }
}

/* calloc of a block freed after a realloc grow (dirty tail bytes past the old size). */
static void test_calloc_after_realloc(void **state) {
  (void)state;
  for (int r = 0; r < 50; r++) {
    uint8_t *p = ra_malloc(40);
    assert_non_null(p);
    memset(p, 0xAB, ra_usable_size(p));
    p = ra_realloc(p, 400);
    assert_non_null(p);
    memset(p, 0xAB, ra_usable_size(p));
    ra_free(p);
    void *a = ra_calloc(1, 40);
    void *b = ra_calloc(4, 100);
    assert_non_null(a);
    assert_non_null(b);
    expect_zero(a, 40);
    expect_zero(b, 400);
    memset(a, 0xAB, 40);
    memset(b, 0xAB, 400);
    ra_free(a);
    ra_free(b);
  }
}

/* Memory dirtied by one size class, freed completely (pages and chunks become free), then carved
 * again by calloc for another class: every calloc block reads as zero. */
static void test_calloc_over_dirty_chunks(void **state) {
  (void)state;
  static const size_t pairs[][2] = {{1000, 1500},   {100, 48},       {20000, 3000},   {300000, 40000},
                                    {40000, 700000}, {16, 2 * RA_MiB}, {3 * RA_MiB, 100}, {5000, 5 * RA_MiB}};
  enum { MAXP = 40000 };
  static void *p[MAXP];
  const size_t volume = 24 * RA_MiB;
  for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
    size_t dirty = pairs[k][0], clean = pairs[k][1];
    size_t n = volume / dirty;
    if (n > MAXP) n = MAXP;
    for (size_t i = 0; i < n; i++) {
      p[i] = ra_malloc(dirty);
      assert_non_null(p[i]);
      memset(p[i], 0xAB, ra_usable_size(p[i]));
    }
    for (size_t i = 0; i < n; i++) ra_free(p[i]);
    size_t m = volume / clean;
    if (m > MAXP) m = MAXP;
    for (size_t i = 0; i < m; i++) {
      p[i] = ra_calloc(1, clean);
      if (!p[i]) fail_msg("ra_calloc(1, %zu) returned NULL", clean);
      const uint64_t *w = (const uint64_t *)p[i];
      for (size_t j = 0; j < clean / 8; j++)
        if (w[j] != 0)
          fail_msg("calloc(%zu) after %zu-byte blocks were freed: block %zu word %zu is %#llx", clean, dirty, i, j,
                   (unsigned long long)w[j]);
      for (size_t j = clean & ~(size_t)7; j < clean; j++) assert_int_equal(((uint8_t *)p[i])[j], 0);
    }
    for (size_t i = 0; i < m; i++) ra_free(p[i]);
  }
}

/* A freed huge block's memory stays committed for the purge delay and is reused by the next huge
 * block or chunk of pages there: the new owner sees its own content only (calloc zero, every byte),
 * the commit charge does not grow for a block of the same size, and every shape of reuse works:
 * same size, larger, smaller, aligned, a run whose last slice was only partly committed, a shrunk
 * block, and small blocks carved from a chunk a huge block left. */
static bool all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != 0) return false;
  return true;
}

static uint8_t *huge_dirty(size_t n) {
  uint8_t *p = ra_malloc(n);
  assert_non_null(p);
  memset(p, 0xC5, n);
  return p;
}

static void test_huge_reuse(void **state) {
  (void)state;
  const char *guard = getenv("RAMALLOC_GUARD_PAGES");
  if (guard != NULL && strcmp(guard, "1") == 0) {
    print_message("RAMALLOC_GUARD_PAGES=1: huge blocks are decommitted when freed, not kept\n");
    skip();
  }
  ra_stats_t st;
  /* No other free committed memory around (earlier tests leave some), so that the next block
   * takes exactly the run freed. */
  ra_collect(true);
  /* freeing keeps the pages (no OS call), and a block of the same size takes them back */
  uint8_t *a = huge_dirty(20 * RA_MiB);
  ra_stats_get(&st);
  size_t before = st.committed, decommits = st.decommit_calls;
  ra_free(a);
  ra_stats_get(&st);
  if (st.committed != before || st.decommit_calls != decommits)
    fail_msg("freeing a huge block gave memory back at once: committed %zu -> %zu, decommit calls %zu -> %zu",
             before, st.committed, decommits, st.decommit_calls);
  uint8_t *b = huge_dirty(20 * RA_MiB);
  ra_stats_get(&st);
  if (st.committed > before)
    fail_msg("a huge block of the size just freed raised the commit charge from %zu to %zu", before, st.committed);
  ra_free(b);
  /* calloc over freed huge memory, of sizes around it, including a last slice partly committed */
  const size_t sizes[] = {20 * RA_MiB + 123, 9 * RA_MiB + 5000, 30 * RA_MiB, 20 * RA_MiB + 70000, 3 * RA_MiB};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    ra_free(huge_dirty(sizes[(k + 1) % 5]));
    uint8_t *z = ra_calloc(1, sizes[k]);
    assert_non_null(z);
    if (!all_zero(z, sizes[k])) fail_msg("ra_calloc(1, %zu) over freed huge memory is not zero", sizes[k]);
    memset(z, 0x3A, sizes[k]);
    ra_free(z);
  }
  /* aligned huge blocks over freed ones keep their alignment and their pages */
  const size_t aligns[] = {RA_MiB, 8 * RA_MiB};
  for (size_t k = 0; k < 2; k++) {
    ra_free(huge_dirty(24 * RA_MiB));
    void *q = NULL;
    assert_int_equal(ra_posix_memalign(&q, aligns[k], 6 * RA_MiB), 0);
    assert_true(rt_is_aligned(q, aligns[k]));
    memset(q, 0x11, 6 * RA_MiB);
    ra_free(q);
  }
  /* a block shrunk in place, then freed and reused */
  uint8_t *s = huge_dirty(40 * RA_MiB);
  uint8_t *s2 = ra_realloc(s, 5 * RA_MiB + 4096);
  assert_ptr_equal(s2, s);
  ra_free(s2);
  uint8_t *g = ra_calloc(1, 12 * RA_MiB);
  assert_non_null(g);
  assert_true(all_zero(g, 12 * RA_MiB));
  ra_free(g);
  /* chunks of pages where huge blocks were: calloc zero, blocks intact */
  ra_free(huge_dirty(32 * RA_MiB));
  enum { N = 3000 };
  static uint8_t *p[N];
  for (size_t i = 0; i < N; i++) {
    size_t n = 16 + (i * 7919) % 40000;
    p[i] = ra_calloc(1, n);
    assert_non_null(p[i]);
    if (!all_zero(p[i], n)) fail_msg("ra_calloc(1, %zu) in a chunk a huge block left is not zero", n);
    memset(p[i], (int)(i & 0xFF), n);
  }
  for (size_t i = 0; i < N; i++) {
    size_t n = 16 + (i * 7919) % 40000;
    for (size_t j = 0; j < n; j += 97) assert_int_equal(p[i][j], (uint8_t)(i & 0xFF));
    ra_free(p[i]);
  }
}

/* ---- ra_owns ---------------------------------------------------------------------------------- */

static int static_data = 42;
static const char static_text[] = "not from ramalloc";
static __thread int tls_var;

/* ra_free_sized and ra_free_aligned_sized accept every size a block can have been asked for: the
 * allocation's own size at every class boundary, and the size of a realloc that kept the block
 * (down to half its usable size); aligned blocks with their alignment. No report, blocks reused. */
static void test_free_sized_accepts(void **state) {
  (void)state;
  ra_stats_t before, after;
  ra_stats_get(&before);
  for (size_t b = 16; b <= ((size_t)5 << 20); b += b <= 128 ? 16 : (size_t)1 << (63 - __builtin_clzll(b - 1) - 3)) {
    size_t sizes[] = {b - 1, b, b + 1};
    for (int i = 0; i < 3; i++) {
      void *p = ra_malloc(sizes[i]);
      assert_non_null(p);
      ra_free_sized(p, sizes[i]);
      p = ra_calloc(1, sizes[i]);
      ra_free_sized(p, sizes[i]);
      p = ra_malloc(sizes[i]);
      size_t u = ra_usable_size(p);
      size_t shrunk = u / 2 + 1;
      void *q = ra_realloc(p, shrunk);
      assert_non_null(q);
      ra_free_sized(q, shrunk);
    }
  }
  ra_free_sized(ra_malloc(0), 0);
  ra_free_sized(NULL, 100);
  const size_t aligns[] = {8, 16, 32, 64, 256, 4096, 65536, (size_t)1 << 20, (size_t)8 << 20};
  const size_t sizes[] = {0, 1, 24, 100, 1000, 5000, 70000, 300000, (size_t)2 << 20, (size_t)5 << 20};
  for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      void *p = ra_aligned_alloc(aligns[a], sizes[s]);
      assert_non_null(p);
      ra_free_aligned_sized(p, aligns[a], sizes[s]);
    }
  ra_stats_get(&after);
  assert_int_equal(after.live_blocks, before.live_blocks); /* every one of them was freed */
}

static void test_owns(void **state) {
  (void)state;
  int local = 0;
  assert_false(ra_owns(NULL));
  assert_false(ra_owns(&local));
  assert_false(ra_owns(&static_data));
  assert_false(ra_owns(static_text));
  assert_false(ra_owns("literal"));
  assert_false(ra_owns(&tls_var));
  assert_false(ra_owns((const void *)(uintptr_t)&test_owns));

  /* glibc's heap (the static library does not replace malloc), small and mmap-backed */
  void *g1 = malloc(64);
  void *g2 = malloc(8 * RA_MiB);
  assert_non_null(g1);
  assert_non_null(g2);
  assert_false(ra_owns(g1));
  assert_false(ra_owns(g2));
  assert_false(ra_owns((char *)g2 + 4 * RA_MiB));
  free(g1);
  free(g2);

  /* a mapping of our own */
  void *m = mmap(NULL, 4 * RA_MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  assert_false(ra_owns(m));
  assert_false(ra_owns((char *)m + 2 * RA_MiB + 16));
  munmap(m, 4 * RA_MiB);

  /* garbage: no fault, and false for addresses nothing can live at */
  const uintptr_t garbage[] = {1,      16,     0x1000, 0x10000, (uintptr_t)-4096, (uintptr_t)-1,
                               (uintptr_t)-16, (uintptr_t)1 << 63, 0xffff800000000000u, 0xdead0000beefu};
  for (size_t k = 0; k < sizeof garbage / sizeof garbage[0]; k++) {
    bool owned = ra_owns((const void *)garbage[k]);
    if (k < 9) assert_false(owned);
  }
  /* across the address space, just for faults */
  volatile unsigned owned = 0;
  for (uintptr_t a = 0; a < ((uintptr_t)1 << 48); a += (uintptr_t)1 << 36) owned += ra_owns((const void *)(a + 8));
  (void)owned;

  /* every kind of block, start, interior and last byte */
  const size_t sizes[] = {1, 16, 100, 1000, 65536, 70000, RA_MiB, 3 * RA_MiB, 20 * RA_MiB};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    char *p = ra_malloc(n);
    assert_non_null(p);
    if (!ra_owns(p)) fail_msg("ra_owns(start of %zu-byte block) is false", n);
    if (!ra_owns(p + n / 2)) fail_msg("ra_owns(middle of %zu-byte block) is false", n);
    if (!ra_owns(p + n - 1)) fail_msg("ra_owns(last byte of %zu-byte block) is false", n);
    ra_free(p);
  }
  void *a = ra_aligned_alloc(RA_MiB, 100);
  assert_non_null(a);
  assert_true(ra_owns(a));
  assert_true(ra_owns((char *)a + 99));
  ra_free(a);
  void *c = ra_calloc(10, 10);
  assert_true(ra_owns(c));
  ra_free(c);
}

/* ra_owns never faults on addresses around and inside ramalloc's own memory: chunk headers, free
 * and decommitted space, the ends of chunks and arenas, the slices of a huge block. Blocks of every
 * kind are live while their neighbourhood (+-40 MiB around each, at 4 KiB steps and at both sides
 * of every 4 MiB and 64 KiB boundary) is probed, and every byte of a live block that is probed must
 * be reported as owned. */
static void test_owns_never_faults_nearby(void **state) {
  (void)state;
  const size_t sizes[] = {16, 1000, 20000, 300000, 3 * RA_MiB, 9 * RA_MiB};
  enum { NS = sizeof sizes / sizeof sizes[0] };
  uint8_t *blk[NS + 2];
  size_t len[NS + 2];
  for (size_t k = 0; k < NS; k++) {
    blk[k] = ra_malloc(sizes[k]);
    assert_non_null(blk[k]);
    len[k] = sizes[k];
  }
  blk[NS] = ra_aligned_alloc(4 * RA_MiB, 100); /* on a chunk boundary */
  len[NS] = 100;
  blk[NS + 1] = ra_aligned_alloc(64 * RA_KiB, 5000); /* on a slice boundary */
  len[NS + 1] = 5000;
  assert_non_null(blk[NS]);
  assert_non_null(blk[NS + 1]);
  /* free a few blocks again so free space and retired pages are in the neighbourhood too */
  void *gone[4] = {ra_malloc(100), ra_malloc(50000), ra_malloc(RA_MiB), ra_malloc(5 * RA_MiB)};
  for (int i = 0; i < 4; i++) ra_free(gone[i]);

  const uintptr_t span = 40 * RA_MiB;
  for (size_t k = 0; k < NS + 2; k++) {
    uintptr_t center = (uintptr_t)blk[k] & ~(uintptr_t)(4 * RA_MiB - 1);
    uintptr_t lo = center > span ? center - span : 0, hi = center + span;
    for (uintptr_t a = lo; a < hi; a += 4096) {
      const uintptr_t probes[] = {a, a + 8, a + 4095, a - 1};
      for (int j = 0; j < 4; j++) {
        uintptr_t x = probes[j];
        bool owned = ra_owns((const void *)x);
        for (size_t b = 0; b < NS + 2; b++) {
          uintptr_t s = (uintptr_t)blk[b];
          if (x >= s && x < s + len[b] && !owned)
            fail_msg("ra_owns(%p) false inside live block %p of %zu bytes", (void *)x, blk[b], len[b]);
        }
      }
    }
    /* 16-byte steps through the first and last 64 KiB of the chunk (header, last slice) */
    for (uintptr_t a = center; a < center + 64 * RA_KiB; a += 16) (void)ra_owns((const void *)a);
    for (uintptr_t a = center + 4 * RA_MiB - 64 * RA_KiB; a <= center + 4 * RA_MiB + 16; a += 16)
      (void)ra_owns((const void *)a);
  }
  for (size_t k = 0; k < NS + 2; k++) ra_free(blk[k]);
}

/* ---- statistics ------------------------------------------------------------------------------- */

static const ra_class_stats_t *find_class(const ra_stats_t *st, size_t block_size) {
  for (size_t i = 0; i < st->class_count && i < RA_STATS_CLASSES; i++)
    if (st->classes[i].block_size == block_size) return &st->classes[i];
  return NULL;
}

static void test_stats(void **state) {
  (void)state;
  enum { N = 100 };
  static ra_stats_t st0, st1, st2;
  void *warm = ra_malloc(112);
  ra_stats_get(&st0);
  assert_true(st0.arenas >= 1);
  assert_true(st0.reserved > 0);
  assert_true(st0.committed > 0);
  assert_true(st0.committed <= st0.reserved);
  assert_true(st0.committed_peak >= st0.committed);
  assert_true(st0.live_blocks >= 1);
  assert_true(st0.live_bytes >= 112);
  assert_true(st0.class_count <= RA_STATS_CLASSES);
  assert_true(st0.reserve_calls >= 1);
  assert_true(st0.heaps >= 1);

  void *p[N];
  size_t bytes = 0;
  for (int i = 0; i < N; i++) {
    p[i] = ra_malloc(100);
    assert_non_null(p[i]);
    bytes += ra_usable_size(p[i]);
  }
  assert_int_equal(ra_usable_size(p[0]), 112);
  void *h = ra_malloc(3 * RA_MiB);
  assert_non_null(h);
  bytes += ra_usable_size(h);

  ra_stats_get(&st1);
  assert_int_equal(st1.live_blocks, st0.live_blocks + N + 1);
  assert_int_equal(st1.live_bytes, st0.live_bytes + bytes);
  assert_int_equal(st1.huge_blocks, st0.huge_blocks + 1);
  assert_true(st1.committed <= st1.reserved);
  assert_true(st1.committed_peak >= st1.committed);
  const ra_class_stats_t *c1 = find_class(&st1, 112);
  assert_non_null(c1);
  assert_true(c1->blocks_used >= N + 1);
  assert_true(c1->pages >= 1);
  size_t used1 = c1->blocks_used;

  for (int i = 0; i < N; i++) ra_free(p[i]);
  ra_free(h);
  ra_stats_get(&st2);
  assert_int_equal(st2.live_blocks, st0.live_blocks);
  assert_int_equal(st2.live_bytes, st0.live_bytes);
  assert_int_equal(st2.huge_blocks, st0.huge_blocks);
  assert_true(st2.committed_peak >= st1.committed);
  const ra_class_stats_t *c2 = find_class(&st2, 112);
  if (c2) assert_int_equal(c2->blocks_used, used1 - N);
  ra_free(warm);
}

static void test_stats_print(void **state) {
  (void)state;
  void *p = ra_malloc(1000);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  ra_stats_print(fds[1]);
  close(fds[1]);
  char buf[4096];
  ssize_t n = read(fds[0], buf, sizeof buf);
  close(fds[0]);
  assert_true(n > 0);
  ra_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_malloc_zero),
      cmocka_unit_test(test_enomem),
      cmocka_unit_test(test_einval),
      cmocka_unit_test(test_every_small_size),
      cmocka_unit_test(test_class_boundaries),
      cmocka_unit_test(test_huge_sizes),
      cmocka_unit_test(test_live_blocks_do_not_overlap),
      cmocka_unit_test(test_alignment_sweep),
      cmocka_unit_test(test_alignment_big),
      cmocka_unit_test(test_aligned_realloc),
      cmocka_unit_test(test_realloc_null_is_malloc),
      cmocka_unit_test(test_realloc_content),
      cmocka_unit_test(test_realloc_by_one),
      cmocka_unit_test(test_realloc_zero),
      cmocka_unit_test(test_calloc_zero_on_reuse),
      cmocka_unit_test(test_calloc_after_realloc),
      cmocka_unit_test(test_calloc_over_dirty_chunks),
      cmocka_unit_test(test_huge_reuse),
      cmocka_unit_test(test_free_sized_accepts),
      cmocka_unit_test(test_owns),
      cmocka_unit_test(test_owns_never_faults_nearby),
      cmocka_unit_test(test_stats),
      cmocka_unit_test(test_stats_print),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
