/**
 * The step graphs the runners execute: the IR's graph for a pass of T tokens under a schedule,
 * with codegen's prefill chunk, cached per (T, schedule) by each runner.
 */
import { PREFILL_CHUNK } from '../../codegen/variant.js';
import { prefillVariantName } from '../../codegen/variant-name.js';
import type { ModelSpec } from '../../ir/model.js';
import { type AttentionSchedule, type StepGraph, buildStepGraph } from '../../ir/step-graph.js';

/** A launch of a graph's schedule with its absolute prefix (cache length + offset). */
export interface ResolvedLaunch {
  readonly variant: string;
  readonly from: number;
  readonly rows: number;
  readonly prefix: number;
  readonly commitRows: number;
}

export const PREFILL: { readonly size: number; readonly variant: string } = { size: PREFILL_CHUNK, variant: prefillVariantName(PREFILL_CHUNK) };

/** The base (unfused) graph of a pass of `tokens` tokens. */
export function passGraph(spec: ModelSpec, tokens: number, schedule: AttentionSchedule): StepGraph {
  return buildStepGraph(spec, { tokens, schedule, prefillChunk: PREFILL });
}

/** A cache key of a pass's graph. */
export function passKey(tokens: number, schedule: AttentionSchedule): string {
  return schedule.kind === 'step' ? `${tokens} ${schedule.variant}` : `${tokens} prefill ${schedule.promptTokens} ${schedule.blockVariant ?? ''}`;
}

/** The graph's launches over a cache of `cacheLength` committed tokens. */
export function resolveLaunches(graph: StepGraph, cacheLength: number): ResolvedLaunch[] {
  return graph.launches.map((l) => ({ variant: l.variant, from: l.from, rows: l.rows, prefix: cacheLength + l.prefixOffset, commitRows: l.commitRows }));
}
