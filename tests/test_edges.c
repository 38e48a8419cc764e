/* Edge cases of the allocation API (issue 7, item 4): every size next to a class boundary, SIZE_MAX
 * and the sizes just under it, calloc overflow, alignments from 1 up to the arena size and past it,
 * realloc to 0, and the questions asked of NULL. After each group the calling thread's heap must
 * still pass the validator, and a request that failed must not have left memory committed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"
#include "internal.h"

/* Sizes the compiler cannot see, so alloc_size does not turn absurd constants into warnings. */
static volatile size_t v_zero = 0;

static size_t hidden(size_t n) { return n + v_zero; }

static void expect_valid_heap(void) {
  if (!_ra_heap_validate()) fail_msg("_ra_heap_validate() failed (the broken invariant is on stderr)");
}

/* The class a request of n bytes lands in, from the allocator's own table (0 < n <= 2 MiB). */
static size_t class_of(size_t n) { return _ra_class_size[_ra_size_class(n)]; }

/* The usable size of a request of n bytes (0 < n): its class; with RAMALLOC_CANARY the class of
 * n + 8, less the canary's 8 bytes; a huge block's whole 4 KiB pages. */
static size_t usable_of(size_t n) {
  size_t room = _ra_canary_room(n);
  if (room > RA_LARGE_MAX) return _ra_align_up(room, 4096);
  return class_of(room) - (room - n);
}

/* A block of n bytes as the API promises it: non-NULL, 16-aligned, ours, at least n usable bytes,
 * and every usable byte writable. */
static void check_block(const char *what, void *p, size_t n) {
  if (p == NULL) fail_msg("%s(%zu) returned NULL (errno %d)", what, n, errno);
  if (!rt_is_aligned(p, RA_ALIGN)) fail_msg("%s(%zu) = %p is not 16-byte aligned", what, n, p);
  if (!ra_owns(p)) fail_msg("%s(%zu) = %p is not owned by ramalloc", what, n, p);
  size_t u = ra_usable_size(p);
  if (u < n) fail_msg("%s(%zu): usable size %zu is smaller than the request", what, n, u);
}

/* ---- every size near a class boundary ---------------------------------------------------------- */

/* For each of the 120 classes: one byte under, exactly at, and one byte over its block size, through
 * malloc, calloc and aligned_alloc. The usable size is exactly the class of the request, the whole
 * usable size can be written, and neighbours allocated around it keep their content. */
static void test_class_boundaries_all_entry_points(void **state) {
  (void)state;
  for (size_t c = 0; c < RA_CLASS_COUNT; c++) {
    size_t bs = _ra_class_size[c];
    const size_t sizes[] = {bs - 1, bs, bs + 1};
    for (int k = 0; k < 3; k++) {
      size_t n = sizes[k];
      if (n == 0) continue;
      size_t want = usable_of(n);
      void *before = ra_malloc(n), *p = ra_malloc(n), *after = ra_malloc(n);
      check_block("ra_malloc", before, n);
      check_block("ra_malloc", p, n);
      check_block("ra_malloc", after, n);
      if (ra_usable_size(p) != want)
        fail_msg("ra_malloc(%zu): usable %zu, the class table says %zu", n, ra_usable_size(p), want);
      size_t u = ra_usable_size(p);
      rt_fill(before, ra_usable_size(before), 1);
      rt_fill(after, ra_usable_size(after), 3);
      rt_fill(p, u, 2); /* the whole usable size, up to its last byte */
      if (rt_check(before, ra_usable_size(before), 1) != SIZE_MAX || rt_check(after, ra_usable_size(after), 3) != SIZE_MAX)
        fail_msg("filling the %zu usable bytes of ra_malloc(%zu) overwrote a neighbour", u, n);
      if (rt_check(p, u, 2) != SIZE_MAX) fail_msg("ra_malloc(%zu) lost its content", n);

      uint8_t *z = ra_calloc(1, n);
      check_block("ra_calloc", z, n);
      for (size_t i = 0; i < n; i += (n > 65536 ? 4093 : 1))
        if (z[i] != 0) fail_msg("ra_calloc(1, %zu): byte %zu is 0x%02x", n, i, z[i]);
      if (z[n - 1] != 0) fail_msg("ra_calloc(1, %zu): last byte is 0x%02x", n, z[n - 1]);

      for (size_t align = 32; align <= 4096; align *= 8) {
        void *a = ra_aligned_alloc(align, n);
        check_block("ra_aligned_alloc", a, n);
        if (!rt_is_aligned(a, align)) fail_msg("ra_aligned_alloc(%zu, %zu) = %p", align, n, a);
        memset(a, 0x5a, n);
        ra_free(a);
      }
      ra_free(z);
      ra_free(before);
      ra_free(p);
      ra_free(after);
    }
  }
  expect_valid_heap();
}

/* The boundaries between page kinds (small / medium / large / huge) and the huge rounding, with a
 * few bytes either side; each block is filled completely and checked. */
static void test_kind_boundaries(void **state) {
  (void)state;
  const size_t edges[] = {RA_ALIGN,      128,          RA_DIRECT_MAX, RA_SMALL_MAX, RA_MEDIUM_MAX,
                          RA_SLICE_SIZE, RA_LARGE_MAX, RA_LARGE_MAX + 4096,       RA_CHUNK_SIZE - RA_SLICE_SIZE,
                          RA_CHUNK_SIZE, 2 * RA_CHUNK_SIZE};
  const long deltas[] = {-17, -16, -15, -1, 0, 1, 15, 16, 17};
  for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++)
    for (size_t d = 0; d < sizeof deltas / sizeof deltas[0]; d++) {
      long s = (long)edges[e] + deltas[d];
      if (s <= 0) continue;
      size_t n = (size_t)s;
      uint8_t *p = ra_malloc(n);
      check_block("ra_malloc", p, n);
      size_t u = ra_usable_size(p);
      if (_ra_canary_room(n) > RA_LARGE_MAX && u != usable_of(n))
        fail_msg("huge ra_malloc(%zu): usable %zu, want whole 4 KiB pages (%zu)", n, u, usable_of(n));
      rt_fill(p, u, n);
      if (rt_check(p, u, n) != SIZE_MAX) fail_msg("ra_malloc(%zu) lost its content", n);
      ra_free(p);
    }
  expect_valid_heap();
}

/* realloc across every class boundary keeps the content, growing and shrinking by one byte. */
static void test_realloc_across_boundaries(void **state) {
  (void)state;
  for (size_t c = 0; c + 1 < RA_CLASS_COUNT; c++) {
    size_t bs = _ra_class_size[c];
    uint8_t *p = ra_malloc(bs);
    check_block("ra_malloc", p, bs);
    rt_fill_all(p, bs, c);
    uint8_t *q = ra_realloc(p, bs + 1); /* one byte over: the next class */
    check_block("ra_realloc", q, bs + 1);
    if (rt_check_all(q, bs, c) != SIZE_MAX) fail_msg("ra_realloc(%zu -> %zu) lost content", bs, bs + 1);
    q[bs] = 0xee;
    uint8_t *r = ra_realloc(q, bs); /* back down */
    check_block("ra_realloc", r, bs);
    if (rt_check_all(r, bs, c) != SIZE_MAX) fail_msg("ra_realloc(%zu -> %zu) lost content", bs + 1, bs);
    uint8_t *s = ra_realloc(r, bs - 1 > 0 ? bs - 1 : 1);
    check_block("ra_realloc", s, bs - 1 > 0 ? bs - 1 : 1);
    if (rt_check_all(s, bs - 1, c) != SIZE_MAX) fail_msg("ra_realloc(%zu -> %zu) lost content", bs, bs - 1);
    ra_free(s);
  }
  /* large -> huge -> large, content kept */
  size_t n = RA_LARGE_MAX;
  uint8_t *p = ra_malloc(n);
  check_block("ra_malloc", p, n);
  rt_fill_all(p, n, 77);
  uint8_t *q = ra_realloc(p, n + 1);
  check_block("ra_realloc", q, n + 1);
  if (rt_check_all(q, n, 77) != SIZE_MAX) fail_msg("large -> huge realloc lost content");
  uint8_t *r = ra_realloc(q, n);
  check_block("ra_realloc", r, n);
  if (rt_check_all(r, n, 77) != SIZE_MAX) fail_msg("huge -> large realloc lost content");
  ra_free(r);
  expect_valid_heap();
}

/* ---- SIZE_MAX and near it ---------------------------------------------------------------------- */

/* Sizes no allocation can serve: above the 47-bit address space (ramalloc refuses anything over
 * 2^46 bytes before asking the OS), up to SIZE_MAX. */
static size_t impossible_size(size_t k) {
  const size_t base[] = {SIZE_MAX,          SIZE_MAX - 1,       SIZE_MAX - 15,       SIZE_MAX - 16,
                         SIZE_MAX - 4095,   SIZE_MAX - 4096,    SIZE_MAX - RA_CHUNK_SIZE,
                         SIZE_MAX / 2 + 1,  (size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX - 4095,
                         (size_t)PTRDIFF_MAX + 1, (size_t)1 << 62, (size_t)1 << 48, ((size_t)1 << 47) + 1,
                         (size_t)1 << 47,   SIZE_MAX - RA_LARGE_MAX};
  return k < sizeof base / sizeof base[0] ? hidden(base[k]) : 0;
}

typedef struct snap_s {
  size_t committed, live_blocks;
} snap_t;

static snap_t snap(void) {
  ra_stats_t st;
  ra_stats_get(&st);
  return (snap_t){st.committed, st.live_blocks};
}

static void expect_unchanged(snap_t before, const char *what, size_t n) {
  snap_t now = snap();
  if (now.committed != before.committed)
    fail_msg("%s(%zu) failed but committed went from %zu to %zu", what, n, before.committed, now.committed);
  if (now.live_blocks != before.live_blocks)
    fail_msg("%s(%zu) failed but live blocks went from %zu to %zu", what, n, before.live_blocks, now.live_blocks);
}

static void expect_enomem(void *p, const char *what, size_t n) {
  if (p != NULL) fail_msg("%s(%zu) returned %p, want NULL", what, n, p);
  if (errno != ENOMEM) fail_msg("%s(%zu): errno %d, want ENOMEM", what, n, errno);
}

static void test_size_max_and_near(void **state) {
  (void)state;
  /* Nothing free left to purge: a failing call may run a purge pass, which must not be what
   * changes the books between two snapshots. */
  ra_collect(true);
  uint8_t *keep = ra_malloc(1000); /* realloc target; its content must survive every failure */
  check_block("ra_malloc", keep, 1000);
  rt_fill_all(keep, 1000, 42);
  uint8_t *keep_huge = ra_malloc(3 * RA_MiB);
  check_block("ra_malloc", keep_huge, 3 * RA_MiB);
  rt_fill(keep_huge, 3 * RA_MiB, 43);
  for (size_t k = 0; impossible_size(k) != 0; k++) {
    size_t n = impossible_size(k);
    snap_t s0 = snap();
    errno = 0;
    expect_enomem(ra_malloc(n), "ra_malloc", n);
    errno = 0;
    expect_enomem(ra_calloc(1, n), "ra_calloc(1, n)", n);
    errno = 0;
    expect_enomem(ra_calloc(n, 1), "ra_calloc(n, 1)", n);
    errno = 0;
    expect_enomem(ra_realloc(NULL, n), "ra_realloc(NULL, n)", n);
    errno = 0;
    expect_enomem(ra_realloc(keep, n), "ra_realloc(small, n)", n);
    errno = 0;
    expect_enomem(ra_realloc(keep_huge, n), "ra_realloc(huge, n)", n);
    const size_t aligns[] = {1, 16, 64, 4096, RA_SLICE_SIZE, RA_CHUNK_SIZE, RA_GiB};
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
      errno = 0;
      expect_enomem(ra_aligned_alloc(aligns[a], n), "ra_aligned_alloc", n);
      void *out = &out;
      int rc = ra_posix_memalign(&out, aligns[a] < sizeof(void *) ? sizeof(void *) : aligns[a], n);
      if (rc != ENOMEM) fail_msg("ra_posix_memalign(%zu, %zu) returned %d, want ENOMEM", aligns[a], n, rc);
      if (out != &out) fail_msg("ra_posix_memalign(%zu, %zu) changed *out on failure", aligns[a], n);
    }
    expect_unchanged(s0, "the allocation functions", n);
    if (rt_check_all(keep, 1000, 42) != SIZE_MAX) fail_msg("a failed realloc to %zu changed the block", n);
    if (rt_check(keep_huge, 3 * RA_MiB, 43) != SIZE_MAX) fail_msg("a failed huge realloc to %zu changed the block", n);
    if (ra_usable_size(keep) < 1000 || ra_usable_size(keep_huge) < 3 * RA_MiB)
      fail_msg("a failed realloc to %zu shrank the block", n);
  }
  ra_free(keep);
  ra_free(keep_huge);
  /* the allocator works afterwards */
  void *p = ra_malloc(24);
  check_block("ra_malloc", p, 24);
  ra_free(p);
  expect_valid_heap();
}

/* ---- calloc overflow --------------------------------------------------------------------------- */

static void test_calloc_overflow(void **state) {
  (void)state;
  const size_t M = SIZE_MAX;
  const struct {
    size_t c, n;
  } overflow[] = {
      {M, 2},          {2, M},          {M, M},          {(size_t)1 << 32, (size_t)1 << 32},
      {M / 2 + 1, 2},  {2, M / 2 + 1},  {M / 3 + 1, 3},  {(size_t)1 << 33, (size_t)1 << 31},
      {M / 16 + 1, 16}, {16, M / 16 + 1}, {65537, M / 65536}, {M / 4096 + 1, 4096},
  };
  for (size_t k = 0; k < sizeof overflow / sizeof overflow[0]; k++) {
    size_t c = hidden(overflow[k].c), n = hidden(overflow[k].n);
    size_t prod;
    assert_true(__builtin_mul_overflow(c, n, &prod)); /* the table is what it claims */
    snap_t s0 = snap();
    errno = 0;
    void *p = ra_calloc(c, n);
    if (p != NULL || errno != ENOMEM) fail_msg("ra_calloc(%zu, %zu) overflows: got %p errno %d", c, n, p, errno);
    expect_unchanged(s0, "ra_calloc", c);
  }
  /* products that do not overflow but cannot be served either */
  const struct {
    size_t c, n;
  } too_big[] = {{M / 16, 16}, {16, M / 16}, {(size_t)1 << 31, (size_t)1 << 32}, {M, 1}, {1, M}};
  for (size_t k = 0; k < sizeof too_big / sizeof too_big[0]; k++) {
    size_t c = hidden(too_big[k].c), n = hidden(too_big[k].n);
    errno = 0;
    void *p = ra_calloc(c, n);
    if (p != NULL || errno != ENOMEM) fail_msg("ra_calloc(%zu, %zu): got %p errno %d, want ENOMEM", c, n, p, errno);
  }
  /* a zero factor is a zero-size request: a unique freeable block, whatever the other factor */
  const size_t others[] = {0, 1, M, M / 2 + 1, (size_t)1 << 32};
  void *z[10];
  int nz = 0;
  for (size_t k = 0; k < sizeof others / sizeof others[0]; k++) {
    z[nz] = ra_calloc(0, hidden(others[k]));
    check_block("ra_calloc(0, n)", z[nz], 0);
    nz++;
    z[nz] = ra_calloc(hidden(others[k]), 0);
    check_block("ra_calloc(n, 0)", z[nz], 0);
    nz++;
  }
  for (int i = 0; i < nz; i++)
    for (int j = 0; j < i; j++)
      if (z[i] == z[j]) fail_msg("two live zero-size calloc blocks share the address %p", z[i]);
  for (int i = 0; i < nz; i++) ra_free(z[i]);
  /* products right at a boundary that fit: zeroed and usable */
  const struct {
    size_t c, n;
  } fit[] = {{RA_SMALL_MAX / 8, 8}, {3, RA_LARGE_MAX / 3}, {RA_LARGE_MAX + 1, 1}, {4097, 1025}};
  for (size_t k = 0; k < sizeof fit / sizeof fit[0]; k++) {
    size_t c = hidden(fit[k].c), n = hidden(fit[k].n);
    uint8_t *p = ra_calloc(c, n);
    check_block("ra_calloc", p, c * n);
    for (size_t i = 0; i < c * n; i += 509)
      if (p[i] != 0) fail_msg("ra_calloc(%zu, %zu): byte %zu not zero", c, n, i);
    if (p[c * n - 1] != 0) fail_msg("ra_calloc(%zu, %zu): last byte not zero", c, n);
    ra_free(p);
  }
  expect_valid_heap();
}

/* ---- alignments up to the arena size and past it ----------------------------------------------- */

static void check_aligned_block(void *p, size_t align, size_t n) {
  if (p == NULL) fail_msg("alignment %zu, size %zu: NULL (errno %d)", align, n, errno);
  if (!rt_is_aligned(p, align < RA_ALIGN ? RA_ALIGN : align)) fail_msg("alignment %zu, size %zu: got %p", align, n, p);
  if (!ra_owns(p)) fail_msg("alignment %zu, size %zu: %p not owned", align, n, p);
  if (ra_usable_size(p) < n) fail_msg("alignment %zu, size %zu: usable %zu", align, n, ra_usable_size(p));
  uint8_t *b = p;
  if (n > 0) {
    b[0] = 0x11;
    b[n - 1] = 0x22;
  }
}

/* Every power of two from 1 to the arena reservation (1 GiB), with sizes around the alignment.
 * Large alignments cost address space only: nothing but the first and last byte is touched. */
static void test_alignments_up_to_arena(void **state) {
  (void)state;
  size_t arena = (size_t)_ra_option(RA_OPT_ARENA_RESERVE);
  for (size_t align = 1; align <= arena; align *= 2) {
    const size_t sizes[] = {0, 1, align / 2, align - 1, align, align + 1, 100};
    void *live[16];
    size_t nlive = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      size_t n = sizes[k];
      if (align >= 64 * RA_MiB && n > 100) continue; /* keep the address space used modest */
      void *p = ra_aligned_alloc(align, n);
      check_aligned_block(p, align, n);
      live[nlive++] = p;
      if (align >= sizeof(void *)) {
        void *m = NULL;
        int rc = ra_posix_memalign(&m, align, n);
        if (rc != 0) fail_msg("ra_posix_memalign(%zu, %zu) returned %d", align, n, rc);
        check_aligned_block(m, align, n);
        live[nlive++] = m;
      }
    }
    for (size_t i = 0; i < nlive; i++)
      for (size_t j = 0; j < i; j++)
        if (live[i] == live[j]) fail_msg("alignment %zu: two live blocks at %p", align, live[i]);
    for (size_t i = 0; i < nlive; i++) ra_free(live[i]);
  }
  expect_valid_heap();
}

/* Past the arena size an alignment is served from an arena reserved for the block, while the
 * address space allows; an alignment the 47-bit address space cannot hold fails with ENOMEM and
 * leaves nothing committed. Non-powers of two are EINVAL. */
static void test_alignments_past_arena(void **state) {
  (void)state;
  size_t arena = (size_t)_ra_option(RA_OPT_ARENA_RESERVE);
  const size_t servable[] = {2 * arena, 4 * arena};
  for (size_t k = 0; k < 2; k++) {
    size_t align = servable[k];
    errno = 0;
    void *p = ra_aligned_alloc(align, 4096);
    if (p == NULL) {
      if (errno != ENOMEM) fail_msg("ra_aligned_alloc(%zu, 4096): NULL with errno %d", align, errno);
      continue; /* address space short (a limited environment): failing cleanly is what counts */
    }
    check_aligned_block(p, align, 4096);
    ra_free(p);
  }
  const size_t impossible[] = {(size_t)1 << 47, (size_t)1 << 48, (size_t)1 << 62, (size_t)1 << 63};
  for (size_t k = 0; k < sizeof impossible / sizeof impossible[0]; k++) {
    size_t align = hidden(impossible[k]);
    const size_t sizes[] = {0, 1, 4096, RA_LARGE_MAX + 1};
    for (size_t s = 0; s < 4; s++) {
      snap_t s0 = snap();
      errno = 0;
      void *p = ra_aligned_alloc(align, sizes[s]);
      if (p != NULL || errno != ENOMEM)
        fail_msg("ra_aligned_alloc(2^%d, %zu): got %p errno %d, want NULL/ENOMEM", __builtin_ctzll(align), sizes[s], p,
                 errno);
      void *out = &out;
      int rc = ra_posix_memalign(&out, align, sizes[s]);
      if (rc != ENOMEM || out != &out) fail_msg("ra_posix_memalign(2^%d, %zu): %d", __builtin_ctzll(align), sizes[s], rc);
      expect_unchanged(s0, "ra_aligned_alloc", align);
    }
  }
  const size_t not_pow2[] = {3, 24, 48, 3 * RA_MiB, RA_GiB + 16, SIZE_MAX};
  for (size_t k = 0; k < sizeof not_pow2 / sizeof not_pow2[0]; k++) {
    errno = 0;
    void *p = ra_aligned_alloc(hidden(not_pow2[k]), 64);
    if (p != NULL || errno != EINVAL) fail_msg("ra_aligned_alloc(%zu, 64): got %p errno %d, want EINVAL", not_pow2[k], p, errno);
  }
  void *p = ra_malloc(16);
  check_block("ra_malloc", p, 16);
  ra_free(p);
  expect_valid_heap();
}

/* ---- realloc to 0 and NULL --------------------------------------------------------------------- */

/* ra_realloc(p, 0) frees p and returns a fresh minimal block (include/ramalloc.h): never NULL on
 * success, so NULL from realloc always means failure. */
static void test_realloc_to_zero(void **state) {
  (void)state;
  const size_t sizes[] = {1, 100, RA_SMALL_MAX + 1, 300 * RA_KiB, 3 * RA_MiB};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    ra_stats_t st0, st1;
    ra_stats_get(&st0);
    void *p = ra_malloc(sizes[k]);
    check_block("ra_malloc", p, sizes[k]);
    errno = 0;
    void *q = ra_realloc(p, 0);
    check_block("ra_realloc(p, 0)", q, 0);
    ra_stats_get(&st1);
    if (st1.live_blocks != st0.live_blocks + 1)
      fail_msg("ra_realloc(p of %zu, 0): live blocks %zu -> %zu, want one more (p freed, one new)", sizes[k],
               st0.live_blocks, st1.live_blocks);
    void *r = ra_realloc(q, 50); /* the result is an ordinary block */
    check_block("ra_realloc", r, 50);
    ra_free(r);
  }
  /* aligned blocks too */
  void *a = ra_aligned_alloc(4096, 100);
  check_aligned_block(a, 4096, 100);
  void *q = ra_realloc(a, 0);
  check_block("ra_realloc(aligned, 0)", q, 0);
  ra_free(q);
  /* realloc(NULL, 0) is malloc(0) */
  void *z = ra_realloc(NULL, 0);
  check_block("ra_realloc(NULL, 0)", z, 0);
  void *z2 = ra_realloc(NULL, 0);
  check_block("ra_realloc(NULL, 0)", z2, 0);
  assert_ptr_not_equal(z, z2);
  ra_free(z);
  ra_free(z2);
  expect_valid_heap();
}

static void test_null_and_zero(void **state) {
  (void)state;
  assert_int_equal(ra_usable_size(NULL), 0);
  assert_false(ra_owns(NULL));
  ra_free(NULL); /* ignored */
  void *p = ra_realloc(NULL, 40);
  check_block("ra_realloc(NULL, 40)", p, 40);
  ra_free(p);
  /* zero-size requests: unique, freeable, usable size within the smallest class */
  void *z[6] = {ra_malloc(0), ra_calloc(0, 0), ra_aligned_alloc(16, 0), ra_aligned_alloc(4096, 0),
                ra_aligned_alloc(RA_CHUNK_SIZE, 0), NULL};
  assert_int_equal(ra_posix_memalign(&z[5], 64, 0), 0);
  for (int i = 0; i < 6; i++) {
    check_block("zero-size", z[i], 0);
    for (int j = 0; j < i; j++) assert_ptr_not_equal(z[i], z[j]);
  }
  assert_true(ra_usable_size(z[0]) <= RA_ALIGN);
  for (int i = 0; i < 6; i++) ra_free(z[i]);
  expect_valid_heap();
}

/* ---- free's block index --------------------------------------------------------------------------- */

/* A page of class c as free's tests see it: block size, multiplier, no flag, nothing carved. */
static void block_test_page(ra_page_t *page, size_t c) {
  memset(page, 0, sizeof *page);
  page->block_size = _ra_class_size[c];
  _ra_page_set_divisor(page, page->block_size);
}

/* free takes a pointer at offset off of a page's head slice when off times div_mul (mod 2^64) is
 * below the limit of the page's capacity (_ra_block_mul, _ra_block_lim): for every class, every
 * offset in its whole span and capacities 0, 1, half and full, exactly when off is a whole number
 * of blocks and the block's index is below the capacity (no interior pointer, nothing past the
 * carved part is taken). The multiplier is floor(2^64 / block size) + 1. Sized delete's table of
 * classes by 16 bytes agrees with _ra_size_class for every size it covers. */
static void test_block_index_every_class_and_offset(void **state) {
  (void)state;
  for (size_t c = 0; c < RA_CLASS_COUNT; c++) {
    ra_page_t page;
    block_test_page(&page, c);
    uint32_t bs = page.block_size;
    unsigned __int128 want_mul = (((unsigned __int128)1 << 64) / bs) + 1;
    if (page.div_mul != (uint64_t)want_mul || want_mul >> 64 != 0)
      fail_msg("class %zu (%u B): div_mul %llu", c, bs, (unsigned long long)page.div_mul);
    uint64_t step = _ra_block_step(&page);
    if (step < 1 || step > bs) fail_msg("class %zu (%u B): step %llu", c, bs, (unsigned long long)step);
    uint32_t span = (uint32_t)(_ra_page_class_slices(c) * RA_SLICE_SIZE);
    uint32_t most = span / bs; /* blocks a page of the class can carve */
    const uint32_t caps[] = {0, 1, most / 2, most};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
      uint64_t lim = _ra_block_lim(&page, caps[k]);
      for (uint32_t off = 0; off < span; off++) {
        bool taken = _ra_block_mul(&page, off) < lim, want = off % bs == 0 && off / bs < caps[k];
        if (taken != want)
          fail_msg("class %zu (%u B), capacity %u: offset %u %s", c, bs, caps[k], off, taken ? "taken" : "refused");
      }
    }
  }
  for (size_t size = 0; size <= RA_DIRECT_MAX; size++) {
    size_t want = _ra_size_class(size == 0 ? 1 : size);
    unsigned got = _ra_direct_class[size];
    if (got != want) fail_msg("size %zu: direct class %u, _ra_size_class %zu", size, got, want);
  }
}

/* free's fast paths take the product from the pointer itself (_ra_block_mul_at, written out in
 * assembly on x86-64) and compare it with free_lim: for every class, every offset of a head slice,
 * in slices at several places of a chunk, the product is _ra_block_mul's of the offset, and with
 * the capacity set to 0, 1, half and full (_ra_page_set_capacity, which sets free_lim) the compare
 * takes the pointer exactly when plain division says it starts a block below the capacity. */
static void test_block_index_at_matches(void **state) {
  (void)state;
  const uintptr_t chunk = (uintptr_t)1 << 40; /* only the address's bits are used, never read */
  const size_t slices[] = {1, 2, 37, RA_SLICES - 1};
  for (size_t c = 0; c < RA_CLASS_COUNT; c++) {
    ra_page_t page;
    block_test_page(&page, c);
    uint32_t bs = page.block_size;
    uint32_t most = (uint32_t)(_ra_page_class_slices(c) * RA_SLICE_SIZE / bs);
    const uint32_t caps[] = {0, 1, most / 2, most};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
      _ra_page_set_capacity(&page, caps[k]);
      if (page.free_lim != _ra_block_lim(&page, caps[k]))
        fail_msg("class %zu (%u B), capacity %u: free_lim not the capacity's limit", c, bs, caps[k]);
      for (size_t s = 0; s < sizeof slices / sizeof slices[0]; s++) {
        uintptr_t start = chunk + slices[s] * RA_SLICE_SIZE;
        for (uint32_t off = 0; off < RA_SLICE_SIZE; off++) {
          uint64_t at = _ra_block_mul_at(&page, (const void *)(start + off));
          if (at != _ra_block_mul(&page, off))
            fail_msg("class %zu (%u B), slice %zu, offset %u: product %llu, not %llu", c, bs, slices[s], off,
                     (unsigned long long)at, (unsigned long long)_ra_block_mul(&page, off));
          bool taken = at < page.free_lim, want = off % bs == 0 && off / bs < caps[k];
          if (taken != want)
            fail_msg("class %zu (%u B), capacity %u, slice %zu: offset %u %s", c, bs, caps[k], slices[s], off,
                     taken ? "taken" : "refused");
        }
      }
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_class_boundaries_all_entry_points),
      cmocka_unit_test(test_kind_boundaries),
      cmocka_unit_test(test_realloc_across_boundaries),
      cmocka_unit_test(test_size_max_and_near),
      cmocka_unit_test(test_calloc_overflow),
      cmocka_unit_test(test_alignments_up_to_arena),
      cmocka_unit_test(test_alignments_past_arena),
      cmocka_unit_test(test_realloc_to_zero),
      cmocka_unit_test(test_null_and_zero),
      cmocka_unit_test(test_block_index_every_class_and_offset),
      cmocka_unit_test(test_block_index_at_matches),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
