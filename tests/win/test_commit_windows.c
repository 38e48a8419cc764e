/* Commit charge on Windows: what ramalloc counts as committed (ra_stats_get) against what Windows
 * reports, through a workload of small, medium, large and huge blocks that is then freed and
 * purged.
 *
 * Two checks at every step:
 *  - exact: the bytes VirtualQuery reports MEM_COMMIT inside ramalloc's arenas equal ramalloc's
 *    committed count, to the byte (commit only what is used; decommit gives it back);
 *  - process-wide: the process's committed bytes rise and fall with ramalloc's count, within a
 *    small constant (other allocations: cmocka, the C runtime). On Windows that is PrivateUsage
 *    from GetProcessMemoryInfo. wine has no commit charge: its GetProcessMemoryInfo fills only
 *    PROCESS_MEMORY_COUNTERS (cb = 72, no PrivateUsage), and its PagefileUsage (and the PrivateUsage
 *    of NtQueryInformationProcess) is resident anonymous memory, where committed but untouched pages
 *    count nothing. Under wine the test therefore first touches every committed page of the arenas
 *    (reads a byte and writes it back), which makes resident equal committed; it also prints what
 *    the resident figure was before that touch.
 * And where the commit is visible page by page: a fresh medium page commits only the slices its
 * carved blocks reach, the rest of the span and of the arena stays MEM_RESERVE and faults when
 * touched. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"
#include "win_test.h"

#include <psapi.h>

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

/* ---- measuring ---------------------------------------------------------------------------------- */

static bool os_has_commit_charge; /* PrivateUsage is available (Windows), not wine */

static size_t process_committed(void) {
  PROCESS_MEMORY_COUNTERS_EX c;
  memset(&c, 0, sizeof c);
  c.cb = sizeof c;
  c.PrivateUsage = (SIZE_T)-1;
  if (!GetProcessMemoryInfo(GetCurrentProcess(), (PROCESS_MEMORY_COUNTERS *)&c, sizeof c)) return 0;
  os_has_commit_charge = c.cb == sizeof c && c.PrivateUsage != (SIZE_T)-1;
  return os_has_commit_charge ? c.PrivateUsage : c.PagefileUsage;
}

/* Bytes VirtualQuery reports committed in ramalloc's arenas; with touch, each committed
 * read-write page gets one byte read and written back first. */
static size_t arenas_committed(bool touch) {
  size_t total = 0;
  for (size_t i = 0; i < _ra_arena_count(); i++) {
    ra_arena_t *a = _ra_arena_at(i);
    uint8_t *p = a->base, *end = a->base + a->size;
    while (p < end) {
      wt_region_t r = wt_query(p);
      assert_true(r.size > 0);
      uint8_t *rend = r.base + r.size < end ? r.base + r.size : end;
      if (r.state == MEM_COMMIT) {
        total += (size_t)(rend - p);
        if (touch && r.protect == PAGE_READWRITE)
          for (volatile uint8_t *q = p; q < rend; q += 4096) *q = *q;
      }
      p = rend;
    }
  }
  return total;
}

typedef struct snap_s {
  size_t ra;       /* ra_stats committed */
  size_t vq;       /* VirtualQuery MEM_COMMIT in the arenas */
  size_t proc_raw; /* process figure before the touch */
  size_t proc;     /* process figure (after the touch under wine) */
  size_t chunks;
} snap_t;

static snap_t base;

static snap_t snap(void) {
  snap_t s;
  ra_stats_t st;
  ra_stats_get(&st);
  s.ra = st.committed;
  s.chunks = st.chunks_in_use;
  s.proc_raw = process_committed();
  s.vq = arenas_committed(!os_has_commit_charge);
  s.proc = process_committed();
  return s;
}

static double mib(long long v) { return (double)v / (double)MiB; }

/* The tolerance between the two deltas: allocations outside ramalloc (cmocka's messages, the C
 * runtime's stdio buffers) and, under wine, the page tables of the touched memory. */
#define PROC_TOLERANCE (2 * MiB)

static void check(const char *step) {
  snap_t s = snap();
  long long d_ra = (long long)s.ra - (long long)base.ra;
  long long d_proc = (long long)s.proc - (long long)base.proc;
  long long d_raw = (long long)s.proc_raw - (long long)base.proc_raw;
  print_message("%-34s ra committed %9.2f MiB (%+9.2f) | VirtualQuery %9.2f MiB | %s %+9.2f MiB "
                "(untouched %+9.2f) | diff %+6.2f MiB | chunks %zu\n",
                step, mib((long long)s.ra), mib(d_ra), mib((long long)s.vq),
                os_has_commit_charge ? "PrivateUsage" : "wine resident", mib(d_proc), mib(d_raw),
                mib(d_proc - d_ra), s.chunks);
  if (s.vq != s.ra) fail_msg("%s: VirtualQuery finds %zu bytes committed in the arenas, ramalloc counts %zu", step, s.vq, s.ra);
  long long diff = d_proc - d_ra;
  if (diff < -(long long)PROC_TOLERANCE || diff > (long long)PROC_TOLERANCE)
    fail_msg("%s: the process's committed bytes moved by %lld, ramalloc's by %lld", step, d_proc, d_ra);
}

/* ---- workload ----------------------------------------------------------------------------------- */

enum { MAXB = 40000 };
static void *blk[MAXB];
static size_t blk_size[MAXB];
static size_t nblk;

static uint64_t rng = 0x243F6A8885A308D3ull;
static size_t rnd(size_t lo, size_t hi) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return lo + (size_t)(rng % (hi - lo + 1));
}

static void alloc_until(size_t bytes, size_t lo, size_t hi) {
  size_t got = 0;
  while (got < bytes && nblk < MAXB) {
    size_t n = rnd(lo, hi);
    void *p = ra_malloc(n);
    assert_non_null(p);
    memset(p, (int)(nblk & 0xff) | 1, n);
    blk[nblk] = p;
    blk_size[nblk++] = n;
    got += n;
  }
}

static void free_where(bool (*pred)(size_t i, size_t size)) {
  for (size_t i = 0; i < nblk; i++)
    if (blk[i] != NULL && pred(i, blk_size[i])) {
      ra_free(blk[i]);
      blk[i] = NULL;
    }
}

static bool is_small(size_t i, size_t n) { (void)i; return n <= 8 * KiB; }
static bool is_odd(size_t i, size_t n) { (void)n; return i & 1; }
static bool any(size_t i, size_t n) { (void)i; (void)n; return true; }

static void test_commit_follows_ramalloc(void **state) {
  (void)state;
  /* warm up: the first arena, this thread's heap, cmocka's own buffers */
  void *w = ra_malloc(100);
  ra_free(w);
  ra_collect(true);
  print_message("process committed bytes from %s\n",
                (process_committed(), os_has_commit_charge) ? "GetProcessMemoryInfo PrivateUsage"
                                                            : "wine: PagefileUsage = resident anonymous memory");
  base = snap();
  check("start");
  alloc_until(96 * MiB, 16, 8 * KiB);
  check("+96 MiB small blocks (16 B-8 KiB)");
  alloc_until(64 * MiB, 9 * KiB, 1 * MiB);
  check("+64 MiB medium/large (9 KiB-1 MiB)");
  alloc_until(48 * MiB, 3 * MiB, 16 * MiB);
  check("+48 MiB huge (3-16 MiB)");
  free_where(is_odd);
  check("every other block freed");
  ra_collect(true);
  check("ra_collect(true)");
  free_where(is_small);
  ra_collect(true);
  check("small blocks freed, collected");
  free_where(any);
  check("all freed");
  ra_collect(true);
  check("ra_collect(true)");
  nblk = 0;
  alloc_until(32 * MiB, 16, 2 * MiB);
  check("+32 MiB again (reuse)");
  free_where(any);
  ra_collect(true);
  check("all freed, collected");
  nblk = 0;
}

/* ---- commit is per slice, and reserved memory faults ---------------------------------------------- */

static void test_commit_per_slice(void **state) {
  (void)state;
  /* 48 KiB blocks: a medium page of 8 slices; the first carve covers 4 blocks = 192 KiB, i.e. 3 of
   * the page's 8 slices. */
  uint8_t *b = ra_malloc(48 * KiB);
  assert_non_null(b);
  ra_chunk_t *c = _ra_chunk_of(b);
  ra_page_t *pg = _ra_page_of(c, b);
  uint8_t *start = _ra_page_start(c, pg);
  size_t span = (size_t)pg->slice_count * RA_SLICE_SIZE;
  size_t carved = (size_t)pg->capacity * pg->block_size;
  size_t want = (carved + RA_SLICE_SIZE - 1) / RA_SLICE_SIZE * RA_SLICE_SIZE;
  size_t got = wt_committed_in(start, span);
  print_message("medium page: %zu slices, %u blocks of %u carved, %zu KiB committed of %zu KiB\n",
                (size_t)pg->slice_count, pg->capacity, pg->block_size, got / KiB, span / KiB);
  if (!pg->dirty && got != want) fail_msg("page committed %zu bytes, its carved blocks reach %zu", got, want);
  assert_true(got < span);
  /* the first uncommitted slice of the span is reserved and faults */
  uint8_t *hole = start + got;
  assert_int_equal(wt_query(hole).state, MEM_RESERVE);
  assert_true(wt_read_faults(hole, NULL));
  assert_true(wt_write_faults(hole + RA_SLICE_SIZE - 1, 1));
  /* the header slice of the chunk is committed; the last slot of the arena is only reserved */
  assert_int_equal(wt_query(c).state, MEM_COMMIT);
  ra_arena_t *a = c->arena;
  uint8_t *last = a->base + a->size - 4096;
  if (wt_query(last).state == MEM_RESERVE) assert_true(wt_read_faults(last, NULL));
  ra_free(b);

  /* a huge block: committed while live; once freed, kept committed for reuse until a purge
   * (here ra_collect), then MEM_RESERVE again */
  size_t n = 12 * MiB;
  uint8_t *h = ra_malloc(n);
  assert_non_null(h);
  assert_int_equal(wt_committed_in(h, n), n);
  h[0] = 1;
  h[n - 1] = 2;
  ra_free(h);
  assert_int_equal(wt_committed_in(h, n), n);
  ra_collect(true);
  assert_int_equal(wt_committed_in(h, n), 0);
  assert_int_equal(wt_query(h).state, MEM_RESERVE);
  assert_true(wt_read_faults(h + n / 2, NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_commit_per_slice),
      cmocka_unit_test(test_commit_follows_ramalloc),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
