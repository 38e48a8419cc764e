/* Purge: committed memory that is free goes back to the OS after RAMALLOC_PURGE_DELAY_MS, while its
 * address range stays reserved. Three kinds of free memory wait for it:
 *   - free chunks in an arena (purgeable bit and free time in the arena header): decommitted or
 *     reset whole;
 *   - free slices inside chunks still in use (purge_slices and slice_free_ms in the chunk header):
 *     any thread may purge them, holding the chunk's lock;
 *   - empty pages a heap keeps so the next allocation of their class is quick (retire_ms): only
 *     the owning thread may give them back.
 * No background thread is needed: allocation slow paths run a pass at most every half delay
 * (rate-limited by one global timestamp), and the owner checks its kept pages on its own slow paths.
 * RAMALLOC_PURGE_THREAD=1 adds a thread that runs the same pass while the program is quiet. */
#include <errno.h>
#include <time.h>

#include "internal.h"

static _Atomic(uint64_t) next_pass_ms;

static long long purge_delay(void) { return _ra_option(RA_OPT_PURGE_DELAY_MS); }

/* Slices are reset rather than decommitted when asked to (unless RAMALLOC_LIMIT caps the commit
 * charge, which a reset keeps), and when whole chunks are committed at once (decommitting a slice
 * there would split the chunk's mapping). */
bool _ra_purge_reset_only(void) {
  return (_ra_option(RA_OPT_PURGE) == RA_PURGE_RESET && _ra_option(RA_OPT_LIMIT) == 0) || _ra_commit_whole_chunks;
}

static uint64_t pass_interval(uint64_t delay) { return delay >= 2 ? delay / 2 : 1; }

/* Empty pages kept at the head of their class queue, empty for `delay` ms or more (all with
 * force), go back to their chunk. Owner only. */
void _ra_purge_heap_pages(ra_heap_t *heap, uint64_t now, uint64_t delay, bool force) {
  for (size_t i = 0; i < RA_CLASS_COUNT; i++) {
    ra_page_t *page = heap->queues[i].first;
    if (page == NULL || page->next != NULL) continue;
    _ra_page_collect(page);
    if (page->used == 0 && page->retire_ms != 0) {
      uint64_t since = _ra_ms_from32(now, page->retire_ms);
      if (force || now - since >= delay) _ra_page_free_since(heap, page, since);
    }
  }
}

/* Called on allocation slow paths. */
void _ra_purge_maybe(ra_heap_t *heap) {
  long long delay = purge_delay();
  if (delay < 0) return;
  uint64_t now = _ra_now_ms();
  heap->clock_ms32 = _ra_ms32(now);
  if (now >= heap->next_page_purge_ms) {
    heap->next_page_purge_ms = now + pass_interval((uint64_t)delay);
    _ra_purge_heap_pages(heap, now, (uint64_t)delay, false);
  }
  uint64_t next = atomic_load_explicit(&next_pass_ms, memory_order_relaxed);
  if (now < next) return;
  if (!atomic_compare_exchange_strong_explicit(&next_pass_ms, &next, now + pass_interval((uint64_t)delay),
                                               memory_order_relaxed, memory_order_relaxed))
    return; /* another thread runs this pass */
  _ra_arena_purge(now, (uint64_t)delay, false);
}

/* Called when fresh memory is about to be committed (a new chunk, a huge run, a span of slices no
 * page used lately): free memory that has already waited a quarter of the delay is not being
 * reused, so it goes back now rather than sit beside the new memory until the full delay. At most
 * one such pass per eighth of the delay (one global timestamp, like _ra_purge_maybe). */
static _Atomic(uint64_t) next_pressure_ms;

void _ra_purge_pressure(void) {
  long long delay = purge_delay();
  if (delay < 8) return; /* short delays purge soon enough; -1 never purges */
  uint64_t now = _ra_now_ms();
  uint64_t next = atomic_load_explicit(&next_pressure_ms, memory_order_relaxed);
  if (now < next) return;
  if (!atomic_compare_exchange_strong_explicit(&next_pressure_ms, &next, now + (uint64_t)delay / 8,
                                               memory_order_relaxed, memory_order_relaxed))
    return;
  _ra_arena_purge(now, (uint64_t)delay / 4, false);
}

void ra_collect(bool force) {
  _ra_init();
  long long delay = purge_delay();
  if (delay < 0 && !force) return;
  uint64_t d = delay < 0 ? 0 : (uint64_t)delay;
  uint64_t now = _ra_now_ms();
  ra_heap_t *heap = _ra_heap_current();
  if (heap != &_ra_heap_empty) {
    _ra_heap_collect_delayed(heap);
    _ra_purge_heap_pages(heap, now, d, force);
  }
  _ra_arena_purge(now, d, force);
}

/* ---- The optional purger thread ------------------------------------------------------------------- */

static void *purger_main(void *arg) {
  (void)arg;
  uint64_t delay = purge_delay() > 0 ? (uint64_t)purge_delay() : 0;
  uint64_t sleep_ms = delay > 0 ? pass_interval(delay) : 10;
  if (sleep_ms < 10) sleep_ms = 10; /* a pass is cheap, but not free: at most 100 a second */
  for (;;) {
    struct timespec ts = {(time_t)(sleep_ms / 1000), (long)(sleep_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    _ra_arena_purge(_ra_now_ms(), delay, false);
  }
  return NULL;
}

/* Start the purger when RAMALLOC_PURGE_THREAD=1. Called once from the library constructor, where
 * allocating (pthread_create does) is safe. */
void _ra_purge_thread_start(void) {
  if (!_ra_option(RA_OPT_PURGE_THREAD) || purge_delay() < 0) return;
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, purger_main, NULL) != 0)
    _ra_write(2, "ramalloc: could not start the purger thread; purging continues on slow paths\n");
  pthread_attr_destroy(&attr);
}
