/**
 * Fold-norms, the last GPU rewrite (step-rewrite.ts rewriteForGpu calls it): an RMSNorm between
 * a residual GEMM and the GEMMs that read its result is no launch of its own.
 *   producer  the linear that accumulates into the norm's input x (o, down): its epilogue also
 *             writes the norm's old out as round16(gamma * x) and per row the float64 sums of
 *             x^2 by 64-column chunk into a new tensor `<out>.sumsq`;
 *   consumers the linears that read the norm's out (qkv, gate_up, their parts where a model does
 *             not fuse, the lm_head on its gathered rows): each output row is scaled by the
 *             norm's 1 / rms from those sums before its bias and epilogue.
 * The rounding point moves (round16(gamma * x), then the scale after the sum), which is why the
 * fold is a switch and never applied to fp16 (gamma * x of a large residual can overflow).
 * A norm folds only when every piece fits: its input last written by a producer unit with the
 * norm-out epilogue, its out stored 16-bit and read, until written again, only as the x of
 * consumer units with the row scale (and the lm_head's, if it reads it last). Anything else
 * (another reader, a unit on the SIMT fallback, layer 0's norm after the embedding) leaves the
 * norm as it is. Pure.
 */
import type { ModelSpec } from './model.js';
import type { StepGraph } from './step-graph.js';
import { withUsedTensors } from './step-graph.js';
import { NORM_SUMSQ_CHUNK, type OpOf, type StepOp, type TensorDecl, opTensors } from './step-ops.js';

/** The GEMM roles whose compiled units have the fold-norms epilogues (the manifest's normOut / rowScale flags). */
export interface NormFolding {
  /** Residual GEMMs that can write a folded norm's out and row sums (kNormOut). */
  readonly normOut: readonly string[];
  /** GEMMs that can scale their rows by a folded norm (kRowScale); 'lm_head' for the final norm. */
  readonly rowScale: readonly string[];
}

type Linear = OpOf<'linear'>;
const isLinear = (op: StepOp | undefined): op is Linear => op?.kind === 'linear';

/** The sums-of-squares tensor of a folded norm whose out is `out`. */
export const sumsqTensor = (out: string): string => `${out}.sumsq`;

/** Where norm i folds: its producer's index and its consumers' (and whether the lm_head is one), else undefined. */
function foldSite(graph: StepGraph, ops: readonly StepOp[], i: number, f: NormFolding): { producer: number; consumers: number[]; head: boolean } | undefined {
  const norm = ops[i]!;
  if (norm.kind !== 'rmsnorm' || norm.x === norm.out) return undefined;
  const type = graph.tensors.find((t) => t.name === norm.out)?.type;
  if (type !== 'u16') return undefined;
  let producer = i - 1;
  while (producer >= 0 && !opTensors(ops[producer]!).includes(norm.x)) producer--;
  const p = ops[producer];
  if (!isLinear(p) || !p.accumulate || p.swiglu || p.normOut || p.parts.length !== 1 || p.parts[0]!.out !== norm.x || p.x === norm.x || p.x === norm.out || !f.normOut.includes(p.role)) return undefined;
  // The fold moves the norm's writes (out, sums) up to the producer (which must not read them: other
  // CTAs would write its x): no op in between may read or write them either.
  const moved = [norm.out, sumsqTensor(norm.out)];
  if (ops.slice(producer + 1, i).some((o) => opTensors(o).some((t) => moved.includes(t)))) return undefined;
  // The norm's out is read until an op writes it again (the next layer's norm or its producer).
  const end = ops.findIndex((o, j) => j > i && writesAsOut(o, norm.out));
  const span = ops.slice(i + 1, end < 0 ? ops.length : end);
  const consumers: number[] = [];
  for (const [j, o] of span.entries()) {
    if (!opTensors(o).includes(norm.out)) continue;
    if (!isLinear(o) || o.x !== norm.out || o.rowScale || opTensors(o).indexOf(norm.out, 1) > 0 || !f.rowScale.includes(o.role)) return undefined;
    consumers.push(i + 1 + j);
  }
  const head = end < 0 && graph.head.x === norm.out;
  if (head && !f.rowScale.includes('lm_head')) return undefined;
  return consumers.length > 0 || head ? { producer, consumers, head } : undefined;
}

/** Whether `op` writes `t` without reading it (a norm's out, or a folded producer's norm out). */
function writesAsOut(op: StepOp, t: string): boolean {
  if (op.kind === 'rmsnorm') return op.out === t && op.x !== t;
  return isLinear(op) && op.normOut?.out === t;
}

/** The graph with every norm that can fold folded (see the file comment); without `f`, the graph as it is. */
export function foldNorms(graph: StepGraph, f: NormFolding | undefined): StepGraph {
  if (!f) return graph;
  const ops = [...graph.ops];
  const tensors: TensorDecl[] = [...graph.tensors];
  let head = graph.head;
  for (let i = 0; i < ops.length; i++) {
    const site = foldSite({ ...graph, tensors }, ops, i, f);
    if (!site) continue;
    const norm = ops[i] as OpOf<'rmsnorm'>;
    const sumsq = sumsqTensor(norm.out);
    if (!tensors.some((t) => t.name === sumsq)) {
      const width = tensors.find((t) => t.name === norm.x)!.width;
      tensors.push({ name: sumsq, width: Math.ceil(width / NORM_SUMSQ_CHUNK), type: 'f64' });  // one per name, every layer's
    }
    ops[site.producer] = { ...(ops[site.producer] as Linear), normOut: { weight: norm.weight, out: norm.out, sumsq } };
    for (const c of site.consumers) ops[c] = { ...(ops[c] as Linear), rowScale: { sumsq } };
    if (site.head) head = { ...head, rowScale: { sumsq } };
    ops.splice(i--, 1);
  }
  return withUsedTensors({ ...graph, tensors, head }, ops);
}

/** A compiled GEMM unit as far as folding goes (the manifest's gemm entries). */
export interface FoldingUnit {
  readonly roles: readonly string[];
  readonly normOut?: boolean;
  readonly rowScale?: boolean;
}

/**
 * Which roles fold for a model compiled to `units`: bf16 only (gamma * x of a large fp16
 * residual can overflow), and only roles whose units carry the flags; else why not.
 */
export function normFolding(spec: Pick<ModelSpec, 'dtype'>, units: readonly FoldingUnit[] | undefined): { readonly folding: NormFolding } | { readonly why: string } {
  if (spec.dtype !== 'bf16') return { why: `the model is ${spec.dtype}: only bf16 folds (gamma * x of a large fp16 residual can pass 65504)` };
  if (!units || units.length === 0) return { why: 'the compile has no compiled GEMMs' };
  const roles = (flag: 'normOut' | 'rowScale'): string[] => [...new Set(units.flatMap((u) => (u[flag] ? u.roles : [])))];
  const normOut = roles('normOut'), rowScale = roles('rowScale');
  if (normOut.length === 0) return { why: 'the compile has no GEMM with the norm-out epilogue (compiled before fold-norms)' };
  if (rowScale.length === 0) return { why: 'the compile has no GEMM with the row-scale epilogue (compiled before fold-norms)' };
  return { folding: { normOut, rowScale } };
}
