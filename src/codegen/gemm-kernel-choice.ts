/**
 * Which GEMM family a 9.0 device runs for a weight shape that has an sm_90a unit, when no tune
 * record says (issue 18 item 3, "selection as data"): as the tune decides (tune/gemm-space.ts
 * chooseGemmKernel: one family per weight shape over every M), on the cost models' predictions
 * instead of measured times. Per unit, the predicted seconds summed over the row counts the
 * compile plans (its step kinds): mma.sync at each M's planned tile (gemm-cost-model.ts
 * predictGemm, registers by gemm-registers.ts's ptxas table, as the tile choice prices them), sm_90a
 * at the kernel the unit launches for that M (gemm-sm90a-cost-model.ts, its ring depth as planned,
 * registers by its token tile and split-K from ptxas's table, gemm-sm90a.ts sm90aRegisters, as the
 * ring depth is sized); sm_90a where its sum over mma.sync's is below 1. The compile records it
 * on the unit (ManifestGemmSm90a.heuristic) and gpu-gemm-sm90a.ts tunedSm90aUnits follows it. Pure.
 * Each role of the unit is priced with the epilogue it launches with: o and down carry the
 * residual add (RESIDUAL_ROLES: an M x N float32 read of the old output beside its write, in
 * both families' store loop), gate_up the SwiGLU. Without the residual read the memory-bound
 * o and down looked cheaper than they run, by the same bytes on both families but not the
 * same share of each one's time.
 */
import { type GemmLaunchPrediction, predictGemm } from './gemm-cost-model.js';
import { gemmEpilogues } from './gemm-epilogue.js';
import type { GemmRole, GemmUnit } from './gemm-model.js';
import { gemmRegisters } from './gemm-registers.js';
import { sm90aBlockW, sm90aRegisters, sm90aStages, sm90aTokenTile } from './gemm-sm90a.js';
import { predictSm90aGemm } from './gemm-sm90a-cost-model.js';
import { H200, type Machine } from './machine.js';

/**
 * Roles whose GEMM accumulates into the residual stream (ir/step-rewrite.ts foldResidualAdds
 * folds `x += linear(...)` into the GEMM for these; test/codegen/gemm-kernel-choice.test.ts
 * checks the list against the rewritten step graph).
 */
export const RESIDUAL_ROLES: readonly GemmRole[] = ['o', 'down'];

/** The epilogue a role's launches run: the residual read (accumulate) or the SwiGLU, as the runner passes them. */
export function roleEpilogue(u: Pick<GemmUnit, 'shape' | 'roles'>, role: GemmRole): { readonly accumulate: boolean; readonly epilogue: 'none' | 'swiglu' } {
  const swiglu = role === 'gate_up' && gemmEpilogues(u.shape, u.roles).swigluInterleave !== undefined;
  return { accumulate: RESIDUAL_ROLES.includes(role), epilogue: swiglu ? 'swiglu' : 'none' };
}

/**
 * Each planned M's predicted seconds on either family: one launch per role of the unit, each with
 * its epilogue, on `machine` (the kernels stay as the compile plans them: their rings are sized
 * for the H200). On the H200's assumed 700 ns a ring of 4 stages or more fills HBM even at 1 CTA
 * an SM, so registers move no figure there; past it they do (the rings are sized for 1050 ns).
 */
export function sm90aGemmTimes(u: Pick<GemmUnit, 'shape' | 'roles' | 'reduction' | 'plans'>, machine: Machine = H200): { readonly m: number; readonly sm90S: number; readonly sm90aS: number }[] {
  const ms = u.plans.map((p) => p.m);
  return u.plans.map((p) => {
    const tileT = sm90aTokenTile(p.m), stages = sm90aStages(u.shape, u.reduction, tileT, ms);
    const registers = gemmRegisters(p, p.reduction.splitK).registers;
    const sum = (predict: (o: ReturnType<typeof roleEpilogue>) => GemmLaunchPrediction): number => u.roles.reduce((a, role) => a + predict(roleEpilogue(u, role)).predictedS, 0);
    return {
      m: p.m,
      sm90S: sum((o) => predictGemm(p, p.m, machine, registers, o)),
      sm90aS: sum((o) => predictSm90aGemm(u.shape, u.reduction, tileT, p.m, machine, sm90aRegisters(tileT, u.reduction.splitK), { ...o, blockW: sm90aBlockW(tileT), stages })),
    };
  });
}

/** The family of the least predicted sum over the unit's row counts, and sm_90a's sum over mma.sync's (4 digits). */
export function sm90aGemmHeuristic(u: Pick<GemmUnit, 'shape' | 'roles' | 'reduction' | 'plans'>): { readonly kernel: 'sm_90' | 'sm_90a'; readonly ratio: number } {
  const times = sm90aGemmTimes(u);
  const ratio = times.reduce((a, t) => a + t.sm90aS, 0) / times.reduce((a, t) => a + t.sm90S, 0);
  return { kernel: ratio < 1 ? 'sm_90a' : 'sm_90', ratio: Number(ratio.toFixed(4)) };
}
