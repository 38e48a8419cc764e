/* Reporting from a test's child process (tests that re-execute themselves with a scenario name):
 * say() writes to stdout with write(2), so nothing sits in a buffer when the child dies, and CHECK
 * ends the child with exit status 2 after a "FAIL: ..." line that the parent shows. The parent's
 * side starts the child and collects what it wrote (child_exec, child_call: tests/test_child.c). */
#ifndef RAMALLOC_TEST_CHILD_H
#define RAMALLOC_TEST_CHILD_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void say(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
  for (size_t off = 0; off < len;) {
    ssize_t w = write(1, buf + off, len - off);
    if (w <= 0) return;
    off += (size_t)w;
  }
}

static void child_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn, unused));
static void child_fail(const char *fmt, ...) {
  char buf[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  say("FAIL: %s\n", buf);
  _exit(2);
}

#define CHECK(cond, ...)                  \
  do {                                    \
    if (!(cond)) child_fail(__VA_ARGS__); \
  } while (0)

/* ---- The parent's side (tests/test_child.c, linked into the cmocka tests that start children) ----
 * Each call fails the running cmocka test when pipe, fork or waitpid fails. */

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A program run in a child process: `path` is executed with `argv` and the parent's environment
 * less every variable that starts with one of `env_drop` (for example "RAMALLOC_" or
 * "LD_PRELOAD="), plus the NAME=value strings of `env_add` (both NULL-terminated lists, or NULL).
 * Its stdout goes to `out` and its stderr to `err` (NUL-terminated, at most cap - 1 bytes kept, the
 * rest read and dropped so the child never blocks on a full pipe); a NULL buffer leaves that
 * stream the parent's. */
typedef struct child_exec_s {
  const char *path;
  char *const *argv;
  const char *const *env_drop;
  const char *const *env_add;
  char *out;
  size_t out_cap;
  char *err;
  size_t err_cap;
} child_exec_t;

/* Run it to the end; returns waitpid's status. */
int child_exec(const child_exec_t *c);

/* Fork a child that runs fn(arg) and leaves with _exit(its result) (stdio is flushed before the
 * fork, not in the child). Returns the child's pid. */
pid_t child_start(int (*fn)(void *), void *arg);

/* Wait for the child `pid` (timeout_ms 0: as long as it takes), its waitpid status in *status.
 * Returns false if it was still running after timeout_ms: then it was killed with SIGKILL and
 * reaped, and *status tells of the SIGKILL. */
bool child_wait(pid_t pid, int timeout_ms, int *status);

/* In a child: SIGSEGV and SIGBUS go to `handler` (an SA_SIGINFO handler, no signal masked). */
void child_catch_faults(void (*handler)(int, siginfo_t *, void *));

/* A child made to fault: child_call_faulting runs fn(arg) in a child whose SIGSEGV or SIGBUS ends
 * it with exit 42 when the faulting address is child_expect_fault (which fn sets just before the
 * access), 43 when it is another; fn returning ends it with 0. Returns the waitpid status. */
extern volatile uintptr_t child_expect_fault;
int child_call_faulting(void (*fn)(size_t), size_t arg);

/* child_start, then child_wait; returns the status (a hung child: as child_wait says, and *hung is
 * set when hung is not NULL). */
int child_call(int (*fn)(void *), void *arg, int timeout_ms, bool *hung);

#endif
