// C++ on ramalloc: libstdc++'s operator new/delete (plain, array, sized, aligned, nothrow) go
// through malloc/free or aligned_alloc, and so do exceptions, containers, strings, shared
// pointers and thread_local objects with destructors. The program prints a checksum of its work;
// under glibc and with ramalloc preloaded the outputs must be equal. With ramalloc present it also
// checks that the blocks new hands out are ramalloc's.
#include <dlfcn.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#define CHECK(x)                                                             \
  do {                                                                       \
    if (!(x)) {                                                              \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
      std::exit(1);                                                          \
    }                                                                        \
  } while (0)

using owns_fn = bool (*)(const void *);
static owns_fn ra_owns = reinterpret_cast<owns_fn>(dlsym(RTLD_DEFAULT, "ra_owns"));
static bool owned(const void *p) { return ra_owns == nullptr || ra_owns(p); }

struct alignas(128) Wide {
  unsigned char bytes[300];
};

struct Node {
  std::string name;
  std::vector<int> values;
  std::shared_ptr<Node> next;
};

static std::atomic<std::uint64_t> total{0};

struct Tracker {  // a thread_local with a destructor that allocates and frees
  std::string log = std::string(100, 't');
  ~Tracker() {
    std::string s = log + "done";
    total += s.size();
  }
};
static thread_local Tracker tracker;

static std::uint64_t work(int seed) {
  std::uint64_t sum = 0;
  std::map<std::string, std::vector<int>> m;
  std::unordered_map<int, std::string> u;
  for (int i = 0; i < 20000; i++) {
    std::string key = "key-" + std::to_string((i * 7919 + seed) % 5000);
    m[key].push_back(i);
    u[i % 3000] += static_cast<char>('a' + i % 26);
  }
  for (auto &kv : m) sum += kv.first.size() * kv.second.size();
  for (auto &kv : u) sum += kv.second.size();
  std::shared_ptr<Node> head;
  for (int i = 0; i < 2000; i++) {
    auto n = std::make_shared<Node>();
    n->name = std::string(static_cast<size_t>(i % 200), 'n');
    n->values.assign(static_cast<size_t>(i % 50), i);
    n->next = head;
    head = n;
    CHECK(owned(n.get()));
  }
  for (auto p = head.get(); p; p = p->next.get()) sum += p->name.size() + p->values.size();
  while (head) head = std::move(head->next);  // iterative teardown
  for (int i = 0; i < 200; i++) {
    try {
      if (i % 3 == 0) throw std::runtime_error(std::string(static_cast<size_t>(i), 'e'));
      if (i % 3 == 1) throw std::vector<int>(static_cast<size_t>(i), i);
      throw i;
    } catch (const std::runtime_error &e) {
      sum += std::string(e.what()).size();
    } catch (const std::vector<int> &v) {
      sum += v.size();
    } catch (int k) {
      sum += static_cast<std::uint64_t>(k);
    }
  }
  tracker.log += std::to_string(sum);
  return sum;
}

int main() {
  // plain, array, aligned, nothrow forms
  int *one = new int(7);
  CHECK(owned(one));
  delete one;
  double *arr = new double[1000];
  CHECK(owned(arr));
  delete[] arr;
  Wide *w = new Wide;
  CHECK(reinterpret_cast<std::uintptr_t>(w) % 128 == 0 && owned(w));
  delete w;
  Wide *wa = new Wide[10];
  CHECK(reinterpret_cast<std::uintptr_t>(wa) % 128 == 0 && owned(wa));
  delete[] wa;
  void *a4k = ::operator new(10000, std::align_val_t(4096));
  CHECK(reinterpret_cast<std::uintptr_t>(a4k) % 4096 == 0 && owned(a4k));
  ::operator delete(a4k, 10000, std::align_val_t(4096));
  char *nt = new (std::nothrow) char[100];
  CHECK(nt != nullptr && owned(nt));
  delete[] nt;
  bool threw = false;
  try {
    std::vector<char> v;
    v.reserve(static_cast<size_t>(1) << 62);
  } catch (const std::length_error &) {
    threw = true;
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw);

  std::uint64_t sum = work(0);
  std::vector<std::thread> ts;
  std::vector<std::uint64_t> sums(8);
  for (int t = 0; t < 8; t++) ts.emplace_back([t, &sums] { sums[static_cast<size_t>(t)] = work(t + 1); });
  for (auto &t : ts) t.join();
  for (auto s : sums) sum += s;
  std::printf("cxx checksum %llu, thread_local destructors %llu\n", static_cast<unsigned long long>(sum),
              static_cast<unsigned long long>(total.load()));
  std::printf("cxx-ok\n");
  return 0;
}
