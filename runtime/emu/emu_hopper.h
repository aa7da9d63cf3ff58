/*! tidarc emulator: Hopper (sm_90a) state shared by emu_hopper_sync.cpp (mbarriers, bulk tensor
    copies) and emu_hopper_mma.cpp (wgmma), the hooks the block scheduler calls, and the host's
    tensor-map encoder. The primitives themselves are declared in tidarc_emu_device.h. */
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <vector>

#include "tidarc_emu.h"  // before tidarc_emu_device.h, as in a kernel (force-included there)
#include "tidarc_emu_device.h"
#include "emu_state.h"  // detail::Acquires

namespace tidarc_emu {

/**
 * The emulated cuTensorMapEncodeTiled: validates like the driver (base 16-byte aligned, strides
 * multiples of 16, boxes of 1..256 elements whose inner row is a multiple of 16 bytes and, when
 * swizzled, at most the swizzle span) and fills `map`. Returns null, or what is wrong.
 */
const char* encode_tensor_map(TensorMap* map, const void* base, uint32_t elem_bytes, uint32_t rank, const uint64_t* dims,
                              const uint64_t* strides_bytes, const uint32_t* box, uint32_t swizzle_bytes);

/** The address swizzle of TMA and wgmma (PTX ISA "Swizzling Modes"): 16-byte chunk c of 128-byte
 *  line l of a pattern moves to chunk c ^ (l mod (span / 16)); `a` is a shared-memory offset. */
inline uint32_t swizzle_offset(uint32_t a, uint32_t span) {
  return span == 0 ? a : a ^ (((a >> 7) & (span / 16 - 1)) << 4);
}

namespace hopper {

struct Barrier {
  uint32_t expected = 0;  // arrivals per phase (mbarrier.init count)
  int64_t pending = 0;    // arrivals still missing in the current phase
  int64_t tx = 0;         // transaction bytes announced by expect_tx and not yet delivered
  uint32_t completed = 0; // phases completed; the current phase's parity is completed & 1
  // What the arrivals of the phase in progress know of retired wgmma reads (Thread::released,
  // joined), and that of the last completed phases, for the threads that wait on them.
  std::vector<uint32_t> arriving;
  std::map<uint32_t, std::vector<uint32_t>> released;  // phase index -> join of its arrivals
  // The same for the arrivals' global-memory acquires (detail::Thread::acquired, per counter
  // word): mbarrier.arrive releases at CTA scope, so a phase's waiters get them (emu_global.cpp).
  detail::Acquires arriving_acquired;
  std::map<uint32_t, detail::Acquires> acquired;  // phase index -> join of its arrivals'
};

/** A bulk tensor copy in flight: it lands when a thread waits on its mbarrier (never earlier),
 *  so a read that does not wait sees unlanded bytes. */
struct BulkCopy {
  uint32_t bar;  // the mbarrier's shared offset
  int issuer;
  uint32_t swizzle;
  uint32_t bytes;
  bool landed = false;
  std::vector<std::pair<uint32_t, std::array<uint8_t, 16>>> chunks;  // shared offset (swizzled), data
};

/** What the emulator knows about one 16-byte chunk of dynamic shared memory. */
struct Chunk {
  int32_t copy = -1;             // a bulk copy in flight into it (index into Block::copies)
  uint32_t bar = UINT32_MAX;     // landed by a bulk copy completing on this mbarrier ...
  uint32_t phase = 0;            // ... in this phase (visible to who waited for phase + 1 completions)
  int16_t swizzle = -1;          // the landed copy's swizzle span; -1: not written by a bulk copy
  int16_t reader_group = -1;     // the last wgmma that read it: warpgroup, its issue number, and
  uint32_t reader_seq = 0;       // the __syncthreads epoch of the read
  uint32_t reader_epoch = 0;
};

struct PendingMma {
  float* d;
  int group;  // -1 until wgmma.commit_group
  uint32_t seq;
  std::vector<float> values;
  const uint32_t* a = nullptr;       // register operand A (wgmma_rs), and its bits at issue
  std::array<uint32_t, 4> a_bits{};
};

/** What an in-flight wgmma leaves in its accumulators: a signalling NaN, so that arithmetic on it
 *  (a rescale, an add: each quiets it) as well as a store shows at the next look (issue or
 *  wgmma.wait_group), and a read that reaches the output shows as NaN. */
constexpr uint32_t kInFlightBits = 0x7fa1f11eu;

struct ThreadState {
  std::map<uint32_t, uint32_t> observed;  // mbarrier -> completions this thread has waited for
  uint64_t spin_events = 0;               // barrier events seen at the last failed try_wait ...
  uint32_t spins = 0;                     // ... and failed try_waits since any barrier changed
  bool fenced = false;                    // wgmma.fence since the accumulators were last accessible
  uint32_t proxy_fences_at_wgmma_fence = 0;  // its fence.proxy.async count at its last wgmma.fence
  int committed = 0;
  uint32_t retired = 0;                   // wgmma issue numbers below this have landed
  // A vector clock of what this thread knows through its own wait_group and fence.proxy.async and
  // the mbarrier phases it waited for, joined from their arrivals: at index w (a warpgroup), the
  // wgmma issue numbers of w below this are retired; at fence_slot(t), thread t's first this
  // many fence.proxy.async are ordered before this thread's next step.
  std::vector<uint32_t> released;
  std::vector<PendingMma> mma;
};

/** One warpgroup's wgmma rendezvous: each of its 128 threads deposits its operands. */
struct GroupLane {
  float* d;
  float c[128];
  uint32_t a[4];
  const uint32_t* a_ptr;
  uint64_t desc_a, desc_b;
};
struct Warpgroup {
  int arrived = 0;
  int n = 0;
  MmaType type = MmaType::bf16;
  bool trans_a = false, trans_b = false, regs_a = false, accumulate = false;
  uint32_t issued = 0;
  GroupLane lanes[128];
};

struct Block {
  int nthreads = 0;
  size_t shared_bytes = 0;
  bool active = false;  // a Hopper primitive ran in this block: the tables below are sized
  std::map<uint32_t, Barrier> barriers;
  std::vector<Warpgroup> groups;
  std::vector<BulkCopy> copies;
  std::vector<Chunk> chunks;
  std::vector<ThreadState> threads;
  std::vector<uint32_t> synced_fences;  // each thread's fence.proxy.async count at the last __syncthreads
  uint64_t events = 0;  // arrivals, deliveries and phase completions so far
  bool deadlocked = false;
};

extern Block g;

/** Sizes the per-block tables on the block's first Hopper primitive, so that the blocks of
 *  other kernels cost nothing (every public primitive calls it first). */
void activate();

/** Records that thread `tid` has waited for `completions` phases of the mbarrier at `bar`. */
bool has_observed(int tid, uint32_t bar, uint32_t completions);
/** The warpgroup's wgmma issue number below which every thread has retired its wgmmas. */
uint32_t group_retired(int group);
/** a = max(a, b) element-wise, growing a to b's size. */
void join(std::vector<uint32_t>& a, const std::vector<uint32_t>& b);
/** Where thread `tid`'s fence.proxy.async count lies in a ThreadState::released clock. */
inline size_t fence_slot(int tid) { return g.groups.size() + static_cast<size_t>(tid); }

// Hooks of the block scheduler (emu_runtime.cpp).
void block_begin(int nthreads, size_t shared_bytes);
/** A __syncthreads completed: every fence.proxy.async before it is ordered before every thread's next step. */
void block_sync();
void thread_end(int tid);
void block_end();

}  // namespace hopper
}  // namespace tidarc_emu
