/* The hard places of a drop-in malloc, in one program run under glibc and with ramalloc preloaded:
 * allocation before main (a constructor of the program and of a library it is linked to, which
 * also dlopens a plugin while the loader runs constructors), pthread_create and thread exit in
 * storms (blocks freed by threads that did not allocate them, after their owner exited; thread-
 * specific destructors that allocate, which makes the destructor round run again), detached
 * threads, and allocation in atexit handlers and destructors after main returns. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "dropin.h"

void *early_block(int i);
const char *early_text(void);
void *early_plugin_handle(void);

enum { ROUNDS = 60, THREADS = 8, PER_THREAD = 64 };

static void *pre_main[16];
static ra_api_t ra;
static pthread_key_t key;
static atomic_ulong destructor_runs;
static atomic_int detached_done;
static void *passed[ROUNDS + 1][THREADS]; /* blocks one round's threads leave to the next's */
static atomic_ulong checksum;

__attribute__((constructor(101))) static void before_main(void) {
  for (int i = 0; i < 16; i++) pre_main[i] = calloc(1, (size_t)(i + 1) * 1000);
}

static void key_destructor(void *v) {
  unsigned long n = atomic_fetch_add(&destructor_runs, 1);
  char *s = v;
  /* Allocate at thread exit, and once in a while hand the key a new value: glibc then runs the
   * destructors again, after ramalloc's own thread-exit work may already have run. */
  char *again = malloc(64 + strlen(s));
  CHECK(again != NULL);
  strcpy(again, s);
  free(s);
  if (n % 2 == 0 && again[0] != '!') {
    again[0] = '!';
    pthread_setspecific(key, again);
  } else {
    free(again);
  }
}

typedef struct job_s {
  int round, index;
} job_t;

static void *thread_main(void *arg) {
  job_t *job = arg;
  unsigned long long s = 1000003ULL * (unsigned long long)(job->round * THREADS + job->index + 1);
  void *blocks[PER_THREAD];
  unsigned long sum = 0;
  for (int i = 0; i < PER_THREAD; i++) {
    size_t n = 1 + ra_rand(&s) % (i % 16 == 0 ? 100000 : 700);
    blocks[i] = malloc(n);
    CHECK(blocks[i] != NULL);
    if (ra.owns) CHECK(ra.owns(blocks[i]));
    memset(blocks[i], i, n);
    sum += n;
  }
  /* Free what a thread of the previous round (now gone) left behind. */
  if (job->round > 0) {
    free(passed[job->round - 1][job->index]);
    passed[job->round - 1][job->index] = NULL;
  }
  for (int i = 1; i < PER_THREAD; i++) free(blocks[i]);
  passed[job->round][job->index] = blocks[0]; /* outlives this thread */
  char *v = malloc(32);
  CHECK(v != NULL);
  strcpy(v, "thread-specific");
  pthread_setspecific(key, v);
  atomic_fetch_add(&checksum, sum);
  free(job);
  return NULL;
}

static void *detached_main(void *arg) {
  void *p = malloc(5000);
  CHECK(p != NULL);
  char *v = strdup("detached");
  pthread_setspecific(key, v);
  free(p);
  atomic_fetch_add(&detached_done, 1);
  return arg;
}

static void at_exit_handler(void) {
  void *p = malloc(12345);
  if (p == NULL) _exit(3);
  memset(p, 0, 12345);
  if (ra.owns && !ra.owns(p)) _exit(4);
  free(p);
  for (int i = 0; i < 16; i++) free(pre_main[i]);
}

int main(void) {
  ra = ra_api();
  if (ra.owns) {
    for (int i = 0; i < 16; i++) CHECK(ra.owns(pre_main[i]));
    for (int i = 0; i < 32; i++) CHECK(ra.owns(early_block(i)));
    CHECK(ra.owns(early_text()));
  }
  CHECK(strcmp(early_text(), "allocated while the loader ran constructors") == 0);
  if (getenv("DROPIN_PLUGIN")) CHECK(early_plugin_handle() != NULL);
  for (int i = 0; i < 16; i++)
    for (int k = 0; k < (i + 1) * 1000; k++) CHECK(((char *)pre_main[i])[k] == 0);
  CHECK(pthread_key_create(&key, key_destructor) == 0);
  atexit(at_exit_handler);

  for (int round = 0; round < ROUNDS; round++) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
      job_t *job = malloc(sizeof *job);
      CHECK(job != NULL);
      job->round = round;
      job->index = i;
      CHECK(pthread_create(&t[i], NULL, thread_main, job) == 0);
    }
    pthread_t d;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    CHECK(pthread_create(&d, &attr, detached_main, NULL) == 0);
    pthread_attr_destroy(&attr);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
  }
  for (int i = 0; i < THREADS; i++) free(passed[ROUNDS - 1][i]);
  for (int spin = 0; atomic_load(&detached_done) < ROUNDS && spin < 10000; spin++) usleep(1000);
  CHECK(atomic_load(&detached_done) == ROUNDS);
  /* Each joined thread ran the destructor once or twice; every run freed what it was given. */
  CHECK(atomic_load(&destructor_runs) >= (unsigned long)(ROUNDS * THREADS));
  printf("hard checksum %lu\n", atomic_load(&checksum));
  puts("hard-ok");
  return 0;
}
