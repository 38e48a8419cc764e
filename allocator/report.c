/* Reports that never allocate: the verbose channel and the error reporter (formatting: fmt.c). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

void _ra_report_verbose(const char *fmt, ...) {
  if (!_ra_option(RA_OPT_VERBOSE)) return;
  va_list ap;
  va_start(ap, fmt);
  _ra_fmt_write_va(2, fmt, ap);
  va_end(ap);
}

/* Every misuse report ends here: one line on stderr, then abort() unless RAMALLOC_ON_ERROR=warn.
 * Nothing the program holds has been touched when this is called, so in warn mode the caller
 * simply refuses the operation. */
static void report_and_stop(const char *line_fmt, const char *op, const void *p) {
  _ra_fmt_write(2, line_fmt, op, p);
  if (_ra_option(RA_OPT_ON_ERROR) != RA_ON_ERROR_WARN) abort();
}

void _ra_report_misuse(bool is_realloc, ra_misuse_t kind, const void *p) {
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

void _ra_report_misuse_usable(ra_misuse_t kind, const void *p) {
  const char *op = "usable size";
  switch (kind) {
    case RA_MISUSE_DOUBLE_FREE: report_and_stop("ramalloc: %s of a freed block %p\n", op, p); break;
    case RA_MISUSE_INTERIOR: report_and_stop("ramalloc: %s of an interior pointer %p\n", op, p); break;
    case RA_MISUSE_METADATA: report_and_stop("ramalloc: %s of a pointer into allocator metadata %p\n", op, p); break;
    case RA_MISUSE_FOREIGN: report_and_stop("ramalloc: %s of a pointer ramalloc did not hand out %p\n", op, p); break;
  }
}

void _ra_report_misuse_size(ra_sized_op_t op, const void *p, size_t size, size_t align) {
  static const char *const names[] = {
    [RA_SIZED_DELETE] = "sized delete",
    [RA_SIZED_FREE] = "free_sized",
    [RA_SIZED_FREE_ALIGNED] = "free_aligned_sized",
  };
  if (align > RA_ALIGN || op == RA_SIZED_FREE_ALIGNED)
    _ra_fmt_write(2, "ramalloc: %s of %p with the wrong size %zu, alignment %zu\n", names[op], p, size, align);
  else
    _ra_fmt_write(2, "ramalloc: %s of %p with the wrong size %zu\n", names[op], p, size);
  if (_ra_option(RA_OPT_ON_ERROR) != RA_ON_ERROR_WARN) abort();
}

void _ra_report_corrupt_list(const void *near) {
  report_and_stop("ramalloc: %s corrupted (write after free or overflow) near %p\n", "free list", near);
}

void _ra_report_misuse_canary(ra_canary_misuse_t kind, const void *block) {
  static const char *const what[] = {
    [RA_CANARY_OVERFLOW] = "heap overflow past the end of the block",
    [RA_CANARY_UNDERFLOW] = "heap underflow before the start of the block",
    [RA_CANARY_FREE_BLOCK] = "heap underflow or write after free into the end of the free block",
    [RA_WRITE_AFTER_FREE] = "write after free into the block",
  };
  report_and_stop("ramalloc: %s %p\n", what[kind], block);
}

void _ra_report_error(const char *what, const void *p) { report_and_stop("ramalloc: %s %p\n", what, p); }

bool _ra_report_invariant(const char *what, const void *where) {
  _ra_fmt_write(2, "ramalloc: invariant broken: %s at %p\n", what, where);
  return false;
}

void _ra_report_assert(const char *expr, const char *file, int line) {
  _ra_fmt_write(2, "ramalloc: assertion failed: %s (%s:%d)\n", expr, file, line);
  abort();
}
