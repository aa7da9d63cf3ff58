/**
 * A built optimisation priced both ways by the step cost model, with the same constants, so that a
 * device's measured launch constants (`bench:step --overheads FILE`) say what it saves there, and
 * the device check's A/B (scripts/device-check/e2e.py) has the prediction its measurement meets.
 *
 *   fold-norms  the RMSNorms folded into the GEMMs around them (fold-design.md; the runtime's
 *               default where the units have the epilogues and the model is bf16, `--no-fold-norms`
 *               off): the residual GEMM (o_proj, down_proj: x += y) also writes the row's 16-bit
 *               gamma * x and its float64 sums of squares per 64 columns, the next GEMMs (qkv,
 *               gate_up, lm_head) scale each output row by 1 / rms in their epilogue, and the norm's
 *               launch is gone (layer 0's input norm, after the embedding, stays). Both steps are
 *               the runner's own launches (step-launches.ts recordStep with and without the option),
 *               each priced as predictStep prices it: the producers' extra bytes and the consumers'
 *               reads are the GEMM cost models' (gemm-cost-model.ts normFoldBytes), the launches
 *               removed and the PDL overlap the step's timeline.
 *
 * Pure: a model's pricing context in, the two predictions' figures out.
 */
import type { StepModelContext } from './step-model-context.js';
import { PDL_OVERHEADS, type PdlOverheads, STEP_OVERHEADS, type StepOverheads } from './step-overheads.js';
import { type StepPrediction, predictStep } from './step-cost-model.js';

export const WHAT_IFS = ['fold-norms'] as const;
export type WhatIf = (typeof WHAT_IFS)[number];

/** A figure of the step without the optimisation (`unfolded`: `--no-fold-norms`) and with it (`folded`: the runtime's default). */
export interface Both {
  readonly unfolded: number;
  readonly folded: number;
}

export interface WhatIfStep {
  readonly step: string;
  readonly prefix: number;
  /** Norms the runtime folds in this step (0: it folds none here, and the two columns are equal). */
  readonly foldedNorms: number;
  readonly launches: Both;
  /** GPU ms with graphs, PDL on (what an H200 runs) and off. */
  readonly graphsPdlMs: Both;
  readonly graphsMs: Both;
}

/** One step priced with the norms folded (as the runtime runs it by default) and unfolded, with the same constants. */
export function whatIfStep(c: StepModelContext, _whatIf: WhatIf, step: string, prefix: number, o: StepOverheads = STEP_OVERHEADS, p: PdlOverheads = PDL_OVERHEADS): WhatIfStep {
  const folded: StepPrediction = predictStep(c, step, prefix, o, p);
  const unfolded: StepPrediction = predictStep(c, step, prefix, o, p, { foldNorms: false });
  const both = (f: (x: StepPrediction) => number): Both => ({ unfolded: f(unfolded), folded: f(folded) });
  return {
    step, prefix, foldedNorms: folded.foldedNorms, launches: both((x) => x.launches),
    graphsPdlMs: both((x) => x.pdl.graphs.gpuS * 1e3), graphsMs: both((x) => x.graphs.gpuS * 1e3),
  };
}
