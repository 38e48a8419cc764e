/* bench-exec: run one program and report its wall time and resource usage.
 *
 *     bench-exec [-p PRELOAD] [-t TIMEOUT_S] [-o REPORT] -- PROGRAM [ARGS...]
 *
 * The runner starts every measured process through this small launcher rather than directly from
 * Python because of how Linux counts peak RSS: a process's ru_maxrss starts from the high-water
 * mark of the memory it had before exec, and a child that Python spawns (vfork or fork) carries
 * Python's own size, 15 MB or more, into that figure. Forked from this tiny program instead, the
 * program's ru_maxrss is its own to within about a megabyte.
 *
 * PRELOAD is put in LD_PRELOAD for PROGRAM only (the launcher itself never loads it). After the
 * program ends, one line of key=value pairs goes to REPORT (default: standard error):
 *     wall_s=0.532 maxrss_kib=45120 utime_s=0.9 stime_s=0.1 minflt=1234 majflt=0 nvcsw=5
 *     nivcsw=7 status=exit:0|signal:11|timeout
 * The launcher exits with the program's exit code, 128+N when it died of signal N, and 124 on a
 * timeout (the program is then killed with SIGKILL). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_timed_out;
static pid_t g_child;

static void on_alarm(int sig) {
  (void)sig;
  g_timed_out = 1;
  if (g_child > 0) kill(g_child, SIGKILL);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double tv(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec * 1e-6; }

static void usage(void) {
  fprintf(stderr, "usage: bench-exec [-p PRELOAD] [-t TIMEOUT_S] [-o REPORT] -- PROGRAM [ARGS...]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *preload = NULL, *report = NULL;
  double timeout = 0;
  int i = 1;
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "--")) {
      i++;
      break;
    } else if (!strcmp(argv[i], "-p") && i + 1 < argc) {
      preload = argv[++i];
    } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
      timeout = strtod(argv[++i], NULL);
    } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
      report = argv[++i];
    } else {
      usage();
    }
  }
  if (i >= argc) usage();

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);

  double t0 = now();
  g_child = fork();
  if (g_child < 0) {
    perror("bench-exec: fork");
    return 125;
  }
  if (g_child == 0) {
    if (preload && *preload) setenv("LD_PRELOAD", preload, 1);
    else unsetenv("LD_PRELOAD");
    execvp(argv[i], &argv[i]);
    fprintf(stderr, "bench-exec: cannot run %s: %s\n", argv[i], strerror(errno));
    _exit(127);
  }
  if (timeout > 0) {
    struct itimerval it;
    memset(&it, 0, sizeof it);
    it.it_value.tv_sec = (time_t)timeout;
    it.it_value.tv_usec = (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6);
    setitimer(ITIMER_REAL, &it, NULL);
  }
  int status = 0;
  struct rusage ru;
  pid_t r;
  while ((r = wait4(g_child, &status, 0, &ru)) < 0 && errno == EINTR) {
  }
  double wall = now() - t0;
  if (r < 0) {
    perror("bench-exec: wait4");
    return 125;
  }

  char st[32];
  int code;
  if (g_timed_out) {
    snprintf(st, sizeof st, "timeout");
    code = 124;
  } else if (WIFSIGNALED(status)) {
    snprintf(st, sizeof st, "signal:%d", WTERMSIG(status));
    code = 128 + WTERMSIG(status);
  } else {
    snprintf(st, sizeof st, "exit:%d", WEXITSTATUS(status));
    code = WEXITSTATUS(status);
  }
  FILE *out = report ? fopen(report, "w") : stderr;
  if (!out) {
    perror("bench-exec: report file");
    return 125;
  }
  fprintf(out,
          "wall_s=%.6f maxrss_kib=%ld utime_s=%.6f stime_s=%.6f minflt=%ld majflt=%ld nvcsw=%ld "
          "nivcsw=%ld status=%s\n",
          wall, ru.ru_maxrss, tv(ru.ru_utime), tv(ru.ru_stime), ru.ru_minflt, ru.ru_majflt,
          ru.ru_nvcsw, ru.ru_nivcsw, st);
  if (out != stderr) fclose(out);
  return code;
}
