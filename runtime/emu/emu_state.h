/*! tidarc emulator internals shared by its translation units: the state of a launch (its
    threads, warps, shared-memory shadow), the findings, and the helpers every part uses.
    Not for kernels or harnesses (those see tidarc_emu.h and emu_runtime.h). */
#pragma once
#include <pthread.h>
#include <setjmp.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <memory>
#include <unordered_map>
#include <vector>

#include "emu_fiber.h"
#include "emu_runtime.h"
#include "tidarc_emu_device.h"

// The kernels' `extern __shared__ unsigned char smem_raw[]` (declared inside namespace tidarc);
// thread_local = one per block, since every fiber of a block runs on one OS thread.
namespace tidarc {
extern thread_local unsigned char smem_raw[tidarc_emu::kMaxDynamicShared];
}

namespace tidarc_emu::detail {

enum class State { Runnable, WaitWarp, WaitBarrier, WaitNamed, Done };

// What a thread's acquires cover, per counter word: the latest of that word's atomics (their
// sequence numbers in the launch) an acquire of the word -- an ld.acquire of it, or an atomicAdd
// on it then a __threadfence -- ordered before the thread's next step. Per word, because an
// acquire synchronises with the releases on the word it read, not with those on another counter
// (emu_global.cpp). A few words a thread at most: a vector, searched linearly.
struct Acquires {
  std::vector<std::pair<uintptr_t, uint64_t>> words;
  void add(uintptr_t word, uint64_t seq) {
    for (auto& [w, s] : words)
      if (w == word) {
        s = std::max(s, seq);
        return;
      }
    words.emplace_back(word, seq);
  }
  void join(const Acquires& other) {
    for (const auto& [w, s] : other.words) add(w, s);
  }
  /** Whether the atomic `seq` on `word` (and every earlier one on it) is acquired. */
  bool covers(uintptr_t word, uint64_t seq) const {
    for (const auto& [w, s] : words)
      if (w == word) return s >= seq;
    return false;
  }
  bool empty() const { return words.empty(); }
};
enum class Op { Shfl, Ldmatrix, Mma };

struct PendingCopy {
  unsigned char* dst;
  unsigned char data[16];
  int group;
  bool tracked;  // into dynamic shared memory (shadowed), not a static __shared__ array
};

struct Thread {
  FiberContext ctx;
  uint3 idx;
  int tid, warp, lane;
  State state;
  const char* waiting_at;
  int named;  // the named barrier it waits at in bar.sync (State::WaitNamed)
  std::vector<PendingCopy> pending;
  int committed_groups;
  std::vector<uintptr_t> unfenced;  // global words it stored (st_global_*) since its last __threadfence
  Acquires atomics;                 // per counter word, its own latest atomicAdd on it in this launch (a fence after acquires them)
  Acquires acquired;                // per counter word, the atomics on it whose acquire is ordered before its next step
  uint32_t proxy_fences;            // fence.proxy.async it executed in this block
  bool waited;                      // executed grid_dependency_wait (griddepcontrol.wait) in this launch
  // The last named-barrier phase it waited through (bar.sync): each thread's arrival clock in
  // that phase (0: not in it). An access of a shared byte whose last writer (or single reader)
  // arrived in it after that access is ordered before this thread's accesses now.
  std::shared_ptr<const std::vector<uint32_t>> nb_last;
};

struct LaneIn {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
  const void* ptr;
  float f;
};
struct LaneOut {
  uint32_t r[4];
  float f[4];
};
struct Warp {
  int size = 0, arrived = 0;
  Op op = Op::Shfl;
  int count = 0;  // ldmatrix matrices, shfl lane mask
  bool trans = false;
  MmaType type = MmaType::bf16;
  const char* site = "";
  LaneIn in[32];
  LaneOut out[32];
};

// Shared-memory shadow, one per byte. Epochs count completed barriers; 0 = never. w_fence: the
// writer's fence.proxy.async count when the byte was stored (the async proxy may read the byte
// once a later fence of the writer, one more than w_fence, is ordered before the read).
constexpr int16_t kManyReaders = -2;
struct Shadow {
  uint32_t w_epoch, r_epoch, w_fence;
  uint32_t w_clk, r_clk;  // Launch::nb_clock at the last write and the last read (named-barrier ordering)
  int16_t w_tid, r_tid, pending_tid;
  uint8_t written, pending;
};

// A global word a tracked store (st_global_*) wrote in this launch, for the fence check: another
// CTA may read it only once the writer fenced it before its CTA's atomicAdd (release: that
// atomic's sequence number; 0 = not published), a thread of the reader's CTA made an atomic after
// that one and fenced after its atomic (acquire), and that fence is ordered before the read
// (emu_global.cpp says what this models of the PTX memory model and what it does not).
struct GlobalWrite {
  uint32_t block;  // linear block index
  int16_t tid;
  bool fenced;
  uint64_t release;
  uintptr_t release_word;  // the counter that release's atomic counted on
  bool discarded = false;  // dropped by a discard.global.L2 of block / tid since: undefined until stored again
};

struct Buffer {
  std::string name;
  uintptr_t begin, end;
  unsigned char* map;
  size_t map_len;
};

// A named barrier (bar.sync / bar.arrive with an id): the phase in progress counts arrivals
// against the thread count its first arrival gave; in_phase marks the threads counted in it
// (by thread id), so a second arrival of one thread in one phase is seen.
constexpr int kNamedBarriers = 16;
// warp_at: the instruction each warp's first arrival of the phase executed, for the .aligned
// check (file null: none yet; line -1: already reported); acquired: the join of the arrivals'
// Thread::acquired, which the phase's bar.sync waiters take (the barrier orders the acquire
// before their later reads).
struct BarrierCall {
  const char* site;  // bar.sync or bar.arrive
  const char* file;
  int line;
};
struct NamedBarrier {
  int arrived = 0, count = 0;
  const char* site = "";
  std::vector<bool> in_phase;
  std::vector<BarrierCall> warp_at;
  Acquires acquired;
  std::vector<uint32_t> arrive_clk;  // per thread, Launch::nb_clock at its arrival in the phase in progress (0: not arrived)
};

struct Launch {
  const char* kernel;
  bool programmatic = false;  // launched with the PDL attribute: global accesses wait for grid_dependency_wait
  dim3 grid, block;
  size_t smem;
  void (*entry)(void*);
  void* arg;
  uint3 block_idx;
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  FiberContext scheduler;
  Thread* current = nullptr;
  int barrier_arrived = 0;
  const char* barrier_site = nullptr;
  NamedBarrier named[kNamedBarriers];
  uint32_t epoch = 1;
  uint32_t nb_clock = 0;  // counts named-barrier arrivals and stamps shared accesses (Shadow::w_clk, r_clk)
  std::vector<Shadow> shadow;
  std::unordered_map<uintptr_t, GlobalWrite> global_writes;  // this launch's, by word address
  std::vector<uintptr_t> block_writes;  // words of the running block not yet published
  uint64_t atomic_seq = 0;    // atomics of the launch so far
  uint64_t block_atomic = 0;  // sequence of the running block's latest atomic (0: none yet)
  std::unordered_map<uintptr_t, uint64_t> last_atomic_on;  // per counter word: its latest atomic's sequence
  std::unordered_map<uintptr_t, uint64_t> block_observed;  // per counter word: the latest of its atomics the running block observed (its own RMW, or an ld.acquire)
  uintptr_t spin_word = 0;  // the running block's poll: the word, the value and how often in a row
  int spin_value = 0;
  uint32_t spin_polls = 0;
  unsigned char* stacks = nullptr;
  size_t stacks_len = 0;
  pthread_t os_thread;     // a fault on another OS thread is not this launch's
  sigjmp_buf fault_exit;   // where a recovered fault resumes (set_fault_recovery)
};

extern const size_t kPage;
/** The launch that runs now (null between launches). */
extern Launch* L;
extern std::vector<Buffer> g_buffers;

/** The running fiber's thread; aborts when a primitive is called outside a launch. */
Thread& cur();
/** Records a finding for the running thread (the first kMaxStored are kept, all are counted). */
void report(const std::string& kind, const std::string& message);
std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string thread_name(int tid);
/** Suspends the running fiber until a collective or barrier completes. */
void block_current(State s, const char* site);

// emu_memory.cpp
const Buffer* find_buffer(uintptr_t a, size_t n);
std::string describe_global(uintptr_t a);
void complete_copy(Thread& t, const PendingCopy& c);
enum class SharedKind { Dynamic, BeyondDynamic, Static, NotShared };
SharedKind classify_shared(const void* p, size_t n, size_t* offset);
std::string shared_problem(SharedKind k, const void* p);
/** Whether an access stamped `clk` (Shadow::w_clk / r_clk) by thread `other` is ordered before
 *  `t`'s accesses by a named barrier: `other` arrived in the last phase `t` waited through
 *  after that access. */
inline bool named_ordered(const Thread& t, int other, uint32_t clk) {
  return t.nb_last && other >= 0 && static_cast<size_t>(other) < t.nb_last->size() && (*t.nb_last)[static_cast<size_t>(other)] > clk;
}
void shared_read(int tid, size_t off, size_t n, const char* what);
void shared_write_check(int tid, size_t off, size_t n, const char* what);
/** Where the running launch's dynamic shared memory starts, for the kernel's plain accesses
 *  (kPlainNone between launches: an address no access reaches). */
constexpr uintptr_t kPlainNone = ~uintptr_t{0} - kMaxDynamicShared;
extern uintptr_t g_plain_base;

// emu_global.cpp
/** Linear index of the running block (x fastest). */
uint32_t block_linear();
/** Checks a load of [a, a + n) by the running thread against the words other CTAs of the launch
 *  stored (st_global_*): ordered after their release and this CTA's acquire, and (`plain`: an
 *  ordinary C++ load, L1-cacheable) not a plain load at all. Returns false after a finding. */
bool check_cross_cta_read(uintptr_t a, size_t n, bool plain);
/** The span of words st_global_* wrote in the running launch ([g_cross_lo, + g_cross_len); 0
 *  long between launches): the plain-load hook looks up only addresses inside it. */
extern uintptr_t g_cross_lo, g_cross_len;
/** True while the running fiber is a thread of a programmatic launch that has not executed
 *  grid_dependency_wait yet (set by the scheduler at each switch): the plain-access hook's one
 *  compare for the PDL check. */
extern bool g_pdl_unwaited;
/** The PDL check of an access of [a, a + n) by the running thread (`what`: the instruction):
 *  where g_pdl_unwaited holds and the range touches a device allocation, a "pdl" finding naming
 *  the kernel, the access and its buffer. The access itself goes on. */
void pdl_check(uintptr_t a, size_t n, const char* what);

}  // namespace tidarc_emu::detail
