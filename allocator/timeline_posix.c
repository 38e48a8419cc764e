/* The timeline (RAMALLOC_TIMELINE, POSIX): a thread started at load time writes one CSV row every
 * RAMALLOC_TIMELINE_MS milliseconds: milliseconds since the start, then reserved, committed,
 * resident, live and purged bytes. Reserved, committed and purged are ramalloc's own exact counters;
 * live comes from ra_stats_get (a walk of the metadata under the allocator's locks, no allocation);
 * resident is the whole process's, the second field of /proc/self/statm read with read(2). The
 * thread never allocates, so it never gets a heap. tools/ramalloc-timeline draws the CSV
 * (ramalloc-run --timeline does both). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static int timeline_fd = -1;
static uint64_t timeline_t0;
static pthread_t timeline_thread;
static atomic_bool timeline_quit;
static pthread_mutex_t timeline_lock = PTHREAD_MUTEX_INITIALIZER; /* one writer of a row at a time */

static size_t resident_bytes(void) {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char *p = buf;
  while (*p != ' ' && *p != '\0') p++; /* skip the total size */
  size_t pages = 0;
  for (p++; *p >= '0' && *p <= '9'; p++) pages = pages * 10 + (size_t)(*p - '0');
  return pages * (size_t)sysconf(_SC_PAGESIZE);
}

static void timeline_row(void) {
  static ra_stats_t st; /* big (the per-class table); rows are written under timeline_lock */
  pthread_mutex_lock(&timeline_lock);
  if (timeline_fd >= 0) {
    ra_stats_get(&st);
    char line[256];
    size_t n = _ra_fmt(line, sizeof line, "%llu,%zu,%zu,%zu,%zu,%zu\n",
                       (unsigned long long)(_ra_now_ms() - timeline_t0), st.reserved, st.committed,
                       resident_bytes(), st.live_bytes, st.purged);
    if (write(timeline_fd, line, n) < 0) {
      close(timeline_fd);
      timeline_fd = -1;
    }
  }
  pthread_mutex_unlock(&timeline_lock);
}

static void *timeline_main(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  long long ms = _ra_option(RA_OPT_TIMELINE_MS);
  if (ms < 1) ms = 1;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (!atomic_load_explicit(&timeline_quit, memory_order_acquire)) {
    timeline_row();
    nanosleep(&ts, NULL);
  }
  return NULL;
}

/* A child made by fork() has no timeline thread and does not write into its parent's file. */
void _ra_timeline_fork_child(void) {
  if (timeline_fd >= 0) close(timeline_fd);
  timeline_fd = -1;
  pthread_mutex_init(&timeline_lock, NULL);
}

void _ra_timeline_start(void) {
  const char *pattern = _ra_option_str(RA_OPT_TIMELINE);
  if (pattern == NULL) return;
  char path[4096];
  size_t len = 0;
  bool per_process = false;
  for (const char *p = pattern; *p != '\0' && len + 32 < sizeof path; p++) {
    if (p[0] == '%' && p[1] == 'p') {
      len += _ra_fmt(path + len, sizeof path - len, "%d", (int)getpid());
      per_process = true;
      p++;
    } else {
      path[len++] = *p;
    }
  }
  path[len] = '\0';
  /* Without %p in the name, the first process to start writes the file and the programs it starts
   * leave it alone. */
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (per_process ? O_TRUNC : O_EXCL), 0644);
  if (fd < 0) {
    if (errno != EEXIST || per_process)
      _ra_fmt_write(2, "ramalloc: RAMALLOC_TIMELINE: cannot create %s (errno %d)\n", path, errno);
    return;
  }
  static const char header[] = "ms,reserved,committed,resident,live,purged\n";
  if (write(fd, header, sizeof header - 1) < 0) {
    close(fd);
    return;
  }
  timeline_fd = fd;
  timeline_t0 = _ra_now_ms();
  if (pthread_create(&timeline_thread, NULL, timeline_main, NULL) != 0) {
    _ra_fmt_write(2, "ramalloc: RAMALLOC_TIMELINE: cannot start its thread\n");
    close(fd);
    timeline_fd = -1;
    return;
  }
}

/* At exit: a last row, then the thread stops (it may be in the middle of a row: the lock). */
void _ra_timeline_end(void) {
  if (timeline_fd < 0) return;
  atomic_store_explicit(&timeline_quit, true, memory_order_release);
  timeline_row();
  pthread_mutex_lock(&timeline_lock);
  close(timeline_fd);
  timeline_fd = -1;
  pthread_mutex_unlock(&timeline_lock);
}

