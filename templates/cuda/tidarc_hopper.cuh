/*! tidarc Hopper (sm_90a) device primitives: the ONLY inline PTX of the sm_90a kernels, with the
    same names on the CPU SIMT emulator (runtime/emu/emu_hopper_*.cpp) as tidarc_device.cuh has.

    What each primitive does, and what the emulator checks (its findings, by kind):
    - mbarrier_init / _arrive / _arrive_expect_tx / _try_wait(parity) / mbarrier_wait: a 64-bit
      barrier in shared memory that completes a phase when `count` arrivals AND every announced
      transaction byte (expect_tx) have come; try_wait.parity(p) is true once the phase of parity
      p has completed (the current phase's parity is completions & 1). Emulator: "mbarrier" for a
      use before init, more arrivals than the count, more bytes delivered than announced, and a
      wait whose phase can never complete (reported with its missing arrivals and bytes; the
      waiters are then let through so that the block ends).
    - tma_load_2d / _3d (cp.async.bulk.tensor.tile, completing on an mbarrier): one thread copies
      a box of a global tensor, described by a tensor map (CUtensorMap: base, dims, byte strides,
      box, element size, swizzle), into shared memory, densely, then swizzled: the 16-byte chunk c
      of 128-byte line l moves to c ^ (l mod span/16) for spans 32/64/128 B (PTX ISA "Swizzling
      Modes"); elements outside the tensor are zero and still count as delivered bytes.
      Emulator: the copy lands only when a thread waits on its mbarrier, so "tma" for a wgmma
      reading bytes of a copy not yet complete, or delivered in a phase its warpgroup has not waited
      for; for a copy into bytes another copy is still filling, or that a wgmma not yet retired
      still reads, or whose release (an arrival after wgmma_wait, on an mbarrier the issuer then
      waited on) the issuing thread never saw; "alignment" when a destination is
      not 128-byte aligned or, swizzled, not at its pattern's start (8 x span bytes), which the
      descriptors below assume (base offset 0).
    - fence_proxy_async: orders this thread's generic-proxy shared stores before later
      async-proxy reads (wgmma, TMA stores). Emulator: "proxy" for a wgmma reading bytes stored
      with st_shared_16 whose writer has not fenced since (plain C++ stores are not tracked).
    - named_barrier_sync / _arrive<Id, Count> (bar.sync / bar.arrive, immediate operands): a
      barrier of Count threads that some threads wait at and others only pass, to order
      warpgroups (the consumers' ping-pong). Emulator (whose tests also pass them as arguments):
      "barrier" for an id outside 1..15, a count that is not a multiple of 32 up to the block's
      threads, arrivals of one phase with different counts, and a bar.sync that never completes
      (reported when nothing else can run).
    - setmaxnreg_inc / _dec: moves registers between warpgroups (a producer keeps few). Emulator:
      nothing (no register file).
    - wgmma_ss / wgmma_rs (wgmma.mma_async.m64nNk16, bf16/fp16 in, fp32 accumulate): a warpgroup
      (4 warps, 128 threads) multiplies A (64 x 16: shared memory through a descriptor, or the
      mma.m16n8k16 A fragment of each warp's 16 rows in registers) by B (16 x N, shared memory)
      into the accumulators: register i of thread t holds row 16 (t / 32) + (t % 32) / 4 +
      8 ((i / 2) % 2), column 8 (i / 4) + 2 (t % 4) + i % 2. A descriptor (wgmma_desc) holds the
      start address, the leading and stride byte offsets and the swizzle (PTX ISA "Matrix
      Descriptor Format"); K-major tiles as TMA writes them: 8-row groups SBO apart (8 x span for
      a swizzled tile), and the k-th 16-column slice starts 32 k bytes later. wgmma_fence before
      the first wgmma after the accumulators were touched, wgmma_commit closes a group,
      wgmma_wait<n> waits until at most n groups are in flight. Emulator: results land only at
      wgmma_wait (the accumulators read NaN until then); "wgmma" for a wgmma with no fence since
      the last wait, and for results never retired; "descriptor" for a descriptor whose swizzle
      differs from the one the bytes were copied with, a zero byte offset it needs, a K slice
      crossing a swizzle row, or a start past its pattern's first line; "alignment" for a
      descriptor address that is not 16-byte aligned; "out-of-bounds" for a matrix beyond the
      dynamic shared memory.
    Cost of the emulation: each wgmma is 64 x N x 16 scalar fmas on one CPU thread; fine for tiles
    of tests, not for whole models. */
#pragma once
#include "tidarc_device.cuh"

namespace tidarc {

/** A swizzle span in bytes; the tensor map and the wgmma descriptor encode it differently. */
enum class Swizzle : uint32_t { none = 0, b32 = 32, b64 = 64, b128 = 128 };

/** wgmma matrix descriptor (PTX ISA): start, leading and stride byte offsets as (x & 0x3FFFF) >> 4
 *  in bits 0-13, 16-29, 32-45; base offset 0 (bits 49-51); layout type in bits 62-63:
 *  0 none, 1 128B, 2 64B, 3 32B. */
__host__ __device__ constexpr uint64_t wgmma_desc(uint32_t smem_address, Swizzle s, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  const uint64_t layout = s == Swizzle::b128 ? 1 : s == Swizzle::b64 ? 2 : s == Swizzle::b32 ? 3 : 0;
  return static_cast<uint64_t>((smem_address & 0x3ffff) >> 4) | (static_cast<uint64_t>((lbo_bytes & 0x3ffff) >> 4) << 16) |
         (static_cast<uint64_t>((sbo_bytes & 0x3ffff) >> 4) << 32) | (layout << 62);
}

}  // namespace tidarc

#ifdef TIDARC_EMULATOR
#include "emu_hopper_device.h"  // runtime/emu: the same primitives on the CPU SIMT emulator
#else
#include <cuda.h>

namespace tidarc {

using TensorMap = CUtensorMap;
template <typename T> constexpr bool kIsBf16 = false;
template <> constexpr bool kIsBf16<__nv_bfloat16> = true;

// ---- mbarriers ---------------------------------------------------------------------------
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" :: "r"(smem_addr(bar)), "r"(count) : "memory");
}
/** Makes the inits visible to the async proxy (TMA) before any copy completes on them. */
__device__ __forceinline__ void fence_barrier_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" :: "r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" :: "r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ bool mbarrier_try_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
               : "=r"(done) : "r"(smem_addr(bar)), "r"(parity) : "memory");
  return done != 0;
}

// ---- bulk tensor copies (TMA) and the async proxy -----------------------------------------
__device__ __forceinline__ void tma_load_2d(void* dst, const TensorMap* map, int32_t c0, int32_t c1, uint64_t* bar) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n"
               :: "r"(smem_addr(dst)), "l"(map), "r"(c0), "r"(c1), "r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void tma_load_3d(void* dst, const TensorMap* map, int32_t c0, int32_t c1, int32_t c2, uint64_t* bar) {
  asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n"
               :: "r"(smem_addr(dst)), "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void check_descriptor_address(const void*) {}

// ---- register reallocation (FA3's split: a producer warpgroup gives registers to the consumers) --
// Every thread of the warpgroup executes it; Registers is a multiple of 8 in 24..256 (PTX ISA).
template <int Registers> __device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(Registers % 8 == 0 && Registers >= 24 && Registers <= 256, "setmaxnreg: a multiple of 8 in 24..256");
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" :: "n"(Registers));
}
template <int Registers> __device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(Registers % 8 == 0 && Registers >= 24 && Registers <= 256, "setmaxnreg: a multiple of 8 in 24..256");
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" :: "n"(Registers));
}

// ---- named barriers (the consumer warpgroups' ping-pong) ------------------------------------
// bar.sync waits until Threads threads (a multiple of 32) arrived at barrier Id (1..15; 0 is
// __syncthreads'); bar.arrive counts the caller and goes on. The id is an immediate: ptxas counts
// the barriers a kernel uses from the ids it can see, and one id in a register reserves all 16.
template <uint32_t Id, uint32_t Threads> __device__ __forceinline__ void named_barrier_sync() {
  static_assert(Id >= 1 && Id <= 15 && Threads % 32 == 0, "bar.sync: id 1..15 (0 is __syncthreads'), threads a multiple of 32");
  asm volatile("bar.sync %0, %1;\n" :: "n"(Id), "n"(Threads) : "memory");
}
template <uint32_t Id, uint32_t Threads> __device__ __forceinline__ void named_barrier_arrive() {
  static_assert(Id >= 1 && Id <= 15 && Threads % 32 == 0, "bar.arrive: id 1..15 (0 is __syncthreads'), threads a multiple of 32");
  asm volatile("bar.arrive %0, %1;\n" :: "n"(Id), "n"(Threads) : "memory");
}

// ---- wgmma -----------------------------------------------------------------------------------
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int Pending> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" :: "n"(Pending) : "memory");
}
/** Pins accumulator registers in program order (CUTLASS's warpgroup_fence_operand): the wait above
 *  has no register operands, so without this the compiler may move a read of an accumulator a
 *  wgmma still writes to before the wait. Call it on the accumulators after each wgmma_wait. */
template <int N> __device__ __forceinline__ void wgmma_fence_operand(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i]) :: "memory");
}

// The accumulators are N / 2 "+f" operands, and nvcc's inline PTX takes no operand array, no pack
// expansion ("+f"(d[I])...: "expected a )") and no named operand (%[a]), so every N needs its
// own literal operand list and operand numbers. One macro writes the specialisation of an N from
// its row of the table below; a row names the accumulators' list and "+f" operands (K = N / 2 of
// them, %0 .. %K-1) and the numbers of the operands after them, K .. K + 6: ss takes a, b, acc,
// TA, TB there, rs the 4 A registers, b, acc, TB. More N (multiples of 8 up to 256): one more row.
#define TIDARC_PCT10(t) "%" #t "0, %" #t "1, %" #t "2, %" #t "3, %" #t "4, %" #t "5, %" #t "6, %" #t "7, %" #t "8, %" #t "9, "
#define TIDARC_PCT_0_59 TIDARC_PCT10() TIDARC_PCT10(1) TIDARC_PCT10(2) TIDARC_PCT10(3) TIDARC_PCT10(4) TIDARC_PCT10(5)
#define TIDARC_WGMMA_D4 "{%0, %1, %2, %3}"
#define TIDARC_WGMMA_D8 "{%0, %1, %2, %3, %4, %5, %6, %7}"
#define TIDARC_WGMMA_D16 "{" TIDARC_PCT10() "%10, %11, %12, %13, %14, %15}"
#define TIDARC_WGMMA_D32 "{" TIDARC_PCT10() TIDARC_PCT10(1) TIDARC_PCT10(2) "%30, %31}"
#define TIDARC_WGMMA_D64 "{" TIDARC_PCT_0_59 "%60, %61, %62, %63}"
#define TIDARC_WGMMA_D68 "{" TIDARC_PCT_0_59 "%60, %61, %62, %63, %64, %65, %66, %67}"
#define TIDARC_WGMMA_D128 "{" TIDARC_PCT_0_59 TIDARC_PCT10(6) TIDARC_PCT10(7) TIDARC_PCT10(8) TIDARC_PCT10(9) TIDARC_PCT10(10) TIDARC_PCT10(11) \
                          "%120, %121, %122, %123, %124, %125, %126, %127}"
#define TIDARC_F4(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define TIDARC_F8(i) TIDARC_F4(i), TIDARC_F4(i + 4)
#define TIDARC_F16(i) TIDARC_F8(i), TIDARC_F8(i + 8)
#define TIDARC_F32(i) TIDARC_F16(i), TIDARC_F16(i + 16)
#define TIDARC_F64(i) TIDARC_F32(i), TIDARC_F32(i + 32)
#define TIDARC_F68(i) TIDARC_F64(i), TIDARC_F4(i + 64)
#define TIDARC_F128(i) TIDARC_F64(i), TIDARC_F64(i + 64)

// wgmma.mma_async m64nNk16, f32 += type x type: A and B from descriptors (ss) or A from registers (rs).
#define TIDARC_WGMMA_SS_PTX(N, type, D, ka, kb, kacc, kta, ktb) \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %" #kacc ", 0;\nwgmma.mma_async.sync.aligned.m64n" #N "k16.f32." type "." type " " D ", %" #ka ", %" #kb ", p, 1, 1, %" #kta ", %" #ktb ";\n}\n"
#define TIDARC_WGMMA_RS_PTX(N, type, D, ka0, ka1, ka2, ka3, kb, kacc, ktb) \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %" #kacc ", 0;\nwgmma.mma_async.sync.aligned.m64n" #N "k16.f32." type "." type " " D ", {%" #ka0 ", %" #ka1 ", %" #ka2 ", %" #ka3 "}, %" #kb ", p, 1, 1, %" #ktb ";\n}\n"
#define TIDARC_WGMMA_SHAPE(N, D, OPS, k0, k1, k2, k3, k4, k5, k6)                                                                                      \
  template <> struct Wgmma<N> {                                                                                                                   \
    template <typename T, bool TA, bool TB> static __device__ __forceinline__ void ss(float (&d)[N / 2], uint64_t a, uint64_t b, int acc) {         \
      if constexpr (kIsBf16<T>) asm volatile(TIDARC_WGMMA_SS_PTX(N, "bf16", D, k0, k1, k2, k3, k4) : OPS : "l"(a), "l"(b), "r"(acc), "n"(int(TA)), "n"(int(TB))); \
      else asm volatile(TIDARC_WGMMA_SS_PTX(N, "f16", D, k0, k1, k2, k3, k4) : OPS : "l"(a), "l"(b), "r"(acc), "n"(int(TA)), "n"(int(TB)));                  \
    }                                                                                                                                             \
    template <typename T, bool TB> static __device__ __forceinline__ void rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t b, int acc) {    \
      if constexpr (kIsBf16<T>) asm volatile(TIDARC_WGMMA_RS_PTX(N, "bf16", D, k0, k1, k2, k3, k4, k5, k6) : OPS : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc), "n"(int(TB))); \
      else asm volatile(TIDARC_WGMMA_RS_PTX(N, "f16", D, k0, k1, k2, k3, k4, k5, k6) : OPS : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc), "n"(int(TB)));                  \
    }                                                                                                                                             \
  };

template <int N> struct Wgmma;
//                 N    accumulators       their operands                   operands K .. K + 6
TIDARC_WGMMA_SHAPE(8,   TIDARC_WGMMA_D4,   TIDARC_F4(0),                    4, 5, 6, 7, 8, 9, 10)
TIDARC_WGMMA_SHAPE(16,  TIDARC_WGMMA_D8,   TIDARC_F8(0),                    8, 9, 10, 11, 12, 13, 14)
TIDARC_WGMMA_SHAPE(32,  TIDARC_WGMMA_D16,  TIDARC_F16(0),                   16, 17, 18, 19, 20, 21, 22)
TIDARC_WGMMA_SHAPE(64,  TIDARC_WGMMA_D32,  TIDARC_F32(0),                   32, 33, 34, 35, 36, 37, 38)
TIDARC_WGMMA_SHAPE(128, TIDARC_WGMMA_D64,  TIDARC_F64(0),                   64, 65, 66, 67, 68, 69, 70)
TIDARC_WGMMA_SHAPE(136, TIDARC_WGMMA_D68,  TIDARC_F68(0),                   68, 69, 70, 71, 72, 73, 74)  // the sm_90a GEMM's 136-token tile (M = 272: 2 CTAs, no padding)
TIDARC_WGMMA_SHAPE(256, TIDARC_WGMMA_D128, TIDARC_F128(0),                  128, 129, 130, 131, 132, 133, 134)

template <typename T, int N, bool TransA, bool TransB>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  Wgmma<N>::template ss<T, TransA, TransB>(d, desc_a, desc_b, accumulate ? 1 : 0);
}
template <typename T, int N, bool TransB>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, bool accumulate) {
  Wgmma<N>::template rs<T, TransB>(d, a, desc_b, accumulate ? 1 : 0);
}

}  // namespace tidarc
#endif  // TIDARC_EMULATOR

namespace tidarc {

/** wgmma_fence_operand for A fragments in registers (wgmma_rs): the PTX ISA leaves a write to
 *  them undefined until the wgmma_wait that covers the wgmma reading them, and the wgmma's asm
 *  is their last use as far as nvcc knows. Call it after the issue and after that wait, so that
 *  their registers are neither reused nor rewritten in between. The emulator reads them in the
 *  issuing call: nothing to pin there. */
template <int N, int M> __device__ __forceinline__ void wgmma_fence_operand(uint32_t (&a)[N][M]) {
#ifndef TIDARC_EMULATOR
#pragma unroll
  for (int i = 0; i < N; ++i) {
#pragma unroll
    for (int j = 0; j < M; ++j) asm volatile("" : "+r"(a[i][j]) :: "memory");
  }
#else
  (void)a;
#endif
}

/** `v`, a value every lane of the warp already holds, as lane 0 holds it (CUTLASS's
 *  canonical_warp_idx_sync): ptxas then knows a branch on it is warp-uniform, which threadIdx.x / 32
 *  alone does not tell it (the sm_90a attention's role test: 10 and 6 fewer registers at head dim
 *  64 and 128). The emulator runs each thread's copy, all equal: nothing to broadcast. */
__device__ __forceinline__ int warp_uniform(int v) {
#ifndef TIDARC_EMULATOR
  return __shfl_sync(0xffffffffu, v, 0);
#else
  return v;
#endif
}

/** Spins on try_wait (the hardware suspends the thread for a while inside each try). */
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  while (!mbarrier_try_wait(bar, parity)) {
  }
}

/** The descriptor of a tile at `p` in shared memory. */
__device__ __forceinline__ uint64_t smem_desc(const void* p, Swizzle s, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  check_descriptor_address(p);
  return wgmma_desc(smem_addr(p), s, lbo_bytes, sbo_bytes);
}

}  // namespace tidarc
