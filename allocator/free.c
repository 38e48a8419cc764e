/* free and the questions asked of a pointer (usable size, ownership). A pointer is trusted only
 * after the chunk map says a chunk header starts where it points into. The fast path then pushes
 * the block on its page's free list when the calling thread owns the chunk, the page has no
 * special state, and the block's first word does not look like a free-list link (a double free
 * would); everything else goes through locate(), which names what is wrong with a bad pointer. */
#include <errno.h>

#include "internal.h"

/* The start of the block holding p, in a page that has aligned (interior) pointers. */
void *_ra_free_block_start(ra_chunk_t *chunk, ra_page_t *page, const void *p) {
  uint8_t *start = _ra_page_start(chunk, page);
  size_t off = (size_t)((const uint8_t *)p - start);
  return start + off - off % page->block_size;
}

/* ---- What a pointer designates --------------------------------------------------------------------- */

typedef struct located_s {
  ra_chunk_t *chunk;
  ra_page_t *page;   /* NULL for a huge block */
  ra_block_t *block; /* the block's start */
} located_t;

#define LOCATE_OK (-1)

/* A pointer in an arena but not in a chunk with a header: arena metadata, a huge block freed
 * already, the inside of a live huge block past its first chunk, or nothing ramalloc handed out. */
static int locate_outside_chunks(const void *p) {
  ra_arena_t *a = _ra_arena_containing(p);
  if (a == NULL) return RA_MISUSE_FOREIGN;
  uintptr_t off = (uintptr_t)p - (uintptr_t)a->base;
  if (off < RA_CHUNK_SIZE) return RA_MISUSE_METADATA;
  if (ra_owns(p)) return RA_MISUSE_INTERIOR;
  size_t slot = (off - 1) / RA_CHUNK_SIZE;
  uintptr_t in_slot = off - slot * RA_CHUNK_SIZE;
  _ra_lock(&a->lock);
  bool slot_free = !((a->in_use[slot >> 6] >> (slot & 63)) & 1);
  _ra_unlock(&a->lock);
  /* Where a huge block starts (slice 1, or a power-of-two alignment up to the chunk size): a huge
   * block freed before. */
  if (slot_free && in_slot >= RA_SLICE_SIZE && (in_slot & (in_slot - 1)) == 0) return RA_MISUSE_DOUBLE_FREE;
  return RA_MISUSE_FOREIGN;
}

/* Fill *out with the block p designates, or return what is wrong with p (a ra_misuse_t). */
static int locate(const void *p, located_t *out) {
  ra_chunk_t *chunk = _ra_chunk_of(p);
  if (p == NULL) return RA_MISUSE_FOREIGN;
  if (!_ra_chunk_map_has((uintptr_t)chunk)) return locate_outside_chunks(p);
  const uint8_t *u = p;
  out->chunk = chunk;
  out->page = NULL;
  if (chunk->kind == RA_CHUNK_HUGE) {
    const uint8_t *b = chunk->huge_block;
    if (u == b) {
      out->block = (ra_block_t *)b;
      return LOCATE_OK;
    }
    if (u > b && u < b + chunk->huge_size) return RA_MISUSE_INTERIOR;
    return u < (uint8_t *)chunk + RA_SLICE_SIZE ? RA_MISUSE_METADATA : RA_MISUSE_FOREIGN;
  }
  size_t idx = _ra_slice_index(chunk, p);
  if (idx == 0 || idx == RA_SLICES) return RA_MISUSE_METADATA; /* this chunk's header, or the next's */
  ra_page_t *page = _ra_page_of(chunk, p);
  uint8_t flags = atomic_load_explicit(&page->flags, memory_order_relaxed);
  if (flags & RA_PAGE_NOT_PAGE) {
    /* A free slice: at its start, a large block or page freed before. */
    return ((uintptr_t)p & (RA_SLICE_SIZE - 1)) == 0 ? RA_MISUSE_DOUBLE_FREE : RA_MISUSE_FOREIGN;
  }
  ra_block_t *block = (flags & RA_PAGE_HAS_ALIGNED) ? _ra_free_block_start(chunk, page, p) : (ra_block_t *)p;
  size_t off = (size_t)((uint8_t *)block - _ra_page_start(chunk, page));
  /* `reserved` is fixed for the page's life; past `capacity`, nothing was carved, so nothing was
   * ever handed out there. */
  if (off / page->block_size >= page->reserved) return RA_MISUSE_FOREIGN;
  if (off / page->block_size >= _ra_page_capacity(page)) return RA_MISUSE_FOREIGN;
  if (off % page->block_size != 0) return RA_MISUSE_INTERIOR;
  out->page = page;
  out->block = block;
  return LOCATE_OK;
}

/* Is `block` on a free list the calling (owner) thread can see: the page's own list, its remote
 * list, the heap's delayed list? Only asked when the block's first word looks like a link. Each
 * walk stops at its list's end and at a link no sound list has (one that leaves the chunk; on the
 * delayed list, one that is no block of a chunk of pages), so a corrupted list cannot lead it
 * astray. */
static bool block_is_free(ra_heap_t *heap, ra_page_t *page, const ra_block_t *block) {
  size_t limit = page->capacity;
  for (ra_block_t *b = page->free; !_ra_list_end(b) && limit-- > 0;) {
    if (b == block) return true;
    ra_block_t *next = _ra_block_next(b);
    if (!_ra_next_is_sane(b, next)) break;
    b = next;
  }
  limit = page->capacity;
  for (ra_block_t *b = _ra_xfree_list(atomic_load_explicit(&page->xfree, memory_order_acquire));
       !_ra_list_end(b) && limit-- > 0;) {
    if (b == block) return true;
    ra_block_t *next = _ra_block_next(b);
    if (!_ra_next_is_sane(b, next)) break;
    b = next;
  }
  for (ra_block_t *b = atomic_load_explicit(&heap->delayed_free, memory_order_acquire); b != NULL;) {
    if (b == block) return true;
    ra_block_t *next = _ra_block_next(b);
    if (next != NULL && !_ra_heap_delayed_link_ok(next)) break;
    b = next;
  }
  return false;
}

/* A located block that looks free: is it, for the thread that owns its page? (Frees from other
 * threads cannot read the owner's list; a double free from another thread goes undetected here,
 * and the owner may find it later as a corrupted remote list.) */
static bool is_double_free(const located_t *at) {
  if (at->page == NULL || !_ra_block_looks_free(at->block)) return false;
  ra_heap_t *heap = _ra_heap_current();
  if (atomic_load_explicit(&at->chunk->heap, memory_order_acquire) != heap) return false;
  return block_is_free(heap, at->page, at->block);
}

/* Find the block p designates for free or realloc; report a misuse and return false otherwise. */
bool _ra_free_block_for(const void *p, bool is_realloc, ra_chunk_t **chunk, ra_page_t **page, ra_block_t **block) {
  located_t at;
  int r = locate(p, &at);
  if (r == LOCATE_OK && is_double_free(&at)) r = RA_MISUSE_DOUBLE_FREE;
  if (r != LOCATE_OK) {
    _ra_report_misuse(is_realloc, (ra_misuse_t)r, p);
    return false;
  }
  *chunk = at.chunk;
  *page = at.page;
  *block = at.block;
  return true;
}

/* ---- free ----------------------------------------------------------------------------------------- */

/* A remote free into a page in the full queue (RA_DELAY_USE when last looked): the block goes on
 * the owner heap's delayed list, so the owner notices the page has room again. The state may have
 * changed since; then the block goes on xfree after all. */
static RA_NOINLINE void free_delayed(ra_chunk_t *chunk, ra_page_t *page, ra_block_t *block, uintptr_t tf) {
  uintptr_t nt;
  bool delayed;
  do {
    delayed = (tf & RA_XFREE_STATE) == RA_DELAY_USE;
    if (delayed) {
      nt = (tf & ~RA_XFREE_STATE) | RA_DELAY_FREEING;
    } else {
      _ra_block_set_next(block, _ra_xfree_list(tf));
      nt = ((tf & ~RA_XFREE_LIST) + RA_XFREE_ONE) | (uintptr_t)block;
    }
  } while (!atomic_compare_exchange_weak_explicit(&page->xfree, &tf, nt, memory_order_release,
                                                  memory_order_relaxed));
  if ((tf & RA_XFREE_STATE) == RA_DELAY_NEVER) _ra_purge_notify(); /* an abandoned page: a sweep collects it */
  if (!delayed) return;
  /* While the state is FREEING the owner cannot abandon the page, so the heap stays valid. */
  ra_heap_t *heap = atomic_load_explicit(&chunk->heap, memory_order_acquire);
  ra_block_t *head = atomic_load_explicit(&heap->delayed_free, memory_order_relaxed);
  do {
    _ra_block_set_next(block, head);
  } while (!atomic_compare_exchange_weak_explicit(&heap->delayed_free, &head, block, memory_order_release,
                                                  memory_order_relaxed));
  tf = atomic_load_explicit(&page->xfree, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(&page->xfree, &tf, (tf & ~RA_XFREE_STATE) | RA_DELAY_NONE,
                                                memory_order_release, memory_order_relaxed)) {
  }
}

/* Another thread's block: push it on the page's atomic list, counted (RA_XFREE_*), or, when the
 * page is full, on the owner heap's delayed list (free_delayed). */
static inline void free_remote(ra_chunk_t *chunk, ra_page_t *page, ra_block_t *block) {
  uintptr_t tf = atomic_load_explicit(&page->xfree, memory_order_relaxed);
  uintptr_t nt;
  do {
    if (RA_UNLIKELY((tf & RA_XFREE_STATE) == RA_DELAY_USE)) {
      free_delayed(chunk, page, block, tf);
      return;
    }
    _ra_block_set_next(block, _ra_xfree_list(tf));
    nt = ((tf & ~RA_XFREE_LIST) + RA_XFREE_ONE) | (uintptr_t)block;
  } while (!atomic_compare_exchange_weak_explicit(&page->xfree, &tf, nt, memory_order_release,
                                                  memory_order_relaxed));
  if (RA_UNLIKELY((tf & RA_XFREE_STATE) == RA_DELAY_NEVER)) _ra_purge_notify(); /* an abandoned page: a sweep collects it */
}

#if RA_ANNOTATE
/* A huge block is about to go back to its arena: out of bounds, except the first slice of each
 * chunk it covers past its first, where a chunk header may start once the chunks are reused. */
static void huge_freed(ra_chunk_t *chunk) {
  uint8_t *b = chunk->huge_block;
  ra_ann_free_block(b, chunk->huge_size);
  for (size_t k = 1; k < chunk->chunk_count; k++) {
    uint8_t *c = (uint8_t *)chunk + k * RA_CHUNK_SIZE;
    if (c + RA_SLICE_SIZE > b && c < b + chunk->huge_size) ra_ann_metadata(c, RA_SLICE_SIZE);
  }
}
#endif

/* A free from a thread that does not own the block's page, in the common case: the pointer is at
 * a block boundary in the head slice of a plain page (no aligned blocks, not huge) whose chunk
 * has an owner. These checks are the ones locate() makes for such a pointer (the page's
 * block_size, div_mul and reserved are fixed for its life, so any thread may read them), and a
 * double free is not looked for when the caller is not the owner (is_double_free), so nothing is
 * lost by skipping the general path. False when any check fails: the caller takes that path. */
static inline bool free_remote_fast(void *p) {
  ra_chunk_t *chunk = _ra_chunk_of(p);
  if (!_ra_chunk_map_has((uintptr_t)chunk)) return false;
  size_t idx = _ra_slice_index(chunk, p);
  if (idx - 1 >= RA_SLICES - 1) return false; /* the header slice, or the next chunk's */
  ra_page_t *page = &chunk->pages[idx];
  if (atomic_load_explicit(&page->flags, memory_order_relaxed) & ~(uint8_t)RA_PAGE_IN_FULL) return false;
  uint32_t off = (uint32_t)((uintptr_t)p & (RA_SLICE_SIZE - 1));
  if (_ra_block_mul(page, off) >= _ra_block_lim(page, _ra_page_capacity(page))) return false; /* interior, or never handed out */
  ra_heap_t *owner = atomic_load_explicit(&chunk->heap, memory_order_acquire);
  ra_heap_t *heap = _ra_heap_current();
  if (owner == NULL || owner == heap) return false;
  if (RA_UNLIKELY(heap == &_ra_heap_empty)) _ra_heap_note_free(owner);
  ra_block_t *block = p;
  RA_ANN_FREE_BLOCK(block, page->block_size);
  free_remote(chunk, page, block);
  return true;
}

/* Everything the fast path does not do: huge blocks, aligned pointers, pages in the full list,
 * frees from other threads, blocks that look free already, and pointers that are not blocks. */
static RA_NOINLINE void free_generic(void *p) {
  if (p == NULL) return;
  ra_chunk_t *chunk;
  ra_page_t *page;
  ra_block_t *block;
  if (!_ra_free_block_for(p, false, &chunk, &page, &block)) return; /* reported; warn mode: ignored */
  if (page != NULL && RA_UNLIKELY(atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_CANARY) &&
      !_ra_secure_free(page, block))
    return; /* reported; warn mode: refused */
  if (RA_UNLIKELY(_ra_prof_route) &&
      (page == NULL || (atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_SAMPLED)))
    _ra_prof_free(block);
  if (page == NULL) {
#if RA_ANNOTATE
    huge_freed(chunk);
#endif
    _ra_huge_free(chunk);
    return;
  }
  /* Out of bounds before it goes on any list: another thread may take it from there at once. */
  RA_ANN_FREE_BLOCK(block, page->block_size);
  ra_heap_t *heap = _ra_heap_current();
  ra_heap_t *owner = atomic_load_explicit(&chunk->heap, memory_order_acquire);
  if (owner == heap) {
    _ra_page_free_block(heap, page, block, false);
  } else {
    if (heap == &_ra_heap_empty && owner != NULL) _ra_heap_note_free(owner);
    free_remote(chunk, page, block); /* another thread's, or abandoned (swept by the purge) */
  }
  _ra_purge_start_wanted(); /* a safe point */
}

/* The common remote free first, in a function that needs no stack frame; the rest after. */
RA_NOINLINE void _ra_free_generic(void *p) {
  if (free_remote_fast(p)) return;
  free_generic(p);
}

/* The fast path emptied a page: retire it, then (a safe point) start the purger if asked. */
RA_NOINLINE void _ra_free_retire(ra_page_t *page) {
  _ra_page_retire(_ra_heap_current(), page); /* read again here: the fast path keeps no register for it */
  _ra_purge_start_wanted();
}

void ra_free(void *p) { _ra_free_fast(p); }

/* ---- Questions about a pointer -------------------------------------------------------------------- */

/* Usable bytes from p to the end of its block; *ok false when p is not a live block ramalloc holds
 * (the owner thread also recognises a block it freed itself, as free does). */
size_t _ra_free_usable_size(const void *p, bool *ok) {
  located_t at;
  *ok = false;
  if (p == NULL || !_ra_chunk_map_has((uintptr_t)_ra_chunk_of(p))) return 0; /* quick: not ours */
  if (locate(p, &at) != LOCATE_OK || is_double_free(&at)) return 0;
  *ok = true;
  const uint8_t *end = at.page == NULL ? at.chunk->huge_block + at.chunk->huge_size : _ra_block_end(at.page, at.block);
  return (size_t)(end - (const uint8_t *)p);
}

/* The usable size of something that is not a live block: name it (as free would), then 0. */
static RA_COLD size_t usable_size_refused(const void *p) {
  located_t at;
  int r = locate(p, &at);
  _ra_report_misuse_usable(r == LOCATE_OK ? RA_MISUSE_DOUBLE_FREE : (ra_misuse_t)r, p);
  return 0; /* RAMALLOC_ON_ERROR=warn */
}

size_t ra_usable_size(const void *p) {
  bool ok;
  if (p == NULL) return 0;
  size_t usable = _ra_free_usable_size(p, &ok);
  if (RA_UNLIKELY(!ok)) return usable_size_refused(p);
#if RA_ANNOTATE
  /* Asking grants it: the program may use every byte the answer covers (malloc_usable_size). */
  if (usable > 0) {
    size_t live = ra_ann_live_size(p, usable);
    if (live > 0 && live < usable) ra_ann_resize((void *)p, live, usable, usable);
  }
#endif
  return usable;
}

bool ra_owns(const void *p) {
  if (p == NULL) return false;
  ra_chunk_t *chunk = _ra_chunk_of(p);
  if (_ra_chunk_map_has((uintptr_t)chunk)) {
    const uint8_t *u = p;
    if (chunk->kind == RA_CHUNK_HUGE) return u >= chunk->huge_block && u < chunk->huge_block + chunk->huge_size;
    size_t idx = _ra_slice_index(chunk, p);
    if (idx == 0 || idx == RA_SLICES) return false;
    ra_page_t *page = _ra_page_of(chunk, p);
    if (atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE) return false;
    size_t off = (size_t)(u - _ra_page_start(chunk, page));
    return off / page->block_size < page->reserved;
  }
  /* An interior pointer past the first chunk of a huge block: find the run's header. */
  ra_arena_t *a = _ra_arena_containing(p);
  if (a == NULL) return false;
  size_t slot = ((uintptr_t)p - (uintptr_t)a->base) / RA_CHUNK_SIZE;
  for (size_t s = slot; s >= 1; s--) {
    ra_chunk_t *c = (ra_chunk_t *)(a->base + s * RA_CHUNK_SIZE);
    if (!_ra_chunk_map_has((uintptr_t)c)) continue;
    return c->kind == RA_CHUNK_HUGE && (const uint8_t *)p >= c->huge_block &&
           (const uint8_t *)p < c->huge_block + c->huge_size;
  }
  return false;
}

/* ---- Sized frees: C++ sized delete, C23 free_sized and free_aligned_sized --------------------------- */

/* The size class that serves a request of `size` bytes aligned to `align` (a power of two; up to
 * RA_ALIGN for the plain family), or RA_CLASS_HUGE, as ra_malloc and malloc_aligned (alloc.c)
 * choose it. *request gets the byte count a huge block was made for. */
static size_t class_for(size_t size, size_t align, size_t *request) {
  *request = size == 0 ? 1 : size;
  size_t room = _ra_canary_room(size); /* with the canaries on, the slot holds one too */
  if (align <= RA_ALIGN) {
    if (room > size) *request = room; /* a huge block was asked for this much */
    return room <= RA_LARGE_MAX ? _ra_size_class(room) : RA_CLASS_HUGE;
  }
  if (align > RA_SLICE_SIZE || room > RA_LARGE_MAX) return RA_CLASS_HUGE;
  size_t cls = _ra_size_class(room), bs = _ra_class_size[cls];
  if (bs % align == 0 || bs > RA_MEDIUM_MAX) return cls;
  size_t n = _ra_canary_room(*request + align - RA_ALIGN);
  return n <= RA_LARGE_MAX ? _ra_size_class(n) : RA_CLASS_HUGE;
}

/* Could the located block at p have been handed out for `size` bytes aligned to `align`?
 * exact: the block came straight from an allocation (operator new, aligned_alloc), so the size
 * maps to the block's own class, or for a huge block to its page-rounded size. Otherwise
 * (free_sized: the block may have been resized by realloc, which keeps a block when the new size
 * is between half its usable size and all of it) any size from half the usable size up passes. */
static bool size_fits(const located_t *at, const void *p, size_t size, size_t align, bool exact) {
  if (align > RA_ALIGN && ((uintptr_t)p & (align - 1)) != 0) return false;
  size_t request, cls = class_for(size, align, &request);
  size_t usable;
  bool same;
  if (at->page == NULL) {
    usable = at->chunk->huge_size - (size_t)((const uint8_t *)p - at->chunk->huge_block);
    same = cls == RA_CLASS_HUGE && _ra_align_up(request, _ra_os_info()->page_size) == at->chunk->huge_size;
  } else {
    usable = (size_t)(_ra_block_end(at->page, at->block) - (const uint8_t *)p);
    same = cls == at->page->class_idx;
  }
  if (same || size > usable) return same && size <= usable;
  return !exact && size >= usable / 2;
}

/* Off the quick check: find the block properly. A pointer that is not a block is left to ra_free,
 * which names what is wrong with it; so is a double free (its page's class may say nothing). */
static RA_NOINLINE void free_sized_checked(void *p, size_t size, size_t align, ra_sized_op_t op) {
  located_t at;
  if (locate(p, &at) == LOCATE_OK && !is_double_free(&at) &&
      !size_fits(&at, p, size, align, op != RA_SIZED_FREE)) {
    _ra_report_misuse_size(op, p, size, align);
    return; /* warn mode: refused, the block stays live */
  }
  ra_free(p);
}

/* free_sized off its fast path: the quick check covers a block at the start of a page's first
 * slice of a class served by ra_malloc, whose class must be the size's; such a block goes to
 * ra_free. Anything else is found properly and its size checked. */
RA_NOINLINE void _ra_free_sized_slow(void *p, size_t size, size_t align, ra_sized_op_t op) {
  uintptr_t n = ((uintptr_t)p - 1) >> RA_CHUNK_SHIFT;
  if (_ra_chunk_map_has_n(n) && align <= RA_ALIGN && size <= RA_LARGE_MAX) {
    ra_chunk_t *chunk = (ra_chunk_t *)(n << RA_CHUNK_SHIFT);
    ra_page_t *page = &chunk->pages[_ra_slice_index(chunk, p)];
    uint8_t flags = atomic_load_explicit(&page->flags, memory_order_relaxed);
    if (!(flags & (RA_PAGE_NOT_PAGE | RA_PAGE_HUGE | RA_PAGE_HAS_ALIGNED)) && _ra_size_class(size) == page->class_idx) {
      ra_free(p);
      return;
    }
  }
  if (p == NULL) return;
  free_sized_checked(p, size, align, op);
}

void _ra_free_sized(void *p, size_t size, size_t align, ra_sized_op_t op) { _ra_free_sized_fast(p, size, align, op); }

void ra_free_sized(void *p, size_t size) { _ra_free_sized_fast(p, size, 0, RA_SIZED_FREE); }

void ra_free_aligned_sized(void *p, size_t alignment, size_t size) {
  _ra_free_sized_fast(p, size, alignment, RA_SIZED_FREE_ALIGNED);
}
