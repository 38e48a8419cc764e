/* The platform layer on POSIX, beside the memory half (os_posix.c): the heap pointer and its tag
 * in initial-exec TLS slots, thread exit through a pthread key destructor, fork through pthread_atfork,
 * and the allocator's own background thread (the purger) with a futex to sleep on. */
#include <errno.h>
#include <signal.h>
#include <time.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "internal.h"

__thread ra_heap_t *_ra_tls_heap __attribute__((tls_model(RA_TLS_MODEL))) = &_ra_heap_empty;
__thread uint16_t _ra_tls_tag __attribute__((tls_model(RA_TLS_MODEL))) = RA_TAG_NONE;

static pthread_key_t exit_key;

int _ra_thread_init(void (*done)(void *heap)) { return pthread_key_create(&exit_key, done); }

/* The destructor runs at thread exit with the registered heap (again, up to
 * PTHREAD_DESTRUCTOR_ITERATIONS times, if a later destructor allocates and registers anew). */
void _ra_thread_register(ra_heap_t *heap) { pthread_setspecific(exit_key, heap); }

void _ra_thread_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
  pthread_atfork(prepare, parent, child);
}

/* Detached, with every signal blocked, so that signals meant for the program never run its
 * handlers on this thread. pthread_create allocates (the new thread's TLS vector): callers start
 * threads only where re-entering malloc is safe. */
int _ra_thread_start(void *(*fn)(void *), void *arg) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t t;
  int err = pthread_create(&t, &attr, fn, arg);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return err;
}

void _ra_thread_wait(_Atomic(uint32_t) *word, uint32_t expected, uint64_t timeout_ms) {
#if defined(__linux__)
  struct timespec ts = {(time_t)(timeout_ms / 1000), (long)(timeout_ms % 1000) * 1000000L};
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, timeout_ms > 0 ? &ts : NULL, NULL, 0);
#else
  /* No futex: poll (10 ms steps) until the word changes or the time is up. */
  uint64_t waited = 0;
  while (atomic_load_explicit(word, memory_order_acquire) == expected && (timeout_ms == 0 || waited < timeout_ms)) {
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
    waited += 10;
  }
#endif
}

void _ra_thread_wake(_Atomic(uint32_t) *word) {
#if defined(__linux__)
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
#else
  (void)word;
#endif
}
