/*! tidarc GEMM for the linear layers: out[rows, N] = x[rows, K] * w[N, K]^T on tensor cores
    (mma.sync m16n8k16, 16-bit inputs, float32 accumulation). One CTA owns a BLOCK_N slice of
    the weights and BLOCK_M token rows (all rows of a step up to 128), so each weight byte
    crosses HBM once per step. Weights stream through a kStages-deep cp.async pipeline of
    16-byte copies; activations (float32) are read a tile ahead into registers and rounded to
    16-bit as they are stored to shared memory. Shared tiles are rows of 64 elements (128
    bytes) with the 16-byte chunks XOR-swizzled by row, so ldmatrix reads 8 rows from 8
    different bank groups. Split-K parts write float32 partials; <kernel>_reduce sums them in
    a fixed order. The reduction order lives in Config's Reduction base (see <shape>.cu), which
    every kernel of a weight shape shares, so a row's result does not depend on M. */
#pragma once
#include "tidarc_device.cuh"
#include "tidarc_gemm_abi.h"

namespace tidarc {

constexpr int kGemmBlockK = 64;         // k per pipeline stage: one 128-byte row of 16-bit elements
constexpr int kGemmChunksPerRow = 8;    // 16-byte chunks in such a row (the swizzle period)
constexpr int kGemmReduceThreads = 256;

// Element offset of 16-byte chunk `chunk` of tile row `row` (rows of kGemmBlockK elements).
__device__ __forceinline__ int gemm_swizzle(int row, int chunk) {
  return row * kGemmBlockK + ((chunk ^ (row & 7)) * 8);
}

template <class C>
struct GemmShape {
  using T = typename C::T;
  static constexpr int kThreads = C::kWarpsM * C::kWarpsN * 32;
  static constexpr int kWarpM = C::kBlockM / C::kWarpsM;     // rows of a warp's tile
  static constexpr int kWarpN = C::kBlockN / C::kWarpsN;     // columns of a warp's tile
  static constexpr int kMTiles = kWarpM / 16;                // m16 fragments of a warp
  static constexpr int kNChunks = kWarpN / 8;                // n8 fragments of a warp
  static constexpr int kWStageElems = C::kBlockN * kGemmBlockK;
  static constexpr int kXStageElems = C::kBlockM * kGemmBlockK;
  static constexpr int kStageElems = kWStageElems + kXStageElems;
  static constexpr int kWCopies = C::kBlockN * kGemmChunksPerRow / kThreads;                        // cp.async a thread issues per stage
  static constexpr int kXChunks = (C::kBlockM * kGemmChunksPerRow + kThreads - 1) / kThreads;       // activation chunks a thread stages
  static constexpr int kKTiles = (C::kK + kGemmBlockK - 1) / kGemmBlockK;
  static constexpr int kNTiles = (C::kN + C::kBlockN - 1) / C::kBlockN;
  static_assert(C::kK % 8 == 0, "weight and activation rows must be whole 16-byte chunks");
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "a warp's tile is whole m16 x (2 x n8) fragments");
  static_assert(C::kBlockN * kGemmChunksPerRow % kThreads == 0, "every thread issues the same number of weight copies");
  static_assert(C::kStages >= 2, "a pipeline needs at least two stages");
  static_assert(C::kKTilesPerSplit * (C::kSplitK - 1) < kKTiles, "every split-K part has at least one k tile");
};

// A tile row's activations: 8 consecutive float32 (one 16-byte chunk once rounded to 16-bit).
struct GemmXChunk {
  float v[8];
};

template <class C>
__device__ __forceinline__ void gemm_load_w(const TidarcGemmArgs& a, typename C::T* stage, int n0, int kt) {
  using S = GemmShape<C>;
  const typename C::T* w = static_cast<const typename C::T*>(a.w);
#pragma unroll
  for (int i = 0; i < S::kWCopies; ++i) {
    const int c = threadIdx.x + i * S::kThreads;
    const int row = c / kGemmChunksPerRow, chunk = c % kGemmChunksPerRow;
    const int n = n0 + row, k = kt * kGemmBlockK + chunk * 8;
    const bool ok = n < C::kN && k < C::kK;  // zero-filled outside the matrix
    cp_async_16(stage + gemm_swizzle(row, chunk), ok ? w + static_cast<size_t>(n) * C::kK + k : w, ok);
  }
}

// Global loads of one k tile of activations into registers; they land while the CTA computes.
template <class C>
__device__ __forceinline__ void gemm_fetch_x(const float* const (&x_row)[GemmShape<C>::kXChunks], int kt, GemmXChunk (&xr)[GemmShape<C>::kXChunks]) {
  using S = GemmShape<C>;
#pragma unroll
  for (int i = 0; i < S::kXChunks; ++i) {
    const int chunk = (threadIdx.x + i * S::kThreads) % kGemmChunksPerRow;
    const int k = kt * kGemmBlockK + chunk * 8;
    if (x_row[i] != nullptr && k < C::kK) {
      const float4* p = reinterpret_cast<const float4*>(x_row[i] + k);
      const float4 lo = p[0], hi = p[1];
      xr[i].v[0] = lo.x, xr[i].v[1] = lo.y, xr[i].v[2] = lo.z, xr[i].v[3] = lo.w;
      xr[i].v[4] = hi.x, xr[i].v[5] = hi.y, xr[i].v[6] = hi.z, xr[i].v[7] = hi.w;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) xr[i].v[e] = 0.f;  // rows past `rows`, k past K
    }
  }
}

// Rounds the fetched activations to 16-bit (nearest even) and stores them into a stage.
template <class C>
__device__ __forceinline__ void gemm_store_x(const GemmXChunk (&xr)[GemmShape<C>::kXChunks], typename C::T* stage) {
  using S = GemmShape<C>;
  using E = Elem<typename C::T>;
#pragma unroll
  for (int i = 0; i < S::kXChunks; ++i) {
    const int c = threadIdx.x + i * S::kThreads;
    if (S::kXChunks * S::kThreads > C::kBlockM * kGemmChunksPerRow && c >= C::kBlockM * kGemmChunksPerRow) continue;
    const float* v = xr[i].v;
    st_shared_16(stage + gemm_swizzle(c / kGemmChunksPerRow, c % kGemmChunksPerRow),
                 E::pack2(v[0], v[1]), E::pack2(v[2], v[3]), E::pack2(v[4], v[5]), E::pack2(v[6], v[7]));
  }
}

// Where output column n of row r lives: out, out2 or out3 (tidarc_gemm_abi.h's segments).
template <class C>
__device__ __forceinline__ float* gemm_out(const TidarcGemmArgs& a, int r, int n) {
  if (n < a.seg1) return a.out + static_cast<size_t>(r) * a.seg1 + n;
  if (n < a.seg2) return a.out2 + static_cast<size_t>(r) * (a.seg2 - a.seg1) + (n - a.seg1);
  return a.out3 + static_cast<size_t>(r) * (C::kN - a.seg2) + (n - a.seg2);
}

template <class C>
__device__ __forceinline__ void gemm_kernel(const TidarcGemmArgs& a) {
  using T = typename C::T;
  using S = GemmShape<C>;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  // Stage s: weights [kBlockN][64], then activations [kBlockM][64] (pointer arithmetic, not
  // a pointer array: a runtime-indexed array would live in local memory).
  auto stage_w = [&](int s) { return smem + s * S::kStageElems; };
  auto stage_x = [&](int s) { return smem + s * S::kStageElems + S::kWStageElems; };

  const int m0 = blockIdx.x * C::kBlockM;
  const int n0 = blockIdx.y * C::kBlockN;
  const int split = blockIdx.z;
  const int kt0 = split * C::kKTilesPerSplit;
  const int tiles = min(C::kKTilesPerSplit, S::kKTiles - kt0);  // >= 1 (GemmShape's assert)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm0 = (warp / C::kWarpsN) * S::kWarpM;  // the warp's rows inside the CTA tile
  const int wn0 = (warp % C::kWarpsN) * S::kWarpN;  // and its weight rows (output columns)
  const int mi = lane / 8;                          // which 8x8 matrix this lane addresses in ldmatrix

  const float* x_row[S::kXChunks];  // source row of each activation chunk this thread stages, null past `rows`
#pragma unroll
  for (int i = 0; i < S::kXChunks; ++i) {
    const int r = m0 + (threadIdx.x + i * S::kThreads) / kGemmChunksPerRow;
    const bool in_tile = (threadIdx.x + i * S::kThreads) < C::kBlockM * kGemmChunksPerRow;
    x_row[i] = in_tile && r < a.rows ? a.x + static_cast<size_t>(a.row_ids != nullptr ? a.row_ids[r] : r) * C::kK : nullptr;
  }

  // ---- prologue: tiles 0 .. kStages-2 in flight (one cp.async group per tile, even if empty)
  GemmXChunk xr[S::kXChunks];
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < tiles) {
      gemm_load_w<C>(a, stage_w(s), n0, kt0 + s);
      gemm_fetch_x<C>(x_row, kt0 + s, xr);
      gemm_store_x<C>(xr, stage_x(s));
    }
    cp_async_commit();
  }

  float acc[S::kMTiles][S::kNChunks][4];
#pragma unroll
  for (int i = 0; i < S::kMTiles; ++i)
#pragma unroll
    for (int j = 0; j < S::kNChunks; ++j) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;

  for (int t = 0; t < tiles; ++t) {
    cp_async_wait<C::kStages - 2>();  // this thread's copies of tile t have landed
    __syncthreads();                  // everyone's have; and everyone is done with tile t-1's stage
    const int stage = t % C::kStages;
    const int next = t + C::kStages - 1;           // refills the stage tile t-1 used
    const int next_stage = next % C::kStages;
    const bool refill = next < tiles;
    if (refill) {
      gemm_load_w<C>(a, stage_w(next_stage), n0, kt0 + next);
      gemm_fetch_x<C>(x_row, kt0 + next, xr);
    }
    cp_async_commit();

    const T* sw = stage_w(stage);
    const T* sx = stage_x(stage);
#pragma unroll
    for (int kk = 0; kk < kGemmBlockK / 16; ++kk) {
      // B fragments of the warp's columns: matrices (n j, k lo), (n j, k hi), (n j+1, k lo), (n j+1, k hi).
      uint32_t b[S::kNChunks][2];
#pragma unroll
      for (int j = 0; j < S::kNChunks; j += 2) {
        uint32_t r[4];
        ldmatrix_x4(r, sw + gemm_swizzle(wn0 + j * 8 + (mi / 2) * 8 + lane % 8, kk * 2 + mi % 2));
        b[j][0] = r[0], b[j][1] = r[1], b[j + 1][0] = r[2], b[j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < S::kMTiles; ++i) {
        // Fragments wholly past `rows` are skipped (warp-uniform): padding rows are never stored.
        if (m0 + wm0 + i * 16 >= a.rows) continue;
        // A fragment: matrices (rows 0-7, k lo), (rows 8-15, k lo), (rows 0-7, k hi), (rows 8-15, k hi).
        uint32_t af[4];
        ldmatrix_x4(af, sx + gemm_swizzle(wm0 + i * 16 + (mi % 2) * 8 + lane % 8, kk * 2 + mi / 2));
#pragma unroll
        for (int j = 0; j < S::kNChunks; ++j) mma_m16n8k16<T>(acc[i][j], af, b[j]);
      }
    }
    if (refill) gemm_store_x<C>(xr, stage_x(next_stage));  // that stage's last reader passed the barrier above
  }
  cp_async_wait<0>();  // only empty groups can be left; no copy outlives the kernel

  // ---- epilogue: thread holds rows g, g+8 x columns 2t, 2t+1 of each fragment ---------------
  const int g = lane / 4, tg = lane % 4;
#pragma unroll
  for (int i = 0; i < S::kMTiles; ++i) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = m0 + wm0 + i * 16 + g + 8 * h;
      if (r >= a.rows) continue;
#pragma unroll
      for (int j = 0; j < S::kNChunks; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int n = n0 + wn0 + j * 8 + 2 * tg + e;
          if (n >= C::kN) continue;
          const float v = acc[i][j][2 * h + e];
          if (C::kSplitK == 1) {
            float* out = gemm_out<C>(a, r, n);
            float y = v;
            if (a.bias != nullptr) y += a.bias[n];
            if (a.accumulate) y += *out;
            *out = y;
          } else {
            a.workspace[(static_cast<size_t>(split) * a.rows + r) * C::kN + n] = v;
          }
        }
      }
    }
  }
}

// Split-K: out = ((p0 + p1) + ...) + bias (+ out), parts in increasing order, one thread an element.
template <class C>
__device__ __forceinline__ void gemm_reduce_kernel(const TidarcGemmArgs& a) {
  const size_t count = static_cast<size_t>(a.rows) * C::kN;
  const size_t e = static_cast<size_t>(blockIdx.x) * kGemmReduceThreads + threadIdx.x;
  if (e >= count) return;
  float y = a.workspace[e];
  for (int s = 1; s < C::kSplitK; ++s) y += a.workspace[static_cast<size_t>(s) * count + e];
  const int r = static_cast<int>(e / C::kN), n = static_cast<int>(e % C::kN);
  if (a.bias != nullptr) y += a.bias[n];
  float* out = gemm_out<C>(a, r, n);
  if (a.accumulate) y += *out;
  *out = y;
}

}  // namespace tidarc
