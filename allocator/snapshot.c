/* The snapshot walk (snapshot.h): reading rules there. */
#include <string.h>

#include "snapshot.h"

#define LIST_STEPS_MAX ((size_t)1 << 20) /* a racy list read stops after this many links */

_Static_assert(RA_MEDIUM_SLICES * RA_SLICE_SIZE / (RA_SMALL_MAX + 1) <= RA_SNAPSHOT_BLOCKS, "medium pages fit the bitmap");

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
  if (slot >= 1 && slot < a->chunk_slots && _ra_bit_get(a->in_use, slot) && _ra_chunk_map_has((uintptr_t)c) &&
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

static void delayed_gather_heap(ra_heap_t *heap, void *arg) {
  ra_delayed_t *d = arg;
  const held_t none = {NULL, NULL};
  const void *b = atomic_load_explicit(&heap->delayed_free, memory_order_acquire);
  for (size_t steps = 0; b != NULL && !d->overflow; steps++) {
    const void *next;
    if (d->n == RA_SNAPSHOT_DELAYED) {
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
  /* Shell sort (gaps 3k+1): qsort may allocate, and n is at most RA_SNAPSHOT_DELAYED. */
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

void _ra_snapshot_begin(ra_snapshot_t *w) {
  ra_delayed_t *d = &w->delayed;
  d->n = 0;
  d->overflow = false;
  d->complete = true;
  _ra_heap_walk_lock();
  _ra_heap_foreach(delayed_gather_heap, d);
  _ra_heap_walk_unlock();
  if (!d->overflow) sort_addresses(d->addr, d->n);
}

/* ---- Snapshots of chunks and pages --------------------------------------------------------------- */

/* Whether block k was counted already (its bit set); when not, its bit is set now. No bitmap: never. */
static inline bool seen_before(uint64_t *bits, size_t k) {
  if (bits == NULL) return false;
  if (_ra_bit_get(bits, k)) return true;
  bits[k >> 6] |= 1ULL << (k & 63);
  return false;
}

/* Follow a free list inside one page to its end (NULL, or the chunk's base: _ra_list_end), counting
 * the blocks (and setting their bits) while the links stay on block boundaries of the carved part
 * and in committed slices. Returns the blocks newly seen. (The delayed lists, which span chunks,
 * end in NULL; link_read refuses a chunk's base met there.) */
static uint32_t list_scan(const held_t *h, const void *b, const ra_page_info_t *pi, uint64_t *bits) {
  uintptr_t lo = (uintptr_t)pi->start, hi = lo + (uintptr_t)pi->capacity * pi->block_size;
  uint32_t n = 0;
  for (size_t steps = 0; !_ra_list_end(b) && steps <= pi->reserved; steps++) {
    uintptr_t u = (uintptr_t)b;
    if (u < lo || u >= hi || (u - lo) % pi->block_size != 0) break;
    size_t k = (u - lo) / pi->block_size;
    if (seen_before(bits, k)) break; /* a cycle in a list read while it changed */
    n++;
    const void *next;
    if (!link_read(h, b, &next)) break;
    b = next;
  }
  return n;
}

/* Blocks of this page waiting on its owner's delayed list. */
static uint32_t page_delayed(const ra_snapshot_t *w, const held_t *h, ra_heap_t *owner, const ra_page_info_t *pi,
                             uint64_t *bits) {
  uintptr_t lo = (uintptr_t)pi->start, hi = lo + (uintptr_t)pi->capacity * pi->block_size;
  uint32_t n = 0;
  const ra_delayed_t *d = &w->delayed;
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
      if (!seen_before(bits, k)) n++;
    }
    return n;
  }
  if (owner == NULL) return 0;
  const void *b = atomic_load_explicit(&owner->delayed_free, memory_order_acquire);
  for (size_t steps = 0; b != NULL && steps < LIST_STEPS_MAX; steps++) {
    uintptr_t u = (uintptr_t)b;
    if (u >= lo && u < hi && (u - lo) % pi->block_size == 0) {
      size_t k = (u - lo) / pi->block_size;
      if (!seen_before(bits, k)) n++;
    }
    const void *next;
    if (!link_read(h, b, &next)) break;
    b = next;
  }
  return n;
}

/* Read the page whose head descriptor is c->pages[idx] (arena and chunk locks held). With `bits`
 * (RA_SNAPSHOT_BLOCKS bits), also mark every free block: the local and remote free lists, the delayed
 * frees, and the part not carved yet; live is then what is left unmarked. */
static void page_read(const ra_snapshot_t *w, const held_t *h, ra_chunk_t *c, size_t idx, ra_heap_t *owner,
                      ra_page_info_t *pi, uint64_t *bits) {
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
  if (pi->block_size == 0 || pi->class_idx >= RA_CLASS_COUNT || (size_t)pi->reserved > RA_SNAPSHOT_BLOCKS) {
    pi->block_size = pi->block_size ? pi->block_size : 1;
    pi->reserved = pi->capacity = pi->used = 0;
  }
  if (pi->capacity > pi->reserved) pi->capacity = pi->reserved;
  uint64_t span = (pi->slices >= 64 ? ~0ULL : (1ULL << pi->slices) - 1) << idx;
  pi->committed_slices = (uint32_t)__builtin_popcountll(c->committed & span);
  if (bits != NULL) {
    memset(bits, 0, RA_SNAPSHOT_BLOCKS / 8);
    for (size_t k = pi->capacity; k < pi->reserved && k < RA_SNAPSHOT_BLOCKS; k++) bits[k >> 6] |= 1ULL << (k & 63);
    list_scan(h, pg->free, pi, bits);
  }
  pi->remote = list_scan(h, _ra_xfree_list(xf), pi, bits);
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
static char slice_state(const ra_chunk_info_t *ci, size_t i, const ra_page_info_t *page) {
  bool committed = (ci->committed >> i) & 1;
  if (i == 0) return 'M';
  if (page != NULL) return !committed ? 'p' : page->live > 0 ? 'U' : 'E';
  if (!committed) return '.';
  if (!((ci->dirty >> i) & 1)) return 'C';
  if (((ci->purge >> i) & 1) || _ra_purge_delay() < 0) return 'F';
  return 'R';
}

/* The state code of slot s of an arena (arena lock held); *huge_end is the slot after the last
 * huge run seen, for its continuation slots:
 *   A arena header and metadata   P chunk of pages   a chunk of pages, abandoned
 *   H first chunk of a huge block   h the rest of its run   u in use, being set up or given back
 *   F free, committed, waiting for a purge   R free, reset   . free, reserved only */
char _ra_snapshot_slot_state(ra_arena_t *a, size_t s, size_t *huge_end) {
  if (s == 0) return 'A';
  if (_ra_bit_get(a->in_use, s)) {
    if (s < *huge_end) return 'h';
    ra_chunk_t *c = (ra_chunk_t *)(a->base + s * RA_CHUNK_SIZE);
    if (!_ra_chunk_map_has((uintptr_t)c) || c->magic != RA_CHUNK_MAGIC) return 'u';
    if (c->kind == RA_CHUNK_HUGE) {
      *huge_end = s + c->chunk_count;
      return 'H';
    }
    return atomic_load_explicit(&c->heap, memory_order_relaxed) == NULL ? 'a' : 'P';
  }
  if (!_ra_bit_get(a->committed, s)) return '.';
  return _ra_bit_get(a->purgeable, s) ? 'F' : 'R';
}

/* Read the chunk at slot s (arena lock held). False when no published chunk starts there. */
static bool chunk_read(const ra_snapshot_t *w, ra_arena_t *a, size_t s, ra_chunk_info_t *ci) {
  ra_chunk_t *c = (ra_chunk_t *)(a->base + s * RA_CHUNK_SIZE);
  if (!_ra_bit_get(a->in_use, s) || !_ra_chunk_map_has((uintptr_t)c) || c->magic != RA_CHUNK_MAGIC) return false;
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
    ra_page_info_t *pi = &ci->pages[ci->npages++];
    page_read(w, &h, c, idx, ci->owner, pi, NULL);
    for (size_t j = idx; j < idx + pi->slices; j++) ci->slices[j] = slice_state(ci, j, pi);
    idx += pi->slices;
  }
  _ra_chunk_unlock(c);
  return true;
}

/* The next published chunk at or after slot *s of arena a, read into ci; *s moves past it. */
bool _ra_snapshot_chunk_next(const ra_snapshot_t *w, ra_arena_t *a, size_t *s, ra_chunk_info_t *ci) {
  bool found = false;
  _ra_heap_walk_lock();
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
  _ra_heap_walk_unlock();
  return found;
}

/* Read one page again, with its block bitmap, if the chunk and the page are still there. */
bool _ra_snapshot_page_reread(const ra_snapshot_t *w, const ra_chunk_info_t *ci, size_t idx, ra_page_info_t *pi, uint64_t *bits) {
  ra_arena_t *a = ci->arena;
  ra_chunk_t *c = ci->chunk;
  bool ok = false;
  _ra_heap_walk_lock();
  _ra_lock(&a->lock);
  if (_ra_bit_get(a->in_use, ci->slot) && _ra_chunk_map_has((uintptr_t)c) && c->magic == RA_CHUNK_MAGIC &&
      c->kind == RA_CHUNK_PAGES) {
    held_t h = {a, c};
    _ra_chunk_lock(c);
    const ra_page_t *pg = &c->pages[idx];
    if (!(atomic_load_explicit(&pg->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE) && pg->slice_offset == 0) {
      page_read(w, &h, c, idx, atomic_load_explicit(&c->heap, memory_order_acquire), pi, bits);
      ok = pi->reserved <= RA_SNAPSHOT_BLOCKS;
    }
    _ra_chunk_unlock(c);
  }
  _ra_unlock(&a->lock);
  _ra_heap_walk_unlock();
  return ok;
}

size_t _ra_snapshot_page_tail(const ra_page_info_t *pi) {
  size_t span = (size_t)pi->slices * RA_SLICE_SIZE, used = (size_t)pi->reserved * pi->block_size;
  return span > used ? span - used : 0;
}

/* Bytes a request of class i may be short of its block: block size minus the smallest request
 * that maps to the class (0 for class 0, which serves malloc(0)). */
size_t _ra_snapshot_class_slack(size_t i) { return _ra_class_size[i] - (i == 0 ? 0 : _ra_class_size[i - 1] + 1); }

size_t _ra_snapshot_chunk_committed(const ra_chunk_info_t *ci) {
  if (ci->kind == RA_CHUNK_HUGE) return RA_SLICE_SIZE + ci->huge_committed;
  return (size_t)__builtin_popcountll(ci->committed) * RA_SLICE_SIZE;
}
