/* Statistics: the OS-level counters are exact at any time; per-class figures come from a walk of
 * every arena's chunks and page descriptors (exact when no other thread runs). */
#include <string.h>

#include "internal.h"

static size_t list_length(const ra_block_t *b) {
  size_t n = 0;
  for (; b != NULL; b = b->next) n++;
  return n;
}

static void stats_walk_chunk(ra_stats_t *st, ra_chunk_t *c) {
  if (c->kind == RA_CHUNK_HUGE) {
    st->live_blocks++;
    st->huge_blocks++;
    st->live_bytes += c->huge_size;
    return;
  }
  for (size_t idx = 1; idx < RA_SLICES;) {
    ra_page_t *pg = &c->pages[idx];
    if (atomic_load_explicit(&pg->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE) {
      idx++;
      continue;
    }
    idx += pg->slice_count ? pg->slice_count : 1;
    size_t xfree = list_length((ra_block_t *)(atomic_load_explicit(&pg->xfree, memory_order_acquire) & ~(uintptr_t)3));
    size_t used = pg->used >= xfree ? pg->used - xfree : 0;
    ra_class_stats_t *cs = &st->classes[pg->class_idx];
    cs->pages++;
    cs->blocks_used += used;
    cs->blocks_free += pg->reserved - used;
    st->live_blocks += used;
    st->live_bytes += used * pg->block_size;
  }
}

static void stats_heap(ra_heap_t *h, void *arg) {
  ra_stats_t *st = arg;
  st->heaps++;
  /* Blocks waiting in a delayed list are free but still counted in their page's `used`. */
  for (ra_block_t *b = atomic_load_explicit(&h->delayed_free, memory_order_acquire); b != NULL; b = b->next) {
    ra_chunk_t *c = _ra_chunk_of(b);
    ra_page_t *pg = _ra_page_of(c, b);
    ra_class_stats_t *cs = &st->classes[pg->class_idx];
    cs->blocks_used--;
    cs->blocks_free++;
    st->live_blocks--;
    st->live_bytes -= pg->block_size;
  }
}

void ra_stats_get(ra_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->reserved = atomic_load_explicit(&_ra_counters.reserved, memory_order_relaxed);
  st->committed = atomic_load_explicit(&_ra_counters.committed, memory_order_relaxed);
  st->committed_peak = atomic_load_explicit(&_ra_counters.committed_peak, memory_order_relaxed);
  st->purged = atomic_load_explicit(&_ra_counters.purged, memory_order_relaxed);
  st->reserve_calls = atomic_load_explicit(&_ra_counters.reserve_calls, memory_order_relaxed);
  st->commit_calls = atomic_load_explicit(&_ra_counters.commit_calls, memory_order_relaxed);
  st->decommit_calls = atomic_load_explicit(&_ra_counters.decommit_calls, memory_order_relaxed);
  st->reset_calls = atomic_load_explicit(&_ra_counters.reset_calls, memory_order_relaxed);
  st->protect_calls = atomic_load_explicit(&_ra_counters.protect_calls, memory_order_relaxed);
  st->release_calls = atomic_load_explicit(&_ra_counters.release_calls, memory_order_relaxed);
  st->class_count = RA_CLASS_COUNT;
  for (size_t i = 0; i < RA_CLASS_COUNT; i++) st->classes[i].block_size = _ra_class_size[i];
  size_t n = _ra_arena_count();
  st->arenas = n;
  for (size_t k = 0; k < n; k++) {
    ra_arena_t *a = _ra_arena_at(k);
    pthread_mutex_lock(&a->lock);
    st->chunks_in_use += a->chunks_in_use;
    for (size_t s = 1; s < a->chunk_slots; s++) {
      ra_chunk_t *c = (ra_chunk_t *)(a->base + s * RA_CHUNK_SIZE);
      if (((a->in_use[s >> 6] >> (s & 63)) & 1) && _ra_chunk_map_has((uintptr_t)c)) stats_walk_chunk(st, c);
    }
    pthread_mutex_unlock(&a->lock);
  }
  _ra_heap_foreach(stats_heap, st);
}

static void print_size(int fd, const char *label, size_t v) {
  if (v >= ((size_t)10 << 20))
    _ra_write(fd, "  %s%zu bytes (%zu MiB)\n", label, v, v >> 20);
  else
    _ra_write(fd, "  %s%zu bytes (%zu KiB)\n", label, v, v >> 10);
}

void ra_stats_print(int fd) {
  ra_stats_t st;
  ra_stats_get(&st);
  _ra_write(fd, "ramalloc statistics\n");
  _ra_write(fd, "  arenas:            %zu\n", st.arenas);
  print_size(fd, "reserved:          ", st.reserved);
  print_size(fd, "committed:         ", st.committed);
  print_size(fd, "committed peak:    ", st.committed_peak);
  print_size(fd, "live bytes:        ", st.live_bytes);
  _ra_write(fd, "  live blocks:       %zu (huge %zu)\n", st.live_blocks, st.huge_blocks);
  _ra_write(fd, "  chunks in use:     %zu\n", st.chunks_in_use);
  _ra_write(fd, "  thread heaps:      %zu\n", st.heaps);
  _ra_write(fd, "  os calls:          reserve %zu, commit %zu, decommit %zu, reset %zu, protect %zu, release %zu\n",
            st.reserve_calls, st.commit_calls, st.decommit_calls, st.reset_calls, st.protect_calls,
            st.release_calls);
  _ra_write(fd, "  %10s %8s %12s %12s\n", "class size", "pages", "blocks used", "blocks free");
  for (size_t i = 0; i < st.class_count; i++) {
    const ra_class_stats_t *c = &st.classes[i];
    if (c->pages == 0) continue;
    _ra_write(fd, "  %10zu %8zu %12zu %12zu\n", c->block_size, c->pages, c->blocks_used, c->blocks_free);
  }
}

/* ---- Validation ------------------------------------------------------------------------------------ */

static bool validate_fail(const char *what, const void *where) {
  _ra_write(2, "ramalloc: invariant broken: %s at %p\n", what, where);
  return false;
}

/* The page invariants from internal.h, from the owner's side. */
static bool validate_page(ra_chunk_t *c, ra_page_t *pg) {
  if (pg->used > pg->capacity || pg->capacity > pg->reserved) return validate_fail("used <= capacity <= reserved", pg);
  if ((size_t)pg->reserved * pg->block_size > (size_t)pg->slice_count * RA_SLICE_SIZE)
    return validate_fail("reserved blocks fit the span", pg);
  if (pg->class_idx >= RA_CLASS_COUNT || _ra_class_size[pg->class_idx] != pg->block_size)
    return validate_fail("block size matches the class", pg);
  uint8_t *start = _ra_page_start(c, pg);
  size_t nfree = 0;
  for (ra_block_t *b = pg->free; b != NULL; b = b->next) {
    size_t off = (size_t)((uint8_t *)b - start);
    if ((uint8_t *)b < start || off % pg->block_size != 0 || off / pg->block_size >= pg->capacity)
      return validate_fail("free block inside the carved part of its page", b);
    if (++nfree > pg->capacity) return validate_fail("free list has no cycle", pg);
  }
  if (nfree != pg->capacity - pg->used) return validate_fail("used == capacity - |free|", pg);
  return true;
}

static bool validate_chunk(ra_heap_t *heap, ra_chunk_t *c) {
  if (c->magic != RA_CHUNK_MAGIC || c->kind != RA_CHUNK_PAGES) return validate_fail("chunk magic and kind", c);
  if (atomic_load_explicit(&c->heap, memory_order_relaxed) != heap) return validate_fail("chunk owner", c);
  if (!_ra_chunk_map_has((uintptr_t)c)) return validate_fail("chunk map bit", c);
  if (c->free_slices & 1) return validate_fail("slice 0 never free", c);
  if ((uint32_t)__builtin_popcountll(c->free_slices) != c->free_count) return validate_fail("free_count", c);
  uint32_t heads = 0;
  for (size_t idx = 1; idx < RA_SLICES;) {
    ra_page_t *pg = &c->pages[idx];
    bool free_slice = (c->free_slices >> idx) & 1;
    uint8_t flags = atomic_load_explicit(&pg->flags, memory_order_relaxed);
    if (free_slice) {
      if (!(flags & RA_PAGE_NOT_PAGE)) return validate_fail("free slice marked as a page", pg);
      idx++;
      continue;
    }
    if ((flags & RA_PAGE_NOT_PAGE) || pg->slice_offset != 0 || pg->slice_count == 0 || idx + pg->slice_count > RA_SLICES)
      return validate_fail("used slice starts a span", pg);
    for (size_t j = 1; j < pg->slice_count; j++)
      if (c->pages[idx + j].slice_offset != j || ((c->free_slices >> (idx + j)) & 1))
        return validate_fail("span slices point back to their head", &c->pages[idx + j]);
    if (!validate_page(c, pg)) return false;
    heads++;
    idx += pg->slice_count;
  }
  if (heads != c->pages_in_use) return validate_fail("pages_in_use", c);
  return true;
}

/* Check every invariant of the calling thread's heap: its chunks, their spans and pages, and the
 * page queues. Returns true when all hold; otherwise reports the first broken one on stderr. Call
 * it when no other thread frees into this heap's pages. */
bool _ra_validate_heap(void) {
  ra_heap_t *heap = _ra_heap_current();
  if (heap == &_ra_heap_empty) return true;
  for (int full = 0; full < 2; full++)
    for (ra_chunk_t *c = full ? heap->chunks_full : heap->chunks; c != NULL; c = c->next) {
      if ((c->free_count == 0) != (full == 1)) return validate_fail("chunk on the right list", c);
      if (!validate_chunk(heap, c)) return false;
    }
  for (size_t i = 0; i <= RA_CLASS_COUNT; i++) {
    ra_page_queue_t *q = i < RA_CLASS_COUNT ? &heap->queues[i] : &heap->full;
    ra_page_t *prev = NULL;
    for (ra_page_t *pg = q->first; pg != NULL; prev = pg, pg = pg->next) {
      uint8_t flags = atomic_load_explicit(&pg->flags, memory_order_relaxed);
      if (pg->prev != prev) return validate_fail("queue links", pg);
      if (((flags & RA_PAGE_IN_FULL) != 0) != (i == RA_CLASS_COUNT)) return validate_fail("IN_FULL flag matches the queue", pg);
      if (i < RA_CLASS_COUNT && pg->class_idx != i) return validate_fail("page in its class queue", pg);
      if (atomic_load_explicit(&_ra_chunk_of_desc(pg)->heap, memory_order_relaxed) != heap)
        return validate_fail("queued page belongs to this heap", pg);
    }
    if (q->last != prev) return validate_fail("queue tail", q);
    if (i < RA_CLASS_COUNT && _ra_class_size[i] <= RA_DIRECT_MAX) {
      ra_page_t *want = q->first ? q->first : &_ra_page_empty;
      if (heap->direct[_ra_class_size[i] / RA_ALIGN] != want) return validate_fail("direct[] points at the queue head", q);
    }
  }
  return true;
}
