/**
 * The GPU's fusions as rewrites of the base step graph (the CPU runs the base graph): each
 * pass is a small pattern over consecutive ops, and the result is checked to name only
 * declared tensors. What each saves on the device:
 *   fuseLinears      linears of one input -> one GEMM over the concatenated weight, its parts
 *                    written to their own outputs (q|k|v, gate|up: one read of x instead of 3 or 2);
 *   fuseSwiglu       gate|up + silu(gate) * up -> the GEMM's SwiGLU epilogue (no [T, 2I] round trip);
 *   fuseRopePack     rope of q and k + the 16-bit pack of q, k, v -> one rope_pack launch;
 *   fuseHeadNorms    Qwen3's per-head q and k norms right before it -> the same rope_pack, which
 *                    normalises each head's row before RoPE (2 launches fewer a layer, and no
 *                    float32 round trip of the normed q and k);
 *   foldResidualAdds linear into t, x += t -> the GEMM accumulates into x;
 *   foldToFloat      the attention's 16-bit o widened to float32 for o_proj -> o_proj reads it;
 *   untieGemmInputs  an in-place gelu / swiglu whose result only linears read -> its own tensor;
 *   storeGemmInputs16 a tensor only linears read, written by an op that can round its output
 *                    (rmsnorm, gelu, swiglu, the SwiGLU epilogue) -> the model's 16-bit dtype:
 *                    the GEMMs stream it with cp.async like the weights (half the bytes, no
 *                    per-tile conversion) and round to exactly what they rounded to before.
 *                    The residual stream, q/k/v before RoPE and the norms' sums stay float32:
 *                    they are accumulated into or re-read, and a 16-bit residual would round
 *                    every layer's add (error growing with depth), not just a GEMM's input.
 *   foldNorms        (with the option) an RMSNorm between a residual GEMM and the GEMMs reading
 *                    its 16-bit out -> their epilogues (step-fold-norms.ts): 2 launches fewer a layer.
 * Pure.
 */
import { TidarcError } from '../errors.js';
import { type NormFolding, foldNorms } from './step-fold-norms.js';
import { type StepGraph, withUsedTensors } from './step-graph.js';
import type { TensorDecl } from './step-ops.js';
import { type LinearPart, type OpOf, type StepOp, layerPrefix, opTensors } from './step-ops.js';

/** Linears that fuse: their roles in order, the fused role (the manifest's GEMM role) and weight name. */
export const FUSED_LINEARS: readonly { readonly roles: readonly string[]; readonly role: string; readonly weight: string }[] = [
  { roles: ['q', 'k', 'v'], role: 'qkv', weight: 'self_attn.qkv_proj' },
  { roles: ['gate', 'up'], role: 'gate_up', weight: 'mlp.gate_up_proj' },
];

export interface GpuRewriteOptions {
  /** The compiled gate_up GEMM fuses SwiGLU over gate | up rows interleaved in blocks of this many. */
  readonly swigluInterleave?: number;
  /** The roles whose compiled GEMMs fold RMSNorms (step-fold-norms.ts); absent: no norm folds. */
  readonly foldNorms?: NormFolding;
}

/** GpuRewriteOptions from what may be absent (exactOptionalPropertyTypes: no key set to undefined). */
export function gpuRewriteOptions(swigluInterleave: number | undefined, foldNorms: NormFolding | undefined): GpuRewriteOptions {
  return { ...(swigluInterleave === undefined ? {} : { swigluInterleave }), ...(foldNorms ? { foldNorms } : {}) };
}

type Linear = OpOf<'linear'>;
const isLinear = (op: StepOp | undefined): op is Linear => op?.kind === 'linear';

export function fuseLinears(ops: readonly StepOp[]): StepOp[] {
  const out: StepOp[] = [];
  for (let i = 0; i < ops.length; i++) {
    const rule = FUSED_LINEARS.find((r) => r.roles.every((role, j) => {
      const op = ops[i + j];
      return isLinear(op) && op.role === role && op.parts.length === 1 && !op.accumulate && op.x === (ops[i] as Linear).x && op.layer === ops[i]!.layer;
    }));
    const first = ops[i]!;
    if (!rule || first.layer === undefined) {
      out.push(first);
      continue;
    }
    const linears = ops.slice(i, i + rule.roles.length) as Linear[];
    const name = layerPrefix(first.layer) + rule.weight;
    const parts: LinearPart[] = linears.flatMap((l) => l.parts);
    out.push({
      kind: 'linear', layer: first.layer, role: rule.role, x: (first as Linear).x, weight: `${name}.weight`,
      ...(parts.some((p) => p.bias) ? { bias: `${name}.bias` } : {}), parts,
    });
    i += rule.roles.length - 1;
  }
  return out;
}

export function fuseSwiglu(ops: readonly StepOp[], interleave: number): StepOp[] {
  const out: StepOp[] = [];
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!, next = ops[i + 1];
    if (isLinear(op) && op.role === 'gate_up' && op.parts.length === 2 && next?.kind === 'swiglu' && next.gate === op.parts[0]!.out && next.up === op.parts[1]!.out) {
      out.push({ ...op, parts: op.parts.map(({ out: _, ...p }) => p), swiglu: { out: next.out, interleave } });
      i++;
    } else out.push(op);
  }
  return out;
}

export function fuseRopePack(ops: readonly StepOp[]): StepOp[] {
  const out: StepOp[] = [];
  for (let i = 0; i < ops.length; i++) {
    const [rq, rk, pq, pk, pv] = ops.slice(i, i + 5);
    if (rq?.kind === 'rope' && rk?.kind === 'rope' && pq?.kind === 'to16' && pk?.kind === 'to16' && pv?.kind === 'to16' && pq.x === rq.x && pk.x === rk.x) {
      out.push({ kind: 'ropePack', ...(rq.layer === undefined ? {} : { layer: rq.layer }), q: pq.x, k: pk.x, v: pv.x, qOut: pq.out, kOut: pk.out, vOut: pv.out });
      i += 4;
    } else out.push(ops[i]!);
  }
  return out;
}

/**
 * headNorm of q and headNorm of k (either order) right before the ropePack of that q and k, in
 * the same layer -> the ropePack with their weights (`norm`). The normed q and k were written in
 * place only for the ropePack to read: the fused op leaves q and k as the GEMM wrote them, so
 * the pass refuses a graph where anything reads them after the ropePack before they are written
 * again. A ropePack with one norm or none (Qwen2.5, llama) stays as it is.
 */
export function fuseHeadNorms(ops: readonly StepOp[]): StepOp[] {
  const out: StepOp[] = [];
  for (let i = 0; i < ops.length; i++) {
    const [a, b, rp] = ops.slice(i, i + 3);
    if (a?.kind === 'headNorm' && b?.kind === 'headNorm' && rp?.kind === 'ropePack' && !rp.norm && a.layer === rp.layer && b.layer === rp.layer) {
      const qn = [a, b].find((n) => n.x === rp.q), kn = [a, b].find((n) => n.x === rp.k);
      if (qn && kn && qn !== kn && !readBeforeWritten(ops, i + 3, rp.q) && !readBeforeWritten(ops, i + 3, rp.k)) {
        out.push({ ...rp, norm: { q: qn.weight, k: kn.weight } });
        i += 2;
        continue;
      }
    }
    out.push(ops[i]!);
  }
  return out;
}

/** Whether an op from `from` on reads `t` before a linear overwrites it (the next layer's). */
function readBeforeWritten(ops: readonly StepOp[], from: number, t: string): boolean {
  const user = ops.slice(from).find((o) => opTensors(o).includes(t));
  return user !== undefined && !(isLinear(user) && user.x !== t && user.parts.some((p) => p.out === t));
}

export function foldResidualAdds(ops: readonly StepOp[]): StepOp[] {
  const out: StepOp[] = [];
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!, next = ops[i + 1];
    const t = isLinear(op) && op.parts.length === 1 && !op.swiglu ? op.parts[0]!.out : undefined;
    if (isLinear(op) && t !== undefined && next?.kind === 'add' && next.y === t && !readBeforeWritten(ops, i + 2, t)) {
      out.push({ ...op, parts: [{ ...op.parts[0]!, out: next.x }], accumulate: true });
      i++;
    } else out.push(op);
  }
  return out;
}

/** The activations an op reads, and those it writes (accumulate, in place: both). */
function reads(op: StepOp): string[] {
  switch (op.kind) {
    case 'embed': return [op.ids];
    case 'rmsnorm': case 'to16': case 'toFloat': case 'gelu': case 'headNorm': case 'rope': return [op.x];
    case 'linear': return [op.x, ...(op.accumulate ? op.parts.flatMap((p) => (p.out ? [p.out] : [])) : []), ...(op.rowScale ? [op.rowScale.sumsq] : [])];
    case 'ropePack': case 'attention': return [op.q, op.k, op.v];
    case 'swiglu': return [op.gate, op.up];
    case 'add': return [op.x, op.y];
  }
}
function writes(op: StepOp): string[] {
  switch (op.kind) {
    case 'embed': case 'rmsnorm': case 'to16': case 'toFloat': case 'gelu': case 'swiglu': return [op.out];
    case 'headNorm': case 'rope': case 'add': return [op.x];
    case 'linear': return [...op.parts.flatMap((p) => (p.out ? [p.out] : [])), ...(op.swiglu ? [op.swiglu.out] : []), ...(op.normOut ? [op.normOut.out, op.normOut.sumsq] : [])];
    case 'ropePack': return [op.qOut, op.kOut, op.vOut];
    case 'attention': return [op.out, op.lse];
  }
}

/** Whether `op` can store `t` (one of its outputs, not also an input) rounded to 16-bit. */
function rounds16(op: StepOp, t: string): boolean {
  switch (op.kind) {
    case 'rmsnorm': case 'gelu': return op.out === t && op.x !== t;
    case 'swiglu': return op.out === t && op.gate !== t && op.up !== t;
    case 'linear': return (op.swiglu?.out === t || op.normOut?.out === t) && op.x !== t;
    default: return false;
  }
}
const readsAsGemmInput = (op: StepOp, t: string): boolean => isLinear(op) && op.x === t && !writes(op).includes(t);

/** toFloat(o16 -> o) whose o only linears read: the linears read o16 (the GEMMs take 16-bit activations). */
export function foldToFloat(ops: readonly StepOp[]): StepOp[] {
  const widened = new Set(ops.flatMap((op) => (op.kind === 'toFloat' ? [op.out] : [])));
  for (const t of [...widened]) {
    if (!ops.every((op) => !opTensors(op).includes(t) || (op.kind === 'toFloat' && op.out === t && op.x !== t) || readsAsGemmInput(op, t))) widened.delete(t);
  }
  const source = new Map<string, string>();
  const out: StepOp[] = [];
  for (const op of ops) {
    if (op.kind === 'toFloat' && widened.has(op.out)) source.set(op.out, op.x);
    else out.push(isLinear(op) && widened.has(op.x) ? { ...op, x: source.get(op.x)! } : op);
  }
  return out;
}

/**
 * An in-place gelu or swiglu (x -> x) whose result only linears read before it is written
 * again writes `<name>16` instead, and those linears read that: its input keeps its type and
 * the result can be stored 16-bit (storeGemmInputs16).
 */
export function untieGemmInputs(graph: StepGraph): StepGraph {
  const ops = [...graph.ops];
  const tensors = [...graph.tensors];
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (!((op.kind === 'gelu' && op.x === op.out) || (op.kind === 'swiglu' && (op.gate === op.out || op.up === op.out)))) continue;
    const t = op.out, fresh = `${t}16`;
    const end = ops.findIndex((o, j) => j > i && writes(o).includes(t));
    const span = ops.slice(i + 1, end < 0 ? ops.length : end);
    const readers = span.filter((o) => opTensors(o).includes(t));
    if (readers.length === 0 || !readers.every((o) => readsAsGemmInput(o, t)) || graph.tensors.some((d) => d.name === fresh)) continue;
    if (end < 0 && graph.head.x === t) continue;  // the lm_head reads it as well
    ops[i] = { ...op, out: fresh };
    for (let j = i + 1; j < i + 1 + span.length; j++) if (readers.includes(ops[j]!)) ops[j] = { ...(ops[j] as Linear), x: fresh };
    if (!tensors.some((d) => d.name === fresh)) tensors.push({ ...tensors.find((d) => d.name === t)!, name: fresh });  // one per name, every layer's
  }
  return { ...graph, ops, tensors };
}

/**
 * Float32 tensors that only linears read (the lm_head included) and that only ops able to
 * round their output write become 'u16' (the model's 16-bit dtype). The GEMMs rounded their
 * input to that dtype anyway (round to nearest even), so a GEMM's result is bitwise what it was.
 */
export function storeGemmInputs16(graph: StepGraph): StepGraph {
  const sixteen = (d: TensorDecl): boolean => {
    if (d.type !== 'f32') return false;
    const touching = graph.ops.filter((op) => opTensors(op).includes(d.name));
    const readers = touching.filter((op) => reads(op).includes(d.name));
    return (readers.length > 0 || graph.head.x === d.name)
      && touching.every((op) => (reads(op).includes(d.name) ? readsAsGemmInput(op, d.name) : rounds16(op, d.name)));
  };
  return { ...graph, tensors: graph.tensors.map((d) => (sixteen(d) ? { ...d, type: 'u16' } : d)) };
}

/** Every tensor an op names is one the graph declares. */
export function validateGraph(graph: StepGraph, backend: string): StepGraph {
  const known = new Set(graph.tensors.map((t) => t.name));
  for (const op of graph.ops) {
    for (const t of opTensors(op)) {
      if (!known.has(t)) throw new TidarcError('invalid-spec', `the ${backend} step graph names an undeclared tensor`, { field: `${op.kind}${op.layer === undefined ? '' : ` (layer ${op.layer})`}`, value: t, allowed: [...known].join(', ') });
    }
  }
  return graph;
}

/** The cuda backend's graph: the base graph with the GPU's fusions. */
export function rewriteForGpu(graph: StepGraph, o: GpuRewriteOptions = {}): StepGraph {
  let ops = fuseLinears(graph.ops);
  if (o.swigluInterleave !== undefined) ops = fuseSwiglu(ops, o.swigluInterleave);
  ops = foldToFloat(foldResidualAdds(fuseHeadNorms(fuseRopePack(ops))));
  const untied = untieGemmInputs({ ...graph, ops });
  return validateGraph(foldNorms(storeGemmInputs16(withUsedTensors(untied, untied.ops)), o.foldNorms), 'cuda');
}
