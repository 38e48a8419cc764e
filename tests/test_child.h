/* Reporting from a test's child process (tests that re-execute themselves with a scenario name):
 * say() writes to stdout with write(2), so nothing sits in a buffer when the child dies, and CHECK
 * ends the child with exit status 2 after a "FAIL: ..." line that the parent shows. read_all() is
 * the parent's side: it collects what the child wrote. */
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

/* The parent's side: read fd to EOF into dst (NUL-terminated, at most cap - 1 bytes kept), draining
 * whatever does not fit so the child never blocks on a full pipe. Returns the bytes kept. */
static size_t read_all(int fd, char *dst, size_t cap) __attribute__((unused));
static size_t read_all(int fd, char *dst, size_t cap) {
  size_t len = 0;
  for (;;) {
    char sink[4096];
    char *to = len < cap - 1 ? dst + len : sink;
    size_t room = len < cap - 1 ? cap - 1 - len : sizeof sink;
    ssize_t n = read(fd, to, room);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (to != sink) len += (size_t)n;
  }
  dst[len] = 0;
  return len;
}

#endif
