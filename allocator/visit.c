/* ra_visit: a callback per arena, chunk, page and block, from a snapshot walk (snapshot.h). The
 * callback runs with no lock held; a page's blocks come from a fresh read of the page, so that its
 * counts and its blocks agree. */
#include <string.h>

#include "snapshot.h"

static void visit_page_fields(ra_visit_info_t *v, const ra_chunk_info_t *ci, const ra_page_info_t *pi) {
  v->arena = ci->arena->index;
  v->slot = ci->slot;
  v->slice = pi->slice;
  v->class_index = pi->class_idx;
  v->block_size = pi->block_size;
  v->owner = ci->abandoned ? NULL : ci->owner;
}

/* A page, then its blocks: the bitmap comes from a fresh read so that the page's counts and its
 * blocks agree. */
static bool visit_page(const ra_snapshot_t *w, const ra_chunk_info_t *ci, const ra_page_info_t *seen, unsigned kinds,
                       ra_visit_fun *fn, void *arg) {
  uint64_t bits[RA_SNAPSHOT_BLOCKS / 64];
  ra_page_info_t fresh;
  const ra_page_info_t *pi = seen;
  bool blocks = (kinds & (RA_VISIT_BLOCK | RA_VISIT_FREE)) != 0;
  if (blocks) {
    if (!_ra_snapshot_page_reread(w, ci, seen->slice, &fresh, bits)) return true; /* gone meanwhile */
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
    bool live = !_ra_bit_get(bits, k);
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

static bool visit_chunk(const ra_snapshot_t *w, const ra_chunk_info_t *ci, unsigned kinds, ra_visit_fun *fn, void *arg) {
  ra_visit_info_t v;
  bool huge = ci->kind == RA_CHUNK_HUGE;
  if (kinds & RA_VISIT_CHUNK) {
    memset(&v, 0, sizeof v);
    v.kind = RA_VISIT_CHUNK;
    v.start = ci->chunk;
    v.size = (size_t)ci->chunk_count * RA_CHUNK_SIZE;
    v.arena = ci->arena->index;
    v.slot = ci->slot;
    v.committed = _ra_snapshot_chunk_committed(ci);
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

bool ra_visit(unsigned kinds, ra_visit_fun *fn, void *arg) {
  ra_snapshot_t w;
  _ra_snapshot_begin(&w);
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
    ra_chunk_info_t ci;
    for (size_t s = 1; _ra_snapshot_chunk_next(&w, a, &s, &ci);)
      if (!visit_chunk(&w, &ci, kinds, fn, arg)) return false;
  }
  return true;
}