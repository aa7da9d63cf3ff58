/**
 * Whole-step predictions over models x prefixes x step kinds (step-cost-model.ts), and issue 16's
 * targets read from them: what `npm run bench:step` prints and what the device check's bundle
 * carries for its e2e part to print beside what it measures (e2e_predictions.json). Pure.
 */
import type { Machine } from '../codegen/machine.js';
import { AR_VARIANT, tidarVariantName } from '../codegen/variant-name.js';
import type { ModelSpec } from '../ir/model.js';
import { PDL_OVERHEADS, type PdlOverheads, STEP_OVERHEADS, type StepOverheads, type StepPath, type StepPrediction, type StepRegisters, predictStep, stepModelContext } from './step-cost-model.js';

/** A Qwen3-shaped spec, as scripts/device-check/e2e_cost.py qwen3_spec writes it. */
export function qwen3Shape(name: string, layers: number, hidden: number, qHeads: number, kvHeads: number, headDim: number, inter: number, vocab: number, drafts: readonly number[], tie: boolean): ModelSpec {
  return {
    name, family: 'qwen3', layers, hiddenSize: hidden, queryHeads: qHeads, kvHeads, headDim, intermediateSize: inter, vocabSize: vocab,
    ropeTheta: 1e6, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: tie, dtype: 'bf16', maskTokenId: 151662, draftLengths: [...drafts], maxPositionEmbeddings: 40960,
  };
}

/** Issue 16's two models at full depth (e2e_cost.py gpu_models, every layer). */
export const QWEN3_0_6B = qwen3Shape('qwen3-0.6b-shape', 28, 1024, 16, 8, 128, 3072, 151936, [4, 8, 16], true);
export const QWEN3_8B = qwen3Shape('qwen3-8b-shape', 36, 4096, 32, 8, 128, 12288, 151936, [4, 8, 16], false);
export const STEP_PREFIXES = [1024, 4096] as const;

/** One row of the table: a step of a model at a prefix, in ms. */
export interface StepRow {
  readonly model: string;
  readonly layers: number;
  readonly prefix: number;
  readonly step: string;
  readonly tokens: number;
  readonly launches: number;
  readonly gemmMs: number;
  /** GEMM ms by role (lm_head: every pass of the step). */
  readonly gemmRoleMs: Readonly<Record<string, number>>;
  readonly attentionMs: number;
  readonly otherMs: number;
  /** GPU time with graphs less the kernels' own. */
  readonly overheadMs: number;
  /** PDL off (plain launches: an sm_8x device, or `--no-pdl`). */
  readonly graphs: { readonly gpuMs: number; readonly hostMs: number };
  readonly launchByLaunch: { readonly gpuMs: number; readonly hostMs: number };
  /** PDL on (what an H200 runs by default; step-timeline.ts pdlStepTimes). */
  readonly pdl: {
    readonly graphs: { readonly gpuMs: number; readonly hostMs: number };
    readonly launchByLaunch: { readonly gpuMs: number; readonly hostMs: number };
    /** GPU time with graphs less the kernels' own (with PDL). */
    readonly overheadMs: number;
    readonly kernelMs: number;
    /** Weight bytes the GEMMs had in L2 at their wait, MB (graphs). */
    readonly prefetchedMB: number;
    /** Kernel pairs whose second kernel's CTAs all / some / none fit beside the first's. */
    readonly pairs: { readonly all: number; readonly some: number; readonly none: number };
    readonly unfit: readonly { readonly from: string; readonly to: string; readonly count: number; readonly early: number }[];
  };
  readonly rooflineMs: number;
  readonly rooflineBound: 'memory' | 'compute';
  /** Roofline bytes: weights (the GEMMs' share) and K/V (attention's), for the target's responsible term. */
  readonly weightMs: number;
  readonly kvMs: number;
  /** RMSNorms the runtime folds into the GEMMs in this step (fold-design.md); the figures above are the folded step's. */
  readonly foldedNorms: number;
  /** Where it folds some: the same step unfolded (`--no-fold-norms`), priced with the same constants. */
  readonly noFold?: StepTimes;
}

/** A step's launches and GPU / host ms, PDL off and on (what StepRow says of a step beside its parts). */
export interface StepTimes {
  readonly launches: number;
  readonly graphs: { readonly gpuMs: number; readonly hostMs: number };
  readonly launchByLaunch: { readonly gpuMs: number; readonly hostMs: number };
  readonly pdl: { readonly graphs: { readonly gpuMs: number; readonly hostMs: number }; readonly launchByLaunch: { readonly gpuMs: number; readonly hostMs: number } };
}

function stepTimesOf(p: StepPrediction): StepTimes {
  const ms = (s: number): number => s * 1e3;
  return {
    launches: p.launches, graphs: { gpuMs: ms(p.graphs.gpuS), hostMs: ms(p.graphs.hostS) }, launchByLaunch: { gpuMs: ms(p.direct.gpuS), hostMs: ms(p.direct.hostS) },
    pdl: { graphs: { gpuMs: ms(p.pdl.graphs.gpuS), hostMs: ms(p.pdl.graphs.hostS) }, launchByLaunch: { gpuMs: ms(p.pdl.direct.gpuS), hostMs: ms(p.pdl.direct.hostS) } },
  };
}

function roleMs(p: StepPrediction): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of p.prices) if (x.role !== undefined) out[x.role] = (out[x.role] ?? 0) + x.gpuS * 1e3;
  return out;
}

function row(spec: ModelSpec, p: StepPrediction, machine: Machine, unfolded?: StepPrediction): StepRow {
  const ms = (s: number): number => s * 1e3;
  return {
    model: spec.name, layers: spec.layers, prefix: p.prefix, step: p.step, tokens: p.tokens, launches: p.launches,
    gemmMs: ms(p.gemmS), gemmRoleMs: roleMs(p), attentionMs: ms(p.attentionS), otherMs: ms(p.otherS), overheadMs: ms(p.graphs.overheadS),
    graphs: { gpuMs: ms(p.graphs.gpuS), hostMs: ms(p.graphs.hostS) }, launchByLaunch: { gpuMs: ms(p.direct.gpuS), hostMs: ms(p.direct.hostS) },
    pdl: {
      graphs: { gpuMs: ms(p.pdl.graphs.gpuS), hostMs: ms(p.pdl.graphs.hostS) }, launchByLaunch: { gpuMs: ms(p.pdl.direct.gpuS), hostMs: ms(p.pdl.direct.hostS) },
      overheadMs: ms(p.pdl.graphs.overheadS), kernelMs: ms(p.pdl.kernelS), prefetchedMB: p.pdl.prefetchedBytes / 1e6, pairs: p.pdl.pairs, unfit: p.pdl.unfit,
    },
    rooflineMs: p.roofline.rooflineMs, rooflineBound: p.roofline.bound,
    weightMs: ms(p.roofline.weightBytes / machine.copyBytesPerS), kvMs: ms(p.roofline.kvBytes / machine.copyBytesPerS),
    foldedNorms: p.foldedNorms, ...(unfolded && p.foldedNorms > 0 ? { noFold: stepTimesOf(unfolded) } : {}),
  };
}

/**
 * Every step kind of the model (AR, then each draft length) at each prefix, on the kernels of `path`,
 * with the launch and host constants `o` and `p` (the assumed ones, or a device's: step-overheads-file.ts),
 * as the runtime runs them by default (the RMSNorms folded where it folds them: then each row's noFold
 * is the same step with --no-fold-norms).
 */
export function predictSteps(spec: ModelSpec, prefixes: readonly number[], machine: Machine, registers: StepRegisters, path: StepPath = 'sm_90a',
  o: StepOverheads = STEP_OVERHEADS, p: PdlOverheads = PDL_OVERHEADS): StepRow[] {
  const c = stepModelContext(spec, machine, registers, path);
  const steps = [AR_VARIANT, ...spec.draftLengths.map(tidarVariantName)];
  return prefixes.flatMap((L) => steps.map((s) => {
    const folded = predictStep(c, s, L, o, p);
    return row(spec, folded, machine, folded.foldedNorms > 0 ? predictStep(c, s, L, o, p, { foldNorms: false }) : undefined);
  }));
}

/**
 * transformers eager, roughly (for the last target only): host-bound, each of a Qwen3 decoder
 * layer's ~55 torch ops (RMSNorm as 7 elementwise ops x 4 norms, q/k/v/o and 3 MLP projections,
 * RoPE ~5 ops on q and k, the cache's cat, SDPA, SiLU, mul, 2 residual adds) costing ~7 us of
 * Python, dispatcher and launch. Both figures are assumptions, not measurements.
 */
export const EAGER_OPS_PER_LAYER = 55;
export const EAGER_HOST_PER_OP_S = 7e-6;

export interface Target {
  readonly goal: string;
  readonly predicted: string;
  readonly value: number;
  readonly limit: number;
  readonly met: boolean;
  /** For a miss: the term that puts it over. */
  readonly responsible?: string;
}

const largest = (terms: readonly (readonly [string, number])[]): string => {
  const [name, v] = terms.reduce((a, b) => (b[1] > a[1] ? b : a));
  return `${name} (${v.toFixed(3)} ms)`;
};

/** A row's figures with PDL on ('pdl': what an H200 runs by default) or off ('plain'): graphs, launch by launch, overhead. */
export type PdlMode = 'pdl' | 'plain';
function modeOf(r: StepRow, mode: PdlMode): StepRow {
  return mode === 'plain' ? r : { ...r, graphs: r.pdl.graphs, launchByLaunch: r.pdl.launchByLaunch, overheadMs: r.pdl.overheadMs };
}

/**
 * Issue 16's targets on the two models' rows (graphs: the step as the runtime launches it by
 * default), with PDL on (default: both modes as an H200 runs them, launch by launch too) or off.
 * The 0.6B "graph-launched AR step >= 2x faster than launch by launch" compares graphs and launch
 * by launch of the same mode: with PDL, graphs + PDL against launch by launch + PDL (host-bound:
 * PDL changes it by under 1%).
 */
export function issue16Targets(all: readonly StepRow[], mode: PdlMode = 'pdl'): Target[] {
  const rows = all.map((r) => modeOf(r, mode));
  const at = (model: string, L: number, step: string): StepRow | undefined => rows.find((r) => r.model === model && r.prefix === L && r.step === step);
  const out: Target[] = [];
  const ar8 = at(QWEN3_8B.name, 4096, AR_VARIANT), k8 = at(QWEN3_8B.name, 4096, tidarVariantName(8));
  if (ar8) {
    const x = ar8.graphs.gpuMs / ar8.rooflineMs;
    out.push({
      goal: 'Qwen3-8B shape, L = 4096: AR step <= 1.25x its roofline', predicted: `${x.toFixed(2)}x (${ar8.graphs.gpuMs.toFixed(3)} / ${ar8.rooflineMs.toFixed(3)} ms)`, value: x, limit: 1.25, met: x <= 1.25,
      responsible: largest([['GEMMs over the weights\' bytes', ar8.gemmMs - ar8.weightMs], ['attention over the K/V bytes', ar8.attentionMs - ar8.kvMs], ['other kernels', ar8.otherMs], ['launch overhead', ar8.overheadMs]]),
    });
  }
  if (ar8 && k8) {
    const x = k8.graphs.gpuMs / ar8.graphs.gpuMs;
    out.push({
      goal: 'Qwen3-8B shape, L = 4096: TiDAR k = 8 step <= 1.15x the AR step', predicted: `${x.toFixed(2)}x`, value: x, limit: 1.15, met: x <= 1.15,
      responsible: `${largest([['GEMMs', k8.gemmMs - ar8.gemmMs], ['attention', k8.attentionMs - ar8.attentionMs], ['other kernels', k8.otherMs - ar8.otherMs], ['launch overhead', k8.overheadMs - ar8.overheadMs]])}; `
        + `the GEMMs by role: ${Object.entries(k8.gemmRoleMs).map(([role, v]) => `${role} +${(v - (ar8.gemmRoleMs[role] ?? 0)).toFixed(3)}`).join(', ')} ms`,
    });
    const host = Math.max(ar8.graphs.hostMs / ar8.graphs.gpuMs, k8.graphs.hostMs / k8.graphs.gpuMs);
    out.push({ goal: 'Qwen3-8B shape, L = 4096: host time per step <= 5% of the step (AR and k = 8)', predicted: `${(100 * host).toFixed(1)}% (worst)`, value: host, limit: 0.05, met: host <= 0.05, responsible: 'host time per step (decoder, copies, graph launch)' });
  }
  const small = rows.filter((r) => r.model === QWEN3_0_6B.name && r.step === AR_VARIANT);
  if (small.length > 0) {
    const x = Math.min(...small.map((r) => r.launchByLaunch.gpuMs / r.graphs.gpuMs));
    out.push({ goal: 'Qwen3-0.6B shape: graph-launched AR step >= 2x faster than launch by launch', predicted: `${x.toFixed(2)}x (worst L)`, value: x, limit: 2, met: x >= 2, responsible: mode === 'pdl' ? 'the kernels\' own time (graphs and PDL remove only launch costs)' : 'the kernels\' own time and the node gaps and ramps PDL would overlap' });
    const eager = QWEN3_0_6B.layers * EAGER_OPS_PER_LAYER * EAGER_HOST_PER_OP_S * 1e3;
    const y = Math.min(...small.map((r) => eager / r.graphs.gpuMs));
    out.push({ goal: 'Qwen3-0.6B shape: AR step faster than transformers eager', predicted: `${y.toFixed(1)}x (eager ~${eager.toFixed(1)} ms, assumed host-bound: ${EAGER_OPS_PER_LAYER} ops a layer x ${EAGER_HOST_PER_OP_S * 1e6} us)`, value: y, limit: 1, met: y > 1, responsible: 'tidarc\'s GPU time' });
  }
  return out.map((t) => (t.met ? (({ responsible: _, ...rest }) => rest)(t) : t));
}

/** What the device check's bundle carries for its e2e part: the predictions per (spec, L, step). */
export interface E2ePredictions {
  readonly format: 1;
  readonly machine: string;
  /** The kernels the predictions price (step-model-context.ts StepPath). */
  readonly path: StepPath;
  readonly registers: string;
  readonly overheads: typeof STEP_OVERHEADS;
  readonly pdlOverheads: typeof PDL_OVERHEADS;
  readonly models: readonly { readonly spec: ModelSpec; readonly rows: readonly StepRow[] }[];
}

export function e2ePredictions(specs: readonly ModelSpec[], prefixes: readonly number[], machine: Machine, registers: StepRegisters, path: StepPath): E2ePredictions {
  return { format: 1, machine: machine.name, path, registers: registers.source, overheads: STEP_OVERHEADS, pdlOverheads: PDL_OVERHEADS, models: specs.map((spec) => ({ spec, rows: predictSteps(spec, prefixes, machine, registers, path) })) };
}
