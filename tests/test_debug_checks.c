/* The invariant checks of a RAMALLOC_DEBUG >= 2 build run at the allocator's state changes
 * (docs/design.md, "Invariants that run"): a page or chunk descriptor broken on purpose makes the
 * next state change of that struct abort with "ramalloc: invariant broken: <what>". Each case runs
 * in a child process (this program re-executed with the case's name). Skipped in other builds,
 * where the checks compile to nothing. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "internal.h"
#include "test_child.h"

static const char *self_exe;

/* ---- The cases, in the child ---------------------------------------------------------------------- */

static int child_main(const char *name) {
  void *keep = ra_malloc(100000); /* the chunk keeps a page: freeing p must not release it */
  void *p = ra_malloc(48);
  CHECK(keep != NULL && p != NULL, "malloc failed");
  ra_chunk_t *c = _ra_chunk_of(p);
  ra_page_t *page = _ra_page_of(c, p);
  if (strcmp(name, "page_reserved") == 0) {
    page->reserved++; /* no longer what fits the span */
    ra_free(p);       /* the page empties: retired */
  } else if (strcmp(name, "chunk_free_count") == 0) {
    CHECK(c == _ra_chunk_of(keep), "the two blocks are in one chunk");
    c->free_count++;  /* no longer popcount(free_slices) */
    void *q = ra_malloc(3000); /* a class with no page yet: a span is taken from the chunk */
    say("%p\n", q);
  } else {
    CHECK(false, "unknown case %s", name);
  }
  say("survived\n");
  return 0;
}

/* ---- The parent ----------------------------------------------------------------------------------- */

static void test_case(void **state) {
  const char *const *c = *state; /* {name, the invariant reported} */
  char *argv[] = {(char *)self_exe, "--child", (char *)c[0], NULL};
  const char *drop[] = {"RAMALLOC_", NULL};
  static char out[4096], err[8192];
  child_exec_t x = {self_exe, argv, drop, NULL, out, sizeof out, err, sizeof err};
  int status = child_exec(&x);
  char want[200];
  snprintf(want, sizeof want, "ramalloc: invariant broken: %s at 0x", c[1]);
  if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) || strstr(err, want) == NULL ||
      strstr(out, "survived") != NULL) {
    fprintf(stderr, "child stdout:\n%s\nchild stderr:\n%s\n", out, err);
    fail_msg("%s: want \"%s\" on stderr and SIGABRT", c[0], want);
  }
}

static const char *const page_reserved[] = {"page_reserved", "reserved blocks fill the span (less its guard page)"};
static const char *const chunk_free_count[] = {"chunk_free_count", "free_count == popcount(free_slices)"};

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--child") == 0) return child_main(argv[2]);
  self_exe = argv[0];
  if (RA_TEST_DEBUG < 2) {
    printf("SKIP: the checks run in builds with -DRAMALLOC_DEBUG=2 or more\n");
    return 77; /* ctest's SKIP_RETURN_CODE */
  }
  const struct CMUnitTest tests[] = {
      {"page_reserved", test_case, NULL, NULL, (void *)page_reserved},
      {"chunk_free_count", test_case, NULL, NULL, (void *)chunk_free_count},
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
