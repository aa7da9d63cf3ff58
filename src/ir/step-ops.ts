/**
 * The vocabulary of step graphs (step-graph.ts): named activations with a per-token width and
 * element type, the ops over them and the weights they read (checkpoint tensor names), and
 * what a family's layer builder writes with. Pure.
 */
import type { ModelSpec } from './model.js';

export type TensorType = 'f32' | 'u16' | 'i32' | 'f64';

/** Bytes of one element of a tensor type (u16: the model's 16-bit dtype). */
export function tensorElemBytes(type: TensorType): number {
  return type === 'u16' ? 2 : type === 'f64' ? 8 : 4;
}

/** An activation: `width` elements per token of the step. u16 = the model's 16-bit dtype. */
export interface TensorDecl {
  readonly name: string;
  readonly width: number;
  readonly type: TensorType;
}

/** One part of a (possibly fused) linear layer: its checkpoint weight, bias and output. */
export interface LinearPart {
  readonly weight: string;
  readonly bias?: string;
  /** Absent when an epilogue writes the fused result instead (GPU SwiGLU). */
  readonly out?: string;
}

interface Layered {
  /** The decoder layer the op belongs to (absent: before or after the layers). */
  readonly layer?: number;
}

/**
 * The ops. Every linear runs over the step's T rows (M = T). `weight` of a fused linear is the
 * name the rewrite gave the concatenated matrix; `parts` are the checkpoint's matrices.
 */
export type StepOp = Layered & (
  | { readonly kind: 'embed'; readonly ids: string; readonly table: string; readonly out: string }
  | { readonly kind: 'rmsnorm'; readonly x: string; readonly weight: string; readonly out: string }
  /** Per-head RMSNorm in place (Qwen3's q_norm / k_norm). */
  | { readonly kind: 'headNorm'; readonly x: string; readonly weight: string; readonly heads: number }
  | {
    readonly kind: 'linear'; readonly role: string; readonly x: string; readonly weight: string; readonly bias?: string;
    readonly parts: readonly LinearPart[];
    /** out += x W^T (a residual add folded into the GEMM). */
    readonly accumulate?: boolean;
    /** silu(gate) * up in the epilogue over gate | up rows interleaved in blocks of `interleave`. */
    readonly swiglu?: { readonly out: string; readonly interleave: number };
    /**
     * A folded RMSNorm's producer (GPU, step-fold-norms.ts): the epilogue also writes
     * out = round16(weight * y) of the accumulated y and, per row, the float64 sums of y^2 by
     * 64-column chunk into `sumsq`.
     */
    readonly normOut?: FoldedNormOut;
    /** A folded RMSNorm's consumer: x is the producer's norm out, each output row scaled by the norm's 1 / rms from `sumsq`. */
    readonly rowScale?: RowScale;
  }
  | { readonly kind: 'rope'; readonly x: string; readonly heads: number }
  /** Pack float32 to the model's 16-bit dtype. */
  | { readonly kind: 'to16'; readonly x: string; readonly out: string }
  | { readonly kind: 'toFloat'; readonly x: string; readonly out: string }
  /**
   * RoPE of q and k and the 16-bit pack of q, k, v in one op (the GPU's rope_pack). With `norm`,
   * first the per-head RMSNorm of q and k with those weights (Qwen3's q_norm / k_norm, the
   * model's rmsNormEps): the headNorms it replaces, without writing the normed q and k back.
   */
  | {
    readonly kind: 'ropePack'; readonly q: string; readonly k: string; readonly v: string; readonly qOut: string; readonly kOut: string; readonly vOut: string;
    readonly norm?: { readonly q: string; readonly k: string };
  }
  /** Every launch of the graph's schedule over this layer's q/k/v; the step's K/V stay in k/v for the commit. */
  | { readonly kind: 'attention'; readonly layer: number; readonly q: string; readonly k: string; readonly v: string; readonly out: string; readonly lse: string }
  | { readonly kind: 'swiglu'; readonly gate: string; readonly up: string; readonly out: string }
  | { readonly kind: 'gelu'; readonly x: string; readonly out: string }
  /** x += y. */
  | { readonly kind: 'add'; readonly x: string; readonly y: string }
);

/** What a residual GEMM writes for a folded RMSNorm (the norm's weight, its old out, the row sums of squares). */
export interface FoldedNormOut {
  readonly weight: string;
  readonly out: string;
  readonly sumsq: string;
}

/** A GEMM input's folded RMSNorm: the producer's row sums of squares (the normed width is the GEMM's K). */
export interface RowScale {
  readonly sumsq: string;
}

/** Columns per float64 sum of squares of a folded RMSNorm (tidarc_gemm_abi.h: norm_sumsq). */
export const NORM_SUMSQ_CHUNK = 64;

export type OpKind = StepOp['kind'];
export type OpOf<K extends OpKind> = Extract<StepOp, { kind: K }>;

/** The step's K and V of a layer: kept until the decoder commits the accepted rows. */
export const stepK = (layer: number): string => `k_step.${layer}`;
export const stepV = (layer: number): string => `v_step.${layer}`;
export const layerPrefix = (layer: number): string => `model.layers.${layer}.`;

/** What a family's layer builder writes with. */
export interface LayerBuilder {
  readonly spec: ModelSpec;
  readonly layer: number;
  /** The checkpoint name of this layer's tensor ('self_attn.q_proj.weight' -> 'model.layers.3.self_attn.q_proj.weight'). */
  w(relative: string): string;
  /** Declares an activation (once; the same name must keep its width and type) and returns its name. */
  tensor(name: string, width: number, type?: TensorType): string;
  op(op: StepOp): void;
}

/** The activations an op reads or writes. */
export function opTensors(op: StepOp): string[] {
  switch (op.kind) {
    case 'embed': return [op.ids, op.out];
    case 'rmsnorm': return [op.x, op.out];
    case 'headNorm': case 'rope': return [op.x];
    case 'linear': return [
      op.x, ...op.parts.flatMap((p) => (p.out ? [p.out] : [])), ...(op.swiglu ? [op.swiglu.out] : []),
      ...(op.normOut ? [op.normOut.out, op.normOut.sumsq] : []), ...(op.rowScale ? [op.rowScale.sumsq] : []),
    ];
    case 'to16': case 'toFloat': case 'gelu': return [op.x, op.out];
    case 'ropePack': return [op.q, op.k, op.v, op.qOut, op.kOut, op.vOut];
    case 'attention': return [op.q, op.k, op.v, op.out, op.lse];
    case 'swiglu': return [op.gate, op.up, op.out];
    case 'add': return [op.x, op.y];
  }
}

/** The weights an op reads (checkpoint names; a fused linear's own name first). */
export function opWeights(op: StepOp): string[] {
  switch (op.kind) {
    case 'embed': return [op.table];
    case 'rmsnorm': case 'headNorm': return [op.weight];
    case 'ropePack': return op.norm ? [op.norm.q, op.norm.k] : [];
    case 'linear': return [op.weight, ...(op.bias ? [op.bias] : []), ...op.parts.flatMap((p) => [p.weight, ...(p.bias ? [p.bias] : [])]), ...(op.normOut ? [op.normOut.weight] : [])];
    default: return [];
  }
}
