/* The platform layer: everything ramalloc asks of the operating system, behind one contract.
 *
 *   memory       os.h: reserve, commit, decommit, reset, protect, release; random bits; dump files
 *                written whole; the command line (os_posix.c, os_windows.c)
 *   locks        ra_lock_t and _ra_lock/_ra_trylock/_ra_unlock; _ra_yield for spinning
 *   the heap     _ra_heap_current/_ra_heap_set_current: the calling thread's heap pointer and
 *                its tag (_ra_heap_tag_current where RA_HAS_THREAD_TAG, else read from the heap)
 *   clocks       _ra_now_ms (monotonic), _ra_wall_ms (since 1970, for the dumps), _ra_process_id
 *   threads      a callback at thread exit, fork hooks, the allocator's own thread, sleeping on a
 *                word (prim_posix.c, prim_windows.c)
 *   features     RA_HAS_PROFILER (the heap profiler and the timeline need POSIX), RA_HAS_FORK,
 *                RA_HAS_THREAD_VARS (__thread variables that never allocate), RA_HAS_THREAD_TAG
 *                (the heap's tag kept in a thread variable of its own), RA_HIDDEN_BEGIN
 *                and RA_HIDDEN_END (symbol visibility where the object format has it),
 *                RA_PRINTF_FORMAT (the printf dialect the format checks follow)
 *
 * The one test of which OS ramalloc is built for is below: prim_posix.h or prim_windows.h holds
 * what is inline on that OS (POSIX: locks, the TLS slot and the clock compile to a few
 * instructions; Windows: functions in prim_windows.c). The rest of the allocator tests features,
 * never the OS.
 *
 * Two files implement the layer on each OS: os_<os>.c the memory half, which needs nothing of the
 * allocator and is tested alone (tests/test_os.c, tests/win/test_os_windows.c), and prim_<os>.c
 * the rest, which knows the allocator's empty heap (the TLS slot's value before a thread's first
 * allocation) and reports through fmt.c. */
#ifndef RAMALLOC_PRIM_H
#define RAMALLOC_PRIM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "os.h"

typedef struct ra_heap_s ra_heap_t;

#if defined(_WIN32)
#include "prim_windows.h"
#else
#include "prim_posix.h"
#endif

RA_HIDDEN_BEGIN

/* Once, at initialisation: `done(heap)` will run when a thread that called
 * _ra_thread_register(heap) exits. Returns 0 or an error code. */
int _ra_thread_init(void (*done)(void *heap));
void _ra_thread_register(ra_heap_t *heap);
/* Around fork(), where the OS has it: prepare before, then parent or child. */
void _ra_thread_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
/* A thread of the allocator's own (the purger): detached, signals blocked. 0 or an error code. It
 * allocates, so call it only where re-entering malloc is safe. */
int _ra_thread_start(void *(*fn)(void *), void *arg);
/* Sleep while *word == expected, until woken or timeout_ms pass (0: no limit); may return early.
 * _ra_thread_wake wakes one sleeper; change the word first. */
void _ra_thread_wait(_Atomic(uint32_t) *word, uint32_t expected, uint64_t timeout_ms);
void _ra_thread_wake(_Atomic(uint32_t) *word);

RA_HIDDEN_END

#endif /* RAMALLOC_PRIM_H */
