/*! tidarc portable C++ step attention: the same plan as the CUDA kernel (row tiles of
    kTileM token-major rows per (sequence, KV head, split), prefix tiles without mask,
    then the compiler's list of non-empty in-step tiles, predicate only in partial ones),
    computed in fp32 on the CPU with a small thread pool. */
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "tidarc_abi.h"

namespace tidarc_cpu {

struct Bf16 {
  static float to_float(uint16_t h) {
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return static_cast<uint16_t>(u >> 16);
  }
};

struct Fp16 {
  static float to_float(uint16_t h) {
    const uint32_t sign = (h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
      u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
      u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
      u = sign;
    } else {  // subnormal: value = man * 2^-24
      float f = static_cast<float>(man) * 5.9604644775390625e-8f;
      return sign ? -f : f;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00u;          // NaN
    if (abs >= 0x477ff000u) return sign | 0x7c00u;         // rounds to >= 65520: inf
    if (abs < 0x38800000u) {                               // below 2^-14: subnormal or zero
      const float a = std::fabs(f) * 16777216.0f;          // units of 2^-24, exact
      return sign | static_cast<uint16_t>(std::nearbyint(a));  // current rounding mode: nearest even
    }
    uint32_t v = abs - 0x38000000u;  // rebias exponent 127 -> 15
    v += 0xfffu + ((v >> 13) & 1u);
    return sign | static_cast<uint16_t>(v >> 13);
  }
};

enum TileMode : int { kPrefixFull = 0, kPrefixTail = 1, kStepFull = 2, kStepPartial = 3 };

struct TileRef {
  const uint16_t* k;
  const uint16_t* v;
  int64_t stride;
  int valid;
  int key0;
  int mode;
};

template <class C>
TileRef describe_tile(const TidarcAttentionArgs& a, int b, int kvh, int prefix_len, int p0, int prefix_tiles_here,
                      int row_tile, int i) {
  TileRef t;
  if (i < prefix_tiles_here) {
    const int key0 = (p0 + i) * C::kTileN;
    const int64_t base = ((static_cast<int64_t>(b) * C::kKvHeads + kvh) * a.cache_capacity + key0) * C::kHeadDim;
    t.k = static_cast<const uint16_t*>(a.k_cache) + base;
    t.v = static_cast<const uint16_t*>(a.v_cache) + base;
    t.stride = C::kHeadDim;
    t.valid = std::min(C::kTileN, prefix_len - key0);
    t.key0 = key0;
    t.mode = t.valid == C::kTileN ? kPrefixFull : kPrefixTail;
  } else {
    const int slot = C::kStepTileOffset[row_tile] + (i - prefix_tiles_here);
    const int key0 = C::kStepTileKey[slot] * C::kTileN;
    const int64_t base = ((static_cast<int64_t>(b) * C::kSteps + key0) * C::kKvHeads + kvh) * C::kHeadDim;
    t.k = static_cast<const uint16_t*>(a.k_step) + base;
    t.v = static_cast<const uint16_t*>(a.v_step) + base;
    t.stride = static_cast<int64_t>(C::kKvHeads) * C::kHeadDim;
    t.valid = std::min(C::kTileN, C::kSteps - key0);
    t.key0 = key0;
    t.mode = C::kStepTileFull[slot] ? kStepFull : kStepPartial;
  }
  return t;
}

// 2^x for the softmax, written so that the loops calling it vectorise (std::exp2 is a scalar libm
// call: ~13% of a run). x = i + f with i = floor(x): 2^f on [0, 1) is 1 + f q(f), q a degree-5
// minimax fit (relative error 2e-9 exact, < 2e-7 in fp32; test/codegen/cpu-exp2-sweep.cpp measures
// it against std::exp2), 2^i goes into the exponent bits. Results below 2^-126 (x < -126, -inf)
// are exactly 0, not subnormal: they only join a row sum that holds 2^0 for the row's max. NaN
// stays NaN; x >= 128 gives +inf. No ?:, ||, min/max or bool -> float conversion: GCC turns those
// into branches or masks it cannot vectorise (with -ftrapping-math it will not if-convert the
// float ops it then sinks into one arm).
inline float exp2_poly(float x) {
  const float t = x + 12582912.f;  // 1.5 * 2^23: the low mantissa bits of t hold round(x) (|x| < 2^22)
  const float rn = t - 12582912.f;
  uint32_t tb;
  std::memcpy(&tb, &t, 4);
  const uint32_t down = static_cast<uint32_t>(rn > x);  // round(x) - floor(x)
  const uint32_t i = tb - 0x4B400000u - down;           // floor(x), two's complement
  const uint32_t down_bits = (0u - down) & 0x3f800000u;  // 1.0f or 0.0f
  float down_f;
  std::memcpy(&down_f, &down_bits, 4);
  const float f = x - (rn - down_f);  // [0, 1)
  float q = 2.161291486e-04f;
  q = q * f + 1.246784697e-03f;
  q = q * f + 9.675451554e-03f;
  q = q * f + 5.548528209e-02f;
  q = q * f + 2.402293086e-01f;
  q = q * f + 6.931470633e-01f;
  const uint32_t scale_bits = (i + 127u) << 23;  // 2^i, for i in [-126, 127]
  float scale;
  std::memcpy(&scale, &scale_bits, 4);
  const float r = (1.f + f * q) * scale;
  uint32_t bits;
  std::memcpy(&bits, &r, 4);
  const uint32_t small = static_cast<uint32_t>(x < -126.f), big = static_cast<uint32_t>(x >= 128.f);
  bits = (bits & ((small | big) - 1u)) | (big * 0x7f800000u);  // out of range: 0 or +inf
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

// C (R x W) = [C * c_scale per row] + A (R x K) * B (K x W): one register block of Q K^T or P V;
// rows of A, B, C are LDA, LDB, LDC floats apart. The loop over w is the one GCC vectorises (an
// outer-loop vectorisation: each lane runs the k loop), with U column groups so that each row has
// U vector accumulators. The accumulators are locals that no pointer can alias, so they live in
// registers: each B load feeds R rows and no FMA waits on a store and reload of C (with
// `c[j] += a * b[j]` through pointers every FMA came with a load and a store: ~75% of the time).
template <int R, int U, int W, int K, int LDA, int LDB, int LDC, bool kAccumulate>
inline void gemm_block(const float* __restrict a, const float* __restrict b, float* __restrict c,
                       const float* __restrict c_scale) {
  constexpr int WU = W / U;
  for (int w = 0; w < WU; ++w) {
    float acc[U][R];
    for (int u = 0; u < U; ++u)
      for (int r = 0; r < R; ++r) acc[u][r] = kAccumulate ? c[r * LDC + u * WU + w] * c_scale[r] : 0.f;
    for (int k = 0; k < K; ++k) {
      float bv[U];
      for (int u = 0; u < U; ++u) bv[u] = b[k * LDB + u * WU + w];
      for (int r = 0; r < R; ++r) {
        const float av = a[r * LDA + k];
        for (int u = 0; u < U; ++u) acc[u][r] += av * bv[u];
      }
    }
    for (int u = 0; u < U; ++u)
      for (int r = 0; r < R; ++r) c[r * LDC + u * WU + w] = acc[u][r];
  }
}

// Register block: kBlockRows rows x 2 vectors of kVectorFloats (1 if the tile is too narrow). AVX-512 (32 registers
// of 16 floats): 8 x 2 = 16 accumulators; otherwise (AVX2: 16 registers of 8 floats) 4 x 2 = 8,
// leaving room for the B vectors and the broadcasts. One Qwen3-8B k = 8 step, L = 4096, 1 thread:
// 41 ms (-march=native, AVX-512) and 67 ms (-march=x86-64-v3), against 212 ms before blocking;
// 8 x 2 on AVX2 spills (88 ms), and 16-row blocks stop GCC keeping the accumulators in registers
// (~450 ms). Not intrinsics: the macro only sizes the block, the code is the same everywhere.
#if defined(__AVX512F__)
constexpr int kVectorFloats = 16;
constexpr int kBlockRows = 8;
#else
constexpr int kVectorFloats = 8;
constexpr int kBlockRows = 4;
#endif
// Partial lanes for the row max and sum: one scalar accumulator is a serial chain that GCC may
// not reorder (no -ffast-math); kLanes independent ones vectorise.
constexpr int kLanes = 16;

// Per-thread scratch: the fp32 tiles of one CTA-equivalent work item, rows padded to whole
// register blocks. Allocated per call and not zeroed: a work item writes every element before
// it reads it (q, o and the row vectors over the rows it computes; K, V and S per tile).
// Zeroing the whole buffers cost each call a memset that grew with the tile (80 KB per thread
// at 4 warps x 64 keys, d 64): a large share of a small AR call.
// Keys per online-softmax block. The plan's tile sets the split-KV and mask granularity; the CPU
// kernel runs its blocks at the width that suits its caches (both measured with `tidarc tune`,
// AMD EPYC, cold caches):
//   - a variant of at most 16 GQA-packed rows per KV head (AR, small steps): 16 keys. With few
//     rows the work is converting K and V, and at 64 keys the fp32 K and V blocks (32 KB at head
//     dim 64) no longer fit in L1 beside Q, S and O: AR was 1.1 to 1.3x slower than at 16;
//   - more rows: runs of full prefix tiles merge into blocks of 128 keys while the fp32 K and V
//     blocks stay within 64 KB (head dim <= 64): k = 4 and k = 8 steps at L >= 1k were 1.1 to
//     1.3x faster with 128-key tiles than with 64 (fewer rescales of O per key).
template <class C>
constexpr int small_block_keys() {
  return C::kRows <= 16 && C::kTileN > 16 ? 16 : C::kTileN;
}
template <class C>
constexpr int merged_block_keys() {
  return C::kRows > 16 && C::kTileN < 128 && 128 % C::kTileN == 0 && 128 * C::kHeadDim * 2 * 4 <= 64 * 1024 ? 128 : C::kTileN;
}

// Per-thread scratch: the fp32 tiles of one CTA-equivalent work item, rows padded to whole
// register blocks, keys to the widest block. Allocated per call and not zeroed: a work item
// writes every element before it reads it (q, o and the row vectors over the rows it computes;
// K, V and S per block). Zeroing the whole buffers cost each call a memset that grew with the
// tile (80 KB per thread at 4 warps x 64 keys, d 64): a large share of a small AR call.
template <class C>
struct Scratch {
  static constexpr int kRowsPadded = (C::kTileM + kBlockRows - 1) / kBlockRows * kBlockRows;
  static constexpr int kKeys = merged_block_keys<C>();  // >= the tile >= small_block_keys
  std::unique_ptr<float[]> q{new float[kRowsPadded * C::kHeadDim]};
  std::unique_ptr<float[]> kt{new float[C::kHeadDim * kKeys]};  // K transposed: [d][key]
  std::unique_ptr<float[]> v{new float[kKeys * C::kHeadDim]};
  std::unique_ptr<float[]> s{new float[kRowsPadded * kKeys]};
  std::unique_ptr<float[]> o{new float[kRowsPadded * C::kHeadDim]};
  std::unique_ptr<float[]> row_max{new float[kRowsPadded]};
  std::unique_ptr<float[]> row_sum{new float[kRowsPadded]};
  std::unique_ptr<float[]> row_scale{new float[kRowsPadded]};  // exp2(old max - new max) of this block
};

// One online-softmax block of W keys (t.valid of them real; the rest zeroed and masked): K and V
// converted, S = Q K^T, S becomes P = exp2(S - new max), O and the row sums rescaled by
// exp2(old - new max) and O += P V.
template <class C, int W>
inline void online_block(const TileRef& t, int rows_here, int rows_padded, int row_tile, Scratch<C>& sc) {
  using E = typename C::Elem;
  constexpr int D = C::kHeadDim;
  constexpr int kGroups = W % (2 * kVectorFloats) == 0 && D % (2 * kVectorFloats) == 0 ? 2 : 1;
  constexpr int kCols = kGroups * kVectorFloats;
  static_assert(W % kCols == 0 && D % kCols == 0 && W % kLanes == 0, "tileN and headDim must be multiples of 16");
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float* __restrict q = sc.q.get();
  float* __restrict kt = sc.kt.get();
  float* __restrict v = sc.v.get();
  float* __restrict s = sc.s.get();
  float* __restrict o = sc.o.get();
  float* __restrict row_scale = sc.row_scale.get();
  // Keys past t.valid are zero (the cache tail may hold anything, NaN included).
  for (int j = 0; j < W; ++j) {
    const uint16_t* kr = t.k + j * t.stride;
    const uint16_t* vr = t.v + j * t.stride;
    if (j < t.valid) {
      for (int d = 0; d < D; ++d) kt[d * W + j] = E::to_float(kr[d]);
      for (int d = 0; d < D; ++d) v[j * D + d] = E::to_float(vr[d]);
    } else {
      for (int d = 0; d < D; ++d) kt[d * W + j] = 0.f;
      for (int d = 0; d < D; ++d) v[j * D + d] = 0.f;
    }
  }
  // S = Q K^T (log2 units: q carries the scale).
  for (int i0 = 0; i0 < rows_padded; i0 += kBlockRows)
    for (int j0 = 0; j0 < W; j0 += kCols)
      gemm_block<kBlockRows, kGroups, kCols, D, D, W, W, false>(q + i0 * D, kt + j0, s + i0 * W + j0, nullptr);
  // Online softmax: S becomes P = exp2(S - new max); O and the sum are rescaled by exp2(old - new max).
  for (int i = 0; i < rows_here; ++i) {
    float* __restrict srow = s + i * W;
    const int tq = (row_tile * C::kTileM + i) / C::kGroup;
    if (t.mode == kPrefixTail || t.mode == kStepPartial || t.valid < W) {
      for (int j = 0; j < W; ++j) {
        const bool masked = j >= t.valid || (t.mode == kStepPartial && !C::visible(tq, t.key0 + j));
        if (masked) srow[j] = kNegInf;
      }
    }
    float lane[kLanes];
    for (int l = 0; l < kLanes; ++l) lane[l] = kNegInf;
    for (int j0 = 0; j0 < W; j0 += kLanes)
      for (int l = 0; l < kLanes; ++l) lane[l] = std::max(lane[l], srow[j0 + l]);
    float tile_max = kNegInf;
    for (int l = 0; l < kLanes; ++l) tile_max = std::max(tile_max, lane[l]);
    const float new_max = std::max(sc.row_max[i], tile_max);
    const float base = new_max == kNegInf ? 0.f : new_max;  // no visible key yet: avoid -inf - -inf
    const float scale_old = exp2_poly(sc.row_max[i] - base);
    sc.row_max[i] = new_max;
    for (int j = 0; j < W; ++j) srow[j] = exp2_poly(srow[j] - base);
    for (int l = 0; l < kLanes; ++l) lane[l] = 0.f;
    for (int j0 = 0; j0 < W; j0 += kLanes)
      for (int l = 0; l < kLanes; ++l) lane[l] += srow[j0 + l];
    float sum = 0.f;
    for (int l = 0; l < kLanes; ++l) sum += lane[l];
    sc.row_sum[i] = sc.row_sum[i] * scale_old + sum;
    row_scale[i] = scale_old;
  }
  // O = O * scale + P V; masked keys have p = 0 and a finite (or zeroed) V row, so no branch.
  for (int i0 = 0; i0 < rows_padded; i0 += kBlockRows)
    for (int d0 = 0; d0 < D; d0 += kCols)
      gemm_block<kBlockRows, kGroups, kCols, W, W, D, D, true>(s + i0 * W, v + d0, o + i0 * D + d0, row_scale + i0);
}

template <class C>
void attention_work_item(const TidarcAttentionArgs& a, int b, int kvh, int row_tile, int split, Scratch<C>& sc) {
  using E = typename C::Elem;
  constexpr int D = C::kHeadDim;
  constexpr int NT = C::kTileN;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int rows_here = std::min(C::kTileM, C::kRows - row_tile * C::kTileM);
  // Padding rows (up to a whole block) have q = 0 and scale 0: computed, never written out.
  const int rows_padded = (rows_here + kBlockRows - 1) / kBlockRows * kBlockRows;
  float* __restrict q = sc.q.get();
  float* __restrict o = sc.o.get();
  float* __restrict row_scale = sc.row_scale.get();

  for (int i = 0; i < rows_here; ++i) {
    const int r = row_tile * C::kTileM + i;
    const int tq = r / C::kGroup, hq = kvh * C::kGroup + r % C::kGroup;
    const uint16_t* src = static_cast<const uint16_t*>(a.q) + ((static_cast<int64_t>(b) * C::kSteps + tq) * C::kQHeads + hq) * D;
    for (int d = 0; d < D; ++d) q[i * D + d] = E::to_float(src[d]) * C::kScaleLog2;
  }
  std::fill(q + rows_here * D, q + rows_padded * D, 0.f);
  std::fill(o, o + rows_padded * D, 0.f);
  std::fill(sc.row_max.get(), sc.row_max.get() + rows_padded, kNegInf);
  std::fill(sc.row_sum.get(), sc.row_sum.get() + rows_padded, 0.f);
  std::fill(row_scale, row_scale + rows_padded, 0.f);

  const int num_splits = a.num_splits;
  const int prefix_len = a.prefix_len[b];
  // Masks whose in-step queries never see the cache (the training layout) skip it entirely.
  const int prefix_tiles = C::kPrefixVisible ? (prefix_len + NT - 1) / NT : 0;
  const int per_split = (prefix_tiles + num_splits - 1) / num_splits;
  const int p0 = std::min(split * per_split, prefix_tiles);
  const int prefix_tiles_here = std::min(per_split, prefix_tiles - p0);
  const int step_tiles_here =
      split == num_splits - 1 ? C::kStepTileOffset[row_tile + 1] - C::kStepTileOffset[row_tile] : 0;

  constexpr int kSmall = small_block_keys<C>();
  constexpr int kMerged = merged_block_keys<C>();
  constexpr int kRun = kMerged / NT;  // prefix tiles per merged block
  for (int ti = 0; ti < prefix_tiles_here + step_tiles_here;) {
    const TileRef tile = describe_tile<C>(a, b, kvh, prefix_len, p0, prefix_tiles_here, row_tile, ti);
    if (kRun > 1 && ti + kRun <= prefix_tiles_here && (p0 + ti + kRun) * NT <= prefix_len) {
      // kRun full prefix tiles, contiguous in the cache: one block.
      TileRef run = tile;
      run.valid = kMerged;
      online_block<C, kMerged>(run, rows_here, rows_padded, row_tile, sc);
      ti += kRun;
      continue;
    }
    for (int jb = 0; jb < NT && jb < tile.valid; jb += kSmall) {
      // The kSmall keys from jb: a block of their own (none past valid: skipped).
      TileRef t = tile;
      t.k += jb * t.stride;
      t.v += jb * t.stride;
      t.valid = std::min(kSmall, tile.valid - jb);
      t.key0 += jb;
      online_block<C, kSmall>(t, rows_here, rows_padded, row_tile, sc);
    }
    ++ti;
  }

  const int64_t rows_total = static_cast<int64_t>(a.batch) * C::kSteps * C::kQHeads;
  for (int i = 0; i < rows_here; ++i) {
    const int r = row_tile * C::kTileM + i;
    const int tq = r / C::kGroup, hq = kvh * C::kGroup + r % C::kGroup;
    const int64_t row_index = (static_cast<int64_t>(b) * C::kSteps + tq) * C::kQHeads + hq;
    const bool empty = sc.row_sum[i] == 0.f;
    const float inv = empty ? 0.f : 1.f / sc.row_sum[i];
    const float lse = empty ? kNegInf : (sc.row_max[i] + std::log2(sc.row_sum[i])) * 0.6931471805599453f;
    const float* orow = &sc.o[i * D];
    if (num_splits == 1) {
      uint16_t* out = static_cast<uint16_t*>(a.o) + row_index * D;
      for (int d = 0; d < D; ++d) out[d] = E::from_float(orow[d] * inv);
      a.lse[row_index] = lse;
    } else {
      float* ws_o = a.workspace + (static_cast<int64_t>(split) * rows_total + row_index) * D;
      for (int d = 0; d < D; ++d) ws_o[d] = orow[d] * inv;
      a.workspace[static_cast<int64_t>(num_splits) * rows_total * D + split * rows_total + row_index] = lse;
    }
  }
}

template <class C>
void combine_splits_row(const TidarcAttentionArgs& a, int64_t row) {
  using E = typename C::Elem;
  constexpr int D = C::kHeadDim;
  const int64_t rows_total = static_cast<int64_t>(a.batch) * C::kSteps * C::kQHeads;
  const float* ws_lse = a.workspace + static_cast<int64_t>(a.num_splits) * rows_total * D;
  uint16_t* out = static_cast<uint16_t*>(a.o) + row * D;
  float max_lse = -std::numeric_limits<float>::infinity();
  for (int s = 0; s < a.num_splits; ++s) max_lse = std::max(max_lse, ws_lse[s * rows_total + row]);
  if (max_lse == -std::numeric_limits<float>::infinity()) {
    for (int d = 0; d < D; ++d) out[d] = E::from_float(0.f);
    a.lse[row] = max_lse;
    return;
  }
  float acc[D] = {};
  float weight_sum = 0.f;
  for (int s = 0; s < a.num_splits; ++s) {
    const float w = std::exp(ws_lse[s * rows_total + row] - max_lse);
    weight_sum += w;
    const float* part = a.workspace + (s * rows_total + row) * D;
    for (int d = 0; d < D; ++d) acc[d] += w * part[d];
  }
  for (int d = 0; d < D; ++d) out[d] = E::from_float(acc[d] / weight_sum);
  a.lse[row] = max_lse + std::log(weight_sum);
}

// Worker threads started on first use and kept for the life of the library: starting threads
// per launch cost more than the attention of a small AR step itself. Calls are serialised.
// A worker joins a call only while it is open: the caller closes it once every item is taken
// and waits for the workers that joined, never for one still waking up. Waiting for that wake
// (tens of microseconds on a VM) made a small AR step 3x slower on 2 threads than on 1.
class WorkerPool {
 public:
  static WorkerPool& instance() {
    static WorkerPool pool;
    return pool;
  }

  // Runs fn(item, worker) for item in [0, count) on `workers` threads (dynamic scheduling;
  // the calling thread is worker 0).
  void run(int64_t count, int workers, const std::function<void(int64_t, int)>& fn) {
    workers = static_cast<int>(std::min<int64_t>(workers, count));
    if (workers <= 1) {
      for (int64_t i = 0; i < count; ++i) fn(i, 0);
      return;
    }
    std::lock_guard<std::mutex> serial(call_);
    std::atomic<int64_t> next{0};
    auto body = [&](int worker) {
      for (int64_t i = next++; i < count; i = next++) fn(i, worker);
    };
    {
      std::unique_lock<std::mutex> lock(m_);
      while (static_cast<int>(threads_.size()) < workers - 1) {
        const int index = static_cast<int>(threads_.size());
        threads_.emplace_back([this, index] { loop(index + 1); });
      }
      job_ = body;
      wanted_ = workers - 1;
      active_ = 0;
      open_ = true;
      ++generation_;
    }
    wake_.notify_all();
    body(0);
    std::unique_lock<std::mutex> lock(m_);
    open_ = false;
    done_.wait(lock, [&] { return active_ == 0; });
    job_ = nullptr;
  }

  // Stops and joins the workers. The runtime calls it (tidarc_cpu_shutdown) before dlclose:
  // joining inside dlclose's static destructors, with the loader lock held, can deadlock
  // against exiting threads. A later run() starts new workers.
  void shutdown() {
    std::lock_guard<std::mutex> serial(call_);
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
    std::lock_guard<std::mutex> lock(m_);
    stop_ = false;
  }

  ~WorkerPool() { shutdown(); }

 private:
  void loop(int worker) {
    uint64_t seen = 0;
    for (;;) {
      std::function<void(int)> job;
      {
        std::unique_lock<std::mutex> lock(m_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (!open_ || worker > wanted_) continue;
        ++active_;
        job = job_;
      }
      job(worker);
      {
        std::lock_guard<std::mutex> lock(m_);
        if (--active_ == 0) done_.notify_all();
      }
    }
  }

  std::mutex call_, m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  std::function<void(int)> job_;
  uint64_t generation_ = 0;
  int wanted_ = 0, active_ = 0;  // active_: workers inside the open call
  bool open_ = false, stop_ = false;
};

template <class F>
void parallel_for(int64_t count, int threads, F fn) {
  WorkerPool::instance().run(count, threads, fn);
}

template <class C>
int run_attention(const TidarcAttentionArgs* args) {
  if (!args || !args->q || !args->k_cache || !args->v_cache || !args->k_step || !args->v_step || !args->prefix_len ||
      !args->o || !args->lse || args->batch < 1 || args->num_splits < 1 || args->cache_capacity < 0)
    return TIDARC_ERR_ARGS;
  const TidarcAttentionArgs& a = *args;
  for (int b = 0; b < a.batch; ++b)
    if (a.prefix_len[b] < 0 || a.prefix_len[b] > a.cache_capacity) return TIDARC_ERR_PREFIX;
  if (a.num_splits > 1 && !a.workspace) return TIDARC_ERR_WORKSPACE;

  // The pool keeps a thread per worker for the library's life, and threads beyond the cores
  // only add wake-ups: a request above the hardware count is clamped to it (num_threads 2000
  // started 2000 threads).
  const int hardware = std::max(static_cast<int>(std::thread::hardware_concurrency()), 1);
  const int threads = a.num_threads > 0 ? std::min(a.num_threads, hardware) : hardware;
  const int64_t items = static_cast<int64_t>(a.batch) * C::kKvHeads * C::kRowTiles * a.num_splits;
  std::vector<Scratch<C>> scratch(static_cast<size_t>(std::min<int64_t>(threads, std::max<int64_t>(items, 1))));
  parallel_for(items, threads, [&](int64_t item, int worker) {
    const int split = static_cast<int>(item % a.num_splits);
    const int64_t rest = item / a.num_splits;
    const int row_tile = static_cast<int>(rest % C::kRowTiles);
    const int bh = static_cast<int>(rest / C::kRowTiles);
    attention_work_item<C>(a, bh / C::kKvHeads, bh % C::kKvHeads, row_tile, split, scratch[worker]);
  });
  if (a.num_splits > 1) {
    const int64_t rows_total = static_cast<int64_t>(a.batch) * C::kSteps * C::kQHeads;
    parallel_for(rows_total, threads, [&](int64_t row, int) { combine_splits_row<C>(a, row); });
  }
  return TIDARC_OK;
}

}  // namespace tidarc_cpu
