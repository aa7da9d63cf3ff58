/**
 * The GPU's fusions as rewrites of the base step graph (the CPU runs the base graph): each
 * pass is a small pattern over consecutive ops, and the result is checked to name only
 * declared tensors. What each saves on the device:
 *   fuseLinears      linears of one input -> one GEMM over the concatenated weight, its parts
 *                    written to their own outputs (q|k|v, gate|up: one read of x instead of 3 or 2);
 *   fuseSwiglu       gate|up + silu(gate) * up -> the GEMM's SwiGLU epilogue (no [T, 2I] round trip);
 *   fuseRopePack     rope of q and k + the 16-bit pack of q, k, v -> one rope_pack launch;
 *   foldResidualAdds linear into t, x += t -> the GEMM accumulates into x.
 * Pure.
 */
import { TidarcError } from '../errors.js';
import { type StepGraph, withUsedTensors } from './step-graph.js';
import { type LinearPart, type OpOf, type StepOp, layerPrefix, opTensors } from './step-ops.js';

/** Linears that fuse: their roles in order, the fused role (the manifest's GEMM role) and weight name. */
export const FUSED_LINEARS: readonly { readonly roles: readonly string[]; readonly role: string; readonly weight: string }[] = [
  { roles: ['q', 'k', 'v'], role: 'qkv', weight: 'self_attn.qkv_proj' },
  { roles: ['gate', 'up'], role: 'gate_up', weight: 'mlp.gate_up_proj' },
];

export interface GpuRewriteOptions {
  /** The compiled gate_up GEMM fuses SwiGLU over gate | up rows interleaved in blocks of this many. */
  readonly swigluInterleave?: number;
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
  ops = foldResidualAdds(fuseRopePack(ops));
  return validateGraph(withUsedTensors(graph, ops), 'cuda');
}
