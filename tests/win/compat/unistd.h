/* mingw-w64's <unistd.h> plus pipe(), which the portable tests use and the C runtime spells
 * _pipe (binary mode, 64 KiB buffer, as a Linux pipe holds). Windows build only. */
#ifndef RA_TEST_WIN_COMPAT_UNISTD_H
#define RA_TEST_WIN_COMPAT_UNISTD_H

#include_next <unistd.h>

#include <fcntl.h>
#include <io.h>

static inline int pipe(int fds[2]) { return _pipe(fds, 65536, _O_BINARY); }

#endif
