/* Process start-up, fork and exit: the places where ramalloc runs without being called.
 *
 *   at load         the constructor: _ra_init (heap.c: the settings, which the first malloc may
 *                   have read already; it allocates nothing), the fork handlers, then what the options start at
 *                   load (the profiler's tables, the statistics' copy of stderr and the dump
 *                   signal, the timeline thread), which may allocate: safe here, not inside malloc.
 *   fork            one set of handlers that takes every allocator lock in the order of the
 *                   "Locks" block in internal.h and releases them in both processes.
 *   at exit         the destructor: the timeline's last row, the statistics and layout dump, the
 *                   profile and the leak report. A destructor runs after every atexit handler and,
 *                   for a preloaded library, after the destructors of the program's own libraries:
 *                   the figures are those of the process's very end.
 *
 * Nothing calls into this file. A static link takes an object from an archive only when something
 * refers to it, so heap.c refers to _ra_init_linked: a static program gets the fork handlers and
 * the options' start and exit work too. */
#include "internal.h"

const char _ra_init_linked = 1;

/* fork(): the child must not inherit a lock another thread held. Every allocator lock is taken
 * before the fork, in the order the allocator nests them (heap list, abandoned list, metadata,
 * arenas, chunks, then the profiler's tables, a leaf), and released in both processes after it.
 * In the child only the forking thread lives on: other threads' chunks stay owned by their (dead)
 * heaps, and frees into them go to the pages' remote lists, which is safe; a remote free that was
 * half-way through a delayed free is undone (_ra_chunk_fork_child). The threads of the allocator's
 * own (the purger, the dumper, the timeline) did not come along. */
#if RA_HAS_FORK
static void fork_prepare(void) {
  _ra_heap_fork_prepare();
  _ra_chunk_fork_prepare();
  _ra_arena_fork_prepare();
  _ra_chunk_fork_lock_all();
  _ra_prof_fork_prepare();
}

static void fork_release_common(void) {
  _ra_arena_fork_release();
  _ra_chunk_fork_release();
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
