/*! tidarc GPU operators: the rest of a transformer forward around the attention kernels, one
    kernel per argument struct of tidarc_ops_abi.h (launch geometry in each struct's comment).
    The math is that of runtime/src/ops_cpu.cc: 16-bit conversions and embed bit for bit;
    rmsnorm, rope and silu within a few float32 ulp (precise expf, double sqrt and trig, and
    __fmul_rn where the CPU rounds a product before an add, so nvcc cannot contract it into an
    fma). Plain CUDA C++ that g++ also compiles on the SIMT emulator (runtime/emu): no
    bf16/half intrinsics, no shuffles, block reductions in shared memory; of tidarc_device.cuh
    only the PDL primitives (every kernel's prologue below). Needs IEEE float32 (no
    -use_fast_math): the fp16 decode scales subnormals, which flush-to-zero would lose. */
#include <stdint.h>

#include "tidarc_device.cuh"  // the PDL primitives only (grid_dependency_wait, grid_dependents_launch)
#include "tidarc_ops_abi.h"

namespace tidarc {
namespace ops {

// Block sizes: the kernels stride by these constants, so a launch must use exactly them.
constexpr int kElementThreads = 256;  // silu_mul, gelu, to_float: one element a thread
constexpr int kRowThreads = 256;      // embed, rmsnorm, row_stats: one block a row
constexpr int kRopeThreads = 128;     // rope_pack: one block a token
constexpr int kKvThreads = 64;        // kv_commit: one block a (token, kv head)

// ---- element formats (ops_cpu.cc's Bf16Elem, Fp16Elem, F32ToBf16, F32ToFp16) ---------------

__device__ __forceinline__ float bf16_to_float(uint16_t h) { return __uint_as_float(static_cast<uint32_t>(h) << 16); }

// Exact: the magnitude bits in float32 position scaled by 2^112 re-bias the exponent
// (subnormals included); exponent 31 maps to inf/NaN with the payload kept.
__device__ __forceinline__ float fp16_to_float(uint16_t h) {
  const uint32_t mag = static_cast<uint32_t>(h & 0x7fffu) << 13;
  uint32_t b = __float_as_uint(__uint_as_float(mag) * 0x1p112f);
  if ((h & 0x7c00u) == 0x7c00u) b = mag | 0x7f800000u;
  return __uint_as_float(b | (static_cast<uint32_t>(h & 0x8000u) << 16));
}

// Round to nearest even; a NaN becomes the canonical quiet NaN with its sign.
__device__ __forceinline__ uint16_t float_to_bf16(float f) {
  const uint32_t b = __float_as_uint(f);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(((b >> 16) & 0x8000u) | 0x7fc0u);
  return static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ uint16_t float_to_fp16(float f) {
  const uint32_t b = __float_as_uint(f);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const uint32_t a = b & 0x7fffffffu;
  uint32_t h;
  if (a > 0x7f800000u) {
    h = 0x7e00u;  // NaN: canonical quiet NaN
  } else if (a >= 0x477ff000u) {
    h = 0x7c00u;  // >= 65520 rounds to infinity
  } else if (a < 0x38800000u) {
    // Below 2^-14 (fp16 subnormal quantum 2^-24): adding 0.5 makes the FPU round to a
    // multiple of 2^-24 with ties to even; the low bits are then the fp16 pattern.
    h = __float_as_uint(__uint_as_float(a) + 0.5f) - 0x3f000000u;
  } else {
    h = (a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13;  // re-bias, round to nearest even
  }
  return static_cast<uint16_t>(sign | h);
}

__device__ __forceinline__ uint16_t float_to_16(float f, int32_t dtype) {
  return dtype == TIDARC_DTYPE_BF16 ? float_to_bf16(f) : float_to_fp16(f);
}

__device__ __forceinline__ float half_to_float(uint16_t h, int32_t dtype) {
  return dtype == TIDARC_DTYPE_BF16 ? bf16_to_float(h) : fp16_to_float(h);
}

// Element i of a weight vector or table in the checkpoint's format (dtype is block-uniform).
__device__ __forceinline__ float weight_at(const void* w, int64_t i, int32_t dtype) {
  if (dtype == TIDARC_DTYPE_F32) return static_cast<const float*>(w)[i];
  return half_to_float(static_cast<const uint16_t*>(w)[i], dtype);
}

// Element i of an activation in `dtype`: float32, or rounded to 16-bit (nearest even) for a
// tensor that only GEMMs read (the step graph declares which; dtype is grid-uniform).
__device__ __forceinline__ void store_at(void* out, int64_t i, float v, int32_t dtype) {
  if (dtype == TIDARC_DTYPE_F32) static_cast<float*>(out)[i] = v;
  else static_cast<uint16_t*>(out)[i] = float_to_16(v, dtype);
}

__device__ __forceinline__ bool is_nan(float x) { return (__float_as_uint(x) & 0x7fffffffu) > 0x7f800000u; }
__device__ __forceinline__ bool is_finite(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }

// Sum of one value per thread of a kRowThreads block, in a fixed tree order (the result does
// not depend on timing); every thread gets it. `partial` is kRowThreads of shared memory.
__device__ __forceinline__ double block_sum(double v, double* partial) {
  const int tid = threadIdx.x;
  partial[tid] = v;
  __syncthreads();
  for (int s = kRowThreads / 2; s > 0; s /= 2) {
    if (tid < s) partial[tid] += partial[tid + s];
    __syncthreads();
  }
  const double total = partial[0];
  __syncthreads();  // partial may be reused right after
  return total;
}

// ---- matmul --------------------------------------------------------------------------------

constexpr int kMatmulThreads = 256;
constexpr int kMatmulTileN = 64;     // outputs (weight rows) per block
constexpr int kMatmulTileRows = 16;  // token rows per block
constexpr int kMatmulChunkK = 64;    // k per shared-memory stage: 8 KB of bf16 weights in flight
// A thread owns rows {ty, ty + 8} x outputs {tx, tx + 32}: a warp reads one x row (a
// broadcast) and 32 consecutive weight rows (the +1 padding puts them in 32 banks).
constexpr int kMatmulWarps = kMatmulThreads / 32;
constexpr int kStageRowsPerPass = kMatmulThreads / kMatmulChunkK;            // tile rows one pass stages
constexpr int kWLoads = kMatmulTileN * kMatmulChunkK / kMatmulThreads;      // weights a thread stages
constexpr int kXLoads = kMatmulTileRows * kMatmulChunkK / kMatmulThreads;   // x values a thread stages
static_assert(kMatmulTileN == 64 && kMatmulTileRows == 2 * kMatmulWarps, "thread ownership: 2 rows x 2 outputs");
static_assert(kMatmulThreads % kMatmulChunkK == 0, "staging: whole tile rows per pass");

struct MatmulTiles {
  float x[kMatmulTileRows][kMatmulChunkK];
  float w[kMatmulTileN][kMatmulChunkK + 1];
};

// Global loads of one k-chunk into registers: they stay in flight while the block computes
// the previous chunk. Weights stay raw bits (a float32's bits, or a 16-bit pattern) until they
// are staged; elements outside the matrices read as zero. One code path for the three
// weight formats: a kernel body per format costs nvcc ~150 registers for the dispatch.
__device__ __forceinline__ void matmul_fetch(const TidarcMatmulArgs& a, const int64_t (&x_row)[kXLoads], int n0, int k0,
                                             uint32_t (&w_next)[kWLoads], float (&x_next)[kXLoads]) {
  const int tid = threadIdx.x, kk = tid % kMatmulChunkK, first = tid / kMatmulChunkK;
  const bool k_in = k0 + kk < a.k;
  const int64_t w0 = static_cast<int64_t>(n0 + first) * a.k + k0 + kk;
  const int n_left = a.n - n0 - first;  // the staged weight rows i * kStageRowsPerPass < n_left exist
  if (a.dtype == TIDARC_DTYPE_F32) {
    const float* w = static_cast<const float*>(a.w) + w0;
#pragma unroll
    for (int i = 0; i < kWLoads; i++)
      w_next[i] = k_in && i * kStageRowsPerPass < n_left ? __float_as_uint(w[static_cast<int64_t>(i) * kStageRowsPerPass * a.k]) : 0u;
  } else {
    const uint16_t* w = static_cast<const uint16_t*>(a.w) + w0;
#pragma unroll
    for (int i = 0; i < kWLoads; i++)
      w_next[i] = k_in && i * kStageRowsPerPass < n_left ? w[static_cast<int64_t>(i) * kStageRowsPerPass * a.k] : 0u;
  }
#pragma unroll
  for (int i = 0; i < kXLoads; i++) x_next[i] = k_in && x_row[i] >= 0 ? weight_at(a.x, x_row[i] * a.k + k0 + kk, a.x_dtype) : 0.0f;
}

__device__ __forceinline__ float weight_bits_to_float(uint32_t bits, int32_t dtype) {
  return dtype == TIDARC_DTYPE_F32 ? __uint_as_float(bits) : half_to_float(static_cast<uint16_t>(bits), dtype);
}

__device__ __forceinline__ void matmul_block(const TidarcMatmulArgs& a, MatmulTiles& s) {
  const int tid = threadIdx.x, tx = tid % 32, ty = tid / 32;
  const int kk = tid % kMatmulChunkK, first = tid / kMatmulChunkK;
  const int n0 = blockIdx.x * kMatmulTileN, r0 = blockIdx.y * kMatmulTileRows;

  int64_t x_row[kXLoads];  // source row of each x value this thread stages, -1 past `rows`
#pragma unroll
  for (int i = 0; i < kXLoads; i++) {
    const int r = r0 + first + i * kStageRowsPerPass;
    x_row[i] = r < a.rows ? (a.row_ids != nullptr ? a.row_ids[r] : r) : -1;
  }
  uint32_t w_next[kWLoads];
  float x_next[kXLoads];
  matmul_fetch(a, x_row, n0, 0, w_next, x_next);

  // Warps whose rows are all past `rows` only stage tiles (rows = 1 is a decode step).
  const bool warp_computes = r0 + ty < a.rows;
  float acc[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
  for (int k0 = 0; k0 < a.k; k0 += kMatmulChunkK) {
    __syncthreads();  // every warp is done reading the previous chunk
#pragma unroll
    for (int i = 0; i < kWLoads; i++) s.w[first + i * kStageRowsPerPass][kk] = weight_bits_to_float(w_next[i], a.dtype);
#pragma unroll
    for (int i = 0; i < kXLoads; i++) s.x[first + i * kStageRowsPerPass][kk] = x_next[i];
    __syncthreads();
    if (k0 + kMatmulChunkK < a.k) matmul_fetch(a, x_row, n0, k0 + kMatmulChunkK, w_next, x_next);
    if (!warp_computes) continue;
    // One fma chain per output in increasing k: the contract of tidarc_ops_abi.h.
    const int kn = min(kMatmulChunkK, a.k - k0);
#pragma unroll 8
    for (int j = 0; j < kn; j++) {
      const float x0 = s.x[ty][j], x1 = s.x[ty + kMatmulWarps][j];
      const float w0 = s.w[tx][j], w1 = s.w[tx + 32][j];
      acc[0][0] = fmaf(x0, w0, acc[0][0]);
      acc[0][1] = fmaf(x0, w1, acc[0][1]);
      acc[1][0] = fmaf(x1, w0, acc[1][0]);
      acc[1][1] = fmaf(x1, w1, acc[1][1]);
    }
  }
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const int r = r0 + ty + i * kMatmulWarps;
    if (r >= a.rows) continue;
#pragma unroll
    for (int j = 0; j < 2; j++) {
      const int n = n0 + tx + j * 32;
      if (n >= a.n) continue;
      float v = acc[i][j];
      if (a.bias != nullptr) v += a.bias[n];
      float* out = a.out + static_cast<int64_t>(r) * a.n + n;
      if (a.accumulate) v += *out;
      *out = v;
    }
  }
}

// ---- row statistics ------------------------------------------------------------------------

// (av, ai) wins over (bv, bi): larger, or NaN over a number (torch.argmax treats NaN as the
// maximum); equal values and two NaNs go to the lower index.
__device__ __forceinline__ bool wins(float av, int ai, float bv, int bi) {
  const bool a_nan = is_nan(av), b_nan = is_nan(bv);
  if (a_nan || b_nan) return a_nan && (!b_nan || ai < bi);
  return av > bv || (av == bv && ai < bi);
}

}  // namespace ops
}  // namespace tidarc

using namespace tidarc::ops;

// Programmatic dependent launch (sm_90+, docs: the PDL contract): every kernel below starts with
// grid_dependency_wait() before its first global access of any kind (the launch before it on the
// stream may still be running when this one's CTAs start), then grid_dependents_launch() so the
// next kernel's CTAs are scheduled while this one runs. Both are no-ops without the launch
// attribute and compile to nothing below sm_90 (tidarc_device.cuh).

// The module's ABI, read by the runtime (gpu-ops.ts) before it packs any other struct.
extern "C" __global__ void __launch_bounds__(32) tidarc_op_abi_version(TidarcAbiVersionArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  if (threadIdx.x == 0 && blockIdx.x == 0) a.out[0] = TIDARC_OPS_ABI_VERSION;
}

extern "C" __global__ void __launch_bounds__(kRowThreads) tidarc_op_embed(TidarcEmbedArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  const int t = blockIdx.x;
  if (t >= a.rows) return;
  const int32_t id = a.ids[t];
  const bool known = id >= 0 && id < a.vocab;
  const int64_t row = static_cast<int64_t>(known ? id : 0) * a.cols;
  float* out = a.out + static_cast<int64_t>(t) * a.cols;
  for (int c = threadIdx.x; c < a.cols; c += kRowThreads) out[c] = known ? weight_at(a.table, row + c, a.dtype) : 0.0f;
}

extern "C" __global__ void __launch_bounds__(kRowThreads) tidarc_op_rmsnorm(TidarcRmsNormArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  __shared__ double partial[kRowThreads];
  const int r = blockIdx.x;
  if (r >= a.rows) return;
  const float* x = a.x + static_cast<int64_t>(r) * a.cols;
  const int64_t out0 = static_cast<int64_t>(r) * a.cols;  // out may be x: each thread rewrites only what it read
  // float64 squares are exact and their sum is far more precise than float32: the same
  // 1 / sqrt as ops_cpu.cc's 8-lane float64 sum, whatever the order.
  double ss = 0.0;
  for (int c = threadIdx.x; c < a.cols; c += kRowThreads) ss += static_cast<double>(x[c]) * x[c];
  ss = block_sum(ss, partial);
  const float inv = static_cast<float>(1.0 / sqrt(ss / static_cast<double>(a.cols) + static_cast<double>(a.eps)));
  for (int c = threadIdx.x; c < a.cols; c += kRowThreads) store_at(a.out, out0 + c, weight_at(a.w, c, a.dtype) * (x[c] * inv), a.out_dtype);  // HF order
}

extern "C" __global__ void __launch_bounds__(kMatmulThreads) tidarc_op_matmul(TidarcMatmulArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  __shared__ MatmulTiles tiles;
  matmul_block(a, tiles);
}

extern "C" __global__ void __launch_bounds__(kElementThreads) tidarc_op_silu_mul(TidarcSiluMulArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kElementThreads + threadIdx.x;
  if (i >= a.count) return;
  const float g = a.gate[i];
  store_at(a.out, i, g / (1.0f + expf(-g)) * a.up[i], a.out_dtype);  // torch: silu(g) = g / (1 + exp(-g))
}

extern "C" __global__ void __launch_bounds__(kElementThreads) tidarc_op_gelu(TidarcGeluArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kElementThreads + threadIdx.x;
  if (i >= a.count) return;
  const float x = a.x[i];
  // torch gelu(approximate='tanh'): 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
  store_at(a.out, i, 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))), a.out_dtype);
}

// ---- rope_pack's head norms (Qwen3's q_norm / k_norm) ---------------------------------------
// tidarc_op_rmsnorm's 1 / rms of a head row, bit for bit, in a block of kRopeThreads: the same
// float64 sum in the same tree (block_sum over kRowThreads lanes), so the fused op and the
// rmsnorm launches it replaces give the same q and k, at every row count.

constexpr int kRopeMaxNormHeads = TIDARC_ROPE_MAX_NORM_HEADS;  // q_heads + kv_heads with a norm (op-abi.ts)
constexpr int kNormHeadsPerRound = 64;   // heads whose tree values one round keeps in shared memory
constexpr int kNormSubtrees = 16;        // the tree's values after its steps s = 128, 64, 32, 16
static_assert(kRowThreads == 256, "norm_subtree unrolls block_sum's first four steps over 256 lanes");

// Lane l of tidarc_op_rmsnorm's block over a row of `cols`: its float64 sum of squares, in column order.
__device__ __forceinline__ double norm_lane(const float* x, int cols, int l) {
  double ss = 0.0;
  for (int c = l; c < cols; c += kRowThreads) ss += static_cast<double>(x[c]) * x[c];
  return ss;
}

// block_sum's partial[j] (j < 16) after its steps s = 128, 64, 32, 16, from the lanes, with the
// same pairs: after 128, v0[l] = lane(l) + lane(l + 128); after 64, v1[l] = v0[l] + v0[l + 64];
// after 32, v2[l] = v1[l] + v1[l + 32]; after 16, v2[j] + v2[j + 16].
__device__ __forceinline__ double norm_subtree(const float* x, int cols, int j) {
  double v1[4];
  for (int m = 0; m < 4; m++) {
    const int l = j + 16 * m;
    v1[m] = (norm_lane(x, cols, l) + norm_lane(x, cols, l + 128)) + (norm_lane(x, cols, l + 64) + norm_lane(x, cols, l + 192));
  }
  return (v1[0] + v1[2]) + (v1[1] + v1[3]);
}

// Head h of token t: q's heads, then k's.
__device__ __forceinline__ int64_t rope_head_at(const TidarcRopePackArgs& a, int t, int h) {
  return h < a.q_heads ? (static_cast<int64_t>(t) * a.q_heads + h) * a.head_dim
                       : (static_cast<int64_t>(t) * a.kv_heads + (h - a.q_heads)) * a.head_dim;
}

extern "C" __global__ void __launch_bounds__(kRopeThreads) tidarc_op_rope_pack(TidarcRopePackArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  __shared__ float cos_t[kRopeThreads];
  __shared__ float sin_t[kRopeThreads];
  __shared__ float inv_rms[kRopeMaxNormHeads];
  __shared__ double subtree[kNormHeadsPerRound][kNormSubtrees];
  const int t = blockIdx.x, tid = threadIdx.x;
  if (t >= a.rows) return;
  const int dim = a.head_dim, half = dim / 2, heads = a.q_heads + a.kv_heads;
  const bool normed = a.q_norm != nullptr || a.k_norm != nullptr;
  if (normed && heads > kRopeMaxNormHeads) return;  // refused by the runtime (gpu-ops.ts)
  if (normed) {
    // Each head's 1 / rms: 16 tree values a head, each summed by one thread, then one thread a
    // head finishes the tree (block_sum's steps s = 8, 4, 2, 1) and rounds as rmsnorm does.
    for (int h0 = 0; h0 < heads; h0 += kNormHeadsPerRound) {
      const int n = min(kNormHeadsPerRound, heads - h0);
      for (int e = tid; e < n * kNormSubtrees; e += kRopeThreads) {
        const int hh = e / kNormSubtrees, j = e % kNormSubtrees, h = h0 + hh;
        subtree[hh][j] = norm_subtree((h < a.q_heads ? a.q : a.k) + rope_head_at(a, t, h), dim, j);
      }
      __syncthreads();
      for (int hh = tid; hh < n; hh += kRopeThreads) {
        double v[kNormSubtrees];
        for (int j = 0; j < kNormSubtrees; j++) v[j] = subtree[hh][j];
        for (int s = kNormSubtrees / 2; s > 0; s /= 2)
          for (int j = 0; j < s; j++) v[j] += v[j + s];
        inv_rms[h0 + hh] = static_cast<float>(1.0 / sqrt(v[0] / static_cast<double>(dim) + static_cast<double>(a.eps)));
      }
      __syncthreads();  // inv_rms is read below; subtree is rewritten by the next round
    }
  }
  const float pos = static_cast<float>(a.positions[t]);
  // Pairs in chunks of kRopeThreads (one chunk up to head_dim 256): each thread computes one
  // cos/sin, then the block rotates that chunk of pairs in every q and k head.
  for (int i0 = 0; i0 < half; i0 += kRopeThreads) {
    const int pairs = min(kRopeThreads, half - i0);
    if (tid < pairs) {
      // Like HF and ops_cpu.cc: the angle is a float32 product; cos and sin are rounded once.
      const double angle = static_cast<double>(pos * a.inv_freq[i0 + tid]);
      cos_t[tid] = static_cast<float>(cos(angle));
      sin_t[tid] = static_cast<float>(sin(angle));
    }
    __syncthreads();
    for (int e = tid; e < heads * pairs; e += kRopeThreads) {
      const int h = e / pairs, p = e % pairs, i = i0 + p;
      const bool is_q = h < a.q_heads;
      const int64_t at = rope_head_at(a, t, h);
      const float* src = (is_q ? a.q : a.k) + at;
      uint16_t* dst = (is_q ? a.q_out : a.k_out) + at;
      float x1 = src[i], x2 = src[i + half];
      const void* norm = is_q ? a.q_norm : a.k_norm;
      if (norm != nullptr) {  // rmsnorm's float32 out, HF order: w * (x * inv)
        const float inv = inv_rms[h];
        x1 = weight_at(norm, i, a.norm_dtype) * (x1 * inv);
        x2 = weight_at(norm, i + half, a.norm_dtype) * (x2 * inv);
      }
      const float c = cos_t[p], s = sin_t[p];
      dst[i] = float_to_16(__fmul_rn(x1, c) - __fmul_rn(x2, s), a.out_dtype);         // x cos + rotate_half(x) sin
      dst[i + half] = float_to_16(__fmul_rn(x2, c) + __fmul_rn(x1, s), a.out_dtype);
    }
    __syncthreads();  // cos_t / sin_t are rewritten by the next chunk
  }
  const int64_t v0 = static_cast<int64_t>(t) * a.kv_heads * dim;
  for (int e = tid; e < a.kv_heads * dim; e += kRopeThreads) a.v_out[v0 + e] = float_to_16(a.v[v0 + e], a.out_dtype);
}

extern "C" __global__ void __launch_bounds__(kElementThreads) tidarc_op_to_float(TidarcToFloatArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kElementThreads + threadIdx.x;
  if (i >= a.count) return;
  a.out[i] = half_to_float(a.x[i], a.dtype);
}

extern "C" __global__ void __launch_bounds__(kKvThreads) tidarc_op_kv_commit(TidarcKvCommitArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  const int j = blockIdx.x, h = blockIdx.y;
  if (j >= a.count || h >= a.kv_heads) return;
  const int64_t src = (static_cast<int64_t>(a.from + j) * a.kv_heads + h) * a.head_dim;
  const int64_t dst = (static_cast<int64_t>(h) * a.capacity + a.slot + j) * a.head_dim;
  for (int d = threadIdx.x; d < a.head_dim; d += kKvThreads) {
    a.k_cache[dst + d] = a.k_step[src + d];
    a.v_cache[dst + d] = a.v_step[src + d];
  }
}

extern "C" __global__ void __launch_bounds__(kRowThreads) tidarc_op_row_stats(TidarcRowStatsArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  __shared__ float best_v[kRowThreads];
  __shared__ int best_i[kRowThreads];
  __shared__ double partial[kRowThreads];
  const int r = blockIdx.x, tid = threadIdx.x;
  if (r >= a.rows) return;
  const float* x = a.logits + static_cast<int64_t>(r) * a.cols;
  // Each thread scans its columns in increasing order, so its ties already keep the first.
  float v = -INFINITY;
  int at = INT32_MAX;  // loses every tie: a row of -inf still reports column 0
  for (int c = tid; c < a.cols; c += kRowThreads) {
    if (wins(x[c], c, v, at)) v = x[c], at = c;
  }
  best_v[tid] = v;
  best_i[tid] = at;
  __syncthreads();
  for (int s = kRowThreads / 2; s > 0; s /= 2) {
    if (tid < s && wins(best_v[tid + s], best_i[tid + s], best_v[tid], best_i[tid])) {
      best_v[tid] = best_v[tid + s];
      best_i[tid] = best_i[tid + s];
    }
    __syncthreads();
  }
  const float m = best_v[0];
  // log-sum-exp around the maximum, summed in float64 like ops_cpu.cc's lmHead; NaN, +inf
  // and an all -inf row give the maximum itself.
  double sum = 0.0;
  if (is_finite(m)) {
    for (int c = tid; c < a.cols; c += kRowThreads) sum += static_cast<double>(expf(x[c] - m));
  }
  sum = block_sum(sum, partial);
  if (tid == 0) {
    a.argmax[r] = best_i[0];
    a.max_logit[r] = m;
    a.lse[r] = is_finite(m) ? static_cast<float>(static_cast<double>(m) + log(sum)) : m;
  }
}

// ---- sampling ------------------------------------------------------------------------------
// One block a row of logits: temperature, top-k, top-p, then a draw, or the lossless test of a
// draft with residual resampling (src/runtime/model/sampling.ts, the decoder's rules). The
// kept set is found without sorting: radix selection over a 32-bit order key of the logit,
// 4 bits a pass, each pass one read of the row and one reduction of 16 bins; ties at the cut
// go to the lower vocabulary index, as the host's sort does. A draw is the Gumbel-max trick
// (argmax of log p + Gumbel noise is a sample of p), so no prefix sum is needed, and
// excluding the draft from it samples the residual. Random numbers come from Philox4x32-10
// keyed by the seed, counter (vocabulary index, row, step): any launch order gives the same
// tokens. Sums are float64 in a fixed tree order, so a run is reproducible bit for bit. The
// setup (temperature, top-k, top-p, seed, beta, step) is read from device memory
// (TidarcSampleParams), so one captured step graph serves every request's setup.

namespace tidarc {
namespace ops {

constexpr int kSampleBins = 16;       // radix digit of 4 bits: 8 passes over a 32-bit key
constexpr int kSampleDigitBits = 4;
constexpr uint32_t kAcceptDraw = 0xffffffffu;  // the counter's index word of a row's acceptance draw

struct SampleShared {
  double bins[kSampleBins][kRowThreads];
  double best_score[kRowThreads];
  int best_index[kRowThreads];
  int tie_count[kRowThreads];
  int tie_last;
};

// A cut of the row: kept = key > key_cut, or key == key_cut and index <= last.
struct SampleCut {
  uint32_t key;
  int last;
};
__device__ __forceinline__ SampleCut keep_all() { return {0u, INT32_MAX}; }

__device__ __forceinline__ bool kept_by(const SampleCut& c, uint32_t key, int i) { return key > c.key || (key == c.key && i <= c.last); }

// Larger logits give larger keys (the float's bits, sign-flipped for an unsigned compare).
__device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t b = __float_as_uint(x);
  return (b & 0x80000000u) != 0 ? ~b : (b | 0x80000000u);
}

// Philox4x32-10 (Salmon et al., SC'11): 10 rounds of the counter under a bumped key.
__device__ __forceinline__ void philox4x32_10(uint32_t (&c)[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; r++) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c[2];
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k0, n2 = static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k1;
    c[1] = static_cast<uint32_t>(p1);
    c[3] = static_cast<uint32_t>(p0);
    c[0] = n0;
    c[2] = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

// A uniform double in (0, 1) (53 random bits, never 0 or 1) for (index, row, step) under the seed.
__device__ __forceinline__ double sample_uniform(uint64_t seed, uint64_t step, int row, uint32_t index) {
  uint32_t c[4] = {index, static_cast<uint32_t>(row), static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32)};
  philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const uint64_t bits = (static_cast<uint64_t>(c[0]) << 21) ^ (c[1] >> 11);  // 53 bits
  return (static_cast<double>(bits & ((1ull << 53) - 1)) + 0.5) * 0x1p-53;
}

// The row's logit i: beta-mixed with the second head's when given; the never-emitted token is -inf.
__device__ __forceinline__ float sample_logit(const TidarcSampleArgs& a, const TidarcSampleParams& p, int r, int i) {
  if (i == a.never_emit) return -INFINITY;
  const int64_t at = static_cast<int64_t>(r) * a.vocab + i;
  if (a.mix_logits == nullptr) return a.logits[at];
  return static_cast<float>(static_cast<double>(p.beta) * a.logits[at] + (1.0 - static_cast<double>(p.beta)) * a.mix_logits[at]);
}

// Sums each of the 16 bins over the block in a fixed tree order; every thread gets the totals.
__device__ __forceinline__ void block_sum_bins(double (&v)[kSampleBins], SampleShared& s) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int b = 0; b < kSampleBins; b++) s.bins[b][tid] = v[b];
  __syncthreads();
  for (int half = kRowThreads / 2; half > 0; half /= 2) {
    if (tid < half) {
#pragma unroll
      for (int b = 0; b < kSampleBins; b++) s.bins[b][tid] += s.bins[b][tid + half];
    }
    __syncthreads();
  }
#pragma unroll
  for (int b = 0; b < kSampleBins; b++) v[b] = s.bins[b][0];
  __syncthreads();
}

/**
 * The cut that keeps, of the elements `prev` keeps, the largest ones up to `target` weight
 * (by_mass: their exp((x - m) / T) reaches target; else their count reaches target). Ties at
 * the cut are kept in index order until the target is reached.
 */
__device__ __forceinline__ SampleCut select_cut(const TidarcSampleArgs& a, const TidarcSampleParams& p, int r, SampleShared& s, const SampleCut& prev, bool by_mass, double target, float m) {
  const int tid = threadIdx.x;
  const double inv_t = 1.0 / static_cast<double>(p.temperature);
  uint32_t prefix = 0;
  double above = 0.0, chosen_weight = 0.0;
  for (int shift = 32 - kSampleDigitBits; shift >= 0; shift -= kSampleDigitBits) {
    const uint32_t high = shift + kSampleDigitBits >= 32 ? 0u : ~0u << (shift + kSampleDigitBits);
    double bins[kSampleBins] = {};
    for (int i = tid; i < a.vocab; i += kRowThreads) {
      const float x = sample_logit(a, p, r, i);
      const uint32_t key = order_key(x);
      if ((key & high) != prefix || !kept_by(prev, key, i)) continue;
      const uint32_t digit = (key >> shift) & (kSampleBins - 1);
      const double w = by_mass ? exp((static_cast<double>(x) - m) * inv_t) : 1.0;
      // Unrolled compares keep the bins in registers (an indexed store would put them on the stack).
#pragma unroll
      for (int b = 0; b < kSampleBins; b++) bins[b] += digit == static_cast<uint32_t>(b) ? w : 0.0;
    }
    block_sum_bins(bins, s);
    int chosen = -1;
#pragma unroll
    for (int b = kSampleBins - 1; b >= 0; b--) {
      if (chosen >= 0) continue;  // no break, no indexing by a variable: the bins stay in registers
      if (above + bins[b] >= target) chosen = b, chosen_weight = bins[b];
      else above += bins[b];
    }
    if (chosen < 0) return keep_all();  // rounding left the whole row short of the target: keep it all
    prefix |= static_cast<uint32_t>(chosen) << shift;
  }
  // prefix is the cut's key; chosen_weight the weight of its ties, each of the same weight.
  const float x_cut = __uint_as_float((prefix & 0x80000000u) != 0 ? (prefix & 0x7fffffffu) : ~prefix);
  const double each = by_mass ? exp((static_cast<double>(x_cut) - m) * inv_t) : 1.0;
  const int ties = static_cast<int>(by_mass ? chosen_weight / each + 0.5 : chosen_weight);
  int need = static_cast<int>(ceil((target - above) / each));
  need = max(1, min(need, ties));
  if (need >= ties) return {prefix, INT32_MAX};  // every tie stays (the usual case: one element at the cut)
  // The need-th tie in index order: contiguous chunks a thread, counts scanned by thread 0.
  const int chunk = (a.vocab + kRowThreads - 1) / kRowThreads;
  const int lo = min(a.vocab, tid * chunk), hi = min(a.vocab, lo + chunk);
  int count = 0;
  for (int i = lo; i < hi; i++) count += order_key(sample_logit(a, p, r, i)) == prefix && kept_by(prev, prefix, i) ? 1 : 0;
  s.tie_count[tid] = count;
  __syncthreads();
  if (tid == 0) {
    int before = 0, who = kRowThreads - 1;
    for (int t = 0; t < kRowThreads; t++) {
      if (before + s.tie_count[t] >= need) {
        who = t;
        break;
      }
      before += s.tie_count[t];
    }
    s.tie_count[0] = who;  // thread 0 read its own count already
    s.tie_count[1] = need - before;
  }
  __syncthreads();
  const int who = s.tie_count[0], nth = s.tie_count[1];
  __syncthreads();
  if (tid == who) {
    int seen = 0, last = lo;
    for (int i = lo; i < hi && seen < nth; i++) {
      if (order_key(sample_logit(a, p, r, i)) == prefix && kept_by(prev, prefix, i)) seen++, last = i;
    }
    s.tie_last = last;
  }
  __syncthreads();
  const SampleCut cut = {prefix, s.tie_last};
  __syncthreads();
  return cut;
}

}  // namespace ops
}  // namespace tidarc

// Min blocks 1: left to itself ptxas aims for 3 resident blocks (80 registers) and spills the
// radix bins; a step samples a few rows, so residency does not matter here.
extern "C" __global__ void __launch_bounds__(kRowThreads, 1) tidarc_op_sample(TidarcSampleArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  __shared__ SampleShared s;
  const int r = blockIdx.x, tid = threadIdx.x;
  if (r >= a.rows) return;
  const TidarcSampleParams p = *a.params;
  const uint64_t step = p.step;
  const double inv_t = 1.0 / static_cast<double>(p.temperature);

  // The row's maximum (softmax's shift); the never-emitted token is -inf.
  double m = -INFINITY;
  for (int i = tid; i < a.vocab; i += kRowThreads) m = fmax(m, static_cast<double>(sample_logit(a, p, r, i)));
  s.best_score[tid] = m;
  __syncthreads();
  for (int half = kRowThreads / 2; half > 0; half /= 2) {
    if (tid < half) s.best_score[tid] = fmax(s.best_score[tid], s.best_score[tid + half]);
    __syncthreads();
  }
  const float mx = static_cast<float>(s.best_score[0]);
  __syncthreads();

  // top-k over the row, then top-p over what top-k kept (mass relative to that set).
  SampleCut k_cut = keep_all(), p_cut = keep_all();
  if (p.top_k > 0 && p.top_k < a.vocab) k_cut = select_cut(a, p, r, s, keep_all(), false, p.top_k, mx);
  double kept_mass = 0.0;
  for (int i = tid; i < a.vocab; i += kRowThreads) {
    const float x = sample_logit(a, p, r, i);
    if (kept_by(k_cut, order_key(x), i)) kept_mass += exp((static_cast<double>(x) - mx) * inv_t);
  }
  kept_mass = block_sum(kept_mass, &s.bins[0][0]);
  if (p.top_p < 1.0f) {
    p_cut = select_cut(a, p, r, s, k_cut, true, static_cast<double>(p.top_p) * kept_mass, mx);
    kept_mass = 0.0;
    for (int i = tid; i < a.vocab; i += kRowThreads) {
      const float x = sample_logit(a, p, r, i);
      const uint32_t key = order_key(x);
      if (kept_by(k_cut, key, i) && kept_by(p_cut, key, i)) kept_mass += exp((static_cast<double>(x) - mx) * inv_t);
    }
    kept_mass = block_sum(kept_mass, &s.bins[0][0]);
  }

  // A draft is accepted with probability p(draft); else (and on a row without a draft) the
  // token is drawn from p without the draft: the residual p - min(p, q) for q = delta(draft).
  const int draft = a.drafts != nullptr ? a.drafts[r] : -1;
  bool accept = false;
  if (draft >= 0 && draft < a.vocab) {
    const float xd = sample_logit(a, p, r, draft);
    const uint32_t kd = order_key(xd);
    const double pd = kept_by(k_cut, kd, draft) && kept_by(p_cut, kd, draft) ? exp((static_cast<double>(xd) - mx) * inv_t) / kept_mass : 0.0;
    accept = sample_uniform(p.seed, step, r, kAcceptDraw) < pd;
  }
  double best = -INFINITY;
  int best_i = INT32_MAX;
  if (!accept) {
    for (int i = tid; i < a.vocab; i += kRowThreads) {
      const float x = sample_logit(a, p, r, i);
      const uint32_t key = order_key(x);
      if (i == draft || x == -INFINITY || !kept_by(k_cut, key, i) || !kept_by(p_cut, key, i)) continue;
      const double score = (static_cast<double>(x) - mx) * inv_t - log(-log(sample_uniform(p.seed, step, r, static_cast<uint32_t>(i))));
      if (score > best) best = score, best_i = i;  // increasing i: ties keep the first
    }
  }
  s.best_score[tid] = best;
  s.best_index[tid] = best_i;
  __syncthreads();
  for (int half = kRowThreads / 2; half > 0; half /= 2) {
    if (tid < half) {
      const double o = s.best_score[tid + half];
      const int oi = s.best_index[tid + half];
      if (o > s.best_score[tid] || (o == s.best_score[tid] && oi < s.best_index[tid])) s.best_score[tid] = o, s.best_index[tid] = oi;
    }
    __syncthreads();
  }
  if (tid == 0) {
    // Nothing left to draw (every other kept token has probability 0): the draft stands.
    a.tokens[r] = accept || s.best_index[0] == INT32_MAX ? draft : s.best_index[0];
    a.accepted[r] = accept ? 1 : 0;
  }
}

extern "C" __global__ void __launch_bounds__(32) tidarc_op_accept(TidarcAcceptArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  // The tokens a step makes final: each row's token up to and including the first rejected
  // draft's correction (or the last row's draw when every draft stood).
  int n = 1;
  while (n < a.rows && a.accepted[n - 1] != 0) n++;
  a.emitted[0] = n;
  for (int i = 0; i < n; i++) a.emitted[1 + i] = a.tokens[i];
}

// ---- a decode step's device-side tail (a captured step graph needs no host round trip) ------

// Greedy verification: the (beta-mixed) argmax without never_emit, first maximum, as the host's
// argmax of mixLogits(ar, diffusion, beta) (mixed in double, rounded to float). With row_argmax
// (lm_head's row statistics, never_emit already -inf by its bias) no logits row is read: a greedy
// step moves R x 4 bytes here instead of R x vocab x 4.
extern "C" __global__ void __launch_bounds__(kRowThreads) tidarc_op_verify(TidarcVerifyArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  __shared__ float best_v[kRowThreads];
  __shared__ int best_i[kRowThreads];
  const int r = blockIdx.x, tid = threadIdx.x;
  if (r >= a.rows) return;
  if (a.row_argmax != nullptr) {  // the whole block leaves: no barrier is skipped by some threads only
    if (tid == 0) {
      const int token = a.row_argmax[r];
      a.tokens[r] = token;
      if (a.accepted != nullptr) a.accepted[r] = a.drafts != nullptr && a.drafts[r] >= 0 && a.drafts[r] == token ? 1 : 0;
    }
    return;
  }
  const int64_t base = static_cast<int64_t>(r) * a.vocab;
  const double beta = a.mix_logits != nullptr ? static_cast<double>(a.params->beta) : 1.0;
  float v = -INFINITY;
  int at = INT32_MAX;
  for (int c = tid; c < a.vocab; c += kRowThreads) {
    float x = a.mix_logits == nullptr ? a.logits[base + c]
                                      : static_cast<float>(beta * a.logits[base + c] + (1.0 - beta) * a.mix_logits[base + c]);
    if (c == a.never_emit) x = -INFINITY;
    if (x > v || at == INT32_MAX) v = x, at = c;  // increasing c: ties keep the first
  }
  best_v[tid] = v;
  best_i[tid] = at;
  __syncthreads();
  for (int s = kRowThreads / 2; s > 0; s /= 2) {
    if (tid < s) {
      const float o = best_v[tid + s];
      const int oi = best_i[tid + s];
      if (oi != INT32_MAX && (best_i[tid] == INT32_MAX || o > best_v[tid] || (o == best_v[tid] && oi < best_i[tid]))) best_v[tid] = o, best_i[tid] = oi;
    }
    __syncthreads();
  }
  if (tid == 0) {
    const int token = best_i[0] == INT32_MAX ? 0 : best_i[0];
    a.tokens[r] = token;
    if (a.accepted != nullptr) a.accepted[r] = a.drafts != nullptr && a.drafts[r] >= 0 && a.drafts[r] == token ? 1 : 0;
  }
}

extern "C" __global__ void __launch_bounds__(32) tidarc_op_draft_rows(TidarcDraftRowsArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  const int n = a.emitted[0];
  for (int s = threadIdx.x; s < a.count; s += 32) a.row_ids[s] = a.stride * n + a.offset + s;
}

// A greedy step's next drafts without a second lm_head pass: the pass before acceptance covered
// every candidate row; this picks the accepted n's (a row's statistics do not depend on the
// other rows of its launch, so they are the ones a pass over these rows alone would give).
extern "C" __global__ void __launch_bounds__(32) tidarc_op_next_drafts(TidarcNextDraftsArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  const int base = a.stride * a.emitted[0] + a.offset;
  for (int s = threadIdx.x; s < a.count; s += 32) {
    a.tokens[s] = a.row_argmax[base + s];
    a.lse[s] = a.row_lse[base + s];
  }
}

// A decode step's commit for every layer in one launch (blockIdx.z: the layer): each layer's
// in-step K/V and cache addresses from the table, the count and slot its acceptance wrote.
extern "C" __global__ void __launch_bounds__(kKvThreads) tidarc_op_kv_commit_layers(TidarcKvCommitLayersArgs a) {
  tidarc::grid_dependency_wait();  // PDL: no global access before it (the prologue contract above)
  tidarc::grid_dependents_launch();
  const int j = blockIdx.x, h = blockIdx.y, l = blockIdx.z;
  if (j >= *a.count || j >= a.max_count || h >= a.kv_heads || l >= a.layers) return;
  const TidarcKvCommitLayer t = a.table[l];
  const int64_t src = (static_cast<int64_t>(j) * a.kv_heads + h) * a.head_dim;
  const int64_t dst = (static_cast<int64_t>(h) * a.capacity + *a.slot + j) * a.head_dim;
  for (int d = threadIdx.x; d < a.head_dim; d += kKvThreads) {
    t.k_cache[dst + d] = t.k_step[src + d];
    t.v_cache[dst + d] = t.v_step[src + d];
  }
}
