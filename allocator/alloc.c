/* The allocation entry points: malloc, calloc, realloc, aligned allocation. The fast path pops the
 * first block of the first page of the size's class; everything else is _ra_alloc_generic. */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* A free list whose next link, the word at `b`, leaves the chunk: report it (abort, unless
 * RAMALLOC_ON_ERROR=warn). Then neither b nor the rest of the list is handed out: a link written
 * over means the program still writes into b (a use after free), or holds b already (a block freed
 * twice by another thread makes the remote list loop back to a block handed out since). They count
 * as used from now on (leaked, never handed out twice), which keeps used == capacity - |free|, and
 * the caller takes a block from the generic path. */
void _ra_alloc_list_corrupted(ra_page_t *page, ra_block_t *b) {
  _ra_report_corrupt_list(b);
  page->free = NULL;
  page->used = page->capacity;
  page->free_is_zero = 0;
}

RA_NOINLINE void *_ra_alloc_pop_corrupted(ra_page_t *page, ra_block_t *b) {
  _ra_alloc_list_corrupted(page, b);
  return _ra_alloc_generic(page->block_size, _ra_heap_current(), false);
}

static inline void *page_pop(ra_page_t *page, ra_block_t *b) { return _ra_page_pop(page, b, _ra_alloc_pop_corrupted); }

/* Zero a block that is about to be handed out, unless the page says it still is as the OS gave it
 * (its link word was cleared when it was taken). */
static inline void block_zero(ra_page_t *page, void *p, size_t size) {
  /* p is NULL only when _ra_alloc_pop_corrupted found no block elsewhere (out of memory). */
  if (!page->free_is_zero && RA_LIKELY(p != NULL)) {
    RA_ANN_OPEN(p, size); /* the whole span is still out of bounds to the tools */
    memset(p, 0, size);
  }
}

static inline size_t commit_failures(void) {
  return atomic_load_explicit(&_ra_counters.commit_failures, memory_order_relaxed);
}

/* The calling thread's first allocation: the process is initialised (init.c), the thread gets its
 * heap (tried once more after a refused commit, as every allocation is: _ra_purge_for_retry), and
 * the process's first heap starts the purger (a safe point). NULL when out of memory. */
static RA_NOINLINE ra_heap_t *heap_first(void) {
  _ra_init();
  size_t fails = commit_failures();
  ra_heap_t *heap = _ra_heap_get_slow();
  if (heap == NULL && _ra_purge_for_retry(fails)) heap = _ra_heap_get_slow();
  if (heap != NULL) _ra_purge_start_wanted();
  return heap;
}

static RA_NOINLINE void *malloc_generic(ra_heap_t *heap, size_t size, bool zero) {
  if (RA_UNLIKELY(heap == &_ra_heap_empty)) {
    heap = heap_first();
    if (heap == NULL) {
      errno = ENOMEM;
      return NULL;
    }
  }
  _ra_purge_start_wanted(); /* a safe point: nothing is held, nothing half-done */
  _ra_heap_collect_delayed(heap);
  if (RA_UNLIKELY(size > RA_LARGE_MAX)) {
    _ra_purge_maybe(heap);
    if (size > PTRDIFF_MAX) {
      errno = ENOMEM;
      return NULL;
    }
    bool is_zero;
    size_t fails = commit_failures();
    void *p = _ra_huge_alloc(size, 0, &is_zero);
    if (p == NULL && _ra_purge_for_retry(fails)) p = _ra_huge_alloc(size, 0, &is_zero);
    if (p == NULL) {
      errno = ENOMEM;
      return NULL;
    }
    RA_ANN_ALLOC(p, size, _ra_chunk_of(p)->huge_size, zero);
    if (zero && !is_zero) memset(p, 0, size);
    return p;
  }
  size_t cls = _ra_size_class(size);
  ra_page_t *page = heap->queues[cls].first;
  /* Sizes past the direct table come here every time: a block at hand is taken without reading
   * the clock; the purge check runs when pages must be found or made, and every 64th call. */
  if (page == NULL || _ra_list_end(page->free) || (++heap->slow_calls & 63) == 0) {
    _ra_purge_maybe(heap);
    size_t fails = commit_failures();
    page = _ra_heap_find_page(heap, cls);
    if (RA_UNLIKELY(page == NULL) && _ra_purge_for_retry(fails)) page = _ra_heap_find_page(heap, cls);
    if (RA_UNLIKELY(page == NULL)) {
      errno = ENOMEM;
      return NULL;
    }
  }
  void *p = page_pop(page, page->free);
  if (zero) block_zero(page, p, page->block_size);
  RA_ANN_ALLOC(p, size, page->block_size, zero);
  return p;
}

/* RAMALLOC_CANARY (secure.c): the slot must hold the canary too, and the block is checked before
 * it is handed out; one that fails is reported and, in warn mode, left out for another. */
static RA_NOINLINE void *malloc_checked(ra_heap_t *heap, size_t size, bool zero) {
  size_t asked = _ra_canary_room(size);
  for (;;) {
    void *p = malloc_generic(heap, asked, zero && asked > RA_LARGE_MAX); /* huge: zeroed by the pop */
    if (p == NULL || _ra_secure_handout(p, size, zero)) return p;
  }
}

/* The fast paths serve sizes below this bound: RA_DIRECT_MAX + 1, or 0 while the heap profiler is
 * on (set once, at initialisation, before any heap exists), which sends every allocation to
 * _ra_alloc_generic. A variable in place of a constant in the size test, so that profiling off
 * runs the same instructions as before. */
size_t _ra_direct_bound = RA_DIRECT_MAX + 1;

#if RA_HAS_PROFILER
/* The heap profiler's allocations other than the common case (a block at hand, and the countdown
 * stays at or above zero): calloc's, the sampled ones, and those that need pages found or made.
 * With the canaries on, direct[] stays on the empty page, so every block comes from
 * malloc_checked. */
static RA_NOINLINE void *prof_malloc_slow(ra_heap_t *heap, size_t size, bool zero) {
  void *p = NULL;
  if (size <= RA_DIRECT_MAX) {
    ra_page_t *page = heap->direct[size];
    if (!_ra_list_end(page->free)) {
      p = page_pop(page, page->free);
      if (zero) block_zero(page, p, size);
      RA_ANN_ALLOC(p, size, page->block_size, zero);
    }
  }
  if (p == NULL) {
    p = RA_UNLIKELY(_ra_canary) ? malloc_checked(heap, size, zero) : malloc_generic(heap, size, zero);
    if (p == NULL) return NULL;
  }
  _ra_prof_note(p, size);
  return p;
}

/* The fast path again, for the heap profiler: a block at hand is taken when its size does not take
 * the countdown below zero. Everything else is a tail call, so this path saves no registers. */
static inline void *prof_malloc(ra_heap_t *heap, size_t size, bool zero) {
  if (RA_LIKELY(size <= RA_DIRECT_MAX) && !zero) {
    ra_page_t *page = heap->direct[size];
    ra_block_t *b = page->free;
    int64_t left = _ra_prof_countdown - (int64_t)size;
    if (RA_LIKELY(!_ra_list_end(b)) && RA_LIKELY(left >= 0)) {
      _ra_prof_countdown = left;
      void *p = page_pop(page, b);
      RA_ANN_ALLOC(p, size, page->block_size, false);
      return p;
    }
  }
  return prof_malloc_slow(heap, size, zero);
}
#endif

/* Everything the fast paths do not serve, and every allocation while the heap profiler or the
 * canaries are on. */
RA_NOINLINE void *_ra_alloc_generic(size_t size, ra_heap_t *heap, bool zero) {
#if RA_HAS_PROFILER
  if (RA_UNLIKELY(_ra_prof_route)) return prof_malloc(heap, size, zero);
#endif
  if (RA_UNLIKELY(_ra_canary)) return malloc_checked(heap, size, zero);
  return malloc_generic(heap, size, zero);
}

void *ra_malloc(size_t size) { return _ra_malloc_fast(size, _ra_alloc_generic, _ra_alloc_pop_corrupted); }

void *ra_calloc(size_t count, size_t size) {
  size_t total;
  if (RA_UNLIKELY(__builtin_mul_overflow(count, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  ra_heap_t *heap = _ra_heap_current();
  if (RA_LIKELY(total < _ra_direct_bound)) {
    ra_page_t *page = heap->direct[total];
    ra_block_t *b = page->free;
    if (RA_LIKELY(!_ra_list_end(b))) {
      void *p = page_pop(page, b);
      block_zero(page, p, total);
      RA_ANN_ALLOC(p, total, page->block_size, true);
      return p;
    }
  }
  return _ra_alloc_generic(total, heap, true);
}

/* An allocation aligned to `align` (a power of two > RA_ALIGN). */
static void *malloc_aligned(size_t align, size_t size) {
  if (RA_UNLIKELY(size > PTRDIFF_MAX)) {
    errno = ENOMEM;
    return NULL;
  }
  if (align <= RA_SLICE_SIZE && _ra_canary_room(size) <= RA_LARGE_MAX) {
    /* Pages start on a slice boundary, so a class whose block size is a multiple of the alignment
     * is aligned already, and so is every large block (one per span). (The class is the one
     * ra_malloc picks, with the canary's room when the canaries are on.) */
    size_t bs = _ra_class_size[_ra_size_class(_ra_canary_room(size))];
    if (bs % align == 0 || bs > RA_MEDIUM_MAX) return ra_malloc(size);
    /* Room for the alignment and at least one byte, so the aligned pointer stays inside the block
     * even for size 0 (it would otherwise be the next block's start). */
    size_t n = (size == 0 ? 1 : size) + align - RA_ALIGN;
    if (_ra_canary_room(n) <= RA_LARGE_MAX) {
      uint8_t *p = ra_malloc(n);
      if (p == NULL) return NULL;
      uintptr_t a = _ra_align_up((uintptr_t)p, align);
      if (a != (uintptr_t)p) {
        ra_chunk_t *c = _ra_chunk_of(p);
        _ra_page_set_flag(_ra_page_of(c, p), RA_PAGE_HAS_ALIGNED, true);
      }
#if RA_ANNOTATE
      /* The tools see the aligned block the program asked for, not the block around it. */
      if (a != (uintptr_t)p || n != size) {
        ra_ann_free_entry(p);
        ra_ann_close(p, n);
        ra_ann_alloc((void *)a, size, n - (a - (uintptr_t)p), false);
      }
#endif
      return (void *)a;
    }
  }
  if (RA_UNLIKELY(_ra_heap_current() == &_ra_heap_empty) && heap_first() == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  bool is_zero;
  size_t fails = commit_failures();
  void *p = _ra_huge_alloc(size == 0 ? 1 : size, align, &is_zero);
  if (p == NULL && _ra_purge_for_retry(fails)) p = _ra_huge_alloc(size == 0 ? 1 : size, align, &is_zero);
  if (p == NULL) {
    errno = ENOMEM;
  } else {
    RA_ANN_ALLOC(p, size, _ra_chunk_of(p)->huge_size, false);
    if (RA_UNLIKELY(_ra_prof_route)) _ra_prof_note(p, size);
  }
  return p;
}

void *ra_aligned_alloc(size_t alignment, size_t size) {
  if (RA_UNLIKELY(alignment == 0 || (alignment & (alignment - 1)) != 0)) {
    errno = EINVAL;
    return NULL;
  }
  if (alignment <= RA_ALIGN) return ra_malloc(size);
  return malloc_aligned(alignment, size);
}

int ra_posix_memalign(void **out, size_t alignment, size_t size) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment % sizeof(void *) != 0) return EINVAL;
  int saved = errno;
  void *p = alignment <= RA_ALIGN ? ra_malloc(size) : malloc_aligned(alignment, size);
  if (p == NULL) {
    errno = saved;
    return ENOMEM;
  }
  *out = p;
  return 0;
}

#if RA_ANNOTATE
/* Annotated builds: ra_realloc (at the end of this file) wraps the function below, which is
 * compiled under another name; its body is the same in every build. */
static void *realloc_unannotated(void *p, size_t size);
#define ra_realloc realloc_unannotated
#endif

void *ra_realloc(void *p, size_t size) {
  if (p == NULL) return ra_malloc(size);
  /* A block free's fast path would take (internal.h) is a whole block of a plain page of this
   * thread's: its usable size is the block size, and a size that still fits it well keeps it
   * without the generic lookup (growing strings, one realloc per append). */
  ra_page_t *owned = _ra_fast_owned_page(p);
  if (owned != NULL && size <= owned->block_size && size >= owned->block_size / 2 && size != 0) return p;
  ra_chunk_t *chunk;
  ra_page_t *page;
  ra_block_t *block;
  if (RA_UNLIKELY(!_ra_free_block_for(p, true, &chunk, &page, &block))) {
    errno = EINVAL; /* reported; warn mode: refused, p untouched */
    return NULL;
  }
  if (size == 0) {
    ra_free(p);
    return ra_malloc(0);
  }
  const uint8_t *end = page == NULL ? chunk->huge_block + chunk->huge_size : _ra_block_end(page, block);
  size_t usable = (size_t)(end - (uint8_t *)p);
  if (size <= usable && size >= usable / 2) return p; /* fits, and not much is wasted */
  if (page == NULL && size > RA_LARGE_MAX && _ra_huge_resize(chunk, size)) return p;
  void *q = ra_malloc(size);
  if (q == NULL) return NULL; /* p stays valid and untouched */
  memcpy(q, p, size < usable ? size : usable);
  ra_free(p);
  return q;
}

#if RA_ANNOTATE
#undef ra_realloc
/* The tools' view around a realloc: the bytes of the old block past its requested size are opened
 * first (a moving realloc copies up to the usable size: the copy then carries their "unknown"
 * state to the new block), and afterwards closed again, or, when the block stayed, the block is
 * resized for the tools (ASan: unpoisoned to the new size; memcheck: VALGRIND_RESIZEINPLACE_BLOCK).
 * A moved block was freed and the new one handed out by ra_free and ra_malloc, annotated there. */
void *ra_realloc(void *p, size_t size) {
  bool ok = false;
  size_t usable = p != NULL && size != 0 ? _ra_free_usable_size(p, &ok) : 0;
  if (!ok) return realloc_unannotated(p, size); /* NULL, size 0 (free + malloc), or a bad pointer */
  size_t live = ra_ann_live_size(p, usable);
  ra_ann_open((uint8_t *)p + live, usable - live);
  void *q = realloc_unannotated(p, size);
  if (q == NULL) {
    ra_ann_close((uint8_t *)p + live, usable - live); /* p untouched */
  } else if (q == p) {
    size_t usable_now = _ra_free_usable_size(p, &ok);
    ra_ann_resize(p, live, size, usable_now);
  }
  return q;
}
#endif
