/**
 * The planner's default row tile of a variant above 16 rows (issue 15 item 1): of the tiles the
 * kernel supports for it (plan.ts rowTileCandidates), the one the attention cost model
 * (src/codegen/attention-cost-model.ts) predicts fastest over the issue's shapes, the prefix
 * L = 4k and 16k at batch 1 and 8 on the H200 (the one GPU whose rates are measured), weighed by
 * the geometric mean of the four times (each shape counts by its ratio, not by its microseconds,
 * so batch 8 at 16k does not drown batch 1 at 4k). The occupancy each candidate is predicted
 * at is sm_90's from its estimated registers (plan.ts estimatedRegisters: the planner has no
 * ptxas) and its shared memory; the split-KV count is the runtime's rule (splitsFor).
 *
 * Candidates within ROW_TILE_TOLERANCE of the least mean count as equal (the model's rates are
 * not all measured), and of those the planner takes 16-row warps before 32-row ones (32-row warps
 * sit at ptxas's 255-register cap, where a small change spills), then the fewest row tiles (each
 * re-reads the prefix from L2), then the fewest warps (the least padding). Pure and cheap: a
 * dozen plans, four predictions each.
 */
import { predictAttention } from './attention-cost-model.js';
import { H200 } from './machine.js';
import { occupancy } from './occupancy.js';
import type { AttentionPlan } from './plan.js';

/** The shapes of issue 15's targets: the cached prefix L and the batch. */
export const REFERENCE_SHAPES: readonly { readonly prefix: number; readonly batch: number }[] = [
  { prefix: 4096, batch: 1 }, { prefix: 4096, batch: 8 }, { prefix: 16384, batch: 1 }, { prefix: 16384, batch: 8 },
];

/** Means within this fraction of the least are equal (the split rule's SPLIT_TIME_TOLERANCE, for the same reason). */
export const ROW_TILE_TOLERANCE = 0.03;

/** A candidate's predicted seconds at each reference shape, and their geometric mean. */
export interface RowTileScore {
  readonly plan: AttentionPlan;
  readonly registers: number;
  readonly ctasPerSm: number;
  readonly seconds: readonly number[];
  readonly meanS: number;
}

/** The cost model's view of one candidate at `registers` a thread (estimated, or ptxas's where a tool has them). */
export function scoreRowTile(plan: AttentionPlan, registers: number): RowTileScore {
  const { ctasPerSm } = occupancy(H200.arch, { registers, sharedBytes: plan.sharedBytes, threads: plan.threads });
  const seconds = REFERENCE_SHAPES.map((s) => predictAttention(plan, s, H200, ctasPerSm).predictedS);
  const meanS = Math.exp(seconds.reduce((a, t) => a + Math.log(t), 0) / seconds.length);
  return { plan, registers, ctasPerSm, seconds, meanS };
}

/** The rule above over scored candidates (at least one). */
export function fastestRowTile(scores: readonly RowTileScore[]): RowTileScore {
  const least = Math.min(...scores.map((s) => s.meanS));
  const rank = (s: RowTileScore): readonly number[] => [s.plan.rowTile.warpRows, s.plan.rowTiles, s.plan.rowTile.warps];
  const order = (a: RowTileScore, b: RowTileScore): number => {
    const [x, y] = [rank(a), rank(b)];
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
    return 0;
  };
  return [...scores].filter((s) => s.meanS <= least * (1 + ROW_TILE_TOLERANCE)).sort(order)[0]!;
}
