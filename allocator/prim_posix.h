/* The platform layer's inline part on POSIX (prim.h): pthread mutexes, sched_yield, the heap
 * pointer and its tag in TLS slots, clock_gettime. Include prim.h, not this file. */
#ifndef RAMALLOC_PRIM_POSIX_H
#define RAMALLOC_PRIM_POSIX_H

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#define RA_HAS_PROFILER 1
#define RA_HAS_FORK 1
#define RA_HAS_THREAD_VARS 1 /* __thread variables, set up without allocating */
#define RA_HAS_THREAD_TAG 1 /* the heap's tag in a TLS slot of its own (_ra_heap_tag_current) */
#define RA_PRINTF_FORMAT printf /* the format checks of _ra_fmt and _ra_fmt_write */

/* Everything internal is hidden, so the compiler reaches the variables directly rather than
 * through the GOT (_ra_key and the chunk map on every malloc and free). */
#define RA_HIDDEN_BEGIN _Pragma("GCC visibility push(hidden)")
#define RA_HIDDEN_END _Pragma("GCC visibility pop")

RA_HIDDEN_BEGIN

typedef pthread_mutex_t ra_lock_t;
#define RA_LOCK_INIT PTHREAD_MUTEX_INITIALIZER
static inline void _ra_lock_init(ra_lock_t *l) { pthread_mutex_init(l, NULL); }
static inline void _ra_lock(ra_lock_t *l) { pthread_mutex_lock(l); }
static inline bool _ra_trylock(ra_lock_t *l) { return pthread_mutex_trylock(l) == 0; }
static inline void _ra_unlock(ra_lock_t *l) { pthread_mutex_unlock(l); }
static inline void _ra_yield(void) { sched_yield(); }

/* The heap pointer and the heap's tag (free's fast path compares it with the chunk map) live in
 * initial-exec TLS slots (prim_posix.c); RA_TLS_MODEL may say local-dynamic for a library meant
 * to be dlopen'ed. */
#ifndef RA_TLS_MODEL
#define RA_TLS_MODEL "initial-exec"
#endif
extern __thread ra_heap_t *_ra_tls_heap __attribute__((tls_model(RA_TLS_MODEL)));
extern __thread uint16_t _ra_tls_tag __attribute__((tls_model(RA_TLS_MODEL)));
static inline ra_heap_t *_ra_heap_current(void) { return _ra_tls_heap; }
static inline uint16_t _ra_heap_tag_current(void) { return _ra_tls_tag; }
static inline void _ra_heap_set_current(ra_heap_t *heap, uint16_t tag) {
  _ra_tls_heap = heap;
  _ra_tls_tag = tag;
}

static inline uint64_t _ra_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
static inline uint64_t _ra_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
static inline int _ra_process_id(void) { return (int)getpid(); }

RA_HIDDEN_END

#endif /* RAMALLOC_PRIM_POSIX_H */
