// CPU operators of a decoder-only transformer forward (Qwen2/Qwen3/Llama), one layer at a
// time, called by the TypeScript orchestrator (src/runtime/ops.ts). Activations are fp32,
// row-major [tokens, features]; weights stay in the checkpoint's format (bf16 or fp16 bits, or
// fp32), HF layout [out_features, in_features].
//
// Summation-order contract of MatMul (and of the logits inside LmHead): element (t, n) is
//   bias[n] + tree(lane[0..15]),  lane[l] = fma chain over k = l, l + 16, l + 32, ... (k < K)
// in increasing k starting from +0, tree = pairwise halving (l += 8, 4, 2, 1). It depends on
// neither T, nor the thread count, nor which block a thread takes, so a token's output is
// bitwise the same whether it is computed alone or with 271 others (greedy TiDAR == greedy AR
// relies on it).
#ifndef TIDARC_OPS_CPU_H
#define TIDARC_OPS_CPU_H

#include <cstddef>
#include <cstdint>

#include <napi.h>

namespace tidarc {
namespace ops {

enum class WeightType { kF32, kBF16, kFP16 };

// A weight matrix [rows, cols] (a vector is rows = 1) in the checkpoint's element type.
struct WeightView {
  const void* data;
  WeightType type;
  int64_t rows;
  int64_t cols;
};

// 0 = all hardware threads; more than the hardware has is clamped.
int ResolveThreads(int threads);

// out[T, N] = x[T, K] w[N, K]^T + bias[N] (bias may be null). out must not overlap x.
void MatMul(const float* x, int64_t T, const WeightView& w, const float* bias, float* out,
            int threads);

// Per row: out = w * (x * 1 / sqrt(mean(x^2) + eps)); out may alias x. w has `cols` = H.
void RmsNorm(const float* x, int64_t T, const WeightView& w, float eps, float* out);

enum class RopeScaling { kNone, kLinear, kLlama3 };
struct RopeParams {
  double theta;
  int64_t head_dim;
  RopeScaling scaling;
  double factor;
  double low_freq_factor;
  double high_freq_factor;
  double original_max_positions;
};
// In place on x[T, heads * head_dim], HF rotate_half pairs (i, i + D/2).
void Rope(float* x, int64_t T, int64_t heads, const int32_t* positions, const RopeParams& p);
// The fp32 inverse frequencies [head_dim / 2] Rope uses: computed in float64, rounded once.
void RopeInvFreq(const RopeParams& p, float* inv_freq);

void SiluMul(const float* gate, const float* up, float* out, int64_t n, int threads);
void ToBf16(const float* x, uint16_t* out, int64_t n);
void ToFp16(const float* x, uint16_t* out, int64_t n);

struct LmHeadOut {
  int32_t* argmax;   // [R]
  float* max_logit;  // [R]
  float* lse;        // [R]
  float* logits;     // [R, V] or null
};
// Logits of the requested token rows (rows[r] in [0, T)), reduced to argmax (first maximum;
// NaN counts as the maximum, like torch.argmax), the maximum and log-sum-exp.
void LmHead(const float* x, int64_t T, const WeightView& w, const int32_t* rows, int64_t R,
            const LmHeadOut& out, int threads);

// Sets exports.cpuOps = { matmul, rmsnorm, rmsnormHeads, rope, ropeInvFreq, siluMul, addInPlace, embed,
// toBf16, toFp16, lmHead, threadCount } (typed wrappers: src/runtime/ops.ts).
void RegisterCpuOps(Napi::Env env, Napi::Object exports);

}  // namespace ops
}  // namespace tidarc

#endif  // TIDARC_OPS_CPU_H
