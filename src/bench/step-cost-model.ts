/**
 * A whole decode step on a GPU, predicted before one measures it (issue 16's targets): the
 * step's launches as the cuda backend issues them (step-launches.ts: the runner itself on a
 * recording device), each priced by the model of its kernel, plus the launch and host costs of
 * running them one by one or as one CUDA graph. Pure: spec + step + machine + registers in.
 *
 *   step-model-context.ts  what the pricing needs of a model once: the compile's manifest and plans,
 *                          the kernels' registers (stepModelContext).
 *   step-launch-price.ts   each launch priced by the model of its kernel: GEMM, attention, other
 *                          (priceLaunch).
 *   step-timeline.ts       the priced kernels run one by one, as one graph, with PDL: GPU and host
 *                          time (stepTimes, pdlStepTimes).
 *   step-overheads.ts      the launch and host constants of those timelines, with their sources.
 *   roofline    roofline.ts stepCost at the machine's copy and matmul rates.
 *
 * This module prices a recorded step (priceStep, predictStep) and re-exports the others: it is the
 * one other modules import.
 */
import { parseVariantName } from '../codegen/variant-name.js';
import { type Roofline, type StepCost, roofline, stepCost } from './roofline.js';
import { type RecordedStep, recordStep } from './step-launches.js';
import { type LaunchPrice, type LaunchTerm, priceLaunch } from './step-launch-price.js';
import type { StepModelContext } from './step-model-context.js';
import { PDL_OVERHEADS, type PdlOverheads, STEP_OVERHEADS, type StepOverheads } from './step-overheads.js';
import { type ModeTimes, type PdlStep, pdlStepTimes, stepTimes } from './step-timeline.js';

export { PDL_OVERHEADS, type PdlOverheads, STEP_OVERHEADS, type StepOverheads } from './step-overheads.js';
export { SM90A_RECORDED_REGISTERS, type StepModelContext, type StepPath, type StepRegisters, stepModelContext } from './step-model-context.js';
export {
  type LaunchPrice, type LaunchTerm, OP_PTXAS, type PrefetchTerms, ROW_STATS_MERGE_PTXAS, prefetchedGemmS, priceLaunch,
} from './step-launch-price.js';
export { type ModeTimes, type PdlStep, pdlEarlyShare, pdlKernel, pdlLeadS, pdlStepTimes, stepTimes } from './step-timeline.js';

export interface StepPrediction {
  readonly model: string;
  readonly step: string;
  readonly tokens: number;
  readonly prefix: number;
  readonly launches: number;
  /** RMSNorms folded into the GEMMs around them (fold-design.md): the producer GEMM launches (o, down) that write one. */
  readonly foldedNorms: number;
  readonly prices: readonly LaunchPrice[];
  readonly gemmS: number;
  readonly attentionS: number;
  readonly otherS: number;
  readonly kernelS: number;
  readonly uploadBytes: number;
  readonly downloadBytes: number;
  /** Host<->device copies the step issues (the recorded step's; what the host-time terms count: copies.uploads, copies.downloads). */
  readonly uploads: number;
  readonly downloads: number;
  /** PDL off: plain launches (cuLaunchKernel), as an sm_8x device or `--no-pdl` runs them. */
  readonly graphs: ModeTimes;
  readonly direct: ModeTimes;
  /** PDL on (what an H200 runs by default): the same launches with the overlap of pdlStep. */
  readonly pdl: PdlStep;
  readonly roofline: Roofline & StepCost;
}

/** The step's shape for roofline.ts: AR 1 token and 1 lm_head row, tidar_k<K> K(K+1) tokens and 2K - 1 rows. */
function rooflineShape(step: string, prefix: number): { tokens: number; lmHeadRows: number; prefix: number } {
  const key = parseVariantName(step);
  if (key?.kind === 'tidar') return { tokens: key.draft * (key.draft + 1), lmHeadRows: 2 * key.draft - 1, prefix };
  return { tokens: 1, lmHeadRows: 1, prefix };
}

/** Prices one recorded step (recordStep). */
export function priceStep(c: StepModelContext, rec: RecordedStep, prefix: number, o: StepOverheads = STEP_OVERHEADS, p: PdlOverheads = PDL_OVERHEADS): StepPrediction {
  const prices = rec.launches.map((l) => priceLaunch(c, l, prefix, o));
  const sum = (t: LaunchTerm): number => prices.filter((p) => p.term === t).reduce((a, p) => a + p.gpuS, 0);
  const uploadBytes = rec.uploads.reduce((a, b) => a + b, 0), downloadBytes = rec.downloads.reduce((a, b) => a + b, 0);
  const copies = { uploads: rec.uploads.length, downloads: rec.downloads.length, bytes: uploadBytes + downloadBytes };
  const times = stepTimes(prices.map((p) => p.gpuS), copies, c.machine, o);
  const pdl = pdlStepTimes(prices, copies, c.machine, o, p);
  const cost = stepCost(c.spec, rooflineShape(rec.variant, prefix));
  const limit = roofline(cost, { copyBytesPerMs: c.machine.copyBytesPerS / 1e3, matmulFlopsPerMs: c.machine.matmulFlops / 1e3, how: c.machine.name });
  return {
    model: c.spec.name, step: rec.variant, tokens: rec.tokens, prefix, launches: rec.launches.length, foldedNorms: prices.filter((x) => x.fold && 'normOut' in x.fold).length, prices,
    gemmS: sum('gemm'), attentionS: sum('attention'), otherS: sum('other'), kernelS: prices.reduce((a, p) => a + p.gpuS, 0),
    uploadBytes, downloadBytes, uploads: copies.uploads, downloads: copies.downloads, ...times, pdl, roofline: { ...cost, ...limit },
  };
}

/**
 * Records and prices one decode step (`ar`, `tidar_k<K>`) at committed prefix `prefix`, as the
 * runtime runs it by default (the RMSNorms folded where it folds them); `fold.foldNorms` false: unfolded
 * (`--no-fold-norms`).
 */
export function predictStep(c: StepModelContext, step: string, prefix: number, o: StepOverheads = STEP_OVERHEADS, p: PdlOverheads = PDL_OVERHEADS, fold: { readonly foldNorms?: boolean } = {}): StepPrediction {
  return priceStep(c, recordStep(c.spec, step, prefix, { manifest: c.manifest, sms: c.machine.sms, ...fold }), prefix, o, p);
}

/**
 * The fold a measured step ran with, for its prediction: an e2e row's foldNorms (scripts/device-check/e2e.py:
 * the default run's bench-step JSON) true where the runtime folded the norms; absent (a tidarc before the
 * fold) or false: unfolded.
 */
export function measuredFold(r: { readonly foldNorms?: unknown }): { readonly foldNorms: boolean } {
  return { foldNorms: r.foldNorms === true };
}
