/* Statistics as text, and the invariant validator. The figures come from ra_stats_get (inspect.c:
 * OS counters, plus a walk of the metadata); printing goes through a line buffer to a file
 * descriptor or an output callback, and never allocates. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

typedef struct printer_s {
  ra_output_fun *out;
  void *arg;
} printer_t;

/* One line (at most 255 characters) through report.c's formatter. */
#define PRINT(pr, ...)                                   \
  do {                                                   \
    char line_[256];                                     \
    size_t n_ = _ra_fmt(line_, sizeof line_, __VA_ARGS__); \
    (pr)->out(line_, n_ < sizeof line_ ? n_ : sizeof line_ - 1, (pr)->arg); \
  } while (0)

static void print_size(const printer_t *pr, const char *label, size_t v) {
  if (v >= ((size_t)10 << 20))
    PRINT(pr, "  %-20s%zu bytes (%zu MiB)\n", label, v, v >> 20);
  else
    PRINT(pr, "  %-20s%zu bytes (%zu KiB)\n", label, v, v >> 10);
}

/* Per 1000 of `whole`, for "x.y%" without floating point. */
static size_t permille(size_t part, size_t whole) { return whole ? (part * 1000 + whole / 2) / whole : 0; }

void ra_stats_print_out(ra_output_fun *out, void *arg) {
  ra_stats_t st;
  printer_t pr = {out, arg};
  ra_stats_get(&st);
  PRINT(&pr, "ramalloc statistics\n");
  PRINT(&pr, "  %-20s%zu\n", "arenas:", st.arenas);
  print_size(&pr, "reserved:", st.reserved);
  print_size(&pr, "committed:", st.committed);
  print_size(&pr, "committed peak:", st.committed_peak);
  print_size(&pr, "purged:", st.purged);
  print_size(&pr, "live bytes:", st.live_bytes);
  PRINT(&pr, "  %-20s%zu (huge %zu)\n", "live blocks:", st.live_blocks, st.huge_blocks);
  PRINT(&pr, "  %-20s%zu (abandoned %zu), pages %zu\n", "chunks in use:", st.chunks_in_use, st.chunks_abandoned,
        st.pages);
  PRINT(&pr, "  %-20s%zu\n", "thread heaps:", st.heaps);
  size_t pm = permille(st.meta_committed, st.committed);
  PRINT(&pr, "  %-20s%zu bytes of structures, %zu KiB committed for them (%zu.%zu%% of committed)\n", "metadata:",
        st.meta_bytes, st.meta_committed >> 10, pm / 10, pm % 10);
  PRINT(&pr, "  %-20s%zu bytes at page ends (exact), at most %zu inside live blocks\n", "rounding:", st.tail_bytes,
        st.rounding_max);
  PRINT(&pr, "  %-20sreserve %zu, commit %zu, decommit %zu, reset %zu, protect %zu, release %zu\n", "os calls:",
        st.reserve_calls, st.commit_calls, st.decommit_calls, st.reset_calls, st.protect_calls, st.release_calls);
  PRINT(&pr, "  %10s %8s %12s %12s %12s %14s\n", "class size", "pages", "blocks used", "blocks free", "tail bytes",
        "rounding max");
  for (size_t i = 0; i < st.class_count; i++) {
    const ra_class_stats_t *c = &st.classes[i];
    if (c->pages == 0) continue;
    PRINT(&pr, "  %10zu %8zu %12zu %12zu %12zu %14zu\n", c->block_size, c->pages, c->blocks_used, c->blocks_free,
          c->tail_bytes, c->rounding_max);
  }
}

static void print_to_fd(const char *text, size_t len, void *arg) {
  int fd = *(int *)arg;
  while (len > 0) {
    ssize_t w = write(fd, text, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    text += w;
    len -= (size_t)w;
  }
}

void ra_stats_print(int fd) { ra_stats_print_out(print_to_fd, &fd); }

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
  for (ra_block_t *b = pg->free; b != NULL; b = _ra_block_next(b)) {
    size_t off = (size_t)((uint8_t *)b - start);
    if ((uint8_t *)b < start || off % pg->block_size != 0 || off / pg->block_size >= pg->capacity)
      return validate_fail("free block inside the carved part of its page", b);
    if (++nfree > pg->capacity) return validate_fail("free list has no cycle", pg);
  }
  if (nfree != pg->capacity - pg->used) return validate_fail("used == capacity - |free|", pg);
  if ((atomic_load_explicit(&pg->xfree, memory_order_relaxed) & 3) == RA_DELAY_FREEING)
    return validate_fail("no delayed free in flight at rest", pg);
  /* An empty page was retired (kept for its class) and carries the time it became empty, which the
   * owner's purge pass (_ra_purge_heap_pages) goes by. */
  if (pg->used == 0 && pg->retire_ms == 0) return validate_fail("an empty page has its retire time", pg);
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
      ra_page_t *want = q->first && !_ra_canary ? q->first : &_ra_page_empty;
      if (heap->direct[_ra_class_size[i] / RA_ALIGN] != want) return validate_fail("direct[] points at the queue head", q);
    }
  }
  return true;
}
