/*! tidarc portable C++ step attention: the same plan as the CUDA kernel (row tiles of
    kTileM token-major rows per (sequence, KV head, split), prefix tiles without mask,
    then the compiler's list of non-empty in-step tiles, predicate only in partial ones),
    computed in fp32 on the CPU with a small thread pool. */
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
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

// Per-thread scratch: the fp32 tiles of one CTA-equivalent work item.
template <class C>
struct Scratch {
  std::vector<float> q = std::vector<float>(C::kTileM * C::kHeadDim);
  std::vector<float> kt = std::vector<float>(C::kHeadDim * C::kTileN);  // K transposed: [d][key]
  std::vector<float> v = std::vector<float>(C::kTileN * C::kHeadDim);
  std::vector<float> s = std::vector<float>(C::kTileM * C::kTileN);
  std::vector<float> o = std::vector<float>(C::kTileM * C::kHeadDim);
  std::vector<float> row_max = std::vector<float>(C::kTileM);
  std::vector<float> row_sum = std::vector<float>(C::kTileM);
};

template <class C>
void attention_work_item(const TidarcAttentionArgs& a, int b, int kvh, int row_tile, int split, Scratch<C>& sc) {
  using E = typename C::Elem;
  constexpr int D = C::kHeadDim;
  constexpr int NT = C::kTileN;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int rows_here = std::min(C::kTileM, C::kRows - row_tile * C::kTileM);

  for (int i = 0; i < rows_here; ++i) {
    const int r = row_tile * C::kTileM + i;
    const int tq = r / C::kGroup, hq = kvh * C::kGroup + r % C::kGroup;
    const uint16_t* src = static_cast<const uint16_t*>(a.q) + ((static_cast<int64_t>(b) * C::kSteps + tq) * C::kQHeads + hq) * D;
    for (int d = 0; d < D; ++d) sc.q[i * D + d] = E::to_float(src[d]) * C::kScaleLog2;
  }
  std::fill(sc.o.begin(), sc.o.end(), 0.f);
  std::fill(sc.row_max.begin(), sc.row_max.end(), kNegInf);
  std::fill(sc.row_sum.begin(), sc.row_sum.end(), 0.f);

  const int num_splits = a.num_splits;
  const int prefix_len = a.prefix_len[b];
  const int prefix_tiles = (prefix_len + NT - 1) / NT;
  const int per_split = (prefix_tiles + num_splits - 1) / num_splits;
  const int p0 = std::min(split * per_split, prefix_tiles);
  const int prefix_tiles_here = std::min(per_split, prefix_tiles - p0);
  const int step_tiles_here =
      split == num_splits - 1 ? C::kStepTileOffset[row_tile + 1] - C::kStepTileOffset[row_tile] : 0;

  for (int ti = 0; ti < prefix_tiles_here + step_tiles_here; ++ti) {
    const TileRef t = describe_tile<C>(a, b, kvh, prefix_len, p0, prefix_tiles_here, row_tile, ti);
    for (int j = 0; j < NT; ++j) {
      const bool ok = j < t.valid;
      const uint16_t* kr = t.k + j * t.stride;
      const uint16_t* vr = t.v + j * t.stride;
      for (int d = 0; d < D; ++d) {
        sc.kt[d * NT + j] = ok ? E::to_float(kr[d]) : 0.f;
        sc.v[j * D + d] = ok ? E::to_float(vr[d]) : 0.f;
      }
    }
    // S = Q K^T, key index innermost so the compiler vectorises it.
    for (int i = 0; i < rows_here; ++i) {
      float* srow = &sc.s[i * NT];
      for (int j = 0; j < NT; ++j) srow[j] = 0.f;
      for (int d = 0; d < D; ++d) {
        const float qv = sc.q[i * D + d];
        const float* krow = &sc.kt[d * NT];
        for (int j = 0; j < NT; ++j) srow[j] += qv * krow[j];
      }
    }
    for (int i = 0; i < rows_here; ++i) {
      float* srow = &sc.s[i * NT];
      const int tq = (row_tile * C::kTileM + i) / C::kGroup;
      if (t.mode == kPrefixTail || t.mode == kStepPartial) {
        for (int j = 0; j < NT; ++j) {
          const bool masked = j >= t.valid || (t.mode == kStepPartial && !C::visible(tq, t.key0 + j));
          if (masked) srow[j] = kNegInf;
        }
      }
      float tile_max = kNegInf;
      for (int j = 0; j < NT; ++j) tile_max = std::max(tile_max, srow[j]);
      const float new_max = std::max(sc.row_max[i], tile_max);
      const float base = new_max == kNegInf ? 0.f : new_max;  // no visible key yet: avoid -inf - -inf
      const float scale_old = std::exp2(sc.row_max[i] - base);
      sc.row_max[i] = new_max;
      float sum = 0.f;
      for (int j = 0; j < NT; ++j) {
        srow[j] = std::exp2(srow[j] - base);
        sum += srow[j];
      }
      sc.row_sum[i] = sc.row_sum[i] * scale_old + sum;
      float* orow = &sc.o[i * D];
      for (int d = 0; d < D; ++d) orow[d] *= scale_old;
      for (int j = 0; j < NT; ++j) {
        const float p = srow[j];
        if (p == 0.f) continue;
        const float* vrow = &sc.v[j * D];
        for (int d = 0; d < D; ++d) orow[d] += p * vrow[d];
      }
    }
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

// Runs fn(item) for item in [0, count) on `threads` threads (dynamic scheduling).
template <class F>
void parallel_for(int64_t count, int threads, F fn) {
  if (threads <= 1 || count <= 1) {
    for (int64_t i = 0; i < count; ++i) fn(i, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  std::vector<std::thread> pool;
  const int n = static_cast<int>(std::min<int64_t>(threads, count));
  for (int w = 0; w < n; ++w) {
    pool.emplace_back([&, w] {
      for (int64_t i = next++; i < count; i = next++) fn(i, w);
    });
  }
  for (auto& th : pool) th.join();
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

  int threads = a.num_threads > 0 ? a.num_threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(threads, 1);
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
