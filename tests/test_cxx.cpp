// operator new and delete on ramalloc (allocator/override_cxx.c), run preloaded into programs built
// by g++ and clang++ and linked with libramalloc.a / libramalloc.so (tests/CMakeLists.txt builds
// the variants and says how each is linked):
//   - every standard form hands out ramalloc's blocks (aligned where asked) and takes them back;
//   - sized and aligned sized delete accept every size that maps to the block (each class boundary,
//     large, huge, aligned placements);
//   - operator new calls the new handler until it succeeds or there is none, then throws
//     std::bad_alloc; the nothrow forms return NULL; a handler that frees memory makes the retry
//     succeed (a child run with RAMALLOC_LIMIT);
//   - a sized delete with a size that cannot belong to the block is reported by name: each misuse
//     runs in a child (this program re-executed), which first prints the exact line it expects on
//     stderr; the parent checks stderr and SIGABRT (RAMALLOC_ON_ERROR=warn: the line, then a normal
//     exit with the block left live).
// Prints "cxx-ok" at the end; any failure prints "FAIL: ..." and exits 1.
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

extern "C" bool ra_owns(const void *p) __attribute__((weak));
extern "C" size_t ra_usable_size(const void *p) __attribute__((weak));

#define CHECK(x)                                                                 \
  do {                                                                           \
    if (!(x)) {                                                                  \
      std::fprintf(stdout, "FAIL: %s:%d: %s\n", __FILE__, __LINE__, #x);         \
      std::fflush(stdout);                                                       \
      std::_Exit(1);                                                             \
    }                                                                            \
  } while (0)

static const char *self;
static const size_t impossible = (size_t)1 << 62; // no address space holds it: new fails at once

// The same pointer, hidden from the compiler's use-after-free analysis (a refused delete leaves the
// block live).
static char *opaque(void *p) {
  __asm__ volatile("" : "+r"(p));
  return static_cast<char *>(p);
}

static bool ours(const void *p) { return ra_owns != nullptr && ra_owns(p); }

static void touch(void *p, size_t n) {
  if (n > 0) {
    static_cast<volatile unsigned char *>(p)[0] = 1;
    static_cast<volatile unsigned char *>(p)[n - 1] = 2;
  }
}

// Sizes around every class boundary of ramalloc (16..128 by 16, then 8 classes per power of two),
// up to 3 MiB (huge), plus 0.
static std::vector<size_t> boundary_sizes() {
  std::vector<size_t> v = {0, 1};
  for (size_t b = 16; b <= ((size_t)3 << 20); b += b <= 128 ? 16 : (size_t)1 << (63 - __builtin_clzll(b - 1) - 3)) {
    v.push_back(b - 1);
    v.push_back(b);
    v.push_back(b + 1);
  }
  return v;
}

static void test_forms() {
  const std::nothrow_t &nt = std::nothrow;
  for (size_t n : boundary_sizes()) {
    void *p = ::operator new(n);
    CHECK(ours(p) && ((uintptr_t)p & 15) == 0);
    touch(p, n);
    ::operator delete(p, n);
    p = ::operator new[](n);
    CHECK(ours(p));
    touch(p, n);
    ::operator delete[](p, n);
    p = ::operator new(n, nt);
    CHECK(ours(p));
    ::operator delete(p);
    p = ::operator new[](n, nt);
    CHECK(ours(p));
    ::operator delete[](p);
    p = ::operator new(n);
    ::operator delete(p, nt);
    p = ::operator new[](n);
    ::operator delete[](p, nt);
  }
  const size_t aligns[] = {1, 8, 16, 32, 64, 128, 256, 4096, 65536, (size_t)1 << 20, (size_t)8 << 20};
  const size_t sizes[] = {0, 1, 24, 100, 1000, 4096, 5000, 70000, 300000, (size_t)2 << 20, (size_t)5 << 20};
  for (size_t a : aligns) {
    std::align_val_t al{a};
    for (size_t n : sizes) {
      void *p = ::operator new(n, al);
      CHECK(ours(p) && ((uintptr_t)p & (a - 1)) == 0);
      touch(p, n);
      ::operator delete(p, n, al);
      p = ::operator new[](n, al);
      CHECK(ours(p) && ((uintptr_t)p & (a - 1)) == 0);
      touch(p, n);
      ::operator delete[](p, n, al);
      p = ::operator new(n, al, nt);
      CHECK(ours(p) && ((uintptr_t)p & (a - 1)) == 0);
      ::operator delete(p, al);
      p = ::operator new[](n, al, nt);
      CHECK(ours(p) && ((uintptr_t)p & (a - 1)) == 0);
      ::operator delete[](p, al);
      p = ::operator new(n, al);
      ::operator delete(p, al, nt);
      p = ::operator new[](n, al);
      ::operator delete[](p, al, nt);
    }
  }
  // new-expressions: the compiler picks the forms (sized delete with g++ -std=c++17 and with
  // clang++ -fsized-deallocation; over-aligned types take the align_val_t forms)
  struct alignas(256) Wide {
    unsigned char b[300];
  };
  struct Obj {
    std::string s = std::string(200, 'x');
    virtual ~Obj() = default;
  };
  struct Derived : Obj {
    char more[5000];
  };
  for (int i = 0; i < 100; i++) {
    Wide *w = new Wide;
    CHECK(ours(w) && ((uintptr_t)w & 255) == 0);
    Wide *ws = new Wide[7];
    CHECK(((uintptr_t)ws & 255) == 0);
    Obj *o = new Derived; // deleted through the base: the virtual destructor passes the right size
    Obj *oa = new Obj[5];
    std::vector<std::string> v(50, std::string(40, 'y'));
    delete w;
    delete[] ws;
    delete o;
    delete[] oa;
  }
}

static int handler_calls;
static void counting_handler() {
  if (++handler_calls == 3) std::set_new_handler(nullptr);
}

static void test_new_handler() {
  // no handler: bad_alloc, nothrow NULL
  std::set_new_handler(nullptr);
  bool thrown = false;
  try {
    void *p = ::operator new(impossible);
    ::operator delete(p);
  } catch (const std::bad_alloc &) {
    thrown = true;
  }
  CHECK(thrown);
  CHECK(::operator new(impossible, std::nothrow) == nullptr);
  CHECK(::operator new[](impossible, std::nothrow) == nullptr);
  CHECK(::operator new(impossible, std::align_val_t{64}, std::nothrow) == nullptr);
  thrown = false;
  try {
    (void)::operator new[](impossible, std::align_val_t{4096});
  } catch (const std::bad_alloc &) {
    thrown = true;
  }
  CHECK(thrown);
  // a handler is called until it uninstalls itself, then bad_alloc / NULL
  const int forms = 6;
  for (int f = 0; f < forms; f++) {
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    thrown = false;
    void *p = reinterpret_cast<void *>(1);
    try {
      switch (f) {
        case 0: p = ::operator new(impossible); break;
        case 1: p = ::operator new[](impossible); break;
        case 2: p = ::operator new(impossible, std::align_val_t{128}); break;
        case 3: p = ::operator new(impossible, std::nothrow); break;
        case 4: p = ::operator new[](impossible, std::nothrow); break;
        case 5: p = ::operator new[](impossible, std::align_val_t{128}, std::nothrow); break;
      }
    } catch (const std::bad_alloc &) {
      thrown = true;
    }
    CHECK(handler_calls == 3);
    if (f < 3) CHECK(thrown);
    else CHECK(!thrown && p == nullptr);
  }
  std::set_new_handler(nullptr);
  // an alignment that is not a power of two: bad_alloc at once, nothrow NULL
  volatile size_t not_pow2 = 48;
  thrown = false;
  try {
    (void)::operator new(100, std::align_val_t{not_pow2});
  } catch (const std::bad_alloc &) {
    thrown = true;
  }
  CHECK(thrown);
  CHECK(::operator new(100, std::align_val_t{not_pow2}, std::nothrow) == nullptr);
}

// ---- children -----------------------------------------------------------------------------------

static void expect(const char *fmt, const void *p, size_t n, size_t a = 0) {
  char line[256];
  std::snprintf(line, sizeof line, fmt, p, n, a);
  std::printf("EXPECT %s\n", line);
  std::fflush(stdout);
}

static char *reserve;
static void freeing_handler() {
  handler_calls++;
  delete[] reserve;
  reserve = nullptr;
}

static int run_child(const std::string &name) {
  if (name == "handler_frees") { // RAMALLOC_LIMIT=64M: the second 40 MiB fits once the first is gone
    reserve = new char[(size_t)40 << 20];
    touch(reserve, (size_t)40 << 20);
    std::set_new_handler(freeing_handler);
    char *p = new char[(size_t)40 << 20];
    touch(p, (size_t)40 << 20);
    CHECK(handler_calls == 1 && reserve == nullptr && ours(p));
    delete[] p;
    std::printf("child-ok\n");
    return 0;
  }
  if (name == "small") {
    void *p = ::operator new(40);
    expect("ramalloc: sized delete of %p with the wrong size %zu", p, 100);
    ::operator delete(p, 100);
  } else if (name == "small_below") { // 100 is served by the 112-byte class; 80 by the 80-byte one
    void *p = ::operator new(100);
    expect("ramalloc: sized delete of %p with the wrong size %zu", p, 80);
    ::operator delete(p, 80);
  } else if (name == "array") {
    void *p = ::operator new[](64);
    expect("ramalloc: sized delete of %p with the wrong size %zu", p, 65);
    ::operator delete[](p, 65);
  } else if (name == "medium") {
    void *p = ::operator new(20000);
    expect("ramalloc: sized delete of %p with the wrong size %zu", p, 16000);
    ::operator delete(p, 16000);
  } else if (name == "large") {
    void *p = ::operator new(300000);
    expect("ramalloc: sized delete of %p with the wrong size %zu", p, 200000);
    ::operator delete(p, 200000);
  } else if (name == "huge") {
    void *p = ::operator new((size_t)8 << 20);
    expect("ramalloc: sized delete of %p with the wrong size %zu", p, (size_t)4 << 20);
    ::operator delete(p, (size_t)4 << 20);
  } else if (name == "huge_larger") {
    void *p = ::operator new((size_t)8 << 20);
    expect("ramalloc: sized delete of %p with the wrong size %zu", p, ((size_t)8 << 20) + 1);
    ::operator delete(p, ((size_t)8 << 20) + 1);
  } else if (name == "aligned") {
    void *p = ::operator new(100, std::align_val_t{256});
    expect("ramalloc: sized delete of %p with the wrong size %zu, alignment %zu", p, 3000, 256);
    ::operator delete(p, 3000, std::align_val_t{256});
  } else if (name == "aligned_unaligned") { // sized aligned delete of a block new placed for 16
    void *p = ::operator new(100);
    while (((uintptr_t)p & 4095) == 0) p = ::operator new(100);
    expect("ramalloc: sized delete of %p with the wrong size %zu, alignment %zu", p, 100, 4096);
    ::operator delete(p, 100, std::align_val_t{4096});
  } else if (name == "warn") { // RAMALLOC_ON_ERROR=warn: reported, refused, the block stays live
    char *p = static_cast<char *>(::operator new(40));
    std::memset(p, 'k', 40);
    expect("ramalloc: sized delete of %p with the wrong size %zu", p, 1000);
    char *kept = opaque(p);
    ::operator delete(p, 1000);
    CHECK(ours(kept) && kept[0] == 'k' && kept[39] == 'k');
    void *q = ::operator new(40);
    CHECK(q != kept);
    ::operator delete(kept, 40);
    ::operator delete(q, 40);
    std::printf("child-ok\n");
    return 0;
  } else {
    std::printf("FAIL: no child %s\n", name.c_str());
    return 1;
  }
  std::printf("FAIL: %s: the misuse went unnoticed\n", name.c_str());
  return 1;
}

// Run this program as `child NAME` with extra environment; expect SIGABRT and exactly the line the
// child announced (or, with ok_exit, a normal exit after "child-ok").
static void check_child(const char *name, const char *env_extra, bool ok_exit) {
  int out[2], err[2];
  CHECK(pipe(out) == 0 && pipe(err) == 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    close(out[0]);
    close(err[0]);
    if (env_extra != nullptr) putenv(const_cast<char *>(env_extra));
    execl(self, self, "child", name, (char *)nullptr);
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  std::string o, e;
  char buf[4096];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof buf)) > 0) o.append(buf, (size_t)n);
  while ((n = read(err[0], buf, sizeof buf)) > 0) e.append(buf, (size_t)n);
  close(out[0]);
  close(err[0]);
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid);
  std::string want;
  size_t at = o.find("EXPECT ");
  if (at != std::string::npos) want = o.substr(at + 7, o.find('\n', at) - at - 7) + "\n";
  bool good = ok_exit ? (WIFEXITED(st) && WEXITSTATUS(st) == 0 && o.find("child-ok") != std::string::npos &&
                         e == want)
                      : (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && !want.empty() && e == want);
  if (!good) {
    std::printf("FAIL: child %s: status %d, stdout [%s], stderr [%s], wanted stderr [%s]\n", name, st, o.c_str(),
                e.c_str(), want.c_str());
    std::fflush(stdout);
    std::_Exit(1);
  }
  std::printf("child %s: %s", name, ok_exit ? "ok\n" : e.c_str());
}

int main(int argc, char **argv) {
  self = "/proc/self/exe";
  if (argc == 3 && std::strcmp(argv[1], "child") == 0) return run_child(argv[2]);
  CHECK(ra_owns != nullptr); // the program runs on ramalloc: preloaded or linked
  test_forms();
  test_new_handler();
  const char *misuses[] = {"small", "small_below", "array", "medium", "large",
                           "huge", "huge_larger", "aligned", "aligned_unaligned"};
  for (const char *m : misuses) check_child(m, nullptr, false);
  check_child("warn", "RAMALLOC_ON_ERROR=warn", true);
  check_child("handler_frees", "RAMALLOC_LIMIT=64M", true);
  std::printf("cxx-ok\n");
  return 0;
}
