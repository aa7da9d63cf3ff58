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
    Fold-norms (tidarc_gemm_abi.h, compiled in only where the unit's Reduction says kNormOut /
    kRowScale): a consumer (row_sumsq set) computes 1 / rms of its tile's tokens while the first
    TMA copies are in flight (threads t and t + 128 of each warpgroup: its tokens t, t + 128),
    parks them in its warpgroup's slice of ring stage 1 after the mainloop and scales every sum
    by it before the bias and SwiGLU. A producer (norm_weight set) writes norm_out beside out and,
    since each consumer warpgroup's 64 weight rows are exactly one 64-column chunk of a token's
    row but spread over its four warps, stages y of 32 tokens at a time through its slice of
    ring stage 0 (XOR-swizzled: no bank conflicts), sums the design's fixed tree in two steps
    (per column residue j: C_j = ((s_j + s_j+32) + (s_j+16 + s_j+48)) + ((s_j+8 + s_j+40) +
    (s_j+24 + s_j+56)), a thread an item; then per token ((C0 + C4) + (C2 + C6)) + ((C1 + C5) +
    (C3 + C7)), a thread a token), which is the tree's levels 32 ... 1 exactly, so norm_sumsq
    has the mma.sync kernel's bits. Named barriers 1 + group (the warpgroup's 128 threads) order
    the staging; the ring is free once the warpgroup's last wgmma retired (every TMA copy landed
    before its last full wait, and only this warpgroup reads its W rows): a warpgroup barrier
    after the last wait, so no warp writes there before every warp's wait has returned.
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
  // Fold-norms staging in a warpgroup's W rows of ring stages 0 and 1 (64 x 64 16-bit: 8 KiB each).
  static constexpr int kNormTokens = 2 * kGemmSplitSumChunk;  // tokens of one store chunk (accumulators i / 4 of 8 tokens)
  static constexpr uint32_t kGroupWBytes = 64 * kGemmBlockK * 2;
  static_assert(C::kTileT / 2 % kGemmSplitSumChunk == 0 || C::kTileT <= 136, "the 256-token kernels' chunks are whole");
  static_assert(kNormTokens * 64 * 4 <= kGroupWBytes, "a chunk's float32 y fits the warpgroup's stage-0 W rows");
  static_assert(C::kTileT * 4 <= 4096 && 4096 + kNormTokens * 8 * 8 <= kGroupWBytes, "1 / rms of the tile, then the chunk's residue sums, fit its stage-1 W rows");
};

// Fold-norms consumer: 1 / rms of source row `r` from a producer's chunk sums (tidarc_gemm_abi.h:
// the chunks in increasing order, then tidarc_op_rmsnorm's expression).
__device__ __forceinline__ float gemm_norm_inv(const TidarcGemmArgs& a, int r) {
  const double* s = a.row_sumsq + static_cast<size_t>(r) * a.sumsq_chunks;
  double total = 0.0;
#pragma unroll 4
  for (int c = 0; c < a.sumsq_chunks; ++c) total += s[c];
  return static_cast<float>(1.0 / sqrt(total / static_cast<double>(a.norm_cols) + static_cast<double>(a.norm_eps)));
}

// Word offset of y of (chunk token `local`, column `col` of the warpgroup's 64) in the staging
// tile: float4 groups XOR-swizzled by the token, conflict-free for both the accumulator layout's
// stores and the residue sums' loads.
__device__ __forceinline__ int gemm_norm_stage_at(int local, int col) {
  const int f = ((local << 1) & 6) ^ (((local >> 2) & 1) * 3);
  return local * 64 + ((((col >> 2) ^ f) & 15) << 2) + (col & 3);
}

// The warpgroup's barrier (named barrier 1 + group, 128 threads; bar.sync's id is an immediate).
template <int kConsumers>
__device__ __forceinline__ void gemm_group_sync(int group) {
  if (kConsumers == 1 || group == 0) named_barrier_sync<1, 128>();
  else named_barrier_sync<2, 128>();
}

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
  constexpr int kInvs = (C::kTileT + 127) / 128;  // fold-norms consumer: this thread's tokens t, t + 128 of the tile
  // 1 / rms while the first copies are in flight (row_sumsq is the previous kernel's: after the
  // PDL wait), held through the k loop; the 256-token kernels (two values a thread) compute
  // them after it: held through it, they spilled the split-K kernel of a unit with both codes
  // (its k loop already at the 168 registers ptxas allows 288 threads).
  constexpr bool kInvEarly = kInvs == 1;
  float inv_own[kInvs];
  if constexpr (C::kRowScale && kInvEarly) {
    if (a.row_sumsq != nullptr) {
#pragma unroll
      for (int j = 0; j < kInvs; ++j) {
        const int tt = t + 128 * j;
        inv_own[j] = tt < C::kTileT && t0 + tt < a.rows ? gemm_norm_inv(a, t0 + tt) : 0.0f;
      }
    }
  }
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
  if constexpr (C::kNormOut || C::kRowScale) {
    // The fold-norms scratch below overwrites W rows of stages 0 and 1 that the warpgroup's last
    // wgmmas may have read: each warp's wait covers its own view of them, so the whole warpgroup
    // waits before any warp writes there (not relying on one warp's wait retiring the others').
    gemm_group_sync<S::kConsumers>(group);
  }

  // Accumulator i of thread t: weight row 16 (t / 32) + (t % 32) / 4 + 8 ((i / 2) % 2), token 8 (i / 4) + 2 (t % 4) + i % 2.
  const int wrow = w0 + 64 * group + 16 * (t / 32) + (t % 32) / 4;
  // Fold-norms scratch: the warpgroup's W rows of ring stages 0 (y of a chunk) and 1 (1 / rms, then residue sums).
  // Their offset from an opaque copy of `group`: sharing the mainloop's group * 8192 (the W
  // descriptor's), ptxas 13.0 serialized every wgmma (C7515) of the kernels that stage y.
  int sgroup = group;
  asm volatile("" : "+r"(sgroup));
  float* const norm_y = reinterpret_cast<float*>(ring + sgroup * S::kGroupWBytes);
  float* const inv_tile = reinterpret_cast<float*>(ring + S::kStageBytes + sgroup * S::kGroupWBytes);
  double* const norm_c = reinterpret_cast<double*>(ring + S::kStageBytes + sgroup * S::kGroupWBytes + 4096);
  if constexpr (C::kRowScale) {
    if (a.row_sumsq != nullptr) {
#pragma unroll
      for (int j = 0; j < kInvs; ++j) {
        const int tt = t + 128 * j;
        if (tt < C::kTileT) inv_tile[tt] = kInvEarly ? inv_own[j] : t0 + tt < a.rows ? gemm_norm_inv(a, t0 + tt) : 0.0f;
      }
      gemm_group_sync<S::kConsumers>(group);  // every token's 1 / rms is in inv_tile
    }
  }
  // Fold-norms producer: accumulator i's y (r, n its place) to norm_out and the staging tile;
  // 0 past N (the tree's zeros) and past rows (summed, never stored).
  const auto norm_stage = [&](int i, int r, int n, float y) {
    const bool live = r < a.rows && n < C::kN;
    if (live) static_cast<typename C::T*>(a.norm_out)[static_cast<size_t>(r) * C::kN + n] = Elem<typename C::T>::from_float(__fmul_rn(a.norm_weight[n], y));
    norm_y[gemm_norm_stage_at(8 * (i / 4) % S::kNormTokens + 2 * (t % 4) + i % 2, n - w0 - 64 * group)] = live ? y : 0.0f;
  };
  // The 256-token producers at split-K > 1 stage y after the split-K sum, from out (each thread
  // reads back its own stores): done inside its chunks, the sum's loop spilled 4-24 bytes (its k
  // loop already takes the 168 registers ptxas allows 288 threads).
  constexpr bool kNormAfter = C::kSplitK > 1 && C::kTileT > 136;
  const auto store = [&](int i, bool norm) {  // the epilogue of accumulator i (SwiGLU: of i and i + 2); norm: a producer's staging too
    const int r = t0 + 8 * (i / 4) + 2 * (t % 4) + i % 2, n = wrow + 8 * ((i / 2) % 2);
    if (r >= a.rows || n >= C::kN) {
      if constexpr (C::kNormOut) {
        if (norm && a.norm_weight != nullptr) norm_stage(i, r, n, 0.0f);
      }
      return;
    }
    float v = d[i];
    float inv = 1.0f;
    if constexpr (C::kRowScale) {
      if (a.row_sumsq != nullptr) inv = inv_tile[r - t0], v = __fmul_rn(v, inv);  // before the bias and the epilogue
    }
    if (a.epilogue == TIDARC_GEMM_EPILOGUE_SWIGLU) {
      // Weight rows interleave gate | up in blocks of 8: this thread's row n (i / 2 even) is a
      // gate row and accumulator i + 2 the up row 8 further, of the same token.
      if ((i / 2) % 2 == 0) {
        float up = d[i + 2];
        if constexpr (C::kRowScale) {
          if (a.row_sumsq != nullptr) up = __fmul_rn(up, inv);
        }
        gemm_store_swiglu<C>(a, r, n, v, up);
      }
    } else {
      float* out = gemm_out<C>(a, r, n);
      float y = v;
      if (a.bias != nullptr) y += a.bias[n];
      if (a.accumulate) y += *out;
      *out = y;
      if constexpr (C::kNormOut) {
        if (norm && a.norm_weight != nullptr) norm_stage(i, r, n, y);
      }
    }
  };
  // Fold-norms producer, after accumulators [c, end) (tokens [2c, 2 end) of the tile) stored and
  // staged their y: the tree's chunk sum of each of those tokens into norm_sumsq.
  const auto norm_sums = [&](int c, int end) {
    constexpr int kChunks = (C::kN + 63) / 64;
    const int chunk = (w0 + 64 * group) / 64, tokens = 2 * (end - c);
    gemm_group_sync<S::kConsumers>(group);  // the chunk's y is staged (and the last chunk's sums read)
    // One item at a time (#pragma unroll 1): both a thread's items at once spilled the split-K
    // 256-token producers, whose k loop already takes the 168 registers ptxas allows 288 threads.
#pragma unroll 1
    for (int item = t; item < 8 * tokens; item += 128) {
      const int local = item >> 3, j = item & 7;
      const auto sq = [&](int m) {  // column j + 8 m, squared: exact in float64
        const double y = norm_y[gemm_norm_stage_at(local, j + 8 * m)];
        return y * y;
      };
      // Levels 32 (m, m + 4), 16 (m, m + 2) and 8 (m, m + 1) of the tree over the columns j + 8 m.
      const double lo = (sq(0) + sq(4)) + (sq(2) + sq(6));
      norm_c[local * 8 + (j ^ ((local >> 1) & 7))] = lo + ((sq(1) + sq(5)) + (sq(3) + sq(7)));
    }
    gemm_group_sync<S::kConsumers>(group);  // the residue sums are in; y may be staged again
    if (t < tokens && chunk < kChunks && t0 + 2 * c + t < a.rows) {
      const double* cj = norm_c + t * 8;
      const int sw = (t >> 1) & 7;
      // Levels 4, 2 and 1 over the residues j = 0 ... 7.
      const double sum = ((cj[0 ^ sw] + cj[4 ^ sw]) + (cj[2 ^ sw] + cj[6 ^ sw])) + ((cj[1 ^ sw] + cj[5 ^ sw]) + (cj[3 ^ sw] + cj[7 ^ sw]));
      a.norm_sumsq[static_cast<size_t>(t0 + 2 * c + t) * kChunks + chunk] = sum;
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
      for (int i = c; i < end; ++i) store(i, !kNormAfter);
      if constexpr (C::kNormOut && !kNormAfter) {
        if (a.norm_weight != nullptr) norm_sums(c, end);
      }
    };
    const bool last = gemm_split_sum_if_last<C, C::kTileT / 2>(a, split, at, [&](int i) -> float& { return d[i]; }, sync, chunk);
    if constexpr (C::kNormOut && kNormAfter) {
      if (last && a.norm_weight != nullptr) {
#pragma unroll 1
        for (int c = 0; c < C::kTileT / 2; c += kGemmSplitSumChunk) {
#pragma unroll
          for (int q = 0; q < kGemmSplitSumChunk; ++q) {
            const int i = c + q, r = t0 + 8 * (i / 4) + 2 * (t % 4) + i % 2, n = wrow + 8 * ((i / 2) % 2);
            norm_stage(i, r, n, r < a.rows && n < C::kN ? *gemm_out<C>(a, r, n) : 0.0f);  // this thread's own store of y
          }
          norm_sums(c, c + kGemmSplitSumChunk);
        }
      }
    }
  } else if constexpr (C::kNormOut) {
    // Chunks of the split-K sum's size: 32 tokens' y at a time in the staging tile.
#pragma unroll
    for (int c = 0; c < C::kTileT / 2; c += kGemmSplitSumChunk) {
      const int end = c + kGemmSplitSumChunk < C::kTileT / 2 ? c + kGemmSplitSumChunk : C::kTileT / 2;
#pragma unroll
      for (int i = c; i < end; ++i) store(i, true);
      if (a.norm_weight != nullptr) norm_sums(c, end);
    }
  } else {
#pragma unroll
    for (int i = 0; i < C::kTileT / 2; ++i) store(i, false);
  }
}

}  // namespace tidarc
