/* The heap profiler's test program (tests/prof/test_prof.py runs it with RAMALLOC_PROFILE set). It
 * is linked to libramalloc.so and calls the ra_* functions by name, so its blocks are ramalloc's in
 * sanitizer builds too (where the sanitizer's malloc comes first). Call sites with known live bytes:
 *
 *   sites    site_a keeps 8 MiB live in 1 KiB blocks, site_b 2 MiB in 64-byte blocks, site_c
 *            allocates and frees 64 MiB in 256-byte blocks (nothing live), site_d keeps 4 MiB in
 *            four 1 MiB blocks; then writes the profile with ra_profile_write to argv[2] and exits
 *            with status 3 (the leak report must leave it unchanged)
 *   entries  the other ways to allocate, one site each: site_calloc keeps 2 MiB in 48-byte calloc
 *            blocks, site_realloc 8192 blocks of 40 bytes moved by realloc to 400, site_aligned
 *            16384 blocks of 100 bytes aligned to 64; writes the profile to argv[2]
 *   signal   site_a, then SIGUSR2 to itself; waits for the profile file argv[2] to appear
 *   threads  four threads allocate and free with one block in 8 kept, the main thread forks in the
 *            middle; the child allocates at site_child, writes its profile to argv[2].child and
 *            exits; the parent waits, checks the child's status, and writes argv[2]
 *
 * The site functions are noinline and exported (-rdynamic) so that dladdr and addr2line name them. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "ramalloc.h"

#define NOINLINE __attribute__((noinline, used))

static void *volatile sink;

NOINLINE void **site_a(void) {
  size_t n = (8u << 20) / 1024;
  void **v = ra_calloc(n, sizeof *v); /* 64 KiB of pointers: part of site_a's live bytes too */
  for (size_t i = 0; i < n; i++) {
    v[i] = ra_malloc(1024);
    memset(v[i], 1, 1024);
  }
  return v;
}

NOINLINE void **site_b(void) {
  size_t n = (2u << 20) / 64;
  void **v = ra_malloc(n * sizeof *v); /* 256 KiB of pointers */
  for (size_t i = 0; i < n; i++) v[i] = ra_malloc(64);
  return v;
}

NOINLINE void site_c(void) {
  for (size_t i = 0; i < (64u << 20) / 256; i++) {
    void *p = ra_malloc(256);
    sink = p;
    ra_free(p);
  }
}

NOINLINE void **site_d(void) {
  void **v = ra_malloc(4 * sizeof *v);
  for (int i = 0; i < 4; i++) v[i] = ra_malloc(1u << 20);
  return v;
}

NOINLINE void **site_calloc(void) {
  size_t n = (2u << 20) / 48;
  void **v = ra_malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = ra_calloc(1, 48);
  return v;
}

NOINLINE void **site_realloc(void) {
  void **v = ra_malloc(8192 * sizeof *v);
  for (int i = 0; i < 8192; i++) v[i] = ra_malloc(40);
  for (int i = 0; i < 8192; i++) v[i] = ra_realloc(v[i], 400); /* a 48-byte block: moves */
  return v;
}

NOINLINE void **site_aligned(void) {
  void **v = ra_malloc(16384 * sizeof *v);
  for (int i = 0; i < 16384; i++) v[i] = ra_aligned_alloc(64, 100);
  return v;
}

static int write_profile(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    perror(path);
    return 1;
  }
  int err = ra_profile_write(fd);
  close(fd);
  if (err != 0) {
    fprintf(stderr, "ra_profile_write: error %d\n", err);
    return 1;
  }
  return 0;
}

NOINLINE void **site_child(void) {
  void **v = ra_malloc(1024 * sizeof *v);
  for (int i = 0; i < 1024; i++) v[i] = ra_malloc(2048);
  return v;
}

NOINLINE void *thread_work(void *arg) {
  (void)arg;
  void *keep[4096];
  size_t kept = 0;
  for (size_t i = 0; i < 200000; i++) {
    void *p = ra_malloc(16 + (i * 7919) % 2000);
    if (i % 8 == 0 && kept < 4096) keep[kept++] = p;
    else ra_free(p);
  }
  for (size_t i = 0; i < kept; i++) ra_free(keep[i]);
  return NULL;
}

/* forkdump: layout dumps (which hold the profiler's snapshot of its samples) from one thread while
 * the main thread forks; every child dumps too. */
static atomic_bool dumping_done;
NOINLINE void *dump_loop(void *arg) {
  int fd = *(int *)arg;
  while (!atomic_load(&dumping_done)) ra_dump_layout(fd);
  return NULL;
}

static int fork_during_dumps(int forks) {
  int fd = open("/dev/null", O_WRONLY);
  if (fd < 0) return 1;
  void **keep = site_child(); /* samples for the dumps to snapshot */
  sink = keep;
  pthread_t t;
  pthread_create(&t, NULL, dump_loop, &fd);
  int hung = 0, failed = 0;
  for (int i = 0; i < forks && hung < 3; i++) {
    usleep(500 + (unsigned)(i * 7919) % 3000);
    pid_t pid = fork();
    if (pid == 0) _exit(ra_dump_layout(fd) == 0 ? 0 : 1);
    int status = 0, waited = 0;
    while (waitpid(pid, &status, WNOHANG) == 0 && waited < 5000) {
      usleep(1000);
      waited++;
    }
    if (waited >= 5000) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      hung++;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failed++;
    }
  }
  atomic_store(&dumping_done, true);
  pthread_join(t, NULL);
  printf("%d forks during layout dumps: %d children hung (stopped at 3), %d failed\n", forks, hung, failed);
  return hung == 0 && failed == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: prof_sites sites|entries|signal|threads FILE, or forkdump COUNT\n");
    return 2;
  }
  if (!strcmp(argv[1], "sites")) {
    void **a = site_a(), **b = site_b();
    site_c();
    void **d = site_d();
    sink = a;
    sink = b;
    sink = d;
    if (write_profile(argv[2]) != 0) return 1;
    return 3;
  }
  if (!strcmp(argv[1], "entries")) {
    void **c = site_calloc(), **r = site_realloc(), **a = site_aligned();
    sink = c;
    sink = r;
    sink = a;
    return write_profile(argv[2]);
  }
  if (!strcmp(argv[1], "signal")) {
    /* RAMALLOC_DUMP_SIGNAL=USR2: the dumper thread writes argv[2] (the profile file name + ".1") */
    void **a = site_a();
    sink = a;
    raise(SIGUSR2);
    for (int i = 0; i < 500 && access(argv[2], F_OK) != 0; i++) usleep(10000);
    return access(argv[2], F_OK) == 0 ? 0 : 1;
  }
  if (!strcmp(argv[1], "threads")) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, thread_work, NULL);
    usleep(2000);
    pid_t pid = fork();
    if (pid == 0) {
      void **c = site_child();
      sink = c;
      char path[4096];
      snprintf(path, sizeof path, "%s.child", argv[2]);
      _exit(write_profile(path));
    }
    int status = 0;
    waitpid(pid, &status, 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "child failed: status 0x%x\n", status);
      return 1;
    }
    return write_profile(argv[2]);
  }
  if (!strcmp(argv[1], "forkdump")) return fork_during_dumps(atoi(argv[2]));
  return 2;
}
