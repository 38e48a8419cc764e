/* free and the questions asked of a pointer (usable size, ownership). A pointer is trusted only
 * after the chunk map says a chunk header starts where it points into; the fast path then pushes
 * the block on its page's local list when the calling thread owns the chunk and the page has no
 * special state. */
#include <errno.h>

#include "internal.h"

/* The start of the block holding p, in a page that has aligned (interior) pointers. */
void *_ra_block_start(ra_chunk_t *chunk, ra_page_t *page, const void *p) {
  uint8_t *start = _ra_page_start(chunk, page);
  size_t off = (size_t)((const uint8_t *)p - start);
  return start + off - off % page->block_size;
}

/* Owner's free, off the fast path: full pages come back to their queue, empty ones retire. */
void _ra_free_local(ra_heap_t *heap, ra_page_t *page, ra_block_t *block) {
  block->next = page->free;
  page->free = block;
  page->free_is_zero = 0;
  page->used--;
  if (atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_IN_FULL) _ra_page_unfull(heap, page);
  if (page->used == 0) _ra_page_retire(heap, page);
}

/* Another thread's block: push it on the page's atomic list, or, when the page is full, on the
 * owner heap's delayed list so the owner notices the page has room again. */
static void free_remote(ra_chunk_t *chunk, ra_page_t *page, ra_block_t *block) {
  uintptr_t tf = atomic_load_explicit(&page->xfree, memory_order_relaxed);
  uintptr_t nt;
  bool delayed;
  do {
    delayed = (tf & 3) == RA_DELAY_USE;
    if (delayed) {
      nt = (tf & ~(uintptr_t)3) | RA_DELAY_FREEING;
    } else {
      block->next = (ra_block_t *)(tf & ~(uintptr_t)3);
      nt = (uintptr_t)block | (tf & 3);
    }
  } while (!atomic_compare_exchange_weak_explicit(&page->xfree, &tf, nt, memory_order_release,
                                                  memory_order_relaxed));
  if (!delayed) return;
  /* While the state is FREEING the owner cannot abandon the page, so the heap stays valid. */
  ra_heap_t *heap = atomic_load_explicit(&chunk->heap, memory_order_acquire);
  ra_block_t *head = atomic_load_explicit(&heap->delayed_free, memory_order_relaxed);
  do {
    block->next = head;
  } while (!atomic_compare_exchange_weak_explicit(&heap->delayed_free, &head, block, memory_order_release,
                                                  memory_order_relaxed));
  tf = atomic_load_explicit(&page->xfree, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(&page->xfree, &tf, (tf & ~(uintptr_t)3) | RA_DELAY_NONE,
                                                memory_order_release, memory_order_relaxed)) {
  }
}

/* Everything the fast path does not do: huge blocks, aligned pointers, pages in the full list,
 * frees from other threads, and pointers that are not blocks at all. */
RA_NOINLINE void _ra_free_generic(void *p) {
  ra_chunk_t *chunk = _ra_chunk_of(p);
  if (!_ra_chunk_map_has((uintptr_t)chunk)) {
    if (p != NULL) _ra_error("free of a pointer ramalloc did not hand out:", p);
    return;
  }
  if (chunk->kind == RA_CHUNK_HUGE) {
    if ((uint8_t *)p != chunk->huge_block) _ra_error("free of a pointer inside a block:", p);
    _ra_huge_free(chunk);
    return;
  }
  ra_page_t *page = _ra_page_of(chunk, p);
  uint8_t flags = atomic_load_explicit(&page->flags, memory_order_relaxed);
  if (flags & RA_PAGE_NOT_PAGE) _ra_error("free of a pointer ramalloc did not hand out:", p);
  ra_block_t *block = (flags & RA_PAGE_HAS_ALIGNED) ? _ra_block_start(chunk, page, p) : p;
  size_t off = (size_t)((uint8_t *)block - _ra_page_start(chunk, page));
  /* `reserved` is fixed for the page's life, so other threads may read it (capacity is not). */
  if (off % page->block_size != 0 || off / page->block_size >= page->reserved)
    _ra_error("free of a pointer inside a block:", p);
  ra_heap_t *heap = _ra_heap_current();
  ra_heap_t *owner = atomic_load_explicit(&chunk->heap, memory_order_acquire);
  if (owner == heap || (owner == NULL && heap != &_ra_heap_empty && _ra_chunk_try_adopt(heap, chunk))) {
    _ra_free_local(heap, page, block);
    return;
  }
  free_remote(chunk, page, block);
}

void ra_free(void *p) {
  uintptr_t n = ((uintptr_t)p - 1) >> RA_CHUNK_SHIFT;
  if (RA_UNLIKELY(!_ra_chunk_map_has_n(n))) {
    if (p != NULL) _ra_free_generic(p);
    return;
  }
  /* The slice's own descriptor: a pointer past the first slice of a multi-slice page finds
   * RA_PAGE_NOT_PAGE there and takes the generic path, which walks back to the head. */
  ra_chunk_t *chunk = (ra_chunk_t *)(n << RA_CHUNK_SHIFT);
  ra_page_t *page = &chunk->pages[_ra_slice_index(chunk, p)];
  if (RA_LIKELY(atomic_load_explicit(&chunk->heap, memory_order_relaxed) == _ra_heap_current() &&
                atomic_load_explicit(&page->flags, memory_order_relaxed) == 0)) {
    ra_block_t *b = p;
    b->next = page->free;
    page->free = b;
    page->free_is_zero = 0;
    if (RA_UNLIKELY(--page->used == 0)) _ra_page_retire(_ra_heap_current(), page);
    return;
  }
  _ra_free_generic(p);
}

/* Usable bytes from p to the end of its block; *ok false when p is not a block ramalloc holds. */
size_t _ra_usable_size_checked(const void *p, bool *ok) {
  *ok = false;
  ra_chunk_t *chunk = _ra_chunk_of(p);
  if (p == NULL || !_ra_chunk_map_has((uintptr_t)chunk)) return 0;
  if (chunk->kind == RA_CHUNK_HUGE) {
    const uint8_t *b = chunk->huge_block;
    if ((const uint8_t *)p < b || (const uint8_t *)p >= b + chunk->huge_size) return 0;
    *ok = true;
    return (size_t)(b + chunk->huge_size - (const uint8_t *)p);
  }
  ra_page_t *page = _ra_page_of(chunk, p);
  uint8_t flags = atomic_load_explicit(&page->flags, memory_order_relaxed);
  if (flags & RA_PAGE_NOT_PAGE) return 0;
  uint8_t *start = _ra_page_start(chunk, page);
  size_t off = (size_t)((const uint8_t *)p - start);
  if (off / page->block_size >= page->reserved) return 0;
  *ok = true;
  return page->block_size - off % page->block_size;
}

size_t ra_usable_size(const void *p) {
  bool ok;
  return _ra_usable_size_checked(p, &ok);
}

bool ra_owns(const void *p) {
  bool ok;
  if (p == NULL) return false;
  _ra_usable_size_checked(p, &ok);
  if (ok) return true;
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
