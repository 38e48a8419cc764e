/* Thread heaps. Each thread finds its heap through one initial-exec TLS
 * slot; until its first allocation the slot points at a static empty heap whose pages have no free
 * blocks, so the fast path needs no "initialised?" test. Heap structs live in arena metadata and
 * are recycled.
 *
 * At thread exit a heap is parked: kept whole, with its pages, queues and chunks, and the next
 * thread that starts takes it over as it is (its first allocation finds pages of every class it
 * used, in cache, and frees into them are local). A heap parked for half the purge delay, or when
 * no thread with a heap is left, is abandoned: its empty pages go back to their chunks and the
 * chunks wait on the abandoned list for adoption or a sweep (chunk.c). */
#include <errno.h>
#include <string.h>

#include "internal.h"

ra_heap_t _ra_heap_empty = {.direct = {[0 ... RA_DIRECT_COUNT - 1] = &_ra_page_empty}};

bool _ra_commit_whole_chunks;
bool _ra_guard_pages;
size_t _ra_protect_freed;
uintptr_t _ra_key; /* free-list link secret, set once before the first block exists */

static ra_lock_t init_lock = RA_LOCK_INIT;
static atomic_bool initialised;

/* Keeps init.c (start-up, fork, exit: nothing calls it) in a static link from an archive. */
__attribute__((used)) static const char *const init_anchor = &_ra_init_linked;

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
void _ra_walk_lock(void) { _ra_lock(&walk_lock); }
void _ra_walk_unlock(void) { _ra_unlock(&walk_lock); }

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

static void heap_thread_done(void *value);

/* Once per process, before the first heap (from the first malloc, or from init.c's constructor,
 * whichever comes first). Allocates nothing: getenv, open/read and the thread layer's key creation
 * (glibc keeps the first keys in the thread descriptor) are safe here. */
void _ra_init(void) {
  if (atomic_load_explicit(&initialised, memory_order_acquire)) return;
  _ra_lock(&init_lock);
  if (!atomic_load_explicit(&initialised, memory_order_relaxed)) {
    _ra_options_init();
    _ra_prof_init();
    /* Odd and with its top 12 bits RA_KEY_TOP: a zeroed first word (blocks are 16-aligned, far
     * below 2^63) then never decodes to NULL or to an address in the block's chunk, and common
     * values in a live block's first word never look like a link (_ra_block_looks_free). */
    _ra_key = ((uintptr_t)_ra_os_random() & ~RA_KEY_TOP_MASK) | RA_KEY_TOP | 1;
    const ra_os_info_t *os = _ra_os_info();
    long long mode = _ra_option(RA_OPT_COMMIT);
    bool over = mode == RA_COMMIT_OPT_OVERCOMMIT || (mode == RA_COMMIT_OPT_AUTO && !os->overcommit_strict);
    _ra_os_set_commit_mode(over ? RA_COMMIT_OVERCOMMIT : RA_COMMIT_PROTECT);
    /* Where every commit splits a mapping (Linux, vm.max_map_count), protect mode commits whole
     * chunks: neighbouring chunks then merge into one mapping. See docs/os-layer.md. */
    _ra_commit_whole_chunks = !over && os->commit_splits_mappings;
    _ra_guard_pages = _ra_option(RA_OPT_GUARD_PAGES) != 0;
    _ra_protect_freed = (size_t)_ra_option(RA_OPT_PROTECT_FREED);
    _ra_secure_init();
    _ra_purge_init();
    _ra_thread_init(heap_thread_done);
    if (_ra_option(RA_OPT_VERBOSE)) {
      _ra_options_print();
      _ra_write(2, "ramalloc: os page %zu, granularity %zu, commit mode %s\n", os->page_size, os->granularity,
                _ra_os_commit_mode() == RA_COMMIT_OVERCOMMIT ? "overcommit" : "protect");
    }
    atomic_store_explicit(&initialised, true, memory_order_release);
  }
  _ra_unlock(&init_lock);
}

/* fork() (init.c runs the handlers in the lock order): the heap list is held across it. In the
 * child only the forking thread lives on; a walk or a reap in another thread does not exist there
 * (a reaped heap it held is lost, as a heap whose thread was exiting is). */
void _ra_heap_fork_prepare(void) { _ra_lock(&heap_lock); }
void _ra_heap_fork_release(void) { _ra_unlock(&heap_lock); }
void _ra_heap_fork_child(void) {
  _ra_lock_init(&walk_lock);
  /* The other heaps are orphans. */
  atomic_store_explicit(&heaps_live, _ra_heap_current() != &_ra_heap_empty ? 1 : 0, memory_order_relaxed);
}

static void heap_reset(ra_heap_t *h) {
  uint32_t gen = h->generation;
  memset(h, 0, sizeof *h);
  h->generation = gen + 1;
  for (size_t i = 0; i < RA_DIRECT_COUNT; i++) h->direct[i] = &_ra_page_empty;
}

/* The calling thread's heap, created on its first allocation. NULL when no memory is left. */
ra_heap_t *_ra_heap_get_slow(void) {
  ra_heap_t *h = _ra_heap_current();
  if (h != &_ra_heap_empty) return h;
  _ra_init();
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
    h->prev_all = NULL;
    h->next_all = heaps_all;
    if (heaps_all) heaps_all->prev_all = h;
    heaps_all = h;
    atomic_fetch_add_explicit(&heaps_live, 1, memory_order_relaxed);
    _ra_unlock(&heap_lock);
  }
  ra_assert_internal(_ra_heap_is_valid(h, RA_HEAP_LIVE));
  _ra_heap_set_current(h);
  _ra_thread_register(h);
  _ra_purge_start_wanted(); /* the process's first heap starts the purger (purge.c) */
  return h;
}

/* Blocks other threads freed into this heap's full pages. */
void _ra_heap_collect_delayed(ra_heap_t *heap) {
  if (atomic_load_explicit(&heap->delayed_free, memory_order_relaxed) == NULL) return;
  ra_block_t *b = atomic_exchange_explicit(&heap->delayed_free, NULL, memory_order_acquire);
  while (b != NULL) {
    /* This list links blocks of many chunks: a sound link points into one of ramalloc's chunks. */
    ra_block_t *next = _ra_block_next(b);
    if (next != NULL && !_ra_chunk_map_has((uintptr_t)_ra_chunk_of(next))) {
      _ra_corrupt_list(b);
      next = NULL;
    }
    ra_chunk_t *c = _ra_chunk_of(b);
    _ra_free_local(heap, _ra_page_of(c, b), b);
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
    _ra_chunk_abandon(c);
  }
  while ((c = heap->chunks_full) != NULL) {
    _ra_chunk_list_remove(&heap->chunks_full, c);
    _ra_chunk_abandon(c);
  }
  ra_assert_internal(heap->chunks == NULL && heap->chunks_full == NULL &&
                     atomic_load_explicit(&heap->delayed_free, memory_order_relaxed) == NULL);
  /* Thread exit is a slow path too: give back what has waited out the delay. */
  long long delay = _ra_option(RA_OPT_PURGE_DELAY_MS);
  if (delay >= 0) _ra_arena_purge(_ra_now_ms(), (uint64_t)delay, false);
}

/* Abandon a heap no thread uses (its own thread, exiting, or a parked heap taken off the list) and
 * recycle its struct. */
static void heap_retire(ra_heap_t *h) {
  heap_abandon(h);
  if (_ra_heap_current() == h) _ra_heap_set_current(&_ra_heap_empty);
  _ra_lock(&heap_lock);
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

/* Thread exit. The heap is parked when another thread with a heap lives on (whose purges, or the
 * purger's, abandon it if no new thread takes it) and purging is on a delay; otherwise abandoned
 * now, and the last thread abandons the parked heaps too. */
static void heap_thread_done(void *value) {
  ra_heap_t *h = value;
  if (h == NULL || h == &_ra_heap_empty) return;
  long long delay = _ra_option(RA_OPT_PURGE_DELAY_MS);
  uint64_t now = delay > 0 ? _ra_now_ms() : 0;
  _ra_lock(&heap_lock);
  bool last = atomic_fetch_sub_explicit(&heaps_live, 1, memory_order_relaxed) == 1;
  bool park = !last && delay > 0 && atomic_load_explicit(&parked_count, memory_order_relaxed) < PARKED_MAX;
  if (park) {
    /* No free of this thread's runs past here, and a new thread may take the heap at once. */
    if (_ra_heap_current() == h) _ra_heap_set_current(&_ra_heap_empty);
    h->parked_ms = now;
    atomic_store_explicit(&h->parked, true, memory_order_relaxed);
    h->next_pool = heaps_parked;
    heaps_parked = h;
    atomic_store_explicit(&parked_count, atomic_load_explicit(&parked_count, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  }
  _ra_unlock(&heap_lock);
  if (park) {
    _ra_purge_notify(); /* a later pass abandons it if no thread takes it */
    return;
  }
  heap_retire(h);
  if (last) {
    /* Waits out a walk in another thread (this one is in no walk: it is exiting). */
    _ra_lock(&walk_lock);
    reap_parked(0, 0, true);
    _ra_unlock(&walk_lock);
    _ra_purge_stop();
  }
}

/* ---- Invariants ------------------------------------------------------------------------------------- */

bool _ra_heap_is_valid(const ra_heap_t *heap, ra_heap_check_t how) {
  if (heap == &_ra_heap_empty) return true;
  bool at_rest = how == RA_HEAP_AT_REST, abandoning = how == RA_HEAP_ABANDONING;
  if (!heap->alive) return _ra_invariant_fail("a heap in use is alive", heap);
  for (int full = 0; full < 2; full++) {
    ra_chunk_t *prev = NULL;
    for (ra_chunk_t *c = full ? heap->chunks_full : heap->chunks; c != NULL; prev = c, c = c->next) {
      if (c->prev != prev) return _ra_invariant_fail("chunk list links", c);
      if ((c->free_count == 0) != (full == 1)) return _ra_invariant_fail("chunk on the right list", c);
      if (!_ra_chunk_check(c, heap, at_rest)) return false;
    }
  }
  for (size_t i = 0; i <= RA_CLASS_COUNT; i++) {
    const ra_page_queue_t *q = i < RA_CLASS_COUNT ? &heap->queues[i] : &heap->full;
    for (const ra_page_t *pg = q->first; pg != NULL; pg = pg->next) {
      if (i < RA_CLASS_COUNT && pg->class_idx != i) return _ra_invariant_fail("page in its class queue", pg);
      if (((atomic_load_explicit(&pg->flags, memory_order_relaxed) & RA_PAGE_IN_FULL) != 0) != (i == RA_CLASS_COUNT))
        return _ra_invariant_fail("IN_FULL flag matches the queue", pg);
      if (!_ra_page_queued_is_valid(heap, pg, abandoning)) return false;
      if (at_rest) {
        if ((atomic_load_explicit(&pg->xfree, memory_order_relaxed) & 3) == RA_DELAY_FREEING)
          return _ra_invariant_fail("no delayed free in flight at rest", pg);
        /* An empty page was retired (kept for its class) and carries the time it became empty,
         * which the owner's purge pass (_ra_purge_heap_pages) goes by. */
        if (pg->used == 0 && pg->retire_ms == 0) return _ra_invariant_fail("an empty page has its retire time", pg);
      }
    }
    if (i < RA_CLASS_COUNT && _ra_class_size[i] <= RA_DIRECT_MAX) {
      const ra_page_t *want = q->first && !_ra_canary ? q->first : &_ra_page_empty;
      size_t lo = i == 0 ? 0 : _ra_class_size[i - 1] / RA_ALIGN + 1;
      for (size_t d = lo; d <= _ra_class_size[i] / RA_ALIGN; d++)
        if (heap->direct[d] != want) return _ra_invariant_fail("direct[] points at the queue head", q);
    }
  }
  return true;
}

/* The heap validator: every invariant of the calling thread's heap, its chunks, their spans and
 * pages (free lists walked), and the page queues. True when all hold; otherwise the first broken
 * one is reported on stderr. Call it when no other thread frees into this heap's pages. */
bool _ra_validate_heap(void) { return _ra_heap_is_valid(_ra_heap_current(), RA_HEAP_AT_REST); }

/* Call fn on every live heap, holding the heap list lock (fn must not allocate). */
void _ra_heap_foreach(void (*fn)(ra_heap_t *heap, void *arg), void *arg) {
  _ra_lock(&heap_lock);
  for (ra_heap_t *h = heaps_all; h != NULL; h = h->next_all) fn(h, arg);
  _ra_unlock(&heap_lock);
}
