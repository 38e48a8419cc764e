/* Chunks: 4 MiB pieces of an arena, each owned by one heap. Slice 0 holds the header and the 65
 * page descriptors; slices 1..63 are handed out as spans (pages). Huge blocks own a run of whole
 * chunks with their own commit. Abandoned chunks (their thread exited with blocks still live) wait
 * on a list until a heap adopts them.
 *
 * Chunk layout (offsets from the chunk start):
 *   0            struct ra_chunk_s: owner, bitmaps of free and committed slices, huge fields
 *   offsetof(pages)  ra_page_t pages[65] (64 bytes each): slice i's descriptor
 *   RA_SLICE_SIZE    slice 1: first span, or the start of a huge block
 *   i * 64 KiB       slice i */
#include <string.h>

#include "internal.h"

static ra_lock_t abandoned_lock = RA_LOCK_INIT;
static ra_chunk_t *abandoned;          /* doubly linked through next/prev (abandoned_lock) */
static atomic_size_t abandoned_count;

static inline uint64_t slice_mask(size_t first, size_t count) {
  uint64_t m = count >= 64 ? ~0ULL : ((1ULL << count) - 1);
  return m << first;
}

/* ---- Chunk lists ---------------------------------------------------------------------------------- */

void _ra_chunk_list_push(ra_chunk_t **list, ra_chunk_t *c) {
  c->prev = NULL;
  c->next = *list;
  if (*list) (*list)->prev = c;
  *list = c;
}

void _ra_chunk_list_remove(ra_chunk_t **list, ra_chunk_t *c) {
  if (c->prev) c->prev->next = c->next;
  else *list = c->next;
  if (c->next) c->next->prev = c->prev;
  c->next = c->prev = NULL;
}

/* ---- The chunk lock ----------------------------------------------------------------------------- */

/* Held by the owner while it changes the slice bitmaps (span alloc/free, commit: slow paths only)
 * and by a thread purging the chunk's free slices, which try-locks it (only ra_collect(true) waits). */
void _ra_chunk_lock(ra_chunk_t *c) {
  while (atomic_exchange_explicit(&c->lock, 1, memory_order_acquire)) _ra_yield();
}
bool _ra_chunk_trylock(ra_chunk_t *c) { return !atomic_exchange_explicit(&c->lock, 1, memory_order_acquire); }
void _ra_chunk_unlock(ra_chunk_t *c) { atomic_store_explicit(&c->lock, 0, memory_order_release); }

/* ---- Invariants ------------------------------------------------------------------------------------- */

bool _ra_chunk_is_valid(const ra_chunk_t *c, const ra_heap_t *owner, bool walk) {
  if (c->magic != RA_CHUNK_MAGIC || c->kind != RA_CHUNK_PAGES || c->chunk_count != 1)
    return _ra_invariant_fail("chunk magic and kind", c);
  if (atomic_load_explicit(&c->heap, memory_order_relaxed) != owner) return _ra_invariant_fail("chunk owner", c);
  if (!_ra_chunk_map_has((uintptr_t)c)) return _ra_invariant_fail("chunk map bit", c);
  uint64_t free = c->free_slices, committed = c->committed;
  uint64_t purge = atomic_load_explicit(&c->purge_slices, memory_order_relaxed);
  if (free & 1) return _ra_invariant_fail("slice 0 never free", c);
  if ((uint32_t)__builtin_popcountll(free) != c->free_count)
    return _ra_invariant_fail("free_count == popcount(free_slices)", c);
  if (!(committed & 1)) return _ra_invariant_fail("the header slice is committed", c);
  if (purge & ~(free & committed)) return _ra_invariant_fail("purge_slices are free and committed", c);
  if (c->noaccess & ~(free & committed)) return _ra_invariant_fail("noaccess slices are free and committed", c);
  if (~free & ~1ULL & ~c->dirty) return _ra_invariant_fail("slices in a span are dirty", c);
  uint32_t heads = 0;
  for (size_t idx = 0; idx <= RA_SLICES;) {
    const ra_page_t *pg = &c->pages[idx];
    uint8_t flags = atomic_load_explicit(&pg->flags, memory_order_relaxed);
    if (idx == 0 || idx == RA_SLICES || ((free >> idx) & 1)) {
      if (!(flags & RA_PAGE_NOT_PAGE) || pg->slice_offset != 0)
        return _ra_invariant_fail("a free slice (or the header) is no page", pg);
      idx++;
      continue;
    }
    if ((flags & RA_PAGE_NOT_PAGE) || pg->slice_offset != 0 || pg->slice_count == 0 ||
        idx + pg->slice_count > RA_SLICES)
      return _ra_invariant_fail("used slice starts a span", pg);
    for (size_t j = 1; j < pg->slice_count; j++) {
      const ra_page_t *tail = &c->pages[idx + j];
      if (tail->slice_offset != j || ((free >> (idx + j)) & 1) ||
          !(atomic_load_explicit(&tail->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE))
        return _ra_invariant_fail("span slices point back to their head", tail);
    }
    if (pg->committed_slices > 0 && (~committed & slice_mask(idx, pg->committed_slices)))
      return _ra_invariant_fail("a page's committed slices are committed in the chunk", pg);
    if (!_ra_page_is_valid(pg, walk)) return false;
    /* Nobody owns the chunk (abandoned, or being swept): no heap may be notified. */
    if (owner == NULL && (atomic_load_explicit(&pg->xfree, memory_order_relaxed) & 3) != RA_DELAY_NEVER)
      return _ra_invariant_fail("an abandoned chunk's pages are in RA_DELAY_NEVER", pg);
    heads++;
    idx += pg->slice_count;
  }
  if (heads != c->pages_in_use) return _ra_invariant_fail("pages_in_use == span heads", c);
  return true;
}

bool _ra_chunk_check(ra_chunk_t *c, const ra_heap_t *owner, bool walk) {
  _ra_chunk_lock(c);
  bool ok = _ra_chunk_is_valid(c, owner, walk);
  _ra_chunk_unlock(c);
  return ok;
}

/* ---- Commit and purge ----------------------------------------------------------------------------- */

/* ---- One OS call per run of slices (_ra_slice_runs) ----------------------------------------------- */

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

/* Commit slices [first, first+count) of a chunk (those not committed yet). Takes the chunk lock. */
int _ra_chunk_commit_slices(ra_chunk_t *c, size_t first, size_t count) {
  _ra_chunk_lock(c);
  int err = _ra_slice_runs(c, slice_mask(first, count) & ~c->committed, run_commit, NULL);
  _ra_chunk_unlock(c);
  return err;
}

/* Give back the free slices that have waited `delay` ms (all of them with force). Caller holds the
 * chunk lock. Decommit, unless the purge mode is reset or committing whole chunks (where
 * decommitting single slices would split mappings): then reset. */
void _ra_chunk_purge_slices(ra_chunk_t *c, uint64_t now, uint64_t delay, bool force) {
  uint64_t cand = atomic_load_explicit(&c->purge_slices, memory_order_relaxed), mask = 0;
  for (uint64_t m = cand; m != 0; m &= m - 1) {
    size_t i = (size_t)__builtin_ctzll(m);
    if (force || now - c->slice_free_ms[i] >= delay) mask |= 1ULL << i;
  }
  if (mask == 0) return;
  atomic_store_explicit(&c->purge_slices, cand & ~mask, memory_order_relaxed);
  atomic_fetch_add_explicit(&_ra_counters.purged, (size_t)__builtin_popcountll(mask) * RA_SLICE_SIZE,
                            memory_order_relaxed);
  if (!_ra_purge_reset_only()) {
    _ra_chunk_decommit_slices(c, mask);
    return;
  }
  _ra_slice_runs(c, mask & ~1ULL, run_reset, NULL); /* the header (slice 0) stays */
}

/* ---- Freed large and huge blocks made inaccessible (RAMALLOC_PROTECT_FREED) ------------------------ */

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
static uint64_t slices_protect(ra_chunk_t *c, uint64_t mask, ra_prot_t prot) {
  protect_run_t p = {prot, 0};
  _ra_slice_runs(c, mask, run_protect, &p);
  return p.done;
}

/* Protection that is lifted again within RA_PROTECT_QUICK_MS of the free guarded a window too short
 * to be worth two mprotects (with a shootdown of the other threads' TLBs each time). A heap that
 * sees it doubles its backoff (up to RA_PROTECT_BACKOFF_MAX) and leaves that many of its next large
 * frees unprotected: a program churning large blocks has one free in 64 protected, a sample. The
 * skips lapse RA_PROTECT_BACKOFF_MS after the last quick reuse, and a slow one ends them: a program
 * whose freed blocks wait is fully protected. (glibc's mmap threshold rises after a free for the
 * same reason.) RAMALLOC_SECURE=1 protects every free. */
#define RA_PROTECT_QUICK_MS 20
#define RA_PROTECT_BACKOFF_MS 200
#define RA_PROTECT_BACKOFF_MAX 63

static void protect_feedback(ra_heap_t *heap, const ra_chunk_t *c, size_t idx) {
  if (_ra_option(RA_OPT_SECURE) != 0) return; /* every free protected, whatever it costs */
  uint64_t now = _ra_now_ms();
  if (now - c->slice_free_ms[idx] >= RA_PROTECT_QUICK_MS) {
    heap->protect_backoff = heap->protect_skip = 0;
    return;
  }
  unsigned b = heap->protect_backoff * 2u + 1;
  heap->protect_backoff = heap->protect_skip = (uint8_t)(b < RA_PROTECT_BACKOFF_MAX ? b : RA_PROTECT_BACKOFF_MAX);
  heap->protect_quick_ms = now;
}

/* Whether a heap's large free now is one the backoff skips (see protect_feedback). */
static bool protect_skipped(ra_heap_t *heap, uint64_t now) {
  if (heap == NULL || heap->protect_skip == 0) return false;
  if (now - heap->protect_quick_ms >= RA_PROTECT_BACKOFF_MS) {
    heap->protect_backoff = heap->protect_skip = 0;
    return false;
  }
  heap->protect_skip--;
  return true;
}

/* Make the inaccessible slices among `mask` plain memory again (they are about to be reused). */
static void noaccess_lift(ra_chunk_t *c, uint64_t mask) {
  uint64_t m = c->noaccess & mask;
  if (m == 0) return;
  slices_protect(c, m, RA_PROT_READWRITE);
  c->noaccess &= ~m;
}

/* Decommit the slices in `mask` (runs of them in one call each). The header's bitmaps are updated
 * first: when the mask includes slice 0, the header itself is gone afterwards. An inaccessible
 * slice loses its protection with its memory: in protect mode decommitted memory is inaccessible
 * anyway and commit makes it read-write; in overcommit mode (where commit does nothing) it is made
 * read-write again here. */
void _ra_chunk_decommit_slices(ra_chunk_t *c, uint64_t mask) {
  uint64_t lift = c->noaccess & ((mask & 1) ? ~0ULL : mask); /* without its header, a slot forgets */
  c->noaccess &= ~lift;
  if (lift != 0 && _ra_os_commit_mode() == RA_COMMIT_OVERCOMMIT) slices_protect(c, lift, RA_PROT_READWRITE);
  c->committed &= ~mask;
  c->dirty &= ~mask;
  _ra_slice_runs(c, mask, run_decommit, NULL);
}

/* ---- Page chunks ---------------------------------------------------------------------------------- */

static void chunk_reset_descriptors(ra_chunk_t *c, size_t first, size_t count) {
  for (size_t i = first; i < first + count; i++) {
    ra_page_t *pg = &c->pages[i];
    memset(pg, 0, sizeof *pg);
    atomic_store_explicit(&pg->flags, RA_PAGE_NOT_PAGE, memory_order_relaxed);
  }
}

static ra_chunk_t *chunk_new(ra_heap_t *heap) {
  ra_arena_t *arena;
  size_t index;
  bool was_committed;
  ra_chunk_t *c = _ra_arena_chunk_alloc(1, 0, false, NULL, &arena, &index, &was_committed);
  if (c == NULL) return NULL;
  uint64_t committed = 1, dirty = 0;
  if (!was_committed) _ra_purge_pressure();
  if (was_committed) {
    committed = c->committed | 1; /* the old header still says which slices hold memory */
    dirty = c->dirty;
    noaccess_lift(c, ~0ULL); /* and which of them a freed block left inaccessible */
  } else if (_ra_mem_commit(c, RA_SLICE_SIZE) != RA_OS_OK) {
    _ra_arena_chunk_free(arena, index, 1, true, 0);
    return NULL;
  }
  memset(c, 0, offsetof(ra_chunk_t, pages));
  c->magic = RA_CHUNK_MAGIC;
  c->arena = arena;
  c->index = (uint32_t)index;
  c->chunk_count = 1;
  c->kind = RA_CHUNK_PAGES;
  c->committed = committed;
  c->dirty = dirty;
  /* Slices still committed from the chunk's last life wait for a purge like any free slice. */
  atomic_store_explicit(&c->purge_slices, committed & ~1ULL, memory_order_relaxed);
  uint64_t now = _ra_now_ms();
  for (size_t i = 0; i < RA_SLICES; i++) c->slice_free_ms[i] = now;
  c->free_slices = ~1ULL;
  c->free_count = RA_SLICES - 1;
  chunk_reset_descriptors(c, 0, RA_SLICES + 1);
  if (_ra_commit_whole_chunks && _ra_chunk_commit_slices(c, 1, RA_SLICES - 1) != RA_OS_OK) {
    _ra_chunk_decommit_slices(c, c->committed);
    _ra_arena_chunk_free(arena, index, 1, true, 0);
    return NULL;
  }
  atomic_store_explicit(&c->heap, heap, memory_order_release);
  _ra_chunk_list_push(&heap->chunks, c);
  _ra_arena_chunk_publish(c);
  ra_assert_internal(_ra_chunk_check(c, heap, false));
  return c;
}

/* The chunk's last page is gone: it goes back to its arena, free since the latest time any of its
 * slices still waiting for a purge became free. heap is NULL for a chunk on no heap's lists (an
 * abandoned chunk being swept). */
static void chunk_release(ra_heap_t *heap, ra_chunk_t *c, uint64_t free_ms) {
  ra_assert_internal(c->free_count == RA_SLICES - 1 && _ra_chunk_check(c, heap, false));
  if (heap != NULL) _ra_chunk_list_remove(c->free_count > 0 ? &heap->chunks : &heap->chunks_full, c);
  atomic_store_explicit(&c->heap, NULL, memory_order_relaxed);
  _ra_arena_chunk_free(c->arena, c->index, 1, false, free_ms);
}

/* Index of the first run of `n` free slices in the bitmap, or 0. */
static size_t find_run(uint64_t free, size_t n) {
  uint64_t x = free;
  for (size_t i = 1; i < n && x; i++) x &= free >> i;
  return x ? (size_t)__builtin_ctzll(x) : 0;
}

static ra_page_t *span_take(ra_heap_t *heap, ra_chunk_t *c, size_t idx, size_t n) {
  uint64_t m = slice_mask(idx, n);
  _ra_chunk_lock(c);
  ra_assert_internal(_ra_chunk_is_valid(c, heap, false) && c->free_count >= n && (c->free_slices & m) == m);
  if (c->noaccess & m) {
    protect_feedback(heap, c, idx);
    noaccess_lift(c, m);
  }
  atomic_fetch_and_explicit(&c->purge_slices, ~m, memory_order_relaxed);
  bool fresh = (c->dirty & m) == 0;
  c->dirty |= m;
  _ra_chunk_unlock(c);
  c->free_slices &= ~m;
  c->free_count -= (uint32_t)n;
  if (c->free_count == 0) {
    _ra_chunk_list_remove(&heap->chunks, c);
    _ra_chunk_list_push(&heap->chunks_full, c);
  }
  c->pages_in_use++;
  ra_page_t *page = &c->pages[idx];
  memset(page, 0, sizeof *page);
  page->slice_count = (uint8_t)n;
  page->fresh = fresh;
  for (size_t j = 1; j < n; j++) c->pages[idx + j].slice_offset = (uint8_t)j;
  return page;
}

/* A run of `slices` free slices from one of the heap's chunks: its own first, then an abandoned
 * chunk, then a new chunk. The head descriptor comes back zeroed, with slice_count and fresh set. */
ra_page_t *_ra_chunk_span_alloc(ra_heap_t *heap, size_t slices) {
  /* Slices freed lately and still committed first: reusing them costs no page faults, and they
   * would otherwise sit in memory until a purge while fresh slices get touched. */
  for (ra_chunk_t *c = heap->chunks; c != NULL; c = c->next) {
    if (c->free_count < slices) continue;
    uint64_t warm = c->free_slices & atomic_load_explicit(&c->purge_slices, memory_order_relaxed);
    size_t idx = warm != 0 ? find_run(warm, slices) : 0;
    if (idx != 0) return span_take(heap, c, idx, slices);
  }
  _ra_purge_pressure(); /* no warm run: the span will need fresh memory */
  for (ra_chunk_t *c = heap->chunks; c != NULL; c = c->next) {
    if (c->free_count < slices) continue;
    size_t idx = find_run(c->free_slices, slices);
    if (idx != 0) return span_take(heap, c, idx, slices);
  }
  ra_chunk_t *c;
  while ((c = _ra_chunk_pop_abandoned()) != NULL) {
    _ra_chunk_adopt(heap, c);
    if (atomic_load_explicit(&c->heap, memory_order_relaxed) != heap) continue; /* emptied and released */
    size_t idx = c->free_count >= slices ? find_run(c->free_slices, slices) : 0;
    if (idx != 0) return span_take(heap, c, idx, slices);
  }
  c = chunk_new(heap);
  if (c == NULL) return NULL;
  return span_take(heap, c, find_run(c->free_slices, slices), slices);
}

/* Give a page's slices back to its chunk; they have been free since `free_since` (a kept empty
 * page's retire time, or now). The last page of a chunk gives the chunk back to its arena (still
 * committed: it is purgeable from then on). heap is the owner, or NULL for a chunk on no heap's
 * lists (an abandoned chunk being swept). */
void _ra_chunk_span_free(ra_heap_t *heap, ra_chunk_t *c, ra_page_t *page, uint64_t free_since) {
  size_t idx = (size_t)(page - c->pages), n = page->slice_count;
  uint64_t m = slice_mask(idx, n);
  /* A large block is alone in its span: freed, the span is that block (RAMALLOC_PROTECT_FREED). */
  bool protect = page->block_size > RA_MEDIUM_MAX && page->block_size <= _ra_protect_freed;
  if (page->guarded) {
    size_t os_page = _ra_os_info()->page_size;
    _ra_mem_protect((uint8_t *)c + (idx + n) * RA_SLICE_SIZE - os_page, os_page, RA_PROT_READWRITE);
  }
  long long delay = _ra_option(RA_OPT_PURGE_DELAY_MS);
  uint64_t now = _ra_now_ms();
  if (protect && protect_skipped(heap, now)) protect = false;
  /* Under the chunk lock: a walk (inspect.c) reads the chunk holding it, and a chunk being swept
   * (heap NULL) changes while no thread owns it. */
  _ra_chunk_lock(c);
  ra_assert_internal(page->used == 0 && _ra_chunk_is_valid(c, heap, false));
  chunk_reset_descriptors(c, idx, n);
  if (c->free_count == 0 && heap != NULL) {
    _ra_chunk_list_remove(&heap->chunks_full, c);
    _ra_chunk_list_push(&heap->chunks, c);
  }
  c->free_slices |= m;
  c->free_count += (uint32_t)n;
  c->pages_in_use--;
  for (size_t i = idx; i < idx + n; i++) c->slice_free_ms[i] = free_since;
  atomic_fetch_or_explicit(&c->purge_slices, m & c->committed, memory_order_relaxed);
  /* A freed large block faults when used, until span_take or a purge lifts it. */
  if (protect && delay != 0) c->noaccess |= slices_protect(c, m & c->committed, RA_PROT_NONE);
  if (delay >= 0) _ra_chunk_purge_slices(c, now, (uint64_t)delay, false); /* those that aged */
  uint64_t latest = free_since;
  uint64_t waiting = atomic_load_explicit(&c->purge_slices, memory_order_relaxed);
  for (uint64_t w = waiting; w != 0; w &= w - 1) {
    uint64_t t = c->slice_free_ms[__builtin_ctzll(w)];
    if (t > latest) latest = t;
  }
  ra_assert_internal(_ra_chunk_is_valid(c, heap, false));
  _ra_chunk_unlock(c);
  if (c->pages_in_use == 0) chunk_release(heap, c, latest);
  else if (waiting != 0) _ra_purge_notify();
}

/* ---- Abandon and adopt ---------------------------------------------------------------------------- */

/* The owner thread is exiting; its pages are already in the RA_DELAY_NEVER state. */
void _ra_chunk_abandon(ra_chunk_t *c) {
  atomic_store_explicit(&c->heap, NULL, memory_order_release);
  ra_assert_internal(!c->abandoned && _ra_chunk_check(c, NULL, false));
  _ra_lock(&abandoned_lock);
  c->abandoned = 1;
  c->prev = NULL;
  c->next = abandoned;
  if (abandoned) abandoned->prev = c;
  abandoned = c;
  atomic_fetch_add_explicit(&abandoned_count, 1, memory_order_relaxed);
  _ra_unlock(&abandoned_lock);
  _ra_purge_notify(); /* other threads' frees into it are collected by a sweep */
}

static void abandoned_unlink(ra_chunk_t *c) {
  if (c->prev) c->prev->next = c->next;
  else abandoned = c->next;
  if (c->next) c->next->prev = c->prev;
  c->next = c->prev = NULL;
  c->abandoned = 0;
  atomic_fetch_sub_explicit(&abandoned_count, 1, memory_order_relaxed);
}

ra_chunk_t *_ra_chunk_pop_abandoned(void) {
  if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) == 0) return NULL;
  _ra_lock(&abandoned_lock);
  ra_chunk_t *c = abandoned;
  if (c != NULL) abandoned_unlink(c);
  _ra_unlock(&abandoned_lock);
  return c;
}

void _ra_chunk_fork_prepare(void) { _ra_lock(&abandoned_lock); }
void _ra_chunk_fork_release(void) { _ra_unlock(&abandoned_lock); }

/* Call fn on every published page chunk. The caller holds every arena lock (fork), so the set of
 * published chunks cannot change and each one's header is committed. */
static void page_chunks_foreach(void (*fn)(ra_chunk_t *c)) {
  size_t n = _ra_arena_count();
  for (size_t k = 0; k < n; k++) {
    ra_arena_t *a = _ra_arena_at(k);
    size_t words = (a->chunk_slots + 63) / 64;
    for (size_t w = 0; w < words; w++) {
      for (uint64_t m = a->in_use[w] & (w == 0 ? ~1ULL : ~0ULL); m != 0; m &= m - 1) {
        size_t i = w * 64 + (size_t)__builtin_ctzll(m);
        if (i >= a->chunk_slots) break;
        ra_chunk_t *c = (ra_chunk_t *)(a->base + i * RA_CHUNK_SIZE);
        if (_ra_chunk_map_has((uintptr_t)c) && c->kind == RA_CHUNK_PAGES) fn(c);
      }
    }
  }
}

static void chunk_fork_lock(ra_chunk_t *c) { _ra_chunk_lock(c); }
static void chunk_fork_unlock(ra_chunk_t *c) { _ra_chunk_unlock(c); }

/* A thread that was in the middle of a delayed free (free_remote: RA_DELAY_FREEING) when another
 * thread forked does not exist in the child: the page goes back to RA_DELAY_USE, the state that
 * thread found, or its owner would wait for it for ever. The block it was freeing is either on the
 * heap's delayed list already or stays counted as used (a leak of one block in the child). */
static void chunk_fork_child_fix(ra_chunk_t *c) {
  for (size_t idx = 1; idx < RA_SLICES; idx++) {
    ra_page_t *page = &c->pages[idx];
    if (atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE) continue;
    uintptr_t tf = atomic_load_explicit(&page->xfree, memory_order_relaxed);
    if ((tf & 3) == RA_DELAY_FREEING)
      atomic_store_explicit(&page->xfree, (tf & ~(uintptr_t)3) | RA_DELAY_USE, memory_order_relaxed);
  }
  _ra_chunk_unlock(c);
}

/* After the arena locks (the order of a purge pass: arena, then chunk). A chunk lock is held only
 * for a bounded step (slice bitmaps, one madvise), never while waiting for an arena lock. */
void _ra_chunk_fork_lock_all(void) { page_chunks_foreach(chunk_fork_lock); }
void _ra_chunk_fork_unlock_all(void) { page_chunks_foreach(chunk_fork_unlock); }
void _ra_chunk_fork_child(void) { page_chunks_foreach(chunk_fork_child_fix); }

/* Does any page of the chunk hold blocks other threads freed and nobody collected? */
static bool chunk_has_remote_frees(const ra_chunk_t *c) {
  for (size_t idx = 1; idx < RA_SLICES; idx++) {
    const ra_page_t *page = &c->pages[idx];
    if ((atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE) == 0 &&
        (atomic_load_explicit(&page->xfree, memory_order_relaxed) & ~(uintptr_t)3) != 0)
      return true;
  }
  return false;
}

/* Sweep the abandoned chunks that other threads freed into: collect those frees, give the pages
 * they emptied back, and release chunks that became empty; the rest go back on the list. Any
 * thread may do it: a chunk taken off the list (under its lock) belongs to nobody else, and other
 * threads only ever push onto its pages' remote lists. A thread whose frees emptied its pages
 * is gone, and the program may never start another: without this, the memory would stay. */
void _ra_chunk_sweep_abandoned(void) {
  if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) == 0) return;
  ra_chunk_t *todo = NULL;
  _ra_lock(&abandoned_lock);
  for (ra_chunk_t *c = abandoned, *next; c != NULL; c = next) {
    next = c->next;
    if (!chunk_has_remote_frees(c)) continue;
    abandoned_unlink(c);
    c->next = todo;
    todo = c;
  }
  _ra_unlock(&abandoned_lock);
  uint64_t now = _ra_now_ms();
  for (ra_chunk_t *c = todo, *next; c != NULL; c = next) {
    next = c->next;
    bool released = false;
    for (size_t idx = 1; idx < RA_SLICES && !released;) {
      ra_page_t *page = &c->pages[idx];
      if (atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE) {
        idx++;
        continue;
      }
      idx += page->slice_count;
      _ra_chunk_lock(c); /* a walk (inspect.c) reads abandoned chunks' pages holding it */
      _ra_page_collect(page);
      bool empty = page->used == 0;
      _ra_chunk_unlock(c);
      if (!empty) continue;
      released = c->pages_in_use == 1;
      _ra_chunk_span_free(NULL, c, page, now);
    }
    if (!released) _ra_chunk_abandon(c);
  }
}

/* Make `heap` the owner of an abandoned chunk: collect what other threads freed meanwhile, give
 * empty pages back, and queue the rest. The chunk may be released when every page was empty. */
void _ra_chunk_adopt(ra_heap_t *heap, ra_chunk_t *c) {
  atomic_store_explicit(&c->heap, heap, memory_order_release);
  _ra_chunk_list_push(c->free_count > 0 ? &heap->chunks : &heap->chunks_full, c);
  for (size_t idx = 1; idx < RA_SLICES;) {
    ra_page_t *page = &c->pages[idx];
    uint8_t flags = atomic_load_explicit(&page->flags, memory_order_relaxed);
    if (flags & RA_PAGE_NOT_PAGE) {
      idx++;
      continue;
    }
    idx += page->slice_count;
    _ra_page_set_delay(page, RA_DELAY_NONE, true);
    _ra_page_set_flag(page, RA_PAGE_IN_FULL, false);
    _ra_page_collect(page);
    if (page->used == 0) {
      bool last = c->pages_in_use == 1;
      _ra_chunk_span_free(heap, c, page, _ra_now_ms());
      if (last) return; /* the chunk went back to its arena */
    } else {
      _ra_page_queue_push(heap, page);
      ra_assert_internal(_ra_page_queued_is_valid(heap, page, false));
    }
  }
  ra_assert_internal(_ra_chunk_check(c, heap, false));
}

/* ---- Huge blocks ---------------------------------------------------------------------------------- */

/* Huge runs reuse the committed memory of the free slots they take (a freed huge block's, or a
 * page chunk's): no fresh page fault per page, which is most of the cost of a fresh block. Up to
 * this many chunks (1 GiB); longer runs start from decommitted memory. */
#define HUGE_REUSE_MAX 256

static uint64_t slot_need(size_t j, size_t lo, size_t hi) {
  /* Slices of slot j that intersect the header slice of slot 0 or [lo, hi) (bytes from the run). */
  uint64_t m = j == 0 ? 1 : 0;
  size_t s0 = j * RA_CHUNK_SIZE, s1 = s0 + RA_CHUNK_SIZE;
  size_t a = lo > s0 ? lo : s0, b = hi < s1 ? hi : s1;
  if (a < b) {
    size_t first = (a - s0) / RA_SLICE_SIZE, last = (b - s0 - 1) / RA_SLICE_SIZE;
    m |= (last == 63 ? ~0ULL : ((1ULL << (last + 1)) - 1)) & ~((1ULL << first) - 1);
  }
  return m;
}

/* The committed slices slot j of a taken run still holds (its header says which), or 0. */
static uint64_t slot_have(const ra_chunk_t *c, const uint64_t *had, size_t j) {
  if (!((had[j >> 6] >> (j & 63)) & 1)) return 0;
  const ra_chunk_t *cj = (const ra_chunk_t *)((const uint8_t *)c + j * RA_CHUNK_SIZE);
  return cj->committed | 1;
}

/* Make the header slice and [off, off + usable) of a taken run committed, and keep committed what
 * its slots still hold past the block (with the gap up to it): a huge block that follows a bigger
 * one in the same run then costs no madvise now and no page faults when the next bigger one comes
 * (the run is at most one chunk longer than the block, so this keeps less than RA_CHUNK_SIZE more).
 * The committed range is whole slices from `off`; slices before `off` that are not needed are
 * decommitted. Sets *end to the end of the committed range and *is_zero when no block byte was
 * reused. On failure nothing of the run is committed any more. */
static int huge_fit(ra_chunk_t *c, size_t count, const uint64_t *had, size_t off, size_t usable, size_t *end,
                    bool *is_zero) {
  uint8_t *base = (uint8_t *)c;
  size_t lo = off, hi = _ra_align_up(off + usable, RA_SLICE_SIZE);
  for (size_t j = count; j-- > 0;) {
    uint64_t have = slot_have(c, had, j);
    if (have == 0) continue;
    size_t top = j * RA_CHUNK_SIZE + (size_t)(64 - __builtin_clzll(have)) * RA_SLICE_SIZE;
    if (top > hi) hi = top;
    break;
  }
  bool zero = true, fresh = false;
  for (size_t j = 0; j < count; j++) /* a freed huge block left these inaccessible */
    if (slot_have(c, had, j) != 0) noaccess_lift((ra_chunk_t *)(base + j * RA_CHUNK_SIZE), ~0ULL);
  for (size_t j = 0; j < count; j++) {
    uint64_t have = slot_have(c, had, j), need = slot_need(j, lo, hi), block = slot_need(j, lo, off + usable);
    if (have & ~need) _ra_chunk_decommit_slices((ra_chunk_t *)(base + j * RA_CHUNK_SIZE), have & ~need);
    if (have & block & (j == 0 ? ~1ULL : ~0ULL)) zero = false;
    if (block & ~have) fresh = true;
  }
  if (fresh) _ra_purge_pressure(); /* fresh pages are coming (this run's slots are ours: no purge touches them) */
  /* Commit the missing pieces, merged across slices and slots. Slice 0 of every slot past the
   * first is block memory, so a slot's header is read (slot_have) before any of it changes. */
  size_t total = count * RA_SLICES, g = 0, fail_at = total;
  int err = RA_OS_OK;
  while (g < total) {
    size_t j = g / RA_SLICES, sl = g % RA_SLICES;
    bool need = (slot_need(j, lo, hi) >> sl) & 1, have = (slot_have(c, had, j) >> sl) & 1;
    if (!need || have) {
      g++;
      continue;
    }
    size_t e = g;
    while (e < total && ((slot_need(e / RA_SLICES, lo, hi) >> (e % RA_SLICES)) & 1) &&
           !((slot_have(c, had, e / RA_SLICES) >> (e % RA_SLICES)) & 1))
      e++;
    size_t a = g * RA_SLICE_SIZE, b = e * RA_SLICE_SIZE;
    if (a > 0 && a < lo) a = lo;
    if (b > hi) b = hi;
    err = _ra_mem_commit(base + a, b - a);
    if (err != RA_OS_OK) {
      fail_at = g;
      break;
    }
    g = e;
  }
  if (err != RA_OS_OK) {
    /* Give back everything committed: reused slices whole, and what this call committed. */
    for (size_t j = 0; j < count; j++) {
      uint64_t need = slot_need(j, lo, hi), have = slot_have(c, had, j) & need;
      for (size_t sl = 0; sl < RA_SLICES; sl++) {
        size_t gg = j * RA_SLICES + sl;
        if (!((need >> sl) & 1) || (!((have >> sl) & 1) && gg >= fail_at)) continue;
        size_t a = gg * RA_SLICE_SIZE, b = a + RA_SLICE_SIZE;
        if (!((have >> sl) & 1)) {
          if (a > 0 && a < lo) a = lo;
          if (b > hi) b = hi;
        }
        _ra_mem_decommit(base + a, b - a);
      }
    }
    return err;
  }
  *end = hi;
  *is_zero = zero;
  return RA_OS_OK;
}

/* RAMALLOC_GUARD_PAGES: bytes of the inaccessible page after a huge block that must be protected
 * (overcommit mode), or 0. In protect mode, and on Windows, the page after the block is never
 * committed (guard runs do not reuse memory, and do not resize in place), so it faults already;
 * only its room in the run is needed. */
static size_t huge_guard_size(void) {
  if (!_ra_guard_pages || _ra_os_commit_mode() != RA_COMMIT_OVERCOMMIT) return 0;
  return _ra_os_info()->page_size;
}

/* A block of `size` bytes (> RA_LARGE_MAX) in a run of chunks of its own, aligned to `align`
 * (a power of two). The block starts at slice 1, or at `align` from the chunk start when that is
 * larger; for align >= RA_CHUNK_SIZE it starts exactly one chunk in, where (p - 1) & ~MASK still
 * finds the header. Only the header slice and the block's pages are committed. */
void *_ra_huge_alloc(size_t size, size_t align, bool *is_zero) {
  const size_t page = _ra_os_info()->page_size;
  size_t off = align <= RA_SLICE_SIZE ? RA_SLICE_SIZE : align < RA_CHUNK_SIZE ? align : RA_CHUNK_SIZE;
  size_t usable = _ra_align_up(size, page);
  if (usable < size || usable > ((size_t)1 << (RA_ADDR_BITS - 1))) return NULL;
  size_t guard = huge_guard_size();
  size_t count = (off + usable + (_ra_guard_pages ? page : 0) + RA_CHUNK_SIZE - 1) / RA_CHUNK_SIZE;
  ra_arena_t *arena;
  size_t index;
  bool was_committed;
  uint64_t had[HUGE_REUSE_MAX / 64];
  bool reuse = count <= HUGE_REUSE_MAX && !_ra_guard_pages;
  ra_chunk_t *c = _ra_arena_chunk_alloc(count, align >= RA_CHUNK_SIZE ? align : 0, true, reuse ? had : NULL,
                                        &arena, &index, &was_committed);
  if (c == NULL) return NULL;
  uint8_t *block = (uint8_t *)c + off;
  size_t end = off + usable;
  bool zero = true;
  int err;
  if (reuse) {
    err = huge_fit(c, count, had, off, usable, &end, &zero);
  } else if (off == RA_SLICE_SIZE) {
    err = _ra_mem_commit(c, RA_SLICE_SIZE + usable);
  } else {
    err = _ra_mem_commit(c, RA_SLICE_SIZE);
    if (err == RA_OS_OK && (err = _ra_mem_commit(block, usable)) != RA_OS_OK) _ra_mem_decommit(c, RA_SLICE_SIZE);
  }
  if (err == RA_OS_OK && guard > 0 && (err = _ra_mem_protect(block + usable, guard, RA_PROT_NONE)) != RA_OS_OK) {
    _ra_mem_decommit(c, RA_SLICE_SIZE);
    _ra_mem_decommit(block, usable);
  }
  if (err != RA_OS_OK) {
    _ra_arena_chunk_free(arena, index, count, true, 0);
    return NULL;
  }
  c->magic = RA_CHUNK_MAGIC;
  c->arena = arena;
  c->index = (uint32_t)index;
  c->chunk_count = (uint32_t)count;
  c->kind = RA_CHUNK_HUGE;
  c->committed = 1;
  c->noaccess = 0;
  c->huge_block = block;
  c->huge_size = usable;
  c->huge_committed = end - off;
  for (size_t i = 0; i <= RA_SLICES; i++) {
    c->pages[i].class_idx = RA_CLASS_HUGE;
    atomic_store_explicit(&c->pages[i].flags, RA_PAGE_HUGE, memory_order_relaxed);
    c->pages[i].free_cap = 0; /* the descriptor may be left from a page chunk */
  }
  _ra_arena_chunk_publish(c);
  *is_zero = zero;
  return block;
}

/* A freed huge block's run goes back to its arena. With a purge delay, its committed memory stays
 * committed and becomes free slots like any other, each with a header (written into the freed
 * block) that says which of its slices are committed: the next run or page chunk there reuses
 * them, and a purge gives them back after the delay. Without a delay it is decommitted at once. */
void _ra_huge_free(ra_chunk_t *c) {
  ra_arena_t *arena = c->arena;
  size_t index = c->index, count = c->chunk_count;
  uint8_t *base = (uint8_t *)c;
  uint8_t *block = c->huge_block;
  size_t off = (size_t)(block - base), committed = c->huge_committed;
  /* Unpublished under the arena lock: a walk (inspect.c) reads a huge chunk's header holding that
   * lock after seeing the chunk-map bit, so the header stays committed while it reads. */
  _ra_lock(&arena->lock);
  _ra_arena_chunk_unpublish(c);
  _ra_unlock(&arena->lock);
  if (_ra_option(RA_OPT_PURGE_DELAY_MS) == 0 || count > HUGE_REUSE_MAX || _ra_guard_pages) {
    size_t guard = huge_guard_size();
    if (guard > 0) _ra_mem_protect(block + c->huge_size, guard, RA_PROT_READWRITE);
    if (off == RA_SLICE_SIZE) {
      _ra_mem_decommit(c, RA_SLICE_SIZE + committed);
    } else {
      _ra_mem_decommit(block, committed);
      _ra_mem_decommit(c, RA_SLICE_SIZE);
    }
    _ra_arena_chunk_free(arena, index, count, true, 0);
    return;
  }
  /* Whole slices only: the part of a last slice that is committed goes back now. */
  size_t end = off + committed, whole = end & ~(RA_SLICE_SIZE - 1);
  if (whole < off) whole = off;
  if (end > whole) _ra_mem_decommit(base + whole, end - whole);
  size_t kept = 0;
  bool protect = c->huge_size <= _ra_protect_freed; /* read before the header is rewritten */
  for (size_t j = 0; j < count; j++) {
    uint64_t m = slot_need(j, off, whole); /* slot 0 always holds its header slice */
    if (!(m & 1)) break; /* the committed range is contiguous: no later slot holds any */
    ra_chunk_t *cj = (ra_chunk_t *)(base + j * RA_CHUNK_SIZE);
    cj->committed = m;
    cj->dirty = m;
    /* The block's slices fault when used, until the slot is reused or purged; not the slot's first
     * slice, which holds this header from now on. */
    cj->noaccess = protect ? slices_protect(cj, m & ~1ULL, RA_PROT_NONE) : 0;
    kept = j + 1;
  }
  /* The slice the block ends in, given back just now: in overcommit mode it would read as zero, so
   * it is made inaccessible too (in protect mode decommitted memory is already). Its slot must be
   * one that keeps a header, and the slice must not be that header. */
  size_t tail = whole / RA_SLICE_SIZE;
  if (protect && end > whole && tail / RA_SLICES < kept && tail % RA_SLICES != 0 &&
      _ra_os_commit_mode() == RA_COMMIT_OVERCOMMIT) {
    ra_chunk_t *ct = (ra_chunk_t *)(base + (tail / RA_SLICES) * RA_CHUNK_SIZE);
    ct->noaccess |= slices_protect(ct, 1ULL << (tail % RA_SLICES), RA_PROT_NONE);
  }
  _ra_arena_run_free(arena, index, count, kept, _ra_now_ms());
}

/* Resize a huge block in place, within its run: commit more, or give back a tail that shrank by
 * more than a quarter. False when the run is too small. */
bool _ra_huge_resize(ra_chunk_t *c, size_t size) {
  const size_t page = _ra_os_info()->page_size;
  if (_ra_guard_pages) return false; /* the guard page would have to move: realloc moves the block */
  size_t room = c->chunk_count * RA_CHUNK_SIZE - (size_t)(c->huge_block - (uint8_t *)c);
  size_t usable = _ra_align_up(size, page);
  if (usable < size || usable > room) return false;
  if (usable > c->huge_committed) {
    if (_ra_mem_commit(c->huge_block + c->huge_committed, usable - c->huge_committed) != RA_OS_OK) return false;
    c->huge_committed = usable;
  } else if (c->huge_committed - usable > c->huge_committed / 4) {
    _ra_mem_decommit(c->huge_block + usable, c->huge_committed - usable);
    c->huge_committed = usable;
  }
  c->huge_size = usable;
  return true;
}
