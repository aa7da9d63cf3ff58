/**
 * An optimisation not built, priced by the step cost model, so that a device's measured launch
 * constants (`bench:step --overheads FILE`) say what it would save before anyone builds it.
 *
 *   fold-norms  the RMSNorm launched right after a residual GEMM (o_proj, down_proj: x += y) folded
 *               into the GEMMs around it: the residual GEMM's epilogue also writes the row's
 *               16-bit x * gamma and its sums of squares per 64 columns, and the next GEMM (qkv,
 *               gate_up, lm_head) scales each output row by 1 / rms in its epilogue; the launch is
 *               gone. The rounding moves (16-bit x * gamma, the scale after the sum, where today
 *               16-bit x * gamma / rms feeds the sum), a row's result still does not depend on the
 *               step's rows. Priced: the launch removed (its time, its boundary and PDL overlap
 *               recomputed by the step's timeline), the producer's extra bytes (2 a 16-bit element,
 *               4 a 64-column sum) at the copy rate; the consumer's scale is free beside its
 *               weights. Layer 0's input norm (after the embedding) stays. Not built. The simpler
 *               fold, the residual GEMM's last CTA running the norm over all rows, loses: its serial
 *               tail (~1 us + rows x hidden x 10 B at one SM's share of L2) saves 8.7% at 0.6B AR
 *               but costs 11% at k = 4 and 53% at k = 8 by the same model.
 *
 * Pure: a step's prices in, the folded prices and both timelines out.
 */
import type { Machine } from '../codegen/machine.js';
import type { StepModelContext } from './step-model-context.js';
import type { LaunchPrice } from './step-launch-price.js';
import { PDL_OVERHEADS, type PdlOverheads, STEP_OVERHEADS, type StepOverheads } from './step-overheads.js';
import { type ModeTimes, type PdlStep, pdlStepTimes, stepTimes } from './step-timeline.js';
import { type StepPrediction, predictStep } from './step-cost-model.js';

export const WHAT_IFS = ['fold-norms'] as const;
export type WhatIf = (typeof WHAT_IFS)[number];

const RMSNORM = 'tidarc_op_rmsnorm';
/** The GEMMs whose epilogue adds the residual (x += y): the norm after them can fold into them. */
const RESIDUAL_ROLES: ReadonlySet<string> = new Set(['o', 'down']);
/** Columns a sum of squares covers (one per 64 output columns of the residual GEMM). */
const SUM_COLUMNS = 64;

/** `prices` with every RMSNorm right after a residual GEMM folded into it; `folded`: how many. */
export function foldNorms(prices: readonly LaunchPrice[], rows: number, hidden: number, machine: Machine): { readonly prices: LaunchPrice[]; readonly folded: number } {
  const extraBytes = rows * hidden * 2 + rows * Math.ceil(hidden / SUM_COLUMNS) * 4;
  const out: LaunchPrice[] = [];
  let folded = 0;
  for (const p of prices) {
    const prev = out[out.length - 1];
    if (p.kernel === RMSNORM && prev?.term === 'gemm' && prev.role !== undefined && RESIDUAL_ROLES.has(prev.role)) {
      out[out.length - 1] = { ...prev, gpuS: prev.gpuS + extraBytes / machine.copyBytesPerS, bytes: prev.bytes + extraBytes };
      folded++;
    } else {
      out.push(p);
    }
  }
  return { prices: out, folded };
}

export interface WhatIfStep {
  readonly step: string;
  readonly prefix: number;
  readonly launches: { readonly now: number; readonly then: number };
  /** GPU ms with graphs, PDL on (what an H200 runs) and off, now and with the change. */
  readonly graphsPdlMs: { readonly now: number; readonly then: number };
  readonly graphsMs: { readonly now: number; readonly then: number };
}

/** One step priced now and with `whatIf` applied, with the same constants. */
export function whatIfStep(c: StepModelContext, whatIf: WhatIf, step: string, prefix: number, o: StepOverheads = STEP_OVERHEADS, p: PdlOverheads = PDL_OVERHEADS): WhatIfStep {
  const now: StepPrediction = predictStep(c, step, prefix, o, p);
  const copies = { uploads: now.uploads, downloads: now.downloads, bytes: now.uploadBytes + now.downloadBytes };
  const { prices } = foldNorms(now.prices, now.tokens, c.spec.hiddenSize, c.machine);
  const then: { graphs: ModeTimes } = stepTimes(prices.map((x) => x.gpuS), copies, c.machine, o);
  const thenPdl: PdlStep = pdlStepTimes(prices, copies, c.machine, o, p);
  return {
    step, prefix, launches: { now: now.launches, then: prices.length },
    graphsPdlMs: { now: now.pdl.graphs.gpuS * 1e3, then: thenPdl.graphs.gpuS * 1e3 },
    graphsMs: { now: now.graphs.gpuS * 1e3, then: then.graphs.gpuS * 1e3 },
  };
}
