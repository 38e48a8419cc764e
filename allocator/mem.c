/* The accounted OS calls: every call that reserves, commits, decommits, resets, protects or
 * releases memory goes through here and is counted (_ra_counters). A commit over RAMALLOC_LIMIT
 * fails (ENOMEM) and changes nothing: what to give back first, and whether to try again, is the
 * callers' business (purge.c: _ra_purge_for_retry, from alloc.c). Also here: the same calls on a
 * mask of a chunk's slices, one call per run of set bits (_ra_slice_runs), keeping the chunk
 * header's committed, dirty and noaccess bitmaps in step with what the OS was told. */
#include <errno.h>

#include "internal.h"

ra_counters_t _ra_counters;

static void counter_add(_Atomic(size_t) *c, size_t n) { atomic_fetch_add_explicit(c, n, memory_order_relaxed); }

/* Count `size` more bytes as committed, unless that passes RAMALLOC_LIMIT. The check and the count
 * are one compare-and-swap, so threads cannot overshoot together. */
static bool commit_charge(size_t size) {
  size_t limit = (size_t)_ra_option(RA_OPT_LIMIT);
  if (limit == 0) {
    atomic_fetch_add_explicit(&_ra_counters.committed, size, memory_order_relaxed);
    return true;
  }
  size_t cur = atomic_load_explicit(&_ra_counters.committed, memory_order_relaxed);
  while (cur + size <= limit) {
    if (atomic_compare_exchange_weak_explicit(&_ra_counters.committed, &cur, cur + size, memory_order_relaxed,
                                              memory_order_relaxed))
      return true;
  }
  return false;
}

int _ra_mem_reserve(size_t size, size_t align, void **base) {
  int err = _ra_os_reserve(size, align, base);
  counter_add(&_ra_counters.reserve_calls, 1);
  if (err == RA_OS_OK) counter_add(&_ra_counters.reserved, size);
  return err;
}

void _ra_mem_release(void *base, size_t size) {
  _ra_os_release(base, size);
  counter_add(&_ra_counters.release_calls, 1);
}

int _ra_mem_commit(void *addr, size_t size) {
  if (!commit_charge(size)) {
    counter_add(&_ra_counters.commit_failures, 1);
    return ENOMEM;
  }
  bool zero;
  int err = _ra_os_commit(addr, size, &zero);
  counter_add(&_ra_counters.commit_calls, 1);
  if (err != RA_OS_OK) {
    counter_add(&_ra_counters.commit_failures, 1);
    atomic_fetch_sub_explicit(&_ra_counters.committed, size, memory_order_relaxed);
    return err;
  }
  size_t now = atomic_load_explicit(&_ra_counters.committed, memory_order_relaxed);
  size_t peak = atomic_load_explicit(&_ra_counters.committed_peak, memory_order_relaxed);
  while (now > peak && !atomic_compare_exchange_weak_explicit(&_ra_counters.committed_peak, &peak, now,
                                                              memory_order_relaxed, memory_order_relaxed)) {
  }
  return RA_OS_OK;
}

int _ra_mem_decommit(void *addr, size_t size) {
  int err = _ra_os_decommit(addr, size);
  counter_add(&_ra_counters.decommit_calls, 1);
  /* Even on failure the pages are no longer ours to use: count them as given back so the books
   * match what the allocator will touch. */
  atomic_fetch_sub_explicit(&_ra_counters.committed, size, memory_order_relaxed);
  return err;
}

int _ra_mem_protect(void *addr, size_t size, ra_prot_t prot) {
  counter_add(&_ra_counters.protect_calls, 1);
  return _ra_os_protect(addr, size, prot);
}

int _ra_mem_reset(void *addr, size_t size) {
  counter_add(&_ra_counters.reset_calls, 1);
  return _ra_os_reset(addr, size);
}

/* ---- The same on slices of a chunk (_ra_slice_runs: one OS call per run) -------------------------- */

static inline uint64_t slice_mask(size_t first, size_t count) {
  uint64_t m = count >= 64 ? ~0ULL : ((1ULL << count) - 1);
  return m << first;
}

static int run_commit(ra_chunk_t *c, size_t first, size_t count, void *arg) {
  (void)arg;
  int err = _ra_mem_commit((uint8_t *)c + first * RA_SLICE_SIZE, count * RA_SLICE_SIZE);
  if (err == RA_OS_OK) c->committed |= slice_mask(first, count);
  return err;
}

static int run_decommit(ra_chunk_t *c, size_t first, size_t count, void *arg) {
  (void)arg;
  _ra_mem_decommit((uint8_t *)c + first * RA_SLICE_SIZE, count * RA_SLICE_SIZE);
  return 0;
}

static int run_reset(ra_chunk_t *c, size_t first, size_t count, void *arg) {
  (void)arg;
  _ra_mem_reset((uint8_t *)c + first * RA_SLICE_SIZE, count * RA_SLICE_SIZE);
  return 0;
}

/* Commit the slices in `mask` (the caller leaves out those committed already); each run committed
 * is marked in c->committed. Stops at the first failure. */
int _ra_mem_commit_slices(ra_chunk_t *c, uint64_t mask) { return _ra_slice_runs(c, mask, run_commit, NULL); }

void _ra_mem_reset_slices(ra_chunk_t *c, uint64_t mask) { _ra_slice_runs(c, mask, run_reset, NULL); }

/* Runs made inaccessible and not lifted yet, about the number of mappings they add beyond one
 * (each splits its mapping in up to three). Past the cap freed blocks stay accessible, so that
 * the protection never brings a process near vm.max_map_count (65,530 by default). */
#define NOACCESS_RUNS_MAX 8192
static atomic_size_t noaccess_runs;

typedef struct protect_run_s {
  ra_prot_t prot;
  uint64_t done;
} protect_run_t;

static int run_protect(ra_chunk_t *c, size_t first, size_t count, void *arg) {
  protect_run_t *p = arg;
  bool lift = p->prot != RA_PROT_NONE;
  if ((lift || atomic_load_explicit(&noaccess_runs, memory_order_relaxed) < NOACCESS_RUNS_MAX) &&
      _ra_mem_protect((uint8_t *)c + first * RA_SLICE_SIZE, count * RA_SLICE_SIZE, p->prot) == RA_OS_OK) {
    p->done |= slice_mask(first, count);
    if (!lift) atomic_fetch_add_explicit(&noaccess_runs, 1, memory_order_relaxed);
    else if (atomic_load_explicit(&noaccess_runs, memory_order_relaxed) > 0)
      atomic_fetch_sub_explicit(&noaccess_runs, 1, memory_order_relaxed);
  }
  return 0;
}

/* Set the protection of the slices in `mask` (a run per call). Returns the slices changed. The
 * pages stay resident: lifting it later costs no page fault. */
uint64_t _ra_mem_protect_slices(ra_chunk_t *c, uint64_t mask, ra_prot_t prot) {
  protect_run_t p = {prot, 0};
  _ra_slice_runs(c, mask, run_protect, &p);
  return p.done;
}

/* Decommit the slices in `mask` (runs of them in one call each). The header's bitmaps are updated
 * first: when the mask includes slice 0, the header itself is gone afterwards. An inaccessible
 * slice loses its protection with its memory: in protect mode decommitted memory is inaccessible
 * anyway and commit makes it read-write; in overcommit mode (where commit does nothing) it is made
 * read-write again here. */
void _ra_mem_decommit_slices(ra_chunk_t *c, uint64_t mask) {
  uint64_t lift = c->noaccess & ((mask & 1) ? ~0ULL : mask); /* without its header, a slot forgets */
  c->noaccess &= ~lift;
  if (lift != 0 && _ra_os_commit_mode() == RA_COMMIT_OVERCOMMIT) _ra_mem_protect_slices(c, lift, RA_PROT_READWRITE);
  c->committed &= ~mask;
  c->dirty &= ~mask;
  _ra_slice_runs(c, mask, run_decommit, NULL);
}

/* Make the inaccessible slices among `mask` plain memory again (they are about to be reused). */
void _ra_mem_unprotect_slices(ra_chunk_t *c, uint64_t mask) {
  uint64_t m = c->noaccess & mask;
  if (m == 0) return;
  _ra_mem_protect_slices(c, m, RA_PROT_READWRITE);
  c->noaccess &= ~m;
}
