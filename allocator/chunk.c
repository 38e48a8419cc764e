/* Chunks: 4 MiB pieces of an arena, each owned by one heap. Slice 0 holds the header and the 65
 * page descriptors; slices 1..63 are handed out as spans (pages). Here: the slices as a chunk sees
 * them (a span taken and given back, commit, the chunk lock), a new chunk and its release, and the
 * sweep that gives back free slots and slices when purge.c says. Which chunk a heap takes a span
 * from, and abandoned chunks, are heap.c's; huge blocks are huge.c's; the OS calls are mem.c's.
 *
 * Chunk layout (offsets from the chunk start):
 *   0            struct ra_chunk_s: owner, bitmaps of free and committed slices, huge fields
 *   offsetof(pages)  ra_page_t pages[65] (128 bytes each): slice i's descriptor
 *   RA_SLICE_SIZE    slice 1: first span, or the start of a huge block
 *   i * 64 KiB       slice i */
#include <string.h>

#include "internal.h"

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

/* The chunk's own invariants (its pages': _ra_page_chunk_check, page.c). */
bool _ra_chunk_is_valid(const ra_chunk_t *c, const ra_heap_t *owner) {
  if (c->magic != RA_CHUNK_MAGIC || c->kind != RA_CHUNK_PAGES || c->chunk_count != 1)
    return _ra_report_invariant("chunk magic and kind", c);
  if (atomic_load_explicit(&c->heap, memory_order_relaxed) != owner) return _ra_report_invariant("chunk owner", c);
  if (atomic_load_explicit(&_ra_chunk_map[(uintptr_t)c >> RA_CHUNK_SHIFT], memory_order_relaxed) != _ra_heap_map_entry(owner))
    return _ra_report_invariant("chunk map entry is the owner's tag", c);
  uint64_t free = c->free_slices, committed = c->committed;
  uint64_t purge = atomic_load_explicit(&c->purge_slices, memory_order_relaxed);
  if (free & 1) return _ra_report_invariant("slice 0 never free", c);
  if ((uint32_t)__builtin_popcountll(free) != c->free_count)
    return _ra_report_invariant("free_count == popcount(free_slices)", c);
  if (!(committed & 1)) return _ra_report_invariant("the header slice is committed", c);
  if (purge & ~(free & committed)) return _ra_report_invariant("purge_slices are free and committed", c);
  if (c->noaccess & ~(free & committed)) return _ra_report_invariant("noaccess slices are free and committed", c);
  if (~free & ~1ULL & ~c->dirty) return _ra_report_invariant("slices in a span are dirty", c);
  uint32_t heads = 0;
  for (size_t idx = 0; idx <= RA_SLICES;) {
    const ra_page_t *pg = &c->pages[idx];
    uint8_t flags = atomic_load_explicit(&pg->flags, memory_order_relaxed);
    if (idx == 0 || idx == RA_SLICES || ((free >> idx) & 1)) {
      if (!(flags & RA_PAGE_NOT_PAGE) || pg->slice_offset != 0)
        return _ra_report_invariant("a free slice (or the header) is no page", pg);
      idx++;
      continue;
    }
    if ((flags & RA_PAGE_NOT_PAGE) || pg->slice_offset != 0 || pg->slice_count == 0 ||
        idx + pg->slice_count > RA_SLICES)
      return _ra_report_invariant("used slice starts a span", pg);
    for (size_t j = 1; j < pg->slice_count; j++) {
      const ra_page_t *tail = &c->pages[idx + j];
      if (tail->slice_offset != j || ((free >> (idx + j)) & 1) ||
          !(atomic_load_explicit(&tail->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE))
        return _ra_report_invariant("span slices point back to their head", tail);
    }
    if (pg->committed_slices > 0 && (~committed & slice_mask(idx, pg->committed_slices)))
      return _ra_report_invariant("a page's committed slices are committed in the chunk", pg);
    /* Nobody owns the chunk (abandoned, or being swept): no heap may be notified. */
    if (owner == NULL && (atomic_load_explicit(&pg->xfree, memory_order_relaxed) & 3) != RA_DELAY_NEVER)
      return _ra_report_invariant("an abandoned chunk's pages are in RA_DELAY_NEVER", pg);
    heads++;
    idx += pg->slice_count;
  }
  if (heads != c->pages_in_use) return _ra_report_invariant("pages_in_use == span heads", c);
  return true;
}

bool _ra_chunk_check(ra_chunk_t *c, const ra_heap_t *owner) {
  _ra_chunk_lock(c);
  bool ok = _ra_chunk_is_valid(c, owner);
  _ra_chunk_unlock(c);
  return ok;
}

/* ---- Commit and purge ----------------------------------------------------------------------------- */

/* Commit slices [first, first+count) of a chunk (those not committed yet). Takes the chunk lock. */
int _ra_chunk_commit_slices(ra_chunk_t *c, size_t first, size_t count) {
  _ra_chunk_lock(c);
  int err = _ra_mem_commit_slices(c, slice_mask(first, count) & ~c->committed);
  _ra_chunk_unlock(c);
  return err;
}

/* Give back the free slices that have waited `age` ms (all of them with force), decommitted or, with
 * `reset`, reset. Caller holds the chunk lock. */
static void chunk_purge_slices(ra_chunk_t *c, uint64_t now, uint64_t age, bool force, bool reset) {
  uint64_t cand = atomic_load_explicit(&c->purge_slices, memory_order_relaxed), mask = 0;
  for (uint64_t m = cand; m != 0; m &= m - 1) {
    size_t i = (size_t)__builtin_ctzll(m);
    if (force || now - c->slice_free_ms[i] >= age) mask |= 1ULL << i;
  }
  if (mask == 0) return;
  atomic_store_explicit(&c->purge_slices, cand & ~mask, memory_order_relaxed);
  atomic_fetch_add_explicit(&_ra_counters.purged, (size_t)__builtin_popcountll(mask) * RA_SLICE_SIZE,
                            memory_order_relaxed);
  if (!reset) {
    _ra_mem_decommit_slices(c, mask);
    return;
  }
  _ra_mem_reset_slices(c, mask & ~1ULL); /* the header (slice 0) stays */
}

/* One sweep over every arena: free chunk slots that have waited `age` ms (all with force) go back
 * whole, and so do the free slices of chunks in use, decommitted or, with `reset`, reset (purge.c
 * decides which, and when). Arenas and chunks that are busy are skipped (unless force), so no
 * thread ever waits here for another's allocation. Returns true when free memory is left for a
 * later pass (not old enough yet, or skipped as busy). */
bool _ra_chunk_purge_free(uint64_t now, uint64_t age, bool force, bool reset) {
  bool left = false;
  size_t n = _ra_arena_count();
  for (size_t k = 0; k < n; k++) {
    ra_arena_t *a = _ra_arena_at(k);
    if (force) {
      _ra_lock(&a->lock);
    } else if (!_ra_trylock(&a->lock)) {
      left = true;
      continue;
    }
    size_t words = (a->chunk_slots + 63) / 64;
    for (size_t w = 0; w < words; w++) {
      for (uint64_t m = a->purgeable[w]; m != 0; m &= m - 1) {
        size_t i = w * 64 + (size_t)__builtin_ctzll(m);
        if (force || now - a->free_ms[i] >= age) _ra_arena_slot_purge(a, i, reset);
        else left = true;
      }
      for (uint64_t m = a->in_use[w] & ~(w == 0 ? 1ULL : 0); m != 0; m &= m - 1) {
        size_t i = w * 64 + (size_t)__builtin_ctzll(m);
        if (i >= a->chunk_slots) break;
        ra_chunk_t *c = (ra_chunk_t *)(a->base + i * RA_CHUNK_SIZE);
        if (!_ra_chunk_map_has((uintptr_t)c) || c->kind != RA_CHUNK_PAGES) continue;
        if (atomic_load_explicit(&c->purge_slices, memory_order_relaxed) == 0) continue;
        if (force) {
          _ra_chunk_lock(c);
        } else if (!_ra_chunk_trylock(c)) {
          left = true;
          continue;
        }
        chunk_purge_slices(c, now, age, force, reset);
        if (atomic_load_explicit(&c->purge_slices, memory_order_relaxed) != 0) left = true;
        _ra_chunk_unlock(c);
      }
    }
    ra_assert_internal(_ra_arena_is_valid(a));
    _ra_unlock(&a->lock);
  }
  return left;
}

/* ---- Freed large and huge blocks made inaccessible (RAMALLOC_PROTECT_FREED) ------------------------ */

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


/* ---- Page chunks ---------------------------------------------------------------------------------- */

static void chunk_reset_descriptors(ra_chunk_t *c, size_t first, size_t count) {
  for (size_t i = first; i < first + count; i++) {
    ra_page_t *pg = &c->pages[i];
    memset(pg, 0, sizeof *pg);
    atomic_store_explicit(&pg->flags, RA_PAGE_NOT_PAGE, memory_order_relaxed);
  }
}

/* A new chunk for `heap`, from an arena, on the heap's list of chunks with free slices. */
ra_chunk_t *_ra_chunk_new(ra_heap_t *heap) {
  ra_arena_t *arena;
  size_t index;
  bool was_committed;
  ra_chunk_t *c = _ra_arena_chunk_alloc(1, 0, false, NULL, &arena, &index, &was_committed);
  if (c == NULL) return NULL;
  uint64_t committed = 1, dirty = 0;
  if (was_committed) {
    committed = c->committed | 1; /* the old header still says which slices hold memory */
    dirty = c->dirty;
    _ra_mem_unprotect_slices(c, ~0ULL); /* and which of them a freed block left inaccessible */
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
    _ra_mem_decommit_slices(c, c->committed);
    _ra_arena_chunk_free(arena, index, 1, true, 0);
    return NULL;
  }
  atomic_store_explicit(&c->heap, heap, memory_order_release); /* publish sets its map entry */
  _ra_chunk_list_push(&heap->chunks, c);
  _ra_arena_chunk_publish(c);
  ra_assert_internal(_ra_chunk_check(c, heap));
  return c;
}

/* The chunk's last page is gone: it goes back to its arena, free since the latest time any of its
 * slices still waiting for a purge became free. heap is NULL for a chunk on no heap's lists (an
 * abandoned chunk being swept). */
static void chunk_release(ra_heap_t *heap, ra_chunk_t *c, uint64_t free_ms) {
  ra_assert_internal(c->free_count == RA_SLICES - 1 && _ra_chunk_check(c, heap));
  if (heap != NULL) _ra_chunk_list_remove(c->free_count > 0 ? &heap->chunks : &heap->chunks_full, c);
  _ra_arena_chunk_set_heap(c, NULL);
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
  ra_assert_internal(_ra_chunk_is_valid(c, heap) && c->free_count >= n && (c->free_slices & m) == m);
  if (c->noaccess & m) {
    protect_feedback(heap, c, idx);
    _ra_mem_unprotect_slices(c, m);
  }
  atomic_fetch_and_explicit(&c->purge_slices, ~m, memory_order_relaxed);
  bool dirty = (c->dirty & m) != 0;
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
  page->dirty = dirty;
  for (size_t j = 1; j < n; j++) c->pages[idx + j].slice_offset = (uint8_t)j;
  return page;
}

/* A span of `slices` slices from chunk c, or NULL when it has no run of that many free slices
 * (with `warm`, of free slices still committed from their last use). The head descriptor comes
 * back zeroed, with slice_count and dirty set. Where a heap looks for a span, in which order:
 * _ra_heap_find_page (heap.c). */
ra_page_t *_ra_chunk_span_take(ra_heap_t *heap, ra_chunk_t *c, size_t slices, bool warm) {
  if (c->free_count < slices) return NULL;
  uint64_t free = c->free_slices;
  if (warm) free &= atomic_load_explicit(&c->purge_slices, memory_order_relaxed);
  size_t idx = free != 0 ? find_run(free, slices) : 0;
  return idx != 0 ? span_take(heap, c, idx, slices) : NULL;
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
  long long delay = _ra_purge_delay();
  uint64_t now = _ra_now_ms();
  if (protect && protect_skipped(heap, now)) protect = false;
  /* Under the chunk lock: a walk (inspect.c) reads the chunk holding it, and a chunk being swept
   * (heap NULL) changes while no thread owns it. */
  _ra_chunk_lock(c);
  ra_assert_internal(page->used == 0 && _ra_chunk_is_valid(c, heap));
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
  if (protect && delay != 0) c->noaccess |= _ra_mem_protect_slices(c, m & c->committed, RA_PROT_NONE);
  if (delay >= 0) chunk_purge_slices(c, now, (uint64_t)delay, false, _ra_purge_reset_only()); /* those that aged */
  uint64_t latest = free_since;
  uint64_t waiting = atomic_load_explicit(&c->purge_slices, memory_order_relaxed);
  for (uint64_t w = waiting; w != 0; w &= w - 1) {
    uint64_t t = c->slice_free_ms[__builtin_ctzll(w)];
    if (t > latest) latest = t;
  }
  ra_assert_internal(_ra_chunk_is_valid(c, heap));
  _ra_chunk_unlock(c);
  if (c->pages_in_use == 0) chunk_release(heap, c, latest);
  else if (waiting != 0) _ra_purge_notify();
}

/* ---- fork ----------------------------------------------------------------------------------------- */

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
