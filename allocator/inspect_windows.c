/* Inspection, the Windows side: the exit hook of RAMALLOC_SHOW_STATS / RAMALLOC_DUMP_LAYOUT (the
 * dump files and the command line: os_windows.c). Windows has no SIGUSR2: RAMALLOC_DUMP_SIGNAL is
 * reported as unsupported (ra_dump_layout_file from the program does the same job). */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static void at_exit(void) { _ra_inspect_at_exit(2); }

/* At load time (init.c). On Windows the statistics and the layout dump run from an atexit
 * handler registered here, and _ra_inspect_end has nothing left to do. */
void _ra_inspect_start(void) {
  if (_ra_option(RA_OPT_SHOW_STATS) || _ra_option_str(RA_OPT_DUMP_LAYOUT) != NULL) atexit(at_exit);
  if (_ra_option(RA_OPT_DUMP_SIGNAL) > 0)
    _ra_fmt_write(2, "ramalloc: RAMALLOC_DUMP_SIGNAL is not supported on Windows; call ra_dump_layout_file\n");
}

void _ra_inspect_end(void) {}

/* The heap profiler is POSIX-only (docs/profiling.md). */
int ra_profile_write(int fd) {
  (void)fd;
  return ENOSYS;
}
