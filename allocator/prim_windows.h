/* The platform layer's declarations on Windows (prim.h), implemented in prim_windows.c: SRW
 * locks (winpthreads allocates a mutex's state with malloc on its first lock and in
 * pthread_mutex_init, which would re-enter ramalloc wherever ramalloc is malloc), the heap pointer
 * in a TLS index with thread exit learnt through a fiber-local-storage callback, and
 * GetTickCount64 (a read of the shared user page; winpthreads' clock_gettime goes through
 * QueryPerformanceCounter, ~190 ns a call under wine 8; resolution 10-16 ms). Include prim.h, not
 * this file. */
#ifndef RAMALLOC_PRIM_WINDOWS_H
#define RAMALLOC_PRIM_WINDOWS_H

#define RA_HAS_PROFILER 0
#define RA_HAS_FORK 0
/* mingw-w64's __thread is emulated (emutls): its first touch on each thread calls malloc. */
#define RA_HAS_THREAD_VARS 0
#define RA_HAS_THREAD_TAG 0 /* the tag is read from the heap (internal.h) */
/* The format checks of _ra_fmt and _ra_fmt_write are GNU printf's: on mingw-w64 plain "printf" means
 * msvcrt's, which lacks %zu. */
#define RA_PRINTF_FORMAT gnu_printf

/* PE has no hidden visibility; the .def file says what ramalloc.dll exports. */
#define RA_HIDDEN_BEGIN
#define RA_HIDDEN_END

typedef struct ra_lock_s {
  void *srw; /* an SRWLOCK */
} ra_lock_t;
#define RA_LOCK_INIT {NULL}
void _ra_lock_init(ra_lock_t *l);
void _ra_lock(ra_lock_t *l);
bool _ra_trylock(ra_lock_t *l);
void _ra_unlock(ra_lock_t *l);
void _ra_yield(void);

ra_heap_t *_ra_heap_current(void);
void _ra_heap_set_current(ra_heap_t *heap, uint16_t tag); /* tag: read from the heap instead */

uint64_t _ra_now_ms(void);
uint64_t _ra_wall_ms(void);
int _ra_process_id(void);

#endif /* RAMALLOC_PRIM_WINDOWS_H */
