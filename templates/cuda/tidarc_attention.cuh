/*! tidarc fused step attention: one CTA owns one tile of kTileM query rows of one
    (sequence, KV head, split). Rows are packed token-major (row r -> token r / G,
    query head kvh * G + r % G) so every KV tile is loaded once for all G heads.
    The CTA's warps are kRowWarps x kKeyWarps: a row warp owns kWarpRows rows (16, or 32 as
    two m16 tiles that share every ldmatrix'd K and V fragment); key warps split each key
    tile's columns (a tile of <= 16 rows computes no padding rows) and merge their softmax
    state through shared memory at the end (merge_key_warps). K/V stream through kStages
    (2 or 3) cp.async stages.
    The CTA walks its share of the cached prefix (no mask at all, except the tail tile)
    and then, on the last split only, the in-step key tiles the compiler found
    non-empty for this row tile; only tiles classified partial evaluate the predicate.
    Config supplies the shapes, the tile schedule and the predicate (see <variant>.cu). */
#pragma once
#include "tidarc_abi.h"
#include "tidarc_device.cuh"

namespace tidarc {

enum TileMode : int { kPrefixFull = 0, kPrefixTail = 1, kStepFull = 2, kStepPartial = 3 };

template <typename T>
struct TileRef {
  const T* k;   // first key row of the tile
  const T* v;
  int stride;   // elements between consecutive key rows
  int valid;    // key rows that exist (the rest are zero-filled and masked)
  int key0;     // in-step token index of the first key (step tiles)
  int mode;
};

/** The key tiles a CTA walks: its split's share of the cached prefix's tiles (every split but
 *  the last may be left with none), then, on the last split only, the in-step tiles the compiler
 *  found non-empty for its row tile. Both attention kernels walk the same tiles. */
struct KeyShare {
  int prefix_len;
  int p0;            // this split's first prefix tile
  int prefix_tiles;  // prefix tiles of this split: tiles 0 .. prefix_tiles - 1 of the walk
  int num_tiles;     // those, then the in-step tiles
};

template <class C>
__device__ __forceinline__ KeyShare key_share(const TidarcAttentionArgs& a, int b, int row_tile, int split, int num_splits) {
  constexpr int NT = C::kTileN;
  KeyShare k;
  k.prefix_len = a.prefix_len[b];
  // Masks whose in-step queries never see the cache (the training layout) skip it entirely.
  const int prefix_tiles = C::kPrefixVisible ? (k.prefix_len + NT - 1) / NT : 0;
  const int per_split = (prefix_tiles + num_splits - 1) / num_splits;
  k.p0 = min(split * per_split, prefix_tiles);
  k.prefix_tiles = min(per_split, prefix_tiles - k.p0);
  const int step_tiles = split == num_splits - 1 ? C::step_tile_offset(row_tile + 1) - C::step_tile_offset(row_tile) : 0;
  k.num_tiles = k.prefix_tiles + step_tiles;
  return k;
}

template <class C>
__device__ __forceinline__ TileRef<typename C::T> describe_tile(const TidarcAttentionArgs& a, int b, int kvh, const KeyShare& keys, int row_tile, int i) {
  using T = typename C::T;
  TileRef<T> t;
  if (i < keys.prefix_tiles) {
    const int key0 = (keys.p0 + i) * C::kTileN;
    const size_t base = ((static_cast<size_t>(b) * C::kKvHeads + kvh) * a.cache_capacity + key0) * C::kHeadDim;
    t.k = static_cast<const T*>(a.k_cache) + base;
    t.v = static_cast<const T*>(a.v_cache) + base;
    t.stride = C::kHeadDim;
    t.valid = min(C::kTileN, keys.prefix_len - key0);
    t.key0 = key0;
    t.mode = t.valid == C::kTileN ? kPrefixFull : kPrefixTail;
  } else {
    const int slot = C::step_tile_offset(row_tile) + (i - keys.prefix_tiles);
    const int key0 = C::step_tile_key(slot) * C::kTileN;
    const size_t base = ((static_cast<size_t>(b) * C::kSteps + key0) * C::kKvHeads + kvh) * C::kHeadDim;
    t.k = static_cast<const T*>(a.k_step) + base;
    t.v = static_cast<const T*>(a.v_step) + base;
    t.stride = C::kKvHeads * C::kHeadDim;
    t.valid = min(C::kTileN, C::kSteps - key0);
    t.key0 = key0;
    t.mode = C::step_tile_full(slot) ? kStepFull : kStepPartial;
  }
  return t;
}

// Which chunks of a K/V tile a thread copies: the 16-byte column `col` of rows row, row +
// kRowsPerPass, ... kThreads is a multiple of the chunks per row, so a thread's column never
// changes and every address is a per-tile base plus a compile-time multiple of the row stride:
// the copies unroll with no division and no 64-bit multiply per chunk (the runtime loop's index
// arithmetic was ~240 of ~830 SASS instructions a tile).
template <class C>
struct KvLoad {
  static constexpr int kChunksPerRow = C::kHeadDim / 8;
  static_assert(C::kThreads % kChunksPerRow == 0, "each thread copies one fixed column of the tile");
  static constexpr int kRowsPerPass = C::kThreads / kChunksPerRow;
  static constexpr int kPasses = (C::kTileN + kRowsPerPass - 1) / kRowsPerPass;
  int row;
  int col;
};

template <class C>
__device__ __forceinline__ KvLoad<C> kv_load_of_thread() {
  return {static_cast<int>(threadIdx.x) / KvLoad<C>::kChunksPerRow, (static_cast<int>(threadIdx.x) % KvLoad<C>::kChunksPerRow) * 8};
}

// Issues the cp.async copies of one K and one V tile into a pipeline stage.
template <class C>
__device__ __forceinline__ void load_kv_tile(const TileRef<typename C::T>& t, typename C::T* sk, typename C::T* sv, const KvLoad<C>& ld) {
  using T = typename C::T;
  using L = KvLoad<C>;
  const int first = ld.row * t.stride + ld.col;
  const int pass_stride = L::kRowsPerPass * t.stride;
  sk += ld.row * C::kSmemStride + ld.col;
  sv += ld.row * C::kSmemStride + ld.col;
#pragma unroll
  for (int p = 0; p < L::kPasses; ++p) {
    const int row = ld.row + p * L::kRowsPerPass;
    // Only when kRowsPerPass does not divide the tile do some threads run out of rows.
    if (L::kPasses * L::kRowsPerPass == C::kTileN || row < C::kTileN) {
      const bool ok = row < t.valid;
      // A row past the valid keys is zero-filled (src-size 0) from the tile's first row, a readable address.
      const T* k = ok ? t.k + first + p * pass_stride : t.k;
      const T* v = ok ? t.v + first + p * pass_stride : t.v;
      cp_async_16(sk + p * L::kRowsPerPass * C::kSmemStride, k, ok);
      cp_async_16(sv + p * L::kRowsPerPass * C::kSmemStride, v, ok);
    }
  }
}

// Writes output row r's columns col, col + 1 (r: packed row of the KV head) and, from the
// thread of column 0, its log-sum-exp: final O when there is one split, else the split's
// partial (O, lse) in the workspace, which the CTAs of the next row group merge (merge_split_slice).
template <class C>
__device__ __forceinline__ void store_pair(const TidarcAttentionArgs& a, int b, int kvh, int r, int col, float v0, float v1, float lse,
                                           int split, int num_splits) {
  using T = typename C::T;
  constexpr int D = C::kHeadDim;
  const size_t rows_total = static_cast<size_t>(a.batch) * C::kSteps * C::kQHeads;
  const int tq = r / C::kGroup;
  const int hq = kvh * C::kGroup + r % C::kGroup;
  const size_t row_index = (static_cast<size_t>(b) * C::kSteps + tq) * C::kQHeads + hq;
  if (num_splits == 1) {
    *reinterpret_cast<uint32_t*>(static_cast<T*>(a.o) + row_index * D + col) = Elem<T>::pack2(v0, v1);
    if (col == 0) a.lse[row_index] = lse;
  } else {
    float* ws_o = a.workspace + (static_cast<size_t>(split) * rows_total + row_index) * D;
    float* ws_lse = a.workspace + static_cast<size_t>(num_splits) * rows_total * D;
    st_global_f32x2(ws_o + col, v0, v1);  // read by the merging CTA
    if (col == 0) st_global_f32(ws_lse + static_cast<size_t>(split) * rows_total + row_index, lse);
  }
}

// The key warps of a row warp each saw a slice of every key tile: merge their (max, sum, O)
// into the row's softmax, in warp order (deterministic), through the K/V stages (free: the
// last tile's barrier has passed). Per warp: 16 maxima, 16 sums, 16 x D partial O (fp32).
template <class C, int kDChunks>
__device__ __forceinline__ void merge_key_warps(const TidarcAttentionArgs& a, int b, int kvh, int row_tile, int split, int num_splits,
                                                float (&o)[kDChunks][4], float (&row_max)[2], float (&row_sum)[2]) {
  constexpr int D = C::kHeadDim;
  constexpr int kK = C::kKeyWarps;
  constexpr int kWarpFloats = 16 * (2 + D);
  static_assert(C::kWarps * kWarpFloats * 4 <= 4 * C::kTileN * C::kSmemStride * static_cast<int>(sizeof(typename C::T)),
                "the key warps' partial softmax state fits in the K/V stages");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* part = reinterpret_cast<float*>(smem_raw);  // warp w: max[16], sum[16], o[16][D]
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int tg = lane % 4;
  {
    float* mine = part + warp * kWarpFloats;
    for (int h = 0; h < 2; ++h) {
      if (tg == 0) {
        mine[g + 8 * h] = row_max[h];
        mine[16 + g + 8 * h] = row_sum[h];
      }
      for (int j = 0; j < kDChunks; ++j) {
        *reinterpret_cast<float2*>(mine + 32 + (g + 8 * h) * D + j * 8 + 2 * tg) = make_float2(o[j][2 * h], o[j][2 * h + 1]);
      }
    }
  }
  __syncthreads();  // every key warp's state is in shared memory before any row merges it
  // One thread a row: each key warp's weight exp2(max_w - max) / sum replaces its max; the
  // row's log-sum-exp replaces key warp 0's sum.
  for (int t = threadIdx.x; t < C::kTileM; t += C::kThreads) {
    float* w0 = part + (t / 16) * kK * kWarpFloats;
    const int r16 = t % 16;
    float m = -INFINITY;
    for (int k = 0; k < kK; ++k) m = fmaxf(m, w0[k * kWarpFloats + r16]);
    const float base = m == -INFINITY ? 0.f : m;  // no visible key in any slice: every weight 0
    float sum = 0.f;
    for (int k = 0; k < kK; ++k) {
      const float scale = fast_exp2(w0[k * kWarpFloats + r16] - base);
      w0[k * kWarpFloats + r16] = scale;
      sum += scale * w0[k * kWarpFloats + 16 + r16];
    }
    const float inv = sum == 0.f ? 0.f : 1.f / sum;
    for (int k = 0; k < kK; ++k) w0[k * kWarpFloats + r16] *= inv;
    w0[16 + r16] = sum == 0.f ? -INFINITY : (base + __log2f(sum)) * 0.6931471805599453f;
  }
  __syncthreads();  // the weights are final before the columns are summed
  for (int i = threadIdx.x; i < C::kTileM * (D / 2); i += C::kThreads) {
    const int rl = i / (D / 2);
    const int col = (i % (D / 2)) * 2;
    const int r = row_tile * C::kTileM + rl;
    if (r >= C::kRows) continue;
    const float* w0 = part + (rl / 16) * kK * kWarpFloats;
    const int r16 = rl % 16;
    float v0 = 0.f, v1 = 0.f;
    for (int k = 0; k < kK; ++k) {
      const float* wk = w0 + k * kWarpFloats;
      const float2 x = *reinterpret_cast<const float2*>(wk + 32 + r16 * D + col);
      v0 += wk[r16] * x.x;
      v1 += wk[r16] * x.y;
    }
    store_pair<C>(a, b, kvh, r, col, v0, v1, w0[16 + r16], split, num_splits);
  }
}

// ---- the online softmax on accumulator fragments, shared with the sm_90a kernel ----------------
// A warp's scores of a key tile are mma.m16n8 C fragments, one per 8 keys: s[j][e] is row
// g + 8 (e / 2) of the warp's 16 (g = lane / 4) and key key_base + 8 j + 2 tg + e % 2 of the tile
// (tg = lane % 4). wgmma's m64nN accumulators are, per warp, that fragment repeated for every 8
// columns (PTX ISA, "WGMMA .m64nNk16 register fragment layout"), so the sm_90a kernel runs the
// same code on them (as_fragments): one mask, one softmax, one set of -inf guards, one store.
// The softmax is two steps (softmax_max, softmax_exp) so that the mma.sync kernel keeps its order
// (every m-tile's max, O rescaled, then every m-tile's exp2): the order the two fused into one
// step gave cost ptxas spills at Qwen3-8B k = 8 (sm_90, 32-row warps at 255 registers).

/** A flat wgmma accumulator array as its n8 fragments: the same floats in the same order. */
template <int N>
__device__ __forceinline__ float (&as_fragments(float (&d)[N]))[N / 4][4] {
  static_assert(N % 4 == 0, "whole n8 fragments");
  return reinterpret_cast<float (&)[N / 4][4]>(d);
}

/** The first step of a key tile: masks the scores (only tail and partial tiles), scales them to
 *  the log2 domain and moves the rows' running max to the tile's, their sums with it. base: what
 *  softmax_exp subtracts; scale_old: what the rows' O must be multiplied by (rescale_rows; the
 *  sm_90a kernel does it only once the P V wgmma writing O has retired). */
template <class C, int kChunks>
__device__ __forceinline__ void softmax_max(float (&s)[kChunks][4], const TileRef<typename C::T>& tile, int key_base, const int (&row_token)[2],
                                            float (&row_max)[2], float (&row_sum)[2], float (&scale_old)[2], float (&base)[2]) {
  const int tg = threadIdx.x % 4;
  float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int h = e / 2;
      const int kj = key_base + j * 8 + 2 * tg + (e & 1);
      float x = s[j][e] * C::kScaleLog2;
      if (tile.mode == kPrefixTail) {
        if (kj >= tile.valid) x = -INFINITY;
      } else if (tile.mode == kStepPartial) {
        if (kj >= tile.valid || !C::visible(row_token[h], tile.key0 + kj)) x = -INFINITY;
      }
      s[j][e] = x;
      tile_max[h] = fmaxf(tile_max[h], x);
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    tile_max[h] = fmaxf(tile_max[h], shfl_xor(tile_max[h], 1));
    tile_max[h] = fmaxf(tile_max[h], shfl_xor(tile_max[h], 2));
    const float new_max = fmaxf(row_max[h], tile_max[h]);
    // A row with no visible key so far keeps max = -inf; exponentiate against 0 then,
    // so -inf - (-inf) never makes NaN (every p is exp2(-inf) = 0).
    base[h] = new_max == -INFINITY ? 0.f : new_max;
    scale_old[h] = fast_exp2(row_max[h] - base[h]);
    row_max[h] = new_max;
    row_sum[h] *= scale_old[h];
  }
}

/** The second step: each score becomes p = exp2(score - base), added to its row's sum (this
 *  thread's columns; reduce_row_sums adds the other threads' at the end). */
template <int kChunks>
__device__ __forceinline__ void softmax_exp(float (&s)[kChunks][4], const float (&base)[2], float (&row_sum)[2]) {
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float p = fast_exp2(s[j][e] - base[e / 2]);
      s[j][e] = p;
      row_sum[e / 2] += p;
    }
  }
}

/** O's fragments to their rows' new max: row g is [0], [1], row g + 8 is [2], [3]. */
template <int kChunks>
__device__ __forceinline__ void rescale_rows(float (&o)[kChunks][4], const float (&scale)[2]) {
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    o[j][0] *= scale[0]; o[j][1] *= scale[0];
    o[j][2] *= scale[1]; o[j][3] *= scale[1];
  }
}

/** Keys 16 kk .. 16 kk + 15 of P (fragments 2 kk and 2 kk + 1) as the A fragment of an m16n8k16
 *  step: two n8 accumulator fragments are one k16 A fragment, so P never leaves the registers. */
template <typename T, int kChunks>
__device__ __forceinline__ void p_fragment(const float (&p)[kChunks][4], int kk, uint32_t (&a)[4]) {
  a[0] = Elem<T>::pack2(p[2 * kk][0], p[2 * kk][1]);
  a[1] = Elem<T>::pack2(p[2 * kk][2], p[2 * kk][3]);
  a[2] = Elem<T>::pack2(p[2 * kk + 1][0], p[2 * kk + 1][1]);
  a[3] = Elem<T>::pack2(p[2 * kk + 1][2], p[2 * kk + 1][3]);
}

/** The rows' sums over the 4 threads of a fragment row (each summed its own columns). */
__device__ __forceinline__ void reduce_row_sums(float (&row_sum)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    row_sum[h] += shfl_xor(row_sum[h], 1);
    row_sum[h] += shfl_xor(row_sum[h], 2);
  }
}

/** Writes a warp's rows g and g + 8 (packed rows row_g, row_g + 8), normalised, with their
 *  log-sum-exp: O when there is one split, else the split's partial (O, lse) in the workspace (as
 *  store_pair); padding rows past kRows are skipped. A row that saw no visible key (sum 0) writes
 *  O = 0 and lse = -inf. The split test is outside the column loop: store_pair's test per pair
 *  cost ptxas 11 registers at Qwen3-8B k = 4 (sm_80: 216 against 205). */
template <class C, int kDChunks>
__device__ __forceinline__ void store_rows(const TidarcAttentionArgs& a, int b, int kvh, int row_g, const float (&o)[kDChunks][4], const float (&row_max)[2],
                                           const float (&row_sum)[2], int split, int num_splits) {
  using T = typename C::T;
  constexpr int D = C::kHeadDim;
  const int tg = threadIdx.x % 4;
  const size_t rows_total = static_cast<size_t>(a.batch) * C::kSteps * C::kQHeads;
#pragma unroll
  for (int h = 0; h < 2; ++h) {  // unrolled: o[] indexed by a runtime h would live in local memory
    const int r = row_g + 8 * h;
    if (r >= C::kRows) continue;
    const int tq = r / C::kGroup;
    const int hq = kvh * C::kGroup + r % C::kGroup;
    const size_t row_index = (static_cast<size_t>(b) * C::kSteps + tq) * C::kQHeads + hq;
    const bool empty = row_sum[h] == 0.f;
    const float inv = empty ? 0.f : 1.f / row_sum[h];
    const float lse = empty ? -INFINITY : (row_max[h] + __log2f(row_sum[h])) * 0.6931471805599453f;
    if (num_splits == 1) {
      T* out = static_cast<T*>(a.o) + row_index * D;
#pragma unroll
      for (int j = 0; j < kDChunks; ++j) {
        const int col = j * 8 + 2 * tg;
        *reinterpret_cast<uint32_t*>(out + col) = Elem<T>::pack2(o[j][2 * h] * inv, o[j][2 * h + 1] * inv);
      }
      if (tg == 0) a.lse[row_index] = lse;
    } else {
      float* ws_o = a.workspace + (static_cast<size_t>(split) * rows_total + row_index) * D;
      float* ws_lse = a.workspace + static_cast<size_t>(num_splits) * rows_total * D;
#pragma unroll
      for (int j = 0; j < kDChunks; ++j) {
        const int col = j * 8 + 2 * tg;
        st_global_f32x2(ws_o + col, o[j][2 * h] * inv, o[j][2 * h + 1] * inv);  // read by the merging CTA
      }
      if (tg == 0) st_global_f32(ws_lse + static_cast<size_t>(split) * rows_total + row_index, lse);
    }
  }
}

// ---- split-KV in one launch: which work a CTA does, and the merge spread over every CTA ----
// A row group is (row tile, sequence, KV head), numbered g = (b kKvHeads + kvh) row tiles +
// row tile. With one split the grid is (row tiles, batch x KV heads, 1) and blockIdx names the
// group. With S > 1 splits the grid is (G + 1, 1, S) for G row groups (attention_grid in
// op-abi.ts, the one rule of every launcher): G S compute items and S merge-only CTAs, whose
// roles come from a DYNAMIC id that thread 0 draws by atomicAdd on split_counters[0] (blockIdx
// says nothing). CTAs draw ids in the order they start, so every lower id is resident or done
// (the ordering CUB's decoupled look-back relies on). Id i < G S computes split i % S of group
// i / S, counts in on done[g] = split_counters[1 + g], then merges slice i % S of group g - 1
// once done[g - 1] reaches S; ids G S .. G S + S - 1 merge the slices of group G - 1. Deadlock-
// free by induction on the id: a CTA waits only on lower ids (group g - 1's), which have started,
// and compute never waits, so the lowest id still running always makes progress. The merge of a
// row group is thus spread over S CTAs, and the whole merge over all G S + S, instead of one
// CTA a row group reading all its partials after the others finished.
// Every launch leaves the counters 0 (a CUDA graph replays with the same buffer): the CTA that
// draws the last id resets the id counter (every CTA has drawn by then), and each merge duty
// counts out on done[g] after its merge, the S-th (done = 2 S - 1 before it) resetting it
// (every wait of the group has passed by then: a duty counts out only after its own wait).
// The CTA's work lives in shared memory and the kernels read it through volatile references, a
// shared load at each use: values copied into registers stay live across the main loop (blockIdx,
// which they replace, is a special register the compiler re-reads for free) and cost registers
// (ptxas at sm_90: 12 bytes of spills at 255 registers for k = 8 and k = 16, AR +12 registers);
// plain references let the compiler keep the loads (8 bytes of spills); volatile ones use fewer
// registers than blockIdx did (k = 8 and k = 16 246 instead of 255, k = 4 207 instead of 230).
struct SplitWork {
  int row_tile, b, kvh, split, num_splits;
  int id;      // the dynamic id (S > 1), else -1
  int groups;  // G: row groups of the launch
};

template <class C>
__device__ __forceinline__ int row_tiles_of() { return (C::kRows + C::kTileM - 1) / C::kTileM; }

template <class C>
__device__ __forceinline__ void name_group(SplitWork& w, int group) {
  const int y = group / row_tiles_of<C>();
  w.row_tile = group % row_tiles_of<C>();
  w.b = y / C::kKvHeads;
  w.kvh = y % C::kKvHeads;
}

// The CTA's work: from blockIdx with one split; else from the dynamic id (a barrier: every
// thread of the CTA calls it, first).
template <class C>
__device__ __forceinline__ const SplitWork& split_work(const TidarcAttentionArgs& a) {
  __shared__ SplitWork w;
  if (threadIdx.x == 0) {
    w.num_splits = gridDim.z;
    w.groups = row_tiles_of<C>() * a.batch * C::kKvHeads;
    if (w.num_splits == 1) {
      w.row_tile = blockIdx.x, w.b = blockIdx.y / C::kKvHeads, w.kvh = blockIdx.y % C::kKvHeads, w.split = 0, w.id = -1;
    } else {
      w.id = atomicAdd(a.split_counters, 1);
      if (w.id == static_cast<int>(gridDim.x * gridDim.z) - 1) a.split_counters[0] = 0;  // the last id: every CTA has drawn
      w.split = w.id % w.num_splits;
      name_group<C>(w, min(w.id / w.num_splits, w.groups - 1));  // a merge-only CTA: group G - 1's names (unused)
    }
  }
  __syncthreads();
  return w;
}

template <class C>
__device__ __forceinline__ void attention_tile_kernel(const TidarcAttentionArgs& a, const SplitWork& w) {
  using T = typename C::T;
  constexpr int D = C::kHeadDim;
  constexpr int NT = C::kTileN;
  constexpr int S = C::kStages;         // cp.async stages: S - 1 tiles stream in while one is consumed
  constexpr int MT = C::kWarpRows / 16;  // m16 tiles of a row warp: with 2, each K/V fragment feeds 2 mma
  constexpr int NW = NT / C::kKeyWarps;  // keys of each tile this warp scores
  constexpr int kDChunks = D / 8;     // n8 chunks of the output
  constexpr int kDSteps = D / 16;     // k16 steps of Q K^T
  constexpr int kKeyChunks = NW / 8;  // n8 chunks of the scores
  constexpr int kKeySteps = NW / 16;  // k16 steps of P V
  constexpr int kStageElems = NT * C::kSmemStride;
  static_assert(C::kWarps == C::kRowWarps * C::kKeyWarps, "the warps are row warps x key warps");
  static_assert(C::kTileM == C::kWarpRows * C::kRowWarps, "a row warp owns kWarpRows rows");
  static_assert(MT == 1 || (MT == 2 && C::kKeyWarps == 1), "a 32-row warp owns whole key tiles");
  static_assert(S == 2 || S == 3, "2 or 3 cp.async stages");
  static_assert(D % 16 == 0 && NW % 16 == 0, "tiles and key slices are made of m16n8k16 fragments");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  // Stage s holds K at smem + 2 s kStageElems and V right after it (pointer arithmetic,
  // not a pointer array: a runtime-indexed array would live in local memory).
  auto stage_k = [&](int s) { return smem + 2 * s * kStageElems; };
  auto stage_v = [&](int s) { return smem + (2 * s + 1) * kStageElems; };

  const volatile int& row_tile = w.row_tile;  // shared memory, re-read at each use (SplitWork)
  const volatile int& b = w.b;
  const volatile int& kvh = w.kvh;
  const volatile int& split = w.split;
  const volatile int& num_splits = w.num_splits;
  const int warp = threadIdx.x / 32;
  const int row_warp = warp / C::kKeyWarps;
  const int key_base = (warp % C::kKeyWarps) * NW;  // this warp's first key of every tile
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;  // fragment row group
  const int mi = lane / 8; // which matrix of an ldmatrix_x4 this lane addresses

  const KeyShare keys = key_share<C>(a, b, row_tile, split, num_splits);
  const int num_tiles = keys.num_tiles;
  const KvLoad<C> kv_load = kv_load_of_thread<C>();
  // Issues tile t into stage t % S and commits it as one group, an empty group past the last
  // tile: the waits count groups, so every wait below is the same constant.
  auto issue_tile = [&](int t) {
    if (t < num_tiles) {
      load_kv_tile<C>(describe_tile<C>(a, b, kvh, keys, row_tile, t), stage_k(t % S), stage_v(t % S), kv_load);
    }
    cp_async_commit();
  };

  // ---- Q: global -> shared, overlapped with the first S - 1 K/V tiles -----------------
  // 16-row warps keep Q's fragments in registers, read once: Q goes to the last stage while
  // tiles 0 .. S - 2 stream into the others, and only Q is waited for. A Q tile larger than
  // one stage (16 x warps rows > 2 x tileN) aliases the stages from 0 and is loaded before any
  // tile is issued. 32-row warps would need twice the Q, O and S fragments in registers (over
  // 255 at head dim 128), so Q stays in a region of its own after the stages and its
  // fragments are read at each k16 step (as FlashAttention-2 does): nothing waits for Q alone.
  constexpr bool kQInShared = MT == 2;
  constexpr bool kQBesideTiles = !kQInShared && C::kTileM <= 2 * NT;
  T* const sq = kQInShared ? smem + 2 * S * kStageElems : kQBesideTiles ? stage_k(S - 1) : smem;
  {
    constexpr int kQRowsPerPass = C::kThreads / kDChunks;
    constexpr int kQPasses = (C::kTileM + kQRowsPerPass - 1) / kQRowsPerPass;
    static_assert(C::kThreads % kDChunks == 0, "Q copies unroll over whole rows");
    const int col = (threadIdx.x % kDChunks) * 8;
#pragma unroll
    for (int pass = 0; pass < kQPasses; ++pass) {
      const int i = threadIdx.x / kDChunks + pass * kQRowsPerPass;
      // Only a 16-row tile of many key warps has more copying threads than Q chunks.
      if (kQPasses * kQRowsPerPass != C::kTileM && i >= C::kTileM) break;
      const int r = row_tile * C::kTileM + i;
      const bool ok = r < C::kRows;
      const int tq = ok ? r / C::kGroup : 0;
      const int hq = kvh * C::kGroup + (ok ? r % C::kGroup : 0);
      const size_t off = ((static_cast<size_t>(b) * C::kSteps + tq) * C::kQHeads + hq) * D + col;
      cp_async_16(sq + i * C::kSmemStride + col, static_cast<const T*>(a.q) + off, ok);
    }
    cp_async_commit();
  }
  if (kQInShared || kQBesideTiles) {
    for (int t = 0; t < S - 1; ++t) issue_tile(t);
  }
  uint32_t qa[kQInShared ? 1 : kDSteps][4];  // 16-row warps: Q's A fragments, every k16 step
  if constexpr (!kQInShared) {
    cp_async_wait<kQBesideTiles ? S - 1 : 0>();  // Q has landed; tiles 0 .. S - 2 may still be in flight
    __syncthreads();
    const int row = row_warp * 16 + (mi % 2) * 8 + lane % 8;
#pragma unroll
    for (int kk = 0; kk < kDSteps; ++kk) ldmatrix_x4(qa[kk], sq + row * C::kSmemStride + kk * 16 + (mi / 2) * 8);
    __syncthreads();  // the stage Q occupied is refilled below
    if (!kQBesideTiles) {
      for (int t = 0; t < S - 1; ++t) issue_tile(t);
    }
  }

  // Rows of this thread: fragment rows g and g + 8 of each of the warp's m16 tiles.
  int row_token[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = row_tile * C::kTileM + row_warp * C::kWarpRows + mt * 16 + g + 8 * h;
      row_token[mt][h] = min(r / C::kGroup, C::kSteps - 1);  // padding rows borrow a real token; never written
    }
  }
  float o[MT][kDChunks][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int j = 0; j < kDChunks; ++j) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.f;
  float row_max[MT][2];  // running max of scaled scores (log2 domain)
  float row_sum[MT][2];  // this thread's partial sums; reduced at the end
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    row_max[mt][0] = row_max[mt][1] = -INFINITY;
    row_sum[mt][0] = row_sum[mt][1] = 0.f;
  }

  for (int i = 0; i < num_tiles; ++i) {
    const int stage = i % S;
    // Tile i + S - 1 goes into the stage tile i - 1 used (freed by the barrier ending the last
    // iteration); then all but the newest S - 1 groups are complete: Q and tiles 0 .. i.
    issue_tile(i + S - 1);
    cp_async_wait<S - 1>();
    __syncthreads();
    const TileRef<T> tile = describe_tile<C>(a, b, kvh, keys, row_tile, i);

    // ---- S = Q K^T for this warp's rows x its NW keys of the tile ---------------------
    float s[MT][kKeyChunks][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int j = 0; j < kKeyChunks; ++j) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kDSteps; ++kk) {
      uint32_t qf[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if constexpr (kQInShared) {
          const int row = row_warp * C::kWarpRows + mt * 16 + (mi % 2) * 8 + lane % 8;
          ldmatrix_x4(qf[mt], sq + row * C::kSmemStride + kk * 16 + (mi / 2) * 8);
        } else {
#pragma unroll
          for (int e = 0; e < 4; ++e) qf[mt][e] = qa[kk][e];
        }
      }
#pragma unroll
      for (int j = 0; j < kKeyChunks; j += 2) {
        // matrices: keys j*8..+7 x d lo, keys j*8..+7 x d hi, keys (j+1)*8.. x d lo, .. x d hi
        const int key = key_base + j * 8 + (mi / 2) * 8 + lane % 8;
        uint32_t kb[4];
        ldmatrix_x4(kb, stage_k(stage) + key * C::kSmemStride + kk * 16 + (mi % 2) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_m16n8k16<T>(s[mt][j], qf[mt], kb);
          mma_m16n8k16<T>(s[mt][j + 1], qf[mt], kb + 2);
        }
      }
    }

    // ---- mask (only tail and partial tiles), scale, online softmax -------------------
    float scale_old[MT][2], base[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) softmax_max<C>(s[mt], tile, key_base, row_token[mt], row_max[mt], row_sum[mt], scale_old[mt], base[mt]);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) rescale_rows(o[mt], scale_old[mt]);  // each m-tile's O to its rows' new max
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) softmax_exp(s[mt], base[mt], row_sum[mt]);

    // ---- O += P V: the score accumulators are already the A fragments of P ------------
#pragma unroll
    for (int kk = 0; kk < kKeySteps; ++kk) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) p_fragment<T>(s[mt], kk, pa[mt]);
#pragma unroll
      for (int j = 0; j < kDChunks; j += 2) {
        // matrices (transposed): keys lo x d chunk j, keys hi x chunk j, keys lo x chunk j+1, keys hi x chunk j+1
        const int key = key_base + kk * 16 + (mi % 2) * 8 + lane % 8;
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, stage_v(stage) + key * C::kSmemStride + (j + mi / 2) * 8);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_m16n8k16<T>(o[mt][j], pa[mt], vb);
          mma_m16n8k16<T>(o[mt][j + 1], pa[mt], vb + 2);
        }
      }
    }
    __syncthreads();  // everyone is done with this stage before it is refilled
  }
  cp_async_wait<0>();  // a CTA with no tile never waited for Q (32-row warps): nothing is in flight at exit

  // ---- finish: normalise, write O (or the split's partial) and the log-sum-exp ---------
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) reduce_row_sums(row_sum[mt]);
  if constexpr (C::kKeyWarps > 1) {
    merge_key_warps<C>(a, b, kvh, row_tile, split, num_splits, o[0], row_max[0], row_sum[0]);
  } else {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      store_rows<C>(a, b, kvh, row_tile * C::kTileM + row_warp * C::kWarpRows + mt * 16 + g, o[mt], row_max[mt], row_sum[mt], split, num_splits);
    }
  }
}

// Slice `slice` of S of row group `group`'s merge: every split's partial (O, lse) by log-sum-exp,
// in split order 0..S-1 (the two-launch combine's arithmetic, so the same bits whichever CTA
// merges). The group's (row, 4 columns) items are cut into S runs of whole 128-byte lines (8
// items), so AR's few rows (4 at G = 4: 16 lines) still spread over all S CTAs; a row's statistics
// are recomputed by each slice holding some of its items (the same loads in the same order, so the
// same bits) and its lse is written by the slice holding its first item. Once every thread has
// read its items, the slice drops the partial O lines it consumed from L2 unwritten
// (discard.global.L2): nothing reads them again, so the partials are L2 traffic only and never
// reach HBM (attention-cost-model.ts). Only lines wholly inside one (row, split) run of the
// slice are dropped: with the runtime's 256-byte aligned workspace (cuMemAlloc) that is every
// line of partial O; the lse words (4 bytes a row and split) are left. A thread per row takes the row's max lse and weight sum
// (into shared memory: the K/V stages are free by now), then every thread takes items, the
// 16-byte partial loads of 8 splits issued together (unrolled: the merge is latency-bound, and
// its registers are free after the main loop); ld.global.cg reads the other CTAs' partials from
// L2, never a stale L1 line.
template <class C>
__device__ __forceinline__ void merge_slice(const TidarcAttentionArgs& a, int splits, int group, int slice) {
  using T = typename C::T;
  constexpr int D = C::kHeadDim;
  constexpr int kItemsPerRow = D / 4;
  constexpr int kLineItems = 128 / (4 * sizeof(float));  // items of a 128-byte line
  static_assert(D % 4 == 0 && kItemsPerRow % kLineItems == 0, "a merge item is 4 columns, a row whole 128-byte lines of them");
  static_assert(2 * C::kTileM * 4 <= 4 * C::kTileN * C::kSmemStride * static_cast<int>(sizeof(T)), "the row statistics fit in the K/V stages");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* max_of = reinterpret_cast<float*>(smem_raw);  // per local row: max lse, then weight sum
  float* sum_of = max_of + C::kTileM;
  SplitWork w;
  name_group<C>(w, group);
  const size_t rows_total = static_cast<size_t>(a.batch) * C::kSteps * C::kQHeads;
  const int r0 = w.row_tile * C::kTileM;
  const int lines = min(C::kTileM, C::kRows - r0) * (kItemsPerRow / kLineItems);
  const int lo = slice * lines / splits * kLineItems, hi = (slice + 1) * lines / splits * kLineItems;
  if (lo == hi) return;  // more slices than items (block-uniform)
  const int row_lo = lo / kItemsPerRow, row_hi = (hi - 1) / kItemsPerRow + 1;
  const float* ws_lse = a.workspace + static_cast<size_t>(splits) * rows_total * D;
  auto row_of = [&](int rl) {
    const int r = r0 + rl;
    return (static_cast<size_t>(w.b) * C::kSteps + r / C::kGroup) * C::kQHeads + w.kvh * C::kGroup + r % C::kGroup;
  };
  for (int rl = row_lo + threadIdx.x; rl < row_hi; rl += C::kThreads) {
    const size_t row = row_of(rl);
    float max_lse = -INFINITY;
#pragma unroll 4
    for (int s = 0; s < splits; ++s) max_lse = fmaxf(max_lse, ld_global_cg_f32(ws_lse + s * rows_total + row));
    float weight_sum = 0.f;
    if (max_lse != -INFINITY) {
#pragma unroll 4
      for (int s = 0; s < splits; ++s) weight_sum += __expf(ld_global_cg_f32(ws_lse + s * rows_total + row) - max_lse);
    }
    max_of[rl - row_lo] = max_lse;
    sum_of[rl - row_lo] = weight_sum;
    if (rl * kItemsPerRow >= lo) a.lse[row] = max_lse == -INFINITY ? -INFINITY : max_lse + __logf(weight_sum);  // -inf: no split saw a key
  }
  __syncthreads();
  for (int i = lo + threadIdx.x; i < hi; i += C::kThreads) {
    const int rl = i / kItemsPerRow;
    const int c = (i % kItemsPerRow) * 4;
    const size_t row = row_of(rl);
    const float max_lse = max_of[rl - row_lo];
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    if (max_lse != -INFINITY) {
#pragma unroll 8
      for (int s = 0; s < splits; ++s) {
        const float w = __expf(ld_global_cg_f32(ws_lse + s * rows_total + row) - max_lse);
        const float4 x = ld_global_cg_f32x4(a.workspace + (static_cast<size_t>(s) * rows_total + row) * D + c);
        acc[0] += w * x.x;
        acc[1] += w * x.y;
        acc[2] += w * x.z;
        acc[3] += w * x.w;
      }
      const float weight_sum = sum_of[rl - row_lo];
      for (int e = 0; e < 4; ++e) acc[e] /= weight_sum;
    }
    T* out = static_cast<T*>(a.o) + row * D + c;
    reinterpret_cast<uint32_t*>(out)[0] = Elem<T>::pack2(acc[0], acc[1]);
    reinterpret_cast<uint32_t*>(out)[1] = Elem<T>::pack2(acc[2], acc[3]);
  }
  __syncthreads();  // every thread's loads of the slice's partials have returned before a line is dropped
  for (int k = threadIdx.x; k < (row_hi - row_lo) * splits; k += C::kThreads) {
    const int rl = row_lo + k / splits, s = k % splits;
    const float* part = a.workspace + (static_cast<size_t>(s) * rows_total + row_of(rl)) * D;
    const uintptr_t begin = reinterpret_cast<uintptr_t>(part + (max(lo, rl * kItemsPerRow) - rl * kItemsPerRow) * 4);
    const uintptr_t end = reinterpret_cast<uintptr_t>(part + (min(hi, (rl + 1) * kItemsPerRow) - rl * kItemsPerRow) * 4);
    for (uintptr_t line = (begin + 127) & ~uintptr_t{127}; line + 128 <= end; line += 128) discard_l2_line(reinterpret_cast<const void*>(line));
  }
}

// Called by every CTA after its compute item (attention_tile_kernel wrote its split's partial;
// a merge-only CTA computed nothing): the count-in on its group, then its merge duty
// (split_work's schedule). Each thread fences its partial stores (device scope) before thread 0
// counts the CTA in (release); thread 0 polls the predecessor's count with ld.acquire.gpu, and
// the barrier after it orders every thread's partial loads after that acquire.
template <class C>
__device__ __forceinline__ void merge_split_slice(const TidarcAttentionArgs& a, const SplitWork& w) {
  const int splits = w.num_splits;
  if (splits == 1) return;  // attention_tile_kernel wrote O and lse itself
  int* const done = a.split_counters + 1;
  const bool computes = w.id < w.groups * splits;
  const int group = computes ? w.id / splits : w.groups;  // merge-only: past the last group
  if (computes) {
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) atomicAdd(done + group, 1);
  }
  const int target = group - 1;  // the group this CTA merges a slice of: a lower id's
  if (target < 0) return;        // group 0 has no predecessor (block-uniform)
  if (threadIdx.x == 0) {
    while (ld_acquire_gpu_i32(done + target) < splits) {
    }
  }
  __syncthreads();
  merge_slice<C>(a, splits, target, w.id % splits);
  if (threadIdx.x == 0 && atomicAdd(done + target, 1) == 2 * splits - 1) done[target] = 0;  // the group's last duty
}

}  // namespace tidarc
