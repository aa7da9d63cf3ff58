/*! tidarc emulator: memory. Shared memory (where an address lies, the per-byte shadow that
    finds races between barriers and reads of unwritten or not-yet-waited bytes), the kernel's
    plain loads and stores of it, cp.async groups, and global buffers between guard pages. */
#include <sys/mman.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "emu_state.h"

namespace tidarc {
alignas(4096) thread_local unsigned char smem_raw[tidarc_emu::kMaxDynamicShared];
}

namespace tidarc_emu {
namespace detail {

std::vector<Buffer> g_buffers;
uintptr_t g_plain_base = kPlainNone;

// ---- shared memory ------------------------------------------------------------------------

// Where an address a primitive uses as shared memory lies. Dynamic shared memory is
// bounds- and race-checked; static __shared__ arrays (thread_local, one per block since
// blocks run one after another) are used but not tracked.

SharedKind classify_shared(const void* p, size_t n, size_t* offset) {
  auto a = reinterpret_cast<uintptr_t>(p), base = reinterpret_cast<uintptr_t>(tidarc::smem_raw);
  if (a >= base && a + n <= base + L->smem) {
    *offset = a - base;
    return SharedKind::Dynamic;
  }
  if (a + n > base && a < base + kMaxDynamicShared) return SharedKind::BeyondDynamic;
  auto stacks = reinterpret_cast<uintptr_t>(L->stacks);
  if (find_buffer(a, 1) || (a >= stacks && a < stacks + L->stacks_len)) return SharedKind::NotShared;
  return SharedKind::Static;
}

std::string shared_problem(SharedKind k, const void* p) {
  if (k == SharedKind::BeyondDynamic) return fmt("is outside the %zu bytes of dynamic shared memory (%p)", L->smem, p);
  return fmt("is not shared memory (%p is global or local memory)", p);
}

void shared_read(int tid, size_t off, size_t n, const char* what) {
  for (size_t i = off; i < off + n; ++i) {
    Shadow& s = L->shadow[i];
    if (s.pending) {
      report("cp-async", fmt("%s reads shared byte %zu while the cp.async of %s into it has not been waited for", what, i, thread_name(s.pending_tid).c_str()));
    } else if (!s.written) {
      // Stores the kernel makes with plain C++ (not through a primitive) are not tracked;
      // they show as bytes that no longer hold the 0xff poison of a fresh block.
      if (tidarc::smem_raw[i] == 0xff) report("uninitialized-read", fmt("%s reads shared byte %zu that nothing wrote in this block", what, i));
    } else if (s.w_epoch == L->epoch && s.w_tid != tid && !named_ordered(L->threads[static_cast<size_t>(tid)], s.w_tid, s.w_clk)) {
      report("race", fmt("%s reads shared byte %zu written by %s with no __syncthreads between", what, i, thread_name(s.w_tid).c_str()));
    }
    if (s.r_epoch == L->epoch && s.r_tid != tid) s.r_tid = kManyReaders;
    else s.r_tid = static_cast<int16_t>(tid);
    s.r_epoch = L->epoch;
    s.r_clk = L->nb_clock;
  }
}

void shared_write_check(int tid, size_t off, size_t n, const char* what) {
  const Thread& t = L->threads[static_cast<size_t>(tid)];
  for (size_t i = off; i < off + n; ++i) {
    Shadow& s = L->shadow[i];
    if (s.w_epoch == L->epoch && s.w_tid != tid && !named_ordered(t, s.w_tid, s.w_clk)) {
      report("race", fmt("%s writes shared byte %zu also written by %s with no __syncthreads between", what, i, thread_name(s.w_tid).c_str()));
    } else if (s.r_epoch == L->epoch && s.r_tid != tid && (s.r_tid == kManyReaders || !named_ordered(t, s.r_tid, s.r_clk))) {
      report("race", fmt("%s writes shared byte %zu read by %s with no __syncthreads between", what, i,
                          s.r_tid == kManyReaders ? "other threads" : thread_name(s.r_tid).c_str()));
    }
  }
}

void complete_copy(Thread& t, const PendingCopy& c) {
  if (!c.tracked) {
    std::memcpy(c.dst, c.data, 16);
    return;
  }
  size_t off = static_cast<size_t>(c.dst - tidarc::smem_raw);
  shared_write_check(t.tid, off, 16, "cp.async");
  std::memcpy(c.dst, c.data, 16);
  for (size_t i = off; i < off + 16; ++i) {
    Shadow& s = L->shadow[i];
    s.pending = 0;
    s.written = 1;
    s.w_epoch = L->epoch, s.w_clk = L->nb_clock;
    s.w_tid = static_cast<int16_t>(t.tid);
    s.w_fence = t.proxy_fences;  // lands now: a fence before the wait does not order it
  }
}

const Buffer* find_buffer(uintptr_t a, size_t n) {
  for (const Buffer& b : g_buffers)
    if (a >= b.begin && a + n <= b.end) return &b;
  return nullptr;
}

std::string describe_global(uintptr_t a) {
  const Buffer* nearest = nullptr;
  uintptr_t dist = UINTPTR_MAX;
  for (const Buffer& b : g_buffers) {
    uintptr_t d = a < b.begin ? b.begin - a : a >= b.end ? a - b.end + 1 : 0;
    if (d < dist) dist = d, nearest = &b;
  }
  if (!nearest) return fmt("0x%" PRIxPTR, a);
  if (a >= nearest->end) return fmt("0x%" PRIxPTR " (%zu bytes past the end of '%s')", a, static_cast<size_t>(a - nearest->end), nearest->name.c_str());
  return fmt("0x%" PRIxPTR " (%zu bytes before the start of '%s')", a, static_cast<size_t>(nearest->begin - a), nearest->name.c_str());
}

}  // namespace detail

using namespace detail;

void cp_async_16(void* dst, const void* src, bool valid) {
  Thread& t = cur();
  size_t off;
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0 || (valid && reinterpret_cast<uintptr_t>(src) % 16 != 0)) {
    report("alignment", fmt("cp.async.16 needs 16-byte aligned addresses (shared %p, global %p)", dst, src));
    return;
  }
  const SharedKind kind = classify_shared(dst, 16, &off);
  if (kind == SharedKind::BeyondDynamic || kind == SharedKind::NotShared) {
    report("out-of-bounds", fmt("cp.async destination %s", shared_problem(kind, dst).c_str()));
    return;
  }
  PendingCopy c{static_cast<unsigned char*>(dst), {}, t.committed_groups, kind == SharedKind::Dynamic};
  if (valid) {
    auto a = reinterpret_cast<uintptr_t>(src);
    pdl_check(a, 16, "cp.async");
    if (!find_buffer(a, 16)) report("out-of-bounds", fmt("cp.async reads global memory outside every buffer: %s", describe_global(a).c_str()));
    else std::memcpy(c.data, src, 16);
  }
  if (!c.tracked) {
    t.pending.push_back(c);
    return;
  }
  for (size_t i = off; i < off + 16; ++i) {
    Shadow& s = L->shadow[i];
    if (s.pending && s.pending_tid != t.tid)
      report("race", fmt("cp.async into shared byte %zu while the cp.async of %s into it is still pending", i, thread_name(s.pending_tid).c_str()));
  }
  shared_write_check(t.tid, off, 16, "cp.async");
  for (size_t i = off; i < off + 16; ++i) L->shadow[i].pending = 1, L->shadow[i].pending_tid = static_cast<int16_t>(t.tid);
  t.pending.push_back(c);
}

void st_shared_16(void* dst, const uint32_t v[4]) {
  Thread& t = cur();
  size_t off;
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0) {
    report("alignment", fmt("st.shared.v4 needs a 16-byte aligned address (%p)", dst));
    return;
  }
  const SharedKind kind = classify_shared(dst, 16, &off);
  if (kind == SharedKind::BeyondDynamic || kind == SharedKind::NotShared) {
    report("out-of-bounds", fmt("st.shared.v4 destination %s", shared_problem(kind, dst).c_str()));
    return;
  }
  if (kind == SharedKind::Dynamic) {
    for (size_t i = off; i < off + 16; ++i) {
      const Shadow& s = L->shadow[i];
      // A pending cp.async would land after this store and overwrite it.
      if (s.pending) report("cp-async", fmt("st.shared.v4 writes shared byte %zu while the cp.async of %s into it is still pending", i, thread_name(s.pending_tid).c_str()));
    }
    shared_write_check(t.tid, off, 16, "st.shared.v4");
    for (size_t i = off; i < off + 16; ++i) {
      Shadow& s = L->shadow[i];
      s.written = 1;
      s.w_epoch = L->epoch, s.w_clk = L->nb_clock;
      s.w_tid = static_cast<int16_t>(t.tid);
      s.w_fence = t.proxy_fences;
    }
  }
  std::memcpy(dst, v, 16);
}

void cp_async_commit() { cur().committed_groups++; }

void cp_async_wait(int pending_groups) {
  Thread& t = cur();
  // Complete every copy of a committed group older than the newest `pending_groups` ones.
  const int limit = t.committed_groups - pending_groups;
  std::vector<PendingCopy> keep;
  for (const PendingCopy& c : t.pending) {
    if (c.group < limit) complete_copy(t, c);
    else keep.push_back(c);
  }
  t.pending.swap(keep);
}

uint32_t shared_offset(const void* p) {
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(tidarc::smem_raw));
}

void* alloc_global(const char* name, size_t bytes) {
  const size_t size = std::max<size_t>(16, (bytes + 15) & ~size_t{15});
  const size_t body = (size + kPage - 1) / kPage * kPage;
  const size_t len = body + 2 * kPage;
  auto* map = static_cast<unsigned char*>(mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (map == MAP_FAILED) {
    std::perror("tidarc-emu: mmap");
    std::exit(2);
  }
  mprotect(map, kPage, PROT_NONE);
  mprotect(map + kPage + body, kPage, PROT_NONE);
  unsigned char* begin = map + kPage + body - size;  // ends at the guard page
  g_buffers.push_back({name, reinterpret_cast<uintptr_t>(begin), reinterpret_cast<uintptr_t>(begin) + bytes, map, len});
  return begin;
}

bool free_global(void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = std::find_if(g_buffers.begin(), g_buffers.end(), [&](const Buffer& b) { return b.begin == a; });
  if (it == g_buffers.end()) return false;
  munmap(it->map, it->map_len);
  g_buffers.erase(it);
  return true;
}

void free_globals() {
  for (Buffer& b : g_buffers) munmap(b.map, b.map_len);
  g_buffers.clear();
}

}  // namespace tidarc_emu

// ---- the kernel's plain loads and stores ------------------------------------------------------
// Kernels are compiled with -fsanitize=kernel-address and calls for every access
// (EMU_KERNEL_FLAGS, codegen/targets.ts): g++ calls these for each load and store it cannot
// prove private to the thread, with no sanitizer runtime. Those in the launch's dynamic shared
// memory are race-checked against the shadow like the primitives' accesses: a byte written by a
// thread of another warp in the same barrier epoch (no __syncthreads between) may not be read or
// written, nor one read by another warp written, unless a named barrier orders the two (the
// other thread arrived in it after its access, and this one waited through that phase:
// Shadow::w_clk / r_clk, Thread::nb_last; a byte read by several threads is not released by
// one); a byte with a cp.async pending may not be
// touched. Lanes of one warp are not checked against each other: the emulator has no
// __syncwarp, the templates exchange data within a warp only through shfl, ldmatrix and mma
// (collectives that every lane reaches), and a warp's plain accesses run in program order
// between them. In a programmatic launch, an access of a device allocation before the thread's
// grid_dependency_wait is a "pdl" finding (emu_global.cpp pdl_check). A load of global words the launch's st_global_* stored is checked for the
// cross-CTA handoff (emu_global.cpp); everything else (other global memory, stacks, static
// __shared__ arrays) returns after the compares; the emulator's own sources are built without the flag.
namespace {
using namespace tidarc_emu::detail;

__attribute__((no_sanitize_address, noinline)) void plain_shared_access(uintptr_t off, size_t n, bool write) {
  Launch* l = L;
  if (!l || !l->current) return;  // host code of a harness, or the scheduler
  const Thread& t = *l->current;
  const char* what = write ? "store" : "load";
  if (off + n > l->smem) {
    report("out-of-bounds", fmt("a plain %zu-byte %s at shared byte %zu is outside the %zu bytes of dynamic shared memory", n, what, static_cast<size_t>(off), l->smem));
    return;
  }
  const uint32_t epoch = l->epoch;
  for (size_t i = off; i < off + n; ++i) {
    const Shadow& s = l->shadow[i];
    if (s.pending) {
      report("cp-async", fmt("a plain %s touches shared byte %zu while the cp.async of %s into it has not been waited for", what, i, thread_name(s.pending_tid).c_str()));
      break;
    }
    if (s.w_epoch == epoch && s.w_tid != t.tid && s.w_tid / 32 != t.warp && !named_ordered(t, s.w_tid, s.w_clk)) {
      report("race", fmt("a plain %s of shared byte %zu by warp %d follows the write of %s (warp %d) with no __syncthreads between", what, i, t.warp, thread_name(s.w_tid).c_str(), s.w_tid / 32));
      break;
    }
    if (write && s.r_epoch == epoch && s.r_tid != t.tid && (s.r_tid == kManyReaders || (s.r_tid / 32 != t.warp && !named_ordered(t, s.r_tid, s.r_clk)))) {
      report("race", fmt("a plain store to shared byte %zu by warp %d follows its read by %s with no __syncthreads between", i, t.warp,
                          s.r_tid == kManyReaders ? "threads of several warps" : fmt("%s (warp %d)", thread_name(s.r_tid).c_str(), s.r_tid / 32).c_str()));
      break;
    }
  }
  const auto tid = static_cast<int16_t>(t.tid);
  for (size_t i = off; i < off + n; ++i) {
    Shadow& s = l->shadow[i];
    if (write) {
      s.written = 1, s.w_epoch = epoch, s.w_tid = tid, s.w_fence = t.proxy_fences, s.w_clk = l->nb_clock;
    } else {
      s.r_tid = s.r_epoch == epoch && s.r_tid != tid ? kManyReaders : tid;
      s.r_epoch = epoch, s.r_clk = l->nb_clock;
    }
  }
}

/** A plain load of global words st_global_* stored in this launch (emu_global.cpp). */
__attribute__((no_sanitize_address, noinline)) void plain_global_load(uintptr_t a, size_t n) {
  if (!L || !L->current) return;  // host code of a harness, or the scheduler
  check_cross_cta_read(a, n, true);
}

/** A plain access by a thread of a programmatic launch before its grid_dependency_wait. */
__attribute__((no_sanitize_address, noinline)) void plain_pdl_access(uintptr_t a, size_t n, bool write) {
  if (!L || !L->current) return;
  pdl_check(a, n, write ? "a plain store" : "a plain load");
}

/** Every call lands here: one compare sends all but dynamic shared memory back, and one more
 *  all but the span of words other CTAs may have stored in this launch (kernels make millions of
 *  these calls; this keeps the check to a few percent of an emulated run). Before those, one
 *  flag: whether the running thread is in a programmatic launch and has not waited (PDL). */
__attribute__((no_sanitize_address, always_inline)) inline void plain_access(uintptr_t a, size_t n, bool write) {
  if (__builtin_expect(g_pdl_unwaited, false)) plain_pdl_access(a, n, write);
  const uintptr_t off = a - g_plain_base;
  if (off < tidarc_emu::kMaxDynamicShared) plain_shared_access(off, n, write);
  else if (a - g_cross_lo < g_cross_len && !write) plain_global_load(a, n);
}
}  // namespace

#define TIDARC_EMU_PLAIN_ACCESS(n)                                                                                           \
  extern "C" __attribute__((no_sanitize_address)) void __asan_load##n##_noabort(uintptr_t a) { plain_access(a, n, false); } \
  extern "C" __attribute__((no_sanitize_address)) void __asan_store##n##_noabort(uintptr_t a) { plain_access(a, n, true); }
TIDARC_EMU_PLAIN_ACCESS(1)
TIDARC_EMU_PLAIN_ACCESS(2)
TIDARC_EMU_PLAIN_ACCESS(4)
TIDARC_EMU_PLAIN_ACCESS(8)
TIDARC_EMU_PLAIN_ACCESS(16)
#undef TIDARC_EMU_PLAIN_ACCESS
extern "C" __attribute__((no_sanitize_address)) void __asan_loadN_noabort(uintptr_t a, size_t n) { plain_access(a, n, false); }
extern "C" __attribute__((no_sanitize_address)) void __asan_storeN_noabort(uintptr_t a, size_t n) { plain_access(a, n, true); }
/** Called before a noreturn call (abort, a thrown exception); the emulator keeps no state for it. */
extern "C" void __asan_handle_no_return() {}
