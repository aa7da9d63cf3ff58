/*! tidarc GPU operators: the argument structs of the kernels in tidarc_ops.cu (the rest of a
    transformer forward around the attention kernels). Every kernel takes ONE struct by value,
    so the runtime launches any of them the same way (cuLaunchKernel with one parameter).
    src/runtime/cuda/op-abi.ts packs these structs; test/runtime/cuda/op-abi.test.ts checks
    its offsets against this header with g++. Changing a field changes
    TIDARC_OPS_ABI_VERSION.

    Activations are float32, row-major [rows, features]. Weights stay in the checkpoint's
    format: `dtype` 0 = bf16 bits, 1 = fp16 bits, 2 = float32 (TIDARC_DTYPE_*). Every kernel
    works for any shape given at run time; launch geometry is in each struct's comment. */
#ifndef TIDARC_OPS_ABI_H
#define TIDARC_OPS_ABI_H
#include <stdint.h>

#define TIDARC_OPS_ABI_VERSION 1
#define TIDARC_DTYPE_BF16 0
#define TIDARC_DTYPE_FP16 1
#define TIDARC_DTYPE_F32 2

/* tidarc_op_embed: out[t, :] = table[ids[t], :].  grid (rows), block 256. */
typedef struct TidarcEmbedArgs {
  const int32_t* ids;
  const void* table;   /* [vocab, cols], dtype */
  float* out;          /* [rows, cols] */
  int32_t rows;
  int32_t cols;
  int32_t vocab;       /* an id outside [0, vocab) gives a zero row */
  int32_t dtype;
} TidarcEmbedArgs;

/* tidarc_op_rmsnorm: out[r, :] = w * (x[r, :] * rsqrt(mean(x[r, :]^2) + eps)); out may be x.
   Used for the layer norms (cols = hidden) and Qwen3's per-head q/k norms (rows = T * heads,
   cols = head_dim).  grid (rows), block 256. */
typedef struct TidarcRmsNormArgs {
  const float* x;
  const void* w;       /* [cols], dtype */
  float* out;
  int32_t rows;
  int32_t cols;
  float eps;
  int32_t dtype;
} TidarcRmsNormArgs;

/* tidarc_op_matmul: out[r, n] = sum_k x[row(r), k] * w[n, k] + bias[n] (+ out[r, n] when
   accumulate), row(r) = row_ids ? row_ids[r] : r. Each output element is summed by ONE thread
   in k order, then the bias, then the old out: a row's result does not depend on `rows`
   (greedy TiDAR == AR relies on it).  grid (ceil(n / 64), ceil(rows / 16)), block 256. */
typedef struct TidarcMatmulArgs {
  const float* x;          /* [*, k] */
  const void* w;           /* [n, k], dtype (HF layout [out_features, in_features]) */
  const float* bias;       /* [n] or null */
  const int32_t* row_ids;  /* [rows] or null */
  float* out;              /* [rows, n] */
  int32_t rows;
  int32_t n;
  int32_t k;
  int32_t dtype;
  int32_t accumulate;
  int32_t pad_;
} TidarcMatmulArgs;

/* tidarc_op_silu_mul: out[i] = silu(gate[i]) * up[i]; out may be gate.  grid
   (ceil(count / 256)), block 256. */
typedef struct TidarcSiluMulArgs {
  const float* gate;
  const float* up;
  float* out;
  int64_t count;
} TidarcSiluMulArgs;

/* tidarc_op_rope_pack: RoPE at per-token positions on q [rows, q_heads, head_dim] and
   k [rows, kv_heads, head_dim] (rotate-half pairs (i, i + head_dim/2); angle = the float32
   product position * inv_freq[i]), then q, k and v rounded to the model dtype (out_dtype 0 bf16
   or 1 fp16, round to nearest even) into q_out, k_out, v_out: the attention kernels' q and
   in-step K/V.  grid (rows), block 128. */
typedef struct TidarcRopePackArgs {
  const float* q;
  const float* k;
  const float* v;
  const int32_t* positions;  /* [rows] */
  const float* inv_freq;     /* [head_dim / 2], scaling already applied */
  uint16_t* q_out;
  uint16_t* k_out;
  uint16_t* v_out;
  int32_t rows;
  int32_t q_heads;
  int32_t kv_heads;
  int32_t head_dim;
  int32_t out_dtype;
  int32_t pad_;
} TidarcRopePackArgs;

/* tidarc_op_to_float: out[i] = float(x[i]) for 16-bit bits of dtype (0 bf16, 1 fp16).
   grid (ceil(count / 256)), block 256. */
typedef struct TidarcToFloatArgs {
  const uint16_t* x;
  float* out;
  int64_t count;
  int32_t dtype;
  int32_t pad_;
} TidarcToFloatArgs;

/* tidarc_op_kv_commit: rows [from, from + count) of in-step K and V ([*, kv_heads, head_dim])
   into cache slots [slot, slot + count) of k_cache / v_cache ([kv_heads, capacity, head_dim]),
   16-bit elements.  grid (count, kv_heads), block 64. */
typedef struct TidarcKvCommitArgs {
  const uint16_t* k_step;
  const uint16_t* v_step;
  uint16_t* k_cache;
  uint16_t* v_cache;
  int32_t from;
  int32_t count;
  int32_t slot;
  int32_t kv_heads;
  int32_t capacity;
  int32_t head_dim;
} TidarcKvCommitArgs;

/* tidarc_op_row_stats: per row of logits [rows, cols]: argmax (first maximum; a NaN counts as
   the maximum), the maximum and the natural-log log-sum-exp.  grid (rows), block 256. */
typedef struct TidarcRowStatsArgs {
  const float* logits;
  int32_t* argmax;
  float* max_logit;
  float* lse;
  int32_t rows;
  int32_t cols;
} TidarcRowStatsArgs;

#endif
