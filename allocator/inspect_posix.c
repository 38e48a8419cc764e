/* Inspection, the POSIX side: the exit hook of RAMALLOC_SHOW_STATS / RAMALLOC_DUMP_LAYOUT and the
 * RAMALLOC_DUMP_SIGNAL dumper (the dump files and the command line: os_posix.c). Nothing here
 * allocates except at load time (pthread_create, from this file's constructor, never from inside
 * malloc). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ---- RAMALLOC_DUMP_SIGNAL ----------------------------------------------------------------------- */

/* The handler only writes a byte to a pipe (async-signal-safe); a thread of ours waits on the
 * other end and dumps with the ordinary locks. Dumping in the handler itself could deadlock: the
 * interrupted thread may hold the very arena or chunk lock the walk needs. */
static int dump_pipe[2] = {-1, -1};
static atomic_uint dump_serial;

static void on_dump_signal(int sig) {
  (void)sig;
  int saved = errno;
  char byte = 1;
  if (dump_pipe[1] >= 0 && write(dump_pipe[1], &byte, 1) < 0) {
    /* the pipe is full: dumps are pending already */
  }
  errno = saved;
}

static void *dumper_main(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); /* the program's signals go to the program's threads */
  for (;;) {
    char bytes[64];
    ssize_t n = read(dump_pipe[0], bytes, sizeof bytes); /* signals that came together: one dump */
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return NULL;
    unsigned serial = atomic_fetch_add(&dump_serial, 1) + 1;
    _ra_inspect_dump_configured(serial, "signal");
    _ra_prof_dump_configured(serial);
  }
}

/* A child made by fork() has no dumper thread: it drops the pipe it shares with its parent (so its
 * signals do not make the parent dump), and the signal then does nothing. A program it execs sets
 * up its own. */
void _ra_inspect_fork_child(void) {
  if (dump_pipe[0] >= 0) close(dump_pipe[0]);
  if (dump_pipe[1] >= 0) close(dump_pipe[1]);
  dump_pipe[0] = dump_pipe[1] = -1;
}

static void dumper_start(int sig) {
  if (pipe(dump_pipe) != 0) {
    _ra_fmt_write(2, "ramalloc: RAMALLOC_DUMP_SIGNAL: no pipe (errno %d)\n", errno);
    return;
  }
  for (int i = 0; i < 2; i++) fcntl(dump_pipe[i], F_SETFD, FD_CLOEXEC);
  fcntl(dump_pipe[1], F_SETFL, O_NONBLOCK);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int err = pthread_create(&t, &attr, dumper_main, NULL);
  pthread_attr_destroy(&attr);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_dump_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (err != 0 || sigaction(sig, &sa, NULL) != 0) {
    _ra_fmt_write(2, "ramalloc: RAMALLOC_DUMP_SIGNAL=%d: cannot %s\n", sig,
              err != 0 ? "start the dumper thread" : "install the handler");
    return;
  }
}

/* ---- At exit -------------------------------------------------------------------------------------- */

/* The statistics go to a copy of stderr made at load time: programs may close stderr on their way
 * out (coreutils' close_stdout does, from its atexit handler). */
static int stats_fd = -1;

/* At load time (init.c): pthread_create may allocate, which is safe here and not inside malloc. */
void _ra_inspect_start(void) {
  if (_ra_option(RA_OPT_SHOW_STATS)) {
    stats_fd = fcntl(2, F_DUPFD_CLOEXEC, 100);
    if (stats_fd < 0) stats_fd = 2;
  }
  int sig = (int)_ra_option(RA_OPT_DUMP_SIGNAL);
  if (sig > 0) dumper_start(sig);
}

void _ra_inspect_end(void) { _ra_inspect_at_exit(stats_fd); }
