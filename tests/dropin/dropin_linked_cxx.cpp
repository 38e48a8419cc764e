// A C++ program that never names malloc, linked to libramalloc.a: the library's link options pull
// the malloc family in all the same, so operator new (in libstdc++) reaches ramalloc.
#include <cstdio>
#include <string>
#include <vector>

#include <ramalloc.h>

int main() {
  int *i = new int(3);
  std::vector<std::string> v(100, std::string(200, 'x'));
  bool ok = ra_owns(i) && ra_owns(v.data()) && ra_owns(v[50].data());
  delete i;
  if (!ok) {
    std::fprintf(stderr, "operator new did not reach ramalloc\n");
    return 1;
  }
  std::puts("linked-cxx-ok");
  return 0;
}
