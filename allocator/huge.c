/* Huge blocks: a block above RA_LARGE_MAX owns a run of whole chunks, taken from an arena, with a
 * header in the run's first slice (kind RA_CHUNK_HUGE) and its own commit: only the header slice
 * and the block's pages are committed. A freed run goes back to its arena with its committed memory
 * described by a header per slot, for the next run or page chunk there to reuse (or a purge to give
 * back).
 *
 * Run layout (offsets from the first chunk of the run):
 *   0                 struct ra_chunk_s (huge_block, huge_size, huge_committed)
 *   RA_SLICE_SIZE     the block, or at its alignment when that is larger (a chunk for >= 4 MiB)
 *   block + size      the guard page (RAMALLOC_GUARD_PAGES), then the run's unused tail */
#include <string.h>

#include "internal.h"

/* Huge runs reuse the committed memory of the free slots they take (a freed huge block's, or a
 * page chunk's): no fresh page fault per page, which is most of the cost of a fresh block. Up to
 * this many chunks (1 GiB); longer runs start from decommitted memory. */
#define HUGE_REUSE_MAX 256

static uint64_t slot_need(size_t j, size_t lo, size_t hi) {
  /* Slices of slot j that intersect the header slice of slot 0 or [lo, hi) (bytes from the run). */
  uint64_t m = j == 0 ? 1 : 0;
  size_t s0 = j * RA_CHUNK_SIZE, s1 = s0 + RA_CHUNK_SIZE;
  size_t a = lo > s0 ? lo : s0, b = hi < s1 ? hi : s1;
  if (a < b) {
    size_t first = (a - s0) / RA_SLICE_SIZE, last = (b - s0 - 1) / RA_SLICE_SIZE;
    m |= (last == 63 ? ~0ULL : ((1ULL << (last + 1)) - 1)) & ~((1ULL << first) - 1);
  }
  return m;
}

/* The committed slices slot j of a taken run still holds (its header says which), or 0. */
static uint64_t slot_have(const ra_chunk_t *c, const uint64_t *had, size_t j) {
  if (!((had[j >> 6] >> (j & 63)) & 1)) return 0;
  const ra_chunk_t *cj = (const ra_chunk_t *)((const uint8_t *)c + j * RA_CHUNK_SIZE);
  return cj->committed | 1;
}

/* Make the header slice and [off, off + usable) of a taken run committed, and keep committed what
 * its slots still hold past the block (with the gap up to it): a huge block that follows a bigger
 * one in the same run then costs no madvise now and no page faults when the next bigger one comes
 * (the run is at most one chunk longer than the block, so this keeps less than RA_CHUNK_SIZE more).
 * The committed range is whole slices from `off`; slices before `off` that are not needed are
 * decommitted. Sets *end to the end of the committed range and *is_zero when no block byte was
 * reused. On failure nothing of the run is committed any more. */
static int huge_fit(ra_chunk_t *c, size_t count, const uint64_t *had, size_t off, size_t usable, size_t *end,
                    bool *is_zero) {
  uint8_t *base = (uint8_t *)c;
  size_t lo = off, hi = _ra_align_up(off + usable, RA_SLICE_SIZE);
  for (size_t j = count; j-- > 0;) {
    uint64_t have = slot_have(c, had, j);
    if (have == 0) continue;
    size_t top = j * RA_CHUNK_SIZE + (size_t)(64 - __builtin_clzll(have)) * RA_SLICE_SIZE;
    if (top > hi) hi = top;
    break;
  }
  bool zero = true, fresh = false;
  for (size_t j = 0; j < count; j++) /* a freed huge block left these inaccessible */
    if (slot_have(c, had, j) != 0) _ra_mem_unprotect_slices((ra_chunk_t *)(base + j * RA_CHUNK_SIZE), ~0ULL);
  for (size_t j = 0; j < count; j++) {
    uint64_t have = slot_have(c, had, j), need = slot_need(j, lo, hi), block = slot_need(j, lo, off + usable);
    if (have & ~need) _ra_mem_decommit_slices((ra_chunk_t *)(base + j * RA_CHUNK_SIZE), have & ~need);
    if (have & block & (j == 0 ? ~1ULL : ~0ULL)) zero = false;
    if (block & ~have) fresh = true;
  }
  if (fresh) _ra_purge_pressure(); /* fresh pages are coming (this run's slots are ours: no purge touches them) */
  /* Commit the missing pieces, merged across slices and slots. Slice 0 of every slot past the
   * first is block memory, so a slot's header is read (slot_have) before any of it changes. */
  size_t total = count * RA_SLICES, g = 0, fail_at = total;
  int err = RA_OS_OK;
  while (g < total) {
    size_t j = g / RA_SLICES, sl = g % RA_SLICES;
    bool need = (slot_need(j, lo, hi) >> sl) & 1, have = (slot_have(c, had, j) >> sl) & 1;
    if (!need || have) {
      g++;
      continue;
    }
    size_t e = g;
    while (e < total && ((slot_need(e / RA_SLICES, lo, hi) >> (e % RA_SLICES)) & 1) &&
           !((slot_have(c, had, e / RA_SLICES) >> (e % RA_SLICES)) & 1))
      e++;
    size_t a = g * RA_SLICE_SIZE, b = e * RA_SLICE_SIZE;
    if (a > 0 && a < lo) a = lo;
    if (b > hi) b = hi;
    err = _ra_mem_commit(base + a, b - a);
    if (err != RA_OS_OK) {
      fail_at = g;
      break;
    }
    g = e;
  }
  if (err != RA_OS_OK) {
    /* Give back everything committed: reused slices whole, and what this call committed. */
    for (size_t j = 0; j < count; j++) {
      uint64_t need = slot_need(j, lo, hi), have = slot_have(c, had, j) & need;
      for (size_t sl = 0; sl < RA_SLICES; sl++) {
        size_t gg = j * RA_SLICES + sl;
        if (!((need >> sl) & 1) || (!((have >> sl) & 1) && gg >= fail_at)) continue;
        size_t a = gg * RA_SLICE_SIZE, b = a + RA_SLICE_SIZE;
        if (!((have >> sl) & 1)) {
          if (a > 0 && a < lo) a = lo;
          if (b > hi) b = hi;
        }
        _ra_mem_decommit(base + a, b - a);
      }
    }
    return err;
  }
  *end = hi;
  *is_zero = zero;
  return RA_OS_OK;
}

/* RAMALLOC_GUARD_PAGES: bytes of the inaccessible page after a huge block that must be protected
 * (overcommit mode), or 0. In protect mode, and on Windows, the page after the block is never
 * committed (guard runs do not reuse memory, and do not resize in place), so it faults already;
 * only its room in the run is needed. */
static size_t huge_guard_size(void) {
  if (!_ra_guard_pages || _ra_os_commit_mode() != RA_COMMIT_OVERCOMMIT) return 0;
  return _ra_os_info()->page_size;
}

/* A block of `size` bytes (> RA_LARGE_MAX) in a run of chunks of its own, aligned to `align`
 * (a power of two). The block starts at slice 1, or at `align` from the chunk start when that is
 * larger; for align >= RA_CHUNK_SIZE it starts exactly one chunk in, where (p - 1) & ~MASK still
 * finds the header. Only the header slice and the block's pages are committed. */
void *_ra_huge_alloc(size_t size, size_t align, bool *is_zero) {
  const size_t page = _ra_os_info()->page_size;
  size_t off = align <= RA_SLICE_SIZE ? RA_SLICE_SIZE : align < RA_CHUNK_SIZE ? align : RA_CHUNK_SIZE;
  size_t usable = _ra_align_up(size, page);
  if (usable < size || usable > ((size_t)1 << (RA_ADDR_BITS - 1))) return NULL;
  size_t guard = huge_guard_size();
  size_t count = (off + usable + (_ra_guard_pages ? page : 0) + RA_CHUNK_SIZE - 1) / RA_CHUNK_SIZE;
  ra_arena_t *arena;
  size_t index;
  bool was_committed;
  uint64_t had[HUGE_REUSE_MAX / 64];
  bool reuse = count <= HUGE_REUSE_MAX && !_ra_guard_pages;
  ra_chunk_t *c = _ra_arena_chunk_alloc(count, align >= RA_CHUNK_SIZE ? align : 0, true, reuse ? had : NULL,
                                        &arena, &index, &was_committed);
  if (c == NULL) return NULL;
  uint8_t *block = (uint8_t *)c + off;
  size_t end = off + usable;
  bool zero = true;
  int err;
  if (reuse) {
    err = huge_fit(c, count, had, off, usable, &end, &zero);
  } else if (off == RA_SLICE_SIZE) {
    err = _ra_mem_commit(c, RA_SLICE_SIZE + usable);
  } else {
    err = _ra_mem_commit(c, RA_SLICE_SIZE);
    if (err == RA_OS_OK && (err = _ra_mem_commit(block, usable)) != RA_OS_OK) _ra_mem_decommit(c, RA_SLICE_SIZE);
  }
  if (err == RA_OS_OK && guard > 0 && (err = _ra_mem_protect(block + usable, guard, RA_PROT_NONE)) != RA_OS_OK) {
    _ra_mem_decommit(c, RA_SLICE_SIZE);
    _ra_mem_decommit(block, usable);
  }
  if (err != RA_OS_OK) {
    _ra_arena_chunk_free(arena, index, count, true, 0);
    return NULL;
  }
  c->magic = RA_CHUNK_MAGIC;
  c->arena = arena;
  c->index = (uint32_t)index;
  c->chunk_count = (uint32_t)count;
  c->kind = RA_CHUNK_HUGE;
  c->committed = 1;
  c->noaccess = 0;
  c->huge_block = block;
  c->huge_size = usable;
  c->huge_committed = end - off;
  for (size_t i = 0; i <= RA_SLICES; i++) {
    c->pages[i].class_idx = RA_CLASS_HUGE;
    atomic_store_explicit(&c->pages[i].flags, RA_PAGE_HUGE, memory_order_relaxed);
    c->pages[i].free_lim = 0; /* the descriptor may be left from a page chunk */
  }
  atomic_store_explicit(&c->heap, NULL, memory_order_relaxed); /* no owner: publish makes the map entry 1 */
  _ra_arena_chunk_publish(c);
  *is_zero = zero;
  return block;
}

/* A freed huge block's run goes back to its arena. With a purge delay, its committed memory stays
 * committed and becomes free slots like any other, each with a header (written into the freed
 * block) that says which of its slices are committed: the next run or page chunk there reuses
 * them, and a purge gives them back after the delay. Without a delay it is decommitted at once. */
void _ra_huge_free(ra_chunk_t *c) {
  ra_arena_t *arena = c->arena;
  size_t index = c->index, count = c->chunk_count;
  uint8_t *base = (uint8_t *)c;
  uint8_t *block = c->huge_block;
  size_t off = (size_t)(block - base), committed = c->huge_committed;
  /* Unpublished under the arena lock: a walk (inspect.c) reads a huge chunk's header holding that
   * lock after seeing the chunk-map bit, so the header stays committed while it reads. */
  _ra_lock(&arena->lock);
  _ra_arena_chunk_unpublish(c);
  _ra_unlock(&arena->lock);
  if (_ra_purge_delay() == 0 || count > HUGE_REUSE_MAX || _ra_guard_pages) {
    size_t guard = huge_guard_size();
    if (guard > 0) _ra_mem_protect(block + c->huge_size, guard, RA_PROT_READWRITE);
    if (off == RA_SLICE_SIZE) {
      _ra_mem_decommit(c, RA_SLICE_SIZE + committed);
    } else {
      _ra_mem_decommit(block, committed);
      _ra_mem_decommit(c, RA_SLICE_SIZE);
    }
    _ra_arena_chunk_free(arena, index, count, true, 0);
    return;
  }
  /* Whole slices only: the part of a last slice that is committed goes back now. */
  size_t end = off + committed, whole = end & ~(RA_SLICE_SIZE - 1);
  if (whole < off) whole = off;
  if (end > whole) _ra_mem_decommit(base + whole, end - whole);
  size_t kept = 0;
  bool protect = c->huge_size <= _ra_protect_freed; /* read before the header is rewritten */
  for (size_t j = 0; j < count; j++) {
    uint64_t m = slot_need(j, off, whole); /* slot 0 always holds its header slice */
    if (!(m & 1)) break; /* the committed range is contiguous: no later slot holds any */
    ra_chunk_t *cj = (ra_chunk_t *)(base + j * RA_CHUNK_SIZE);
    cj->committed = m;
    cj->dirty = m;
    /* The block's slices fault when used, until the slot is reused or purged; not the slot's first
     * slice, which holds this header from now on. */
    cj->noaccess = protect ? _ra_mem_protect_slices(cj, m & ~1ULL, RA_PROT_NONE) : 0;
    kept = j + 1;
  }
  /* The slice the block ends in, given back just now: in overcommit mode it would read as zero, so
   * it is made inaccessible too (in protect mode decommitted memory is already). Its slot must be
   * one that keeps a header, and the slice must not be that header. */
  size_t tail = whole / RA_SLICE_SIZE;
  if (protect && end > whole && tail / RA_SLICES < kept && tail % RA_SLICES != 0 &&
      _ra_os_commit_mode() == RA_COMMIT_OVERCOMMIT) {
    ra_chunk_t *ct = (ra_chunk_t *)(base + (tail / RA_SLICES) * RA_CHUNK_SIZE);
    ct->noaccess |= _ra_mem_protect_slices(ct, 1ULL << (tail % RA_SLICES), RA_PROT_NONE);
  }
  _ra_arena_run_free(arena, index, count, kept, _ra_now_ms());
}

/* Resize a huge block in place, within its run: commit more, or give back a tail that shrank by
 * more than a quarter. False when the run is too small. */
bool _ra_huge_resize(ra_chunk_t *c, size_t size) {
  const size_t page = _ra_os_info()->page_size;
  if (_ra_guard_pages) return false; /* the guard page would have to move: realloc moves the block */
  size_t room = c->chunk_count * RA_CHUNK_SIZE - (size_t)(c->huge_block - (uint8_t *)c);
  size_t usable = _ra_align_up(size, page);
  if (usable < size || usable > room) return false;
  if (usable > c->huge_committed) {
    if (_ra_mem_commit(c->huge_block + c->huge_committed, usable - c->huge_committed) != RA_OS_OK) return false;
    c->huge_committed = usable;
  } else if (c->huge_committed - usable > c->huge_committed / 4) {
    _ra_mem_decommit(c->huge_block + usable, c->huge_committed - usable);
    c->huge_committed = usable;
  }
  c->huge_size = usable;
  return true;
}
