/**
 * A decode step as data: from a ModelSpec and a step (its token count and attention schedule)
 * the op graph every backend runs. Activations are named tensors with a per-token width and
 * element type; weights are the checkpoint's tensor names, so the graph connects to the
 * checkpoint (model.layers.3.self_attn.q_proj.weight). The layer body comes from the model's
 * family (model-families.ts); backends rewrite this base graph with their fusions
 * (step-rewrite.ts) and run it with their op table (step-exec.ts). Pure.
 */
import { TidarcError } from '../errors.js';
import type { ModelSpec } from './model.js';
import { familyOf } from './model-families.js';
import { type RowScale, type StepOp, type TensorDecl, type TensorType, layerPrefix, opTensors } from './step-ops.js';

export * from './step-ops.js';

/**
 * What the lm_head reads: the final hidden rows the decoder queries. `verify` rows are fixed;
 * `drafts` rows depend on the accepted count a: rows stride * a + 1 .. stride * a + count.
 */
export interface LmHead {
  readonly x: string;
  readonly weight: string;
  readonly verify: readonly number[];
  readonly drafts?: { readonly stride: number; readonly count: number };
  /** x is a folded RMSNorm's out (step-fold-norms.ts): the lm_head scales its rows by the norm's 1 / rms. */
  readonly rowScale?: RowScale;
}

export type AttentionSchedule =
  | { readonly kind: 'step'; readonly variant: string }
  | { readonly kind: 'prefill'; readonly promptTokens: number; readonly blockVariant?: string };

/** The causal prefill chunk: its size and its variant's name (codegen owns both). */
export interface PrefillChunk {
  readonly size: number;
  readonly variant: string;
}

/**
 * One attention launch: rows [from, from + rows) of the step over prefix = cache length +
 * prefixOffset keys; then `commitRows` of those rows enter the cache (a prefill chunk's K/V
 * must be there before the next chunk reads it).
 */
export interface AttentionLaunch {
  readonly variant: string;
  readonly from: number;
  readonly rows: number;
  readonly prefixOffset: number;
  readonly commitRows: number;
}

/**
 * The launches of a step, for every backend: a decode step is one launch; a prefill is the
 * prompt in causal chunks (each chunk's K/V committed before the next), then the trailing mask
 * block over the whole prompt.
 */
export function attentionLaunches(tokens: number, schedule: AttentionSchedule, chunk: PrefillChunk): AttentionLaunch[] {
  if (schedule.kind === 'step') return [{ variant: schedule.variant, from: 0, rows: tokens, prefixOffset: 0, commitRows: 0 }];
  const S = schedule.promptTokens;
  const out: AttentionLaunch[] = [];
  for (let c0 = 0; c0 < S; c0 += chunk.size) {
    const rows = Math.min(chunk.size, S - c0);
    out.push({ variant: chunk.variant, from: c0, rows, prefixOffset: c0, commitRows: rows });
  }
  if (schedule.blockVariant !== undefined && tokens > S) out.push({ variant: schedule.blockVariant, from: S, rows: tokens - S, prefixOffset: S, commitRows: 0 });
  return out;
}

export interface StepGraph {
  readonly tokens: number;
  readonly schedule: AttentionSchedule;
  readonly launches: readonly AttentionLaunch[];
  /** Every activation the ops name (inputs `ids`, `positions` included), in first-use order. */
  readonly tensors: readonly TensorDecl[];
  readonly ops: readonly StepOp[];
  readonly head: LmHead;
}

export interface StepRequest {
  readonly tokens: number;
  readonly schedule: AttentionSchedule;
  readonly prefillChunk: PrefillChunk;
  /** Rows the lm_head reads (default: what the decoder reads for this schedule). */
  readonly head?: Pick<LmHead, 'verify' | 'drafts'>;
}

/** The rows the decoder's lm_head queries read for a schedule (decoder.ts). */
function defaultHead(tokens: number, schedule: AttentionSchedule): Pick<LmHead, 'verify' | 'drafts'> {
  if (schedule.kind === 'prefill') {
    const S = schedule.promptTokens, k = tokens - S;
    return { verify: [S - 1], ...(k > 1 ? { drafts: { stride: 0, count: k - 1 } } : {}) };
  }
  // tidar_k<K>: T = K + K * K; AR rows 0..K-1 verify, block a's slots 1..K-1 are the next drafts.
  const K = Math.round((Math.sqrt(1 + 4 * tokens) - 1) / 2);
  if (tokens === 1 || K * (K + 1) !== tokens) return { verify: [0] };
  return { verify: Array.from({ length: K }, (_, i) => i), ...(K > 1 ? { drafts: { stride: K, count: K - 1 } } : {}) };
}

export function buildStepGraph(spec: ModelSpec, req: StepRequest): StepGraph {
  const family = familyOf(spec);
  const tensors = new Map<string, TensorDecl>();
  const ops: StepOp[] = [];
  const tensor = (name: string, width: number, type: TensorType = 'f32'): string => {
    const known = tensors.get(name);
    if (known && (known.width !== width || known.type !== type)) {
      throw new TidarcError('invalid-spec', `the ${spec.family} layer builder declares tensor ${name} twice, differently`, { field: name, value: `${width} ${type}`, allowed: `${known.width} ${known.type}` });
    }
    if (!known) tensors.set(name, { name, width, type });
    return name;
  };
  const H = spec.hiddenSize;
  tensor('ids', 1, 'i32'), tensor('positions', 1, 'i32'), tensor('x', H), tensor('h', H);
  ops.push({ kind: 'embed', ids: 'ids', table: 'model.embed_tokens.weight', out: 'x' });
  for (const [layer, prefix] of Array.from({ length: spec.layers }, (_, i) => layerPrefix(i)).entries()) {
    family.layer({ spec, layer, w: (r) => prefix + r, tensor, op: (op) => void ops.push({ ...op, layer }) });
  }
  ops.push({ kind: 'rmsnorm', x: 'x', weight: 'model.norm.weight', out: 'h' });
  const head = req.head ?? defaultHead(req.tokens, req.schedule);
  const used = new Set(ops.flatMap(opTensors));
  return {
    tokens: req.tokens, schedule: req.schedule,
    launches: attentionLaunches(req.tokens, req.schedule, req.prefillChunk),
    tensors: [...tensors.values()].filter((t) => used.has(t.name) || t.name === 'positions'),
    ops, head: { x: 'h', weight: 'lm_head.weight', ...head },
  };
}

/** The graph's tensors that its ops still name (after a rewrite dropped some). */
export function withUsedTensors(graph: StepGraph, ops: readonly StepOp[]): StepGraph {
  const used = new Set([...ops.flatMap(opTensors), ...(graph.head.rowScale ? [graph.head.rowScale.sumsq] : [])]);
  return { ...graph, ops, tensors: graph.tensors.filter((t) => used.has(t.name) || t.name === 'positions') };
}
