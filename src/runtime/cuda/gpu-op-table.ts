/**
 * The cuda backend's op table: each op of the rewritten (fused) step graph as launches of the
 * GPU operators (tidarc_ops.cu), the generated GEMMs and the compiled attention kernels.
 * There is no standalone rope, to16 or add: the rewrite folds them into rope_pack and the
 * GEMMs (step-rewrite.ts), and a graph that still has one is refused by the executor. Each
 * tensor's element type is the graph's (`types`): an op whose output the graph declares 'u16'
 * stores it in the model's dtype, and the GEMMs read only such 16-bit activations.
 */
import type { ModelSpec } from '../../ir/model.js';
import type { OpOf, TensorType } from '../../ir/step-ops.js';
import type { OpTable } from '../../ir/step-exec.js';
import { TidarcError } from '../../errors.js';
import type { ResolvedLaunch } from '../model/step.js';
import type { DeviceBuffer } from './device.js';
import { AR_VARIANT } from '../../codegen/variant-name.js';
import type { StepGraph } from '../../ir/step-graph.js';
import { type GpuRewriteOptions, gpuRewriteOptions, rewriteForGpu } from '../../ir/step-rewrite.js';
import { passGraph } from '../model/step.js';
import type { GemmNormOut, GemmRowScale, GpuGemms } from './gpu-gemm.js';
import type { GpuDtype, GpuMatrix, GpuOps } from './gpu-ops.js';
import type { GpuWeights } from './gpu-weights.js';

/** One pass on the device: buffers, per-token widths and element types by tensor name, and the launches. */
export interface GpuPass {
  readonly bufs: ReadonlyMap<string, DeviceBuffer>;
  readonly widths: ReadonlyMap<string, number>;
  readonly types: ReadonlyMap<string, TensorType>;
  readonly tokens: number;
  readonly launches: readonly ResolvedLaunch[];
}

export interface GpuBackend {
  readonly spec: ModelSpec;
  readonly ops: GpuOps;
  readonly gemms: GpuGemms;
  readonly weights: GpuWeights;
  /** Every launch of the pass's schedule for one layer (the runner's attention, with its commits between prefill chunks). */
  attention(op: OpOf<'attention'>, p: GpuPass): void;
}

/** A linear's weight on the device: the whole (fused) matrix, its bias, and per part its matrix, bias and output. */
export interface GpuLinear {
  readonly whole: GpuMatrix;
  readonly bias: DeviceBuffer | null;
  readonly parts: readonly (readonly [GpuMatrix, DeviceBuffer | null, DeviceBuffer])[];
}

/** A tensor's element type on the device: 'u16' is the model's 16-bit dtype. */
export function gpuDtype(spec: Pick<ModelSpec, 'dtype'>, type: TensorType | undefined): GpuDtype {
  return type === 'u16' ? spec.dtype : 'f32';
}

/**
 * One linear layer over `rows` rows of x (xDtype; default the weight's dtype: the cuda step
 * graph stores every linear input it can, the lm_head's hidden included, in the model's 16-bit
 * dtype): the generated GEMM of `role` when the compile made one for this weight and x is in its
 * 16-bit type (one launch for a fused matrix, its parts written to their own buffers), else
 * tidarc_op_matmul per part (a shape the GEMMs refuse, weights not in the model's 16-bit type,
 * or a float32 input no op could store 16-bit).
 */
export function runLinear(gemms: GpuGemms, ops: GpuOps, role: string, x: DeviceBuffer, rows: number, w: GpuLinear, o: LinearOptions = {}): void {
  const xDtype = o.xDtype ?? w.whole.dtype;
  if (xDtype === w.whole.dtype && gemms.covers(role, w.whole)) {
    const ends = w.parts.map((_, i) => w.parts.slice(0, i + 1).reduce((n, [m]) => n + m.rows, 0));
    const segments: [number, number] = [ends[0]!, ends[1] ?? w.whole.rows];
    const { xDtype: _, ...rest } = o;
    gemms.run(role, { x, rows, w: w.whole, bias: w.bias, outs: w.parts.map(([, , out]) => out), segments, ...rest });
    return;
  }
  // The fold's epilogues exist only in the generated GEMMs: a folded graph on the SIMT fallback would skip its norm.
  if (o.normOut || o.rowScale) throw new TidarcError('runtime', `${role}: a folded RMSNorm needs the generated GEMM, which does not run ${w.whole.rows}x${w.whole.cols} ${w.whole.dtype} (the fold is decided per role: gpuRewriteOptions)`, { field: 'role', value: role });
  const { normOut: _n, rowScale: _r, ...plain } = o;
  for (const [m, bias, out] of w.parts) ops.matmul(x, m, bias, out, rows, { ...plain, xDtype });
}

/** How runLinear runs a linear: a residual add, gathered rows, x's type, a folded RMSNorm's producer or consumer. */
export interface LinearOptions {
  readonly accumulate?: boolean;
  readonly rowIds?: DeviceBuffer;
  readonly xDtype?: GpuDtype;
  readonly normOut?: GemmNormOut;
  readonly rowScale?: GemmRowScale;
}

/** The lm_head's row scale when the graph folded the final norm into it (spread into runLinear's or GemmLaunch's options). */
export function headRowScale(graph: Pick<StepGraph, 'head' | 'tensors'>, bufs: ReadonlyMap<string, DeviceBuffer>, spec: Pick<ModelSpec, 'rmsNormEps'>): { rowScale?: GemmRowScale } {
  const r = graph.head.rowScale;
  if (!r) return {};
  return { rowScale: { sumsq: bufs.get(r.sumsq)!, cols: graph.tensors.find((t) => t.name === graph.head.x)!.width, eps: spec.rmsNormEps } };
}

/** A runner's graph options and whether its norms fold (and if not, why). */
export interface GpuGraphChoice {
  readonly options: GpuRewriteOptions;
  readonly foldNorms: boolean;
  readonly foldNormsWhy?: string;
}

/**
 * The rewrite options a runner builds its graphs with: the SwiGLU interleave the weights were
 * uploaded with, and fold-norms where `want` (default true) and the load folds (a bf16 model
 * compiled with the flags, GpuWeights.foldNorms, its float32 norms uploaded), narrowed to the
 * roles whose kernels this runner launches have the flag and run that role's weights in every
 * layer (a role on the SIMT fallback or an unflagged sm_90a unit never folds).
 */
export function gpuGraphChoice(spec: ModelSpec, gemms: GpuGemms, weights: GpuWeights, want = true): GpuGraphChoice {
  const options = gpuRewriteOptions(weights.gateUpInterleave, undefined);
  const off = (why: string): GpuGraphChoice => ({ options, foldNorms: false, foldNormsWhy: why });
  if (!want) return off('switched off (GpuRunnerOptions.foldNorms: false)');
  if (!weights.foldNorms) return off(weights.foldNormsWhy ?? 'the weights were uploaded without fold-norms');
  const plain = rewriteForGpu(passGraph(spec, 1, { kind: 'step', variant: AR_VARIANT }), options);
  const types = new Map(plain.tensors.map((t) => [t.name, t.type]));
  const runs = (role: string, weight: string): boolean => weights.matrices.has(weight) && gemms.covers(role, weights.matrices.get(weight)!);
  const covered = (role: string): boolean => plain.ops.every((op) => op.kind !== 'linear' || op.role !== role || (types.get(op.x) === 'u16' && runs(role, op.weight)))
    && (role !== 'lm_head' || runs(role, plain.head.weight));
  const flags = gemms.foldFlags();
  const has = (flag: 'normOut' | 'rowScale') => (role: string): boolean => flags.get(role)?.[flag] === true && covered(role);
  const folding = { normOut: weights.foldNorms.normOut.filter(has('normOut')), rowScale: weights.foldNorms.rowScale.filter(has('rowScale')) };
  const folded = rewriteForGpu(passGraph(spec, 1, { kind: 'step', variant: AR_VARIANT }), { ...options, foldNorms: folding });
  if (folded.ops.length === plain.ops.length) return off(`no RMSNorm sits between GEMMs this device runs with the fold-norms epilogues (norm out: ${folding.normOut.join(', ') || 'none'}; row scale: ${folding.rowScale.join(', ') || 'none'})`);
  const missing = folded.ops.flatMap((op) => (op.kind === 'linear' && op.normOut && !weights.normWeights?.has(op.normOut.weight) ? [op.normOut.weight] : []));
  if (missing.length > 0) return off(`the weights were uploaded without the float32 norm weights (${missing[0]}${missing.length > 1 ? `, ${missing.length - 1} more` : ''})`);
  return { options: { ...options, foldNorms: folding }, foldNorms: true };
}

export function gpuOpTable(b: GpuBackend): OpTable<GpuPass> {
  const { spec, ops, gemms, weights } = b;
  const D = spec.headDim;
  const M = (name: string): GpuMatrix => {
    const m = weights.matrices.get(name);
    if (!m) throw new TidarcError('runtime', 'the cuda step graph reads a weight that was not uploaded', { field: 'tensor', value: name });
    return m;
  };
  const B = (name: string | undefined): DeviceBuffer | null => (name === undefined ? null : weights.biases.get(name) ?? null);
  const buf = (p: GpuPass, name: string): DeviceBuffer => p.bufs.get(name)!;
  const count = (p: GpuPass, name: string): number => p.tokens * p.widths.get(name)!;
  const dtype = (p: GpuPass, name: string): GpuDtype => gpuDtype(spec, p.types.get(name));
  /** A folded RMSNorm's producer or consumer fields (step-fold-norms.ts). */
  const fold = (op: OpOf<'linear'>, p: GpuPass): Pick<LinearOptions, 'normOut' | 'rowScale'> => {
    const weight = op.normOut && weights.normWeights?.get(op.normOut.weight);
    if (op.normOut && !weight) throw new TidarcError('runtime', 'the cuda step graph folds an RMSNorm whose float32 weight was not uploaded', { field: 'tensor', value: op.normOut.weight });
    return {
      ...(op.normOut ? { normOut: { weight: weight!, out: buf(p, op.normOut.out), sumsq: buf(p, op.normOut.sumsq) } } : {}),
      ...(op.rowScale ? { rowScale: { sumsq: buf(p, op.rowScale.sumsq), cols: p.widths.get(op.x)!, eps: spec.rmsNormEps } } : {}),
    };
  };
  return {
    embed: (op, p) => ops.embed(buf(p, op.ids), M(op.table), buf(p, op.out), p.tokens),
    rmsnorm: (op, p) => ops.rmsnorm(buf(p, op.x), M(op.weight), spec.rmsNormEps, buf(p, op.out), p.tokens, dtype(p, op.out)),
    headNorm: (op, p) => ops.rmsnorm(buf(p, op.x), M(op.weight), spec.rmsNormEps, buf(p, op.x), p.tokens * op.heads),
    linear: (op, p) => {
      const x = buf(p, op.x);
      if (op.swiglu) {
        // One launch: silu(gate) * up in the epilogue, [T, I] straight into the output (no gate, up round trip).
        if (dtype(p, op.x) === 'f32' || dtype(p, op.swiglu.out) === 'f32') throw new TidarcError('runtime', 'the SwiGLU epilogue reads and writes 16-bit activations; the cuda step graph declares float32', { field: 'tensor', value: `${op.x} -> ${op.swiglu.out}` });
        gemms.run(op.role, { x, rows: p.tokens, w: M(op.weight), outs: [buf(p, op.swiglu.out)], epilogue: 'swiglu', ...fold(op, p) });
        return;
      }
      const parts = op.parts.map((part) => [M(part.weight), B(part.bias), buf(p, part.out!)] as const);
      runLinear(gemms, ops, op.role, x, p.tokens, { whole: M(op.weight), bias: B(op.bias), parts }, { xDtype: dtype(p, op.x), ...(op.accumulate ? { accumulate: true } : {}), ...fold(op, p) });
    },
    ropePack: (op, p) => ops.ropePack({
      q: buf(p, op.q), k: buf(p, op.k), v: buf(p, op.v), positions: buf(p, 'positions'), invFreq: weights.invFreq,
      qOut: buf(p, op.qOut), kOut: buf(p, op.kOut), vOut: buf(p, op.vOut),
      rows: p.tokens, qHeads: p.widths.get(op.q)! / D, kvHeads: p.widths.get(op.k)! / D, headDim: D, dtype: spec.dtype,
      ...(op.norm ? { norm: { q: M(op.norm.q), k: M(op.norm.k), eps: spec.rmsNormEps } } : {}),
    }),
    attention: (op, p) => b.attention(op, p),
    toFloat: (op, p) => ops.toFloat(buf(p, op.x), buf(p, op.out), count(p, op.x), spec.dtype),
    swiglu: (op, p) => ops.siluMul(buf(p, op.gate), buf(p, op.up), buf(p, op.out), count(p, op.gate), dtype(p, op.out)),
    gelu: (op, p) => ops.gelu(buf(p, op.x), buf(p, op.out), count(p, op.x), dtype(p, op.out)),
  };
}
