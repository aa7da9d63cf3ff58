/**
 * The attention kernels' argument (TidarcAttentionArgs) as data: the arrays it points at, its
 * int32 sizes and their dims. The one source of both what the runtime packs and renders
 * (runtime/cuda/op-abi.ts re-exports these and builds the C struct, the headers and the Python
 * packing from them) and what a compile's manifest says about the argument (manifestAbiFields:
 * manifest.json's abi.fields). It sits in codegen, below the runtime, because the manifest is
 * written here and codegen cannot import the runtime. Pure: no I/O.
 */
import type { AbiField } from './manifest.js';

/** A dimension of an attention array: the call's batch, cache capacity and splits, the variant's n (in-step tokens), heads and head dim. */
export type AttentionDim = 'batch' | 'n' | 'qHeads' | 'kvHeads' | 'headDim' | 'cacheCapacity' | 'numSplits';
export type AttentionDims = Readonly<Record<AttentionDim, number>>;
export const ATTENTION_DIMS: readonly AttentionDim[] = ['batch', 'n', 'qHeads', 'kvHeads', 'headDim', 'cacheCapacity', 'numSplits'];

/**
 * An array the attention argument points at. elem: u16 = 16-bit elements of the variant's dtype.
 * role: in = the kernel reads it; cache = reads slots [0, prefix_len[b]) of it; out = writes it;
 * scratch = the split-KV workspace, only when num_splits > 1; counters = the split-KV CTAs'
 * id and arrival counters, only when num_splits > 1: zero when the host first passes them, and every
 * launch leaves them zero (the CTAs that count last reset them: attention-grid.ts), so one zeroed
 * allocation serves every later launch and graph replay. extent: its row-major dims
 * ('headDim + 1': a row of head dim floats and its lse).
 */
export interface AttentionArraySpec {
  readonly elem: 'u16' | 'i32' | 'f32';
  readonly role: 'in' | 'cache' | 'out' | 'scratch' | 'counters';
  readonly extent: readonly (AttentionDim | 'headDim + 1')[];
  /** The manifest's note on the field (manifestAbiFields). */
  readonly summary?: string;
}

/**
 * How every host fills the attention argument, in declaration order: the CPU addon reads the
 * JavaScript arrays of these names (native.ts's NativeAttentionArgs is derived from it), the
 * emulator and GPU harnesses size, read and write them (tidarc_attention_args.h, generated).
 */
export const ATTENTION_ARRAYS = {
  q: { elem: 'u16', role: 'in', extent: ['batch', 'n', 'qHeads', 'headDim'], summary: 'in-step queries, RoPE applied' },
  kCache: { elem: 'u16', role: 'cache', extent: ['batch', 'kvHeads', 'cacheCapacity', 'headDim'] },
  vCache: { elem: 'u16', role: 'cache', extent: ['batch', 'kvHeads', 'cacheCapacity', 'headDim'] },
  kStep: { elem: 'u16', role: 'in', extent: ['batch', 'n', 'kvHeads', 'headDim'] },
  vStep: { elem: 'u16', role: 'in', extent: ['batch', 'n', 'kvHeads', 'headDim'] },
  prefixLen: { elem: 'i32', role: 'in', extent: ['batch'], summary: 'cached prefix length L_b <= cacheCapacity' },
  o: { elem: 'u16', role: 'out', extent: ['batch', 'n', 'qHeads', 'headDim'] },
  lse: { elem: 'f32', role: 'out', extent: ['batch', 'n', 'qHeads'], summary: 'natural log; -inf for a row that sees no key' },
  workspace: { elem: 'f32', role: 'scratch', extent: ['numSplits', 'batch', 'n', 'qHeads', 'headDim + 1'], summary: 'only when splits > 1' },
  // The split schedule's id counter and one count per row group (attention-grid.ts): G + 1 <= 2 rows
  // (a row group holds at least one output row) <= splits x rows, whatever the tiling.
  splitCounters: {
    elem: 'i32', role: 'counters', extent: ['numSplits', 'batch', 'n', 'qHeads'],
    summary: 'only when splits > 1; zero before the first launch, and every launch leaves them zero',
  },
} as const satisfies Record<string, AttentionArraySpec>;
export type AttentionArrayField = keyof typeof ATTENTION_ARRAYS;

/** Roles of the arrays a host passes only when num_splits > 1 (else null). */
export const splitOnly = (role: AttentionArraySpec['role']): boolean => role === 'scratch' || role === 'counters';

/** The attention argument's int32 fields; `dim`: the size a host sets it to (none: the host's choice); `note`: the header's, `summary`: the manifest's. */
export const ATTENTION_SCALARS = {
  batch: { dim: 'batch' },
  cacheCapacity: { dim: 'cacheCapacity' },
  numSplits: { dim: 'numSplits', summary: 'split-KV count >= 1; grid.z' },
  numThreads: { note: 'CPU backend only; 0 = all hardware threads (more are clamped to it)', summary: 'CPU backend threads; 0 = all' },
} as const satisfies Record<string, { readonly dim?: AttentionDim; readonly note?: string; readonly summary?: string }>;
export type AttentionScalarField = keyof typeof ATTENTION_SCALARS;

export const attentionArrayFields = (): AttentionArrayField[] => Object.keys(ATTENTION_ARRAYS) as AttentionArrayField[];

/** Elements of an attention array for a call's dims. */
export function attentionElements(field: AttentionArrayField, dims: AttentionDims): number {
  return ATTENTION_ARRAYS[field].extent.reduce((n, d) => n * (d === 'headDim + 1' ? dims.headDim + 1 : dims[d]), 1);
}


/** The C name of a field: camelCase -> snake_case, our `pad` -> `pad_`. */
export function cFieldName(name: string): string {
  return name === 'pad' ? 'pad_' : name.replace(/[A-Z]/g, (ch) => `_${ch.toLowerCase()}`);
}

/** What the manifest calls a dim: the in-step tokens are `steps`, the split count `splits`. */
const MANIFEST_DIM: Readonly<Record<AttentionDim | 'headDim + 1', string>> = {
  batch: 'batch', n: 'steps', qHeads: 'qHeads', kvHeads: 'kvHeads', headDim: 'headDim', cacheCapacity: 'cacheCapacity', numSplits: 'splits', 'headDim + 1': '(headDim + 1)',
};
const MANIFEST_TYPE: Readonly<Record<AttentionArraySpec['elem'], string>> = { u16: 'dtype*', i32: 'int32*', f32: 'float*' };

/** The argument's fields as manifest.json describes them (abi.fields), in declaration order. */
export function manifestAbiFields(): AbiField[] {
  const arrays = attentionArrayFields().map((f): AbiField => {
    const spec: AttentionArraySpec = ATTENTION_ARRAYS[f];
    const dims = spec.extent.map((d) => MANIFEST_DIM[d]);
    // The workspace is one flat allocation: its extent is a product, not a shape.
    const shape = `[${dims.join(spec.role === 'scratch' ? ' * ' : ', ')}]`;
    return { name: cFieldName(f), type: MANIFEST_TYPE[spec.elem], shape, ...(spec.summary === undefined ? {} : { note: spec.summary }) };
  });
  const scalars = (Object.entries(ATTENTION_SCALARS) as [AttentionScalarField, { readonly summary?: string }][]).map(([f, spec]): AbiField =>
    ({ name: cFieldName(f), type: 'int32', ...(spec.summary === undefined ? {} : { note: spec.summary }) }));
  return [...arrays, ...scalars];
}
