/**
 * The kernel argument structs the CUDA backend launches with, as data: for each struct its C
 * name, what its kernel does, and its fields in declaration order (with their C types and
 * notes). The one source of the ABI: abi-render.ts writes the C headers
 * (templates/common/tidarc_abi.h, templates/cuda/tidarc_ops_abi.h) and the device check's
 * Python packing from it (scripts/generate-abi.ts; test/runtime/cuda/abi-render.test.ts fails
 * when a written file differs). Layouts follow the C rules (each field at a multiple of its
 * size, the struct padded to its largest field), which is what nvcc and g++ do for these plain
 * structs; test/runtime/cuda/op-abi.test.ts checks every offset with g++'s offsetof.
 * Pure: no I/O.
 */

import { ATTENTION_ARRAYS, ATTENTION_SCALARS, type AttentionArrayField, type AttentionArraySpec, type AttentionScalarField, attentionArrayFields } from '../../codegen/abi-fields.js';

/** ptr: a device address (a number; 0 = NULL). */
export type FieldType = 'ptr' | 'i32' | 'f32' | 'i64';

/** A field's C declaration type (default: void* for ptr, else int32_t, float, int64_t) and a note for the header. */
export interface FieldDoc {
  readonly c?: string;
  readonly note?: string;
}

export type FieldSchema<F extends string = string> = readonly [F, FieldType] | readonly [F, FieldType, FieldDoc];

export interface StructSchema<F extends string = string> {
  /** The C type name in the header. */
  readonly cName: string;
  readonly fields: readonly FieldSchema<F>[];
  /** The header's comment above the struct: what its kernel computes, and its launch geometry. */
  readonly doc?: string;
}

/** TIDARC_ABI_VERSION (tidarc_abi.h): the addon refuses a kernel library of another. */
export const ABI_VERSION = 2;
/**
 * TIDARC_OPS_ABI_VERSION (tidarc_ops_abi.h); 4: tidarc_op_abi_version, which GpuOps reads first;
 * 5: sample and verify read the sampling setup from device memory (TidarcSampleParams); 6:
 * tidarc_op_next_drafts (a module of 5 lacks it: a greedy TiDAR step would not find it); 7:
 * TidarcRopePackArgs gains q_norm, k_norm, norm_dtype and eps (Qwen3's head norms fused); 8:
 * tidarc_op_kv_commit_layers (every layer's step commit in one launch, through a device table of
 * TidarcKvCommitLayer) replaces tidarc_op_kv_commit_at.
 */
export const OPS_ABI_VERSION = 8;

/** q + k heads a token whose head norms tidarc_op_rope_pack takes (its shared memory holds one 1 / rms a head): TIDARC_ROPE_MAX_NORM_HEADS. */
export const ROPE_MAX_NORM_HEADS = 256;

const SIZE: Readonly<Record<FieldType, number>> = { ptr: 8, i32: 4, f32: 4, i64: 8 };

function schema<F extends string>(cName: string, fields: readonly FieldSchema<F>[], doc?: string): StructSchema<F> {
  return { cName, fields, ...(doc === undefined ? {} : { doc }) };
}

const c = (decl: string, note?: string): FieldDoc => ({ c: decl, ...(note === undefined ? {} : { note }) });
const note = (text: string): FieldDoc => ({ note: text });

export const EMBED = schema('TidarcEmbedArgs', [
  ['ids', 'ptr', c('const int32_t*')], ['table', 'ptr', c('const void*', '[vocab, cols], dtype')], ['out', 'ptr', c('float*', '[rows, cols]')],
  ['rows', 'i32'], ['cols', 'i32'], ['vocab', 'i32', note('an id outside [0, vocab) gives a zero row')], ['dtype', 'i32'],
], 'tidarc_op_embed: out[t, :] = table[ids[t], :].  grid (rows), block 256.');
export const RMSNORM = schema('TidarcRmsNormArgs', [
  ['x', 'ptr', c('const float*')], ['w', 'ptr', c('const void*', '[cols], dtype')], ['out', 'ptr', c('void*', 'out_dtype elements')],
  ['rows', 'i32'], ['cols', 'i32'], ['eps', 'f32'], ['dtype', 'i32'], ['outDtype', 'i32', note('2 float32; 0 / 1: rounded to bf16 / fp16 (a GEMM\'s activations)')], ['pad', 'i32'],
], `tidarc_op_rmsnorm: out[r, :] = w * (x[r, :] * rsqrt(mean(x[r, :]^2) + eps)); out may be x
(float32 out only). Used for the layer norms (cols = hidden; out 16-bit when only GEMMs read
it) and Qwen3's per-head q/k norms (rows = T * heads, cols = head_dim).  grid (rows), block 256.`);
export const MATMUL = schema('TidarcMatmulArgs', [
  ['x', 'ptr', c('const void*', '[*, k], x_dtype')], ['w', 'ptr', c('const void*', '[n, k], dtype (HF layout [out_features, in_features])')],
  ['bias', 'ptr', c('const float*', '[n] or null')], ['rowIds', 'ptr', c('const int32_t*', '[rows] or null')], ['out', 'ptr', c('float*', '[rows, n]')],
  ['rows', 'i32'], ['n', 'i32'], ['k', 'i32'], ['dtype', 'i32'], ['accumulate', 'i32'], ['xDtype', 'i32', note('2 float32, 0 / 1 bf16 / fp16 activations')],
], `tidarc_op_matmul: out[r, n] = sum_k x[row(r), k] * w[n, k] + bias[n] (+ out[r, n] when
accumulate), row(r) = row_ids ? row_ids[r] : r. Each output element is summed by ONE thread
in k order, then the bias, then the old out: a row's result does not depend on \`rows\`
(greedy TiDAR == AR relies on it).  grid (ceil(n / 64), ceil(rows / 16)), block 256.`);
export const SILU_MUL = schema('TidarcSiluMulArgs', [
  ['gate', 'ptr', c('const float*')], ['up', 'ptr', c('const float*')], ['out', 'ptr', c('void*', 'out_dtype elements')], ['count', 'i64'],
  ['outDtype', 'i32', note('2 float32; 0 / 1: rounded to bf16 / fp16, as the GEMM\'s SwiGLU epilogue')], ['pad', 'i32'],
], `tidarc_op_silu_mul: out[i] = silu(gate[i]) * up[i]; out may be gate (float32 out only).
grid (ceil(count / 256)), block 256.`);
export const GELU = schema('TidarcGeluArgs', [
  ['x', 'ptr', c('const float*')], ['out', 'ptr', c('void*', 'out_dtype elements')], ['count', 'i64'], ['outDtype', 'i32', note('2 float32; 0 / 1 bf16 / fp16')], ['pad', 'i32'],
], `tidarc_op_gelu: out[i] = gelu(x[i]), the tanh form (torch's gelu(approximate='tanh'));
out may be x (float32 out only).  grid (ceil(count / 256)), block 256.`);
export const ROPE_PACK = schema('TidarcRopePackArgs', [
  ['q', 'ptr', c('const float*')], ['k', 'ptr', c('const float*')], ['v', 'ptr', c('const float*')], ['positions', 'ptr', c('const int32_t*', '[rows]')],
  ['invFreq', 'ptr', c('const float*', '[head_dim / 2], scaling already applied')], ['qOut', 'ptr', c('uint16_t*')], ['kOut', 'ptr', c('uint16_t*')], ['vOut', 'ptr', c('uint16_t*')],
  ['rows', 'i32'], ['qHeads', 'i32'], ['kvHeads', 'i32'], ['headDim', 'i32'], ['outDtype', 'i32'],
  ['normDtype', 'i32', note('q_norm and k_norm\'s dtype (0 bf16, 1 fp16, 2 float32)')], ['eps', 'f32', note('the norms\' epsilon')], ['pad', 'i32'],
  ['qNorm', 'ptr', c('const void*', '[head_dim], norm_dtype, or null: no q norm')], ['kNorm', 'ptr', c('const void*', '[head_dim], norm_dtype, or null: no k norm')],
], `tidarc_op_rope_pack: RoPE at per-token positions on q [rows, q_heads, head_dim] and
k [rows, kv_heads, head_dim] (rotate-half pairs (i, i + head_dim/2); angle = the float32
product position * inv_freq[i]), then q, k and v rounded to the model dtype (out_dtype 0 bf16
or 1 fp16, round to nearest even) into q_out, k_out, v_out: the attention kernels' q and
in-step K/V. With q_norm (k_norm), each q (k) head row is first RMS-normed as tidarc_op_rmsnorm
does with rows = rows * heads, cols = head_dim: the float64 sum of its squares in that kernel's
256-lane tree order (bitwise its 1 / sqrt, for every row count), then norm[i] * (x[i] * inv);
q and k are only read. q_heads + kv_heads <= 256 with a norm.  grid (rows), block 128.`);
export const TO_FLOAT = schema('TidarcToFloatArgs', [['x', 'ptr', c('const uint16_t*')], ['out', 'ptr', c('float*')], ['count', 'i64'], ['dtype', 'i32'], ['pad', 'i32']],
  `tidarc_op_to_float: out[i] = float(x[i]) for 16-bit bits of dtype (0 bf16, 1 fp16).
grid (ceil(count / 256)), block 256.`);
export const KV_COMMIT = schema('TidarcKvCommitArgs', [
  ['kStep', 'ptr', c('const uint16_t*')], ['vStep', 'ptr', c('const uint16_t*')], ['kCache', 'ptr', c('uint16_t*')], ['vCache', 'ptr', c('uint16_t*')],
  ['from', 'i32'], ['count', 'i32'], ['slot', 'i32'], ['kvHeads', 'i32'], ['capacity', 'i32'], ['headDim', 'i32'],
], `tidarc_op_kv_commit: rows [from, from + count) of in-step K and V ([*, kv_heads, head_dim])
into cache slots [slot, slot + count) of k_cache / v_cache ([kv_heads, capacity, head_dim]),
16-bit elements.  grid (count, kv_heads), block 64.`);
export const ROW_STATS = schema('TidarcRowStatsArgs', [
  ['logits', 'ptr', c('const float*')], ['argmax', 'ptr', c('int32_t*')], ['maxLogit', 'ptr', c('float*')], ['lse', 'ptr', c('float*')], ['rows', 'i32'], ['cols', 'i32'],
], `tidarc_op_row_stats: per row of logits [rows, cols]: argmax (first maximum; a NaN counts as
the maximum), the maximum and the natural-log log-sum-exp.  grid (rows), block 256.`);
/**
 * The sampling setup in device memory, not in a launch argument: a captured step graph reads
 * each step's values from the block its upload fills, so one graph per step kind and bucket
 * serves every request's temperature, top-k, top-p, seed and beta.
 */
export const SAMPLE_PARAMS = schema('TidarcSampleParams', [
  ['step', 'i64', c('uint64_t', 'the RNG counter of this step')], ['seed', 'i64', c('uint64_t')],
  ['temperature', 'f32', note('> 0 (tidarc_op_sample)')], ['topP', 'f32', note('(0, 1]; 1 = off')], ['topK', 'i32', note('0 = off')],
  ['beta', 'f32', note('beta * logits + (1 - beta) * mix_logits, where mix_logits is given')],
], `TidarcSampleParams: a request's sampling setup and its step's RNG counter, in DEVICE memory
(the step's upload writes it): tidarc_op_sample and tidarc_op_verify read it through a
pointer, so a captured step graph serves every setup.`);
export const SAMPLE = schema('TidarcSampleArgs', [
  ['logits', 'ptr', c('const float*', '[rows, vocab]')], ['mixLogits', 'ptr', c('const float*', '[rows, vocab] or null: beta * logits + (1 - beta) * mix_logits')],
  ['drafts', 'ptr', c('const int32_t*', '[rows] or null; < 0: a row without a draft')], ['params', 'ptr', c('const TidarcSampleParams*', '[1]: temperature, top-k, top-p, seed, beta, RNG step')],
  ['tokens', 'ptr', c('int32_t*', '[rows]')], ['accepted', 'ptr', c('int32_t*', '[rows]: 1 where the draft stood')],
  ['rows', 'i32'], ['vocab', 'i32'], ['neverEmit', 'i32', note('-1 = none; else its logit counts as -inf (the model\'s mask token: fixed per model)')], ['pad', 'i32'],
], `tidarc_op_sample: per row, p = softmax(logit / temperature), then top-k, then top-p over what
top-k kept (the smallest set of largest logits whose mass reaches top_p; ties to the lower
index), renormalised. A row with a draft d accepts it with probability p(d) (tokens = d,
accepted = 1), else draws from p without d (the residual); a row without one draws from p.
Random numbers: Philox4x32-10 keyed by seed, counter (vocabulary index, row, step).
grid (rows), block 256.`);
export const ACCEPT = schema('TidarcAcceptArgs', [
  ['tokens', 'ptr', c('const int32_t*')], ['accepted', 'ptr', c('const int32_t*')], ['emitted', 'ptr', c('int32_t*', '[rows + 1]: the count n, then n tokens')], ['rows', 'i32'], ['pad', 'i32'],
], `tidarc_op_accept: the tokens a verified step makes final, from tidarc_op_sample's rows: n = 1 +
the number of leading accepted rows (at most rows), emitted = n, tokens[0 .. n).  grid (1),
block 32.`);
export const VERIFY = schema('TidarcVerifyArgs', [
  ['logits', 'ptr', c('const float*', '[rows, vocab]')], ['mixLogits', 'ptr', c('const float*', '[rows, vocab] or null: beta * logits + (1 - beta) * mix_logits')],
  ['drafts', 'ptr', c('const int32_t*', '[rows] or null; < 0: a row without a draft')],
  ['tokens', 'ptr', c('int32_t*', '[rows]')], ['accepted', 'ptr', c('int32_t*', '[rows] or null: 1 where the draft is the argmax')],
  ['rowArgmax', 'ptr', c('const int32_t*', '[rows] or null: the argmax already known (lm_head\'s row statistics); logits are not read')],
  ['params', 'ptr', c('const TidarcSampleParams*', '[1] or null: read only with mix_logits (its beta)')],
  ['rows', 'i32'], ['vocab', 'i32'], ['neverEmit', 'i32', note('-1 = none; else its logit counts as -inf')], ['pad', 'i32'],
], `tidarc_op_verify: greedy decoding's tidarc_op_sample: per row the argmax (first maximum) of the
(beta-mixed) logits without never_emit, or row_argmax where given, and whether the row's draft
is that token (accepted = 1), so tidarc_op_accept can follow either.  grid (rows), block 256.`);
export const DRAFT_ROWS = schema('TidarcDraftRowsArgs', [
  ['emitted', 'ptr', c('const int32_t*', '[1 + ...]: tidarc_op_accept\'s n first')], ['rowIds', 'ptr', c('int32_t*', '[count]')],
  ['count', 'i32'], ['stride', 'i32'], ['offset', 'i32'], ['pad', 'i32'],
], `tidarc_op_draft_rows: row_ids[s] = stride * emitted[0] + offset + s for s < count: the rows of
the block that a verified step's n accepted tokens select (TiDAR's next drafts), chosen on the
device so a captured step needs no host round trip.  grid (1), block 32.`);
export const NEXT_DRAFTS = schema('TidarcNextDraftsArgs', [
  ['emitted', 'ptr', c('const int32_t*', '[1 + ...]: tidarc_op_accept\'s n first')],
  ['rowArgmax', 'ptr', c('const int32_t*', 'lm_head\'s row statistics over the verify rows and every candidate')],
  ['rowLse', 'ptr', c('const float*', 'the same rows\' lse')],
  ['tokens', 'ptr', c('int32_t*', '[count]')], ['lse', 'ptr', c('float*', '[count]')],
  ['count', 'i32'], ['stride', 'i32'], ['offset', 'i32'], ['pad', 'i32'],
], `tidarc_op_next_drafts: with i = stride * emitted[0] + offset + s, tokens[s] = row_argmax[i] and
lse[s] = row_lse[i] for s < count: the next drafts picked, after acceptance, from one lm_head
pass over the verify rows and every n's candidate rows (stride = count, offset = verify rows -
count), so a greedy step reads lm_head's weights once.  grid (1), block 32.`);
/** One layer's row of tidarc_op_kv_commit_layers' table (device memory, filled once per step workspace). */
export const KV_COMMIT_LAYER = schema('TidarcKvCommitLayer', [
  ['kStep', 'ptr', c('const uint16_t*', '[*, kv_heads, head_dim]: the step\'s in-step K')], ['vStep', 'ptr', c('const uint16_t*')],
  ['kCache', 'ptr', c('uint16_t*', '[kv_heads, capacity, head_dim]: the layer\'s K cache')], ['vCache', 'ptr', c('uint16_t*')],
], `TidarcKvCommitLayer: a layer's in-step K/V and K/V cache addresses, one entry a layer of the
table tidarc_op_kv_commit_layers reads in DEVICE memory (the runner fills it once: the buffers
live as long as the runner, as the captured step graphs that read them).`);
export const KV_COMMIT_LAYERS = schema('TidarcKvCommitLayersArgs', [
  ['table', 'ptr', c('const TidarcKvCommitLayer*', '[layers]')],
  ['count', 'ptr', c('const int32_t*', '[1]: rows to commit, at most max_count')], ['slot', 'ptr', c('const int32_t*', '[1]: the first cache slot')],
  ['layers', 'i32'], ['maxCount', 'i32'], ['kvHeads', 'i32'], ['capacity', 'i32'], ['headDim', 'i32'], ['pad', 'i32'],
], `tidarc_op_kv_commit_layers: for every layer l of table, tidarc_op_kv_commit of its in-step
rows [0, *count) into its cache slots [*slot, *slot + *count), count and slot read from device
memory (a captured step commits what its own acceptance decided, at the prefix length its
upload set): a decode step's whole commit in one launch.  grid (max_count, kv_heads, layers),
block 64.`);
// The attention argument's arrays and sizes (ATTENTION_ARRAYS, ATTENTION_SCALARS, their dims) are
// codegen/abi-fields.ts's: the manifest describes the same fields, and codegen cannot import the runtime.
export {
  ATTENTION_ARRAYS, ATTENTION_DIMS, ATTENTION_SCALARS, type AttentionArrayField, type AttentionArraySpec, type AttentionDim, type AttentionDims,
  type AttentionScalarField, attentionArrayFields, attentionElements, cFieldName, splitOnly,
} from '../../codegen/abi-fields.js';

/** An array's C pointer type: const when the kernel only reads it; void for the variant's 16-bit dtype. */
function arrayDecl(spec: AttentionArraySpec): string {
  const base = spec.elem === 'u16' ? 'void' : spec.elem === 'i32' ? 'int32_t' : 'float';
  return `${spec.role === 'in' || spec.role === 'cache' ? 'const ' : ''}${base}*`;
}

/** The attention kernels' argument (templates/common/tidarc_abi.h): the arrays, then the sizes. */
export const ATTENTION = schema<AttentionArrayField | AttentionScalarField>('TidarcAttentionArgs', [
  ...attentionArrayFields().map((f): FieldSchema<AttentionArrayField> => [f, 'ptr', c(arrayDecl(ATTENTION_ARRAYS[f]))]),
  ...(Object.entries(ATTENTION_SCALARS) as [AttentionScalarField, { readonly note?: string }][]).map(([f, spec]): FieldSchema<AttentionScalarField> =>
    (spec.note === undefined ? [f, 'i32'] : [f, 'i32', note(spec.note)])),
], `Layouts (row-major, elements of the variant's dtype unless noted):
  q        [batch, n, q_heads, head_dim]        in-step queries, RoPE applied
  k_cache  [batch, kv_heads, cache_capacity, head_dim]   committed keys
  v_cache  [batch, kv_heads, cache_capacity, head_dim]
  k_step   [batch, n, kv_heads, head_dim]       in-step keys (drafts and mask tokens)
  v_step   [batch, n, kv_heads, head_dim]
  prefix_len int32 [batch]                      L_b <= cache_capacity
  o        [batch, n, q_heads, head_dim]
  lse      float [batch, n, q_heads]            natural-log sum of exp of the scaled
                                                scores; -inf for a row that sees no key
  workspace float, num_splits * batch * n * q_heads * (head_dim + 1), when num_splits > 1
  split_counters int32 [num_splits, batch, n, q_heads]  when num_splits > 1: all 0 before
                                                the first launch; each launch leaves them 0`);

/** Return codes of the CPU entry points (tidarc_abi.h). */
export const RETURN_CODES: readonly { readonly name: string; readonly value: number; readonly note?: string }[] = [
  { name: 'TIDARC_OK', value: 0 },
  { name: 'TIDARC_ERR_ARGS', value: 1, note: 'a null pointer, batch < 1, splits < 1, ...' },
  { name: 'TIDARC_ERR_PREFIX', value: 2, note: 'some prefix_len[b] < 0 or > cache_capacity' },
  { name: 'TIDARC_ERR_WORKSPACE', value: 3, note: 'num_splits > 1 without a workspace' },
];

/**
 * The generated GEMMs' argument (templates/cuda/tidarc_gemm_abi.h, TIDARC_GEMM_ABI_VERSION 6: x is
 * 16-bit; split-K summed in the launch on split_counters; 6: the fold-norms fields after it, a
 * producer's normWeight / normOut / normSumsq and a consumer's rowSumsq / sumsqChunks / normCols /
 * normEps, all 0 for a GEMM that neither produces nor consumes a folded RMSNorm: GEMM_NO_NORM).
 */
export const GEMM = schema('TidarcGemmArgs', [
  ['x', 'ptr'], ['w', 'ptr'], ['bias', 'ptr'], ['rowIds', 'ptr'], ['out', 'ptr'], ['out2', 'ptr'], ['out3', 'ptr'], ['workspace', 'ptr'],
  ['tileStats', 'ptr'], ['tileArgmax', 'ptr'], ['rowArgmax', 'ptr'], ['rowMax', 'ptr'], ['rowLse', 'ptr'],
  ['rows', 'i32'], ['accumulate', 'i32'], ['seg1', 'i32'], ['seg2', 'i32'], ['epilogue', 'i32'], ['splitCounters', 'ptr'],
  ['normWeight', 'ptr'], ['normOut', 'ptr'], ['normSumsq', 'ptr'], ['rowSumsq', 'ptr'], ['sumsqChunks', 'i32'], ['normCols', 'i32'], ['normEps', 'f32'],
]);
/** The fold-norms fields of a GEMM that neither writes a folded RMSNorm's input nor scales by one (spread into packStruct(GEMM, ...)). */
export const GEMM_NO_NORM = { normWeight: 0, normOut: 0, normSumsq: 0, rowSumsq: 0, sumsqChunks: 0, normCols: 0, normEps: 0 } as const;

export const ABI_VERSION_ARGS = schema('TidarcAbiVersionArgs', [['out', 'ptr', c('int32_t*', '[1]')]],
  `tidarc_op_abi_version: out[0] = TIDARC_OPS_ABI_VERSION. The runtime reads it before any other
kernel of the module: a module built from other templates would take this header's structs at
other offsets (a kernel cache of another version).  grid (1), block 32.`);

/** The GPU operators of tidarc_ops.cu: kernel `tidarc_op_<name>` takes the struct. */
export const OPS = {
  abi_version: ABI_VERSION_ARGS, embed: EMBED, rmsnorm: RMSNORM, matmul: MATMUL, silu_mul: SILU_MUL, gelu: GELU,
  rope_pack: ROPE_PACK, to_float: TO_FLOAT, kv_commit: KV_COMMIT, row_stats: ROW_STATS,
  sample: SAMPLE, accept: ACCEPT, verify: VERIFY, draft_rows: DRAFT_ROWS, next_drafts: NEXT_DRAFTS, kv_commit_layers: KV_COMMIT_LAYERS,
} as const;
export type OpName = keyof typeof OPS;
/** Structs the kernels read from device memory (not launch arguments). */
export const DEVICE_STRUCTS: readonly StructSchema[] = [SAMPLE_PARAMS, KV_COMMIT_LAYER];
export const OP_SCHEMAS: readonly StructSchema[] = [...DEVICE_STRUCTS, ...Object.values(OPS)];

export function opKernelName(op: OpName): string {
  return `tidarc_op_${op}`;
}

/** Every kernel of tidarc_ops.cu with its argument type (for module builders). */
export function opKernels(): { name: string; argsType: string }[] {
  return (Object.keys(OPS) as OpName[]).map((op) => ({ name: opKernelName(op), argsType: OPS[op].cName }));
}

/** dtype codes of tidarc_ops_abi.h. */
export const DTYPE_CODE = { bf16: 0, fp16: 1, f32: 2 } as const;

export interface Layout {
  readonly offsets: Readonly<Record<string, number>>;
  readonly size: number;
}


export function layoutOf(s: StructSchema): Layout {
  const offsets: Record<string, number> = {};
  let at = 0;
  let align = 1;
  for (const [name, type] of s.fields) {
    const n = SIZE[type];
    at = Math.ceil(at / n) * n;
    offsets[name] = at;
    at += n;
    align = Math.max(align, n);
  }
  return { offsets, size: Math.ceil(at / align) * align };
}

const layouts = new Map<StructSchema, Layout>();

/**
 * The struct's bytes. Every field must be given (pad fields default to 0); a pointer is a
 * non-negative safe integer, an i32 an integer in range, an f32 a number.
 */
export function packStruct<F extends string>(s: StructSchema<F>, values: Readonly<Partial<Record<F, number>>>): Uint8Array {
  let layout = layouts.get(s);
  if (!layout) layouts.set(s, (layout = layoutOf(s)));
  const bytes = new Uint8Array(layout.size);
  const view = new DataView(bytes.buffer);
  for (const [name, type] of s.fields) {
    const v = values[name] ?? (name === 'pad' ? 0 : undefined);
    if (v === undefined) throw new RangeError(`${s.cName}.${name} is missing`);
    const at = layout.offsets[name]!;
    if (type === 'f32') view.setFloat32(at, v, true);
    else if (type === 'i32') {
      if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`${s.cName}.${name} = ${v} is not a 32-bit integer`);
      view.setInt32(at, v, true);
    } else {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${s.cName}.${name} = ${v} is not a device address or count`);
      view.setBigUint64(at, BigInt(v), true);
    }
  }
  return bytes;
}
