/* Statistics: ra_stats_get (the OS counters, plus a snapshot walk of the metadata: snapshot.h) and
 * the same figures as text. Printing goes through a line buffer to a file descriptor or an output
 * callback, and never allocates. The layout dump (inspect.c) adds up the same figures in its own
 * walk through the _ra_stats_* steps. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "snapshot.h"

/* ---- Statistics from the walk ---------------------------------------------------------------------- */

void _ra_stats_add_chunk(ra_stats_t *st, const ra_chunk_info_t *ci) {
  st->meta_bytes += RA_CHUNK_HEADER_SIZE;
  st->meta_committed += RA_SLICE_SIZE;
  if (ci->kind == RA_CHUNK_HUGE) {
    st->live_blocks++;
    st->huge_blocks++;
    st->live_bytes += ci->huge_size;
    st->rounding_max += _ra_os_info()->page_size;
    return;
  }
  if (ci->abandoned) st->chunks_abandoned++;
  for (size_t i = 0; i < ci->npages; i++) {
    const ra_page_info_t *pi = &ci->pages[i];
    if (pi->class_idx >= RA_CLASS_COUNT || pi->reserved == 0) continue;
    ra_class_stats_t *cs = &st->classes[pi->class_idx];
    cs->pages++;
    cs->blocks_used += pi->live;
    cs->blocks_free += pi->reserved - pi->live;
    cs->tail_bytes += _ra_snapshot_page_tail(pi);
    cs->rounding_max += (size_t)pi->live * _ra_snapshot_class_slack(pi->class_idx);
    st->pages++;
    st->live_blocks += pi->live;
    st->live_bytes += (size_t)pi->live * pi->block_size;
  }
}

void _ra_stats_add_arena(ra_stats_t *st, ra_arena_t *a) {
  _ra_lock(&a->lock);
  st->chunks_in_use += a->chunks_in_use;
  st->meta_bytes += a->meta_start + a->meta_used;
  st->meta_committed += a->meta_committed;
  _ra_unlock(&a->lock);
}

static void stats_count_heap(ra_heap_t *h, void *arg) {
  if (!atomic_load_explicit(&h->parked, memory_order_relaxed)) ((ra_stats_t *)arg)->heaps++; /* threads' heaps */
}

void _ra_stats_begin(ra_stats_t *st) {
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
  st->arenas = _ra_arena_count();
  _ra_heap_foreach(stats_count_heap, st);
}

void _ra_stats_end(ra_stats_t *st) {
  for (size_t i = 0; i < RA_CLASS_COUNT; i++) {
    st->tail_bytes += st->classes[i].tail_bytes;
    st->rounding_max += st->classes[i].rounding_max;
  }
}

void ra_stats_get(ra_stats_t *st) {
  ra_snapshot_t w;
  _ra_snapshot_begin(&w);
  _ra_stats_begin(st);
  for (size_t k = 0; k < st->arenas; k++) {
    ra_arena_t *a = _ra_arena_at(k);
    ra_chunk_info_t ci;
    _ra_stats_add_arena(st, a);
    for (size_t s = 1; _ra_snapshot_chunk_next(&w, a, &s, &ci);) _ra_stats_add_chunk(st, &ci);
  }
  _ra_stats_end(st);
}


/* ---- As text ---------------------------------------------------------------------------------------- */

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
