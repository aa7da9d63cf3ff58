// The baseline of bench/cpu-attention.ts: the TiDAR step attention written the way a person
// writes it first. One query row at a time, single-threaded, scores over every visible key,
// softmax in float, weighted sum of V. Same ABI as a tidarc CPU library (tidarc_abi.h), so
// the runtime's native addon loads and calls it with the very same arguments.
// Shape fixed to Qwen3-8B with draft k = 8: 32 query heads, 8 KV heads, head dim 128, bf16.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "tidarc_abi.h"

namespace {

constexpr int kDraft = 8;
constexpr int kSteps = kDraft * (kDraft + 1);  // n = 72 in-step tokens
constexpr int kQHeads = 32;
constexpr int kKvHeads = 8;
constexpr int kHeadDim = 128;

float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t float_to_bf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// The closed-form TiDAR predicate of docs/tidar.md: j = block (0 = drafts), s = slot.
bool visible(int q, int key) {
  const int jq = q / kDraft, sq = q % kDraft, jk = key / kDraft, sk = key % kDraft;
  return (jq == 0 && jk == 0 && sk <= sq) || (jq >= 1 && jk == 0 && sk < jq) || (jq >= 1 && jk == jq);
}

float dot(const uint16_t* q, const uint16_t* k) {
  float acc = 0.f;
  for (int d = 0; d < kHeadDim; ++d) acc += bf16_to_float(q[d]) * bf16_to_float(k[d]);
  return acc;
}

}  // namespace

extern "C" int tidarc_abi_version(void) { return TIDARC_ABI_VERSION; }

extern "C" int tidarc_cpu_naive_tidar_k8(const TidarcAttentionArgs* a) {
  if (!a || !a->q || !a->k_cache || !a->v_cache || !a->k_step || !a->v_step || !a->prefix_len || !a->o || !a->lse ||
      a->batch < 1)
    return TIDARC_ERR_ARGS;
  const auto* q = static_cast<const uint16_t*>(a->q);
  const auto* k_cache = static_cast<const uint16_t*>(a->k_cache);
  const auto* v_cache = static_cast<const uint16_t*>(a->v_cache);
  const auto* k_step = static_cast<const uint16_t*>(a->k_step);
  const auto* v_step = static_cast<const uint16_t*>(a->v_step);
  auto* o = static_cast<uint16_t*>(a->o);
  const float scale = 1.f / std::sqrt(static_cast<float>(kHeadDim));
  const int64_t cap = a->cache_capacity;

  std::vector<float> scores;
  std::vector<const uint16_t*> values;  // the V row of each visible key
  float acc[kHeadDim];
  for (int b = 0; b < a->batch; ++b) {
    const int L = a->prefix_len[b];
    if (L < 0 || L > cap) return TIDARC_ERR_PREFIX;
    for (int tq = 0; tq < kSteps; ++tq) {
      for (int hq = 0; hq < kQHeads; ++hq) {
        const int h = hq / (kQHeads / kKvHeads);
        const int64_t row = (static_cast<int64_t>(b) * kSteps + tq) * kQHeads + hq;
        const uint16_t* qrow = q + row * kHeadDim;
        scores.clear();
        values.clear();
        for (int s = 0; s < L; ++s) {
          const int64_t at = ((static_cast<int64_t>(b) * kKvHeads + h) * cap + s) * kHeadDim;
          scores.push_back(dot(qrow, k_cache + at) * scale);
          values.push_back(v_cache + at);
        }
        for (int tk = 0; tk < kSteps; ++tk) {
          if (!visible(tq, tk)) continue;
          const int64_t at = ((static_cast<int64_t>(b) * kSteps + tk) * kKvHeads + h) * kHeadDim;
          scores.push_back(dot(qrow, k_step + at) * scale);
          values.push_back(v_step + at);
        }
        // Every token sees itself, so scores is never empty.
        float max = -std::numeric_limits<float>::infinity();
        for (float s : scores) max = std::fmax(max, s);
        float sum = 0.f;
        for (float& s : scores) {
          s = std::exp(s - max);
          sum += s;
        }
        for (int d = 0; d < kHeadDim; ++d) acc[d] = 0.f;
        for (size_t j = 0; j < scores.size(); ++j)
          for (int d = 0; d < kHeadDim; ++d) acc[d] += scores[j] * bf16_to_float(values[j][d]);
        for (int d = 0; d < kHeadDim; ++d) o[row * kHeadDim + d] = float_to_bf16(acc[d] / sum);
        a->lse[row] = max + std::log(sum);
      }
    }
  }
  return TIDARC_OK;
}
