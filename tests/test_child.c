/* The parent's side of the tests that start child processes (declared in test_child.h): one
 * fork/exec launcher that hands the child a filtered environment and collects its stdout and
 * stderr, and one fork/wait pair for children that run a function of the test itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "test_child.h"

extern char **environ;

static bool has_prefix_in(const char *var, const char *const *prefixes) {
  for (const char *const *p = prefixes; p != NULL && *p != NULL; p++)
    if (strncmp(var, *p, strlen(*p)) == 0) return true;
  return false;
}

/* One captured stream: a pipe's read end and where its bytes go. */
typedef struct sink_s {
  int fd; /* -1 once at EOF (or not captured) */
  char *dst;
  size_t cap, len;
} sink_t;

/* Read what is there; at EOF or on an error the stream is closed. Bytes past cap - 1 are dropped. */
static void sink_read(sink_t *s) {
  char spill[4096];
  char *to = s->len < s->cap - 1 ? s->dst + s->len : spill;
  size_t room = s->len < s->cap - 1 ? s->cap - 1 - s->len : sizeof spill;
  ssize_t n = read(s->fd, to, room);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    close(s->fd);
    s->fd = -1;
    return;
  }
  if (to != spill) s->len += (size_t)n;
}

int child_exec(const child_exec_t *c) {
  enum { MAXENV = 1024 };
  static char *envp[MAXENV];
  int ne = 0, nadd = 0;
  for (const char *const *x = c->env_add; x != NULL && *x != NULL; x++) nadd++;
  for (char **e = environ; *e != NULL; e++) {
    if (has_prefix_in(*e, c->env_drop)) continue;
    if (ne + nadd >= MAXENV - 1) fail_msg("child_exec: more than %d environment variables", MAXENV - 1);
    envp[ne++] = *e;
  }
  for (const char *const *x = c->env_add; x != NULL && *x != NULL; x++) envp[ne++] = (char *)*x;
  envp[ne] = NULL;

  int pout[2] = {-1, -1}, perr[2] = {-1, -1};
  if (c->out != NULL) assert_int_equal(pipe(pout), 0);
  if (c->err != NULL) assert_int_equal(pipe(perr), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (c->out != NULL) dup2(pout[1], 1);
    if (c->err != NULL) dup2(perr[1], 2);
    int fds[4] = {pout[0], pout[1], perr[0], perr[1]};
    for (int i = 0; i < 4; i++)
      if (fds[i] >= 0) close(fds[i]);
    execve(c->path, c->argv, envp);
    _exit(127);
  }
  sink_t s[2] = {{pout[0], c->out, c->out_cap, 0}, {perr[0], c->err, c->err_cap, 0}};
  if (c->out != NULL) close(pout[1]);
  if (c->err != NULL) close(perr[1]);
  /* Both streams at once: a child that fills one pipe while the parent waits on the other would
   * never finish. */
  while (s[0].fd >= 0 || s[1].fd >= 0) {
    struct pollfd pf[2] = {{s[0].fd, POLLIN, 0}, {s[1].fd, POLLIN, 0}}; /* fd -1: ignored */
    int r = poll(pf, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    assert_true(r > 0);
    for (int i = 0; i < 2; i++)
      if (s[i].fd >= 0 && pf[i].revents != 0) sink_read(&s[i]);
  }
  for (int i = 0; i < 2; i++)
    if (s[i].dst != NULL) s[i].dst[s[i].len] = 0;
  int status;
  pid_t w;
  while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  assert_int_equal(w, pid);
  return status;
}

pid_t child_start(int (*fn)(void *), void *arg) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(fn(arg));
  return pid;
}

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

bool child_wait(pid_t pid, int timeout_ms, int *status) {
  pid_t w;
  if (timeout_ms <= 0) {
    while ((w = waitpid(pid, status, 0)) < 0 && errno == EINTR) {
    }
    assert_int_equal(w, pid);
    return true;
  }
  /* Polled: short naps, as most children end within a millisecond or two. */
  int64_t deadline = now_ms() + timeout_ms;
  while ((w = waitpid(pid, status, WNOHANG)) == 0 || (w < 0 && errno == EINTR)) {
    if (now_ms() >= deadline) {
      kill(pid, SIGKILL);
      while ((w = waitpid(pid, status, 0)) < 0 && errno == EINTR) {
      }
      assert_int_equal(w, pid);
      return false;
    }
    usleep(200);
  }
  assert_int_equal(w, pid);
  return true;
}

int child_call(int (*fn)(void *), void *arg, int timeout_ms, bool *hung) {
  int status;
  bool ended = child_wait(child_start(fn, arg), timeout_ms, &status);
  if (hung != NULL) *hung = !ended;
  return status;
}

void child_catch_faults(void (*handler)(int, siginfo_t *, void *)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
}

volatile uintptr_t child_expect_fault;

static void on_expected_fault(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  _exit((uintptr_t)si->si_addr == child_expect_fault ? 42 : 43);
}

typedef struct faulting_s {
  void (*fn)(size_t);
  size_t arg;
} faulting_t;

static int faulting_child(void *p) {
  const faulting_t *f = p;
  child_catch_faults(on_expected_fault);
  f->fn(f->arg);
  return 0;
}

int child_call_faulting(void (*fn)(size_t), size_t arg) {
  faulting_t f = {fn, arg};
  return child_call(faulting_child, &f, 0, NULL);
}
