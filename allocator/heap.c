/* Thread heaps. Each thread finds its heap through one initial-exec TLS
 * slot; until its first allocation the slot points at a static empty heap whose pages have no free
 * blocks, so the fast path needs no "initialised?" test. Heap structs live in arena metadata and
 * are recycled.
 *
 * At thread exit a heap is parked: kept whole, with its pages, queues and chunks, and the next
 * thread that starts takes it over as it is (its first allocation finds pages of every class it
 * used, in cache, and frees into them are local). A heap parked for half the purge delay, or when
 * no thread with a heap is left, is abandoned: its empty pages go back to their chunks and the
 * chunks wait on the abandoned list for adoption or a sweep (both here). Process start-up, fork
 * and thread exit are init.c's; it calls in here. */
#include <errno.h>
#include <string.h>

#include "internal.h"

ra_heap_t _ra_heap_empty = {.direct = {[0 ... RA_DIRECT_COUNT - 1] = &_ra_page_empty}, .tag = RA_TAG_NONE};

static ra_lock_t heap_lock = RA_LOCK_INIT;
static ra_heap_t *heaps_all;  /* live heaps (heap_lock) */
static ra_heap_t *heap_pool;  /* recycled heap structs (heap_lock) */
static ra_heap_t *heaps_parked; /* heaps of exited threads, newest first, through next_pool (heap_lock) */
static atomic_size_t parked_count; /* written under heap_lock */
static atomic_size_t heaps_live; /* threads with a heap (changed under heap_lock); the purger lives
                                    while this is not 0 */

/* A walk (snapshot.c) reads pages without their owner's help, exact while no owner runs. A parked
 * heap has no thread; the thread that abandons it (_ra_heap_reap_parked) holds this lock, and so
 * does each read of a walk (a chunk, a page again, the delayed lists; never a callback, which may
 * allocate, walk again, or reach a purge pass). The reaper only try-locks it: a pass that finds a
 * read under way leaves the parked heaps to a later pass. */
static ra_lock_t walk_lock = RA_LOCK_INIT;
void _ra_heap_walk_lock(void) { _ra_lock(&walk_lock); }
void _ra_heap_walk_unlock(void) { _ra_unlock(&walk_lock); }

/* Heap tags: the chunk map holds, for each chunk, its owner's tag (internal.h), so that free's
 * fast path tells "my heap's chunk" by one compare. A heap takes a tag when it is made and keeps it
 * while parked (the thread that takes the heap over takes the tag with it); it gives the tag back
 * when it is retired, after each of its chunks' entries went to 1 (abandoned) or 0 (released).
 * Both happen under heap_lock, which orders those stores before any use of the tag by its next
 * heap. A heap that finds no tag free has none (RA_TAG_NONE): its chunks' entries are 1 and its
 * thread's frees take the generic path. */
static uint64_t tags_taken[(RA_TAG_LAST + 64) / 64]; /* a bit per tag (heap_lock) */
static size_t tags_word;                             /* where the next search starts (heap_lock) */
size_t _ra_heap_tag_last = RA_TAG_LAST;              /* the highest tag handed out; tests lower it */

static uint16_t tag_take(void) {
  size_t last = _ra_heap_tag_last < RA_TAG_LAST ? _ra_heap_tag_last : RA_TAG_LAST;
  if (last < RA_TAG_FIRST) return RA_TAG_NONE;
  size_t words = last / 64 + 1;
  for (size_t k = 0; k < words; k++) {
    size_t w = (tags_word + k) % words;
    uint64_t avail = ~tags_taken[w];
    if (w == 0) avail &= ~(((uint64_t)1 << RA_TAG_FIRST) - 1); /* the entries "no chunk" and "no owner" */
    if (w == last / 64 && (last & 63) != 63) avail &= ((uint64_t)2 << (last & 63)) - 1;
    if (avail != 0) {
      unsigned b = (unsigned)__builtin_ctzll(avail);
      tags_taken[w] |= (uint64_t)1 << b;
      tags_word = w;
      return (uint16_t)(w * 64 + b);
    }
  }
  return RA_TAG_NONE;
}

static void tag_give(uint16_t tag) {
  if (tag != RA_TAG_NONE) tags_taken[tag / 64] &= ~((uint64_t)1 << (tag % 64));
}

/* More parked heaps than this (a pool of threads ending at once) are abandoned at once. */
#define PARKED_MAX 64

#if RA_HAS_THREAD_VARS
/* The heap of the first block a thread freed before it had a heap of its own: a thread that starts
 * by freeing what an exited thread left (a worker taking over a request) takes that thread's heap,
 * and its frees into it are then local. Only a hint: checked against the parked list. */
static __thread ra_heap_t *heir_hint __attribute__((tls_model(RA_TLS_MODEL)));
void _ra_heap_note_free(ra_heap_t *owner) {
  if (heir_hint == NULL) heir_hint = owner;
}
static ra_heap_t *heir_take(void) {
  ra_heap_t *h = heir_hint;
  heir_hint = NULL;
  return h;
}
#else
void _ra_heap_note_free(ra_heap_t *owner) { (void)owner; }
static ra_heap_t *heir_take(void) { return NULL; }
#endif

size_t _ra_heap_live(void) { return atomic_load_explicit(&heaps_live, memory_order_relaxed); }

/* ---- Abandoned chunks, adoption, and where a heap finds a page -------------------------------------- */

static ra_lock_t abandoned_lock = RA_LOCK_INIT;
static ra_chunk_t *abandoned;          /* doubly linked through next/prev (abandoned_lock) */
static atomic_size_t abandoned_count;

/* A chunk of a heap whose thread is gone goes on the abandoned list; its pages are already in the
 * RA_DELAY_NEVER state. */
static void chunk_abandon(ra_chunk_t *c) {
  _ra_arena_chunk_set_heap(c, NULL);
  ra_assert_internal(!c->abandoned && _ra_page_chunk_check(c, NULL, false));
  _ra_lock(&abandoned_lock);
  c->abandoned = 1;
  _ra_chunk_list_push(&abandoned, c);
  atomic_fetch_add_explicit(&abandoned_count, 1, memory_order_relaxed);
  _ra_unlock(&abandoned_lock);
  _ra_purge_notify(); /* other threads' frees into it are collected by a sweep */
}

static void abandoned_unlink(ra_chunk_t *c) {
  _ra_chunk_list_remove(&abandoned, c);
  c->abandoned = 0;
  atomic_fetch_sub_explicit(&abandoned_count, 1, memory_order_relaxed);
}

static ra_chunk_t *abandoned_pop(void) {
  if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) == 0) return NULL;
  _ra_lock(&abandoned_lock);
  ra_chunk_t *c = abandoned;
  if (c != NULL) abandoned_unlink(c);
  _ra_unlock(&abandoned_lock);
  return c;
}

/* Does any page of the chunk hold blocks other threads freed and nobody collected? */
static bool chunk_has_remote_frees(const ra_chunk_t *c) {
  for (size_t idx = 1; idx < RA_SLICES; idx++) {
    const ra_page_t *page = &c->pages[idx];
    if ((atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE) == 0 &&
        (atomic_load_explicit(&page->xfree, memory_order_relaxed) & ~(uintptr_t)3) != 0)
      return true;
  }
  return false;
}

/* Sweep the abandoned chunks that other threads freed into (a purge pass): collect those frees,
 * give the pages they emptied back, and release chunks that became empty; the rest go back on the
 * list. Any thread may do it: a chunk taken off the list (under its lock) belongs to nobody else,
 * and other threads only ever push onto its pages' remote lists. A thread whose frees emptied its
 * pages is gone, and the program may never start another: without this, the memory would stay. */
void _ra_heap_sweep_abandoned(void) {
  if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) == 0) return;
  ra_chunk_t *todo = NULL;
  _ra_lock(&abandoned_lock);
  for (ra_chunk_t *c = abandoned, *next; c != NULL; c = next) {
    next = c->next;
    if (!chunk_has_remote_frees(c)) continue;
    abandoned_unlink(c);
    c->next = todo;
    todo = c;
  }
  _ra_unlock(&abandoned_lock);
  uint64_t now = _ra_now_ms();
  for (ra_chunk_t *c = todo, *next; c != NULL; c = next) {
    next = c->next;
    bool released = false;
    for (size_t idx = 1; idx < RA_SLICES && !released;) {
      ra_page_t *page = &c->pages[idx];
      if (atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_NOT_PAGE) {
        idx++;
        continue;
      }
      idx += page->slice_count;
      _ra_chunk_lock(c); /* a walk (inspect.c) reads abandoned chunks' pages holding it */
      _ra_page_collect(page);
      bool empty = page->used == 0;
      _ra_chunk_unlock(c);
      if (!empty) continue;
      released = c->pages_in_use == 1;
      _ra_chunk_span_free(NULL, c, page, now);
    }
    if (!released) chunk_abandon(c);
  }
}

/* Make `heap` the owner of an abandoned chunk: collect what other threads freed meanwhile, give
 * empty pages back, and queue the rest. The chunk may be released when every page was empty. */
static void chunk_adopt(ra_heap_t *heap, ra_chunk_t *c) {
  _ra_arena_chunk_set_heap(c, heap);
  _ra_chunk_list_push(c->free_count > 0 ? &heap->chunks : &heap->chunks_full, c);
  for (size_t idx = 1; idx < RA_SLICES;) {
    ra_page_t *page = &c->pages[idx];
    uint8_t flags = atomic_load_explicit(&page->flags, memory_order_relaxed);
    if (flags & RA_PAGE_NOT_PAGE) {
      idx++;
      continue;
    }
    idx += page->slice_count;
    _ra_page_set_delay(page, RA_DELAY_NONE, true);
    _ra_page_set_flag(page, RA_PAGE_IN_FULL, false);
    _ra_page_collect(page);
    if (page->used == 0) {
      bool last = c->pages_in_use == 1;
      _ra_chunk_span_free(heap, c, page, _ra_now_ms());
      if (last) return; /* the chunk went back to its arena */
    } else {
      _ra_page_queue_push(heap, page);
      ra_assert_internal(_ra_page_queued_is_valid(heap, page, false));
    }
  }
  ra_assert_internal(_ra_page_chunk_check(c, heap, false));
}

/* A run of `slices` free slices for a new page, in this order: slices of the heap's own chunks
 * freed lately and still committed (reusing them costs no page faults, and they would otherwise
 * sit in memory until a purge while fresh slices get touched); then any free slices of its chunks;
 * then an abandoned chunk, adopted; then a new chunk. NULL when out of memory. */
static ra_page_t *span_find(ra_heap_t *heap, size_t slices) {
  ra_page_t *page;
  for (ra_chunk_t *c = heap->chunks; c != NULL; c = c->next)
    if ((page = _ra_chunk_span_take(heap, c, slices, true)) != NULL) return page;
  _ra_purge_pressure(); /* no warm run: the span will need fresh memory */
  for (ra_chunk_t *c = heap->chunks; c != NULL; c = c->next)
    if ((page = _ra_chunk_span_take(heap, c, slices, false)) != NULL) return page;
  ra_chunk_t *c;
  while ((c = abandoned_pop()) != NULL) {
    chunk_adopt(heap, c);
    if (atomic_load_explicit(&c->heap, memory_order_relaxed) != heap) continue; /* emptied and released */
    if ((page = _ra_chunk_span_take(heap, c, slices, false)) != NULL) return page;
  }
  c = _ra_chunk_new(heap);
  return c != NULL ? _ra_chunk_span_take(heap, c, slices, false) : NULL;
}

/* A new page of class `class_idx` on a span (span_find), queued first, when the heap's queue has
 * none with room (_ra_heap_find_page); NULL when out of memory. */
ra_page_t *_ra_heap_page_new(ra_heap_t *heap, size_t class_idx) {
  ra_page_t *page = span_find(heap, _ra_page_class_slices(class_idx));
  if (page == NULL || _ra_page_setup(heap, page, class_idx) != 0) return NULL;
  return page;
}

/* fork() (init.c runs the handlers in the lock order): the heap list and the abandoned list are
 * held across it. In the child only the forking thread lives on; a walk or a reap in another thread
 * does not exist there (a reaped heap it held is lost, as a heap whose thread was exiting is). */
void _ra_heap_fork_prepare(void) {
  _ra_lock(&heap_lock);
  _ra_lock(&abandoned_lock);
}
void _ra_heap_fork_release(void) {
  _ra_unlock(&abandoned_lock);
  _ra_unlock(&heap_lock);
}
void _ra_heap_fork_child(void) {
  _ra_lock_init(&walk_lock);
  /* The other heaps are orphans. They keep their tags, and their chunks' map entries hold them:
   * no thread of the child has those tags, so its frees into them take the generic path. */
  atomic_store_explicit(&heaps_live, _ra_heap_current() != &_ra_heap_empty ? 1 : 0, memory_order_relaxed);
}

static void heap_reset(ra_heap_t *h) {
  uint32_t gen = h->generation;
  memset(h, 0, sizeof *h);
  h->generation = gen + 1;
  for (size_t i = 0; i < RA_DIRECT_COUNT; i++) h->direct[i] = &_ra_page_empty;
  h->tag = RA_TAG_NONE;
}

/* The calling thread's heap, created on its first allocation (the process initialised: alloc.c).
 * NULL when no memory is left. */
ra_heap_t *_ra_heap_get_slow(void) {
  ra_heap_t *h = _ra_heap_current();
  if (h != &_ra_heap_empty) return h;
  ra_heap_t *want = heir_take();
  _ra_lock(&heap_lock);
  /* An exited thread's heap first: the one this thread freed into, else the latest parked (its
   * memory is the likeliest in cache). */
  ra_heap_t **link = &heaps_parked;
  if (want != NULL) {
    while (*link != NULL && *link != want) link = &(*link)->next_pool;
    if (*link == NULL) link = &heaps_parked;
  }
  h = *link;
  if (h != NULL) {
    *link = h->next_pool;
    atomic_store_explicit(&parked_count, atomic_load_explicit(&parked_count, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    atomic_store_explicit(&h->parked, false, memory_order_relaxed);
    h->next_pool = NULL;
    h->generation++;
    atomic_fetch_add_explicit(&heaps_live, 1, memory_order_relaxed);
  }
  _ra_unlock(&heap_lock);
  if (h == NULL) {
    _ra_lock(&heap_lock);
    h = heap_pool;
    if (h != NULL) heap_pool = h->next_pool;
    _ra_unlock(&heap_lock);
    if (h == NULL) {
      h = _ra_arena_meta_alloc(sizeof *h);
      if (h == NULL) return NULL;
    }
    heap_reset(h);
    h->alive = true;
    _ra_lock(&heap_lock);
    h->tag = tag_take();
    h->prev_all = NULL;
    h->next_all = heaps_all;
    if (heaps_all) heaps_all->prev_all = h;
    heaps_all = h;
    atomic_fetch_add_explicit(&heaps_live, 1, memory_order_relaxed);
    _ra_unlock(&heap_lock);
  }
  ra_assert_internal(_ra_heap_is_valid(h, RA_HEAP_LIVE));
  _ra_heap_set_current(h, h->tag); /* a parked heap's tag comes with it */
  _ra_thread_register(h);
  return h;
}

/* Blocks other threads freed into this heap's full pages. */
void _ra_heap_collect_delayed(ra_heap_t *heap) {
  if (atomic_load_explicit(&heap->delayed_free, memory_order_relaxed) == NULL) return;
  ra_block_t *b = atomic_exchange_explicit(&heap->delayed_free, NULL, memory_order_acquire);
  while (b != NULL) {
    ra_block_t *next = _ra_block_next(b);
    if (next != NULL && !_ra_heap_delayed_link_ok(next)) {
      _ra_report_corrupt_list(b);
      next = NULL;
    }
    ra_chunk_t *c = _ra_chunk_of(b);
    _ra_page_free_block(heap, _ra_page_of(c, b), b, true);
    b = next;
  }
}

typedef void (*page_fn)(ra_heap_t *heap, ra_page_t *page);

static void heap_foreach_page(ra_heap_t *heap, page_fn fn) {
  for (size_t i = 0; i <= RA_CLASS_COUNT; i++) {
    ra_page_queue_t *q = i < RA_CLASS_COUNT ? &heap->queues[i] : &heap->full;
    ra_page_t *next;
    for (ra_page_t *p = q->first; p != NULL; p = next) {
      next = p->next;
      fn(heap, p);
    }
  }
}

static void page_stop_delay(ra_heap_t *heap, ra_page_t *page) {
  (void)heap;
  _ra_page_set_delay(page, RA_DELAY_NEVER, false);
}

static void page_free_if_empty(ra_heap_t *heap, ra_page_t *page) {
  _ra_page_collect(page);
  if (page->used != 0) return;
  /* A page kept empty at the head of its queue has been free since it was retired. */
  bool kept = page->retire_ms != 0 && page->prev == NULL && page->next == NULL;
  uint64_t now = _ra_now_ms();
  _ra_page_free_since(heap, page, kept ? _ra_ms_from32(now, page->retire_ms) : now);
}

/* The thread is gone: no page may notify this heap any more, then everything empty goes back and
 * the chunks that still hold live blocks wait for a new owner. */
static void heap_abandon(ra_heap_t *heap) {
  heap_foreach_page(heap, page_stop_delay);
  _ra_heap_collect_delayed(heap);     /* complete: no remote thread can push any more */
  heap_foreach_page(heap, page_stop_delay); /* pages unfulled just now went back to NONE */
  heap_foreach_page(heap, page_free_if_empty);
  ra_assert_internal(_ra_heap_is_valid(heap, RA_HEAP_ABANDONING));
  ra_chunk_t *c;
  while ((c = heap->chunks) != NULL) {
    _ra_chunk_list_remove(&heap->chunks, c);
    chunk_abandon(c);
  }
  while ((c = heap->chunks_full) != NULL) {
    _ra_chunk_list_remove(&heap->chunks_full, c);
    chunk_abandon(c);
  }
  ra_assert_internal(heap->chunks == NULL && heap->chunks_full == NULL &&
                     atomic_load_explicit(&heap->delayed_free, memory_order_relaxed) == NULL);
}

/* Abandon a heap no thread uses (its own thread, exiting, or a parked heap taken off the list) and
 * recycle its struct. */
static void heap_retire(ra_heap_t *h) {
  heap_abandon(h);
  if (_ra_heap_current() == h) _ra_heap_set_current(&_ra_heap_empty, RA_TAG_NONE);
  _ra_lock(&heap_lock);
  tag_give(h->tag); /* no chunk map entry holds it any more: heap_abandon */
  h->tag = RA_TAG_NONE;
  if (h->prev_all) h->prev_all->next_all = h->next_all;
  else heaps_all = h->next_all;
  if (h->next_all) h->next_all->prev_all = h->prev_all;
  h->alive = false;
  atomic_store_explicit(&h->parked, false, memory_order_relaxed);
  h->next_pool = heap_pool;
  heap_pool = h;
  _ra_unlock(&heap_lock);
}

/* Abandon the parked heaps that have waited `delay` ms (all with force), holding walk_lock. Any
 * thread may: a heap taken off the parked list belongs to it alone. True when parked heaps are
 * left. */
static bool reap_parked(uint64_t now, uint64_t delay, bool force) {
  _ra_lock(&heap_lock);
  /* Newest first: the heaps old enough are the list's tail. */
  ra_heap_t **link = &heaps_parked;
  while (*link != NULL && !force && now < (*link)->parked_ms + delay) link = &(*link)->next_pool;
  ra_heap_t *todo = *link;
  *link = NULL;
  size_t n = 0;
  for (ra_heap_t *h = todo; h != NULL; h = h->next_pool) n++;
  size_t left = atomic_load_explicit(&parked_count, memory_order_relaxed) - n;
  atomic_store_explicit(&parked_count, left, memory_order_relaxed);
  _ra_unlock(&heap_lock);
  for (ra_heap_t *h = todo, *next; h != NULL; h = next) {
    next = h->next_pool;
    h->next_pool = NULL;
    heap_retire(h);
  }
  return left != 0;
}

bool _ra_heap_reap_parked(uint64_t now, uint64_t delay, bool force) {
  if (atomic_load_explicit(&parked_count, memory_order_relaxed) == 0) return false;
  if (!_ra_trylock(&walk_lock)) return true; /* a walk is reading: a later pass */
  bool left = reap_parked(now, delay, force);
  _ra_unlock(&walk_lock);
  return left;
}

/* Thread exit (init.c). The heap is parked when another thread with a heap lives on (whose purges,
 * or the purger's, abandon it if no new thread takes it) and purging is on a delay; otherwise
 * abandoned now, and the last thread abandons the parked heaps too. Says which. */
ra_heap_exit_t _ra_heap_thread_exit(ra_heap_t *h) {
  if (h == NULL || h == &_ra_heap_empty) return RA_HEAP_EXIT_NONE;
  long long delay = _ra_purge_delay();
  uint64_t now = delay > 0 ? _ra_now_ms() : 0;
  _ra_lock(&heap_lock);
  bool last = atomic_fetch_sub_explicit(&heaps_live, 1, memory_order_relaxed) == 1;
  bool park = !last && delay > 0 && atomic_load_explicit(&parked_count, memory_order_relaxed) < PARKED_MAX;
  if (park) {
    /* No free of this thread's runs past here, and a new thread may take the heap at once. */
    if (_ra_heap_current() == h) _ra_heap_set_current(&_ra_heap_empty, RA_TAG_NONE);
    h->parked_ms = now;
    atomic_store_explicit(&h->parked, true, memory_order_relaxed);
    h->next_pool = heaps_parked;
    heaps_parked = h;
    atomic_store_explicit(&parked_count, atomic_load_explicit(&parked_count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  }
  _ra_unlock(&heap_lock);
  if (park) return RA_HEAP_EXIT_PARKED;
  heap_retire(h);
  if (!last) return RA_HEAP_EXIT_RETIRED;
  /* Waits out a walk in another thread (this one is in no walk: it is exiting). */
  _ra_lock(&walk_lock);
  reap_parked(0, 0, true);
  _ra_unlock(&walk_lock);
  return RA_HEAP_EXIT_LAST;
}

/* ---- Invariants ------------------------------------------------------------------------------------- */

bool _ra_heap_is_valid(const ra_heap_t *heap, ra_heap_check_t how) {
  if (heap == &_ra_heap_empty) return true;
  bool at_rest = how == RA_HEAP_AT_REST, abandoning = how == RA_HEAP_ABANDONING;
  if (!heap->alive) return _ra_report_invariant("a heap in use is alive", heap);
  for (int full = 0; full < 2; full++) {
    ra_chunk_t *prev = NULL;
    for (ra_chunk_t *c = full ? heap->chunks_full : heap->chunks; c != NULL; prev = c, c = c->next) {
      if (c->prev != prev) return _ra_report_invariant("chunk list links", c);
      if ((c->free_count == 0) != (full == 1)) return _ra_report_invariant("chunk on the right list", c);
      if (!_ra_page_chunk_check(c, heap, at_rest)) return false;
    }
  }
  for (size_t i = 0; i <= RA_CLASS_COUNT; i++) {
    const ra_page_queue_t *q = i < RA_CLASS_COUNT ? &heap->queues[i] : &heap->full;
    for (const ra_page_t *pg = q->first; pg != NULL; pg = pg->next) {
      if (i < RA_CLASS_COUNT && pg->class_idx != i) return _ra_report_invariant("page in its class queue", pg);
      if (((atomic_load_explicit(&pg->flags, memory_order_relaxed) & RA_PAGE_IN_FULL) != 0) != (i == RA_CLASS_COUNT))
        return _ra_report_invariant("IN_FULL flag matches the queue", pg);
      if (!_ra_page_queued_is_valid(heap, pg, abandoning)) return false;
      if (at_rest) {
        if ((atomic_load_explicit(&pg->xfree, memory_order_relaxed) & 3) == RA_DELAY_FREEING)
          return _ra_report_invariant("no delayed free in flight at rest", pg);
        /* An empty page was retired (kept for its class) and carries the time it became empty,
         * which the owner's purge pass (_ra_purge_heap_pages) goes by. */
        if (pg->used == 0 && pg->retire_ms == 0) return _ra_report_invariant("an empty page has its retire time", pg);
      }
    }
    if (i < RA_CLASS_COUNT && _ra_class_size[i] <= RA_DIRECT_MAX) {
      const ra_page_t *want = q->first && !_ra_canary ? q->first : &_ra_page_empty;
      size_t lo = i == 0 ? 0 : _ra_class_size[i - 1] + 1;
      for (size_t d = lo; d <= _ra_class_size[i]; d++)
        if (heap->direct[d] != want) return _ra_report_invariant("direct[] points at the queue head", q);
    }
  }
  return true;
}

/* The heap validator: every invariant of the calling thread's heap, its chunks, their spans and
 * pages (free lists walked), and the page queues. True when all hold; otherwise the first broken
 * one is reported on stderr. Call it when no other thread frees into this heap's pages. */
bool _ra_heap_validate(void) { return _ra_heap_is_valid(_ra_heap_current(), RA_HEAP_AT_REST); }

/* Call fn on every live heap, holding the heap list lock (fn must not allocate). */
void _ra_heap_foreach(void (*fn)(ra_heap_t *heap, void *arg), void *arg) {
  _ra_lock(&heap_lock);
  for (ra_heap_t *h = heaps_all; h != NULL; h = h->next_all) fn(h, arg);
  _ra_unlock(&heap_lock);
}
