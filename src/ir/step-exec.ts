/**
 * The executor: runs a step graph's ops in order against a backend's op table. This is the
 * only layer loop of tidarc's forward pass: the layers are in the graph (step-graph.ts), the
 * arithmetic in the tables (CPU: runtime/model/cpu-op-table.ts; CUDA: runtime/cuda/gpu-op-table.ts).
 * Pure: a table does the I/O.
 */
import { TidarcError } from '../errors.js';
import type { OpKind, OpOf, StepOp } from './step-ops.js';

/** A backend's implementation of each op kind it supports, over its per-pass context. */
export type OpTable<C> = { readonly [K in OpKind]?: (op: OpOf<K>, ctx: C) => void };

export function runOps<C>(ops: readonly StepOp[], table: OpTable<C>, ctx: C, backend: string): void {
  for (const op of ops) {
    const run = table[op.kind] as ((op: StepOp, ctx: C) => void) | undefined;
    if (!run) throw new TidarcError('unsupported', `the ${backend} backend has no ${op.kind} op`, { field: 'op', value: op.kind, allowed: Object.keys(table).sort().join(', ') });
    run(op, ctx);
  }
}
