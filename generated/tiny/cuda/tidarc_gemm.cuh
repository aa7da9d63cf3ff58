/*! tidarc GEMM for the linear layers: out[rows, N] = x[rows, K] * w[N, K]^T on tensor cores
    (mma.sync m16n8k16, 16-bit inputs, float32 accumulation). One CTA owns a BLOCK_N slice of
    the weights (128 or 64 rows) and BLOCK_M token rows (all rows of a step up to 128), so each weight byte
    crosses HBM once per step. Weights and activations (both 16-bit, the kernel's dtype: the op
    before the GEMM stores its output rounded) stream through a kStages-deep cp.async pipeline
    of 16-byte copies, with no per-tile conversion. Shared tiles are rows of 64 elements (128
    bytes) with the 16-byte chunks XOR-swizzled by row, so ldmatrix reads 8 rows from 8
    different bank groups. Split-K parts write float32 partials; the last CTA of an output tile
    to arrive (a ticket on its counter, as the attention's split merge) sums them in a fixed
    order and runs the epilogue, in the same launch. The reduction order lives in Config's Reduction base (see <shape>.cu), which
    every kernel of a weight shape shares, so a row's result does not depend on M.
    Epilogues (tidarc_gemm_abi.h) run on the full sum only: SwiGLU over an interleaved gate | up
    (a thread's fragments j and j + 1 are a gate block and its up block), written in the 16-bit
    dtype (the down GEMM's activations), and per-tile row statistics for the lm_head (argmax,
    max, sum of exp), merged by <unit>_row_stats.
    Fold-norms (tidarc_gemm_abi.h, compiled in where Reduction::kNormOut / kRowScale): a producer
    (o, down) also writes round16(gamma * out) and each row's float64 sums of out^2 per 64-column
    chunk (out staged through the idle pipeline's shared memory, one thread a (row, chunk), a
    fixed tree); a consumer (qkv, gate_up, lm_head) has one thread a CTA row sum the producer's
    chunks into 1 / rms while the pipeline fills, and scales its full sums by it before the bias
    and every epilogue. */
#pragma once
#include "tidarc_device.cuh"
#include "tidarc_gemm_abi.h"

namespace tidarc {

constexpr int kGemmBlockK = 64;         // k per pipeline stage: one 128-byte row of 16-bit elements
constexpr int kGemmChunksPerRow = 8;    // 16-byte chunks in such a row (the swizzle period)
constexpr int kGemmReduceThreads = 256;  // the row-statistics merge's block
constexpr int kGemmBlockN = 128;        // weight rows of a wide CTA (a narrow one has half): also the N tile of the row statistics
constexpr int kGemmStatsPerLane = kGemmBlockN / 32;  // a warp reduces one row of a tile
constexpr int kGemmSwigluBlock = TIDARC_GEMM_SWIGLU_INTERLEAVE;
constexpr int kGemmSplitSumChunk = 16;  // accumulators whose split-K parts the last CTA loads at once
constexpr int kGemmNormChunk = 64;      // fold-norms: columns of one float64 sum of squares (tidarc_gemm_abi.h)

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
  static constexpr int kXChunks = (C::kBlockM * kGemmChunksPerRow + kThreads - 1) / kThreads;       // activation cp.async a thread issues per stage (some idle past kBlockM)
  static constexpr int kKTiles = (C::kK + kGemmBlockK - 1) / kGemmBlockK;
  static constexpr int kNTiles = (C::kN + C::kBlockN - 1) / C::kBlockN;
  static_assert(C::kK % 8 == 0, "weight and activation rows must be whole 16-byte chunks");
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "a warp's tile is whole m16 x (2 x n8) fragments");
  static_assert(C::kBlockN * kGemmChunksPerRow % kThreads == 0, "every thread issues the same number of weight copies");
  static_assert(C::kStages >= 2, "a pipeline needs at least two stages");
  static_assert(C::kKTilesPerSplit * (C::kSplitK - 1) < kKTiles, "every split-K part has at least one k tile");
  // 128 columns, or 64 (twice the output tiles: more CTAs share the split-K sum); row statistics need 128 (gemm_kernel).
  static_assert(C::kBlockN == kGemmBlockN || C::kBlockN == kGemmBlockN / 2, "a CTA covers 128 or 64 weight rows");
  // A narrow kernel has no row-statistics epilogue (gemm_kernel): launched with ROW_STATS it would
  // store through the null `out` of a statistics launch. The planner refuses it too (gemm-plan.ts).
  static_assert(!C::kRowStats || C::kBlockN == kGemmBlockN, "row statistics are per 128-column tile: a unit with them (the lm_head) has 128-wide kernels only");
  static_assert(kWarpN % (2 * kGemmSwigluBlock) == 0, "a warp's columns are whole gate | up block pairs");
  static_assert(C::kBlockN != kGemmBlockN || C::kBlockM * kGemmBlockN * 4 <= C::kStages * kStageElems * 2, "the float32 tile of the row statistics fits in the pipeline's shared memory");
  static_assert(C::kN < (1 << 24), "column indices travel through float32 shuffles exactly");
  // Fold-norms: the producer's float32 tile (rows padded by one column: a thread a row reads it
  // without bank conflicts) and the consumer's 1 / rms a row fit in the pipeline's shared memory.
  static constexpr int kNormTileStride = C::kBlockN + 1;
  static_assert(!C::kNormOut || C::kBlockM * kNormTileStride * 4 <= C::kStages * kStageElems * 2, "the producer's float32 tile fits in the pipeline's shared memory");
  static_assert(!C::kNormOut || C::kBlockN % kGemmNormChunk == 0, "a CTA's columns are whole 64-column chunks of the sums");
  static constexpr int kInvPerThread = (C::kBlockM + kThreads - 1) / kThreads;  // consumer rows a thread sums
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

// The PDL prologue of a GEMM CTA (tidarc_gemm.cu.hbs, tidarc_gemm_sm90a.cu.hbs: before its
// grid_dependency_wait): the CTA asks L2 for the first C::kPrefetchTiles k tiles of its own
// weight slice (kRows rows from n0, its split part's k tiles in k order; gemm-prefetch.ts, the
// rule and its budget). Weights are written by no kernel of a step, so reading them early is
// within the contract; prefetch_l2_line is a hint that never changes a result (empty below sm_90).
// Weights are [N, K] row-major and a k tile of a row is 64 x 2 = 128 bytes, one L2 line. The
// first kThreads / kRows x kRows threads (all of them where kRows divides kThreads; 128 of the
// sm_90a kernel's 160) share the kRows x kPrefetchTiles lines: thread i keeps row i % kRows and
// steps over tiles from i / kRows (so the pipeline's first tiles go first): a pointer add, a
// compare and one prefetch a line, a warp's 32 lanes 32 lines in one instruction. Rows past N
// and tiles past the split part's end (its last part may be shorter) are skipped. When
// K % 64 != 0 a row's tiles do not start on a line, so each tile also prefetches the line of its
// last byte.
template <class C, int kRows, int kThreads>
__device__ __forceinline__ void gemm_prefetch_weights(const void* w, int n0, int split) {
  constexpr int kKTiles = (C::kK + kGemmBlockK - 1) / kGemmBlockK;
  constexpr int kStep = kThreads / kRows;  // threads a row
  static_assert(C::kPrefetchTiles >= 1 && C::kPrefetchTiles <= C::kKTilesPerSplit, "the prefetch stays inside the CTA's split part");
  static_assert(kGemmBlockK * 2 == 128, "a row's k tile is one 128-byte line");
  static_assert(kStep >= 1, "a thread at least a weight row");
  if (threadIdx.x >= static_cast<unsigned>(kStep * kRows)) return;
  const int row = static_cast<int>(threadIdx.x % kRows), t0 = static_cast<int>(threadIdx.x / kRows);
  const int kt0 = split * C::kKTilesPerSplit;
  const int tiles = min(C::kPrefetchTiles, kKTiles - kt0);  // the last part may be shorter
  const int k0 = kt0 * kGemmBlockK;
  if (row >= C::kN - n0) return;
  const unsigned char* p = static_cast<const unsigned char*>(w) + ((static_cast<size_t>(n0) + row) * C::kK + k0) * 2 + t0 * 128;
#pragma unroll 1
  for (int t = t0; t < tiles; t += kStep, p += kStep * 128) {
    prefetch_l2_line(p);
    if constexpr (C::kK % kGemmBlockK != 0) prefetch_l2_line(p + min(127, (C::kK - k0 - t * kGemmBlockK) * 2 - 1));
  }
}

// One k tile of activations: the same 16-byte cp.async as the weights, zero-filled for rows
// past `rows` (a null row) and k past K.
template <class C>
__device__ __forceinline__ void gemm_load_x(const TidarcGemmArgs& a, const typename C::T* const (&x_row)[GemmShape<C>::kXChunks], typename C::T* stage, int kt) {
  using S = GemmShape<C>;
#pragma unroll
  for (int i = 0; i < S::kXChunks; ++i) {
    const int c = threadIdx.x + i * S::kThreads;
    if (S::kXChunks * S::kThreads > C::kBlockM * kGemmChunksPerRow && c >= C::kBlockM * kGemmChunksPerRow) continue;
    const int chunk = c % kGemmChunksPerRow, k = kt * kGemmBlockK + chunk * 8;
    const bool ok = x_row[i] != nullptr && k < C::kK;
    cp_async_16(stage + gemm_swizzle(c / kGemmChunksPerRow, chunk), ok ? x_row[i] + k : static_cast<const typename C::T*>(a.x), ok);
  }
}

// Where output column n of row r lives: out, out2 or out3 (tidarc_gemm_abi.h's segments).
template <class C>
__device__ __forceinline__ float* gemm_out(const TidarcGemmArgs& a, int r, int n) {
  if (n < a.seg1) return static_cast<float*>(a.out) + static_cast<size_t>(r) * a.seg1 + n;
  if (n < a.seg2) return a.out2 + static_cast<size_t>(r) * (a.seg2 - a.seg1) + (n - a.seg1);
  return a.out3 + static_cast<size_t>(r) * (C::kN - a.seg2) + (n - a.seg2);
}

// SwiGLU of gate column n (a column of an even kGemmSwigluBlock-block) and its up column
// n + kGemmSwigluBlock, into out [rows, N / 2] in the 16-bit dtype (round to nearest even):
// tidarc_op_silu_mul's expression and rounding, so the fused MLP is bitwise the unfused one.
template <class C>
__device__ __forceinline__ void gemm_store_swiglu(const TidarcGemmArgs& a, int r, int n, float gate, float up) {
  if (a.bias != nullptr) gate += a.bias[n], up += a.bias[n + kGemmSwigluBlock];
  const int c = (n / (2 * kGemmSwigluBlock)) * kGemmSwigluBlock + n % kGemmSwigluBlock;
  reinterpret_cast<typename C::T*>(a.out)[static_cast<size_t>(r) * (C::kN / 2) + c] = Elem<typename C::T>::from_float(gate / (1.0f + expf(-gate)) * up);
}

__device__ __forceinline__ bool gemm_finite(float x) { return x - x == 0.0f; }  // false for NaN and +-inf

// (av, ai) wins over (bv, bi): tidarc_op_row_stats's rule (larger; NaN over a number, as
// torch.argmax; equal values and two NaNs go to the lower column).
__device__ __forceinline__ bool gemm_wins(float av, int ai, float bv, int bi) {
  const bool a_nan = av != av, b_nan = bv != bv;
  if (a_nan || b_nan) return a_nan && (!b_nan || ai < bi);
  return av > bv || (av == bv && ai < bi);
}

// One warp's statistics of one row of one N tile: lane l holds columns n0 + l + 32 i (-inf past
// N). The order is fixed by the tile alone (lanes scan in increasing column order, then a
// butterfly whose partners add commutatively), never by the launch's rows.
template <int kN>
__device__ __forceinline__ void gemm_tile_stats(const float (&v)[kGemmStatsPerLane], int n0, float& best, int& best_col, float& sum) {
  const int lane = threadIdx.x % 32;
  best = -INFINITY, best_col = kN;  // column kN loses every tie: an all -inf tile reports its first column
#pragma unroll
  for (int i = 0; i < kGemmStatsPerLane; ++i)
    if (gemm_wins(v[i], n0 + lane + 32 * i, best, best_col)) best = v[i], best_col = n0 + lane + 32 * i;
#pragma unroll
  for (int s = 16; s > 0; s /= 2) {
    const float ov = shfl_xor(best, s);
    const int oc = static_cast<int>(shfl_xor(static_cast<float>(best_col), s));  // exact: columns < 2^24
    if (gemm_wins(ov, oc, best, best_col)) best = ov, best_col = oc;
  }
  sum = 0.0f;
  if (gemm_finite(best)) {
#pragma unroll
    for (int i = 0; i < kGemmStatsPerLane; ++i) sum += expf(v[i] - best);
  }
#pragma unroll
  for (int s = 16; s > 0; s /= 2) sum += shfl_xor(sum, s);
}

template <class C>
__device__ __forceinline__ void gemm_store_tile_stats(const TidarcGemmArgs& a, int r, int tile, float best, int best_col, float sum) {
  constexpr int kNTiles = (C::kN + kGemmBlockN - 1) / kGemmBlockN;
  const size_t at = static_cast<size_t>(r) * kNTiles + tile;
  a.tile_stats[2 * at] = best;
  a.tile_stats[2 * at + 1] = sum;
  a.tile_argmax[at] = best_col;
}

// ROW_STATS: the CTA's float32 tile (its own sums at split-K 1; at split-K > 1 the last CTA's
// sums of every part, gemm_split_sum_if_last) goes to shared memory (the pipeline's, now idle),
// then each warp reduces whole rows of it.
template <class C>
__device__ __forceinline__ void gemm_row_stats_epilogue(const TidarcGemmArgs& a, const float (&acc)[GemmShape<C>::kMTiles][GemmShape<C>::kNChunks][4], float* tile, int m0, int n0, int wm0, int wn0) {
  using S = GemmShape<C>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tg = lane % 4;
  __syncthreads();  // every warp is done reading the pipeline's stages
#pragma unroll
  for (int i = 0; i < S::kMTiles; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int j = 0; j < S::kNChunks; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int row = wm0 + i * 16 + g + 8 * h, col = wn0 + j * 8 + 2 * tg + e;
          const int n = n0 + col;
          float y = acc[i][j][2 * h + e];
          if (n < C::kN && a.bias != nullptr) y += a.bias[n];
          tile[row * kGemmBlockN + col] = n < C::kN ? y : -INFINITY;
        }
  __syncthreads();
  for (int row = warp; row < C::kBlockM && m0 + row < a.rows; row += S::kThreads / 32) {  // warp-uniform
    float v[kGemmStatsPerLane];
#pragma unroll
    for (int i = 0; i < kGemmStatsPerLane; ++i) v[i] = tile[row * kGemmBlockN + lane + 32 * i];
    float best, sum;
    int best_col;
    gemm_tile_stats<C::kN>(v, n0, best, best_col, sum);
    if (lane == 0) gemm_store_tile_stats<C>(a, m0 + row, blockIdx.y, best, best_col, sum);
  }
}

// Fold-norms producer: the chunk tree of tidarc_gemm_abi.h over 64 staged values y[0..64):
// F(r, 64) = y_r^2 (exact in float64), F(r, m) = F(r, 2m) + F(r + m, 2m), the sum is F(0, 1), so
// level w of the tree (s_j + s_{j + w}, j < w) is F(j, w): the same bits as the warp-wide
// butterfly, evaluated depth first (six partials live) by the one thread of a (row, chunk).
template <int R, int M>
__device__ __forceinline__ double gemm_chunk_sumsq(const float* y) {
  if constexpr (M == kGemmNormChunk) {
    const double v = static_cast<double>(y[R]);
    return v * v;
  } else {
    return gemm_chunk_sumsq<R, 2 * M>(y) + gemm_chunk_sumsq<R + M, 2 * M>(y);
  }
}

// Fold-norms producer epilogue (norm_weight set: epilogue NONE, one plain segment): out = y as
// the plain epilogue, norm_out = round16(gamma[n] * y), then y (0 past N) staged in shared
// memory and each (row, 64-column chunk) of the tile summed by one thread into norm_sumsq.
template <class C>
__device__ __forceinline__ void gemm_norm_out_epilogue(const TidarcGemmArgs& a, const float (&acc)[GemmShape<C>::kMTiles][GemmShape<C>::kNChunks][4], float* tile, int m0, int n0, int wm0, int wn0) {
  using S = GemmShape<C>;
  using T = typename C::T;
  constexpr int kStride = S::kNormTileStride;
  constexpr int kSumsRow = (C::kN + kGemmNormChunk - 1) / kGemmNormChunk;  // chunks of a row of norm_sumsq
  const int lane = threadIdx.x % 32, g = lane / 4, tg = lane % 4;
  __syncthreads();  // every warp is done reading the pipeline's stages
#pragma unroll
  for (int i = 0; i < S::kMTiles; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int j = 0; j < S::kNChunks; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int row = wm0 + i * 16 + g + 8 * h, col = wn0 + j * 8 + 2 * tg + e;
          const int r = m0 + row, n = n0 + col;
          float y = 0.0f;
          if (r < a.rows && n < C::kN) {
            const size_t at = static_cast<size_t>(r) * C::kN + n;
            float* out = static_cast<float*>(a.out) + at;
            y = acc[i][j][2 * h + e];
            if (a.bias != nullptr) y += a.bias[n];
            if (a.accumulate) y += *out;
            *out = y;
            static_cast<T*>(a.norm_out)[at] = Elem<T>::from_float(__fmul_rn(a.norm_weight[n], y));
          }
          tile[row * kStride + col] = y;
        }
  __syncthreads();  // the tile is whole before any thread sums a row of it
  // Consecutive threads take consecutive rows of one chunk (the padded stride: distinct banks).
  for (int t = threadIdx.x; t < C::kBlockM * (C::kBlockN / kGemmNormChunk); t += S::kThreads) {
    const int row = t % C::kBlockM, c = t / C::kBlockM;
    const int r = m0 + row, n = n0 + c * kGemmNormChunk;
    if (r >= a.rows || n >= C::kN) continue;
    a.norm_sumsq[static_cast<size_t>(r) * kSumsRow + n / kGemmNormChunk] = gemm_chunk_sumsq<0, 1>(tile + row * kStride + c * kGemmNormChunk);
  }
}

// Fold-norms consumer: 1 / rms of CTA row `row` (tidarc_op_rmsnorm's expression) from the
// producer's chunk sums of its source row, summed in increasing chunk order; 0 past `rows`.
template <class C>
__device__ __forceinline__ float gemm_row_inv_rms(const TidarcGemmArgs& a, int r) {
  if (r >= a.rows) return 0.0f;
  const int sr = a.row_ids != nullptr ? a.row_ids[r] : r;
  const double* sums = a.row_sumsq + static_cast<size_t>(sr) * a.sumsq_chunks;
  double total = 0.0;
#pragma unroll 8
  for (int c = 0; c < a.sumsq_chunks; ++c) total += sums[c];
  return static_cast<float>(1.0 / sqrt(total / static_cast<double>(a.norm_cols) + static_cast<double>(a.norm_eps)));
}

// Split-K in the launch: this part's partials go to the workspace; the output tile's last CTA
// to take a ticket (__threadfence, then atomicAdd on the tile's counter) replaces its kCount
// accumulators by the full sums, parts in increasing order (the order of the old separate
// reduce kernel, so bitwise its result), resets the counter for the next launch or graph
// replay and returns true; every other CTA returns false and is done. `at(q, r, n)` says
// where accumulator q of this thread goes (row r, column n) and whether it was computed;
// `acc(q)` is the accumulator; `sync()` a barrier of every thread that calls this (the CTA,
// or the sm_90a GEMM's consumers: its producer warp has left). The result is uniform over them.
// The sum reads every part back, its own too (the thread's own stores: no fence needed), one
// part at a time for kGemmSplitSumChunk accumulators: that many loads in flight and no second
// set of registers (summing each element's parts in turn spilled at sm_80; all accumulators'
// loads at once took the M = 272 kernels from 118 to 155 registers, one CTA an SM).
// `chunk(c, end)`, after accumulators [c, end) hold their sums, lets a caller store them at
// once (the sm_90a GEMM: its 128 accumulators at 256 tokens, summed whole before the epilogue,
// spilled at the 168 registers ptxas allows 288 threads); the no-op keeps the sums in acc.
struct GemmSplitChunkKept {
  __device__ __forceinline__ void operator()(int, int) const {}
};
template <class C, int kCount, class At, class Acc, class Sync, class Chunk = GemmSplitChunkKept>
__device__ __forceinline__ bool gemm_split_sum_if_last(const TidarcGemmArgs& a, int split, At at, Acc acc, Sync sync, Chunk chunk = {}) {
  const size_t part = static_cast<size_t>(a.rows) * C::kN;
#pragma unroll
  for (int q = 0; q < kCount; ++q) {
    int r, n;
    if (at(q, r, n)) st_global_f32(a.workspace + split * part + static_cast<size_t>(r) * C::kN + n, acc(q));  // read by the last CTA
  }
  __shared__ int last;
  __threadfence();  // this thread's partials are visible device-wide before its CTA's ticket
  sync();
  if (threadIdx.x == 0) {
    int* counter = a.split_counters + blockIdx.y * gridDim.x + blockIdx.x;
    last = atomicAdd(counter, 1) == C::kSplitK - 1;
    if (last) {
      *counter = 0;     // the next launch (a graph replay) starts from 0
      __threadfence();  // the count is seen before the other parts' partials are read
    }
  }
  sync();
  if (!last) return false;
#pragma unroll
  for (int c = 0; c < kCount; c += kGemmSplitSumChunk) {
#pragma unroll 1
    for (int s = 0; s < C::kSplitK; ++s) {
#pragma unroll
      for (int q = c; q < (c + kGemmSplitSumChunk < kCount ? c + kGemmSplitSumChunk : kCount); ++q) {
        int r, n;
        if (!at(q, r, n)) continue;
        const float v = ld_global_cg_f32(a.workspace + s * part + static_cast<size_t>(r) * C::kN + n);
        acc(q) = s == 0 ? v : acc(q) + v;  // ((p0 + p1) + p2) + ...
      }
    }
    chunk(c, c + kGemmSplitSumChunk < kCount ? c + kGemmSplitSumChunk : kCount);
  }
  return true;
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

  const T* x_row[S::kXChunks];  // source row of each activation chunk this thread copies, null past `rows`
#pragma unroll
  for (int i = 0; i < S::kXChunks; ++i) {
    const int r = m0 + (threadIdx.x + i * S::kThreads) / kGemmChunksPerRow;
    const bool in_tile = (threadIdx.x + i * S::kThreads) < C::kBlockM * kGemmChunksPerRow;
    x_row[i] = in_tile && r < a.rows ? static_cast<const T*>(a.x) + static_cast<size_t>(a.row_ids != nullptr ? a.row_ids[r] : r) * C::kK : nullptr;
  }

  // ---- prologue: tiles 0 .. kStages-2 in flight (one cp.async group per tile, even if empty)
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < tiles) {
      gemm_load_w<C>(a, stage_w(s), n0, kt0 + s);
      gemm_load_x<C>(a, x_row, stage_x(s), kt0 + s);
    }
    cp_async_commit();
  }

  // Fold-norms consumer: one thread a CTA row sums its producer's chunks while the first tiles
  // land (one register a row through the k loop; shared with the warps in the epilogue).
  float inv_rms[S::kInvPerThread];
  if constexpr (C::kRowScale) {
    if (a.row_sumsq != nullptr) {
#pragma unroll
      for (int p = 0; p < S::kInvPerThread; ++p) {
        const int row = threadIdx.x + p * S::kThreads;
        inv_rms[p] = row < C::kBlockM ? gemm_row_inv_rms<C>(a, m0 + row) : 0.0f;
      }
    }
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
      gemm_load_x<C>(a, x_row, stage_x(next_stage), kt0 + next);
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
  }
  cp_async_wait<0>();  // only empty groups can be left; no copy outlives the kernel
  const int g = lane / 4, tg = lane % 4;
  if constexpr (C::kSplitK > 1) {
    // Accumulator q = acc[i][j][2h + e]: row g + 8h of m fragment i, column 2 tg + e of n fragment j (never computed past `rows`).
    constexpr int kJ = S::kNChunks;
    const auto at = [&](int q, int& r, int& n) {
      const int i = q / (4 * kJ), j = q / 4 % kJ, h = q % 4 / 2, e = q % 2;
      r = m0 + wm0 + i * 16 + g + 8 * h, n = n0 + wn0 + j * 8 + 2 * tg + e;
      return r < a.rows && n < C::kN;
    };
    const auto el = [&](int q) -> float& { return acc[q / (4 * kJ)][q / 4 % kJ][q % 4]; };
    if (!gemm_split_sum_if_last<C, S::kMTiles * kJ * 4>(a, split, at, el, [] { __syncthreads(); })) return;
  }
  // Fold-norms consumer: the full sums scaled by their row's 1 / rms (through the idle pipeline's
  // shared memory), before the bias and before every epilogue below.
  if constexpr (C::kRowScale) {
    if (a.row_sumsq != nullptr) {
      float* inv_s = reinterpret_cast<float*>(smem_raw);
      __syncthreads();  // every warp is done reading the pipeline's stages
#pragma unroll
      for (int p = 0; p < S::kInvPerThread; ++p)
        if (threadIdx.x + p * S::kThreads < C::kBlockM) inv_s[threadIdx.x + p * S::kThreads] = inv_rms[p];
      __syncthreads();
#pragma unroll
      for (int i = 0; i < S::kMTiles; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float inv = inv_s[wm0 + i * 16 + g + 8 * h];
#pragma unroll
          for (int j = 0; j < S::kNChunks; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) acc[i][j][2 * h + e] = __fmul_rn(acc[i][j][2 * h + e], inv);
        }
      // The epilogues that reuse the shared memory (row statistics) start with a barrier.
    }
  }
  if constexpr (C::kNormOut) {
    if (a.norm_weight != nullptr) {
      gemm_norm_out_epilogue<C>(a, acc, reinterpret_cast<float*>(smem_raw), m0, n0, wm0, wn0);
      return;
    }
  }
  // Row statistics are per 128-column tile, so only 128-wide kernels have them: the planner gives
  // a unit with row statistics (the lm_head) 128-wide tiles at every M (gemm-plan.ts).
  if constexpr (C::kBlockN == kGemmBlockN) {
    if (a.epilogue == TIDARC_GEMM_EPILOGUE_ROW_STATS) {
      gemm_row_stats_epilogue<C>(a, acc, reinterpret_cast<float*>(smem_raw), m0, n0, wm0, wn0);
      return;
    }
  }

  // ---- epilogue (the full sums): thread holds rows g, g+8 x columns 2t, 2t+1 of each fragment
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
          if (a.epilogue == TIDARC_GEMM_EPILOGUE_SWIGLU) {
            // Even fragments are gate blocks; the odd one beside holds the matching up columns.
            if (j % 2 == 0) gemm_store_swiglu<C>(a, r, n, v, acc[i][j ^ 1][2 * h + e]);
          } else {
            float* out = gemm_out<C>(a, r, n);
            float y = v;
            if (a.bias != nullptr) y += a.bias[n];
            if (a.accumulate) y += *out;
            *out = y;
          }
        }
      }
    }
  }
}

// ROW_STATS: a row's tiles merged in increasing order into (argmax, max, lse), a warp a row:
// lane l takes tiles l, l + 32, ...; the maximum by a butterfly (exact, order-free), the sum
// of s_t exp(m_t - max) per lane in float64, then the 32 lanes' sums in lane order.
template <class C>
__device__ __forceinline__ void gemm_row_stats_kernel(const TidarcGemmArgs& a) {
  constexpr int kNTiles = (C::kN + kGemmBlockN - 1) / kGemmBlockN;
  __shared__ double partial[kGemmReduceThreads];
  const int lane = threadIdx.x % 32, r = blockIdx.x * (kGemmReduceThreads / 32) + threadIdx.x / 32;
  const bool live = r < a.rows;  // every thread reaches the barrier
  const float* stats = a.tile_stats + 2 * static_cast<size_t>(live ? r : 0) * kNTiles;
  const int32_t* cols = a.tile_argmax + static_cast<size_t>(live ? r : 0) * kNTiles;
  float best = -INFINITY;
  int best_col = C::kN;
  for (int t = lane; live && t < kNTiles; t += 32)
    if (gemm_wins(stats[2 * t], cols[t], best, best_col)) best = stats[2 * t], best_col = cols[t];
#pragma unroll
  for (int s = 16; s > 0; s /= 2) {
    const float ov = shfl_xor(best, s);
    const int oc = static_cast<int>(shfl_xor(static_cast<float>(best_col), s));
    if (gemm_wins(ov, oc, best, best_col)) best = ov, best_col = oc;
  }
  double sum = 0.0;
  if (live && gemm_finite(best))
    for (int t = lane; t < kNTiles; t += 32) sum += static_cast<double>(stats[2 * t + 1]) * static_cast<double>(expf(stats[2 * t] - best));
  partial[threadIdx.x] = sum;
  __syncthreads();
  if (!live || lane != 0) return;
  double total = 0.0;
  for (int l = 0; l < 32; ++l) total += partial[threadIdx.x + l];
  a.row_argmax[r] = best_col;
  a.row_max[r] = best;
  a.row_lse[r] = gemm_finite(best) ? static_cast<float>(static_cast<double>(best) + log(total)) : best;
}

}  // namespace tidarc
