/**
 * The split-K of one GEMM unit of a compile (gemm-model.ts planModelGemms). Its reduction is
 * shared by every kernel of the unit: the mma.sync kernel of each arch and, where the compile
 * builds sm_90a, the wgmma kernel, whichever of the two families a 9.0 device runs
 * (gemm-kernel-choice.ts sm90aGemmHeuristic: one family per unit, by summed predicted time). So
 * without sm_90a the count is planReduction's (the mma.sync cost model's least relative regret
 * over the model's step rows); with it, each count is priced on the family the heuristic would
 * give the unit under that count, each role with its epilogue, and the least relative regret
 * of those times wins (gemm-tile-choice.ts leastRegretSplit, ties to fewer parts). Pricing the
 * mma.sync kernels alone would choose for a family an H200 does not run: Qwen3-8B qkv takes 4
 * parts on mma.sync (14.8 us at M = 72) but its sm_90a kernel is fastest unsplit (12.3 us
 * against 14.8). Then the family chosen on the unit is the one its count was priced on. Pure.
 */
import { sm90aGemmTimes } from './gemm-kernel-choice.js';
import type { GemmRole } from './gemm-model.js';
import { type GemmPlanOptions, type GemmReduction, type GemmShape, type GemmTarget, gemmSplitCandidates, planReduction } from './gemm-plan.js';
import { sm90aRefusal } from './gemm-sm90a.js';
import { leastRegretSplit } from './gemm-tile-choice.js';

/** The reduction of a unit of `roles` over the model's step `rows` (see above); row statistics keep planReduction's rule. */
export function planUnitReduction(shape: GemmShape, roles: readonly GemmRole[], target: GemmTarget, rows: readonly number[], opts: GemmPlanOptions = {}): GemmReduction {
  const planned = (): GemmReduction => planReduction(shape, target, undefined, { ...opts, rows });
  if (!target.arches.includes('sm_90a') || opts.rowStats) return planned();
  const candidates = gemmSplitCandidates(shape, target, rows, opts).filter((c) => sm90aRefusal(shape, roles, c.reduction) === null);
  if (candidates.length < 2) return planned();
  const times = new Map(candidates.map((c) => {
    const t = sm90aGemmTimes({ shape, roles, reduction: c.reduction, plans: c.plans });
    const sm90a = t.reduce((a, x) => a + x.sm90aS, 0) < t.reduce((a, x) => a + x.sm90S, 0);
    return [c.reduction.splitK, t.map((x) => (sm90a ? x.sm90aS : x.sm90S))] as const;
  }));
  const s = leastRegretSplit(times);
  return candidates.find((c) => c.reduction.splitK === s)!.reduction;
}
