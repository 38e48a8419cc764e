/* Inspection: reading the metadata from outside the allocation paths. One walk of the arenas, their
 * chunks and the page descriptors serves three readers: ra_stats_get (totals and per-class
 * figures), ra_visit (a callback per arena, chunk, page and block) and ra_dump_layout (the whole
 * layout as JSON, docs/layout.md). Nothing here adds work to malloc or free: every figure is read
 * from what the allocator keeps anyway (used, capacity, reserved, block_size, the free lists, the
 * heaps' delayed lists, the chunk and arena bitmaps, huge_size).
 *
 * Reading rules (the semantics promised in ramalloc.h):
 *   - a chunk is read while its arena's lock and its chunk lock are held: it cannot be given back,
 *     purged, or have spans taken or returned meanwhile; callbacks and output run with no lock held;
 *   - page fields the owner changes on its fast paths (used, free) are read without its
 *     cooperation: exact when the owner is not running, a moment's view otherwise;
 *   - a free-list link is followed only into a committed slice of a page whose chunk's locks are
 *     held; links that lead elsewhere (another thread's delayed list spans chunks) are read with
 *     that chunk's locks taken too, try-locked when another arena's lock would have to be waited for.
 *
 * Also here, portable: what RAMALLOC_SHOW_STATS and RAMALLOC_DUMP_LAYOUT do at exit and the dump
 * file names. inspect_posix.c / inspect_windows.c write the files, read the command line and hook
 * process exit (and, on POSIX, the RAMALLOC_DUMP_SIGNAL signal). */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define LIST_STEPS_MAX ((size_t)1 << 20) /* a racy list read stops after this many links */
#define DELAYED_MAX 1024                 /* delayed frees gathered before a walk, sorted */
#define BLOCKS_MAX (RA_SLICE_SIZE / RA_ALIGN) /* most blocks in one page: 4096 blocks of 16 bytes */

_Static_assert(RA_MEDIUM_SLICES * RA_SLICE_SIZE / (RA_SMALL_MAX + 1) <= BLOCKS_MAX, "medium pages fit the bitmap");

static inline bool bit_get(const uint64_t *map, size_t i) { return (map[i >> 6] >> (i & 63)) & 1; }

/* ---- Following links safely ---------------------------------------------------------------------- */

/* The locks a reader holds: an arena's lock, and the chunk lock of one of its page chunks. */
typedef struct held_s {
  ra_arena_t *arena;
  ra_chunk_t *chunk;
} held_t;

/* May the first word at p be read? p must be block-aligned, in a committed slice of chunk c, and
 * that slice part of a page. Reads only c's header; the caller holds c's chunk lock, under which no
 * slice is decommitted. */
static bool block_readable(const ra_chunk_t *c, const void *p) {
  if (((uintptr_t)p & (RA_ALIGN - 1)) != 0) return false;
  size_t idx = _ra_slice_index(c, p);
  if (idx == 0 || idx >= RA_SLICES || !((c->committed >> idx) & 1)) return false;
  size_t off = c->pages[idx].slice_offset;
  if (off > idx - 1) return false;
  return !(atomic_load_explicit(&c->pages[idx - off].flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE);
}

/* Read the link word of a free block p into *next. False when p is not known to be safe to read,
 * or a lock it needs is busy. Lock order: an arena lock before a chunk lock; a second arena lock
 * is only ever try-locked. */
static bool link_read(const held_t *h, const void *p, const void **next) {
  ra_chunk_t *c = _ra_chunk_of(p);
  if (h->chunk == c) {
    if (!block_readable(c, p)) return false;
    *next = _ra_block_next((const ra_block_t *)p);
    return true;
  }
  ra_arena_t *a = _ra_arena_containing(p);
  if (a == NULL) return false;
  bool lock_arena = a != h->arena;
  if (lock_arena) {
    if (h->arena != NULL) {
      if (!_ra_trylock(&a->lock)) return false;
    } else {
      _ra_lock(&a->lock);
    }
  }
  bool ok = false;
  size_t slot = (size_t)(((uintptr_t)c - (uintptr_t)a->base) >> RA_CHUNK_SHIFT);
  if (slot >= 1 && slot < a->chunk_slots && bit_get(a->in_use, slot) && _ra_chunk_map_has((uintptr_t)c) &&
      c->magic == RA_CHUNK_MAGIC && c->kind == RA_CHUNK_PAGES) {
    _ra_chunk_lock(c);
    if (block_readable(c, p)) {
      *next = _ra_block_next((const ra_block_t *)p);
      ok = true;
    }
    _ra_chunk_unlock(c);
  }
  if (lock_arena) _ra_unlock(&a->lock);
  return ok;
}

/* ---- Blocks freed by other threads into full pages (the heaps' delayed lists) -------------------- */

/* Gathered once before a walk, under the heap list lock, then sorted: a page finds its own by a
 * binary search. When there are more than DELAYED_MAX, a page reads its owner's list instead. */
typedef struct delayed_s {
  size_t n;
  bool overflow;
  bool complete; /* every list was read to its end */
  uintptr_t addr[DELAYED_MAX];
} delayed_t;

static void delayed_gather_heap(ra_heap_t *heap, void *arg) {
  delayed_t *d = arg;
  const held_t none = {NULL, NULL};
  const void *b = atomic_load_explicit(&heap->delayed_free, memory_order_acquire);
  for (size_t steps = 0; b != NULL && !d->overflow; steps++) {
    const void *next;
    if (d->n == DELAYED_MAX) {
      d->overflow = true;
      break;
    }
    if (steps == LIST_STEPS_MAX || !link_read(&none, b, &next)) {
      d->complete = false;
      break;
    }
    d->addr[d->n++] = (uintptr_t)b;
    b = next;
  }
}

static void sort_addresses(uintptr_t *a, size_t n) {
  /* Shell sort (gaps 3k+1): qsort may allocate, and n is at most DELAYED_MAX. */
  size_t gap = 1;
  while (gap < n / 3) gap = gap * 3 + 1;
  for (; gap > 0; gap /= 3)
    for (size_t i = gap; i < n; i++) {
      uintptr_t v = a[i];
      size_t j = i;
      for (; j >= gap && a[j - gap] > v; j -= gap) a[j] = a[j - gap];
      a[j] = v;
    }
}

static void delayed_gather(delayed_t *d) {
  d->n = 0;
  d->overflow = false;
  d->complete = true;
  _ra_heap_foreach(delayed_gather_heap, d);
  if (!d->overflow) sort_addresses(d->addr, d->n);
}

/* ---- Snapshots of chunks and pages --------------------------------------------------------------- */

typedef struct page_info_s {
  const uint8_t *start;      /* first byte of the span */
  const ra_page_t *desc;     /* its descriptor in the chunk header */
  uint32_t slice, slices;    /* head slice, span length */
  uint32_t block_size, reserved, capacity;
  uint32_t used;             /* the descriptor's count: includes remote and delayed frees */
  uint32_t remote, delayed;  /* blocks on xfree, and on the owner's delayed list */
  uint32_t live;             /* blocks handed out and not freed */
  uint32_t committed_slices; /* slices of the span committed */
  uint8_t class_idx, flags, delay;
} page_info_t;

typedef struct chunk_info_s {
  ra_arena_t *arena;
  ra_chunk_t *chunk;
  size_t slot;
  uint8_t kind;
  bool abandoned;
  uint32_t chunk_count;
  ra_heap_t *owner;
  uint64_t free_slices, committed, dirty, purge;
  uint32_t pages_in_use, free_count;
  const uint8_t *huge_block;
  size_t huge_size, huge_committed;
  char slices[RA_SLICES]; /* state code of each slice (page chunks) */
  size_t npages;
  page_info_t pages[RA_SLICES];
} chunk_info_t;

typedef struct walk_s {
  delayed_t delayed;
} walk_t;

/* Follow a free list inside one page: count the blocks (and set their bits) while the links stay
 * on block boundaries of the carved part and in committed slices. Returns the blocks newly seen. */
static uint32_t list_scan(const held_t *h, const void *b, const page_info_t *pi, uint64_t *bits) {
  uintptr_t lo = (uintptr_t)pi->start, hi = lo + (uintptr_t)pi->capacity * pi->block_size;
  uint32_t n = 0;
  for (size_t steps = 0; b != NULL && steps <= pi->reserved; steps++) {
    uintptr_t u = (uintptr_t)b;
    if (u < lo || u >= hi || (u - lo) % pi->block_size != 0) break;
    size_t k = (u - lo) / pi->block_size;
    if (bits != NULL) {
      if (bit_get(bits, k)) break; /* seen already: a cycle in a list read while it changed */
      bits[k >> 6] |= 1ULL << (k & 63);
    }
    n++;
    const void *next;
    if (!link_read(h, b, &next)) break;
    b = next;
  }
  return n;
}

/* Blocks of this page waiting on its owner's delayed list. */
static uint32_t page_delayed(const walk_t *w, const held_t *h, ra_heap_t *owner, const page_info_t *pi,
                             uint64_t *bits) {
  uintptr_t lo = (uintptr_t)pi->start, hi = lo + (uintptr_t)pi->capacity * pi->block_size;
  uint32_t n = 0;
  const delayed_t *d = &w->delayed;
  if (!d->overflow) {
    size_t i = 0, j = d->n;
    while (i < j) { /* first address >= lo */
      size_t m = i + (j - i) / 2;
      if (d->addr[m] < lo) i = m + 1;
      else j = m;
    }
    for (; i < d->n && d->addr[i] < hi; i++) {
      size_t k = (d->addr[i] - lo) / pi->block_size;
      if ((d->addr[i] - lo) % pi->block_size != 0) continue;
      if (bits != NULL) {
        if (bit_get(bits, k)) continue;
        bits[k >> 6] |= 1ULL << (k & 63);
      }
      n++;
    }
    return n;
  }
  if (owner == NULL) return 0;
  const void *b = atomic_load_explicit(&owner->delayed_free, memory_order_acquire);
  for (size_t steps = 0; b != NULL && steps < LIST_STEPS_MAX; steps++) {
    uintptr_t u = (uintptr_t)b;
    if (u >= lo && u < hi && (u - lo) % pi->block_size == 0) {
      size_t k = (u - lo) / pi->block_size;
      if (bits == NULL) {
        n++;
      } else if (!bit_get(bits, k)) {
        bits[k >> 6] |= 1ULL << (k & 63);
        n++;
      }
    }
    const void *next;
    if (!link_read(h, b, &next)) break;
    b = next;
  }
  return n;
}

/* Read the page whose head descriptor is c->pages[idx] (arena and chunk locks held). With `bits`
 * (BLOCKS_MAX bits), also mark every free block: the local and remote free lists, the delayed
 * frees, and the part not carved yet; live is then what is left unmarked. */
static void page_read(const walk_t *w, const held_t *h, ra_chunk_t *c, size_t idx, ra_heap_t *owner,
                      page_info_t *pi, uint64_t *bits) {
  const ra_page_t *pg = &c->pages[idx];
  pi->start = _ra_page_start(c, pg);
  pi->desc = pg;
  pi->slice = (uint32_t)idx;
  pi->slices = pg->slice_count ? pg->slice_count : 1;
  if (idx + pi->slices > RA_SLICES) pi->slices = (uint32_t)(RA_SLICES - idx);
  pi->block_size = pg->block_size;
  pi->class_idx = pg->class_idx;
  pi->used = pg->used;
  pi->capacity = pg->capacity;
  pi->reserved = pg->reserved;
  pi->flags = atomic_load_explicit(&pg->flags, memory_order_relaxed);
  uintptr_t xf = atomic_load_explicit(&pg->xfree, memory_order_acquire);
  pi->delay = (uint8_t)(xf & 3);
  /* A page being set up (span taken, class not yet chosen) holds no block; neither does a
   * descriptor read while its owner rewrites it with figures no page can have. */
  if (pi->block_size == 0 || pi->class_idx >= RA_CLASS_COUNT || (size_t)pi->reserved > BLOCKS_MAX) {
    pi->block_size = pi->block_size ? pi->block_size : 1;
    pi->reserved = pi->capacity = pi->used = 0;
  }
  if (pi->capacity > pi->reserved) pi->capacity = pi->reserved;
  uint64_t span = (pi->slices >= 64 ? ~0ULL : (1ULL << pi->slices) - 1) << idx;
  pi->committed_slices = (uint32_t)__builtin_popcountll(c->committed & span);
  if (bits != NULL) {
    memset(bits, 0, BLOCKS_MAX / 8);
    for (size_t k = pi->capacity; k < pi->reserved && k < BLOCKS_MAX; k++) bits[k >> 6] |= 1ULL << (k & 63);
    list_scan(h, pg->free, pi, bits);
  }
  pi->remote = list_scan(h, (const void *)(xf & ~(uintptr_t)3), pi, bits);
  pi->delayed = page_delayed(w, h, owner, pi, bits);
  if (bits != NULL) {
    size_t free_n = 0;
    for (size_t k = 0; k < (pi->reserved + 63) / 64; k++) free_n += (size_t)__builtin_popcountll(bits[k]);
    pi->live = (uint32_t)(pi->reserved - free_n);
  } else {
    uint32_t gone = pi->remote + pi->delayed;
    pi->live = pi->used > gone ? pi->used - gone : 0;
  }
}

/* The state code of slice i of a page chunk (its chunk lock held), `page` being the page that holds
 * it or NULL for a free slice. This is the one place that turns the allocator's bits into the states
 * of docs/layout.md:
 *   M header   U page, committed, with live blocks   E page, committed, empty
 *   p page, not committed yet   F free, committed, waiting for a purge   C free, committed, clean
 *   R free, reset (committed, content given up)   . free, reserved only (never committed or
 *   decommitted: the OS keeps no difference) */
static char slice_state(const chunk_info_t *ci, size_t i, const page_info_t *page) {
  bool committed = (ci->committed >> i) & 1;
  if (i == 0) return 'M';
  if (page != NULL) return !committed ? 'p' : page->live > 0 ? 'U' : 'E';
  if (!committed) return '.';
  if (!((ci->dirty >> i) & 1)) return 'C';
  if (((ci->purge >> i) & 1) || _ra_option(RA_OPT_PURGE_DELAY_MS) < 0) return 'F';
  return 'R';
}

/* The state code of slot s of an arena (arena lock held); *huge_end is the slot after the last
 * huge run seen, for its continuation slots:
 *   A arena header and metadata   P chunk of pages   a chunk of pages, abandoned
 *   H first chunk of a huge block   h the rest of its run   u in use, being set up or given back
 *   F free, committed, waiting for a purge   R free, reset   . free, reserved only */
static char slot_state(ra_arena_t *a, size_t s, size_t *huge_end) {
  if (s == 0) return 'A';
  if (bit_get(a->in_use, s)) {
    if (s < *huge_end) return 'h';
    ra_chunk_t *c = (ra_chunk_t *)(a->base + s * RA_CHUNK_SIZE);
    if (!_ra_chunk_map_has((uintptr_t)c) || c->magic != RA_CHUNK_MAGIC) return 'u';
    if (c->kind == RA_CHUNK_HUGE) {
      *huge_end = s + c->chunk_count;
      return 'H';
    }
    return atomic_load_explicit(&c->heap, memory_order_relaxed) == NULL ? 'a' : 'P';
  }
  if (!bit_get(a->committed, s)) return '.';
  return bit_get(a->purgeable, s) ? 'F' : 'R';
}

/* Read the chunk at slot s (arena lock held). False when no published chunk starts there. */
static bool chunk_read(const walk_t *w, ra_arena_t *a, size_t s, chunk_info_t *ci) {
  ra_chunk_t *c = (ra_chunk_t *)(a->base + s * RA_CHUNK_SIZE);
  if (!bit_get(a->in_use, s) || !_ra_chunk_map_has((uintptr_t)c) || c->magic != RA_CHUNK_MAGIC) return false;
  ci->arena = a;
  ci->chunk = c;
  ci->slot = s;
  ci->kind = c->kind;
  ci->npages = 0;
  ci->chunk_count = c->chunk_count ? c->chunk_count : 1;
  if (c->kind == RA_CHUNK_HUGE) {
    ci->owner = NULL;
    ci->abandoned = false;
    ci->huge_block = c->huge_block;
    ci->huge_size = c->huge_size;
    ci->huge_committed = c->huge_committed;
    ci->committed = 1;
    ci->free_slices = ci->dirty = ci->purge = 0;
    ci->pages_in_use = ci->free_count = 0;
    return true;
  }
  held_t h = {a, c};
  _ra_chunk_lock(c);
  ci->owner = atomic_load_explicit(&c->heap, memory_order_acquire);
  /* A parked heap's thread has exited too (heap.c): its chunks count as abandoned. */
  ci->abandoned = ci->owner == NULL || atomic_load_explicit(&ci->owner->parked, memory_order_relaxed);
  ci->free_slices = c->free_slices;
  ci->committed = c->committed | 1;
  ci->dirty = c->dirty;
  ci->purge = atomic_load_explicit(&c->purge_slices, memory_order_relaxed);
  ci->pages_in_use = c->pages_in_use;
  ci->free_count = c->free_count;
  ci->huge_block = NULL;
  ci->huge_size = ci->huge_committed = 0;
  ci->slices[0] = 'M';
  for (size_t idx = 1; idx < RA_SLICES;) {
    const ra_page_t *pg = &c->pages[idx];
    if (atomic_load_explicit(&pg->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE) {
      ci->slices[idx] = slice_state(ci, idx, NULL);
      idx++;
      continue;
    }
    page_info_t *pi = &ci->pages[ci->npages++];
    page_read(w, &h, c, idx, ci->owner, pi, NULL);
    for (size_t j = idx; j < idx + pi->slices; j++) ci->slices[j] = slice_state(ci, j, pi);
    idx += pi->slices;
  }
  _ra_chunk_unlock(c);
  return true;
}

/* The next published chunk at or after slot *s of arena a, read into ci; *s moves past it. */
static bool chunk_next(const walk_t *w, ra_arena_t *a, size_t *s, chunk_info_t *ci) {
  bool found = false;
  _ra_lock(&a->lock);
  for (; *s < a->chunk_slots && !found; (*s)++) {
    if ((*s & 63) == 0 && a->in_use[*s >> 6] == 0) {
      *s += 63; /* a whole word of free slots */
      continue;
    }
    if (chunk_read(w, a, *s, ci)) {
      found = true;
      *s += ci->kind == RA_CHUNK_HUGE ? ci->chunk_count - 1 : 0;
    }
  }
  _ra_unlock(&a->lock);
  return found;
}

/* Read one page again, with its block bitmap, if the chunk and the page are still there. */
static bool page_reread(const walk_t *w, const chunk_info_t *ci, size_t idx, page_info_t *pi, uint64_t *bits) {
  ra_arena_t *a = ci->arena;
  ra_chunk_t *c = ci->chunk;
  bool ok = false;
  _ra_lock(&a->lock);
  if (bit_get(a->in_use, ci->slot) && _ra_chunk_map_has((uintptr_t)c) && c->magic == RA_CHUNK_MAGIC &&
      c->kind == RA_CHUNK_PAGES) {
    held_t h = {a, c};
    _ra_chunk_lock(c);
    const ra_page_t *pg = &c->pages[idx];
    if (!(atomic_load_explicit(&pg->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE) && pg->slice_offset == 0) {
      page_read(w, &h, c, idx, atomic_load_explicit(&c->heap, memory_order_acquire), pi, bits);
      ok = pi->reserved <= BLOCKS_MAX;
    }
    _ra_chunk_unlock(c);
  }
  _ra_unlock(&a->lock);
  return ok;
}

static size_t page_tail(const page_info_t *pi) {
  size_t span = (size_t)pi->slices * RA_SLICE_SIZE, used = (size_t)pi->reserved * pi->block_size;
  return span > used ? span - used : 0;
}

/* Bytes a request of class i may be short of its block: block size minus the smallest request
 * that maps to the class (0 for class 0, which serves malloc(0)). */
static size_t class_slack(size_t i) { return _ra_class_size[i] - (i == 0 ? 0 : _ra_class_size[i - 1] + 1); }

static size_t chunk_committed_bytes(const chunk_info_t *ci) {
  if (ci->kind == RA_CHUNK_HUGE) return RA_SLICE_SIZE + ci->huge_committed;
  return (size_t)__builtin_popcountll(ci->committed) * RA_SLICE_SIZE;
}

/* ---- Statistics from the walk ---------------------------------------------------------------------- */

static void stats_add_chunk(ra_stats_t *st, const chunk_info_t *ci) {
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
    const page_info_t *pi = &ci->pages[i];
    if (pi->class_idx >= RA_CLASS_COUNT || pi->reserved == 0) continue;
    ra_class_stats_t *cs = &st->classes[pi->class_idx];
    cs->pages++;
    cs->blocks_used += pi->live;
    cs->blocks_free += pi->reserved - pi->live;
    cs->tail_bytes += page_tail(pi);
    cs->rounding_max += (size_t)pi->live * class_slack(pi->class_idx);
    st->pages++;
    st->live_blocks += pi->live;
    st->live_bytes += (size_t)pi->live * pi->block_size;
  }
}

static void stats_add_arena(ra_stats_t *st, ra_arena_t *a) {
  _ra_lock(&a->lock);
  st->chunks_in_use += a->chunks_in_use;
  st->meta_bytes += a->meta_start + a->meta_used;
  st->meta_committed += a->meta_committed;
  _ra_unlock(&a->lock);
}

static void stats_count_heap(ra_heap_t *h, void *arg) {
  if (!atomic_load_explicit(&h->parked, memory_order_relaxed)) ((ra_stats_t *)arg)->heaps++; /* threads' heaps */
}

static void stats_begin(ra_stats_t *st) {
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

static void stats_end(ra_stats_t *st) {
  for (size_t i = 0; i < RA_CLASS_COUNT; i++) {
    st->tail_bytes += st->classes[i].tail_bytes;
    st->rounding_max += st->classes[i].rounding_max;
  }
}

void ra_stats_get(ra_stats_t *st) {
  walk_t w;
  _ra_walk_lock();
  stats_begin(st);
  delayed_gather(&w.delayed);
  for (size_t k = 0; k < st->arenas; k++) {
    ra_arena_t *a = _ra_arena_at(k);
    chunk_info_t ci;
    stats_add_arena(st, a);
    for (size_t s = 1; chunk_next(&w, a, &s, &ci);) stats_add_chunk(st, &ci);
  }
  stats_end(st);
  _ra_walk_unlock();
}

/* ---- ra_visit -------------------------------------------------------------------------------------- */

static void visit_page_fields(ra_visit_info_t *v, const chunk_info_t *ci, const page_info_t *pi) {
  v->arena = ci->arena->index;
  v->slot = ci->slot;
  v->slice = pi->slice;
  v->class_index = pi->class_idx;
  v->block_size = pi->block_size;
  v->owner = ci->abandoned ? NULL : ci->owner;
}

/* A page, then its blocks: the bitmap comes from a fresh read so that the page's counts and its
 * blocks agree. */
static bool visit_page(const walk_t *w, const chunk_info_t *ci, const page_info_t *seen, unsigned kinds,
                       ra_visit_fun *fn, void *arg) {
  uint64_t bits[BLOCKS_MAX / 64];
  page_info_t fresh;
  const page_info_t *pi = seen;
  bool blocks = (kinds & (RA_VISIT_BLOCK | RA_VISIT_FREE)) != 0;
  if (blocks) {
    if (!page_reread(w, ci, seen->slice, &fresh, bits)) return true; /* gone meanwhile */
    pi = &fresh;
  }
  ra_visit_info_t v;
  if (kinds & RA_VISIT_PAGE) {
    memset(&v, 0, sizeof v);
    v.kind = RA_VISIT_PAGE;
    v.start = pi->start;
    v.size = (size_t)pi->slices * RA_SLICE_SIZE;
    visit_page_fields(&v, ci, pi);
    v.blocks_used = pi->live;
    v.blocks_free = pi->reserved - pi->live;
    v.capacity = pi->capacity;
    v.reserved = pi->reserved;
    v.committed = (size_t)pi->committed_slices * RA_SLICE_SIZE;
    if (!fn(&v, arg)) return false;
  }
  if (!blocks) return true;
  for (size_t k = 0; k < pi->reserved; k++) {
    bool live = !bit_get(bits, k);
    if (!(kinds & (live ? RA_VISIT_BLOCK : RA_VISIT_FREE))) continue;
    memset(&v, 0, sizeof v);
    v.kind = live ? RA_VISIT_BLOCK : RA_VISIT_FREE;
    v.start = pi->start + k * pi->block_size;
    v.size = pi->block_size;
    visit_page_fields(&v, ci, pi);
    v.live = live;
    if (!fn(&v, arg)) return false;
  }
  return true;
}

static bool visit_chunk(const walk_t *w, const chunk_info_t *ci, unsigned kinds, ra_visit_fun *fn, void *arg) {
  ra_visit_info_t v;
  bool huge = ci->kind == RA_CHUNK_HUGE;
  if (kinds & RA_VISIT_CHUNK) {
    memset(&v, 0, sizeof v);
    v.kind = RA_VISIT_CHUNK;
    v.start = ci->chunk;
    v.size = (size_t)ci->chunk_count * RA_CHUNK_SIZE;
    v.arena = ci->arena->index;
    v.slot = ci->slot;
    v.committed = chunk_committed_bytes(ci);
    v.owner = ci->abandoned ? NULL : ci->owner;
    v.huge = huge;
    if (huge) {
      v.blocks_used = 1;
      v.block_size = ci->huge_size;
    }
    for (size_t i = 0; i < ci->npages; i++) {
      v.blocks_used += ci->pages[i].live;
      v.blocks_free += ci->pages[i].reserved - ci->pages[i].live;
    }
    if (!fn(&v, arg)) return false;
  }
  if (huge) {
    if (!(kinds & RA_VISIT_BLOCK)) return true;
    memset(&v, 0, sizeof v);
    v.kind = RA_VISIT_BLOCK;
    v.start = ci->huge_block;
    v.size = v.block_size = ci->huge_size;
    v.arena = ci->arena->index;
    v.slot = ci->slot;
    v.class_index = RA_CLASS_HUGE;
    v.live = v.huge = true;
    return fn(&v, arg);
  }
  if (!(kinds & (RA_VISIT_PAGE | RA_VISIT_BLOCK | RA_VISIT_FREE))) return true;
  for (size_t i = 0; i < ci->npages; i++)
    if (!visit_page(w, ci, &ci->pages[i], kinds, fn, arg)) return false;
  return true;
}

static bool visit_all(unsigned kinds, ra_visit_fun *fn, void *arg) {
  walk_t w;
  delayed_gather(&w.delayed);
  size_t n = _ra_arena_count();
  for (size_t k = 0; k < n; k++) {
    ra_arena_t *a = _ra_arena_at(k);
    if (kinds & RA_VISIT_ARENA) {
      ra_visit_info_t v;
      memset(&v, 0, sizeof v);
      v.kind = RA_VISIT_ARENA;
      v.start = a->base;
      v.size = a->size;
      v.arena = k;
      v.slot = a->chunk_slots;
      if (!fn(&v, arg)) return false;
    }
    if (!(kinds & ~(unsigned)RA_VISIT_ARENA)) continue;
    chunk_info_t ci;
    for (size_t s = 1; chunk_next(&w, a, &s, &ci);)
      if (!visit_chunk(&w, &ci, kinds, fn, arg)) return false;
  }
  return true;
}

bool ra_visit(unsigned kinds, ra_visit_fun *fn, void *arg) {
  _ra_walk_lock();
  bool done = visit_all(kinds, fn, arg);
  _ra_walk_unlock();
  return done;
}

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
  FIELD(ra_page_t, free),         FIELD(ra_page_t, used),         FIELD(ra_page_t, block_size),
  FIELD(ra_page_t, xfree),        FIELD(ra_page_t, capacity),     FIELD(ra_page_t, reserved),
  FIELD(ra_page_t, flags),        FIELD(ra_page_t, class_idx),    FIELD(ra_page_t, slice_count),
  FIELD(ra_page_t, slice_offset), FIELD(ra_page_t, free_is_zero), FIELD(ra_page_t, fresh),
  FIELD(ra_page_t, committed_slices), FIELD(ra_page_t, next),     FIELD(ra_page_t, prev),
  FIELD(ra_page_t, div_magic),    FIELD(ra_page_t, retire_ms),
};
static const field_t heap_fields[] = {
  FIELD(ra_heap_t, direct),     FIELD(ra_heap_t, queues),   FIELD(ra_heap_t, full),
  FIELD(ra_heap_t, delayed_free), FIELD(ra_heap_t, chunks), FIELD(ra_heap_t, chunks_full),
  FIELD(ra_heap_t, next_all),   FIELD(ra_heap_t, prev_all), FIELD(ra_heap_t, next_pool),
  FIELD(ra_heap_t, generation), FIELD(ra_heap_t, slow_calls), FIELD(ra_heap_t, next_page_purge_ms),
  FIELD(ra_heap_t, alive),      FIELD(ra_heap_t, protect_backoff), FIELD(ra_heap_t, protect_skip),
  FIELD(ra_heap_t, clock_ms32), FIELD(ra_heap_t, protect_quick_ms), FIELD(ra_heap_t, parked),
  FIELD(ra_heap_t, parked_ms),
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
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  OUT(o, "{\n  \"format\": \"ramalloc-layout\",\n  \"version\": 1,\n  \"library\": \"ramalloc %d.%d.%d\",\n",
      RAMALLOC_VERSION_MAJOR, RAMALLOC_VERSION_MINOR, RAMALLOC_VERSION_PATCH);
  OUT(o, "  \"reason\": \"%s\",\n  \"pid\": %d,\n  \"unix_time_ms\": %llu,\n", reason, (int)getpid(),
      (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull);
  char cmd[512];
  if (_ra_inspect_command(cmd, sizeof cmd) > 0) {
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
      purge_names[purge == RA_PURGE_RESET ? 0 : 1], _ra_option(RA_OPT_PURGE_DELAY_MS));
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

static const char *page_state_name(const page_info_t *pi) {
  return pi->live == 0 ? "empty" : pi->live == pi->reserved ? "full" : "used";
}

/* With the heap profiler on: the call site holding most of the sampled bytes in [lo, hi). */
static void json_site(out_t *o, uintptr_t lo, uintptr_t hi) {
  size_t bytes;
  uint32_t site = _ra_prof_range_site(lo, hi, &bytes);
  if (site != UINT32_MAX) OUT(o, ", \"site\": %u, \"site_bytes\": %zu", site, bytes);
}

static void emit_text(void *arg, const char *text) { out_str(arg, text); }

static void json_page(out_t *o, const page_info_t *pi, const ra_chunk_t *c, bool first) {
  static const char *const delay_names[] = {"none", "use", "freeing", "never"};
  OUT(o, "%s\n        {\"slice\": %u, \"slices\": %u, \"offset\": %zu, \"descriptor\": %zu, \"class\": %u, "
         "\"block_size\": %u,",
      first ? "" : ",", pi->slice, pi->slices, (size_t)pi->slice * RA_SLICE_SIZE,
      (size_t)((const uint8_t *)pi->desc - (const uint8_t *)c), pi->class_idx, pi->block_size);
  OUT(o, " \"reserved\": %u, \"capacity\": %u, \"used\": %u, \"remote_free\": %u, \"delayed_free\": %u,", pi->reserved,
      pi->capacity, pi->used, pi->remote, pi->delayed);
  OUT(o, " \"live\": %u, \"free\": %u, \"tail\": %zu, \"committed\": %zu, \"state\": \"%s\", \"delay\": \"%s\", "
         "\"flags\": [",
      pi->live, pi->reserved - pi->live, page_tail(pi), (size_t)pi->committed_slices * RA_SLICE_SIZE,
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

static void json_chunk(out_t *o, const chunk_info_t *ci, bool first) {
  const ra_chunk_t *c = ci->chunk;
  ra_arena_t *a = ci->arena;
  OUT(o, "%s\n      {\"slot\": %zu, \"offset\": %zu, \"address\": \"%p\", \"kind\": \"%s\", ", first ? "" : ",",
      ci->slot, (size_t)((const uint8_t *)c - a->base), (const void *)c,
      ci->kind == RA_CHUNK_HUGE ? "huge" : "pages");
  if (ci->owner != NULL) OUT(o, "\"owner\": \"%p\", ", (void *)ci->owner);
  else out_str(o, "\"owner\": null, ");
  OUT(o, "\"abandoned\": %s, \"chunks\": %u, \"committed\": %zu,\n       ", ci->abandoned ? "true" : "false",
      ci->chunk_count, chunk_committed_bytes(ci));
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
      char code = slot_state(a, s, &huge_end);
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

static void json_arena(out_t *o, const walk_t *w, ra_arena_t *a, ra_stats_t *st, bool first) {
  _ra_lock(&a->lock);
  size_t base = (size_t)(uintptr_t)a->base, slots = a->chunk_slots, words = (slots + 63) / 64;
  size_t in_use_off = (size_t)(uintptr_t)a->in_use - base, committed_off = (size_t)(uintptr_t)a->committed - base;
  size_t purgeable_off = (size_t)(uintptr_t)a->purgeable - base, free_ms_off = (size_t)(uintptr_t)a->free_ms - base;
  size_t meta_start = a->meta_start, meta_used = a->meta_used, meta_committed = a->meta_committed;
  size_t chunks_in_use = a->chunks_in_use;
  _ra_unlock(&a->lock);
  stats_add_arena(st, a);
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
  chunk_info_t ci;
  bool any = false;
  for (size_t s = 1; chunk_next(w, a, &s, &ci);) {
    json_chunk(o, &ci, !any);
    stats_add_chunk(st, &ci);
    committed += chunk_committed_bytes(&ci);
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
  walk_t w;
  ra_stats_t st;
  _ra_walk_lock();
  stats_begin(&st);
  delayed_gather(&w.delayed);
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
  stats_end(&st);
  OUT(o, "\n  ],\n  \"delayed_lists_complete\": %s,\n", w.delayed.complete ? "true" : "false");
  json_stats(o, &st);
  out_flush(o);
  _ra_prof_sites_end();
  _ra_walk_unlock();
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

int ra_dump_layout_file(const char *path) { return _ra_inspect_dump_file(path, "call"); }

int _ra_inspect_dump_fd(int fd, const char *reason) { return dump_fd(fd, reason); }

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
      len += p[1] == 'p' ? _ra_fmt(dst + len, cap - len, "%d", (int)getpid()) : _ra_fmt(dst + len, cap - len, "%%");
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
    _ra_write(2, "ramalloc: layout dump file name too long\n");
    return;
  }
  int err = _ra_inspect_dump_file(path, reason);
  if (err != 0) _ra_write(2, "ramalloc: could not write the layout to %s (errno %d)\n", path, err);
  else _ra_verbose("ramalloc: layout written to %s\n", path);
}

void _ra_inspect_at_exit(int stats_fd) {
  if (stats_fd >= 0 && _ra_option(RA_OPT_SHOW_STATS)) ra_stats_print(stats_fd);
  if (_ra_option_str(RA_OPT_DUMP_LAYOUT) != NULL) _ra_inspect_dump_configured(0, "exit");
}
