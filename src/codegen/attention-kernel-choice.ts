/**
 * Which attention kernel a 9.0 device runs for a variant that has an sm_90a one, when no tune
 * record says (issue 18 item 3, "selection as data"): the compile records the cost models'
 * choice on the manifest (ManifestAttentionSm90a.heuristic) and the runtime follows it
 * (attention-launch.ts attentionKernelOf: tuned record, else this, else the arch rule).
 *
 * The rule is the tune's on measured times (tune/report.ts sm90aChoice, sm90aKernelOf below):
 * sm_90a where its time over the mma.sync plan's is below 1 on geometric mean over the shapes,
 * here predicted on the H200 (machine.ts) at the row-tile choice's shapes (L = 4k and 16k,
 * batch 1 and 8: row-tile-choice.ts REFERENCE_SHAPES). Memory-bound variants (AR-like step
 * sizes whose sm_90a tiles are mostly padding) thus keep mma.sync unless the model predicts
 * otherwise. Registers: the mma.sync plan at the planner's figure (plan.ts plannedRegisters: ptxas's
 * recorded registers for 32-row warps, the estimate for 16-row ones, as the row-tile choice prices
 * it: the compile runs no ptxas before it plans), the sm_90a kernel
 * at ptxas's recorded figure (SM90A_ATTENTION_REGISTERS). Pure.
 */
import { predictAttention } from './attention-cost-model.js';
import { splitsFor } from './call-params.js';
import { planAttentionSm90a } from './attention-sm90a.js';
import { predictAttentionSm90a } from './attention-sm90a-cost-model.js';
import { H200 } from './machine.js';
import { occupancy } from './occupancy.js';
import { type AttentionPlan, plannedRegisters } from './plan.js';
import { REFERENCE_SHAPES } from './row-tile-choice.js';
import { splitKernel } from './splits.js';

/** Registers a thread of the sm_90a attention as ptxas (nvcc 13.0, sm_90a) reported them at most, 2026-12-05 (bench/attention-sm90a.ts's table; step-model-context.ts SM90A_RECORDED_REGISTERS): 160 since the dynamic split ids, 1 CTA an SM as at 138. */
export const SM90A_ATTENTION_REGISTERS = 160;

/** The kernel a 9.0 device takes and the sm_90a / mma.sync time ratio (geometric mean) that chose it. */
export interface Sm90aHeuristic {
  readonly kernel: 'sm_90' | 'sm_90a';
  readonly ratio: number;
}

/** The rule over per-shape sm_90a / mma.sync time ratios (at least one): geometric mean below 1 takes sm_90a. */
export function sm90aKernelOf(ratios: readonly number[]): Sm90aHeuristic {
  const ratio = Math.exp(ratios.reduce((sum, r) => sum + Math.log(r), 0) / ratios.length);
  return { kernel: ratio < 1 ? 'sm_90a' : 'sm_90', ratio };
}

/**
 * Predicted seconds of each kernel at each reference shape, each at the split count the runtime
 * gives its launch (attention-launch.ts: splitsFor over the variant's plan, with the row tiles
 * and CTAs an SM of the kernel that runs), so the choice prices what a 9.0 device would run.
 */
export function sm90aAttentionTimes(plan: AttentionPlan): { readonly shape: { readonly prefix: number; readonly batch: number }; readonly sm90S: number; readonly sm90aS: number; readonly sm90aSplits: number }[] {
  const sm90a = planAttentionSm90a(plan.variant);
  const { headDim, kvHeads } = plan.variant.shape;
  const { ctasPerSm } = occupancy(H200.arch, { registers: plannedRegisters(plan, H200.arch), sharedBytes: plan.sharedBytes, threads: plan.threads });
  const sm90aPerSm = occupancy(H200.arch, { registers: SM90A_ATTENTION_REGISTERS, sharedBytes: sm90a.sharedBytes, threads: sm90a.threads }).ctasPerSm;
  const kernel = splitKernel({ ...plan, tileN: plan.tile.tileN, headDim });
  return REFERENCE_SHAPES.map((shape) => {
    const sm90aSplits = splitsFor({ tuned: undefined, workItems: shape.batch * kvHeads * sm90a.rowTiles, sms: H200.sms, ctasPerSm: sm90aPerSm, prefixTiles: Math.ceil(shape.prefix / plan.tile.tileN), kernel });
    return {
      shape, sm90aSplits,
      sm90S: predictAttention(plan, shape, H200, ctasPerSm).predictedS,
      sm90aS: predictAttentionSm90a(sm90a, shape, H200, SM90A_ATTENTION_REGISTERS, sm90aSplits).predictedS,
    };
  });
}

/** The cost models' choice for a variant that has an sm_90a kernel, its ratio rounded to 4 digits for the manifest. */
export function sm90aAttentionHeuristic(plan: AttentionPlan): Sm90aHeuristic {
  const choice = sm90aKernelOf(sm90aAttentionTimes(plan).map((t) => t.sm90aS / t.sm90S));
  return { kernel: choice.kernel, ratio: Number(choice.ratio.toFixed(4)) };
}
