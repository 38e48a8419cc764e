/* Process start-up, fork, thread exit and exit: the places where ramalloc runs without being
 * called, and the settings every file reads.
 *
 *   first use       _ra_init: the settings, once per process before the first heap (from the first
 *                   malloc, ra_collect, or the constructor, whichever comes first); it allocates
 *                   nothing.
 *   at load         the constructor: _ra_init, the fork handlers, then what the options start at
 *                   load (the profiler's tables, the statistics' copy of stderr and the dump
 *                   signal, the timeline thread), which may allocate: safe here, not inside malloc.
 *   fork            one set of handlers that takes every allocator lock in the order of the
 *                   "Locks" block in internal.h and releases them in both processes.
 *   thread exit     the thread layer calls thread_exit with the thread's heap: heap.c parks or
 *                   abandons it, and purge.c hears of it.
 *   at exit         the destructor: the timeline's last row, the statistics and layout dump, the
 *                   profile and the leak report. A destructor runs after every atexit handler and,
 *                   for a preloaded library, after the destructors of the program's own libraries:
 *                   the figures are those of the process's very end.
 *
 * This file calls into every other that has a part in these; none of them calls in here but
 * alloc.c, for _ra_init. */
#include "internal.h"

bool _ra_commit_whole_chunks;
bool _ra_guard_pages;
size_t _ra_protect_freed;
uintptr_t _ra_key; /* free-list link secret, set once before the first block exists */

static ra_lock_t init_lock = RA_LOCK_INIT;
static atomic_bool initialised;

/* Thread exit: the heap is parked or abandoned (heap.c), and the purge policy hears of it: a
 * parked heap waits for a pass, an abandoned one's memory may go back now, and the last thread with
 * a heap stops the purger. */
static void thread_exit(void *value) {
  switch (_ra_heap_thread_exit(value)) {
  case RA_HEAP_EXIT_NONE: break;
  case RA_HEAP_EXIT_PARKED: _ra_purge_notify(); break; /* a later pass abandons it if no thread takes it */
  case RA_HEAP_EXIT_RETIRED: _ra_purge_thread_exit(false); break;
  case RA_HEAP_EXIT_LAST: _ra_purge_thread_exit(true); break;
  }
}

/* Allocates nothing: getenv, open/read and the thread layer's key creation (glibc keeps the first
 * keys in the thread descriptor) are safe here. */
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
    _ra_thread_init(thread_exit);
    if (_ra_option(RA_OPT_VERBOSE)) {
      _ra_options_print();
      _ra_fmt_write(2, "ramalloc: os page %zu, granularity %zu, commit mode %s\n", os->page_size, os->granularity,
                _ra_os_commit_mode() == RA_COMMIT_OVERCOMMIT ? "overcommit" : "protect");
    }
    atomic_store_explicit(&initialised, true, memory_order_release);
  }
  _ra_unlock(&init_lock);
}

/* fork(): the child must not inherit a lock another thread held. Every allocator lock is taken
 * before the fork, in the order the allocator nests them (heap list and abandoned list, metadata,
 * arenas, chunks, then the profiler's tables, a leaf), and released in both processes after it.
 * In the child only the forking thread lives on: other threads' chunks stay owned by their (dead)
 * heaps, and frees into them go to the pages' remote lists, which is safe; a remote free that was
 * half-way through a delayed free is undone (_ra_chunk_fork_child). The threads of the allocator's
 * own (the purger, the dumper, the timeline) did not come along. */
#if RA_HAS_FORK
static void fork_prepare(void) {
  _ra_heap_fork_prepare();
  _ra_arena_fork_prepare();
  _ra_chunk_fork_lock_all();
  _ra_prof_fork_prepare();
}

static void fork_release_common(void) {
  _ra_arena_fork_release();
  _ra_heap_fork_release();
}

static void fork_parent(void) {
  _ra_prof_fork_parent();
  _ra_chunk_fork_unlock_all();
  fork_release_common();
}

static void fork_child(void) {
  _ra_prof_fork_child();
  _ra_heap_fork_child();
  _ra_chunk_fork_child();
  _ra_purge_fork_child();
  fork_release_common();
  _ra_inspect_fork_child();
  _ra_timeline_fork_child();
}
#endif

__attribute__((constructor)) static void process_start(void) {
  _ra_init();
#if RA_HAS_FORK
  _ra_thread_atfork(fork_prepare, fork_parent, fork_child);
#endif
  _ra_prof_start();
  _ra_inspect_start();
  _ra_timeline_start();
}

__attribute__((destructor)) static void process_end(void) {
  _ra_timeline_end();
  _ra_inspect_end();
  _ra_prof_end();
}

/* Public, and may come before any allocation: the process is initialised first. */
void ra_collect(bool force) {
  _ra_init();
  _ra_purge_collect(force);
}
