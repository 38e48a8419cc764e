/* Inspection, the Windows side: dump files written whole (a temporary file moved into place), the
 * command line from GetCommandLineA, and the exit hook of RAMALLOC_SHOW_STATS /
 * RAMALLOC_DUMP_LAYOUT. Windows has no SIGUSR2: RAMALLOC_DUMP_SIGNAL is reported as unsupported
 * (ra_dump_layout_file from the program does the same job). */
#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <windows.h>

#include "internal.h"

int _ra_inspect_dump_file(const char *path, const char *reason) {
  char tmp[4096];
  size_t n = _ra_fmt(tmp, sizeof tmp, "%s.tmp%lu", path, (unsigned long)GetCurrentProcessId());
  if (n >= sizeof tmp) return ENAMETOOLONG;
  int fd = _open(tmp, _O_WRONLY | _O_CREAT | _O_TRUNC | _O_BINARY, _S_IREAD | _S_IWRITE);
  if (fd < 0) return errno;
  int err = _ra_inspect_dump_fd(fd, reason);
  if (_close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && !MoveFileExA(tmp, path, MOVEFILE_REPLACE_EXISTING)) err = EACCES;
  if (err != 0) _unlink(tmp);
  return err;
}

size_t _ra_inspect_command(char *buf, size_t cap) {
  const char *cmd = GetCommandLineA(); /* the process's own copy: nothing allocated */
  if (cmd == NULL) return 0;
  size_t n = strlen(cmd);
  if (n > cap - 1) n = cap - 1;
  memcpy(buf, cmd, n);
  buf[n] = '\0';
  return n;
}

static void at_exit(void) { _ra_inspect_at_exit(2); }

__attribute__((constructor)) static void inspect_init(void) {
  _ra_init();
  if (_ra_option(RA_OPT_SHOW_STATS) || _ra_option_str(RA_OPT_DUMP_LAYOUT) != NULL) atexit(at_exit);
  if (_ra_option(RA_OPT_DUMP_SIGNAL) > 0)
    _ra_write(2, "ramalloc: RAMALLOC_DUMP_SIGNAL is not supported on Windows; call ra_dump_layout_file\n");
}

/* The heap profiler is POSIX-only (docs/profiling.md). */
int ra_profile_write(int fd) {
  (void)fd;
  return ENOSYS;
}
