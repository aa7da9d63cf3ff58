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

/**
 * The rule above over scored candidates (at least one). Why it need not take the model's fastest:
 * Qwen3-8B's k = 16 (1088 rows a KV head, head dim 128) takes 9 tiles of 4 warps of 32 rows, where
 * 12 tiles of 3 are 1.5% faster on the mean (229.9 against 233.3 us, H200, 2 CTAs an SM both).
 * Both execute 1152 rows (64 of padding) at the same mma.sync rate; 12 x 3 moves 14% more shared
 * bytes a row (3 row warps read each K/V tile for 96 rows, 4 for 144), which still leaves their
 * compute terms within 2% (batch 8, L = 16k: mma 1215.5 and shared 1181.9 us against 1216.5 and
 * 1238.6), so what separates them is how their CTAs quantize into waves of 132 SMs: 12 x 3
 * at batch 8 is 768 CTAs (5.8 of 6 CTAs an SM, one split), 9 x 4 is 576 (4.4 of 5), so the split
 * rule gives it 2 splits and a merge (11.9 us at L = 4k, 324.1 against 317.3); at L = 4k,
 * batch 1 4 splits of 96 CTAs are 2.9 of 3 CTAs an SM and 5 of 72 2.7 (44.4 against 46.2); at
 * batch 8, L = 16k 9 x 4 is ahead (1232.4 against 1241.6). A win of a wave's tail moves with the
 * batch and L the runtime actually sees, and 1.5% is inside what the model resolves (its L2 and
 * fill figures are assumed), so the shape-independent tie-breaks decide: fewer row tiles read the
 * prefix fewer times from L2 (9 x 4: 24% fewer L2 bytes, the margin if L2 is slower than the 10
 * TB/s assumed) and load Q and fill the pipeline fewer times.
 */
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
