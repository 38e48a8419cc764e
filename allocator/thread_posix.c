/* Thread layer on POSIX: the heap pointer in an initial-exec TLS slot, thread exit through a
 * pthread key destructor, fork through pthread_atfork. */
#include "internal.h"

__thread ra_heap_t *_ra_tls_heap __attribute__((tls_model(RA_TLS_MODEL))) = &_ra_heap_empty;

static pthread_key_t exit_key;

int _ra_thread_init(void (*done)(void *heap)) { return pthread_key_create(&exit_key, done); }

/* The destructor runs at thread exit with the registered heap (again, up to
 * PTHREAD_DESTRUCTOR_ITERATIONS times, if a later destructor allocates and registers anew). */
void _ra_thread_register(ra_heap_t *heap) { pthread_setspecific(exit_key, heap); }

void _ra_thread_atfork(void (*prepare)(void), void (*release)(void)) {
  pthread_atfork(prepare, release, release);
}
