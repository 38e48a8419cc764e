/* xmalloc: producer/consumer of fixed 64-byte blocks for a fixed time, scored by throughput.
 *
 * The pattern of Lever and Boreham's xmalloc test: half the threads (at least one) only allocate,
 * the others only free, so every free is a free by a thread that did not allocate the block.
 * Producers allocate 64-byte blocks as fast as they can, stamp each with a tag, and hand them over
 * in batches of 256 through one shared queue of batches (a mutex and two condition variables; the
 * queue holds at most 64 batches, so memory stays bounded); consumers take batches, check every
 * stamp and free the blocks. The run lasts a fixed time; the result is blocks freed per second.
 * scored_s is the time that rate needs for 10 M blocks (lower is better), which the runner shows
 * in place of the wall time. */
#include "common.h"

#include <pthread.h>
#include <string.h>

#define BLOCK 64
#define BATCH 256
#define QUEUE_MAX 64

typedef struct batch {
  struct batch *next;
  uint64_t producer, first_seq;
  void *b[BATCH];
} batch;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_not_empty = PTHREAD_COND_INITIALIZER, g_not_full = PTHREAD_COND_INITIALIZER;
static batch *g_head, *g_tail;
static size_t g_len;
static int g_stop;

typedef struct worker {
  int id, producer;
  double end;
  uint64_t count;
  char pad[64];
} worker;

static void put(batch *b) {
  pthread_mutex_lock(&g_mu);
  while (g_len >= QUEUE_MAX && !g_stop) pthread_cond_wait(&g_not_full, &g_mu);
  b->next = NULL;
  if (g_tail) g_tail->next = b;
  else g_head = b;
  g_tail = b;
  g_len++;
  pthread_cond_signal(&g_not_empty);
  pthread_mutex_unlock(&g_mu);
}

/* NULL once the producers have stopped and the queue is empty. */
static batch *take(void) {
  pthread_mutex_lock(&g_mu);
  while (!g_head && !g_stop) pthread_cond_wait(&g_not_empty, &g_mu);
  batch *b = g_head;
  if (b) {
    g_head = b->next;
    if (!g_head) g_tail = NULL;
    g_len--;
    pthread_cond_signal(&g_not_full);
  }
  pthread_mutex_unlock(&g_mu);
  return b;
}

static uint64_t stamp(uint64_t producer, uint64_t seq) { return wl_mix((producer << 48) ^ seq); }

static void produce(worker *w) {
  uint64_t seq = 0;
  while (wl_now() < w->end) {
    batch *b = wl_malloc(sizeof *b);
    b->producer = (uint64_t)w->id;
    b->first_seq = seq;
    for (int i = 0; i < BATCH; i++, seq++) {
      uint64_t *p = wl_malloc(BLOCK);
      p[0] = stamp((uint64_t)w->id, seq);
      p[BLOCK / 8 - 1] = seq;
      b->b[i] = p;
    }
    put(b);
    w->count += BATCH;
  }
}

static void consume(worker *w) {
  batch *b;
  while ((b = take()) != NULL) {
    for (int i = 0; i < BATCH; i++) {
      uint64_t *p = b->b[i], seq = b->first_seq + (uint64_t)i;
      if (p[0] != stamp(b->producer, seq) || p[BLOCK / 8 - 1] != seq)
        wl_corrupt("block %p (producer %llu, number %llu) was written over", (void *)p,
                   (unsigned long long)b->producer, (unsigned long long)seq);
      free(p);
    }
    free(b);
    w->count += BATCH;
  }
}

static void *run(void *arg) {
  worker *w = arg;
  if (w->producer)
    produce(w);
  else
    consume(w);
  return NULL;
}

static void *stopper(void *arg) {
  double end = *(double *)arg;
  double left;
  while ((left = end - wl_now()) > 0) wl_sleep(left);
  pthread_mutex_lock(&g_mu);
  g_stop = 1;
  pthread_cond_broadcast(&g_not_empty);
  pthread_cond_broadcast(&g_not_full);
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "xmalloc", argc, argv, 0, 2);
  double seconds = a.scale < 0.05 ? 0.05 : a.scale; /* quick: 1 s, full: 5 s */
  worker *w = wl_calloc((size_t)a.threads, sizeof *w);
  int producers = a.threads / 2;
  double t0 = wl_now(), end = t0 + seconds;
  for (int i = 0; i < a.threads; i++) {
    w[i].id = i;
    w[i].producer = i < producers;
    w[i].end = end;
  }
  pthread_t st;
  if (pthread_create(&st, NULL, stopper, &end)) wl_die("pthread_create failed");
  wl_run_threads(a.threads, run, w, sizeof *w);
  pthread_join(st, NULL);
  double t = wl_now() - t0;
  /* Producers may have been blocked on a full queue at the stop: what they made is in the queue. */
  for (batch *b; (b = g_head) != NULL;) {
    g_head = b->next;
    for (int i = 0; i < BATCH; i++) free(b->b[i]);
    free(b);
  }
  uint64_t made = 0, freed = 0;
  for (int i = 0; i < a.threads; i++) *(w[i].producer ? &made : &freed) += w[i].count;
  double rate = (double)freed / t;
  wl_summary(&a, t, "producers=%d blocks_made=%llu blocks_freed=%llu frees_per_s=%.0f scored_s=%.4f",
             producers, (unsigned long long)made, (unsigned long long)freed, rate, rate > 0 ? 1e7 / rate : 0.0);
  free(w);
  return 0;
}
