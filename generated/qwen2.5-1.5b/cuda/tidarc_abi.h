/*! tidarc ABI between generated kernel libraries and the runtime. Changing a field
    changes TIDARC_ABI_VERSION; the runtime refuses a library of another version. */
#ifndef TIDARC_ABI_H
#define TIDARC_ABI_H
#include <stdint.h>

#define TIDARC_ABI_VERSION 1

/* Layouts (row-major, elements of the variant's dtype unless noted):
     q        [batch, n, q_heads, head_dim]        in-step queries, RoPE applied
     k_cache  [batch, kv_heads, cache_capacity, head_dim]   committed keys
     v_cache  [batch, kv_heads, cache_capacity, head_dim]
     k_step   [batch, n, kv_heads, head_dim]       in-step keys (drafts and mask tokens)
     v_step   [batch, n, kv_heads, head_dim]
     prefix_len int32 [batch]                      L_b <= cache_capacity
     o        [batch, n, q_heads, head_dim]
     lse      float [batch, n, q_heads]            natural-log sum of exp of the scaled
                                                   scores; -inf for a row that sees no key
     workspace float, num_splits * batch * n * q_heads * (head_dim + 1), when num_splits > 1 */
typedef struct TidarcAttentionArgs {
  const void* q;
  const void* k_cache;
  const void* v_cache;
  const void* k_step;
  const void* v_step;
  const int32_t* prefix_len;
  void* o;
  float* lse;
  float* workspace;
  int32_t batch;
  int32_t cache_capacity;
  int32_t num_splits;
  int32_t num_threads; /* CPU backend only; 0 = all hardware threads (more are clamped to it) */
} TidarcAttentionArgs;

/* Return codes of the CPU entry points. */
#define TIDARC_OK 0
#define TIDARC_ERR_ARGS 1      /* a null pointer, batch < 1, splits < 1, ... */
#define TIDARC_ERR_PREFIX 2    /* some prefix_len[b] < 0 or > cache_capacity */
#define TIDARC_ERR_WORKSPACE 3 /* num_splits > 1 without a workspace */

#endif
