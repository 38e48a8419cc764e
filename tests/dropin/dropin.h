/* Helpers for the drop-in tests. The programs are ordinary C linked to glibc (not to ramalloc) and
 * run with libramalloc.so preloaded, so they reach ramalloc's own API through dlsym: finding
 * ra_owns there is how a program knows it runs on ramalloc. */
#ifndef RA_DROPIN_H
#define RA_DROPIN_H

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ramalloc.h"

#define CHECK(x)                                                                  \
  do {                                                                            \
    if (!(x)) {                                                                   \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x);      \
      fflush(stderr);                                                             \
      _exit(1);                                                                   \
    }                                                                             \
  } while (0)

typedef struct ra_api_s {
  bool (*owns)(const void *p);
  void (*stats_get)(ra_stats_t *st);
  size_t (*usable_size)(const void *p);
} ra_api_t;

/* ramalloc's API when it is in the process (preloaded or linked), else all NULL. */
static inline ra_api_t ra_api(void) {
  ra_api_t a;
  *(void **)&a.owns = dlsym(RTLD_DEFAULT, "ra_owns");
  *(void **)&a.stats_get = dlsym(RTLD_DEFAULT, "ra_stats_get");
  *(void **)&a.usable_size = dlsym(RTLD_DEFAULT, "ra_usable_size");
  return a;
}

/* A small deterministic generator (xorshift), so runs under both allocators do the same work. */
static inline unsigned long long ra_rand(unsigned long long *s) {
  unsigned long long x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

#endif
