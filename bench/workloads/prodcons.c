/* prodcons: producer/consumer pairs; every block is freed by a thread that did not allocate it.
 *
 * Threads are paired (an odd count is rounded up). In each pair the producer allocates messages of
 * typical sizes (mostly small, up to 4 KiB), writes a header (sequence number, size) and a
 * pattern, and passes them on in batches of 16 (the batch itself is allocated too) through a
 * bounded single-producer single-consumer ring; the consumer checks the sequence numbers and every
 * byte, then frees the messages and the batch. Batching and cached ring indices keep the cost of
 * the hand-over itself small, so the time goes to allocating, writing, checking and (remote)
 * freeing. */
#include "common.h"

#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#define RING 256 /* batches in flight per pair, a power of two */
#define BATCH 16 /* messages per batch */

typedef struct hdr {
  uint64_t seq;
  uint64_t n; /* total size including this header */
} hdr;

typedef struct batch {
  size_t n;
  unsigned char *m[BATCH];
} batch;

typedef struct pair {
  _Alignas(64) atomic_size_t tail; /* written by the producer */
  _Alignas(64) atomic_size_t head; /* written by the consumer */
  _Alignas(64) batch *slot[RING];
  int id;
  size_t messages;
  uint64_t bytes, waits;
} pair;

typedef struct role {
  pair *p;
  int producer;
  uint64_t seed;
} role;

static void push(pair *p, size_t *tail, size_t *cached_head, batch *b) {
  unsigned spins = 0;
  while (*tail - *cached_head == RING) {
    *cached_head = atomic_load_explicit(&p->head, memory_order_acquire);
    if (*tail - *cached_head == RING && ++spins > 64) sched_yield(), p->waits++;
  }
  p->slot[*tail % RING] = b;
  atomic_store_explicit(&p->tail, ++*tail, memory_order_release);
}

static void *produce(pair *p, uint64_t seed) {
  wl_rng r;
  wl_rng_seed(&r, seed, (uint64_t)p->id);
  size_t tail = 0, cached_head = 0;
  batch *b = NULL;
  for (size_t i = 0; i < p->messages; i++) {
    if (!b) {
      b = wl_malloc(sizeof *b);
      b->n = 0;
    }
    size_t n = sizeof(hdr) + wl_typical_size(&r, 4096);
    unsigned char *m = wl_malloc(n);
    hdr h = {i, n};
    memcpy(m, &h, sizeof h);
    wl_fill(m + sizeof h, n - sizeof h, ((uint64_t)p->id << 40) ^ i);
    p->bytes += n;
    b->m[b->n++] = m;
    if (b->n == BATCH || i + 1 == p->messages) {
      push(p, &tail, &cached_head, b);
      b = NULL;
    }
  }
  return NULL;
}

static void *consume(pair *p) {
  size_t head = 0, cached_tail = 0, i = 0;
  while (i < p->messages) {
    unsigned spins = 0;
    while (head == cached_tail) {
      cached_tail = atomic_load_explicit(&p->tail, memory_order_acquire);
      if (head == cached_tail && ++spins > 64) sched_yield();
    }
    batch *b = p->slot[head % RING];
    atomic_store_explicit(&p->head, ++head, memory_order_release);
    if (b->n < 1 || b->n > BATCH)
      wl_corrupt("pair %d: batch %p after message %zu holds %zu messages", p->id, (void *)b, i, b->n);
    for (size_t k = 0; k < b->n; k++, i++) {
      unsigned char *m = b->m[k];
      hdr h;
      memcpy(&h, m, sizeof h);
      if (h.seq != i || h.n < sizeof h || h.n > sizeof h + 4096)
        wl_corrupt("pair %d: message %zu has header seq=%llu size=%llu", p->id, i,
                   (unsigned long long)h.seq, (unsigned long long)h.n);
      wl_verify(m + sizeof h, h.n - sizeof h, ((uint64_t)p->id << 40) ^ i, "prodcons message");
      free(m);
    }
    free(b);
  }
  return NULL;
}

static void *run(void *arg) {
  role *r = arg;
  return r->producer ? produce(r->p, r->seed) : consume(r->p);
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "prodcons", argc, argv, 0, 2);
  int npairs = (a.threads + 1) / 2;
  a.threads = 2 * npairs;
  pair *p = aligned_alloc(64, sizeof(pair) * (size_t)npairs);
  role *roles = wl_calloc((size_t)a.threads, sizeof *roles);
  if (!p) wl_nomem(sizeof(pair) * (size_t)npairs);
  memset(p, 0, sizeof(pair) * (size_t)npairs);
  size_t per = wl_scaled(&a, 2.0e6 / npairs, 1000);
  for (int i = 0; i < npairs; i++) {
    p[i].id = i;
    p[i].messages = per;
    roles[2 * i] = (role){.p = &p[i], .producer = 1, .seed = a.seed};
    roles[2 * i + 1] = (role){.p = &p[i], .producer = 0, .seed = a.seed};
  }
  double t0 = wl_now();
  wl_run_threads(a.threads, run, roles, sizeof *roles);
  double t = wl_now() - t0;
  uint64_t bytes = 0, waits = 0;
  for (int i = 0; i < npairs; i++) bytes += p[i].bytes, waits += p[i].waits;
  wl_summary(&a, t, "messages=%zu mib_allocated=%.0f producer_waits=%llu", per * (size_t)npairs,
             wl_mib(bytes), (unsigned long long)waits);
  free(roles);
  free(p);
  return 0;
}
