/*! tidarc generated GEMMs (tidarc_gemm.cuh): the one argument struct of every GEMM kernel and
    of the lm_head's row-statistics merge, passed by value (cuLaunchKernel with one parameter, like the
    operators of tidarc_ops_abi.h). Changing a field changes TIDARC_GEMM_ABI_VERSION.

    out[r, n] = sum_k x[row(r), k] * w[n, k] (+ bias[n]) (+ out[r, n] when accumulate), x and w
    in the kernel's 16-bit type (x: stored rounded to nearest even by the op that wrote it), the
    sum in float32; row(r) = row_ids ? row_ids[r] : r. N, K, the dtype and the reduction order (k tiles of 64,
    split-K parts summed in increasing order, then the bias, then the old out) are compiled in
    and the same for every kernel of one weight shape: a row's result does not depend on `rows`
    or on which of those kernels computed it (greedy TiDAR == AR relies on it).
    The output columns may go to up to three row-major buffers (a fused weight's parts, e.g.
    q | k | v or gate | up): columns [0, seg1) to out [rows, seg1], [seg1, seg2) to out2
    [rows, seg2 - seg1], [seg2, N) to out3 [rows, N - seg2]; seg1 = seg2 = N is one plain out.
    Split-K in one launch: each part stores its float32 partials in `workspace`, then the CTA of
    an output tile (an M block x N tile) that arrives last at its counter in `split_counters`
    (__threadfence, atomicAdd) sums the parts in increasing order, runs the epilogue and resets
    the counter to 0, so the next launch (or graph replay) finds every counter 0 again.
    Epilogues (`epilogue`, applied once the full sum, bias included, is known: by the CTA itself
    at split-K 1, else by that last CTA):
      TIDARC_GEMM_EPILOGUE_SWIGLU: w is gate | up with its rows interleaved in blocks of
        TIDARC_GEMM_SWIGLU_INTERLEAVE (gate rows 0-7, up rows 0-7, gate rows 8-15, ...), so one
        thread holds a gate column and its up column; out [rows, N / 2] = silu(gate) * up in
        float32 (silu(g) = g / (1 + expf(-g)), tidarc_op_silu_mul's expression), stored rounded
        to the kernel's 16-bit type (the down GEMM's activations). No accumulate.
      TIDARC_GEMM_EPILOGUE_ROW_STATS: no out; per row and N tile (BLOCK_N columns) tile_stats
        gets (max, sum exp(x - max)) and tile_argmax the first column of the maximum (NaN counts
        as the maximum, as tidarc_op_row_stats); then <unit>_row_stats merges the tiles in
        increasing order into row_argmax, row_max and row_lse (NaN, +inf or an all -inf row: lse
        = the maximum itself), so greedy decoding never writes the [rows, N] logits.
    Fold-norms (version 6: an RMSNorm folded into the GEMMs around it; the runtime sets these only
    on a kernel compiled with the code, Reduction::kNormOut / kRowScale, the manifest's normOut /
    rowScale):
      Producer (norm_weight != null; a residual GEMM, o or down: epilogue NONE, one plain segment
        seg1 == seg2 == N, out float32): after out[r, n] = y (the full sum, + bias, + old out, as
        above) it also writes norm_out[r, n] = round16(norm_weight[n] * y) (one float32 multiply,
        round to nearest even to the kernel's 16-bit type) and, per row r and 64-column chunk c
        (columns [64c, 64c + 64)), norm_sumsq[r * ceil(N / 64) + c] = s_0 of the fixed tree:
        s_j = (double)y_j * (double)y_j for j in [0, 64) (0 past N), then for w = 32, 16, 8, 4,
        2, 1: s_j = s_j + s_{j + w} for j < w. The same bits whatever the tile, warp layout or rows.
      Consumer (row_sumsq != null; a GEMM reading norm_out as x: qkv, gate_up, lm_head): per output
        row r, source row sr = row_ids ? row_ids[r] : r,
        total = row_sumsq[sr * sumsq_chunks + 0] + ... + [.. + sumsq_chunks - 1] (float64, increasing),
        inv = (float)(1.0 / sqrt(total / (double)norm_cols + (double)norm_eps)) (tidarc_op_rmsnorm's),
        and every output element becomes acc * inv (float32) before the bias and before any
        epilogue (SWIGLU, ROW_STATS, segments). So round16(gamma * x) feeds the sum and 1 / rms
        scales it after, where the unfolded graph rounds round16(gamma * (x * inv)).
    Launch: main kernel grid (ceil(rows / BLOCK_M), N tiles, split-K), the block and dynamic
    shared memory of its manifest entry (nothing after it at any split-K); ROW_STATS then
    <unit>_row_stats over ceil(rows / 8) blocks of 256 threads (a warp per row). */
#ifndef TIDARC_GEMM_ABI_H
#define TIDARC_GEMM_ABI_H
#include <stdint.h>

#define TIDARC_GEMM_ABI_VERSION 6

#define TIDARC_GEMM_EPILOGUE_NONE 0
#define TIDARC_GEMM_EPILOGUE_SWIGLU 1
#define TIDARC_GEMM_EPILOGUE_ROW_STATS 2
#define TIDARC_GEMM_SWIGLU_INTERLEAVE 8

typedef struct TidarcGemmArgs {
  const void* x;           /* [*, K] 16-bit, the kernel's dtype, row-major; rows 16-byte aligned (K % 8 == 0) */
  const void* w;           /* [N, K] 16-bit, the kernel's dtype (HF layout [out_features, in_features]) */
  const float* bias;       /* [N] or null */
  const int32_t* row_ids;  /* [rows] or null */
  void* out;               /* columns [0, seg1): [rows, seg1] float32; SWIGLU: [rows, N / 2] 16-bit */
  float* out2;             /* columns [seg1, seg2): [rows, seg2 - seg1], or null when seg1 == seg2 */
  float* out3;             /* columns [seg2, N): [rows, N - seg2], or null when seg2 == N */
  float* workspace;        /* [splitK, rows, N] float32 partial sums; null when splitK == 1 */
  float* tile_stats;       /* ROW_STATS: [rows, N tiles, 2] (max, sum exp(x - max)) of each tile */
  int32_t* tile_argmax;    /* ROW_STATS: [rows, N tiles] column of each tile's first maximum */
  int32_t* row_argmax;     /* ROW_STATS: [rows], written by <unit>_row_stats */
  float* row_max;          /* ROW_STATS: [rows] */
  float* row_lse;          /* ROW_STATS: [rows] */
  int32_t rows;
  int32_t accumulate;      /* 1: add the old out (a residual) after the bias */
  int32_t seg1;            /* 0 < seg1 <= seg2 <= N */
  int32_t seg2;
  int32_t epilogue;        /* TIDARC_GEMM_EPILOGUE_* */
  int32_t* split_counters; /* splitK > 1: [grid x * grid y] int32, all 0 before the first launch (each launch leaves them 0); else null */
  const float* norm_weight;   /* producer: [N] gamma of the folded RMSNorm in float32 (widened at upload); null: no norm_out */
  void* norm_out;             /* producer: [rows, N] the kernel's 16-bit type, round16(gamma[n] * out[r, n]) */
  double* norm_sumsq;         /* producer: [rows, ceil(N / 64)] float64 chunk sums of out[r, n]^2 (the tree above) */
  const double* row_sumsq;    /* consumer: [source rows, sumsq_chunks], a producer's norm_sumsq; null: no scale */
  int32_t sumsq_chunks;       /* consumer: ceil(norm_cols / 64) */
  int32_t norm_cols;          /* consumer: the normed width (the producer's N, the consumer's K) */
  float norm_eps;             /* consumer: the RMSNorm's eps */
} TidarcGemmArgs;

#endif
