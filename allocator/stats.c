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

/* Check every invariant of the calling thread's heap: its chunks, their spans and pages (free lists
 * walked), and the page queues (_ra_heap_is_valid, heap.c, and the checks it calls). Returns true
 * when all hold; otherwise reports the first broken one on stderr. Call it when no other thread
 * frees into this heap's pages. */
bool _ra_validate_heap(void) { return _ra_heap_is_valid(_ra_heap_current(), RA_HEAP_AT_REST); }
