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
