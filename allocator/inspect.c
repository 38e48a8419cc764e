/* The layout dump: the whole layout as JSON (docs/layout.md), from one snapshot walk (snapshot.h)
 * that also adds up the statistics printed at its end (stats.c). Also here, portable: what
 * RAMALLOC_SHOW_STATS and RAMALLOC_DUMP_LAYOUT do at exit and the dump file names. The platform
 * layer writes the files whole and reads the command line (os.h); inspect_posix.c /
 * inspect_windows.c hook process exit (and, on POSIX, the RAMALLOC_DUMP_SIGNAL signal). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "snapshot.h"

/* ---- Output through a fixed buffer ---------------------------------------------------------------- */

typedef struct out_s {
  ra_output_fun *fn;
  void *arg;
  size_t len;
  char buf[8192];
} out_t;

static void out_flush(out_t *o) {
  if (o->len > 0) o->fn(o->buf, o->len, o->arg);
  o->len = 0;
}

static char *out_room(out_t *o, size_t n) {
  if (o->len + n > sizeof o->buf) out_flush(o);
  return o->buf + o->len;
}

static void out_str(out_t *o, const char *s) {
  for (; *s; s++) {
    if (o->len == sizeof o->buf) out_flush(o);
    o->buf[o->len++] = *s;
  }
}

/* printf-style through report.c's formatter, at most 511 characters per call. */
#define OUT(o, ...)                                        \
  do {                                                     \
    char *p_ = out_room((o), 512);                         \
    size_t n_ = _ra_fmt(p_, 512, __VA_ARGS__);             \
    (o)->len += n_ < 512 ? n_ : 511;                       \
  } while (0)

static void out_json_string(out_t *o, const char *s, size_t max) {
  out_str(o, "\"");
  for (size_t i = 0; s[i] != '\0' && i < max; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\') OUT(o, "\\%c", ch);
    else if (ch < 0x20 || ch == 0x7f) OUT(o, "\\u00%c%c", "0123456789abcdef"[ch >> 4], "0123456789abcdef"[ch & 15]);
    else OUT(o, "%c", ch);
  }
  out_str(o, "\"");
}

static void out_to_fd(const char *text, size_t len, void *arg) {
  int *fd_err = arg; /* [0] the descriptor, [1] the first errno */
  while (len > 0 && fd_err[1] == 0) {
    ssize_t w = write(fd_err[0], text, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      fd_err[1] = w < 0 ? errno : EIO;
      return;
    }
    text += w;
    len -= (size_t)w;
  }
}

/* ---- The JSON layout --------------------------------------------------------------------------- */

typedef struct field_s {
  const char *name;
  size_t offset, size;
} field_t;

#define FIELD(type, m) {#m, offsetof(type, m), sizeof(((type *)0)->m)}

/* Every named field of the metadata structs (padding members left out: they show as gaps). */
static const field_t arena_fields[] = {
  FIELD(ra_arena_t, magic),     FIELD(ra_arena_t, base),         FIELD(ra_arena_t, size),
  FIELD(ra_arena_t, index),     FIELD(ra_arena_t, chunk_slots),  FIELD(ra_arena_t, lock),
  FIELD(ra_arena_t, chunks_in_use), FIELD(ra_arena_t, in_use),   FIELD(ra_arena_t, committed),
  FIELD(ra_arena_t, purgeable), FIELD(ra_arena_t, free_ms),      FIELD(ra_arena_t, meta_start),
  FIELD(ra_arena_t, meta_used), FIELD(ra_arena_t, meta_committed),
};
static const field_t chunk_fields[] = {
  FIELD(ra_chunk_t, magic),        FIELD(ra_chunk_t, heap),         FIELD(ra_chunk_t, arena),
  FIELD(ra_chunk_t, index),        FIELD(ra_chunk_t, chunk_count),  FIELD(ra_chunk_t, kind),
  FIELD(ra_chunk_t, abandoned),    FIELD(ra_chunk_t, lock),         FIELD(ra_chunk_t, free_count),
  FIELD(ra_chunk_t, free_slices),  FIELD(ra_chunk_t, committed),    FIELD(ra_chunk_t, dirty),
  FIELD(ra_chunk_t, purge_slices), FIELD(ra_chunk_t, pages_in_use), FIELD(ra_chunk_t, noaccess), FIELD(ra_chunk_t, next),
  FIELD(ra_chunk_t, prev),         FIELD(ra_chunk_t, huge_block),   FIELD(ra_chunk_t, huge_size),
  FIELD(ra_chunk_t, huge_committed), FIELD(ra_chunk_t, slice_free_ms), FIELD(ra_chunk_t, pages),
};
static const field_t page_fields[] = {
  FIELD(ra_page_t, free),         FIELD(ra_page_t, used),         FIELD(ra_page_t, _pad),
  FIELD(ra_page_t, block_size),   FIELD(ra_page_t, capacity),     FIELD(ra_page_t, reserved),
  FIELD(ra_page_t, retire_ms),    FIELD(ra_page_t, flags),        FIELD(ra_page_t, class_idx),
  FIELD(ra_page_t, slice_count),  FIELD(ra_page_t, slice_offset), FIELD(ra_page_t, free_is_zero),
  FIELD(ra_page_t, dirty),        FIELD(ra_page_t, committed_slices), FIELD(ra_page_t, guarded),
  FIELD(ra_page_t, next),         FIELD(ra_page_t, prev),         FIELD(ra_page_t, div_mul),
  FIELD(ra_page_t, free_lim),     FIELD(ra_page_t, xfree),        FIELD(ra_page_t, _pad_remote),
};
static const field_t heap_fields[] = {
  FIELD(ra_heap_t, direct),     FIELD(ra_heap_t, queues),   FIELD(ra_heap_t, full),
  FIELD(ra_heap_t, delayed_free), FIELD(ra_heap_t, chunks), FIELD(ra_heap_t, chunks_full),
  FIELD(ra_heap_t, next_all),   FIELD(ra_heap_t, prev_all), FIELD(ra_heap_t, next_pool),
  FIELD(ra_heap_t, generation), FIELD(ra_heap_t, slow_calls), FIELD(ra_heap_t, next_page_purge_ms),
  FIELD(ra_heap_t, alive),      FIELD(ra_heap_t, parked),   FIELD(ra_heap_t, protect_backoff),
  FIELD(ra_heap_t, protect_skip), FIELD(ra_heap_t, clock_ms32), FIELD(ra_heap_t, protect_quick_ms),
  FIELD(ra_heap_t, parked_ms),  FIELD(ra_heap_t, tag),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void json_struct(out_t *o, const char *name, size_t size, const field_t *f, size_t n, bool last) {
  OUT(o, "    \"%s\": {\"size\": %zu, \"fields\": [", name, size);
  for (size_t i = 0; i < n; i++)
    OUT(o, "%s{\"name\": \"%s\", \"offset\": %zu, \"size\": %zu}", i ? ", " : "", f[i].name, f[i].offset, f[i].size);
  OUT(o, "]}%s\n", last ? "" : ",");
}

static void json_region(out_t *o, bool first, const char *name, size_t offset, size_t size) {
  OUT(o, "%s{\"name\": \"%s\", \"offset\": %zu, \"size\": %zu}", first ? "" : ", ", name, offset, size);
}

static void json_header_regions(out_t *o) {
  out_str(o, "\"header\": [");
  json_region(o, true, "chunk header", 0, offsetof(ra_chunk_t, pages));
  json_region(o, false, "page descriptors", offsetof(ra_chunk_t, pages), sizeof(((ra_chunk_t *)0)->pages));
  json_region(o, false, "unused", RA_CHUNK_HEADER_SIZE, RA_SLICE_SIZE - RA_CHUNK_HEADER_SIZE);
  out_str(o, "]");
}

static void json_preamble(out_t *o, const char *reason) {
  OUT(o, "{\n  \"format\": \"ramalloc-layout\",\n  \"version\": 1,\n  \"library\": \"ramalloc %d.%d.%d\",\n",
      RAMALLOC_VERSION_MAJOR, RAMALLOC_VERSION_MINOR, RAMALLOC_VERSION_PATCH);
  OUT(o, "  \"reason\": \"%s\",\n  \"pid\": %d,\n  \"unix_time_ms\": %llu,\n", reason, _ra_process_id(),
      (unsigned long long)_ra_wall_ms());
  char cmd[512];
  if (_ra_os_command_line(cmd, sizeof cmd) > 0) {
    out_str(o, "  \"command\": ");
    out_json_string(o, cmd, sizeof cmd);
    out_str(o, ",\n");
  }
  static const char *const purge_names[] = {"reset", "decommit"};
  long long purge = _ra_option(RA_OPT_PURGE);
  OUT(o, "  \"options\": {\"commit_mode\": \"%s\", \"whole_chunk_commit\": %s, \"arena_reserve\": %lld, "
         "\"purge\": \"%s\", \"purge_delay_ms\": %lld},\n",
      _ra_os_commit_mode() == RA_COMMIT_OVERCOMMIT ? "overcommit" : "protect",
      _ra_commit_whole_chunks ? "true" : "false", _ra_option(RA_OPT_ARENA_RESERVE),
      purge_names[purge == RA_PURGE_RESET ? 0 : 1], _ra_purge_delay());
  OUT(o, "  \"sizes\": {\"alignment\": %d, \"os_page\": %zu, \"slice\": %zu, \"chunk\": %zu, \"slices_per_chunk\": %zu,\n",
      RA_ALIGN, _ra_os_info()->page_size, RA_SLICE_SIZE, RA_CHUNK_SIZE, RA_SLICES);
  OUT(o, "            \"small_max\": %zu, \"medium_max\": %zu, \"medium_slices\": %d, \"large_max\": %zu, \"direct_max\": %d},\n",
      RA_SMALL_MAX, RA_MEDIUM_MAX, RA_MEDIUM_SLICES, RA_LARGE_MAX, RA_DIRECT_MAX);
  out_str(o, "  \"structs\": {\n");
  json_struct(o, "arena", sizeof(ra_arena_t), arena_fields, COUNT(arena_fields), false);
  json_struct(o, "chunk", sizeof(ra_chunk_t), chunk_fields, COUNT(chunk_fields), false);
  json_struct(o, "page", sizeof(ra_page_t), page_fields, COUNT(page_fields), false);
  json_struct(o, "heap", sizeof(ra_heap_t), heap_fields, COUNT(heap_fields), true);
  out_str(o, "  },\n  \"classes\": [");
  for (size_t i = 0; i < RA_CLASS_COUNT; i++) OUT(o, "%s%u", i ? ", " : "", _ra_class_size[i]);
  out_str(o, "],\n");
}

/* Heaps, a batch at a time: the list lock is held while a batch is copied, never while writing. */
typedef struct heap_batch_s {
  size_t skip, seen, n;
  ra_heap_t *heap[32];
  uint32_t generation[32];
} heap_batch_t;

static void heap_batch_add(ra_heap_t *h, void *arg) {
  heap_batch_t *b = arg;
  if (b->seen++ < b->skip || b->n == COUNT(b->heap)) return;
  b->generation[b->n] = h->generation;
  b->heap[b->n++] = h;
}

static void json_heaps(out_t *o) {
  out_str(o, "  \"heaps\": [");
  size_t done = 0;
  for (;;) {
    heap_batch_t b = {.skip = done};
    _ra_heap_foreach(heap_batch_add, &b);
    for (size_t i = 0; i < b.n; i++) {
      ra_arena_t *a = _ra_arena_containing(b.heap[i]);
      OUT(o, "%s\n    {\"address\": \"%p\", \"arena\": %zd, \"offset\": %zu, \"size\": %zu, \"generation\": %u}",
          done + i ? "," : "", (void *)b.heap[i], a ? (ptrdiff_t)a->index : (ptrdiff_t)-1,
          a ? (size_t)((uint8_t *)b.heap[i] - a->base) : 0, sizeof(ra_heap_t), b.generation[i]);
    }
    done += b.n;
    if (b.n < COUNT(b.heap)) break;
  }
  out_str(o, "\n  ],\n");
}

static const char *page_state_name(const ra_page_info_t *pi) {
  return pi->live == 0 ? "empty" : pi->live == pi->reserved ? "full" : "used";
}

/* With the heap profiler on: the call site holding most of the sampled bytes in [lo, hi). */
static void json_site(out_t *o, uintptr_t lo, uintptr_t hi) {
  size_t bytes;
  uint32_t site = _ra_prof_range_site(lo, hi, &bytes);
  if (site != UINT32_MAX) OUT(o, ", \"site\": %u, \"site_bytes\": %zu", site, bytes);
}

static void emit_text(void *arg, const char *text) { out_str(arg, text); }

static void json_page(out_t *o, const ra_page_info_t *pi, const ra_chunk_t *c, bool first) {
  static const char *const delay_names[] = {"none", "use", "freeing", "never"};
  OUT(o, "%s\n        {\"slice\": %u, \"slices\": %u, \"offset\": %zu, \"descriptor\": %zu, \"class\": %u, "
         "\"block_size\": %u,",
      first ? "" : ",", pi->slice, pi->slices, (size_t)pi->slice * RA_SLICE_SIZE,
      (size_t)((const uint8_t *)pi->desc - (const uint8_t *)c), pi->class_idx, pi->block_size);
  OUT(o, " \"reserved\": %u, \"capacity\": %u, \"used\": %u, \"remote_free\": %u, \"delayed_free\": %u,", pi->reserved,
      pi->capacity, pi->used, pi->remote, pi->delayed);
  OUT(o, " \"live\": %u, \"free\": %u, \"tail\": %zu, \"committed\": %zu, \"state\": \"%s\", \"delay\": \"%s\", "
         "\"flags\": [",
      pi->live, pi->reserved - pi->live, _ra_snapshot_page_tail(pi), (size_t)pi->committed_slices * RA_SLICE_SIZE,
      page_state_name(pi), delay_names[pi->delay & 3]);
  bool any = false;
  if (pi->flags & RA_PAGE_IN_FULL) {
    out_str(o, "\"in_full_list\"");
    any = true;
  }
  if (pi->flags & RA_PAGE_HAS_ALIGNED) out_str(o, any ? ", \"aligned\"" : "\"aligned\"");
  out_str(o, "]");
  json_site(o, (uintptr_t)pi->start, (uintptr_t)pi->start + (uintptr_t)pi->slices * RA_SLICE_SIZE);
  out_str(o, "}");
}

static void json_chunk(out_t *o, const ra_chunk_info_t *ci, bool first) {
  const ra_chunk_t *c = ci->chunk;
  ra_arena_t *a = ci->arena;
  OUT(o, "%s\n      {\"slot\": %zu, \"offset\": %zu, \"address\": \"%p\", \"kind\": \"%s\", ", first ? "" : ",",
      ci->slot, (size_t)((const uint8_t *)c - a->base), (const void *)c,
      ci->kind == RA_CHUNK_HUGE ? "huge" : "pages");
  if (ci->owner != NULL) OUT(o, "\"owner\": \"%p\", ", (void *)ci->owner);
  else out_str(o, "\"owner\": null, ");
  OUT(o, "\"abandoned\": %s, \"chunks\": %u, \"committed\": %zu,\n       ", ci->abandoned ? "true" : "false",
      ci->chunk_count, _ra_snapshot_chunk_committed(ci));
  json_header_regions(o);
  out_str(o, ",\n       \"slice_states\": \"");
  if (ci->kind == RA_CHUNK_HUGE) {
    size_t off = (size_t)(ci->huge_block - (const uint8_t *)c), end = off + ci->huge_committed;
    for (size_t j = 0; j < (size_t)ci->chunk_count * RA_SLICES; j++) {
      size_t lo = j * RA_SLICE_SIZE, hi = lo + RA_SLICE_SIZE;
      OUT(o, "%c", j == 0 ? 'M' : (lo < end && hi > off) ? 'H' : '.');
    }
    OUT(o, "\",\n       \"block\": {\"offset\": %zu, \"size\": %zu, \"committed\": %zu", off, ci->huge_size,
        ci->huge_committed);
    json_site(o, (uintptr_t)ci->huge_block, (uintptr_t)ci->huge_block + 1);
    out_str(o, "}}");
    return;
  }
  char states[RA_SLICES + 1];
  memcpy(states, ci->slices, RA_SLICES);
  states[RA_SLICES] = '\0';
  out_str(o, states);
  OUT(o, "\", \"free_slices\": %u, \"pages_in_use\": %u,\n       \"pages\": [", ci->free_count, ci->pages_in_use);
  for (size_t i = 0; i < ci->npages; i++) json_page(o, &ci->pages[i], c, i == 0);
  out_str(o, "]}");
}

/* Slot states are read 64 at a time under the arena lock, and written with it released. Also adds
 * the committed bytes of free slots (a free committed slot's old header says which slices). */
static size_t json_slot_states(out_t *o, ra_arena_t *a) {
  size_t committed = 0, huge_end = 0;
  out_str(o, "     \"slot_states\": \"");
  for (size_t s0 = 0; s0 < a->chunk_slots; s0 += 64) {
    char codes[65];
    size_t n = 0;
    _ra_lock(&a->lock);
    for (size_t s = s0; s < a->chunk_slots && s < s0 + 64; s++) {
      char code = _ra_snapshot_slot_state(a, s, &huge_end);
      codes[n++] = code;
      if (code == 'F' || code == 'R') {
        const ra_chunk_t *c = (const ra_chunk_t *)(a->base + s * RA_CHUNK_SIZE);
        committed += (size_t)__builtin_popcountll(c->committed | 1) * RA_SLICE_SIZE;
      }
    }
    _ra_unlock(&a->lock);
    codes[n] = '\0';
    out_str(o, codes);
  }
  out_str(o, "\",\n");
  return committed;
}

static void json_arena(out_t *o, const ra_snapshot_t *w, ra_arena_t *a, ra_stats_t *st, bool first) {
  _ra_lock(&a->lock);
  size_t base = (size_t)(uintptr_t)a->base, slots = a->chunk_slots, words = (slots + 63) / 64;
  size_t in_use_off = (size_t)(uintptr_t)a->in_use - base, committed_off = (size_t)(uintptr_t)a->committed - base;
  size_t purgeable_off = (size_t)(uintptr_t)a->purgeable - base, free_ms_off = (size_t)(uintptr_t)a->free_ms - base;
  size_t meta_start = a->meta_start, meta_used = a->meta_used, meta_committed = a->meta_committed;
  size_t chunks_in_use = a->chunks_in_use;
  _ra_unlock(&a->lock);
  _ra_stats_add_arena(st, a);
  OUT(o, "%s\n    {\"index\": %u, \"base\": \"%p\", \"size\": %zu, \"slots\": %zu, \"chunks_in_use\": %zu,\n",
      first ? "" : ",", a->index, (void *)a->base, a->size, slots, chunks_in_use);
  out_str(o, "     \"meta\": [");
  json_region(o, true, "arena header", 0, sizeof(ra_arena_t));
  json_region(o, false, "in_use bitmap", in_use_off, words * 8);
  json_region(o, false, "committed bitmap", committed_off, words * 8);
  json_region(o, false, "purgeable bitmap", purgeable_off, words * 8);
  json_region(o, false, "free_ms", free_ms_off, slots * 8);
  json_region(o, false, "heap structs", meta_start, meta_used);
  OUT(o, "],\n     \"meta_committed\": %zu,\n", meta_committed);
  size_t committed = meta_committed + json_slot_states(o, a);
  out_str(o, "     \"chunks\": [");
  ra_chunk_info_t ci;
  bool any = false;
  for (size_t s = 1; _ra_snapshot_chunk_next(w, a, &s, &ci);) {
    json_chunk(o, &ci, !any);
    _ra_stats_add_chunk(st, &ci);
    committed += _ra_snapshot_chunk_committed(&ci);
    any = true;
  }
  OUT(o, "],\n     \"committed\": %zu}", committed);
}

static void json_stats(out_t *o, const ra_stats_t *st) {
  OUT(o, "  \"stats\": {\"arenas\": %zu, \"reserved\": %zu, \"committed\": %zu, \"committed_peak\": %zu,\n",
      st->arenas, st->reserved, st->committed, st->committed_peak);
  OUT(o, "            \"live_bytes\": %zu, \"live_blocks\": %zu, \"huge_blocks\": %zu, \"chunks_in_use\": %zu,\n",
      st->live_bytes, st->live_blocks, st->huge_blocks, st->chunks_in_use);
  OUT(o, "            \"heaps\": %zu, \"purged\": %zu, \"pages\": %zu, \"chunks_abandoned\": %zu,\n", st->heaps,
      st->purged, st->pages, st->chunks_abandoned);
  OUT(o, "            \"meta_bytes\": %zu, \"meta_committed\": %zu, \"tail_bytes\": %zu, \"rounding_max\": %zu,\n",
      st->meta_bytes, st->meta_committed, st->tail_bytes, st->rounding_max);
  OUT(o, "            \"reserve_calls\": %zu, \"commit_calls\": %zu, \"decommit_calls\": %zu, \"reset_calls\": %zu, "
         "\"protect_calls\": %zu, \"release_calls\": %zu,\n",
      st->reserve_calls, st->commit_calls, st->decommit_calls, st->reset_calls, st->protect_calls,
      st->release_calls);
  out_str(o, "            \"classes\": [");
  bool any = false;
  for (size_t i = 0; i < st->class_count; i++) {
    const ra_class_stats_t *c = &st->classes[i];
    if (c->pages == 0) continue;
    OUT(o, "%s\n              {\"index\": %zu, \"block_size\": %zu, \"pages\": %zu, \"blocks_used\": %zu, "
           "\"blocks_free\": %zu, \"tail_bytes\": %zu, \"rounding_max\": %zu}",
        any ? "," : "", i, c->block_size, c->pages, c->blocks_used, c->blocks_free, c->tail_bytes, c->rounding_max);
    any = true;
  }
  out_str(o, "]}\n}\n");
}

static void dump_layout(out_t *o, const char *reason) {
  ra_snapshot_t w;
  ra_stats_t st;
  _ra_stats_begin(&st);
  _ra_snapshot_begin(&w);
  json_preamble(o, reason);
  json_heaps(o);
  if (_ra_prof_sites_begin()) {
    /* the heap profiler's call sites, which pages name by id ("site") */
    out_str(o, "  \"sites\": [");
    _ra_prof_sites_json(emit_text, o);
    out_str(o, "\n  ],\n");
  }
  out_str(o, "  \"arenas\": [");
  for (size_t k = 0; k < st.arenas; k++) json_arena(o, &w, _ra_arena_at(k), &st, k == 0);
  _ra_stats_end(&st);
  OUT(o, "\n  ],\n  \"delayed_lists_complete\": %s,\n", w.delayed.complete ? "true" : "false");
  json_stats(o, &st);
  out_flush(o);
  _ra_prof_sites_end();
}

void ra_dump_layout_out(ra_output_fun *fn, void *arg) {
  out_t o;
  o.fn = fn;
  o.arg = arg;
  o.len = 0;
  dump_layout(&o, "call");
}

static int dump_fd(int fd, const char *reason) {
  int fd_err[2] = {fd, 0};
  out_t o;
  o.fn = out_to_fd;
  o.arg = fd_err;
  o.len = 0;
  dump_layout(&o, reason);
  return fd_err[1];
}

int ra_dump_layout(int fd) { return dump_fd(fd, "call"); }

/* The dump written whole into a temporary file (path.tmp<pid>), then moved onto path: a reader
 * never sees half a dump. 0 or an errno value. */
static int dump_file(const char *path, const char *reason) {
  char tmp[4096];
  if (_ra_fmt(tmp, sizeof tmp, "%s.tmp%d", path, _ra_process_id()) >= sizeof tmp) return ENAMETOOLONG;
  int err = 0;
  int fd = _ra_os_file_create(tmp, &err);
  if (fd < 0) return err;
  return _ra_os_file_end(fd, tmp, path, dump_fd(fd, reason));
}

int ra_dump_layout_file(const char *path) { return dump_file(path, "call"); }

/* ---- Dumps asked for by the options (the OS files call these) ----------------------------------- */

/* The dump file for RAMALLOC_DUMP_LAYOUT: "%p" becomes the process id ("%%" a percent sign); the
 * n-th dump asked for by the signal gets ".n" before a ".json" ending (or at the end). Without the
 * option, signal dumps go to ramalloc-layout.%p.json in the working directory. */
static bool dump_path(char *dst, size_t cap, unsigned n) {
  const char *pattern = _ra_option_str(RA_OPT_DUMP_LAYOUT);
  if (pattern == NULL) pattern = "ramalloc-layout.%p.json";
  size_t len = 0;
  for (const char *p = pattern; *p != '\0'; p++) {
    if (p[0] == '%' && (p[1] == 'p' || p[1] == '%')) {
      len += p[1] == 'p' ? _ra_fmt(dst + len, cap - len, "%d", _ra_process_id()) : _ra_fmt(dst + len, cap - len, "%%");
      p++;
    } else {
      dst[len++] = *p;
    }
    if (len + 1 >= cap) return false;
  }
  dst[len] = '\0';
  if (n == 0) return true;
  char suffix[16];
  size_t sn = _ra_fmt(suffix, sizeof suffix, ".%u", n);
  bool json = len >= 5 && !strcmp(dst + len - 5, ".json");
  size_t at = json ? len - 5 : len;
  if (len + sn + 1 >= cap) return false;
  memmove(dst + at + sn, dst + at, len - at + 1);
  memcpy(dst + at, suffix, sn);
  return true;
}

void _ra_inspect_dump_configured(unsigned serial, const char *reason) {
  char path[4096];
  if (!dump_path(path, sizeof path, serial)) {
    _ra_fmt_write(2, "ramalloc: layout dump file name too long\n");
    return;
  }
  int err = dump_file(path, reason);
  if (err != 0) _ra_fmt_write(2, "ramalloc: could not write the layout to %s (errno %d)\n", path, err);
  else _ra_report_verbose("ramalloc: layout written to %s\n", path);
}

void _ra_inspect_at_exit(int stats_fd) {
  if (stats_fd >= 0 && _ra_option(RA_OPT_SHOW_STATS)) ra_stats_print(stats_fd);
  if (_ra_option_str(RA_OPT_DUMP_LAYOUT) != NULL) _ra_inspect_dump_configured(0, "exit");
}
