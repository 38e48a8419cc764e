/* Pages: spans of slices carved into blocks of one size class. Blocks are carved a few KiB at a
 * time (so memory is touched, and committed, only as the page fills) and linked through their first
 * word. Two free lists per page: `free` (the owner pops and pushes here, so a block freed is the
 * next handed out, still in cache) and `xfree` (other threads' frees, atomic). The heap keeps its pages in one queue per class, and
 * pages without free blocks in a `full` list; a remote free into a full page tells the owner
 * through the heap's delayed list so the page comes back.
 *
 * Page layout (offsets from the first slice of the span):
 *   0                       block 0
 *   k * block_size          block k            (k < capacity: carved; < reserved: fits)
 *   reserved * block_size   unused tail (less than one block) */
#include <errno.h>
#include <string.h>

#include "internal.h"

ra_page_t _ra_page_empty; /* free == NULL: every heap->direct[] slot without a page points here */

#define C8(b) (1u << (b)) + 1 * (1u << ((b)-3)), (1u << (b)) + 2 * (1u << ((b)-3)), \
              (1u << (b)) + 3 * (1u << ((b)-3)), (1u << (b)) + 4 * (1u << ((b)-3)), \
              (1u << (b)) + 5 * (1u << ((b)-3)), (1u << (b)) + 6 * (1u << ((b)-3)), \
              (1u << (b)) + 7 * (1u << ((b)-3)), (1u << ((b) + 1))
const uint32_t _ra_class_size[RA_CLASS_COUNT] = {
  16, 32, 48, 64, 80, 96, 112, 128,
  C8(7), C8(8), C8(9), C8(10), C8(11), C8(12), C8(13),
  C8(14), C8(15), C8(16), C8(17), C8(18), C8(19), C8(20),
};
#undef C8
_Static_assert(RA_CLASS_COUNT == 8 + 14 * 8, "class table covers 16 B .. 2 MiB");

/* _ra_size_class of every size up to RA_DIRECT_MAX, indexed by the size itself (sized delete's
 * check; test_edges compares it with _ra_size_class). DC is _ra_size_class written as a constant
 * expression for s <= 1024 (0 counts as 1), where 2^b <= s - 1 < 2^(b+1) has b 7, 8 or 9. */
#define DC_B(s) ((s) - 1 >= 512 ? 9 : (s) - 1 >= 256 ? 8 : 7)
#define DC(s) ((s) <= 16 ? 0 : (s) <= 128 ? ((s) - 1) >> 4 : 8 + (DC_B(s) - 7) * 8 + ((((s) - 1) >> (DC_B(s) - 3)) & 7))
#define DC4(s) DC(s), DC((s) + 1), DC((s) + 2), DC((s) + 3)
#define DC16(s) DC4(s), DC4((s) + 4), DC4((s) + 8), DC4((s) + 12)
#define DC64(s) DC16(s), DC16((s) + 16), DC16((s) + 32), DC16((s) + 48)
#define DC256(s) DC64(s), DC64((s) + 64), DC64((s) + 128), DC64((s) + 192)
const uint8_t _ra_direct_class[RA_DIRECT_COUNT] = {DC256(0), DC256(256), DC256(512), DC256(768), DC(1024)};
_Static_assert(RA_DIRECT_COUNT == 1025, "the table above covers the direct sizes");
#undef DC256
#undef DC64
#undef DC16
#undef DC4
#undef DC
#undef DC_B

size_t _ra_page_class_slices(size_t class_idx) {
  size_t bs = _ra_class_size[class_idx];
  if (bs <= RA_SMALL_MAX) return 1;
  if (bs <= RA_MEDIUM_MAX) return RA_MEDIUM_SLICES;
  if (_ra_guard_pages) bs += _ra_os_info()->page_size; /* room for the guard after the block */
  return (bs + RA_SLICE_SIZE - 1) / RA_SLICE_SIZE;
}

/* RAMALLOC_GUARD_PAGES: commit the whole span and make its last OS page inaccessible, so that
 * running off the end of the page's last block faults. The span's reserved blocks stop before it
 * (page_init). Undone by _ra_chunk_span_free. */
/* A queued page's place in its heap (the delay state of an abandoning heap's pages is NEVER). */
static inline bool page_queued_valid(const ra_heap_t *heap, const ra_page_t *page) {
  bool never = (atomic_load_explicit(&page->xfree, memory_order_relaxed) & 3) == RA_DELAY_NEVER;
  return _ra_page_queued_is_valid(heap, page, never);
}

static int page_guard(ra_page_t *page) {
  ra_chunk_t *c = _ra_chunk_of_desc(page);
  size_t head = (size_t)(page - c->pages);
  int err = _ra_chunk_commit_slices(c, head, page->slice_count);
  if (err != RA_OS_OK) return err;
  page->committed_slices = page->slice_count;
  size_t os_page = _ra_os_info()->page_size;
  uint8_t *guard = _ra_page_start(c, page) + (size_t)page->slice_count * RA_SLICE_SIZE - os_page;
  err = _ra_mem_protect(guard, os_page, RA_PROT_NONE);
  if (err == RA_OS_OK) page->guarded = 1;
  return err;
}

/* Flags are set by the page's owner only; the profiler clears RA_PAGE_SAMPLED from any thread.
 * free_lim follows for the owner (internal.h). */
void _ra_page_set_flag(ra_page_t *page, uint8_t flag, bool on) {
  if (on) {
    atomic_fetch_or_explicit(&page->flags, flag, memory_order_relaxed);
    page->free_lim = 0;
  } else {
    atomic_fetch_and_explicit(&page->flags, (uint8_t)~flag, memory_order_relaxed);
    if (atomic_load_explicit(&_ra_chunk_of_desc(page)->heap, memory_order_relaxed) == _ra_heap_current())
      _ra_page_free_lim_sync(page);
  }
}

/* ---- Carving -------------------------------------------------------------------------------------- */

static void page_init(ra_heap_t *heap, ra_page_t *page, size_t class_idx) {
  (void)heap;
  size_t bs = _ra_class_size[class_idx];
  page->block_size = (uint32_t)bs;
  _ra_page_set_divisor(page, (uint32_t)bs);
  page->class_idx = (uint8_t)class_idx;
  size_t span = (size_t)page->slice_count * RA_SLICE_SIZE;
  if (_ra_guard_pages) span -= _ra_os_info()->page_size; /* the guard page (page_guard) */
  page->reserved = (uint16_t)(span / bs);
  _ra_page_set_capacity(page, 0);
  page->used = 0;
  page->free = NULL;
  atomic_store_explicit(&page->xfree, RA_DELAY_NONE, memory_order_relaxed);
  page->free_is_zero = 0;
  page->committed_slices = 0;
  atomic_store_explicit(&page->flags, _ra_canary ? RA_PAGE_CANARY : 0, memory_order_relaxed);
  page->free_lim = 0; /* capacity 0 */
  /* Nothing in the span is handed out yet: out of bounds to ASan and memcheck until it is. */
  RA_ANN_CLOSE(_ra_page_start(_ra_chunk_of_desc(page), page), page->slice_count * RA_SLICE_SIZE);
  ra_assert_internal(_ra_page_is_valid(page, true));
}

/* Carve more blocks onto the (empty) free list, committing slices as the carved end needs them;
 * the list ends in the chunk's marker (_ra_list_end), so that the last block pops as fast as the
 * others. Returns 0, or ENOMEM when the commit fails (the page is unchanged). */
int _ra_page_extend(ra_page_t *page) {
  ra_assert(_ra_list_end(page->free) && page->capacity < page->reserved);
  ra_chunk_t *c = _ra_chunk_of_desc(page);
  size_t bs = page->block_size;
  size_t n = RA_EXTEND_BYTES / bs;
  if (n < 4) n = 4;
  if (n > (size_t)page->reserved - page->capacity) n = (size_t)page->reserved - page->capacity;
  size_t end = (page->capacity + n) * bs;
  size_t need = (end + RA_SLICE_SIZE - 1) / RA_SLICE_SIZE;
  if (need > page->committed_slices) {
    size_t head = (size_t)(page - c->pages);
    if (_ra_chunk_commit_slices(c, head + page->committed_slices, need - page->committed_slices) != RA_OS_OK)
      return ENOMEM;
    page->committed_slices = (uint8_t)need;
  }
  uint8_t *start = _ra_page_start(c, page) + page->capacity * bs;
  ra_block_t *b = (ra_block_t *)start;
  for (size_t i = 0; i + 1 < n; i++) {
    ra_block_t *next = (ra_block_t *)((uint8_t *)b + bs);
    _ra_block_set_next(b, next);
    b = next;
  }
  _ra_block_set_next(b, _ra_list_marker(c));
  if (RA_UNLIKELY(_ra_canary)) _ra_secure_carve(page, start, n);
  page->free = (ra_block_t *)start;
  page->free_is_zero = !page->dirty; /* before the capacity: free_lim stays 0 while it is set */
  _ra_page_set_capacity(page, page->capacity + (uint32_t)n);
  ra_assert_internal(_ra_page_is_valid(page, true)); /* the list is the blocks just carved */
  return 0;
}

/* ---- Collecting ----------------------------------------------------------------------------------- */

/* Splice a remote list of `count` blocks (as the word says) in front of `free`, walking it for its
 * tail. A list that is not what the count says (a block freed twice by other threads, a link
 * written over) is reported: the walk stops at a link out of the chunk and at more blocks than
 * are in use or counted, and cuts the list there. Returns how many blocks it kept. */
static RA_NOINLINE size_t collect_walk(ra_page_t *page, ra_block_t *head, size_t count) {
  size_t limit = count != 0 && count < page->used ? count : page->used;
  ra_block_t *tail = head;
  size_t n = 1;
  bool cut = false;
  for (ra_block_t *next;; tail = next, n++) {
    next = _ra_block_next(tail);
    if (!_ra_next_is_sane(tail, next)) { /* another chunk's base too */
      cut = true;
      break;
    }
    if (_ra_list_end(next)) break; /* NULL (or this chunk's base, written over: an end too) */
    if (n >= limit) {
      cut = true;
      break;
    }
  }
  if (cut || n != count) _ra_report_corrupt_list(tail);
  _ra_block_set_next(tail, page->free);
  if (cut) {
    /* A cycle was walked round more than once: what is kept is the run up to the first visit of
     * the tail, whose blocks are distinct. */
    n = 1;
    for (ra_block_t *b = head; b != tail; b = _ra_block_next(b)) n++;
  }
  page->free = head;
  return n;
}

/* Take the blocks other threads freed into the page: they join `free` and leave `used`. The word
 * holds the list's length, so when the page's own list is empty (as on the allocation path) the
 * list becomes `free` as it is, without a walk over its blocks: their links are checked as they
 * are handed out (page_pop, alloc.c), as those of `free` always are. Only the first link is read
 * here (the first block is the next handed out): a block freed twice in a row by other threads
 * links to itself, which the walk reports. Owner only. */
size_t _ra_page_collect_xfree(ra_page_t *page) {
  uintptr_t tf = atomic_load_explicit(&page->xfree, memory_order_relaxed);
  do {
    if (_ra_xfree_list(tf) == NULL) return 0;
  } while (!atomic_compare_exchange_weak_explicit(&page->xfree, &tf, tf & RA_XFREE_STATE, memory_order_acquire,
                                                  memory_order_relaxed));
  ra_block_t *head = _ra_xfree_list(tf);
  size_t n = _ra_xfree_count(tf);
  if (RA_LIKELY(_ra_list_end(page->free) && n != 0 && n <= page->used && _ra_block_next(head) != head))
    page->free = head;
  else n = collect_walk(page, head, n);
  page->free_is_zero = 0;
  page->used -= (uint32_t)n;
  return n;
}

void _ra_page_collect(ra_page_t *page) {
  if (_ra_xfree_list(atomic_load_explicit(&page->xfree, memory_order_relaxed)) != NULL) _ra_page_collect_xfree(page);
}

/* ---- Cross-thread free state ---------------------------------------------------------------------- */

/* Move the page's delay state to `state`, waiting out a remote thread that is in the middle of a
 * delayed free (RA_DELAY_FREEING). RA_DELAY_NEVER is kept unless override_never. */
void _ra_page_set_delay(ra_page_t *page, ra_delay_t state, bool override_never) {
  uintptr_t tf = atomic_load_explicit(&page->xfree, memory_order_acquire);
  for (;;) {
    uintptr_t d = tf & 3;
    if (d == RA_DELAY_FREEING) {
      _ra_yield();
      tf = atomic_load_explicit(&page->xfree, memory_order_acquire);
      continue;
    }
    if (d == (uintptr_t)state || (d == RA_DELAY_NEVER && !override_never)) return;
    if (atomic_compare_exchange_weak_explicit(&page->xfree, &tf, (tf & ~(uintptr_t)3) | state,
                                              memory_order_acq_rel, memory_order_acquire))
      return;
  }
}

/* ---- Queues --------------------------------------------------------------------------------------- */

/* Point heap->direct[] at the first page of a class that small requests map to. */
static void direct_update(ra_heap_t *heap, size_t class_idx) {
  size_t bs = _ra_class_size[class_idx];
  if (bs > RA_DIRECT_MAX) return;
  ra_page_t *pg = heap->queues[class_idx].first;
  /* The canaries (secure.c) need every allocation on the generic path, where they are checked. */
  if (pg == NULL || _ra_canary) pg = &_ra_page_empty;
  /* A class's sizes: 1 to 16 for the first (and size 0), then 16, 32 or 64 of them, which fill
   * 128 to 512 bytes of the table. Pages of a busy class come and go at the front of its queue
   * often, so the entries are written 16 at a time. */
  size_t lo = class_idx == 0 ? 1 : _ra_class_size[class_idx - 1] + 1;
  if (class_idx == 0) heap->direct[0] = pg;
  ra_page_t **d = &heap->direct[lo], **end = &heap->direct[bs + 1];
  ra_assert_internal((end - d) % 16 == 0);
  for (; d < end; d += 16)
    for (int i = 0; i < 16; i++) d[i] = pg;
}

static void queue_push_front(ra_page_queue_t *q, ra_page_t *page) {
  page->prev = NULL;
  page->next = q->first;
  if (q->first) q->first->prev = page;
  else q->last = page;
  q->first = page;
}

static void queue_push_back(ra_page_queue_t *q, ra_page_t *page) {
  page->next = NULL;
  page->prev = q->last;
  if (q->last) q->last->next = page;
  else q->first = page;
  q->last = page;
}

static void queue_unlink(ra_page_queue_t *q, ra_page_t *page) {
  if (page->prev) page->prev->next = page->next;
  else q->first = page->next;
  if (page->next) page->next->prev = page->prev;
  else q->last = page->prev;
  page->next = page->prev = NULL;
}

void _ra_page_queue_push(ra_heap_t *heap, ra_page_t *page) {
  queue_push_front(&heap->queues[page->class_idx], page);
  direct_update(heap, page->class_idx);
}

void _ra_page_queue_remove(ra_heap_t *heap, ra_page_t *page) {
  if (atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_IN_FULL) {
    queue_unlink(&heap->full, page);
    return;
  }
  ra_page_queue_t *q = &heap->queues[page->class_idx];
  bool was_first = q->first == page;
  queue_unlink(q, page);
  if (was_first) direct_update(heap, page->class_idx);
}

/* Move a page that has no free block to the full list. Remote frees from now on notify the heap.
 * Returns false (and leaves the page queued) when a remote free slipped in meanwhile. */
static bool page_to_full(ra_heap_t *heap, ra_page_t *page) {
  _ra_page_set_delay(page, RA_DELAY_USE, false);
  _ra_page_collect(page); /* a free that came before the state change would otherwise be stranded */
  if (!_ra_list_end(page->free)) {
    _ra_page_set_delay(page, RA_DELAY_NONE, false);
    return false;
  }
  _ra_page_queue_remove(heap, page);
  _ra_page_set_flag(page, RA_PAGE_IN_FULL, true);
  queue_push_front(&heap->full, page);
  ra_assert_internal(page_queued_valid(heap, page));
  return true;
}

/* A full page has room again. When the room came from another thread's frees (`remote`), the page
 * goes to the back of its queue, behind the pages that had room first: taken at once, the owner
 * would allocate from the blocks that thread is freeing right now, both working on the same lines;
 * at the back it fills meanwhile, and is collected with more blocks at a time. When the owner freed
 * the block itself, the page goes to the front: its line is in this thread's cache already. */
void _ra_page_unfull(ra_heap_t *heap, ra_page_t *page, bool remote) {
  _ra_page_set_delay(page, RA_DELAY_NONE, false);
  queue_unlink(&heap->full, page);
  _ra_page_set_flag(page, RA_PAGE_IN_FULL, false);
  ra_page_queue_t *q = &heap->queues[page->class_idx];
  if (remote) queue_push_back(q, page);
  else queue_push_front(q, page);
  if (q->first == page) direct_update(heap, page->class_idx);
  ra_assert_internal(page_queued_valid(heap, page));
}

void _ra_page_free_since(ra_heap_t *heap, ra_page_t *page, uint64_t free_since) {
  ra_assert_internal(page->used == 0 && _ra_page_is_valid(page, RA_DEBUG >= 3) && page_queued_valid(heap, page));
  _ra_page_queue_remove(heap, page);
  _ra_chunk_span_free(heap, _ra_chunk_of_desc(page), page, free_since);
}

void _ra_page_free(ra_heap_t *heap, ra_page_t *page) { _ra_page_free_since(heap, page, _ra_now_ms()); }

/* A page became empty. Keep it if it is the only page of a small or medium class (the next
 * allocation of that size would make a new one at once); give it back otherwise. */
void _ra_page_retire(ra_heap_t *heap, ra_page_t *page) {
  ra_assert_internal(page->used == 0 && _ra_page_is_valid(page, RA_DEBUG >= 3) && page_queued_valid(heap, page));
  ra_page_queue_t *q = &heap->queues[page->class_idx];
  if (page->block_size <= RA_MEDIUM_MAX && q->first == page && page->next == NULL &&
      _ra_purge_delay() != 0) {
    /* Kept: the purge gives it back after the delay. Its time is the heap's last clock reading
     * (at most the true time, so it never waits longer): a malloc/free pair that empties the page
     * every time must not read the clock. */
    page->retire_ms = heap->clock_ms32 != 0 ? heap->clock_ms32 : _ra_ms32(_ra_now_ms());
    return;
  }
  _ra_page_free(heap, page);
}

/* A page of class `class_idx` from the heap's queue with a free block, moved to the front of the
 * queue; &_ra_page_empty when none has room (a new page is then _ra_heap_find_page's to make), NULL
 * when out of memory. Walks the queue collecting frees, carving more of a page that has room left,
 * and moves pages without room to the full list. */
ra_page_t *_ra_page_queue_find(ra_heap_t *heap, size_t class_idx) {
  ra_page_queue_t *q = &heap->queues[class_idx];
  ra_page_t *page = q->first, *next;
  for (; page != NULL; page = next) {
    next = page->next;
    if (!_ra_list_end(page->free)) break;
    _ra_page_collect(page);
    if (!_ra_list_end(page->free)) break;
    if (page->capacity < page->reserved) {
      if (_ra_page_extend(page) != 0) return NULL;
      break;
    }
    if (!page_to_full(heap, page)) break;
  }
  if (page == NULL) return &_ra_page_empty;
  if (q->first != page) {
    queue_unlink(q, page);
    _ra_page_queue_push(heap, page);
  }
  return page;
}

/* Make a page of class `class_idx` on a span just taken (_ra_heap_find_page) and queue it first.
 * Returns 0, or ENOMEM when its first blocks cannot be committed: the span then goes back. */
int _ra_page_setup(ra_heap_t *heap, ra_page_t *page, size_t class_idx) {
  page_init(heap, page, class_idx);
  if ((_ra_guard_pages && page_guard(page) != 0) || _ra_page_extend(page) != 0) {
    _ra_chunk_span_free(heap, _ra_chunk_of_desc(page), page, _ra_now_ms());
    return ENOMEM;
  }
  _ra_page_queue_push(heap, page);
  ra_assert_internal(page_queued_valid(heap, page) && _ra_page_chunk_check(_ra_chunk_of_desc(page), heap, false));
  return 0;
}

/* ---- Invariants ------------------------------------------------------------------------------------- */

bool _ra_page_is_valid(const ra_page_t *page, bool walk) {
  uint8_t flags = atomic_load_explicit(&page->flags, memory_order_relaxed);
  if (flags & (RA_PAGE_NOT_PAGE | RA_PAGE_HUGE))
    return _ra_report_invariant("a page is a span head of a page chunk", page);
  if (page->slice_offset != 0) return _ra_report_invariant("a page is a span head of a page chunk", page);
  size_t bs = page->block_size;
  if (page->class_idx >= RA_CLASS_COUNT || _ra_class_size[page->class_idx] != bs)
    return _ra_report_invariant("block size matches the class", page);
  if (page->slice_count != _ra_page_class_slices(page->class_idx))
    return _ra_report_invariant("span length matches the class", page);
  if (page->div_mul != _ra_block_div_mul((uint32_t)bs))
    return _ra_report_invariant("div_mul matches the block size", page);
  uint32_t capacity = _ra_page_capacity(page);
  if (page->free_lim != 0 && (flags != 0 || page->free_is_zero || page->free_lim != _ra_block_lim(page, capacity)))
    return _ra_report_invariant("free_lim is 0, or capacity's limit with no flag set and free_is_zero 0", page);
  if (page->used > capacity || capacity > page->reserved)
    return _ra_report_invariant("used <= capacity <= reserved", page);
  size_t span = (size_t)page->slice_count * RA_SLICE_SIZE;
  if (_ra_guard_pages) span -= _ra_os_info()->page_size;
  if (page->reserved != span / bs)
    return _ra_report_invariant("reserved blocks fill the span (less its guard page)", page);
  if (page->committed_slices > page->slice_count ||
      (size_t)capacity * bs > (size_t)page->committed_slices * RA_SLICE_SIZE)
    return _ra_report_invariant("carved blocks are committed", page);
  if (page->guarded && (!_ra_guard_pages || page->committed_slices != page->slice_count))
    return _ra_report_invariant("a guarded span is committed whole", page);
  if (_ra_list_end(page->free) != (page->used == capacity))
    return _ra_report_invariant("free is empty exactly when used == capacity", page);
  const ra_chunk_t *c = _ra_chunk_of_desc(page);
  const uint8_t *start = _ra_page_start(c, page);
  size_t nfree = 0;
  const ra_block_t *b = page->free;
  for (; !_ra_list_end(b); b = walk ? _ra_block_next(b) : NULL) {
    size_t off = (size_t)((const uint8_t *)b - start);
    if ((const uint8_t *)b < start || off % bs != 0 || off / bs >= capacity)
      return _ra_report_invariant("free block inside the carved part of its page", b);
    if (++nfree > capacity) return _ra_report_invariant("free list has no cycle", page);
  }
  if (b != NULL && b != (const ra_block_t *)c)
    return _ra_report_invariant("free list ends in NULL or its chunk's base", page);
  if (walk && nfree != capacity - page->used) return _ra_report_invariant("used == capacity - |free|", page);
  return true;
}

bool _ra_page_queued_is_valid(const ra_heap_t *heap, const ra_page_t *page, bool abandoning) {
  uint8_t flags = atomic_load_explicit(&page->flags, memory_order_relaxed);
  bool in_full = (flags & RA_PAGE_IN_FULL) != 0;
  const ra_page_queue_t *q = in_full ? &heap->full : &heap->queues[page->class_idx];
  if (atomic_load_explicit(&_ra_chunk_of_desc(page)->heap, memory_order_relaxed) != heap)
    return _ra_report_invariant("queued page belongs to this heap", page);
  if (page->prev != NULL ? page->prev->next != page : q->first != page)
    return _ra_report_invariant("queue links (IN_FULL says which queue)", page);
  if (page->next != NULL ? page->next->prev != page : q->last != page)
    return _ra_report_invariant("queue links (IN_FULL says which queue)", page);
  if (!in_full && page->next != NULL && page->next->class_idx != page->class_idx)
    return _ra_report_invariant("page in its class queue", page);
  /* Remote frees move USE to FREEING and back to NONE; nothing but the owner leaves NONE. */
  uintptr_t delay = atomic_load_explicit(&page->xfree, memory_order_acquire) & 3;
  if (abandoning ? delay != RA_DELAY_NEVER : delay == RA_DELAY_NEVER)
    return _ra_report_invariant("the delay state is NEVER exactly while the heap is abandoned", page);
  if (!in_full && !abandoning && delay != RA_DELAY_NONE)
    return _ra_report_invariant("a page out of the full queue is in RA_DELAY_NONE", page);
  if (!in_full && q->first == page && page->block_size <= RA_DIRECT_MAX &&
      heap->direct[page->block_size] != (_ra_canary ? &_ra_page_empty : page))
    return _ra_report_invariant("direct[] points at the queue head", page);
  return true;
}

/* A chunk's invariants (_ra_chunk_is_valid) and those of each of its pages (free lists walked with
 * `walk`), for `owner` (NULL: abandoned, or being swept), under the chunk lock. */
bool _ra_page_chunk_check(ra_chunk_t *c, const ra_heap_t *owner, bool walk) {
  _ra_chunk_lock(c);
  bool ok = _ra_chunk_is_valid(c, owner);
  for (size_t idx = 1; ok && idx < RA_SLICES;) {
    const ra_page_t *pg = &c->pages[idx];
    if (atomic_load_explicit(&pg->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE) {
      idx++;
      continue;
    }
    ok = _ra_page_is_valid(pg, walk);
    idx += pg->slice_count;
  }
  _ra_chunk_unlock(c);
  return ok;
}
