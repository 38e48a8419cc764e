/* batches: rpmalloc-style batches with cross-thread frees.
 *
 * The pattern of rpmalloc's benchmark: each thread, round after round, allocates a batch of 4096
 * blocks of random sizes (log-uniform 16-1024 bytes, so small sizes dominate), frees three in
 * four of them itself (in an order that walks the batch with a stride), and hands the rest to the
 * next thread, which frees them in its next round. Hand-over goes through a one-slot mailbox per
 * thread (a mutex and a condition variable; a thread waits until its neighbour took the previous
 * hand-over). Every block carries a tag in its first and last 8 bytes, checked before it is freed. */
#include "common.h"

#include <pthread.h>
#include <string.h>

#define BATCH 4096
#define STRIDE 17 /* coprime with BATCH */
#define HANDED (BATCH / 4)

typedef struct parcel {
  unsigned char *p[HANDED];
  uint32_t n[HANDED];
  uint64_t tag[HANDED];
} parcel;

typedef struct mailbox {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  parcel *full; /* waiting to be taken, or NULL */
  char pad[64];
} mailbox;

typedef struct worker {
  const wl_args *a;
  int id;
  size_t rounds;
  mailbox *in, *out;
  uint64_t remote_frees;
  char pad[64];
} worker;

static void stamp(unsigned char *p, size_t n, uint64_t tag) {
  memcpy(p, &tag, 8);
  memcpy(p + n - 8, &tag, 8);
}

static void check(const unsigned char *p, size_t n, uint64_t tag) {
  uint64_t a, b;
  memcpy(&a, p, 8);
  memcpy(&b, p + n - 8, 8);
  if (a != tag || b != tag) wl_corrupt("block %p of %zu bytes (tag %#llx) was written over", (void *)p, n,
                                       (unsigned long long)tag);
}

static void send(mailbox *m, parcel *x) {
  pthread_mutex_lock(&m->mu);
  while (m->full) pthread_cond_wait(&m->cv, &m->mu);
  m->full = x;
  pthread_cond_broadcast(&m->cv);
  pthread_mutex_unlock(&m->mu);
}

static parcel *receive(mailbox *m) {
  pthread_mutex_lock(&m->mu);
  while (!m->full) pthread_cond_wait(&m->cv, &m->mu);
  parcel *x = m->full;
  m->full = NULL;
  pthread_cond_broadcast(&m->cv);
  pthread_mutex_unlock(&m->mu);
  return x;
}

static void free_parcel(parcel *x) {
  for (size_t i = 0; i < HANDED; i++) {
    check(x->p[i], x->n[i], x->tag[i]);
    free(x->p[i]);
  }
  free(x);
}

static void *run(void *arg) {
  worker *w = arg;
  wl_rng r;
  wl_rng_seed(&r, w->a->seed, (uint64_t)w->id);
  unsigned char **p = wl_malloc(BATCH * sizeof *p);
  uint32_t *n = wl_malloc(BATCH * sizeof *n);
  uint64_t next = ((uint64_t)w->id << 48) + 1;
  for (size_t round = 0; round < w->rounds; round++) {
    for (size_t i = 0; i < BATCH; i++) {
      n[i] = (uint32_t)wl_log_uniform(&r, 16, 1024);
      p[i] = wl_malloc(n[i]);
      stamp(p[i], n[i], next + i);
    }
    parcel *x = wl_malloc(sizeof *x);
    size_t h = 0;
    for (size_t j = 0, i = 0; j < BATCH; j++, i = (i + STRIDE) % BATCH) {
      if (i % 4 == 3) {
        x->p[h] = p[i], x->n[h] = n[i], x->tag[h] = next + i;
        h++;
        continue;
      }
      check(p[i], n[i], next + i);
      free(p[i]);
    }
    next += BATCH;
    if (round > 0) {
      free_parcel(receive(w->in));
      w->remote_frees += HANDED;
    }
    send(w->out, x);
  }
  free_parcel(receive(w->in)); /* the last round's hand-over */
  w->remote_frees += HANDED;
  free(p);
  free(n);
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "batches", argc, argv, 0, 1);
  worker *w = wl_calloc((size_t)a.threads, sizeof *w);
  mailbox *m = wl_calloc((size_t)a.threads, sizeof *m);
  size_t rounds = wl_scaled(&a, 2500.0 / a.threads, 4);
  for (int i = 0; i < a.threads; i++) {
    pthread_mutex_init(&m[i].mu, NULL);
    pthread_cond_init(&m[i].cv, NULL);
  }
  for (int i = 0; i < a.threads; i++)
    w[i] = (worker){.a = &a, .id = i, .rounds = rounds, .in = &m[i], .out = &m[(i + 1) % a.threads]};
  double t0 = wl_now();
  wl_run_threads(a.threads, run, w, sizeof *w);
  double t = wl_now() - t0;
  uint64_t remote = 0;
  for (int i = 0; i < a.threads; i++) remote += w[i].remote_frees;
  wl_summary(&a, t, "rounds=%zu blocks=%zu remote_frees=%llu", rounds, rounds * BATCH * (size_t)a.threads,
             (unsigned long long)remote);
  free(m);
  free(w);
  return 0;
}
