/*! tidarc sm_90a GEMM (the Hopper path of the linear layers): out^T = W x^T with one producer
    warp issuing TMA loads of a W tile (64 C::kConsumers weight rows x 64 k) and an x tile
    (C::kTileT tokens x 64 k) into a C::kStages ring guarded by mbarriers (full: both copies
    landed; empty: every consumer warpgroup is done with the stage), and C::kConsumers (1 or 2)
    consumer warpgroups, 64 weight rows each, running wgmma m64nTk16 (T = the token tile) on
    them, fp32 accumulation. One consumer at the memory-bound token tiles: twice the output tiles,
    so the split-K rule takes fewer parts (gemm-plan.ts) and twice the CTAs sum them; two past it
    (each x tile then serves 128 weight rows: half the L2 traffic of the activations).

    Batch invariance by construction: an output element is the wgmma accumulator of one
    (weight row, token) pair summed over 16-k steps in increasing k, k tiles in increasing
    order, the split-K parts summed in increasing order by the output tile's last CTA
    (tidarc_gemm.cuh's gemm_split_sum_if_last, in the same launch), then the bias, then the old
    out. The token tile only says how many tokens share each wgmma, never
    the order of a sum; that the tensor core's fp32 sum of one element is the same for every N
    of wgmma is a property of the hardware the emulator cannot prove (the device check tests it).

    Mainloop (as test/emulate/fixtures/hopper_gemm_tile.cu): wgmma.wait_group 1 lets this
    k tile's group run while the previous stage, now retired, is released to the producer.
    ABI: tidarc_gemm_sm90a_abi.h. Grid: (ceil(rows / kTileT), ceil(N / (64 kConsumers)), split-K). */
#pragma once
#include "tidarc_gemm.cuh"
#include "tidarc_gemm_sm90a_abi.h"
#include "tidarc_hopper.cuh"

namespace tidarc {

/** Shared memory of a config: a 1024-byte aligned ring (the 128B swizzle pattern), then the mbarriers (full, empty, the split-K sum's). */
template <class C> struct GemmSm90aShape {
  static constexpr int kConsumers = C::kConsumers;
  static constexpr int kBlockW = 64 * kConsumers;  // weight rows per CTA (wgmma M of every consumer warpgroup)
  static constexpr int kThreads = 128 * kConsumers + 32;  // the consumers, then the producer warp
  static constexpr uint32_t kWBytes = kBlockW * kGemmBlockK * 2;
  static constexpr uint32_t kXBytes = C::kTileT * kGemmBlockK * 2;
  static constexpr uint32_t kStageBytes = kWBytes + kXBytes;
  static constexpr uint32_t kSmem = 1024 + C::kStages * kStageBytes + (2 * C::kStages + 1) * 8;
  static constexpr int kKTiles = (C::kK + kGemmBlockK - 1) / kGemmBlockK;
  static_assert(C::kTileT % 8 == 0 && C::kTileT >= 8 && C::kTileT <= 256, "wgmma N is 8..256 in steps of 8");
  static_assert(kXBytes % 1024 == 0 && kWBytes % 1024 == 0, "every tile starts on a 128B swizzle pattern");
  static_assert(C::kStages >= 2, "the ring needs two stages");
  static_assert(kConsumers == 1 || kConsumers == 2, "one or two consumer warpgroups");
};

template <class C>
__device__ __forceinline__ void gemm_sm90a_kernel(const TidarcGemmSm90aArgs& args) {
  using S = GemmSm90aShape<C>;
  using T = typename C::T;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* ring = smem_raw + ((1024 - smem_addr(smem_raw) % 1024) % 1024);
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + C::kStages * S::kStageBytes);
  uint64_t* empty = full + C::kStages;
  // The consumers' barrier in the split-K sum: an mbarrier of their threads alone, since the
  // producer warp has left (a __syncthreads it joined put the wgmmas on a "divergent path", C7518).
  uint64_t* split_sync = empty + C::kStages;
  const TidarcGemmArgs& a = args.g;
  const int t0 = blockIdx.x * C::kTileT, w0 = blockIdx.y * S::kBlockW, split = blockIdx.z;
  const int kt0 = split * C::kKTilesPerSplit;
  const int k_tiles = C::kKTilesPerSplit < S::kKTiles - kt0 ? C::kKTilesPerSplit : S::kKTiles - kt0;  // the plan leaves no part empty
  if (threadIdx.x == 0) {
    for (int s = 0; s < C::kStages; ++s) mbarrier_init(&full[s], 1), mbarrier_init(&empty[s], S::kConsumers);
    if (C::kSplitK > 1) mbarrier_init(split_sync, 128 * S::kConsumers);
    fence_barrier_init();
  }
  __syncthreads();

  if (threadIdx.x / 32 == 4 * S::kConsumers) {  // producer warp: one thread issues every copy
    if (threadIdx.x % 32 == 0) {
      const auto* wmap = reinterpret_cast<const TensorMap*>(&args.w);
      const auto* xmap = reinterpret_cast<const TensorMap*>(&args.x);
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int s = kt % C::kStages;
        if (kt >= C::kStages) mbarrier_wait(&empty[s], (kt / C::kStages - 1) & 1);  // every consumer released it
        mbarrier_arrive_expect_tx(&full[s], S::kStageBytes);  // boxes past N, K or rows land as zeros, counted
        unsigned char* stage = ring + s * S::kStageBytes;
        tma_load_2d(stage, wmap, (kt0 + kt) * kGemmBlockK, w0, &full[s]);
        tma_load_2d(stage + S::kWBytes, xmap, (kt0 + kt) * kGemmBlockK, t0, &full[s]);
      }
    }
    return;  // the split-K sum below syncs the consumers alone (split_sync)
  }

  const int group = threadIdx.x / 128, t = threadIdx.x % 128;
  float d[C::kTileT / 2];
#pragma unroll
  for (int i = 0; i < C::kTileT / 2; ++i) d[i] = 0.0f;
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int s = kt % C::kStages;
    mbarrier_wait(&full[s], (kt / C::kStages) & 1);
    unsigned char* stage = ring + s * S::kStageBytes;
    // K-major 128B-swizzled tiles: 8-row groups 1024 bytes apart; the k-th 16 columns 32 bytes on (>> 4: 2).
    const uint64_t desc_w = smem_desc(stage + group * 64 * kGemmBlockK * 2, Swizzle::b128, 16, 1024);
    const uint64_t desc_x = smem_desc(stage + S::kWBytes, Swizzle::b128, 16, 1024);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kGemmBlockK / 16; ++kk) wgmma_ss<T, C::kTileT, false, false>(d, desc_w + 2 * kk, desc_x + 2 * kk, kt > 0 || kk > 0);
    wgmma_commit();
    wgmma_wait<1>();
    if (t == 0 && kt > 0) mbarrier_arrive(&empty[(kt - 1) % C::kStages]);  // the previous k tile's group has retired
  }
  wgmma_wait<0>();  // nobody refills the last stage: no release
  wgmma_fence_operand(d);  // the epilogue's reads of d stay after the wait

  // Accumulator i of thread t: weight row 16 (t / 32) + (t % 32) / 4 + 8 ((i / 2) % 2), token 8 (i / 4) + 2 (t % 4) + i % 2.
  const int wrow = w0 + 64 * group + 16 * (t / 32) + (t % 32) / 4;
  const auto store = [&](int i) {  // the epilogue of accumulator i (SwiGLU: of i and i + 2)
    const int r = t0 + 8 * (i / 4) + 2 * (t % 4) + i % 2, n = wrow + 8 * ((i / 2) % 2);
    if (r >= a.rows || n >= C::kN) return;
    const float v = d[i];
    if (a.epilogue == TIDARC_GEMM_EPILOGUE_SWIGLU) {
      // Weight rows interleave gate | up in blocks of 8: this thread's row n (i / 2 even) is a
      // gate row and accumulator i + 2 the up row 8 further, of the same token.
      if ((i / 2) % 2 == 0) gemm_store_swiglu<C>(a, r, n, v, d[i + 2]);
    } else {
      float* out = gemm_out<C>(a, r, n);
      float y = v;
      if (a.bias != nullptr) y += a.bias[n];
      if (a.accumulate) y += *out;
      *out = y;
    }
  };
  if constexpr (C::kSplitK > 1) {
    const auto at = [&](int i, int& r, int& n) {
      r = t0 + 8 * (i / 4) + 2 * (t % 4) + i % 2, n = wrow + 8 * ((i / 2) % 2);
      return r < a.rows && n < C::kN;
    };
    uint32_t phase = 0;
    const auto sync = [&] { mbarrier_arrive(split_sync), mbarrier_wait(split_sync, phase), phase ^= 1; };
    // The last CTA stores each chunk of sums as soon as it holds them (chunks are whole groups
    // of 4, so a SwiGLU pair i, i + 2 is in one): after the partials' stores only one chunk is
    // live, not all kTileT / 2 sums. Summed whole first, the 256-token kernel needed more than
    // the 168 registers ptxas allows 288 threads (9 warps take 12 warps' share) and spilled
    // 152-184 bytes; each element's sum and epilogue are unchanged, so its bits are too.
    static_assert(kGemmSplitSumChunk % 4 == 0, "a SwiGLU pair stays in one chunk");
    const auto chunk = [&](int c, int end) {
#pragma unroll
      for (int i = c; i < end; ++i) store(i);
    };
    gemm_split_sum_if_last<C, C::kTileT / 2>(a, split, at, [&](int i) -> float& { return d[i]; }, sync, chunk);
  } else {
#pragma unroll
    for (int i = 0; i < C::kTileT / 2; ++i) store(i);
  }
}

}  // namespace tidarc
