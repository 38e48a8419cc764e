/* Out of memory (issue 7, item 3; docs/robustness.md): when reserving or committing fails, every
 * allocation function returns NULL with ENOMEM (posix_memalign returns ENOMEM), blocks already held
 * are untouched, nothing crashes, and allocation succeeds again once memory is freed.
 *
 * Three ways to run out, each in a fresh child process (this program re-executed with
 * "--child NAME" and a chosen environment, so ramalloc initialises with it):
 *   RAMALLOC_LIMIT=bytes   ramalloc's own cap on its committed bytes (ra_stats_get().committed);
 *   RLIMIT_AS              set by the child before its first allocation: a 1 GiB arena cannot be
 *                          reserved, ramalloc falls back to smaller ones, then reservation fails;
 *   RLIMIT_DATA            with RAMALLOC_COMMIT=protect: reserving (PROT_NONE) works but committing
 *                          (mprotect to read-write) fails past the limit.
 * The child prints "FAIL: ..." and exits non-zero on the first broken promise, or "done". */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_child.h"
#include "test_common.h"
#include "internal.h"

extern char **environ;

static volatile size_t v_zero = 0; /* sizes the compiler cannot see */

/* ================================================================================================
 * The child
 * ================================================================================================ */

/* say, child_fail and CHECK: test_child.h */

static size_t stat_committed(void) {
  ra_stats_t st;
  ra_stats_get(&st);
  return st.committed;
}
static size_t stat_peak(void) {
  ra_stats_t st;
  ra_stats_get(&st);
  return st.committed_peak;
}

/* Allocate blocks of `size` until one fails (at most `max`); the failure must be NULL + ENOMEM.
 * Each block gets a tag in its first and last byte, checked by drop(). Returns the count. */
typedef struct pile_s {
  void **p;
  size_t n, cap, size;
} pile_t;

static void pile_init(pile_t *pl, size_t size, size_t cap) {
  pl->p = calloc(cap, sizeof *pl->p); /* glibc: the tests keep it beside ramalloc */
  CHECK(pl->p != NULL, "glibc calloc failed");
  pl->n = 0;
  pl->cap = cap;
  pl->size = size;
}

static size_t fill_until_enomem(pile_t *pl) {
  for (;;) {
    CHECK(pl->n < pl->cap, "%zu blocks of %zu bytes and still no ENOMEM", pl->n, pl->size);
    errno = 0;
    unsigned char *b = ra_malloc(pl->size + v_zero);
    if (b == NULL) {
      CHECK(errno == ENOMEM, "ra_malloc(%zu) returned NULL with errno %d, want ENOMEM", pl->size, errno);
      return pl->n;
    }
    b[0] = (unsigned char)pl->n;
    b[pl->size - 1] = (unsigned char)(pl->n >> 3);
    pl->p[pl->n++] = b;
  }
}

static void pile_check(const pile_t *pl) {
  for (size_t i = 0; i < pl->n; i++) {
    const unsigned char *b = pl->p[i];
    CHECK(b[0] == (unsigned char)i && b[pl->size - 1] == (unsigned char)(i >> 3),
          "block %zu of %zu bytes changed while memory ran out", i, pl->size);
  }
}

static void pile_free(pile_t *pl) {
  pile_check(pl);
  for (size_t i = 0; i < pl->n; i++) ra_free(pl->p[i]);
  pl->n = 0;
}

static void pile_destroy(pile_t *pl) {
  pile_free(pl);
  free(pl->p);
}

/* With memory exhausted: every entry point fails cleanly, and `held` (a live block of held_size
 * bytes, pattern-filled) stays as it was when realloc cannot grow it. */
static void expect_all_fail(unsigned char *held, size_t held_size) {
  const size_t big = 64 * RA_MiB + v_zero;
  errno = 0;
  CHECK(ra_malloc(big) == NULL && errno == ENOMEM, "ra_malloc(64 MiB) did not fail with ENOMEM");
  errno = 0;
  CHECK(ra_calloc(1, big) == NULL && errno == ENOMEM, "ra_calloc(1, 64 MiB) did not fail with ENOMEM");
  errno = 0;
  CHECK(ra_calloc(big / 16, 16) == NULL && errno == ENOMEM, "ra_calloc(4 Mi, 16) did not fail with ENOMEM");
  errno = 0;
  CHECK(ra_aligned_alloc(RA_CHUNK_SIZE, big) == NULL && errno == ENOMEM, "ra_aligned_alloc did not fail with ENOMEM");
  errno = 0;
  CHECK(ra_aligned_alloc(4096, big) == NULL && errno == ENOMEM, "ra_aligned_alloc(4096) did not fail with ENOMEM");
  void *out = &out;
  int rc = ra_posix_memalign(&out, 64, big);
  CHECK(rc == ENOMEM && out == &out, "ra_posix_memalign returned %d (or changed *out)", rc);
  errno = 0;
  CHECK(ra_realloc(NULL, big) == NULL && errno == ENOMEM, "ra_realloc(NULL, 64 MiB) did not fail with ENOMEM");
  if (held != NULL) {
    unsigned char *saved = malloc(held_size); /* glibc: the block's own content is put back after */
    CHECK(saved != NULL, "glibc malloc failed");
    memcpy(saved, held, held_size);
    for (size_t i = 0; i < held_size; i++) held[i] = (unsigned char)(i * 13 + 1);
    errno = 0;
    void *r = ra_realloc(held, big);
    CHECK(r == NULL && errno == ENOMEM, "ra_realloc(held, 64 MiB) did not fail with ENOMEM");
    CHECK(ra_usable_size(held) >= held_size, "a failed realloc shrank the block");
    for (size_t i = 0; i < held_size; i++)
      CHECK(held[i] == (unsigned char)(i * 13 + 1), "a failed realloc changed byte %zu of the block", i);
    memcpy(held, saved, held_size);
    free(saved);
  }
  CHECK(_ra_heap_validate(), "heap invariants broken after the failures");
}

static size_t env_size(const char *name) {
  const char *s = getenv(name);
  CHECK(s != NULL, "%s is not set", name);
  return (size_t)strtoull(s, NULL, 10);
}

/* ---- RAMALLOC_LIMIT -------------------------------------------------------------------------------- */

/* The cap holds at every level of block size; freed memory is usable again at once (ramalloc
 * purges before it gives up), for every kind of block. OOM_LIMIT_BYTES is the cap in bytes. */
static void sc_limit_fill(void) {
  const size_t limit = env_size("OOM_LIMIT_BYTES");
  const size_t sizes[] = {RA_MiB, 64 * RA_KiB, 1000, 16};
  pile_t piles[4];
  size_t total = 0;
  size_t first[4];
  for (int k = 0; k < 4; k++) {
    pile_init(&piles[k], sizes[k], limit / sizes[k] + 16);
    first[k] = fill_until_enomem(&piles[k]);
    total += piles[k].n * sizes[k];
    CHECK(stat_committed() <= limit, "committed %zu > RAMALLOC_LIMIT %zu", stat_committed(), limit);
    say("filled with %zu-byte blocks: %zu blocks, committed %zu\n", sizes[k], piles[k].n, stat_committed());
  }
  CHECK(total >= limit / 2, "only %zu bytes served under a cap of %zu", total, limit);
  /* everything fails now, and a block held keeps its content */
  expect_all_fail(piles[2].n > 0 ? piles[2].p[0] : NULL, sizes[2]);
  for (int k = 0; k < 4; k++) pile_check(&piles[k]);
  /* free all; at once a huge block of half the cap fits (no purge delay to wait out) */
  for (int k = 0; k < 4; k++) pile_free(&piles[k]);
  errno = 0;
  unsigned char *h = ra_malloc(limit / 2);
  CHECK(h != NULL, "ra_malloc(%zu) failed right after everything was freed (errno %d)", limit / 2, errno);
  h[0] = 1;
  h[limit / 2 - 1] = 2;
  ra_free(h);
  /* and each size fills about as far as the first time */
  for (int k = 0; k < 3; k++) {
    size_t again = fill_until_enomem(&piles[k]);
    say("refill with %zu-byte blocks: %zu blocks (first time %zu, after larger blocks)\n", sizes[k], again, first[k]);
    CHECK(again * sizes[k] >= limit / 2, "after freeing, %zu-byte blocks fill only %zu bytes", sizes[k], again * sizes[k]);
    pile_free(&piles[k]);
  }
  /* huge blocks to the cap, and back */
  pile_t huge;
  pile_init(&huge, 3 * RA_MiB, limit / (3 * RA_MiB) + 16);
  fill_until_enomem(&huge);
  CHECK(huge.n * 3 * RA_MiB >= limit / 2, "only %zu huge blocks under a cap of %zu", huge.n, limit);
  expect_all_fail(NULL, 0);
  pile_free(&huge);
  /* a huge block grown in place by realloc counts against the cap too */
  unsigned char *g = ra_malloc(3 * RA_MiB);
  CHECK(g != NULL, "ra_malloc(3 MiB) failed");
  size_t gsize = 3 * RA_MiB;
  for (;;) {
    errno = 0;
    unsigned char *r = ra_realloc(g, gsize + 4 * RA_MiB);
    if (r == NULL) {
      CHECK(errno == ENOMEM, "ra_realloc growing a huge block: NULL with errno %d", errno);
      break;
    }
    g = r;
    gsize += 4 * RA_MiB;
    g[gsize - 1] = 7;
    CHECK(gsize <= limit, "a huge block grew to %zu bytes past a cap of %zu", gsize, limit);
  }
  CHECK(stat_committed() <= limit, "committed %zu > RAMALLOC_LIMIT %zu after realloc", stat_committed(), limit);
  ra_free(g);
  for (int k = 0; k < 4; k++) pile_destroy(&piles[k]);
  pile_destroy(&huge);
  say("peak=%zu limit=%zu\n", stat_peak(), limit);
  CHECK(stat_peak() <= limit, "committed peaked at %zu, past RAMALLOC_LIMIT %zu", stat_peak(), limit);
}

/* The value the option parser took (K/M/G suffixes): 1 MiB blocks fill up to it and no further. */
static void sc_limit_value(void) {
  const size_t limit = env_size("OOM_LIMIT_BYTES");
  pile_t pl;
  pile_init(&pl, RA_MiB, limit / RA_MiB + 16);
  fill_until_enomem(&pl);
  say("served=%zu peak=%zu limit=%zu\n", pl.n * RA_MiB, stat_peak(), limit);
  CHECK(stat_peak() <= limit, "committed peaked at %zu, past the cap %zu", stat_peak(), limit);
  CHECK(pl.n * RA_MiB >= limit / 2, "only %zu MiB served under a cap of %zu", pl.n, limit);
  pile_destroy(&pl);
}

/* A cap too small for ramalloc's own bookkeeping: allocation fails cleanly, or succeeds within it. */
static void sc_limit_tiny(void) {
  const size_t limit = env_size("OOM_LIMIT_BYTES");
  for (int i = 0; i < 100; i++) {
    errno = 0;
    void *p = ra_malloc(16);
    if (p == NULL) {
      CHECK(errno == ENOMEM, "ra_malloc(16) under a tiny cap: NULL with errno %d", errno);
    } else {
      memset(p, 1, 16);
      ra_free(p);
    }
  }
  errno = 0;
  void *h = ra_malloc(3 * RA_MiB);
  CHECK(h == NULL && errno == ENOMEM, "a 3 MiB block under a cap of %zu did not fail with ENOMEM", limit);
  CHECK(stat_peak() <= limit, "committed peaked at %zu, past the cap %zu", stat_peak(), limit);
}

/* Threads share the cap: one thread holds it all, another fails; memory its owner frees, or memory
 * an exited thread left and another thread frees, is usable again. */
typedef struct hog_s {
  pile_t pile;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stage; /* 1: filled, 2: told to free, 3: freed */
} hog_t;

static void *hog_fill_and_wait(void *arg) {
  hog_t *h = arg;
  fill_until_enomem(&h->pile);
  pthread_mutex_lock(&h->mu);
  h->stage = 1;
  pthread_cond_broadcast(&h->cv);
  while (h->stage != 2) pthread_cond_wait(&h->cv, &h->mu);
  pthread_mutex_unlock(&h->mu);
  pile_free(&h->pile);
  pthread_mutex_lock(&h->mu);
  h->stage = 3;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
  return NULL;
}

static void *hog_fill_and_exit(void *arg) {
  hog_t *h = arg;
  fill_until_enomem(&h->pile);
  return NULL;
}

static void sc_limit_threads(void) {
  const size_t limit = env_size("OOM_LIMIT_BYTES");
  hog_t h;
  memset(&h, 0, sizeof h);
  pthread_mutex_init(&h.mu, NULL);
  pthread_cond_init(&h.cv, NULL);
  pile_init(&h.pile, 64 * RA_KiB, limit / (64 * RA_KiB) + 16);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, hog_fill_and_wait, &h) == 0, "pthread_create failed");
  pthread_mutex_lock(&h.mu);
  while (h.stage != 1) pthread_cond_wait(&h.cv, &h.mu);
  pthread_mutex_unlock(&h.mu);
  errno = 0;
  void *p = ra_malloc(RA_MiB);
  CHECK(p == NULL && errno == ENOMEM, "another thread holds the whole cap, yet ra_malloc(1 MiB) gave %p", p);
  pthread_mutex_lock(&h.mu);
  h.stage = 2;
  pthread_cond_broadcast(&h.cv);
  while (h.stage != 3) pthread_cond_wait(&h.cv, &h.mu);
  pthread_mutex_unlock(&h.mu);
  errno = 0;
  p = ra_malloc(limit / 2);
  CHECK(p != NULL, "the owner freed everything, yet ra_malloc(%zu) failed (errno %d)", limit / 2, errno);
  ra_free(p);
  pthread_join(t, NULL);

  /* a thread fills the cap and exits holding it all; this thread frees its blocks */
  hog_t h2;
  memset(&h2, 0, sizeof h2);
  pile_init(&h2.pile, 64 * RA_KiB, limit / (64 * RA_KiB) + 16);
  CHECK(pthread_create(&t, NULL, hog_fill_and_exit, &h2) == 0, "pthread_create failed");
  pthread_join(t, NULL);
  errno = 0;
  p = ra_malloc(RA_MiB);
  CHECK(p == NULL && errno == ENOMEM, "an exited thread holds the whole cap, yet ra_malloc(1 MiB) gave %p", p);
  pile_free(&h2.pile);
  errno = 0;
  p = ra_malloc(limit / 2);
  CHECK(p != NULL, "an exited thread's blocks were freed, yet ra_malloc(%zu) failed (errno %d)", limit / 2, errno);
  ra_free(p);
  CHECK(stat_peak() <= limit, "committed peaked at %zu, past the cap %zu", stat_peak(), limit);
  pile_destroy(&h.pile);
  pile_destroy(&h2.pile);
}

/* ---- RLIMIT_AS and RLIMIT_DATA --------------------------------------------------------------------- */

/* A field of /proc/self/status in bytes ("VmSize", "VmData"). */
static size_t proc_status_bytes(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  CHECK(f != NULL, "cannot open /proc/self/status");
  char line[256];
  size_t kb = 0, len = strlen(field);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, len) == 0 && line[len] == ':') kb = (size_t)strtoull(line + len + 1, NULL, 10);
  fclose(f);
  CHECK(kb > 0, "no %s in /proc/self/status", field);
  return kb * 1024;
}

static struct rlimit limit_to(int resource, const char *field, size_t headroom) {
  struct rlimit old;
  CHECK(getrlimit(resource, &old) == 0, "getrlimit failed");
  /* stdio and the status file first, so their own buffers exist before the limit */
  size_t now = proc_status_bytes(field);
  struct rlimit lim = {now + headroom, old.rlim_max};
  CHECK(setrlimit(resource, &lim) == 0, "setrlimit(%s + %zu) failed: %s", field, headroom, strerror(errno));
  return old;
}

/* 512 MiB of address space left: no 1 GiB arena, but smaller ones, and a clean ENOMEM at the end. */
static void sc_rlimit_as(void) {
  say("starting\n");
  limit_to(RLIMIT_AS, "VmSize", 512 * RA_MiB);
  unsigned char *p = ra_malloc(100);
  CHECK(p != NULL, "ra_malloc(100) failed with 512 MiB of address space left (errno %d)", errno);
  ra_stats_t st;
  ra_stats_get(&st);
  say("first arena: %zu bytes reserved in %zu arenas\n", st.reserved, st.arenas);
  CHECK(st.reserved >= RA_ARENA_MIN && st.reserved < RA_GiB, "reserved %zu bytes (want a smaller arena than 1 GiB)",
        st.reserved);
  void *h = ra_malloc(8 * RA_MiB), *a = ra_aligned_alloc(RA_CHUNK_SIZE, 100), *m = ra_malloc(20000);
  CHECK(h && a && m, "huge, aligned or medium allocation failed in a small arena");
  memset(h, 1, 8 * RA_MiB);
  ra_free(h);
  ra_free(a);
  ra_free(m);
  pile_t pl;
  pile_init(&pl, RA_MiB, 1024);
  size_t first = fill_until_enomem(&pl);
  ra_stats_get(&st);
  say("1 MiB blocks: %zu until ENOMEM; %zu bytes reserved in %zu arenas\n", first, st.reserved, st.arenas);
  CHECK(first >= 128, "only %zu MiB served with 512 MiB of address space", first);
  expect_all_fail(p, 100);
  errno = 0;
  CHECK(ra_malloc(RA_GiB + v_zero) == NULL && errno == ENOMEM, "a 1 GiB block did not fail with ENOMEM");
  /* freed memory is reused (arenas stay reserved) */
  pile_free(&pl);
  size_t again = fill_until_enomem(&pl);
  say("refill: %zu blocks\n", again);
  CHECK(again * 10 >= first * 9, "after freeing, only %zu of %zu blocks fit again", again, first);
  pile_destroy(&pl);
  ra_free(p);
  h = ra_malloc(64 * RA_MiB);
  CHECK(h != NULL, "a 64 MiB block failed after everything was freed (errno %d)", errno);
  ra_free(h);
}

/* Address space for less than one 16 MiB arena: everything fails with ENOMEM; more address space
 * later (the soft limit raised again) and allocation works. */
static void sc_rlimit_as_tiny(void) {
  say("starting\n");
  struct rlimit old = limit_to(RLIMIT_AS, "VmSize", 8 * RA_MiB);
  for (int i = 0; i < 3; i++) {
    errno = 0;
    void *p = ra_malloc(16);
    CHECK(p == NULL && errno == ENOMEM, "ra_malloc(16) with 8 MiB of address space: %p errno %d", p, errno);
    errno = 0;
    p = ra_calloc(1, 16);
    CHECK(p == NULL && errno == ENOMEM, "ra_calloc with 8 MiB of address space: %p errno %d", p, errno);
    errno = 0;
    p = ra_realloc(NULL, 16);
    CHECK(p == NULL && errno == ENOMEM, "ra_realloc(NULL, 16) with 8 MiB of address space: %p errno %d", p, errno);
    errno = 0;
    p = ra_aligned_alloc(64, 16);
    CHECK(p == NULL && errno == ENOMEM, "ra_aligned_alloc with 8 MiB of address space: %p errno %d", p, errno);
    p = &p;
    int rc = ra_posix_memalign(&p, 64, 16);
    CHECK(rc == ENOMEM && p == &p, "ra_posix_memalign with 8 MiB of address space: %d", rc);
    errno = 0;
    p = ra_malloc(3 * RA_MiB);
    CHECK(p == NULL && errno == ENOMEM, "ra_malloc(3 MiB) with 8 MiB of address space: %p errno %d", p, errno);
  }
  CHECK(setrlimit(RLIMIT_AS, &old) == 0, "restoring RLIMIT_AS failed");
  void *p = ra_malloc(16);
  CHECK(p != NULL, "ra_malloc(16) still fails once address space is available again (errno %d)", errno);
  void *h = ra_malloc(3 * RA_MiB);
  CHECK(h != NULL, "ra_malloc(3 MiB) still fails once address space is available again (errno %d)", errno);
  ra_free(p);
  ra_free(h);
  CHECK(_ra_heap_validate(), "heap invariants broken");
}

/* RAMALLOC_COMMIT=protect and 64 MiB of writable data allowed: reserving works, committing fails. */
static void sc_rlimit_data_protect(void) {
  say("starting\n");
  unsigned char *p = ra_malloc(100); /* reserve the arena before the limit: only commits are limited */
  CHECK(p != NULL, "ra_malloc(100) failed");
  limit_to(RLIMIT_DATA, "VmData", 64 * RA_MiB);
  pile_t pl;
  pile_init(&pl, RA_MiB, 1024);
  size_t first = fill_until_enomem(&pl);
  say("1 MiB blocks: %zu until ENOMEM (committed %zu)\n", first, stat_committed());
  CHECK(first >= 24 && first <= 64, "%zu MiB served with 64 MiB of data allowed", first);
  expect_all_fail(p, 100);
  pile_free(&pl);
  unsigned char *h = ra_malloc(32 * RA_MiB);
  CHECK(h != NULL, "a 32 MiB block failed after everything was freed (errno %d)", errno);
  h[0] = 1;
  h[32 * RA_MiB - 1] = 1;
  ra_free(h);
  size_t again = fill_until_enomem(&pl);
  say("refill: %zu blocks\n", again);
  CHECK(again * 10 >= first * 8, "after freeing, only %zu of %zu blocks fit again", again, first);
  pile_destroy(&pl);
  ra_free(p);
}

typedef struct scenario_s {
  const char *name;
  void (*run)(void);
} scenario_t;

static const scenario_t scenarios[] = {
    {"limit_fill", sc_limit_fill},         {"limit_value", sc_limit_value},
    {"limit_tiny", sc_limit_tiny},         {"limit_threads", sc_limit_threads},
    {"rlimit_as", sc_rlimit_as},           {"rlimit_as_tiny", sc_rlimit_as_tiny},
    {"rlimit_data_protect", sc_rlimit_data_protect},
};

static int child_main(const char *name) {
  for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
    if (strcmp(scenarios[i].name, name) != 0) continue;
    scenarios[i].run();
    say("done\n");
    return 0;
  }
  say("FAIL: no scenario named %s\n", name);
  return 2;
}

/* ================================================================================================
 * The parent
 * ================================================================================================ */

typedef struct run_s {
  char out[16384];
  char err[16384];
  int status;
} run_t;

static run_t run;

/* Run a scenario with the environment minus RAMALLOC_* plus `extra`; both output streams are
 * collected. */
static void run_child_env(const char *name, const char *const *extra, bool verbose) {
  static const char *const drop[] = {"RAMALLOC_", NULL};
  char *argv[] = {(char *)"test_oom", (char *)"--child", (char *)name, NULL};
  child_exec_t c = {"/proc/self/exe", argv, drop, extra, run.out, sizeof run.out, run.err, sizeof run.err};
  run.status = child_exec(&c);
  if (!WIFEXITED(run.status) || WEXITSTATUS(run.status) != 0 || !strstr(run.out, "done\n"))
    fail_msg("%s: status 0x%x\n---- stdout:\n%s---- stderr:\n%s", name, run.status, run.out, run.err);
  /* nothing on stderr: running out of memory is not an error ramalloc reports */
  if (!verbose && strstr(run.err, "ramalloc:")) fail_msg("%s: ramalloc printed on stderr:\n%s", name, run.err);
  printf("%s", run.out);
}

static void run_child(const char *name, const char *const *extra) { run_child_env(name, extra, false); }

static void run_with_limit(const char *scenario, const char *setting, size_t bytes) {
  char limit[64], bytes_env[64];
  snprintf(limit, sizeof limit, "RAMALLOC_LIMIT=%s", setting);
  snprintf(bytes_env, sizeof bytes_env, "OOM_LIMIT_BYTES=%zu", bytes);
  const char *env[] = {limit, bytes_env, NULL};
  printf("-- %s with %s\n", scenario, limit);
  run_child(scenario, env);
}

static void test_limit_fill(void **state) {
  (void)state;
  run_with_limit("limit_fill", "64M", 64 * RA_MiB);
}

static void test_limit_fill_protect(void **state) {
  (void)state;
  char limit[] = "RAMALLOC_LIMIT=64M", bytes[] = "OOM_LIMIT_BYTES=67108864", mode[] = "RAMALLOC_COMMIT=protect";
  const char *env[] = {limit, bytes, mode, NULL};
  run_child("limit_fill", env);
}

static void test_limit_fill_reset(void **state) {
  (void)state;
  char limit[] = "RAMALLOC_LIMIT=64M", bytes[] = "OOM_LIMIT_BYTES=67108864", purge[] = "RAMALLOC_PURGE=reset";
  const char *env[] = {limit, bytes, purge, NULL};
  run_child("limit_fill", env);
}

/* The K/M/G suffixes and plain bytes all mean what they say: RAMALLOC_VERBOSE echoes the value in
 * bytes, and 1 MiB blocks fill up to it and no further. */
static void test_limit_suffixes(void **state) {
  (void)state;
  const struct {
    const char *setting;
    size_t bytes;
  } cases[] = {{"65536K", 64 * RA_MiB}, {"65536k", 64 * RA_MiB}, {"67108864", 64 * RA_MiB},
               {"96M", 96 * RA_MiB},    {"1G", RA_GiB}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char limit[64], bytes_env[64], want[96];
    snprintf(limit, sizeof limit, "RAMALLOC_LIMIT=%s", cases[i].setting);
    snprintf(bytes_env, sizeof bytes_env, "OOM_LIMIT_BYTES=%zu", cases[i].bytes);
    snprintf(want, sizeof want, "ramalloc: option RAMALLOC_LIMIT=%zu", cases[i].bytes);
    const char *env[] = {limit, bytes_env, "RAMALLOC_VERBOSE=1", NULL};
    printf("-- limit_value with %s\n", limit);
    run_child_env("limit_value", env, true);
    if (!strstr(run.err, want)) fail_msg("%s: no line \"%s\" in:\n%s", limit, want, run.err);
  }
}

static void test_limit_tiny(void **state) {
  (void)state;
  run_with_limit("limit_tiny", "1M", RA_MiB);
  run_with_limit("limit_tiny", "200K", 200 * RA_KiB);
}

static void test_limit_threads(void **state) {
  (void)state;
  run_with_limit("limit_threads", "64M", 64 * RA_MiB);
}

static void test_rlimit_as(void **state) {
  (void)state;
  if (RA_TEST_SANITIZED) skip(); /* a sanitizer's shadow memory needs terabytes of address space */
  const char *none[] = {NULL};
  run_child("rlimit_as", none);
  const char *protect[] = {"RAMALLOC_COMMIT=protect", NULL};
  run_child("rlimit_as", protect);
}

static void test_rlimit_as_tiny(void **state) {
  (void)state;
  if (RA_TEST_SANITIZED) skip();
  const char *none[] = {NULL};
  run_child("rlimit_as_tiny", none);
}

static void test_rlimit_data_protect(void **state) {
  (void)state;
  if (RA_TEST_SANITIZED) skip();
  const char *protect[] = {"RAMALLOC_COMMIT=protect", NULL};
  run_child("rlimit_data_protect", protect);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--child") == 0) return child_main(argv[2]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_limit_fill),       cmocka_unit_test(test_limit_fill_protect),
      cmocka_unit_test(test_limit_fill_reset), cmocka_unit_test(test_limit_suffixes),
      cmocka_unit_test(test_limit_tiny),       cmocka_unit_test(test_limit_threads),
      cmocka_unit_test(test_rlimit_as),        cmocka_unit_test(test_rlimit_as_tiny),
      cmocka_unit_test(test_rlimit_data_protect),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
