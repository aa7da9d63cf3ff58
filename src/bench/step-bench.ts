/**
 * Per-step latency of a TiDAR decode step (variant tidar_k<K>) against an AR step (variant ar)
 * at the same committed prefix length L, on the real decoding path (Decoder.step: forward,
 * lm_head argmax, verification, commit), and the share of each step's wall time spent
 * outside the native kernels and operators (the host loop and the JS/native crossings).
 *
 * Protocol:
 *   1. fill the KV cache to L - 1 tokens of random ids: a real causal prefill, or (long L)
 *      a real prefill of REPEAT_SOURCE tokens whose K/V is tiled over the rest: the attention
 *      work per step is the same, the values are not those of any real sequence;
 *   2. each decoder's own prefill of the L-th token (it sets that decoder's drafts);
 *   3. warm-up rounds, then rounds of one TiDAR and one AR step (order alternating, so drift
 *      and other load hit both alike) until >= reps rounds AND >= minSeconds; after every
 *      step the cache length is reset to L, so each step runs at prefix L;
 *   4. per step: wall time, and the time inside native calls (see native-time.ts); on cuda the
 *      GPU time between CUDA events recorded around the step, launches and host<->device bytes;
 *   5. the step's roofline (roofline.ts) from the machine's copy bandwidth and matmul rate,
 *      measured in the same run before the warm-up (machine-peaks.ts).
 */
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { TidarcError } from '../errors.js';
import { type ModelSpec, contextLength } from '../ir/model.js';
import { parameterCount } from '../model/checkpoint.js';
import { seededRandom } from '../util/random.js';
import { cpuThreadCount } from '../runtime/ops.js';
import { Decoder, type DecodeOptions } from '../runtime/model/decoder.js';
import type { Runner } from '../runtime/model/forward.js';
import { GpuModelRunner } from '../runtime/cuda/gpu-runner.js';
import type { BackendChoice } from '../load/load-model.js';
import { type Backend, openModelParts } from '../load/model-parts.js';
import { ATTENTION, CUDA_LAUNCHES, CUDA_WAITS, installNativeTimer, type NativeTotals, totalsSince } from './native-time.js';
import { measureCpuPeaks, measureCudaPeaks } from './machine-peaks.js';
import { type MachinePeaks, type Roofline, type StepCost, roofline, stepCost } from './roofline.js';
import { summarize } from './stats.js';
import { AR_VARIANT, tidarVariantName } from '../codegen/variant-name.js';

export type FillMethod = 'auto' | 'prefill' | 'repeat';

/** Longest prefix 'auto' fills with a real prefill (a 100M model on 2 cores: ~10 s). */
export const REAL_PREFILL_MAX = 1024;
/** Tokens really prefilled by 'repeat'; their K/V is tiled over the rest of the prefix. */
export const REPEAT_SOURCE = 256;
export const OUTSIDE_GOAL = 0.05;

export interface StepBenchOptions {
  readonly dir: string;
  /** Draft length K (default: the largest the model was compiled for). */
  readonly draft?: number;
  /** Committed prefix length L. */
  readonly prefix: number;
  readonly backend?: BackendChoice;
  /** CPU threads (0 or absent: all). */
  readonly threads?: number;
  /** Timed rounds at least (one TiDAR and one AR step each); default 20. */
  readonly reps?: number;
  /** And at least this long; default 2. */
  readonly minSeconds?: number;
  /** Untimed rounds first; default 3. */
  readonly warmup?: number;
  readonly fill?: FillMethod;
  /** Seed of the random prefix ids, and of the sampler. */
  readonly seed?: number;
  /** The steps' sampling (default greedy: temperature 0); > 0 times sampled steps (logits, the device's draw and lossless acceptance). */
  readonly sampling?: { readonly temperature: number; readonly topP: number; readonly topK?: number };
  readonly cacheDir?: string;
  /** A `tidarc tune` database: its tiles and per-shape call parameters (as `compile --tuned`). */
  readonly tuned?: string;
  /** cuda: decode steps as CUDA graphs (default true; see LoadOptions.graphs). */
  readonly graphs?: boolean;
  /** cuda: programmatic dependent launch where allowed (default); false: off (see LoadOptions.pdl). */
  readonly pdl?: boolean;
  /** cuda: fold the RMSNorms into the GEMMs where allowed (default); false: off (see LoadOptions.foldNorms). */
  readonly foldNorms?: boolean;
  readonly log?: (line: string) => void;
  /** How errors name draft, prefix and the backend choice (the CLI passes its flags). */
  readonly optionNames?: Partial<Record<'draft' | 'prefix' | 'backend', string>>;
}

export interface Quantiles {
  readonly median: number;
  readonly p20: number;
  readonly p80: number;
  readonly min: number;
  readonly max: number;
}

export interface StepStats {
  readonly variant: string;
  /** Tokens through the forward: K(K+1) for tidar_k<K>, 1 for ar. */
  readonly inStepTokens: number;
  readonly steps: number;
  /** Wall time of Decoder.step(). */
  readonly stepMs: Quantiles;
  /** Medians per step: inside the attention kernels, inside the other native operators, the rest. */
  readonly kernelMs: number;
  readonly operatorsMs: number;
  readonly outsideMs: number;
  /** Sum over the timed steps of (wall - native) / sum of wall. */
  readonly outsideFraction: number;
  /** The forward's own attentionMs (kernel call plus the JS around it), median per step. */
  readonly forwardAttentionMs: number;
  /** Mean ms per step inside each native entry point ('attention' = the kernels). */
  readonly nativeMs: Readonly<Record<string, number>>;
  readonly nativeCallsPerStep: number;
  /** cuda: kernel and graph launches the host issued a step; cpu: native calls a step. */
  readonly launchesPerStep: number;
  /** Median ms a step the host spent outside the GPU waits (cuda) or the native calls (cpu). */
  readonly hostMs: number;
  /** Median ms a step between CUDA events around it (cuda); the step's wall time (cpu). */
  readonly gpuMs: number;
  /** Bytes a step copied between host and device (0 on cpu: one memory). */
  readonly hostDeviceBytesPerStep: number;
  /** max((weight + KV bytes) / copy bandwidth, FLOPs / matmul rate), and the median step over it. */
  readonly rooflineMs: number;
  readonly rooflineRatio: number;
  readonly roofline: Roofline & StepCost;
}

export interface StepBenchResult {
  readonly model: string;
  readonly family: string;
  readonly layers: number;
  readonly parameters: number;
  readonly backend: Backend;
  readonly backendReason: string;
  /** Threads the operators use (the resolved count). */
  readonly threads: number;
  readonly prefix: number;
  readonly draft: number;
  readonly fill: { readonly method: 'prefill' | 'repeat'; readonly prefillTokens: number; readonly ms: number; readonly description: string };
  readonly warmupRounds: number;
  /** How the steps picked their tokens (temperature 0: greedy). */
  readonly sampling: { readonly temperature: number; readonly topP: number; readonly topK?: number };
  /**
   * Whether the steps ran as CUDA graphs (cuda without --no-graphs): each kind's first step runs
   * launch by launch and its second is captured, so with 2+ warm-up rounds a timed step is one replay.
   */
  readonly graphs: boolean;
  /** Whether the kernels were launched with programmatic dependent launch (cuda; LoadOptions.pdl, runtime/cuda/pdl.ts). */
  readonly pdl: boolean;
  /** Why PDL was off (--no-pdl, an older compile, a device below sm_90, a driver without cuLaunchKernelEx, the cpu backend), or what allowed it. */
  readonly pdlReason: string;
  /** Whether the steps ran with the RMSNorms folded into the GEMMs (cuda; LoadOptions.foldNorms, gpu-op-table.ts gpuGraphChoice). */
  readonly foldNorms: boolean;
  /** Why the norms were not folded (--no-fold-norms, fp16, a compile without the epilogues, the cpu backend); absent when folded. */
  readonly foldNormsWhy?: string;
  readonly rounds: number;
  readonly seconds: number;
  readonly tidar: StepStats;
  readonly ar: StepStats;
  /** TiDAR step time / AR step time (medians). */
  readonly ratio: number;
  /** Tokens per TiDAR forward at which TiDAR's tokens/s equals AR's (= ratio). */
  readonly breakEvenTokensPerForward: number;
  readonly outsideGoal: { readonly max: number; readonly tidarMet: boolean; readonly arMet: boolean };
  readonly loadAverage1m: number;
  /** The rates the rooflines divide by, measured in this run. */
  readonly machine: MachinePeaks;
}

interface Sample {
  readonly wall: number;
  readonly native: NativeTotals;
  readonly forwardAttention: number;
  /** CUDA events around the step (cuda); the wall time (cpu). */
  readonly gpu: number;
}

function checkArgs(spec: ModelSpec, draft: number, prefix: number, names: Record<'draft' | 'prefix', string>): void {
  if (!spec.draftLengths.includes(draft)) {
    throw new TidarcError('invalid-argument', 'no kernels for this draft length', { field: names.draft, value: draft, allowed: `a draft length the model was compiled for: ${spec.draftLengths.join(', ')}` });
  }
  // The step's highest position is L + 2K - 1 (block K's last mask slot), as in loadModel.
  const context = contextLength(spec);
  const max = Math.min(context - 2 * draft, 1 << 20);
  if (!Number.isInteger(prefix) || prefix < 1 || prefix > max) {
    throw new TidarcError('invalid-argument', 'prefix length out of range', { field: names.prefix, value: prefix, allowed: `an integer from 1 to ${max} (the context, ${context} positions, less ${2 * draft} for the step's drafts and mask blocks)` });
  }
}

/** Fills runner.cache to `count` committed tokens; returns what it did. */
function fillCache(runner: Runner, ids: Int32Array, count: number, method: FillMethod): StepBenchResult['fill'] {
  const t0 = performance.now();
  const cache = runner.cache;
  const useRepeat = method === 'repeat' || (method === 'auto' && count > REAL_PREFILL_MAX);
  const real = useRepeat ? Math.min(count, REPEAT_SOURCE) : count;
  cache.length = 0;
  if (real > 0) {
    runner.pass(ids.subarray(0, real), Int32Array.from({ length: real }, (_, i) => i), { kind: 'prefill', promptTokens: real });
  }
  if (useRepeat && count > real) cache.repeatSlots(real, count);
  cache.length = count;
  const ms = performance.now() - t0;
  const description = useRepeat && count > real
    ? `a real prefill of ${real} random tokens, its K/V repeated over ${count} slots (the same attention work; not the values of a real sequence), then token ${count + 1} prefilled by each decoder`
    : `a real causal prefill of ${count} random tokens, then token ${count + 1} prefilled by each decoder`;
  return { method: useRepeat ? 'repeat' : 'prefill', prefillTokens: real + 1, ms, description };
}

/**
 * cpu: kernel = inside the attention kernels, operators = the other native calls, outside =
 * the rest. cuda: launches return at once, so kernel = the time the host waited for the GPU
 * (downloads, synchronize: kernels and copies), operators = the other driver calls (launch
 * and upload overhead), outside = everything but the waits (the host's issue time, JS and
 * driver calls, which the GPU overlaps only when its work is longer).
 */
function stats(variant: string, inStepTokens: number, samples: readonly Sample[], backend: Backend, limit: Roofline & StepCost): StepStats {
  const walls = samples.map((s) => s.wall);
  const native = samples.map((s) => Object.values(s.native.ms).reduce((a, b) => a + b, 0));
  const waits = (s: Sample): number => CUDA_WAITS.reduce((a, k) => a + (s.native.ms[k] ?? 0), 0);
  const kernel = samples.map((s) => (backend === 'cuda' ? waits(s) : s.native.ms[ATTENTION] ?? 0));
  const outside = samples.map((s, i) => s.wall - (backend === 'cuda' ? kernel[i]! : native[i]!));
  const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
  const nativeMs: Record<string, number> = {};
  let calls = 0;
  for (const s of samples) {
    for (const [k, v] of Object.entries(s.native.ms)) nativeMs[k] = (nativeMs[k] ?? 0) + v / samples.length;
    calls += sum(Object.values(s.native.calls));
  }
  for (const k of Object.keys(nativeMs)) if (nativeMs[k] === 0) delete nativeMs[k];
  const w = summarize(walls);
  const launches = backend === 'cuda' ? sum(samples.map((s) => CUDA_LAUNCHES.reduce((a, k) => a + (s.native.calls[k] ?? 0), 0))) : calls;
  return {
    variant,
    inStepTokens,
    steps: samples.length,
    stepMs: { median: w.median, p20: w.p20, p80: w.p80, min: w.min, max: w.max },
    kernelMs: summarize(kernel).median,
    operatorsMs: summarize(samples.map((_, i) => native[i]! - kernel[i]!)).median,
    outsideMs: summarize(outside).median,
    outsideFraction: sum(outside) / sum(walls),
    forwardAttentionMs: summarize(samples.map((s) => s.forwardAttention)).median,
    nativeMs,
    nativeCallsPerStep: calls / samples.length,
    launchesPerStep: launches / samples.length,
    hostMs: summarize(outside).median,
    gpuMs: summarize(samples.map((s) => s.gpu)).median,
    hostDeviceBytesPerStep: sum(samples.map((s) => s.native.hostDeviceBytes)) / samples.length,
    rooflineMs: limit.rooflineMs,
    rooflineRatio: w.median / limit.rooflineMs,
    roofline: limit,
  };
}

/** A step kind's cost and roofline: TiDAR's lm_head computes its K verify rows and K - 1 next drafts. */
export function stepRoofline(spec: ModelSpec, kind: 'tidar' | 'ar', draft: number, prefix: number, peaks: MachinePeaks): Roofline & StepCost {
  const shape = kind === 'ar' ? { tokens: 1, lmHeadRows: 1, prefix } : { tokens: draft * (draft + 1), lmHeadRows: 2 * draft - 1, prefix };
  const cost = stepCost(spec, shape);
  return { ...cost, ...roofline(cost, peaks) };
}

/** Whether a runner folds its norms, and why not (the cpu backend runs the unfused graph). */
function foldNormsOf(runner: Runner): Pick<StepBenchResult, 'foldNorms' | 'foldNormsWhy'> {
  if (!(runner instanceof GpuModelRunner)) return { foldNorms: false, foldNormsWhy: 'the cpu backend runs the unfused graph' };
  const c = runner.graphChoice;
  return c.foldNorms ? { foldNorms: true } : { foldNorms: false, foldNormsWhy: c.foldNormsWhy ?? 'not allowed' };
}

export async function benchStep(o: StepBenchOptions): Promise<StepBenchResult> {
  const names = { draft: 'draft', prefix: 'prefix', backend: 'backend', ...o.optionNames };
  const reps = o.reps ?? 20;
  const minMs = (o.minSeconds ?? 2) * 1000;
  const warmup = o.warmup ?? 3;
  let draft = o.draft;
  const parts = await openModelParts(o.dir, {
    ...(o.backend === undefined ? {} : { backend: o.backend }), backendField: names.backend,
    ...(o.threads === undefined ? {} : { threads: o.threads }),
    ...(o.cacheDir === undefined ? {} : { cacheDir: o.cacheDir }),
    ...(o.tuned === undefined ? {} : { tuned: o.tuned }),
    ...(o.graphs === undefined ? {} : { graphs: o.graphs }),
    ...(o.pdl === undefined ? {} : { pdl: o.pdl }),
    ...(o.foldNorms === undefined ? {} : { foldNorms: o.foldNorms }),
    ...(o.log === undefined ? {} : { log: o.log }),
    checkSpec: (spec) => {
      draft ??= Math.max(...spec.draftLengths);
      checkArgs(spec, draft, o.prefix, names);
    },
  });
  // A close that fails after a failed run (a kernel fault leaves frees refused) must not replace the run's own error.
  let failed = true;
  try {
    const k = draft!;
    const L = o.prefix;
    const { spec } = parts;
    // Capacity: each decoder's prefill at L - 1 needs 1 + K slots, a TiDAR step K, an AR step 1.
    const runner = parts.newRunner(L + k);
    const cache = runner.cache;
    const rng = seededRandom(o.seed ?? 0);
    const ids = Int32Array.from({ length: L }, () => {
      const id = rng.int(0, spec.vocabSize - 2);
      return id >= spec.maskTokenId ? id + 1 : id;  // never the mask token
    });
    const fill = fillCache(runner, ids, L - 1, o.fill ?? 'auto');
    const sampling = o.sampling ?? { temperature: 0, topP: 1 };
    const decoderOptions = (mode: 'tidar' | 'ar'): DecodeOptions => ({ mode, draft: k, ...sampling, trustAr: 1, seed: o.seed ?? 0 });
    const decoders = { tidar: new Decoder(runner, decoderOptions('tidar'), spec.maskTokenId), ar: new Decoder(runner, decoderOptions('ar'), spec.maskTokenId) };
    for (const d of [decoders.tidar, decoders.ar]) {
      cache.length = L - 1;
      d.prefill([ids[L - 1]!]);
    }
    if (cache.length !== L) throw new TidarcError('runtime', `bench-step: the cache holds ${cache.length} tokens after the prefills, expected ${L}`);

    const machine = parts.cuda
      ? measureCudaPeaks(parts.cuda.device, parts.cuda.kernelsDir, parts.cuda.manifest, parts.cuda.emulated)
      : measureCpuPeaks(parts.threads);
    const timer = installNativeTimer();
    const samples = { tidar: [] as Sample[], ar: [] as Sample[] };
    const step = (mode: 'tidar' | 'ar', keep: boolean): void => {
      const got: { r?: ReturnType<Decoder['step']>; before?: NativeTotals; after?: NativeTotals; wall: number } = { wall: 0 };
      const run = (): void => {
        got.before = timer.read();
        const t0 = performance.now();
        got.r = decoders[mode].step();
        got.wall = performance.now() - t0;
        got.after = timer.read();
      };
      // The events' own driver calls stay outside the step's native totals.
      const gpu = parts.cuda ? parts.cuda.device.timeGpu(run).gpuMs : (run(), got.wall);
      const { r, wall } = got;
      if (r === undefined) throw new TidarcError('runtime', `bench-step: the ${mode} step did not run`);
      const native = totalsSince(got.before!, got.after!);
      if (cache.length !== L + (r.accepted ?? 1)) throw new TidarcError('runtime', `bench-step: a ${mode} step left ${cache.length} tokens in the cache, expected ${L + (r.accepted ?? 1)}`);
      cache.length = L;  // the step committed its accepted tokens: drop them
      if (keep) samples[mode].push({ wall, native, forwardAttention: r.attentionMs, gpu });
    };
    let rounds = 0;
    let seconds = 0;
    try {
      for (let i = 0; i < warmup; i++) {
        step('tidar', false);
        step('ar', false);
      }
      const start = performance.now();
      while (rounds < reps || performance.now() - start < minMs) {
        const order = rounds % 2 === 0 ? (['tidar', 'ar'] as const) : (['ar', 'tidar'] as const);
        for (const mode of order) step(mode, true);
        rounds++;
      }
      seconds = (performance.now() - start) / 1000;
    } finally {
      timer.uninstall();
    }
    const tidar = stats(tidarVariantName(k), k * (k + 1), samples.tidar, parts.backend, stepRoofline(spec, 'tidar', k, L, machine));
    const ar = stats(AR_VARIANT, 1, samples.ar, parts.backend, stepRoofline(spec, 'ar', k, L, machine));
    const ratio = tidar.stepMs.median / ar.stepMs.median;
    failed = false;
    return {
      model: spec.name,
      family: spec.family,
      layers: spec.layers,
      parameters: parameterCount(spec),
      backend: parts.backend,
      backendReason: parts.backendReason,
      threads: parts.threads > 0 ? Math.min(parts.threads, cpuThreadCount()) : cpuThreadCount(),
      prefix: L,
      draft: k,
      fill,
      warmupRounds: warmup,
      sampling,
      graphs: parts.backend === 'cuda' && (o.graphs ?? true),
      pdl: parts.cuda?.pdl.on === true,
      pdlReason: parts.cuda ? parts.cuda.pdl.why : 'the cpu backend launches no GPU kernels',
      ...foldNormsOf(runner),
      rounds,
      seconds,
      tidar,
      ar,
      ratio,
      breakEvenTokensPerForward: ratio,
      outsideGoal: { max: OUTSIDE_GOAL, tidarMet: tidar.outsideFraction <= OUTSIDE_GOAL, arMet: ar.outsideFraction <= OUTSIDE_GOAL },
      loadAverage1m: loadavg()[0]!,
      machine,
    };
  } finally {
    try {
      parts.close();
    } catch (e) {
      if (!failed) throw e;
    }
  }
}
