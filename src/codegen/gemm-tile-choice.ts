/**
 * The planner's mma.sync GEMM tile for one (weight shape, M) (issue 14): of the tiles the
 * kernel runs there (gemm-plan.ts heuristicTile lists them, each with its stages), the one the
 * GEMM cost model (gemm-cost-model.ts) predicts fastest on the H200 (the one GPU whose rates
 * are measured), as the attention planner picks its row tile (row-tile-choice.ts). The tile
 * never changes the reduction (planReduction gave it, the same for every M), so choosing it per
 * M keeps a row's result bitwise the same at every M.
 *
 * Registers are ptxas's figure for the tile (gemm-registers.ts: the planner has no ptxas), for
 * the occupancy each is predicted at. Candidates within GEMM_TILE_TOLERANCE of the least time
 * count as equal (the L2, latency and shared-memory rates are assumed, not measured), and of
 * those the first in the candidates' order wins: heuristicTile lists 8 warps before 4 and
 * 64 columns before 128, so where the model sees no difference (HBM-bound M = 1) the tile is
 * the one the kernel was first proven with. The plain output (no epilogue, no residual read)
 * is predicted: epilogues cost the same under every tile. Pure and cheap.
 */
import { predictGemm } from './gemm-cost-model.js';
import type { GemmPlan } from './gemm-plan.js';
import { gemmRegisters } from './gemm-registers.js';
import { H200 } from './machine.js';

/** Predicted times within this fraction of the least are equal (row-tile-choice.ts ROW_TILE_TOLERANCE). */
export const GEMM_TILE_TOLERANCE = 0.03;

export interface GemmTileScore {
  readonly plan: GemmPlan;
  readonly registers: number;
  readonly predictedS: number;
}

/** Each candidate's predicted time over `m` rows, at its measured registers. */
export function scoreGemmTiles(plans: readonly GemmPlan[], m: number): GemmTileScore[] {
  return plans.map((plan) => {
    const registers = gemmRegisters(plan, plan.reduction.splitK).registers;
    return { plan, registers, predictedS: predictGemm(plan, m, H200, registers).predictedS };
  });
}

/** The rule above over the candidates (at least one), in their order of preference. */
export function chooseGemmTile(plans: readonly GemmPlan[], m: number): GemmTileScore {
  const scores = scoreGemmTiles(plans, m);
  const least = Math.min(...scores.map((s) => s.predictedS));
  return scores.find((s) => s.predictedS <= least * (1 + GEMM_TILE_TOLERANCE))!;
}
