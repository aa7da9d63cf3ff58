/*! tidarc sm_90a GEMMs (tidarc_gemm_sm90a.cuh): the one argument struct of every sm_90a GEMM
    kernel, passed as `const __grid_constant__` (the tensor maps must stay in parameter space:
    cp.async.bulk.tensor reads them there; CUTLASS passes its TMA descriptors the same way).
    Changing a field changes TIDARC_GEMM_SM90A_ABI_VERSION (3: g is TIDARC_GEMM_ABI_VERSION 6's,
    with the fold-norms fields; the struct's size is unchanged, 448 bytes).

    out^T = W x^T: weight rows are wgmma's M (64 per consumer warpgroup), tokens its N, so a
    step of any row count runs one kernel family of a weight shape, and the reduction order of
    an output element (k tiles of 64 in increasing order, 16 k at a time, split-K parts summed
    in increasing order by the output tile's last CTA, then bias, then the old out) never
    depends on `rows`.
    `g` is the sm_80 GEMM's argument struct (tidarc_gemm_abi.h) for everything after the sum:
    bias, out | out2 | out3 segments, workspace, split_counters, rows, accumulate, epilogue
    (none or SWIGLU; no ROW_STATS), and fold-norms' fields (a producer's norm_weight, norm_out,
    norm_sumsq; a consumer's row_sumsq, sumsq_chunks, norm_cols, norm_eps) where the unit's
    Reduction has kNormOut / kRowScale; its x and row_ids are unused (x comes through its tensor
    map; no row gather), and w, the W map's base, only addresses the L2 prefetch each CTA issues
    before its PDL wait (the weights themselves come through the W map). Split-K is summed inside the launch, as tidarc_gemm_abi.h says.
    Tensor maps (cuTensorMapEncodeTiled, runtime/src/cuda): 16-bit, 2D, 128-byte swizzle,
    dimension 0 = K; w: dims {K, N}, box {64, 128}; x: dims {K, rows}, box {64, token tile}. */
#ifndef TIDARC_GEMM_SM90A_ABI_H
#define TIDARC_GEMM_SM90A_ABI_H
#include <stdint.h>

#include "tidarc_gemm_abi.h"

#define TIDARC_GEMM_SM90A_ABI_VERSION 3

/* A CUtensorMap's 128 opaque bytes, 64-byte aligned as cuda.h declares it. */
typedef struct TidarcTensorMap {
  alignas(64) uint64_t opaque[16];
} TidarcTensorMap;

typedef struct TidarcGemmSm90aArgs {
  TidarcTensorMap w;  /* [N, K] 16-bit weights */
  TidarcTensorMap x;  /* [rows, K] 16-bit activations */
  TidarcGemmArgs g;
} TidarcGemmSm90aArgs;

#endif
