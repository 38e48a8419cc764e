/* Output that never allocates: a small formatter, the verbose channel, and the error reporter. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

typedef struct out_s {
  char *buf;
  size_t cap, len;
} out_t;

static void out_char(out_t *o, char c) {
  if (o->len + 1 < o->cap) o->buf[o->len] = c;
  o->len++;
}

/* Write `s` (n chars) padded with spaces to `width`, right-aligned unless `left`. */
static void out_field(out_t *o, const char *s, size_t n, int width, bool left) {
  size_t pad = width > 0 && (size_t)width > n ? (size_t)width - n : 0;
  if (!left)
    for (size_t i = 0; i < pad; i++) out_char(o, ' ');
  for (size_t i = 0; i < n; i++) out_char(o, s[i]);
  if (left)
    for (size_t i = 0; i < pad; i++) out_char(o, ' ');
}

/* Digits of v in `base`, written backwards from the end of tmp; returns the first char. */
static char *uint_digits(char *end, unsigned long long v, unsigned base) {
  char *p = end;
  do {
    unsigned d = (unsigned)(v % base);
    *--p = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    v /= base;
  } while (v != 0);
  return p;
}

/* Supports %s %c %d %u %x with the l, ll and z length modifiers, %p, %%, a field width (digits
 * or *) and the '-' flag. */
static size_t fmt_va(char *buf, size_t cap, const char *fmt, va_list ap) {
  out_t o = {buf, cap, 0};
  for (const char *f = fmt; *f; f++) {
    if (*f != '%') {
      out_char(&o, *f);
      continue;
    }
    f++;
    bool left = false;
    int width = 0;
    if (*f == '-') {
      left = true;
      f++;
    }
    if (*f == '*') {
      width = va_arg(ap, int);
      f++;
    }
    while (*f >= '0' && *f <= '9') width = width * 10 + (*f++ - '0');
    int lng = 0;
    bool z = false;
    while (*f == 'l') {
      lng++;
      f++;
    }
    if (*f == 'z') {
      z = true;
      f++;
    }
    char tmp[32], *end = tmp + sizeof tmp, *p;
    switch (*f) {
      case 's': {
        const char *s = va_arg(ap, const char *);
        if (s == NULL) s = "(null)";
        out_field(&o, s, strlen(s), width, left);
        break;
      }
      case 'c':
        tmp[0] = (char)va_arg(ap, int);
        out_field(&o, tmp, 1, width, left);
        break;
      case 'p':
        p = uint_digits(end, (uintptr_t)va_arg(ap, void *), 16);
        *--p = 'x';
        *--p = '0';
        out_field(&o, p, (size_t)(end - p), width, left);
        break;
      case 'd': {
        long long v = z ? (long long)va_arg(ap, ptrdiff_t) : lng >= 2 ? va_arg(ap, long long)
                      : lng == 1 ? va_arg(ap, long) : va_arg(ap, int);
        unsigned long long mag = v < 0 ? (unsigned long long)-(v + 1) + 1 : (unsigned long long)v;
        p = uint_digits(end, mag, 10);
        if (v < 0) *--p = '-';
        out_field(&o, p, (size_t)(end - p), width, left);
        break;
      }
      case 'u':
      case 'x': {
        unsigned long long v = z ? va_arg(ap, size_t) : lng >= 2 ? va_arg(ap, unsigned long long)
                               : lng == 1 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
        p = uint_digits(end, v, *f == 'x' ? 16 : 10);
        out_field(&o, p, (size_t)(end - p), width, left);
        break;
      }
      case '%': out_char(&o, '%'); break;
      case '\0': f--; break;
      default: out_char(&o, '%'); out_char(&o, *f); break;
    }
  }
  if (cap > 0) buf[o.len < cap ? o.len : cap - 1] = '\0';
  return o.len;
}

size_t _ra_fmt(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t n = fmt_va(buf, cap, fmt, ap);
  va_end(ap);
  return n;
}

static void write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

static void write_va(int fd, const char *fmt, va_list ap) {
  char buf[512];
  size_t n = fmt_va(buf, sizeof buf, fmt, ap);
  write_all(fd, buf, n < sizeof buf ? n : sizeof buf - 1);
}

void _ra_write(int fd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  write_va(fd, fmt, ap);
  va_end(ap);
}

void _ra_verbose(const char *fmt, ...) {
  if (!_ra_option(RA_OPT_VERBOSE)) return;
  va_list ap;
  va_start(ap, fmt);
  write_va(2, fmt, ap);
  va_end(ap);
}

/* Every misuse report ends here: one line on stderr, then abort() unless RAMALLOC_ON_ERROR=warn.
 * Nothing the program holds has been touched when this is called, so in warn mode the caller
 * simply refuses the operation. */
static void report_and_stop(const char *line_fmt, const char *op, const void *p) {
  _ra_write(2, line_fmt, op, p);
  if (_ra_option(RA_OPT_ON_ERROR) != RA_ON_ERROR_WARN) abort();
}

void _ra_misuse(bool is_realloc, ra_misuse_t kind, const void *p) {
  const char *op = is_realloc ? "realloc" : "free";
  switch (kind) {
    case RA_MISUSE_DOUBLE_FREE:
      report_and_stop(is_realloc ? "ramalloc: %s of a freed block %p\n" : "ramalloc: double %s of %p\n", op, p);
      break;
    case RA_MISUSE_INTERIOR:
      report_and_stop("ramalloc: %s of an interior pointer %p\n", op, p);
      break;
    case RA_MISUSE_METADATA:
      report_and_stop("ramalloc: %s of a pointer into allocator metadata %p\n", op, p);
      break;
    case RA_MISUSE_FOREIGN:
      report_and_stop("ramalloc: %s of a pointer ramalloc did not hand out %p\n", op, p);
      break;
  }
}

void _ra_misuse_usable(ra_misuse_t kind, const void *p) {
  const char *op = "usable size";
  switch (kind) {
    case RA_MISUSE_DOUBLE_FREE: report_and_stop("ramalloc: %s of a freed block %p\n", op, p); break;
    case RA_MISUSE_INTERIOR: report_and_stop("ramalloc: %s of an interior pointer %p\n", op, p); break;
    case RA_MISUSE_METADATA: report_and_stop("ramalloc: %s of a pointer into allocator metadata %p\n", op, p); break;
    case RA_MISUSE_FOREIGN: report_and_stop("ramalloc: %s of a pointer ramalloc did not hand out %p\n", op, p); break;
  }
}

void _ra_misuse_size(ra_sized_op_t op, const void *p, size_t size, size_t align) {
  static const char *const names[] = {
    [RA_SIZED_DELETE] = "sized delete",
    [RA_SIZED_FREE] = "free_sized",
    [RA_SIZED_FREE_ALIGNED] = "free_aligned_sized",
  };
  if (align > RA_ALIGN || op == RA_SIZED_FREE_ALIGNED)
    _ra_write(2, "ramalloc: %s of %p with the wrong size %zu, alignment %zu\n", names[op], p, size, align);
  else
    _ra_write(2, "ramalloc: %s of %p with the wrong size %zu\n", names[op], p, size);
  if (_ra_option(RA_OPT_ON_ERROR) != RA_ON_ERROR_WARN) abort();
}

void _ra_corrupt_list(const void *near) {
  report_and_stop("ramalloc: %s corrupted (write after free or overflow) near %p\n", "free list", near);
}

void _ra_misuse_canary(ra_canary_misuse_t kind, const void *block) {
  static const char *const what[] = {
    [RA_CANARY_OVERFLOW] = "heap overflow past the end of the block",
    [RA_CANARY_UNDERFLOW] = "heap underflow before the start of the block",
    [RA_CANARY_FREE_BLOCK] = "heap underflow or write after free into the end of the free block",
    [RA_WRITE_AFTER_FREE] = "write after free into the block",
  };
  report_and_stop("ramalloc: %s %p\n", what[kind], block);
}

void _ra_error(const char *what, const void *p) { report_and_stop("ramalloc: %s %p\n", what, p); }

bool _ra_invariant_fail(const char *what, const void *where) {
  _ra_write(2, "ramalloc: invariant broken: %s at %p\n", what, where);
  return false;
}

void _ra_assert_fail(const char *expr, const char *file, int line) {
  _ra_write(2, "ramalloc: assertion failed: %s (%s:%d)\n", expr, file, line);
  abort();
}
