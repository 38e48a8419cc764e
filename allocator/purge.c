/* Purge: committed memory that is free goes back to the OS after RAMALLOC_PURGE_DELAY_MS, while its
 * address range stays reserved. Four kinds of free memory wait for it:
 *   - free chunks in an arena (purgeable bit and free time in the arena header): decommitted or
 *     reset whole;
 *   - free slices inside chunks still in use (purge_slices and slice_free_ms in the chunk header):
 *     any thread may purge them, holding the chunk's lock;
 *   - blocks other threads freed into the pages of abandoned chunks (their thread exited): any
 *     thread may sweep those chunks, give their empty pages back and release empty chunks;
 *   - pages of a live heap that are empty (kept so the next allocation of their class is quick, or
 *     emptied by other threads' frees and not collected yet): only the owning thread may give them
 *     back, on its own slow paths.
 * The background purger (RAMALLOC_PURGE_THREAD, on by default) runs the first three on a clock, so
 * memory goes back even when no thread takes a slow path: it sleeps on a futex while nothing waits
 * for a purge, and wakes when something becomes free (_ra_purge_notify), then once per half delay
 * until nothing is left. It is started with the process's first heap, and in a child after fork at
 * the child's first slow path once something waits, always where re-entering malloc is safe
 * (pthread_create allocates). Without it (RAMALLOC_PURGE_THREAD=0),
 * allocation slow paths run the same pass at most every half delay (one global timestamp).
 *
 * Every decision is made here (the inline part, read by the files below purge, is in internal.h:
 * the delay, reset or decommit, pressure, the notify); the files below give memory back when told
 * to, with the age and mode as arguments (_ra_chunk_purge_free, _ra_arena_slot_purge). */
#include "internal.h"

static _Atomic(uint64_t) next_pass_ms;

/* The purger's state: not started, wanted (a notify asked for it; started at the next safe point),
 * running, asked to exit (the last thread with a heap is exiting), or off (disabled, never purging,
 * or its thread could not be made). */
_Atomic(int) _ra_purger_state;
atomic_bool _ra_purger_pending;         /* free memory waits for a purge pass (_ra_purge_notify) */
_Atomic(uint32_t) _ra_purger_word;      /* the futex word the purger sleeps on */
_Atomic(uint64_t) _ra_purge_pressure_next_ms; /* _ra_purge_pressure: not before this */

/* The free slots and free slices of every arena that have waited `age` ms (all with force). */
static bool purge_arenas(uint64_t now, uint64_t age, bool force) {
  return _ra_chunk_purge_free(now, age, force, _ra_purge_reset_only());
}

static uint64_t pass_interval(uint64_t delay) { return delay >= 2 ? delay / 2 : 1; }

/* The owner's pass over its pages: collect what other threads freed into them (blocks freed into
 * full pages too), retire pages that this emptied (kept, or given back), and give back kept empty
 * pages that have waited `delay` ms (all with force). Owner only. */
void _ra_purge_heap_pages(ra_heap_t *heap, uint64_t now, uint64_t delay, bool force) {
  _ra_heap_collect_delayed(heap);
  heap->clock_ms32 = _ra_ms32(now);
  for (size_t i = 0; i <= RA_CLASS_COUNT; i++) {
    ra_page_queue_t *q = i < RA_CLASS_COUNT ? &heap->queues[i] : &heap->full;
    ra_page_t *next;
    for (ra_page_t *page = q->first; page != NULL; page = next) {
      next = page->next;
      size_t collected = _ra_page_collect_xfree(page);
      if (page->used != 0) continue;
      if (collected > 0 || page->retire_ms == 0 || (atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_IN_FULL)) {
        /* emptied just now by other threads' frees */
        if (atomic_load_explicit(&page->flags, memory_order_relaxed) & RA_PAGE_IN_FULL) _ra_page_unfull(heap, page, true);
        _ra_page_retire(heap, page);
        continue;
      }
      uint64_t since = _ra_ms_from32(now, page->retire_ms);
      if (force || now - since >= delay) _ra_page_free_since(heap, page, since);
    }
  }
}

/* One pass over the memory any thread may purge: parked heaps that no new thread took within half
 * the delay are abandoned, abandoned chunks swept (their empty pages become free slices), then
 * arenas and chunks purged. True when free memory is left waiting for a later pass. */
static bool purge_pass(uint64_t now, uint64_t delay, bool force) {
  bool parked = _ra_heap_reap_parked(now, delay / 2, force);
  _ra_heap_sweep_abandoned();
  return purge_arenas(now, delay, force) || parked;
}

/* Called on allocation slow paths. */
void _ra_purge_maybe(ra_heap_t *heap) {
  long long delay = _ra_purge_delay();
  if (delay < 0) return;
  uint64_t now = _ra_now_ms();
  heap->clock_ms32 = _ra_ms32(now);
  if (now >= heap->next_page_purge_ms) {
    heap->next_page_purge_ms = now + pass_interval((uint64_t)delay);
    _ra_purge_heap_pages(heap, now, (uint64_t)delay, false);
  }
  if (atomic_load_explicit(&_ra_purger_state, memory_order_relaxed) == RA_PURGER_RUNNING) return; /* its job */
  uint64_t next = atomic_load_explicit(&next_pass_ms, memory_order_relaxed);
  if (now < next) return;
  if (!atomic_compare_exchange_strong_explicit(&next_pass_ms, &next, now + pass_interval((uint64_t)delay),
                                               memory_order_relaxed, memory_order_relaxed))
    return; /* another thread runs this pass */
  purge_pass(now, (uint64_t)delay, false);
}

/* ra_collect (init.c): the calling heap's pages, then a pass over everything any thread may purge. */
void _ra_purge_collect(bool force) {
  long long delay = _ra_purge_delay();
  if (delay < 0 && !force) return;
  uint64_t d = delay < 0 ? 0 : (uint64_t)delay;
  uint64_t now = _ra_now_ms();
  ra_heap_t *heap = _ra_heap_current();
  if (heap != &_ra_heap_empty) {
    _ra_purge_heap_pages(heap, now, d, force);
  }
  purge_pass(now, d, force);
}

/* An allocation failed (alloc.c). When a commit was refused meanwhile (RAMALLOC_LIMIT reached, or
 * the OS out of memory: the commit_failures count moved past `failures_before`), memory held back
 * for reuse may be what is missing: parked heaps of exited threads, abandoned chunks, free memory
 * waiting out the purge delay, the calling heap's kept empty pages. Give all of it back (callers
 * are at a safe point: nothing is held) and say whether that lowered the committed bytes, so that
 * one more try may succeed. A request that failed for want of address space (or being too big)
 * changes nothing: freed memory stays reserved, so this cannot help it. */
bool _ra_purge_for_retry(size_t failures_before) {
  if (atomic_load_explicit(&_ra_counters.commit_failures, memory_order_relaxed) == failures_before) return false;
  size_t before = atomic_load_explicit(&_ra_counters.committed, memory_order_relaxed);
  _ra_purge_collect(true);
  return atomic_load_explicit(&_ra_counters.committed, memory_order_relaxed) < before;
}

/* A thread's heap was abandoned at its exit (init.c). Thread exit is a slow path too: what has
 * waited out the delay goes back. The last thread with a heap stops the purger. */
void _ra_purge_thread_exit(bool last) {
  long long delay = _ra_purge_delay();
  if (delay >= 0) purge_arenas(_ra_now_ms(), (uint64_t)delay, false);
  if (last) _ra_purge_stop();
}

/* ---- The background purger ---------------------------------------------------------------------- */

static void *purger_main(void *arg) {
  (void)arg;
  uint64_t delay = (uint64_t)_ra_purge_delay();
  uint64_t sleep_ms = pass_interval(delay);
  if (sleep_ms < 10) sleep_ms = 10; /* a pass is cheap, but not free: at most 100 a second */
  for (;;) {
    uint32_t w = atomic_load_explicit(&_ra_purger_word, memory_order_acquire);
    int st = RA_PURGER_EXITING;
    bool pending = atomic_load_explicit(&_ra_purger_pending, memory_order_acquire);
    if (atomic_compare_exchange_strong_explicit(&_ra_purger_state, &st, pending ? RA_PURGER_WANTED : RA_PURGER_IDLE,
                                                memory_order_acq_rel, memory_order_relaxed))
      return NULL; /* see _ra_purge_stop */
    if (!pending) {
      _ra_thread_wait(&_ra_purger_word, w, 0); /* nothing waits: sleep until a notify */
      continue;
    }
    _ra_thread_wait(&_ra_purger_word, w, sleep_ms); /* notifies do not wake it while a pass is pending */
    /* Cleared before the pass: memory freed during or after it notifies again. */
    atomic_store_explicit(&_ra_purger_pending, false, memory_order_release);
    if (purge_pass(_ra_now_ms(), delay, false)) atomic_store_explicit(&_ra_purger_pending, true, memory_order_release);
  }
  return NULL;
}

/* Start the purger if a notify asked for it (and some thread has a heap). Called where no allocator
 * lock is held and the calling thread's allocator state is consistent, since making a thread
 * allocates. */
void _ra_purge_start(void) {
  int st = RA_PURGER_WANTED;
  if (_ra_heap_live() == 0) return;
  if (!atomic_compare_exchange_strong_explicit(&_ra_purger_state, &st, RA_PURGER_RUNNING, memory_order_acq_rel,
                                               memory_order_relaxed))
    return;
  if (_ra_thread_start(purger_main, NULL) != 0) {
    atomic_store_explicit(&_ra_purger_state, RA_PURGER_OFF, memory_order_release);
    _ra_fmt_write(2, "ramalloc: could not start the purger thread; purging continues on slow paths\n");
  }
}

/* Once, at initialisation: whether the purger may run at all. It is wanted from the start and made
 * when the process's first heap is (heap_first, alloc.c), before the program holds any block: its
 * thread's own allocations then never land in memory the program has just freed. */
void _ra_purge_init(void) {
  bool on = _ra_option(RA_OPT_PURGE_THREAD) && _ra_purge_delay() >= 0;
  atomic_store_explicit(&_ra_purger_state, on ? RA_PURGER_WANTED : RA_PURGER_OFF, memory_order_relaxed);
}

/* The last thread with a heap is exiting: the purger exits too. A process ends when its last thread
 * does (a main thread may leave through pthread_exit, and a fork child's only thread may be one
 * that the parent started), and the purger must not keep it alive. A thread that makes a heap
 * later starts it again. */
void _ra_purge_stop(void) {
  int st = RA_PURGER_RUNNING;
  if (!atomic_compare_exchange_strong_explicit(&_ra_purger_state, &st, RA_PURGER_EXITING, memory_order_acq_rel,
                                               memory_order_relaxed))
    return;
  atomic_fetch_add_explicit(&_ra_purger_word, 1, memory_order_release);
  _ra_thread_wake(&_ra_purger_word);
}

/* In a child after fork: the purger did not come along. Started again when something is freed (or
 * now, when a pass was pending), at the child's next safe point. */
void _ra_purge_fork_child(void) {
  int st = atomic_load_explicit(&_ra_purger_state, memory_order_relaxed);
  if (st != RA_PURGER_RUNNING && st != RA_PURGER_EXITING) return;
  atomic_store_explicit(&_ra_purger_state, atomic_load_explicit(&_ra_purger_pending, memory_order_relaxed) ? RA_PURGER_WANTED
                                                                                                   : RA_PURGER_IDLE,
                        memory_order_relaxed);
}
