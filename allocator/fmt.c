/* Formatting and writing without allocating: a small printf (the conversions ramalloc's messages
 * use, checked as GNU printf's by the compiler) into a fixed buffer, and a formatted write to a
 * file descriptor. Everything that prints goes through here, from start-up (options.c) on: it
 * reads no option and takes no lock. */
#include <stdarg.h>
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

void _ra_fmt_write_va(int fd, const char *fmt, va_list ap) {
  char buf[512];
  size_t n = fmt_va(buf, sizeof buf, fmt, ap);
  write_all(fd, buf, n < sizeof buf ? n : sizeof buf - 1);
}

void _ra_fmt_write(int fd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  _ra_fmt_write_va(fd, fmt, ap);
  va_end(ap);
}
