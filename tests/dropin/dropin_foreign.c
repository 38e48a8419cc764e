/* free and realloc of pointers ramalloc did not hand out, in a program run with libramalloc.so
 * preloaded. Each case runs in a child process: ramalloc must report the pointer on stderr and
 * refuse it without having touched its metadata, then stop the process (abort, the default) or go
 * on (RAMALLOC_ON_ERROR=warn). Either way the child then proves nothing was damaged (from its
 * SIGABRT handler, or after the call returns): the blocks it held keep their contents, the
 * statistics are unchanged, and allocating and freeing still work; only then does it exit with
 * status 42. The parent checks the status and that a "ramalloc: free ..." or "ramalloc: realloc
 * ..." report came.
 *
 * Among the pointers is one the dynamic loader allocated before ramalloc was loaded (the main
 * program's link_map, from ld.so's own start-up allocator). */
#define _GNU_SOURCE
#include <link.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dropin.h"

static ra_api_t ra;

enum { HELD = 200 };
static unsigned char *held[HELD];
static size_t held_size[HELD];
static ra_stats_t stats_before;
static char static_buffer[256];

static void fill_held(void) {
  unsigned long long s = 88172645463325252ULL;
  for (int i = 0; i < HELD; i++) {
    size_t n = 1 + ra_rand(&s) % (i % 10 == 0 ? 300000 : 2000);
    if (i == 1) n = 100;                     /* a small block (class 112) */
    if (i == HELD - 1) n = (size_t)5 << 20; /* one huge block */
    held[i] = malloc(n);
    CHECK(held[i] != NULL);
    held_size[i] = n;
    memset(held[i], i & 0xff, n);
  }
}

/* Check everything, then leave with 42 (or 43 on damage). */
static void verify_and_exit(void) {
  bool ok = true;
  for (int i = 0; i < HELD && ok; i++)
    for (size_t k = 0; k < held_size[i]; k++)
      if (held[i][k] != (unsigned char)(i & 0xff)) {
        ok = false;
        break;
      }
  ra_stats_t now;
  ra.stats_get(&now);
  if (now.live_blocks != stats_before.live_blocks || now.live_bytes != stats_before.live_bytes) ok = false;
  /* The allocator still works: allocate, free everything, including the blocks held. */
  void *more[1000];
  for (int i = 0; i < 1000 && ok; i++) {
    more[i] = malloc((size_t)(i * 37) % 5000 + 1);
    if (more[i] == NULL || !ra.owns(more[i])) ok = false;
  }
  for (int i = 0; i < 1000 && ok; i++) free(more[i]);
  for (int i = 0; i < HELD && ok; i++) free(held[i]);
  _exit(ok ? 42 : 43);
}

static void on_abort(int sig) {
  (void)sig;
  verify_and_exit();
}

typedef void (*bad_op_t)(void *arg);

static void op_free(void *p) { free(p); }
static void op_realloc(void *p) {
  void *q = realloc(p, 100);
  (void)q;
}

/* Run op(arg) in a child; true when the child's stderr has a report starting with `expect` and
 * the child exited 42. */
static bool run_case(const char *name, bad_op_t op, void *arg, const char *expect) {
  int pfd[2];
  CHECK(pipe(pfd) == 0);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    dup2(pfd[1], 2);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_abort;
    sigaction(SIGABRT, &sa, NULL);
    alarm(30);
    ra.stats_get(&stats_before);
    op(arg);
    verify_and_exit(); /* warn mode (or nothing noticed: then no report reaches the parent) */
  }
  close(pfd[1]);
  char msg[1024];
  size_t len = 0;
  ssize_t n;
  while ((n = read(pfd[0], msg + len, sizeof msg - 1 - len)) > 0) len += (size_t)n;
  msg[len] = '\0';
  close(pfd[0]);
  int status;
  CHECK(waitpid(pid, &status, 0) == pid);
  bool said = strstr(msg, expect) != NULL;
  bool exit42 = WIFEXITED(status) && WEXITSTATUS(status) == 42;
  printf("%-34s %s (child %s %d; said: %s)\n", name, said && exit42 ? "ok" : "FAILED",
         WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
         len ? strtok(msg, "\n") : "nothing");
  return said && exit42;
}

int main(void) {
  ra = ra_api();
  if (ra.owns == NULL) {
    fprintf(stderr, "ramalloc is not in this process (run it with libramalloc.so preloaded)\n");
    return 1;
  }
  fill_held();
  const char *bad_free = "ramalloc: free of ";
  const char *bad_realloc = "ramalloc: realloc of ";

  char stack_buffer[64];
  void *mapped = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(mapped != MAP_FAILED);
  struct link_map *main_map = dlopen(NULL, RTLD_NOW); /* allocated by ld.so at start-up */
  CHECK(main_map != NULL && !ra.owns(main_map));
  unsigned char *small = held[1];
  unsigned char *huge = held[HELD - 1];
  uintptr_t chunk = ((uintptr_t)small - 1) & ~(uintptr_t)((4 << 20) - 1);

  int bad = 0;
  bad += !run_case("free(stack)", op_free, stack_buffer, bad_free);
  bad += !run_case("free(static)", op_free, static_buffer, bad_free);
  bad += !run_case("free(mmap)", op_free, (char *)mapped + 4096, bad_free);
  bad += !run_case("free(ld.so link_map)", op_free, main_map, bad_free);
  bad += !run_case("free(0x10)", op_free, (void *)0x10, bad_free);
  bad += !run_case("free(-16)", op_free, (void *)(uintptr_t)-16, bad_free);
  bad += !run_case("free(inside a huge block)", op_free, huge + 4096, bad_free);
  bad += !run_case("free(chunk header)", op_free, (void *)(chunk + 256), bad_free);
  bad += !run_case("realloc(stack)", op_realloc, stack_buffer, bad_realloc);
  bad += !run_case("realloc(ld.so link_map)", op_realloc, main_map, bad_realloc);
  bad += !run_case("realloc(mmap)", op_realloc, mapped, bad_realloc);
  /* Pointers into the middle of a small block the calling thread owns (free's fast path). */
  bad += !run_case("free(inside a small block)", op_free, small + 8, bad_free);
  bad += !run_case("free(inside a small block, +16)", op_free, small + 16, bad_free);
  bad += !run_case("realloc(inside a small block)", op_realloc, small + 16, bad_realloc);

  /* And this process, which did none of it, is fine too. */
  for (int i = 0; i < HELD; i++) free(held[i]);
  munmap(mapped, 1 << 20);
  if (bad) {
    printf("%d case(s) failed\n", bad);
    return 1;
  }
  puts("foreign-ok");
  return 0;
}
