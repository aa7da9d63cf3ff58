/**
 * The planner's mma.sync GEMM tile for one (weight shape, M) (issue 14): of the tiles the
 * kernel runs there (gemm-plan.ts heuristicScore lists them, each with its stages), the one the
 * GEMM cost model (gemm-cost-model.ts) predicts fastest on the H200 (the one GPU whose rates
 * are measured), as the attention planner picks its row tile (row-tile-choice.ts). The tile
 * never changes the reduction (planReduction gave it, the same for every M), so choosing it per
 * M keeps a row's result bitwise the same at every M.
 *
 * Registers are ptxas's figure for the tile (gemm-registers.ts: the planner has no ptxas), for
 * the occupancy each is predicted at. Candidates within GEMM_TILE_TOLERANCE of the least time
 * count as equal (the L2, latency and shared-memory rates are assumed, not measured), and of
 * those the first in the candidates' order wins: heuristicScore lists 8 warps before 4 and
 * 64 columns before 128, so where the model sees no difference (HBM-bound M = 1) the tile is
 * the one the kernel was first proven with. The plain output (no epilogue, no residual read)
 * is predicted: epilogues cost the same under every tile. Pure and cheap.
 *
 * The split-K count of a weight shape (gemm-plan.ts costModelSplits) is priced from these
 * choices: each count's chosen tile per step row count, summed as relative regret
 * (leastRegretSplit), on splitMachine's SMs.
 */
import { predictGemm } from './gemm-cost-model.js';
import type { GemmPlan } from './gemm-plan.js';
import { gemmRegisters } from './gemm-registers.js';
import { gemmLoopCounts } from './gemm-sass-counts.js';
import { H200, type Machine } from './machine.js';

/** Predicted times within this fraction of the least are equal (row-tile-choice.ts ROW_TILE_TOLERANCE). */
export const GEMM_TILE_TOLERANCE = 0.03;

export interface GemmTileScore {
  readonly plan: GemmPlan;
  readonly registers: number;
  readonly predictedS: number;
  /** Whether the issue term was priced (every candidate of this M measured). */
  readonly issue: boolean;
}

/**
 * Each candidate's predicted time over `m` rows, at its measured registers; with the issue term
 * (gemm-sass-counts.ts) only where every candidate has one, so the choice never favours a tile
 * whose SASS was not measured.
 */
export function scoreGemmTiles(plans: readonly GemmPlan[], m: number): GemmTileScore[] {
  const issue = gemmIssuePriced(plans, H200);
  return plans.map((plan) => {
    const registers = gemmRegisters(plan, plan.reduction.splitK).registers;
    return { plan, registers, issue, predictedS: predictGemm(plan, m, H200, registers, { issue }).predictedS };
  });
}

/** Whether the issue term prices `plans` on `machine`: all of them have measured SASS counts (gemm-sass-counts.ts), else none is priced with it. */
export function gemmIssuePriced(plans: readonly GemmPlan[], machine: Machine): boolean {
  return plans.every((p) => gemmLoopCounts(p, machine.arch) !== undefined);
}

/** The rule above over the candidates (at least one), in their order of preference. */
export function chooseGemmTile(plans: readonly GemmPlan[], m: number): GemmTileScore {
  const scores = scoreGemmTiles(plans, m);
  const least = Math.min(...scores.map((s) => s.predictedS));
  return scores.find((s) => s.predictedS <= least * (1 + GEMM_TILE_TOLERANCE))!;
}

/**
 * What a weight shape's split-K is priced on (gemm-plan.ts costModelSplits): the H200, or where
 * the target counts other SMs (its largest arch: sm_89's 142 in a portable compile), the H200's
 * rates over that many SMs, shared memory per SM as the H200's. The SM count is what a split
 * is for (CTAs to fill them); the other rates are the only measured ones.
 */
export function splitMachine(sms: number): Machine {
  if (sms === H200.sms) return H200;
  return { ...H200, name: `${H200.name} rates over ${sms} SMs`, sms, sharedBytesPerS: (H200.sharedBytesPerS / H200.sms) * sms };
}

/** A chosen tile's predicted time over `m` rows on `machine` (its score's own where that is the H200). */
export function tileTimeOn(score: GemmTileScore, m: number, machine: Machine): number {
  return machine === H200 ? score.predictedS : predictGemm(score.plan, m, machine, score.registers, { issue: score.issue }).predictedS;
}

/**
 * One split-K count for a weight shape from predicted times: `times.get(s)[i]` is the time at
 * the i-th step row count under s parts. The least sum over the rows of time / the least time
 * of any count at that row (relative regret: every row count weighs alike, whatever its size)
 * wins; ties (within 1e-9, float noise) go to fewer parts.
 */
export function leastRegretSplit(times: ReadonlyMap<number, readonly number[]>): number {
  const counts = [...times.keys()].sort((a, b) => a - b);
  const rows = times.get(counts[0]!)!.length;
  const best = Array.from({ length: rows }, (_, i) => Math.min(...counts.map((s) => times.get(s)![i]!)));
  const regret = (s: number): number => times.get(s)!.reduce((t, x, i) => t + x / best[i]!, 0);
  return counts.reduce((chosen, s) => (regret(s) < regret(chosen) - 1e-9 ? s : chosen));
}
