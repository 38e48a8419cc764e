/* The allocator's own invariants (docs/design.md), checked by _ra_heap_validate after random
 * sequences of every kind of call, including frees from another thread and a thread's exit. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "internal.h"
#if RA_HAS_FORK
#include <sys/wait.h>
#include <unistd.h>
#endif

enum { SLOTS = 4096 };
static void *slot[SLOTS];
static size_t slot_size[SLOTS];

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static size_t random_size(void) {
  uint64_t r = rnd() % 1000;
  if (r < 700) return rnd() % 256;
  if (r < 950) return rnd() % 16384;
  if (r < 995) return rnd() % 300000;
  return 2500000 + rnd() % 3000000; /* huge */
}

static void fill(void *p, size_t n, size_t i) { memset(p, (int)(i * 7 + 1) & 0xff, n < 64 ? n : 64); }
static void check(const void *p, size_t n, size_t i) {
  const unsigned char *b = p;
  for (size_t k = 0; k < (n < 64 ? n : 64); k++) assert_int_equal(b[k], (i * 7 + 1) & 0xff);
}

static void random_step(size_t i) {
  if (slot[i] != NULL) {
    check(slot[i], slot_size[i], i);
    if (rnd() % 4 == 0) {
      size_t n = random_size();
      void *q = ra_realloc(slot[i], n);
      assert_non_null(q);
      size_t keep = n < slot_size[i] ? n : slot_size[i];
      check(q, keep, i);
      slot[i] = q;
      slot_size[i] = n;
      fill(q, n, i);
      return;
    }
    ra_free(slot[i]);
    slot[i] = NULL;
    return;
  }
  size_t n = random_size();
  switch (rnd() % 4) {
    case 0: slot[i] = ra_calloc(1, n); break;
    case 1: slot[i] = ra_aligned_alloc((size_t)1 << (4 + rnd() % 10), n); break;
    default: slot[i] = ra_malloc(n); break;
  }
  assert_non_null(slot[i]);
  slot_size[i] = n;
  fill(slot[i], n, i);
}

static void test_random_sequence_keeps_invariants(void **state) {
  (void)state;
  for (int round = 0; round < 40; round++) {
    for (int k = 0; k < 2000; k++) random_step(rnd() % SLOTS);
    assert_true(_ra_heap_validate());
  }
  for (size_t i = 0; i < SLOTS; i++) {
    ra_free(slot[i]);
    slot[i] = NULL;
  }
  assert_true(_ra_heap_validate());
}

static void *free_half(void *arg) {
  (void)arg;
  for (size_t i = 0; i < SLOTS; i += 2) {
    if (slot[i]) check(slot[i], slot_size[i], i);
    ra_free(slot[i]);
    slot[i] = NULL;
  }
  return NULL;
}

static void test_remote_frees_are_collected(void **state) {
  (void)state;
  for (size_t i = 0; i < SLOTS; i++) {
    slot_size[i] = 16 + rnd() % 2000;
    slot[i] = ra_malloc(slot_size[i]);
    fill(slot[i], slot_size[i], i);
  }
  pthread_t t;
  pthread_create(&t, NULL, free_half, NULL);
  pthread_join(t, NULL);
  /* Allocating again collects the remote frees into the owner's lists. */
  for (int k = 0; k < 20000; k++) random_step(1 + 2 * (rnd() % (SLOTS / 2)));
  assert_true(_ra_heap_validate());
  for (size_t i = 0; i < SLOTS; i++) {
    ra_free(slot[i]);
    slot[i] = NULL;
  }
  assert_true(_ra_heap_validate());
  ra_stats_t st;
  ra_stats_get(&st);
  assert_int_equal(st.live_blocks, 0);
}

/* The blocks of page `pg` on its own free list, walked to its end; *end gets the end. */
static size_t own_list_length(const ra_page_t *pg, const ra_block_t **end) {
  size_t n = 0;
  const ra_block_t *b = pg->free;
  for (; !_ra_list_end(b); b = _ra_block_next(b)) {
    assert_true(n <= pg->capacity);
    n++;
  }
  *end = b;
  return n;
}

/* A page allocated to its end holds its chunk's base in `free` (the marker ending its list, never
 * a block); the owner's frees then refill it and malloc pops it to the end again, round after
 * round. Every block handed out is one just freed into the page (the owner's free brings a full
 * page to the front of its queue), none twice, no live block is overwritten, and the invariants
 * hold (and, with RAMALLOC_DEBUG >= 2, were checked at every change). */
static void test_page_popped_to_end_and_refilled(void **state) {
  (void)state;
  enum { SZ = 200, MAX = 1024, OTHERS = 4096 };
  static void *mine[MAX], *others[OTHERS]; /* mine[i]: block i of the page */
  static bool out[MAX];
  size_t nothers = 0;
  void *first = ra_malloc(SZ);
  assert_non_null(first);
  ra_chunk_t *c = _ra_chunk_of(first);
  ra_page_t *pg = _ra_page_of(c, first);
  uint8_t *start = _ra_page_start(c, pg);
  size_t n = pg->reserved, bs = pg->block_size;
  assert_true(n <= MAX);
  for (void *p = first; p != NULL; p = pg->used < n ? ra_malloc(SZ) : NULL) {
    if (_ra_chunk_of(p) == c && _ra_page_of(c, p) == pg) {
      size_t i = (size_t)((uint8_t *)p - start) / bs;
      assert_null(mine[i]);
      mine[i] = p;
      fill(p, SZ, i);
    } else {
      assert_true(nothers < OTHERS);
      others[nothers++] = p;
    }
  }
  for (size_t i = 0; i < n; i++) assert_non_null(mine[i]);
  assert_ptr_equal(pg->free, (ra_block_t *)c); /* popped to the end of a carved list */
  assert_true(_ra_heap_validate());

  for (int round = 0; round < 300; round++) {
    /* One block (as in the malloc/free pair loop), a few, or all of them. */
    size_t k = round % 3 == 0 ? 1 : round % 3 == 1 ? 1 + rnd() % 8 : n;
    for (size_t j = 0; j < k; j++) {
      size_t i = k == n ? j : rnd() % n;
      while (out[i]) i = (i + 1) % n;
      out[i] = true;
      check(mine[i], SZ, i);
      ra_free(mine[i]);
    }
    const ra_block_t *end;
    assert_int_equal(own_list_length(pg, &end), k);
    assert_ptr_equal(end, (const ra_block_t *)c);
    assert_int_equal(pg->used, n - k);
    if (round % 10 == 0) assert_true(_ra_heap_validate());
    for (size_t j = 0; j < k; j++) {
      uint8_t *p = ra_malloc(SZ);
      assert_non_null(p);
      assert_true(p >= start && p < start + n * bs && (size_t)(p - start) % bs == 0);
      size_t i = (size_t)(p - start) / bs;
      assert_true(out[i]); /* freed this round, and not handed out again yet */
      out[i] = false;
      fill(p, SZ, i);
    }
    assert_ptr_equal(pg->free, (ra_block_t *)c);
    assert_int_equal(pg->used, n);
    if (round % 10 == 0) assert_true(_ra_heap_validate());
  }
  for (size_t i = 0; i < n; i++) check(mine[i], SZ, i);
  assert_true(_ra_heap_validate());
  for (size_t i = 0; i < n; i++) ra_free(mine[i]);
  for (size_t i = 0; i < nothers; i++) ra_free(others[i]);
  assert_true(_ra_heap_validate());
}

static void *allocate_and_exit(void *arg) {
  (void)arg;
  for (size_t i = 0; i < SLOTS; i++) {
    slot_size[i] = 16 + rnd() % 5000;
    slot[i] = ra_malloc(slot_size[i]);
    fill(slot[i], slot_size[i], i);
  }
  return NULL;
}

static void test_adopted_chunks_keep_invariants(void **state) {
  (void)state;
  pthread_t t;
  pthread_create(&t, NULL, allocate_and_exit, NULL);
  pthread_join(t, NULL);
  /* The exited thread's chunks are abandoned; freeing into them adopts them here. */
  for (size_t i = 0; i < SLOTS; i += 3) {
    check(slot[i], slot_size[i], i);
    ra_free(slot[i]);
    slot[i] = NULL;
  }
  assert_true(_ra_heap_validate());
  for (int k = 0; k < 20000; k++) random_step(rnd() % SLOTS);
  assert_true(_ra_heap_validate());
  for (size_t i = 0; i < SLOTS; i++) {
    ra_free(slot[i]);
    slot[i] = NULL;
  }
  assert_true(_ra_heap_validate());
}

/* ---- Heap tags in the chunk map (free's fast path: "is this my heap's chunk" in one compare) ---- */

enum { TAGGED = 1000, TAGGED_SIZE = 48 };

static uint16_t map_entry(const void *p) {
  return atomic_load_explicit(&_ra_chunk_map[(uintptr_t)p >> RA_CHUNK_SHIFT], memory_order_relaxed);
}

typedef struct tag_run_s {
  void **blocks;        /* TAGGED blocks: made by `make`, freed by `free_them` */
  bool make, free_them;
  ra_heap_t *heap;      /* the worker's heap and tag, and the entry of blocks[0]'s chunk */
  uint16_t tag, entry;
  bool valid, reused, intact;
} tag_run_t;

static void *tag_worker(void *arg) {
  tag_run_t *r = arg;
  if (r->make) {
    for (size_t i = 0; i < TAGGED; i++) {
      r->blocks[i] = ra_malloc(TAGGED_SIZE);
      memset(r->blocks[i], (int)(i & 0xff), TAGGED_SIZE);
    }
  } else {
    ra_free(ra_malloc(TAGGED_SIZE)); /* a heap: adopts what waits for an owner */
  }
  r->heap = _ra_heap_current();
  r->tag = _ra_heap_tag_current();
  r->entry = map_entry(r->blocks[0]);
  if (r->free_them) {
    r->intact = true;
    for (size_t i = 0; i < TAGGED; i++) {
      const unsigned char *b = r->blocks[i];
      for (size_t k = sizeof(void *) * 2; k < TAGGED_SIZE; k++) r->intact &= b[k] == (i & 0xff);
    }
    for (size_t i = 0; i < TAGGED; i++) ra_free(r->blocks[i]);
    void *again = ra_malloc(TAGGED_SIZE); /* the block freed last, from its page's free list */
    r->reused = again == r->blocks[TAGGED - 1];
    ra_free(again);
    r->valid = _ra_heap_validate();
  }
  return NULL;
}

/* Abandon every parked heap (a purge pass under way makes a try fail: try again). */
static void reap_all(void) {
  while (_ra_heap_reap_parked(_ra_now_ms(), 0, true)) sched_yield();
}

static void run_tag_worker(tag_run_t *r) {
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, tag_worker, r), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
}

/* A thread's blocks, its heap parked at its exit and taken over whole by the next thread: the tag
 * comes with the heap, and the new thread's frees of them are its own (the chunk map entry is its
 * tag), each block back on its page. The purge passes, which abandon parked heaps, are held off by
 * the walk lock meanwhile. */
static void test_parked_heap_taken_over_keeps_its_tag(void **state) {
  (void)state;
  void *blocks[TAGGED];
  ra_free(ra_malloc(1)); /* this thread has a heap: the worker's is parked at its exit */
  _ra_heap_walk_lock();
  tag_run_t a = {.blocks = blocks, .make = true};
  run_tag_worker(&a);
  tag_run_t b = {.blocks = blocks, .free_them = true};
  run_tag_worker(&b);
  _ra_heap_walk_unlock();
  assert_true(a.tag >= RA_TAG_FIRST && a.tag <= RA_TAG_LAST);
  assert_int_equal(a.entry, a.tag);
  assert_ptr_equal(b.heap, a.heap);
  assert_int_equal(b.tag, a.tag);
  assert_int_equal(b.entry, a.tag);
  assert_true(b.intact);
  assert_true(b.reused);
  assert_true(b.valid);
}

/* A thread's blocks, its heap abandoned after its exit (its tag given back) and the chunk adopted by
 * a new thread (which may be given the same tag): the chunk's entry is the adopter's tag, and the
 * adopter's frees put each block back on its page. */
static void test_adopted_chunk_entry_is_the_adopters_tag(void **state) {
  (void)state;
  void *blocks[TAGGED];
  ra_free(ra_malloc(1));
  tag_run_t a = {.blocks = blocks, .make = true};
  run_tag_worker(&a);
  reap_all(); /* the parked heap abandoned: its chunks wait for an owner */
  assert_int_equal(map_entry(blocks[0]), RA_MAP_UNOWNED);
  tag_run_t b = {.blocks = blocks, .free_them = true};
  run_tag_worker(&b);
  assert_true(b.tag >= RA_TAG_FIRST && b.tag <= RA_TAG_LAST);
  assert_int_equal(b.entry, b.tag);
  assert_true(b.intact);
  assert_true(b.reused);
  assert_true(b.valid);
  assert_true(_ra_heap_validate());
}

/* Heaps that find no tag left (the tag space made small here): their chunks' entries say "no
 * tagged owner", their threads' frees take the generic path, and all of it stays sound: frees of
 * their own blocks and each other's, in threads running at once, one of them tagged. */
typedef struct few_tags_s {
  void *mine[TAGGED];
  struct few_tags_s *peer;
  _Atomic(int) *ready;
  uint16_t tag;
  bool entries_ok, intact, valid;
} few_tags_t;

static void *few_tags_worker(void *arg) {
  few_tags_t *w = arg;
  for (size_t i = 0; i < TAGGED; i++) {
    w->mine[i] = ra_malloc(16 + i % 200);
    memset(w->mine[i], (int)(i & 0xff), 16);
  }
  w->tag = _ra_heap_tag_current();
  uint16_t want = w->tag == RA_TAG_NONE ? RA_MAP_UNOWNED : w->tag;
  w->entries_ok = true;
  for (size_t i = 0; i < TAGGED; i++) w->entries_ok &= map_entry(w->mine[i]) == want;
  /* Half of mine freed here (odd), then half of the peer's (even) once it has made them. */
  for (size_t i = 1; i < TAGGED; i += 2) ra_free(w->mine[i]);
  atomic_fetch_add(w->ready, 1);
  while (atomic_load(w->ready) < 4) sched_yield();
  w->intact = true;
  for (size_t i = 0; i < TAGGED; i += 2) {
    const unsigned char *b = w->peer->mine[i];
    for (size_t k = sizeof(void *) * 2; k < 16; k++) w->intact &= b[k] == (i & 0xff);
    ra_free(w->peer->mine[i]);
  }
  w->valid = _ra_heap_validate();
  return NULL;
}

static void test_untagged_heaps_free_through_the_generic_path(void **state) {
  (void)state;
  reap_all(); /* parked heaps (and their tags) out of the way */
  size_t saved = _ra_heap_tag_last;
  enum { N = 4 };
  static few_tags_t w[N];
  for (int round = 0; round < 2; round++) {
    /* Round 0: no tag at all; round 1: tags up to the first one that is free now, so at most one
     * of the threads has a tag. */
    _ra_heap_tag_last = round == 0 ? RA_TAG_FIRST - 1 : RA_TAG_LAST;
    if (round == 1) {
      void *any[1] = {w}; /* not a chunk: only the probe's tag is looked at */
      tag_run_t probe = {.blocks = any};
      run_tag_worker(&probe);
      reap_all();
      assert_true(probe.tag >= RA_TAG_FIRST && probe.tag <= RA_TAG_LAST);
      _ra_heap_tag_last = probe.tag; /* the lowest free tag (a few heaps live: all in one word) */
    }
    _Atomic(int) ready = 0;
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
      memset(&w[i], 0, sizeof w[i]);
      w[i].peer = &w[(i + 1) % N];
      w[i].ready = &ready;
    }
    for (int i = 0; i < N; i++) assert_int_equal(pthread_create(&t[i], NULL, few_tags_worker, &w[i]), 0);
    for (int i = 0; i < N; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
    int tagged = 0;
    for (int i = 0; i < N; i++) {
      assert_true(w[i].entries_ok);
      assert_true(w[i].intact);
      assert_true(w[i].valid);
      tagged += w[i].tag != RA_TAG_NONE;
    }
    assert_true(tagged <= round);
    reap_all();
  }
  _ra_heap_tag_last = saved;
  assert_true(_ra_heap_validate());
}

#if RA_HAS_FORK
/* fork(): in the child only the forking thread lives on. Its tag comes with it (its chunks' entries
 * still hold it, so its frees stay local), another thread's chunks keep their (now orphan) heap's
 * tag, which no thread of the child has: frees into them take the generic path. */
typedef struct fork_peer_s {
  void *blocks[TAGGED];
  uint16_t tag;
  _Atomic(int) state; /* 1: blocks made; 2: the fork is done */
} fork_peer_t;

static void *fork_peer(void *arg) {
  fork_peer_t *f = arg;
  for (size_t i = 0; i < TAGGED; i++) f->blocks[i] = ra_malloc(TAGGED_SIZE);
  f->tag = _ra_heap_tag_current();
  atomic_store(&f->state, 1);
  while (atomic_load(&f->state) != 2) sched_yield();
  for (size_t i = 0; i < TAGGED; i++) ra_free(f->blocks[i]);
  return NULL;
}

static int fork_child_checks(fork_peer_t *f, void **mine, uint16_t tag) {
  if (_ra_heap_tag_current() != tag) return 2;
  if (map_entry(mine[0]) != tag || map_entry(f->blocks[0]) != f->tag) return 3;
  for (size_t i = 0; i < TAGGED; i++) ra_free(mine[i]);
  for (size_t i = 0; i < TAGGED; i += 2) ra_free(f->blocks[i]); /* into the orphan's pages */
  void *p = ra_malloc(TAGGED_SIZE);
  if (p != mine[TAGGED - 1]) return 4; /* the block freed last, back on its page */
  ra_free(p);
  return _ra_heap_validate() ? 0 : 5;
}

static void test_fork_child_keeps_the_tags(void **state) {
  (void)state;
#if defined(__SANITIZE_THREAD__)
  /* The child's frees start the purger thread again, and a child that makes threads after a fork
   * from a threaded process is outside what ThreadSanitizer supports (tests/test_fork.c). */
  skip();
#endif
  static fork_peer_t f;
  void *mine[TAGGED];
  for (size_t i = 0; i < TAGGED; i++) mine[i] = ra_malloc(TAGGED_SIZE);
  uint16_t tag = _ra_heap_tag_current();
  assert_true(tag >= RA_TAG_FIRST && tag <= RA_TAG_LAST);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fork_peer, &f), 0);
  while (atomic_load(&f.state) != 1) sched_yield();
  assert_true(f.tag >= RA_TAG_FIRST && f.tag <= RA_TAG_LAST && f.tag != tag);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(fork_child_checks(&f, mine, tag));
  atomic_store(&f.state, 2);
  assert_int_equal(pthread_join(t, NULL), 0);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  for (size_t i = 0; i < TAGGED; i++) ra_free(mine[i]);
  assert_true(_ra_heap_validate());
}
#endif

/* _ra_slice_runs (one OS call per run of slices): every set bit in exactly one call, each run
 * maximal, lowest first; a nonzero return stops the walk and comes back. */
typedef struct runs_seen_s {
  uint64_t mask, seen;
  size_t calls, last_end, stop_at;
} runs_seen_t;

static int note_run(ra_chunk_t *c, size_t first, size_t count, void *arg) {
  runs_seen_t *r = arg;
  assert_null(c);
  assert_true(count >= 1 && first + count <= RA_SLICES);
  assert_true(r->calls == 0 || first > r->last_end); /* ascending, with a gap: maximal runs */
  uint64_t run = (count == 64 ? ~0ULL : (1ULL << count) - 1) << first;
  assert_true((r->mask & run) == run);
  if (first > 0) assert_false((r->mask >> (first - 1)) & 1);
  if (first + count < RA_SLICES) assert_false((r->mask >> (first + count)) & 1);
  r->seen |= run;
  r->last_end = first + count;
  return ++r->calls == r->stop_at ? 5 : 0;
}

static void test_slice_runs(void **state) {
  (void)state;
  const uint64_t fixed[] = {0, ~0ULL, 1, 1ULL << 63, 0x5555555555555555ULL, 0x8000000000000001ULL,
                            0x7FFFFFFFFFFFFFFEULL, 0xFFFFFFFF00000000ULL, 0x00000000FFFFFFFFULL};
  for (size_t k = 0; k < sizeof fixed / sizeof fixed[0] + 10000; k++) {
    uint64_t m = k < sizeof fixed / sizeof fixed[0] ? fixed[k] : rnd() & rnd();
    runs_seen_t r = {m, 0, 0, 0, 0};
    assert_int_equal(_ra_slice_runs(NULL, m, note_run, &r), 0);
    assert_true(r.seen == m);
    if (r.calls >= 2) { /* stopped by the second run */
      runs_seen_t s = {m, 0, 0, 0, 2};
      assert_int_equal(_ra_slice_runs(NULL, m, note_run, &s), 5);
      assert_int_equal(s.calls, 2);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_slice_runs),
    cmocka_unit_test(test_parked_heap_taken_over_keeps_its_tag),
    cmocka_unit_test(test_adopted_chunk_entry_is_the_adopters_tag),
    cmocka_unit_test(test_untagged_heaps_free_through_the_generic_path),
#if RA_HAS_FORK
    cmocka_unit_test(test_fork_child_keeps_the_tags),
#endif
    cmocka_unit_test(test_random_sequence_keeps_invariants),
    cmocka_unit_test(test_remote_frees_are_collected),
    cmocka_unit_test(test_page_popped_to_end_and_refilled),
    cmocka_unit_test(test_adopted_chunks_keep_invariants),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
