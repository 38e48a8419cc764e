/* larson: a server simulation after Larson and Krishnan ("Memory allocation for long-running server
 * applications", ISMM 1998), scored by throughput.
 *
 * Each of T worker lines owns a table of 1000 slots, filled at the start with blocks of random
 * sizes between 8 and 1000 bytes. A worker thread repeatedly picks a random slot, frees its block
 * and puts a fresh block of a random size there. After a round of such steps the thread starts its
 * successor, hands it the table (with every block in it) and exits: the blocks a thread allocated
 * are freed by the threads that come after it, and thread heaps come and go all the time, as in a
 * server whose requests are served by short-lived threads. The run lasts a fixed time; the result
 * is steps per second; scored_s is the time that rate needs for 10 M steps (lower is better).
 *
 * Each block carries its slot's tag in its first and last 8 bytes (blocks are at least 16 bytes
 * here), checked before it is freed. Built twice: as C on malloc/free, and with LARSON_CXX through
 * C++'s operator new and sized operator delete (larson_cxx.cc). */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#ifdef LARSON_CXX
void *larson_new(size_t n);
void larson_delete(void *p, size_t n);
#define LA_ALLOC(n) larson_new(n)
#define LA_FREE(p, n) larson_delete(p, n)
#define LA_NAME "larson-cxx"
#else
#define LA_ALLOC(n) wl_malloc(n)
#define LA_FREE(p, n) free(p)
#define LA_NAME "larson"
#endif

#define SLOTS 1000
#define MIN_SIZE 16
#define MAX_SIZE 1000
#define STEPS_PER_ROUND 10000

typedef struct line {
  int id;
  double end;
  wl_rng r;
  uint64_t next_tag, steps, rounds;
  unsigned char *p[SLOTS];
  uint32_t n[SLOTS];
  uint64_t tag[SLOTS];
  char pad[64];
} line;

static void *line_thread(void *arg);

static void start_detached(line *l) {
  pthread_t t;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &at, line_thread, l)) wl_die("pthread_create failed");
  pthread_attr_destroy(&at);
}

static void stamp(unsigned char *p, size_t n, uint64_t tag) {
  memcpy(p, &tag, 8);
  memcpy(p + n - 8, &tag, 8);
}

static void check(const line *l, size_t k) {
  uint64_t a, b;
  memcpy(&a, l->p[k], 8);
  memcpy(&b, l->p[k] + l->n[k] - 8, 8);
  if (a != l->tag[k] || b != l->tag[k])
    wl_corrupt("line %d slot %zu: block %p of %u bytes was written over", l->id, k, (void *)l->p[k], l->n[k]);
}

static void refill(line *l, size_t k) {
  size_t n = wl_between(&l->r, MIN_SIZE, MAX_SIZE);
  l->p[k] = LA_ALLOC(n);
  l->n[k] = (uint32_t)n;
  l->tag[k] = l->next_tag++;
  stamp(l->p[k], n, l->tag[k]);
}

static atomic_int g_done;

/* One thread of a line: a round of steps, then the successor, or the end of the line. */
static void *line_thread(void *arg) {
  line *l = arg;
  for (int i = 0; i < STEPS_PER_ROUND; i++) {
    size_t k = wl_below(&l->r, SLOTS);
    check(l, k);
    LA_FREE(l->p[k], l->n[k]);
    refill(l, k);
  }
  l->steps += STEPS_PER_ROUND;
  l->rounds++;
  if (wl_now() >= l->end) {
    atomic_fetch_add(&g_done, 1);
    return NULL;
  }
  start_detached(l);
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, LA_NAME, argc, argv, 0, 1);
  double seconds = a.scale < 0.05 ? 0.05 : a.scale; /* quick: 1 s, full: 5 s */
  line *l = wl_calloc((size_t)a.threads, sizeof *l);
  for (int i = 0; i < a.threads; i++) {
    l[i].id = i;
    wl_rng_seed(&l[i].r, a.seed, (uint64_t)i);
    l[i].next_tag = ((uint64_t)i << 48) + 1;
    for (size_t k = 0; k < SLOTS; k++) refill(&l[i], k);
  }
  double t0 = wl_now();
  for (int i = 0; i < a.threads; i++) l[i].end = t0 + seconds;
  /* Each line's first thread; its successors are started by the threads themselves (detached),
   * and the last one of each line counts itself done. */
  for (int i = 0; i < a.threads; i++) start_detached(&l[i]);
  while (atomic_load(&g_done) < a.threads) wl_sleep(0.001);
  double t = wl_now() - t0;
  uint64_t steps = 0, rounds = 0;
  for (int i = 0; i < a.threads; i++) {
    steps += l[i].steps;
    rounds += l[i].rounds;
    for (size_t k = 0; k < SLOTS; k++) {
      check(&l[i], k);
      LA_FREE(l[i].p[k], l[i].n[k]);
    }
  }
  double rate = (double)steps / t;
  wl_summary(&a, t, "steps=%llu threads_started=%llu steps_per_s=%.0f scored_s=%.4f",
             (unsigned long long)steps, (unsigned long long)rounds, rate, rate > 0 ? 1e7 / rate : 0.0);
  free(l);
  return 0;
}
