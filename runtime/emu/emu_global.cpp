/*! tidarc emulator: global memory shared between the CTAs of one launch. Blocks run one after
    another, so an atomic is a plain read-modify-write here and every load sees the latest store;
    what the emulator checks instead is the ordering a GPU needs for the "last CTA merges"
    handoff (split-K sums, split-KV merges), on the words the writers store with st_global_*.

    What it models (PTX ISA, "Memory Consistency Model": release and acquire patterns, causality
    order; __threadfence() is membar.gl, which is fence.sc.gpu from sm_70 on; atomicAdd is a
    relaxed atom.gpu, a strong operation):
    - Release: a writer's words are published by its CTA's next atomicAdd only if the writer
      fenced them (__threadfence) before that atomic -- the pattern "fence; strong write".
    - Acquire: the reading CTA must observe the counter the writer's atomic counted on -- an
      atomicAdd on that word after the release, or an ld.acquire.gpu poll of it (ld_acquire_i32:
      blocks run in order, so it sees every atomic on the word so far) -- and a thread of it must
      acquire THAT counter: "strong read; fence" (an atomicAdd on it, then a __threadfence) or
      the ld.acquire of it. Thread::acquired records the latter, Launch::block_observed the
      former, both per counter word: an acquire of another counter orders nothing here.
    - Ordered before the read: the fence is the reader's own (program order), or reaches it
      through a barrier after the fence: __syncthreads, a completed phase of a named barrier the
      reader waited at (bar.sync), or an mbarrier phase it waited for (the acquire travels in the
      phase's clock, emu_hopper_sync.cpp). Loads through ld_global_cg_* and plain C++ loads (the
      -fsanitize=kernel-address hook, emu_memory.cpp) are both checked; a read that fails is a
      "fence" finding naming the word's buffer, the writer and what is missing.
    - Plain loads: any plain (ld.global, L1-cacheable) load of such a word is a "stale-l1"
      finding. This is STRICTER than the PTX model, which orders a weak load after the acquire
      pattern as well (to the model .cg is only a cache hint on a weak load); it enforces the kernels' own contract (tidarc_device.cuh: the handoff reads
      through L2 with ld.global.cg), because a plain load of a pointer nvcc deems read-only may
      become ld.global.nc, which the memory model does not cover at all, and because the
      templates' correctness argument is written for .cg. A C++ volatile load (ld.volatile, not
      served from L1 either) cannot be told from a plain one by the hook and is flagged too; the
      kernels have none.
    - Spins: an ld.acquire poll that reads one unchanged word kSpinPolls times is a "spin"
      finding that ends the launch (no other CTA can run meanwhile: a wait on a CTA that has not
      started, which may never be resident beside the waiter on a GPU).
    What it does not catch: words stored by plain C++ stores (only st_global_* are tracked), acquires through
    chains other than the ones above (an atomic by one thread and the fence by
    another is not recognised as one, whatever barrier lies between them), scopes
    (every fence counts as .gpu), and reordering inside one CTA (its barriers are checked by the
    shared-memory race check, not here). */
#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "emu_state.h"

namespace tidarc_emu {
namespace detail {

uintptr_t g_cross_lo = 0, g_cross_len = 0;
bool g_pdl_unwaited = false;

uint32_t block_linear() {
  const uint3 b = L->block_idx;
  return b.x + L->grid.x * (b.y + L->grid.y * b.z);
}

namespace {

std::string block_name(uint32_t linear) {
  const uint32_t x = linear % L->grid.x, y = linear / L->grid.x % L->grid.y, z = linear / (L->grid.x * L->grid.y);
  return fmt("block (%u,%u,%u)", x, y, z);
}

/** `a` as "byte N of 'buffer'" (the harness's or driver's name for it). */
std::string global_word(uintptr_t a) {
  const Buffer* b = find_buffer(a, 1);
  if (!b) return fmt("0x%" PRIxPTR, a);
  return fmt("byte %zu of '%s' (0x%" PRIxPTR ")", static_cast<size_t>(a - b->begin), b->name.c_str(), a);
}

bool in_buffer(const void* p, size_t n, const char* what) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (a % 4 != 0) {
    report("alignment", fmt("%s needs a 4-byte aligned address (%p)", what, p));
    return false;
  }
  if (!find_buffer(a, n)) {
    report("out-of-bounds", fmt("%s of %zu bytes outside every buffer: %s", what, n, describe_global(a).c_str()));
    return false;
  }
  return true;
}

}  // namespace

// Programmatic dependent launch (PTX ISA, griddepcontrol; CUDA programming guide, "Programmatic
// Dependent Launch and Synchronization"): a kernel launched with the attribute may run while the
// kernel before it on the stream still runs; griddepcontrol.wait blocks the thread until that
// kernel has completed and its memory is visible. So no thread may touch global memory (load,
// store, atomic, cp.async, TMA) before its own wait: the emulator checks each thread (stricter
// than the hardware, where a barrier after one thread's wait would also order the others' later
// accesses; the kernels' contract is that every thread waits before its first global access).
// Only device allocations count (alloc_global: the harness's and the emulated driver's buffers),
// not the thread's stack, shared memory, or the kernel's parameters.
void pdl_check(uintptr_t a, size_t n, const char* what) {
  if (!g_pdl_unwaited) return;
  for (const Buffer& b : g_buffers) {
    if (a < b.end && a + std::max<size_t>(n, 1) > b.begin) {
      report("pdl", fmt("%s: %s of %zu bytes at byte %zu of '%s' (0x%" PRIxPTR ") before this thread's grid_dependency_wait, in a programmatic launch (the previous kernel may still be running)",
                        L->kernel, what, n, static_cast<size_t>(a >= b.begin ? a - b.begin : 0), b.name.c_str(), a));
      return;
    }
  }
}

bool check_cross_cta_read(uintptr_t a, size_t n, bool plain) {
  const Thread& t = *L->current;
  const uint32_t block = block_linear();
  for (uintptr_t w = a & ~uintptr_t{3}; w < a + n; w += 4) {
    const auto it = L->global_writes.find(w);
    if (it == L->global_writes.end()) continue;  // an earlier launch's
    const GlobalWrite& g = it->second;
    const char* load = plain ? "a plain load" : "ld.global.cg";
    if (g.discarded) {  // whichever CTA dropped it: its bytes are undefined until stored again
      report("discard", fmt("%s reads %s that %s %s dropped from L2 (discard.global.L2): its contents are undefined", load, global_word(w).c_str(),
                            block_name(g.block).c_str(), thread_name(g.tid).c_str()));
      return false;
    }
    if (g.block == block) continue;  // this CTA's (its barriers order it)
    const std::string where = global_word(w), writer = fmt("%s %s", block_name(g.block).c_str(), thread_name(g.tid).c_str());
    if (g.release == 0) {
      report("fence", fmt("%s reads %s that %s stored without a __threadfence before its CTA's atomicAdd: this CTA may see it before it lands", load, where.c_str(), writer.c_str()));
      return false;
    }
    const auto seen = L->block_observed.find(g.release_word);
    if (seen == L->block_observed.end() || seen->second < g.release) {
      report("fence", fmt("%s reads %s that %s published by an atomicAdd on %s, before this CTA observed that counter (an atomicAdd on it after that one, or an ld.acquire: the wait)",
                          load, where.c_str(), writer.c_str(), global_word(g.release_word).c_str()));
      return false;
    }
    if (!t.acquired.covers(g.release_word, g.release)) {
      report("fence", fmt("%s reads %s that %s published, with no __threadfence after this CTA's atomicAdd (the acquire) ordered before it, nor an ld.acquire, on the counter it was published on (%s; an acquire of another counter orders nothing): the read may be served before the ticket, or from a stale line",
                          load, where.c_str(), writer.c_str(), global_word(g.release_word).c_str()));
      return false;
    }
    if (plain) {
      report("stale-l1", fmt("a plain (L1-cacheable) load reads %s that %s of this launch stored: the split handoff reads other CTAs' words with ld_global_cg_* (ld.global.cg, from L2)",
                             where.c_str(), writer.c_str()));
      return false;
    }
  }
  return true;
}

}  // namespace detail

using namespace detail;

void grid_dependency_wait() {
  cur().waited = true;
  g_pdl_unwaited = false;
}

void grid_dependents_launch() { cur(); }

void prefetch_l2_line(const void* p) {
  cur();
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (!find_buffer(a, 1))
    report("out-of-bounds", fmt("prefetch.global.L2 of an address inside no device allocation: %s", describe_global(a).c_str()));
}

void st_global(void* p, const void* v, size_t n) {
  Thread& t = cur();
  pdl_check(reinterpret_cast<uintptr_t>(p), n, "st.global");
  if (!in_buffer(p, n, "st.global")) return;
  const uint32_t block = block_linear();
  const auto a = reinterpret_cast<uintptr_t>(p);
  for (size_t i = 0; i < n; i += 4) {
    const uintptr_t w = a + i;
    L->global_writes[w] = GlobalWrite{block, static_cast<int16_t>(t.tid), false, 0, 0};
    t.unfenced.push_back(w);
    L->block_writes.push_back(w);
  }
  const uintptr_t lo = g_cross_len == 0 ? a : std::min(g_cross_lo, a), hi = std::max(g_cross_lo + g_cross_len, a + n);
  g_cross_lo = lo, g_cross_len = hi - lo;
  std::memcpy(p, v, n);
}

void ld_global(void* dst, const void* p, size_t n) {
  cur();
  pdl_check(reinterpret_cast<uintptr_t>(p), n, "ld.global.cg");
  if (!in_buffer(p, n, "ld.global")) {
    std::memset(dst, 0xff, n);
    return;
  }
  if (!check_cross_cta_read(reinterpret_cast<uintptr_t>(p), n, false)) return;
  std::memcpy(dst, p, n);
}

// discard.global.L2: the line's bytes become undefined, poisoned here (0xff: NaN to a float
// read), and any read of them before a store is a "discard" finding (check_cross_cta_read),
// whichever CTA or thread reads: a line dropped while another thread of the CTA (no barrier
// between) or a later CTA still needed it. The line must be 128-byte aligned (PTX ISA).
void discard_l2(const void* p) {
  Thread& t = cur();
  const auto a = reinterpret_cast<uintptr_t>(p);
  pdl_check(a, 128, "discard.global.L2");
  if (a % 128 != 0) {
    report("alignment", fmt("discard.global.L2 needs a 128-byte aligned address (%p)", p));
    return;
  }
  if (!in_buffer(p, 128, "discard.global.L2")) return;
  const uint32_t block = block_linear();
  for (uintptr_t w = a; w < a + 128; w += 4) L->global_writes[w] = GlobalWrite{block, static_cast<int16_t>(t.tid), false, 0, 0, true};
  const uintptr_t lo = g_cross_len == 0 ? a : std::min(g_cross_lo, a), hi = std::max(g_cross_lo + g_cross_len, a + 128);
  g_cross_lo = lo, g_cross_len = hi - lo;  // plain loads of the line are checked too
  std::memset(reinterpret_cast<void*>(a), 0xff, 128);
}

void threadfence() {
  Thread& t = cur();
  const uint32_t block = block_linear();
  for (const uintptr_t w : t.unfenced) {
    GlobalWrite& g = L->global_writes[w];
    if (g.block == block && g.tid == t.tid) g.fenced = true;
  }
  t.unfenced.clear();
  t.acquired.join(t.atomics);  // "atomic; fence": an acquire of what its atomics saw, each on its own counter
}

int atomic_add_i32(int* p, int v) {
  Thread& t = cur();
  pdl_check(reinterpret_cast<uintptr_t>(p), 4, "atomicAdd");
  if (!in_buffer(p, 4, "atomicAdd")) return 0;
  const int old = *p;
  *p = old + v;
  L->block_atomic = ++L->atomic_seq;
  const auto word = reinterpret_cast<uintptr_t>(p);
  t.atomics.add(word, L->block_atomic);
  L->last_atomic_on[word] = L->block_observed[word] = L->block_atomic;  // a read-modify-write observes every earlier one on the word
  // The block's fenced words are published by this atomic; unfenced ones are not, even if
  // fenced later (a later atomic of the block would publish them).
  const uint32_t block = block_linear();
  std::vector<uintptr_t> keep;
  for (const uintptr_t w : L->block_writes) {
    GlobalWrite& g = L->global_writes[w];
    if (g.block != block) continue;  // overwritten by another block since
    if (g.fenced) g.release = L->block_atomic, g.release_word = word;
    else keep.push_back(w);
  }
  L->block_writes.swap(keep);
  return old;
}

// A poll of a counter (ld.acquire.gpu): it synchronises with every atomic on the word so far
// (blocks run one after another, so the value is final), as an acquire needing no fence. The
// emulator cannot run another CTA while this one polls: kSpinPolls reads of one unchanged word
// in a row mean a wait on a CTA that has not started (on a GPU, one that may never be resident
// beside the waiter: a deadlock), a "spin" finding that ends the launch.
constexpr uint32_t kSpinPolls = 1u << 12;

int ld_acquire_i32(const int* p) {
  Thread& t = cur();
  pdl_check(reinterpret_cast<uintptr_t>(p), 4, "ld.acquire.gpu");
  if (!in_buffer(p, 4, "ld.acquire")) return 0;
  const auto word = reinterpret_cast<uintptr_t>(p);
  const int value = *p;
  const auto last = L->last_atomic_on.find(word);
  if (last != L->last_atomic_on.end()) {
    uint64_t& seen = L->block_observed[word];
    seen = std::max(seen, last->second);
    t.acquired.add(word, last->second);
  }
  if (L->spin_word == word && L->spin_value == value) {
    if (++L->spin_polls >= kSpinPolls) {
      report("spin", fmt("ld.acquire polls %s %u times and it stays %d: a wait on a CTA that has not started (blocks run one after another here; on a GPU a wait on a CTA that may not be resident deadlocks)",
                         global_word(word).c_str(), L->spin_polls, value));
      siglongjmp(L->fault_exit, 1);  // the launch stops there (launch() returns false), as after a recovered fault
    }
  } else {
    L->spin_word = word, L->spin_value = value, L->spin_polls = 1;
  }
  return value;
}

}  // namespace tidarc_emu
