/*! tidarc sm_90a attention (tidarc_attention_sm90a.cuh): the one argument struct of every sm_90a
    attention kernel, passed as `const __grid_constant__` (the tensor maps must stay in parameter
    space, where cp.async.bulk.tensor reads them; the sm_90a GEMM passes its maps the same way).
    `a` is the sm_80 kernel's TidarcAttentionArgs, unchanged: the same arrays, the same output
    contract (final O and lse, or split partials merged by the row group's last CTA through
    split_counters), so a launcher fills it once for either kernel and adds the two maps.
    Changing a field changes TIDARC_ATTENTION_SM90A_ABI_VERSION.
    Tensor maps (cuTensorMapEncodeTiled): the KV cache [batch][kvHeads][capacity][D] as a 3D
    tensor, 16-bit, 128-byte swizzle: dims {D, capacity, batch * kvHeads}, byte strides
    {D * 2, capacity * D * 2}, box {64, tileN, 1} (one 128-byte row of 64 head-dim columns per
    key; a head dim of 128 is two boxes). k_cache and v_cache have the same layout. */
#ifndef TIDARC_ATTENTION_SM90A_ABI_H
#define TIDARC_ATTENTION_SM90A_ABI_H
#include <stdint.h>

#include "tidarc_abi.h"
#include "tidarc_gemm_sm90a_abi.h" /* TidarcTensorMap */

#define TIDARC_ATTENTION_SM90A_ABI_VERSION 1

typedef struct TidarcAttentionSm90aArgs {
  TidarcTensorMap k_cache;
  TidarcTensorMap v_cache;
  TidarcAttentionArgs a;
} TidarcAttentionSm90aArgs;

#endif
