/* A Windows program linked to libramalloc.a: its malloc, calloc, realloc and free are ramalloc's
 * (allocator/override_windows.c), and so are those of the static libraries linked into it
 * (winpthreads, cmocka itself). Blocks the C runtime DLL hands out (_strdup, _getcwd, _fullpath)
 * still go back to the C runtime through free and realloc. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <direct.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>

#include "ramalloc.h"
#include "win_test.h"

/* Sizes the compiler cannot see (no -Walloc-size-larger-than on purpose-made overflows). */
static volatile size_t v_big = SIZE_MAX / 2 + 2;

static void test_family_is_ramalloc(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 1, 24, 1000, 70000, 3u << 20};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    char *p = malloc(sizes[k]);
    assert_non_null(p);
    if (!ra_owns(p)) fail_msg("malloc(%zu) is not ramalloc's block", sizes[k]);
    memset(p, 0x33, sizes[k]);
    char *q = realloc(p, sizes[k] * 3 + 10);
    assert_non_null(q);
    assert_true(ra_owns(q));
    for (size_t i = 0; i < sizes[k]; i++) assert_int_equal((unsigned char)q[i], 0x33);
    free(q);
    int *z = calloc(sizes[k] + 1, sizeof(int));
    assert_non_null(z);
    assert_true(ra_owns(z));
    for (size_t i = 0; i <= sizes[k]; i++) assert_int_equal(z[i], 0);
    free(z);
  }
  free(NULL);
  char *r = realloc(NULL, 100);
  assert_true(ra_owns(r));
  free(r);
  errno = 0;
  assert_null(calloc(v_big, 2));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(malloc(v_big));
  assert_int_equal(errno, ENOMEM);
}

/* Blocks from the C runtime DLL's own allocator: free and realloc hand them back to it. */
static void test_crt_blocks(void **state) {
  (void)state;
  char *s = _strdup("allocated by the C runtime");
  assert_non_null(s);
  assert_false(ra_owns(s));
  SetLastError(ERROR_PATH_NOT_FOUND);
  free(s);
  assert_int_equal(GetLastError(), ERROR_PATH_NOT_FOUND);

  char *t = _strdup("grow me");
  char *u = realloc(t, 100000);
  assert_non_null(u);
  assert_string_equal(u, "grow me");
  free(u);

  char *cwd = _getcwd(NULL, 0);
  assert_non_null(cwd);
  assert_false(ra_owns(cwd));
  free(cwd);

  char *full = _fullpath(NULL, "x.txt", 0);
  assert_non_null(full);
  free(full);

  /* stdio keeps working with its buffers in either heap */
  FILE *f = tmpfile();
  if (f != NULL) {
    for (int i = 0; i < 1000; i++) fprintf(f, "%d %s\n", i, "line");
    rewind(f);
    char line[64];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "0 line\n");
    fclose(f);
  }
}

/* winpthreads allocates its thread records with malloc, now ramalloc's, from inside the threads
 * it creates and tears down. */
static void *worker(void *arg) {
  uintptr_t seed = (uintptr_t)arg;
  void *keep[64];
  for (int i = 0; i < 64; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    keep[i] = malloc((size_t)(seed >> 52) + 1);
    if (keep[i] == NULL || !ra_owns(keep[i])) return (void *)1;
  }
  for (int i = 0; i < 64; i += 2) free(keep[i]);
  return keep[1]; /* freed by the joining thread */
}

static void test_threads(void **state) {
  (void)state;
  ra_stats_t st0, st1;
  ra_stats_get(&st0);
  for (int r = 0; r < 25; r++) {
    pthread_t t[8];
    for (uintptr_t i = 0; i < 8; i++) assert_int_equal(pthread_create(&t[i], NULL, worker, (void *)(i + 1 + (uintptr_t)r * 8)), 0);
    for (int i = 0; i < 8; i++) {
      void *ret = NULL;
      assert_int_equal(pthread_join(t[i], &ret), 0);
      assert_true(ret != (void *)1 && ra_owns(ret));
      free(ret);
    }
  }
  ra_stats_get(&st1);
  print_message("200 pthreads: heaps %zu -> %zu\n", st0.heaps, st1.heaps);
  assert_true(st1.heaps <= st0.heaps + 1);
}

int main(void) {
  /* cmocka's own allocations went through ramalloc before the first test */
  char *probe = malloc(1);
  if (probe == NULL || (*probe = 1, !ra_owns(probe))) {
    fprintf(stderr, "malloc is not ramalloc's in a program linked to libramalloc.a\n");
    return 1;
  }
  free(probe);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_family_is_ramalloc),
      cmocka_unit_test(test_crt_blocks),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
