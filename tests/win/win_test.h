/* Helpers for the Windows tests (tests/win): VirtualQuery in one call, and fault probes.
 *
 * A probe touches one byte with an instruction of known length (movb through %rcx: 2 bytes). A
 * vectored exception handler, armed only around the probe, checks that the access violation is the
 * probe's own (instruction bytes, address), records it and resumes after the instruction. Nothing
 * is committed, unwound or long-jumped: the memory stays exactly as it was. */
#ifndef RA_WIN_TEST_H
#define RA_WIN_TEST_H

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__x86_64__)
#error "tests/win: the fault probes are written for x86-64"
#endif

typedef struct wt_region_s {
  DWORD state;         /* MEM_FREE, MEM_RESERVE, MEM_COMMIT (0 if VirtualQuery failed) */
  DWORD protect;       /* of the region (0 unless committed) */
  DWORD type;          /* MEM_PRIVATE, ... */
  uint8_t *alloc_base; /* the reservation the page belongs to */
  uint8_t *base;       /* the region: pages of one state and protection around the address */
  size_t size;
} wt_region_t;

static inline wt_region_t wt_query(const void *p) {
  wt_region_t r = {0, 0, 0, NULL, NULL, 0};
  MEMORY_BASIC_INFORMATION mbi;
  if (VirtualQuery(p, &mbi, sizeof mbi) != sizeof mbi) return r;
  r.state = mbi.State;
  r.protect = mbi.State == MEM_COMMIT ? mbi.Protect : 0;
  r.type = mbi.Type;
  r.alloc_base = (uint8_t *)mbi.AllocationBase;
  r.base = (uint8_t *)mbi.BaseAddress;
  r.size = mbi.RegionSize;
  return r;
}

static inline const char *wt_state_name(DWORD s) {
  return s == MEM_COMMIT ? "MEM_COMMIT" : s == MEM_RESERVE ? "MEM_RESERVE" : s == MEM_FREE ? "MEM_FREE" : "?";
}

/* Bytes committed in [base, base + size), summed over VirtualQuery's regions. */
static inline size_t wt_committed_in(const void *base, size_t size) {
  const uint8_t *p = (const uint8_t *)base, *end = p + size;
  size_t total = 0;
  while (p < end) {
    wt_region_t r = wt_query(p);
    if (r.size == 0) break;
    const uint8_t *rend = r.base + r.size;
    if (rend > end) rend = end;
    if (r.state == MEM_COMMIT) total += (size_t)(rend - p);
    p = rend;
  }
  return total;
}

/* ---- fault probes ----------------------------------------------------------------------------- */

static volatile uintptr_t wt_probe_addr;   /* the byte the armed probe touches */
static volatile LONG wt_probe_faults;      /* access violations caught there */
static volatile ULONG_PTR wt_probe_kind;   /* ExceptionInformation[0]: 0 read, 1 write, 8 execute */

static LONG CALLBACK wt_probe_handler(EXCEPTION_POINTERS *ep) {
  EXCEPTION_RECORD *er = ep->ExceptionRecord;
  if (er->ExceptionCode != EXCEPTION_ACCESS_VIOLATION || er->NumberParameters < 2) return EXCEPTION_CONTINUE_SEARCH;
  if (er->ExceptionInformation[1] != wt_probe_addr) return EXCEPTION_CONTINUE_SEARCH;
  const uint8_t *ip = (const uint8_t *)ep->ContextRecord->Rip;
  /* 8a 01: movb (%rcx),%al   88 01: movb %al,(%rcx) */
  if (!((ip[0] == 0x8a || ip[0] == 0x88) && ip[1] == 0x01)) return EXCEPTION_CONTINUE_SEARCH;
  wt_probe_faults++;
  wt_probe_kind = er->ExceptionInformation[0];
  ep->ContextRecord->Rip += 2;
  return EXCEPTION_CONTINUE_EXECUTION;
}

/* Read one byte at p; true if that raised an access violation (then *value is untouched). */
static inline bool wt_read_faults(const void *p, uint8_t *value) {
  wt_probe_addr = (uintptr_t)p;
  wt_probe_faults = 0;
  void *h = AddVectoredExceptionHandler(1, wt_probe_handler);
  uint8_t v;
  __asm__ volatile("movb (%%rcx), %%al" : "=a"(v) : "c"(p) : "memory");
  RemoveVectoredExceptionHandler(h);
  if (wt_probe_faults == 0 && value != NULL) *value = v;
  return wt_probe_faults != 0;
}

/* Write `value` at p; true if that raised an access violation. */
static inline bool wt_write_faults(void *p, uint8_t value) {
  wt_probe_addr = (uintptr_t)p;
  wt_probe_faults = 0;
  void *h = AddVectoredExceptionHandler(1, wt_probe_handler);
  __asm__ volatile("movb %%al, (%%rcx)" : : "c"(p), "a"(value) : "memory");
  RemoveVectoredExceptionHandler(h);
  return wt_probe_faults != 0;
}

#endif /* RA_WIN_TEST_H */
