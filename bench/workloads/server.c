/* server: a simulated message server in which blocks change threads.
 *
 * Each worker thread builds "requests": a message with a header of 64-512 bytes and 1-6 body
 * chunks of typical sizes, all filled with patterns. It hands each request to another worker's
 * inbox; the receiving worker checks every byte, frees the chunks and the message (so most frees
 * are of blocks another thread allocated) and keeps a "response" of a typical size in a cache of
 * 256 per-thread sessions, replacing (and freeing) an older one. Inboxes are bounded: a sender
 * whose target is full drains its own inbox while it waits. */
#include "common.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#define MAX_CHUNKS 6
#define SESSIONS 256
#define INBOX_CAP 512

typedef struct msg {
  struct msg *next;
  uint64_t id;
  uint32_t nchunks, hdr_len;
  unsigned char *chunk[MAX_CHUNKS];
  uint32_t len[MAX_CHUNKS];
  unsigned char hdr[];
} msg;

typedef struct inbox {
  pthread_mutex_t mu;
  msg *head;
  atomic_size_t count;
  char pad[64];
} inbox;

typedef struct session {
  unsigned char *p;
  size_t n;
  uint64_t tag;
} session;

typedef struct worker {
  int id;
  size_t requests;
  uint64_t sent, received, bytes;
  session sessions[SESSIONS];
  wl_rng r;
  char pad[64];
} worker;

static const wl_args *g_a;
static inbox *g_in;
static worker *g_w;
static atomic_int g_done;

static msg *make_request(worker *w, uint64_t id) {
  uint32_t hdr_len = (uint32_t)wl_between(&w->r, 64, 512);
  msg *m = wl_malloc(sizeof(msg) + hdr_len);
  m->next = NULL;
  m->id = id;
  m->hdr_len = hdr_len;
  m->nchunks = (uint32_t)wl_between(&w->r, 1, MAX_CHUNKS);
  wl_fill(m->hdr, hdr_len, id * 8);
  for (uint32_t i = 0; i < m->nchunks; i++) {
    size_t n = wl_typical_size(&w->r, 16384);
    m->chunk[i] = wl_malloc(n);
    m->len[i] = (uint32_t)n;
    wl_fill(m->chunk[i], n, id * 8 + 1 + i);
    w->bytes += n;
  }
  w->bytes += sizeof(msg) + hdr_len;
  return m;
}

static void handle(worker *w, msg *m) {
  wl_verify(m->hdr, m->hdr_len, m->id * 8, "server request header");
  for (uint32_t i = 0; i < m->nchunks; i++) {
    wl_verify(m->chunk[i], m->len[i], m->id * 8 + 1 + i, "server request chunk");
    free(m->chunk[i]);
  }
  session *s = &w->sessions[wl_below(&w->r, SESSIONS)];
  if (s->p) {
    wl_verify(s->p, s->n, s->tag, "server session response");
    free(s->p);
  }
  s->n = wl_typical_size(&w->r, 4096);
  s->p = wl_malloc(s->n);
  s->tag = m->id * 8 + 7;
  wl_fill(s->p, s->n, s->tag);
  free(m);
  w->received++;
}

/* Take and handle everything in w's inbox; returns how many messages there were. */
static size_t drain(worker *w) {
  inbox *in = &g_in[w->id];
  if (!atomic_load_explicit(&in->count, memory_order_relaxed)) return 0;
  pthread_mutex_lock(&in->mu);
  msg *m = in->head;
  in->head = NULL;
  atomic_store_explicit(&in->count, 0, memory_order_relaxed);
  pthread_mutex_unlock(&in->mu);
  size_t n = 0;
  while (m) {
    msg *next = m->next;
    handle(w, m);
    m = next;
    n++;
  }
  return n;
}

static void *run(void *arg) {
  worker *w = arg;
  int T = g_a->threads;
  for (size_t i = 0; i < w->requests; i++) {
    uint64_t id = ((uint64_t)w->id << 40) | i;
    msg *m = make_request(w, id);
    int t = T > 1 ? (int)((w->id + 1 + (int)wl_below(&w->r, (uint64_t)T - 1)) % T) : 0;
    inbox *in = &g_in[t];
    while (t != w->id && atomic_load_explicit(&in->count, memory_order_relaxed) >= INBOX_CAP)
      if (!drain(w)) sched_yield();
    pthread_mutex_lock(&in->mu);
    m->next = in->head;
    in->head = m;
    atomic_fetch_add_explicit(&in->count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&in->mu);
    w->sent++;
    if ((i & 7) == 7) drain(w);
  }
  atomic_fetch_add(&g_done, 1);
  while (atomic_load(&g_done) < T)
    if (!drain(w)) sched_yield();
  drain(w); /* nobody sends any more */
  for (int i = 0; i < SESSIONS; i++) {
    session *s = &w->sessions[i];
    if (!s->p) continue;
    wl_verify(s->p, s->n, s->tag, "server session at the end");
    free(s->p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  wl_args a;
  wl_parse(&a, "server", argc, argv, 0, 1);
  g_a = &a;
  g_in = wl_calloc((size_t)a.threads, sizeof *g_in);
  g_w = wl_calloc((size_t)a.threads, sizeof *g_w);
  size_t per = wl_scaled(&a, 500000.0 / a.threads, 500);
  for (int i = 0; i < a.threads; i++) {
    pthread_mutex_init(&g_in[i].mu, NULL);
    g_w[i].id = i;
    g_w[i].requests = per;
    wl_rng_seed(&g_w[i].r, a.seed, (uint64_t)i);
  }
  double t0 = wl_now();
  wl_run_threads(a.threads, run, g_w, sizeof *g_w);
  double t = wl_now() - t0;
  uint64_t sent = 0, received = 0, bytes = 0;
  for (int i = 0; i < a.threads; i++) {
    sent += g_w[i].sent;
    received += g_w[i].received;
    bytes += g_w[i].bytes;
  }
  if (sent != received)
    wl_corrupt("%llu requests sent but %llu received", (unsigned long long)sent,
               (unsigned long long)received);
  wl_summary(&a, t, "requests=%llu mib_allocated=%.0f", (unsigned long long)sent, wl_mib(bytes));
  for (int i = 0; i < a.threads; i++) pthread_mutex_destroy(&g_in[i].mu);
  free(g_in);
  free(g_w);
  return 0;
}
