/* RAMALLOC_VERBOSE: the program re-executes itself as a child with a chosen environment, captures
 * the child's stderr through a pipe, and checks the lines the options contract promises. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_child.h"
#include "test_common.h"
#include "ramalloc.h"

extern char **environ;

/* ---- the child: allocate enough to need a few 16 MiB arenas, report the arena count ------------ */

static int child_main(void) {
  enum { N = 1280 };
  static void *p[N];
  for (int i = 0; i < N; i++) { /* 40 MiB in 32 KiB blocks: no huge blocks */
    p[i] = ra_malloc(32 * 1024);
    if (!p[i]) return 3;
    memset(p[i], i, 64);
  }
  ra_stats_t st;
  ra_stats_get(&st);
  printf("arenas=%zu\n", st.arenas);
  fflush(stdout);
  for (int i = 0; i < N; i++) ra_free(p[i]);
  return 0;
}

/* ---- the parent -------------------------------------------------------------------------------- */

typedef struct run_s {
  char err[65536];
  char out[4096];
  int status;
} run_t;

static run_t run;

/* Run this program as a child with the parent's environment minus any RAMALLOC_* variable, plus
 * `extra` (NULL-terminated list of NAME=value). */
static void run_child(const char *const *extra) {
  static const char *const drop[] = {"RAMALLOC_", NULL};
  char *argv[] = {(char *)"test_verbose", (char *)"--child", NULL};
  child_exec_t c = {"/proc/self/exe", argv, drop, extra, run.out, sizeof run.out, run.err, sizeof run.err};
  run.status = child_exec(&c);
  if (!WIFEXITED(run.status) || WEXITSTATUS(run.status) != 0)
    fail_msg("child failed (status 0x%x); stderr:\n%s", run.status, run.err);
}

/* Lines of the child's stderr that begin with `prefix`. */
static size_t count_lines(const char *prefix) {
  size_t n = 0, len = strlen(prefix);
  for (const char *line = run.err; *line;) {
    if (strncmp(line, prefix, len) == 0) n++;
    const char *nl = strchr(line, '\n');
    if (!nl) break;
    line = nl + 1;
  }
  return n;
}

/* The value printed on the `ramalloc: option NAME=` line, copied into dst ("" if absent). */
static void option_value(const char *name, char *dst, size_t cap) {
  char prefix[128];
  snprintf(prefix, sizeof prefix, "ramalloc: option %s=", name);
  dst[0] = 0;
  for (const char *line = run.err; *line;) {
    const char *nl = strchr(line, '\n');
    size_t linelen = nl ? (size_t)(nl - line) : strlen(line);
    if (strncmp(line, prefix, strlen(prefix)) == 0) {
      /* the value ends at the first blank (a comment may follow it) */
      size_t vl = strcspn(line + strlen(prefix), " \t\n");
      if (vl > linelen - strlen(prefix)) vl = linelen - strlen(prefix);
      if (vl >= cap) vl = cap - 1;
      memcpy(dst, line + strlen(prefix), vl);
      dst[vl] = 0;
      return;
    }
    if (!nl) break;
    line = nl + 1;
  }
}

static size_t child_arenas(void) {
  const char *s = strstr(run.out, "arenas=");
  if (!s) fail_msg("child printed no arena count; stdout: %s", run.out);
  return (size_t)strtoull(s + 7, NULL, 10);
}

static void test_verbose_lines(void **state) {
  (void)state;
  const char *env[] = {"RAMALLOC_VERBOSE=1", "RAMALLOC_ARENA_RESERVE=16M", NULL};
  run_child(env);
  char v[256];
  if (count_lines("ramalloc: option RAMALLOC_ARENA_RESERVE=") != 1)
    fail_msg("no single option line for RAMALLOC_ARENA_RESERVE; stderr:\n%s", run.err);
  option_value("RAMALLOC_ARENA_RESERVE", v, sizeof v);
  assert_true(v[0] != 0);
  if (count_lines("ramalloc: option RAMALLOC_COMMIT=") != 1)
    fail_msg("no single option line for RAMALLOC_COMMIT; stderr:\n%s", run.err);
  option_value("RAMALLOC_VERBOSE", v, sizeof v);
  if (v[0] == 0) fail_msg("no option line for RAMALLOC_VERBOSE; stderr:\n%s", run.err);

  /* 40 MiB in 16 MiB arenas: several reservations, one line each */
  size_t arenas = child_arenas();
  size_t lines = count_lines("ramalloc: reserved arena ");
  if (arenas < 3) fail_msg("40 MiB live with RAMALLOC_ARENA_RESERVE=16M but only %zu arenas", arenas);
  if (lines != arenas) fail_msg("%zu 'reserved arena' lines for %zu arenas; stderr:\n%s", lines, arenas, run.err);
}

static void test_verbose_commit_values(void **state) {
  (void)state;
  const char *modes[] = {"overcommit", "protect"};
  for (int k = 0; k < 2; k++) {
    char setting[64];
    snprintf(setting, sizeof setting, "RAMALLOC_COMMIT=%s", modes[k]);
    const char *env[] = {"RAMALLOC_VERBOSE=1", setting, NULL};
    run_child(env);
    char v[256];
    option_value("RAMALLOC_COMMIT", v, sizeof v);
    if (strcmp(v, modes[k]) != 0) fail_msg("RAMALLOC_COMMIT=%s echoed as '%s'; stderr:\n%s", modes[k], v, run.err);
    /* default reservation: 40 MiB fits one arena */
    size_t lines = count_lines("ramalloc: reserved arena ");
    assert_true(lines >= 1);
    assert_int_equal(lines, child_arenas());
  }
}

static void test_quiet_by_default(void **state) {
  (void)state;
  const char *none[] = {NULL};
  run_child(none);
  if (strstr(run.err, "ramalloc:")) fail_msg("output without RAMALLOC_VERBOSE:\n%s", run.err);
  const char *off[] = {"RAMALLOC_VERBOSE=0", "RAMALLOC_ARENA_RESERVE=16M", NULL};
  run_child(off);
  if (strstr(run.err, "ramalloc:")) fail_msg("output with RAMALLOC_VERBOSE=0:\n%s", run.err);
  assert_true(child_arenas() >= 3); /* the other option still applies */
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--child") == 0) return child_main();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_verbose_lines),
      cmocka_unit_test(test_verbose_commit_values),
      cmocka_unit_test(test_quiet_by_default),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
