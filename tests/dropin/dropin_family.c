/* Every name of the malloc family, and the glibc extensions, in a program run with libramalloc.so
 * preloaded: each must reach ramalloc (blocks are ramalloc's, including those glibc itself
 * allocates for strdup, stdio and getline), and the extensions must answer from ramalloc's state. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "dropin.h"

static ra_api_t ra;

static bool aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static void check_block(void *p, size_t n) {
  CHECK(p != NULL);
  CHECK(ra.owns(p));
  CHECK(malloc_usable_size(p) >= n);
  memset(p, 0xa5, n);
}

static void test_standard(void) {
  void *p = malloc(0);
  check_block(p, 0);
  free(p);
  for (size_t n = 1; n <= ((size_t)8 << 20); n = n * 3 + 1) {
    p = malloc(n);
    check_block(p, n);
    CHECK(aligned(p, 16));
    free(p);
  }
  unsigned char *z = calloc(1000, 37);
  check_block(z, 0);
  for (size_t i = 0; i < 37000; i++) CHECK(z[i] == 0);
  free(z);
  volatile size_t too_big = SIZE_MAX; /* volatile: the compiler would warn about the constant */
  errno = 0;
  CHECK(calloc(too_big / 2, 3) == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(malloc(too_big) == NULL && errno == ENOMEM);

  char *r = realloc(NULL, 10);
  check_block(r, 10);
  memcpy(r, "0123456789", 10);
  r = realloc(r, 100000);
  CHECK(r != NULL && ra.owns(r) && malloc_usable_size(r) >= 100000);
  CHECK(memcmp(r, "0123456789", 10) == 0);
  memset(r + 10, 0xa5, 99990);
  r = realloc(r, 5);
  CHECK(r != NULL && ra.owns(r) && memcmp(r, "01234", 5) == 0);
  free(r);

  errno = 0;
  CHECK(reallocarray(NULL, too_big / 4, 8) == NULL && errno == ENOMEM);
  p = reallocarray(NULL, 100, 8);
  check_block(p, 800);
  free(p);

  p = aligned_alloc(64, 100);
  check_block(p, 100);
  CHECK(aligned(p, 64));
  free(p);
  p = aligned_alloc(4096, 5000);
  check_block(p, 5000);
  CHECK(aligned(p, 4096));
  free(p);

  void *q = (void *)1;
  CHECK(posix_memalign(&q, 256, 10) == 0 && aligned(q, 256));
  check_block(q, 10);
  free(q);
  q = (void *)1;
  CHECK(posix_memalign(&q, 3, 10) == EINVAL && q == (void *)1);

  p = memalign(48, 10); /* glibc rounds 48 up to 64 */
  check_block(p, 10);
  CHECK(aligned(p, 64));
  free(p);
  long page = sysconf(_SC_PAGESIZE);
  p = valloc(10);
  check_block(p, 10);
  CHECK(aligned(p, (size_t)page));
  free(p);
  p = pvalloc(10);
  check_block(p, (size_t)page);
  CHECK(aligned(p, (size_t)page));
  free(p);
  CHECK(malloc_usable_size(NULL) == 0);
}

/* The __libc_* names and cfree, looked up the way a library that calls them finds them. */
static void test_libc_names(void) {
  void *(*m)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_malloc");
  void (*f)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "__libc_free");
  void *(*c)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(RTLD_DEFAULT, "__libc_calloc");
  void *(*r)(void *, size_t) = (void *(*)(void *, size_t))dlsym(RTLD_DEFAULT, "__libc_realloc");
  void *(*ma)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(RTLD_DEFAULT, "__libc_memalign");
  void *(*va)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_valloc");
  void *(*pva)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_pvalloc");
  void (*cf)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
  CHECK(m && f && c && r && ma && va && pva && cf);
  void *p = m(100);
  check_block(p, 100);
  p = r(p, 1000);
  check_block(p, 1000);
  f(p);
  unsigned char *z = c(10, 10);
  check_block(z, 0);
  for (int i = 0; i < 100; i++) CHECK(z[i] == 0);
  cf(z);
  p = ma(512, 10);
  check_block(p, 10);
  CHECK(aligned(p, 512));
  f(p);
  p = va(1);
  check_block(p, 1);
  f(p);
  p = pva(1);
  check_block(p, 1);
  f(p);
}

/* Blocks glibc allocates inside its own functions come from ramalloc too. */
static void test_libc_internal(void) {
  char *s = strdup("drop-in");
  check_block(s, 8);
  free(s);
  char *a = NULL;
  CHECK(asprintf(&a, "%d %s", 42, "forty-two") > 0);
  check_block(a, 3);
  free(a);
  FILE *f = fopen("/proc/self/maps", "r");
  CHECK(f != NULL);
  char *line = NULL;
  size_t cap = 0;
  CHECK(getline(&line, &cap, f) > 0);
  CHECK(ra.owns(line));
  free(line);
  fclose(f);
}

/* mallinfo2/mallinfo, malloc_trim, mallopt, malloc_stats, malloc_info from ramalloc's state. */
static void test_extensions(void) {
  struct mallinfo2 before = mallinfo2();
  enum { N = 64 };
  void *big[N];
  for (int i = 0; i < N; i++) {
    big[i] = malloc(1 << 20); /* large blocks: spans of slices inside chunks */
    check_block(big[i], 1 << 20);
  }
  struct mallinfo2 during = mallinfo2();
  CHECK(during.uordblks >= before.uordblks + (size_t)N * (1 << 20));
  CHECK(during.arena >= during.uordblks);
  CHECK(during.usmblks >= during.arena);
  CHECK(during.fordblks == during.arena - during.uordblks);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* programs still call it */
  struct mallinfo old = mallinfo();
#pragma GCC diagnostic pop
  CHECK(old.uordblks > 0 && (size_t)old.uordblks <= during.uordblks);
  for (int i = 0; i < N; i++) free(big[i]);
  struct mallinfo2 after_free = mallinfo2();
  CHECK(after_free.uordblks + (size_t)N * (1 << 20) <= during.uordblks);
  /* Everything freed goes back: the committed bytes drop, and malloc_trim says so. */
  CHECK(malloc_trim(0) == 1);
  struct mallinfo2 trimmed = mallinfo2();
  const char *purge = getenv("RAMALLOC_PURGE");
  if (purge == NULL || strcmp(purge, "reset") != 0) CHECK(trimmed.arena < after_free.arena); /* reset keeps the charge */
  CHECK(malloc_trim(0) == 0 || malloc_trim(0) == 1);

  CHECK(mallopt(M_ARENA_MAX, 1) == 1);
  CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1);
  CHECK(mallopt(12345, 0) == 0);

  /* malloc_stats writes ramalloc's statistics to stderr. */
  char path[] = "/tmp/ramalloc-dropin-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  unlink(path);
  fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  malloc_stats();
  dup2(saved, 2);
  close(saved);
  char buf[8192];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  CHECK(n > 0);
  buf[n] = '\0';
  CHECK(strstr(buf, "ramalloc statistics") != NULL);
  CHECK(strstr(buf, "committed") != NULL);

  char *xml = NULL;
  size_t xlen = 0;
  FILE *mf = open_memstream(&xml, &xlen);
  CHECK(mf != NULL);
  CHECK(malloc_info(0, mf) == 0);
  fclose(mf);
  CHECK(ra.owns(xml));
  CHECK(strstr(xml, "<malloc version=\"1\"") != NULL && strstr(xml, "</malloc>") != NULL);
  CHECK(strstr(xml, "ramalloc") != NULL);
  free(xml);
  errno = 0;
  CHECK(malloc_info(1, stdout) == -1 && errno == EINVAL);
}

int main(void) {
  ra = ra_api();
  if (ra.owns == NULL || ra.stats_get == NULL) {
    fprintf(stderr, "ramalloc is not in this process (run it with libramalloc.so preloaded)\n");
    return 1;
  }
  test_standard();
  test_libc_names();
  test_libc_internal();
  test_extensions();
  puts("family-ok");
  return 0;
}
