/* A program linked to ramalloc (libramalloc.a or libramalloc.so, not preloaded): malloc in it, and
 * in glibc's own functions, must be ramalloc's. Built by the tests against the build tree and, by
 * install_test.sh, against an installed copy. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ramalloc.h>

#define EXPECT(x)                                                        \
  do {                                                                   \
    if (!(x)) {                                                          \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
      return 1;                                                          \
    }                                                                    \
  } while (0)

int main(void) {
  void *p = malloc(10);
  EXPECT(p != NULL);
  memset(p, 1, 10); /* GCC 12 warns when fresh memory goes to a const void * parameter */
  EXPECT(ra_owns(p));
  p = realloc(p, 100000);
  EXPECT(p != NULL && ra_owns(p));
  free(p);
  void *z = calloc(10, 10);
  EXPECT(z != NULL && ra_owns(z));
  free(z);
  void *a = NULL;
  EXPECT(posix_memalign(&a, 4096, 100) == 0 && ra_owns(a) && ((size_t)a & 4095) == 0);
  EXPECT(malloc_usable_size(a) >= 100);
  free(a);
  char *s = strdup("linked"); /* allocated inside glibc */
  EXPECT(s != NULL && ra_owns(s));
  free(s);
  char *line = NULL;
  size_t cap = 0;
  FILE *f = fopen("/proc/self/status", "r");
  EXPECT(f != NULL && getline(&line, &cap, f) > 0 && ra_owns(line));
  free(line);
  fclose(f);
  p = ra_malloc(64);
  EXPECT(p != NULL);
  free(p); /* the two names are one allocator */
  puts("linked-ok");
  return 0;
}
