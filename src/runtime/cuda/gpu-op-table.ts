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
import type { GpuGemms } from './gpu-gemm.js';
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
export function runLinear(gemms: GpuGemms, ops: GpuOps, role: string, x: DeviceBuffer, rows: number, w: GpuLinear, o: { accumulate?: boolean; rowIds?: DeviceBuffer; xDtype?: GpuDtype } = {}): void {
  const xDtype = o.xDtype ?? w.whole.dtype;
  if (xDtype === w.whole.dtype && gemms.covers(role, w.whole)) {
    const ends = w.parts.map((_, i) => w.parts.slice(0, i + 1).reduce((n, [m]) => n + m.rows, 0));
    const segments: [number, number] = [ends[0]!, ends[1] ?? w.whole.rows];
    gemms.run(role, { x, rows, w: w.whole, bias: w.bias, outs: w.parts.map(([, , out]) => out), segments, ...(o.accumulate ? { accumulate: true } : {}), ...(o.rowIds ? { rowIds: o.rowIds } : {}) });
    return;
  }
  for (const [m, bias, out] of w.parts) ops.matmul(x, m, bias, out, rows, { ...o, xDtype });
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
  return {
    embed: (op, p) => ops.embed(buf(p, op.ids), M(op.table), buf(p, op.out), p.tokens),
    rmsnorm: (op, p) => ops.rmsnorm(buf(p, op.x), M(op.weight), spec.rmsNormEps, buf(p, op.out), p.tokens, dtype(p, op.out)),
    headNorm: (op, p) => ops.rmsnorm(buf(p, op.x), M(op.weight), spec.rmsNormEps, buf(p, op.x), p.tokens * op.heads),
    linear: (op, p) => {
      const x = buf(p, op.x);
      if (op.swiglu) {
        // One launch: silu(gate) * up in the epilogue, [T, I] straight into the output (no gate, up round trip).
        if (dtype(p, op.x) === 'f32' || dtype(p, op.swiglu.out) === 'f32') throw new TidarcError('runtime', 'the SwiGLU epilogue reads and writes 16-bit activations; the cuda step graph declares float32', { field: 'tensor', value: `${op.x} -> ${op.swiglu.out}` });
        gemms.run(op.role, { x, rows: p.tokens, w: M(op.weight), outs: [buf(p, op.swiglu.out)], epilogue: 'swiglu' });
        return;
      }
      const parts = op.parts.map((part) => [M(part.weight), B(part.bias), buf(p, part.out!)] as const);
      runLinear(gemms, ops, op.role, x, p.tokens, { whole: M(op.weight), bias: B(op.bias), parts }, { xDtype: dtype(p, op.x), ...(op.accumulate ? { accumulate: true } : {}) });
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
