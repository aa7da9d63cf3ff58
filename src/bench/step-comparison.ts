/**
 * What `bench:step -- --compare` finds (step-compare.ts compareSteps makes it, step-compare-lines.ts
 * prints it): per measured e2e step, the predictions under each set of constants and the share of
 * the miss they explain, with the run's host time beside the model's. Data only, and the words a
 * run is named by in the table and the warnings.
 */
import type { MeasuredStepOverheads } from './step-overheads-file.js';
import type { HostStepDerivation } from './step-host.js';

/** A miss (measured against the base prediction) past this share is explained; below it the row is "within". */
export const MISS_SHARE = 0.05;
/** The bundled prediction and the recomputed one agree within this relative difference, or the row is warned about. */
export const BUNDLE_TOLERANCE = 1e-6;

/** Which of the e2e part's measurements: the default run with graphs, launch by launch, and the graphs run with --no-pdl. */
export type CompareMode = 'graphs' | 'launches' | 'noPdl';

export type Setting = 'assumed' | 'ceilings' | 'overheads' | 'both';
export const SETTINGS: readonly Setting[] = ['assumed', 'ceilings', 'overheads', 'both'];

export interface ModeComparison {
  readonly mode: CompareMode;
  /** Whether the prediction is PDL's (the row's default run had PDL; never for noPdl). */
  readonly pdl: boolean;
  readonly measuredMs: number;
  /** The bundle's prediction (the row's `predicted`), null where the row has none. */
  readonly bundledMs: number | null;
  /** Predictions under each setting, ms. */
  readonly predictedMs: Readonly<Record<Setting, number>>;
  /** The bundled prediction equals the assumed recomputation (within BUNDLE_TOLERANCE); null without one. */
  readonly bundleMatches: boolean | null;
  /** What the shares are against: the bundled prediction, or the assumed recomputation where that differs or is missing. */
  readonly base: 'bundled' | 'assumed';
  readonly baseMs: number;
  /** measured / base and measured / both. */
  readonly measuredOverBase: number;
  readonly measuredOverBoth: number;
  /** (x - base) / (measured - base) for x = ceilings, overheads, both; null where the miss is within MISS_SHARE. */
  readonly explained: { readonly ceilings: number; readonly overheads: number; readonly both: number } | null;
  /** measured - both: the kernels or an unmodelled cost. */
  readonly residualMs: number;
  /** The run's host time (bench-step's hostMs) beside the model's; null where the run recorded none. */
  readonly host: ModeHost | null;
}

/** A run's host time per step: measured, predicted, and what of it the decoder's own work is. */
export interface ModeHost {
  readonly measuredMs: number;
  /** The bundle's prediction (hostGraphsMs / hostLaunchesMs; the graphs' for --no-pdl: the model's host time does not depend on PDL), null without one. */
  readonly bundledMs: number | null;
  /** The model with the overheads part's constants (assumed where it has none) and the derived hostStepS. */
  readonly predictedMs: number;
  /** The launches' and uploads' calls, and the rest: the decoder's own (this run's hostStepS), ms. */
  readonly callsMs: number;
  readonly decoderMs: number;
  /** measured host ms / measured step ms, and issue 16's target (<= 5%) met; null without a step time. */
  readonly share: number | null;
  readonly met: boolean | null;
}

export interface RowComparison {
  readonly model: string;
  readonly layers: number;
  readonly prefix: number;
  readonly step: string;
  /** The row's default run had PDL (true / false), or did not say (null). */
  readonly pdl: boolean | null;
  /** One per measured mode; empty where the part measured none of them (the point was skipped or failed) or it has no spec. */
  readonly modes: readonly ModeComparison[];
  /** Measured, but no spec of its model to predict it with. */
  readonly unpriced?: boolean;
  readonly warnings: readonly string[];
}

export interface StepComparison {
  readonly file: string;
  readonly device: string;
  readonly date: string | null;
  readonly dryRun: boolean;
  /** The machine the predictions are for (the check's predictedFor), and its label ('H200', 'H200, not this GPU'). */
  readonly machine: string;
  readonly machineLabel: string;
  /** The ceilings used (TB/s, TFLOP/s), with the assumed ones; null where the file has none (then ceilings = assumed). */
  readonly ceilings: { readonly copyTBs: number; readonly matmulTflops: number; readonly assumedCopyTBs: number; readonly assumedMatmulTflops: number } | null;
  /** The measured overheads used; null where the file has none usable (then overheads = assumed). */
  readonly overheads: MeasuredStepOverheads | null;
  /** hostStepS derived from the e2e rows' host times (step-host.ts), with each run's residual. */
  readonly host: HostStepDerivation;
  /** The e2e part's models with fewer layers than the model they stand for ('qwen3-8b-shape-4l: 4 of 36'). */
  readonly partialLayers: readonly string[];
  /** Why a set of constants was not used, the bundle's differences from the model, and the like. */
  readonly notes: readonly string[];
  /** Every row's warnings and the file's, in one list (what is printed last). */
  readonly warnings: readonly string[];
  readonly rows: readonly RowComparison[];
}

/** The run's words: PDL on ('+ PDL'), off ('PDL off'), or not recorded by the run (null: priced without, as e2e.py does). */
export function modeText(mode: CompareMode, pdl: boolean | null): string {
  return mode === 'noPdl' ? 'graphs, --no-pdl' : `${mode === 'graphs' ? 'graphs' : 'launch by launch'}${pdl === true ? ' + PDL' : pdl === false ? ', PDL off' : ', PDL not said'}`;
}
