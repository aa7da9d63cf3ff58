/**
 * A generation's device memory beyond its runner's K/V cache, priced before its prefill: the
 * prefill's activations (its prompt and k mask slots, in whole chunks), lm_head scratch, GEMM
 * split-K and split-KV scratch (freed by the first decode step), and what the decode steps of
 * its kind hold for the runner's life (GpuModelRunner keeps them across sequences): the step's
 * activations (k + k^2 tokens in whole chunks; AR 1), its K/V commit table, step I/O, fp32
 * logits where the step needs them (sampled, a beta mix, no row statistics), the never-emit
 * bias row, and the steps' GEMM and split-KV scratch. From the spec, the compiled manifest, the
 * uploaded weights' shapes and the device's SMs and arch only (no I/O, no device), with the size
 * functions the runner allocates by (passBytes, stepIoSizes / stepTailPlan, mmaGemmScratch,
 * sm90aGemmScratch, attentionSplits / splitKvScratch, headScratchBytes): the price is what the
 * loop allocates, byte for byte, except split-KV, which depends on the prefix each step meets:
 * its price is the most any prefix up to the capacity needs (an upper bound; a generation meets
 * only the prefixes past its prompt, and one that stops early fewer). Prices are memoized per
 * loaded model (a check builds pass graphs: ~20 ms each for Qwen3-8B's 36 layers here).
 *
 * Every scratch is a slot (a name): keyed per step kind (its activations, I/O, logits) or grown
 * to the largest launch (GEMM and split-KV scratch). A reused runner's held slots merge with a
 * generation's by the larger bytes per slot, so what it already holds is not asked for twice.
 * The prefill's scratch is freed before the first step allocates (GpuModelRunner.releasePrefill):
 * a generation needs max(prefill, the steps' growth) beyond what its runner holds, and a new
 * runner its K/V cache as well. checkGeneration compares that with the device's free memory
 * before the prefill and refuses with one error naming the step kind, the bytes and what would
 * fit (a smaller draft length, a smaller capacity). Not counted: cuMemAlloc's rounding, the CUDA
 * context and captured graphs' own driver memory; passOutOfMemory stays the last line of defence.
 */
import { SPLIT_KV_SLOTS, attentionKernelOf, attentionSplits, splitKvScratch } from './attention-launch.js';
import type { Manifest, ManifestVariant } from '../../codegen/manifest.js';
import { AR_VARIANT, blockVariantName, tidarVariantName } from '../../codegen/variant-name.js';
import { TidarcError } from '../../errors.js';
import type { ModelSpec } from '../../ir/model.js';
import type { AttentionSchedule, StepGraph } from '../../ir/step-graph.js';
import type { NormFolding } from '../../ir/step-fold-norms.js';
import { gpuRewriteOptions, rewriteForGpu } from '../../ir/step-rewrite.js';
import { passGraph, resolveLaunches } from '../model/step.js';
import { type DeviceMemoryNow, formatBytes, graphPassBytes, headScratchBytes, kvCacheBytes } from './device-memory.js';
import { type StepShape, stepIoSizes, stepShapeKey, stepTailPlan } from './gpu-decode-step.js';
import { GEMM_SLOTS, mmaGemmFor, mmaGemmScratch } from './gpu-gemm.js';
import { SM90A_GEMM_SLOTS, sm90aGemmScratch, sm90aUnitsFor, takenSm90aUnits } from './gpu-gemm-sm90a.js';
import { gpuDtype } from './gpu-op-table.js';
import { KV_COMMIT_LAYER_BYTES } from './gpu-ops.js';

/** What a generation runs: its mode, draft length, sampling, prompt and the runner capacity it asks for. */
export interface GenerationPlan {
  readonly mode: 'ar' | 'tidar';
  /** Draft length k (TiDAR; ignored for AR). */
  readonly draft: number;
  /** temperature > 0: the steps sample (fp32 logits of the verify rows). */
  readonly sampled: boolean;
  /** beta < 1 (TiDAR): the verifier mixes in its mix rows' logits. */
  readonly mix: boolean;
  /** The never-emitted token (the mask token) the steps pass, if any. */
  readonly neverEmit?: number | undefined;
  readonly promptTokens: number;
}

/** "ar greedy", "tidar k=16 sampled", "tidar k=4 greedy, beta mix". */
export function stepKindName(p: Pick<GenerationPlan, 'mode' | 'draft' | 'sampled' | 'mix'>): string {
  return `${p.mode === 'tidar' ? `tidar k=${p.draft}` : 'ar'} ${p.sampled ? 'sampled' : 'greedy'}${p.mode === 'tidar' && p.mix ? ', beta mix' : ''}`;
}

/** What the price reads of a device (CudaDevice: arch, info). */
export interface PricedDevice {
  readonly arch: string;
  readonly info: { readonly major: number; readonly minor: number; readonly multiprocessors: number };
}

/** Everything fixed for a loaded model that the price reads. */
export interface PriceContext {
  readonly spec: ModelSpec;
  readonly manifest: Pick<Manifest, 'arches' | 'variants' | 'gemms' | 'gemmsSm90a'>;
  readonly kernelsDir: string;
  readonly device: PricedDevice;
  /** The uploaded weights' shapes and formats (GpuWeights), and the gate | up interleave. */
  readonly weights: { readonly matrices: ReadonlyMap<string, { readonly rows: number; readonly cols: number; readonly dtype: string }>; readonly gateUpInterleave?: number | undefined; readonly foldNorms?: NormFolding | undefined };
  /** GpuRunnerOptions.oneHeadPass (default true). */
  readonly oneHeadPass?: boolean;
}

/** Bytes by slot (see the file comment). */
export type Slots = Map<string, number>;

/** `into` with each of `from`'s slots raised to at least its bytes. */
function raise(into: Slots, from: ReadonlyMap<string, number>, prefix = ''): Slots {
  for (const [k, v] of from) if (v > 0) into.set(prefix + k, Math.max(into.get(prefix + k) ?? 0, v));
  return into;
}

const sum = (s: ReadonlyMap<string, number>): number => [...s.values()].reduce((a, b) => a + b, 0);

/** A device buffer's bytes as CudaDevice.alloc makes it (at least 1). */
const bufferBytes = (bytes: number): number => (bytes > 0 ? Math.max(1, Math.ceil(bytes)) : 0);

/** The GEMM and split-KV scratch of one launcher (a runner's passes or steps) over the launches of a graph, and of lm_head calls. */
class LauncherScratch {
  readonly slots: Slots = new Map();
  private readonly sm90a: ReadonlyMap<string, ReturnType<typeof takenSm90aUnits>[number]>;

  constructor(private readonly ctx: PriceContext) {
    const units = takenSm90aUnits(sm90aUnitsFor(ctx.kernelsDir, ctx.manifest, ctx.device.info));
    this.sm90a = new Map(units.flatMap((u) => u.roles.map((r) => [r, u] as const)));
  }

  /** Whether a GEMM runs `role` for weights of this shape (GpuGemms.covers / GpuGemmsWithSm90a.covers), and its scratch at `rows`. */
  gemm(role: string, w: { rows: number; cols: number; dtype: string }, rows: number, epilogue: 'none' | 'swiglu' | 'rowStats'): boolean {
    const u = this.sm90a.get(role);
    if (u) {
      if (!(u.n === w.rows && u.k === w.cols && u.dtype === w.dtype)) return false;
      const z = sm90aGemmScratch(u, rows);
      raise(this.slots, new Map([[SM90A_GEMM_SLOTS.workspace, bufferBytes(z.workspaceBytes)], [SM90A_GEMM_SLOTS.counters, bufferBytes(z.counters * 4)]]));
      return true;
    }
    const list = (this.ctx.manifest.gemms ?? []).filter((g) => g.roles.includes(role)).sort((a, b) => a.m - b.m);
    const g0 = list[0];
    if (!(g0 && g0.n === w.rows && g0.k === w.cols && g0.dtype === w.dtype)) return false;
    const z = mmaGemmScratch(mmaGemmFor(list, rows), rows, epilogue);
    raise(this.slots, new Map([[GEMM_SLOTS.workspace, bufferBytes(z.workspaceBytes)], [GEMM_SLOTS.counters, bufferBytes(z.counters * 4)]]));
    return true;
  }

  /** Whether lm_head's GEMM has the row statistics for these weights (GpuGemms.hasRowStats() && covers('lm_head', W)). */
  rowStatsGemm(): boolean {
    const w = this.matrix('lm_head.weight');
    const g = (this.ctx.manifest.gemms ?? []).filter((x) => x.roles.includes('lm_head')).sort((a, b) => a.m - b.m)[0];
    return g?.rowStatsKernel !== undefined && g.n === w.rows && g.k === w.cols && g.dtype === w.dtype;
  }

  /** An lm_head launch over `rows` rows: the row statistics, or the logits (runLinear: the GEMM if it covers the weights, else tidarc_op_matmul). */
  lmHead(rows: number, rowStats: boolean): void {
    this.gemm('lm_head', this.matrix('lm_head.weight'), rows, rowStats ? 'rowStats' : 'none');
  }

  /** The linear layers of a graph (gpuOpTable's linear: SwiGLU on the GEMM; else runLinear's rule). */
  graph(graph: StepGraph): void {
    const types = new Map(graph.tensors.map((t) => [t.name, t.type]));
    for (const op of graph.ops) {
      if (op.kind !== 'linear') continue;
      const w = this.matrix(op.weight);
      if (op.swiglu) this.gemm(op.role, w, graph.tokens, 'swiglu');
      else if (gpuDtype(this.ctx.spec, types.get(op.x)) === w.dtype) this.gemm(op.role, w, graph.tokens, 'none');
    }
  }

  /** An attention launch of `variant` at each prefix of `prefixes` (AttentionLauncher.launch: splits by the launcher's rule). */
  attention(variant: ManifestVariant, prefixes: Iterable<number>): void {
    const sm90a = attentionKernelOf(variant, this.ctx.manifest.arches, [this.ctx.device.info.major, this.ctx.device.info.minor]);
    const device = { arch: this.ctx.device.arch, multiprocessors: this.ctx.device.info.multiprocessors };
    let most = 1;
    for (const p of prefixes) most = Math.max(most, attentionSplits(variant, sm90a, device, 1, p));
    const z = splitKvScratch(variant, 1, most);
    raise(this.slots, new Map([[SPLIT_KV_SLOTS.workspace, bufferBytes(z.workspaceBytes)], [SPLIT_KV_SLOTS.counters, bufferBytes(z.countersBytes)]]));
  }

  private matrix(name: string): { rows: number; cols: number; dtype: string } {
    const m = this.ctx.weights.matrices.get(name);
    if (!m) throw new TidarcError('runtime', 'the cuda step graph reads a weight that was not uploaded', { field: 'tensor', value: name });
    return m;
  }
}

/**
 * Prices already computed, per loaded model (keyed by its uploaded weights, which live as long as
 * the load): a generation's check builds a pass graph or two (tens of ms for 36 layers), and its
 * step price depends on the kind and capacity only. At most MEMO_ENTRIES a model.
 */
const memo = new WeakMap<object, Map<string, unknown>>();
const MEMO_ENTRIES = 64;
function cached<T>(ctx: PriceContext, key: string, make: () => T): T {
  let m = memo.get(ctx.weights);
  if (!m) memo.set(ctx.weights, (m = new Map()));
  const d = ctx.device;
  const full = `${key} | ${d.arch} ${d.info.major}.${d.info.minor} ${d.info.multiprocessors} SMs | ${ctx.oneHeadPass !== false}`;
  if (m.has(full)) return m.get(full) as T;
  if (m.size >= MEMO_ENTRIES) m.clear();
  const v = make();
  m.set(full, v);
  return v;
}

/** The graph a runner builds for T tokens and a schedule (GpuModelRunner.graph). */
function gpuGraph(ctx: PriceContext, T: number, schedule: AttentionSchedule): StepGraph {
  // The load's fold (a runner that folds less allocates no more: the sums tensor is the fold's only activation).
  const { gateUpInterleave: interleave, foldNorms } = ctx.weights;
  return rewriteForGpu(passGraph(ctx.spec, T, schedule), gpuRewriteOptions(interleave, foldNorms));
}

function variantOf(ctx: PriceContext, name: string): ManifestVariant {
  const v = ctx.manifest.variants.find((x) => x.name === name);
  if (!v) throw new TidarcError('runtime', `the compiled kernels have no variant ${name}`, { source: ctx.kernelsDir });
  return v;
}

/** Prefixes from..to in steps of `step`, and `to` itself. */
function* prefixRange(from: number, to: number, step: number): Iterable<number> {
  for (let p = Math.max(0, from); p < to; p += step) yield p;
  yield Math.max(0, to);
}

/** A step kind's shape as the decoder asks for it (Decoder.arStep / tidarStep). */
export function planStepShape(p: GenerationPlan): { readonly variant: string; readonly shape: StepShape } {
  if (p.mode === 'ar') return { variant: AR_VARIANT, shape: { tokens: 1, rows: 1, mixRows: 0, nextRows: 0 } };
  const k = p.draft;
  return { variant: tidarVariantName(k), shape: { tokens: k + k * k, rows: k, mixRows: p.mix ? k : 0, nextRows: k > 1 ? k - 1 : 0 } };
}

/** What a generation of `plan` on a runner of `capacity` tokens allocates. */
export interface GenerationPrice {
  /** The prefill's activations, lm_head and kernel scratch (freed by the first decode step). */
  readonly prefill: number;
  /** The decode steps' slots (held while the runner lives). */
  readonly steps: Slots;
}

/**
 * The price of a generation (see the file comment). The prefill's split-KV at its chunks'
 * prefixes, exactly; the steps' at every prefix up to the capacity, in steps of one KV tile (the
 * split rule reads whole tiles) and the capacity itself: an upper bound (a step meets only the
 * prefixes past its prompt). Memoized per model: the prefill by its length and kind, the steps
 * by their kind and the capacity.
 */
export function generationPrice(ctx: PriceContext, plan: GenerationPlan, capacity: number): GenerationPrice {
  const k = plan.mode === 'tidar' ? plan.draft : 0;
  const prefill = cached(ctx, `prefill ${plan.promptTokens} k${k}`, () => prefillPrice(ctx, plan.promptTokens, k));
  const { variant, shape } = planStepShape(plan);
  const steps = cached(ctx, `steps ${stepShapeKey(variant, shape)} ${plan.sampled ? 'sampled' : 'greedy'} e${plan.neverEmit ?? -1} capacity ${capacity}`, () => stepsPrice(ctx, plan, capacity));
  return { prefill, steps: new Map(steps) };
}

/** The prefill of a prompt of S tokens and its k mask slots (Decoder.startPrefill / endPrefill). */
function prefillPrice(ctx: PriceContext, S: number, k: number): number {
  const T = S + k;
  const schedule: AttentionSchedule = { kind: 'prefill', promptTokens: S, ...(k > 0 ? { blockVariant: blockVariantName(k) } : {}) };
  const pg = gpuGraph(ctx, T, schedule);
  const pass = new LauncherScratch(ctx);
  pass.graph(pg);
  for (const l of resolveLaunches(pg, 0)) pass.attention(variantOf(ctx, l.variant), [l.prefix]);
  // lm_head: the first token (argmax, or logits for a draw or a mix) and k - 1 drafts' argmax; headScratch sized by the most rows.
  const draftRows = Math.max(1, k - 1);
  const stats = pass.rowStatsGemm();
  for (const rows of [1, draftRows]) pass.lmHead(rows, stats);
  pass.lmHead(1, false);
  return graphPassBytes(pg) + headScratchBytes(draftRows, ctx.spec.vocabSize) + sum(pass.slots);
}

/** What the decode steps of the plan's kind hold on a runner of `capacity` tokens, by slot. */
function stepsPrice(ctx: PriceContext, plan: GenerationPlan, capacity: number): Slots {
  const { variant, shape } = planStepShape(plan);
  const sg = gpuGraph(ctx, shape.tokens, { kind: 'step', variant });
  const step = new LauncherScratch(ctx);
  step.graph(sg);
  const v = variantOf(ctx, variant);
  step.attention(v, prefixRange(resolveLaunches(sg, 0)[0]!.prefix, capacity, Math.max(1, v.plan.tileN)));
  const vocab = ctx.weights.matrices.get('lm_head.weight')?.rows ?? ctx.spec.vocabSize;
  const rowStatsGemm = step.rowStatsGemm();
  const tail = stepTailPlan(shape, vocab, { greedy: !plan.sampled, neverEmit: plan.neverEmit, rowStatsGemm, oneHeadPass: ctx.oneHeadPass !== false });
  const io = stepIoSizes(shape);
  // The tail's lm_head launches (DeviceStepIo.recordTail).
  const { rows: R, mixRows: M, nextRows: C } = shape;
  if (tail.once) step.lmHead(R + io.candidates, true);
  else step.lmHead(R, tail.rowStats);
  if (M > 0) step.lmHead(M, false);
  if (!tail.once && C > 0) step.lmHead(C, rowStatsGemm);
  const key = stepShapeKey(variant, shape);
  const steps: Slots = new Map([
    [`step activations T${shape.tokens}`, graphPassBytes(sg)],
    [`K/V commit table T${shape.tokens}`, ctx.spec.layers * KV_COMMIT_LAYER_BYTES],
    [`step I/O ${key}`, io.inputs + io.outAll + io.nextRowIds + io.tokens + io.accepted + io.argmax + io.maxLogit],
  ]);
  for (const [label, bytes] of tail.lazy) steps.set(`${label} ${key}`, bytes);
  return raise(steps, step.slots, 'step ');
}

/** What a runner holds now (GpuModelRunner.heldScratch), for a reused one. */
export interface HeldRunner {
  readonly capacity: number;
  readonly slots: ReadonlyMap<string, number>;
}

/**
 * Bytes a generation needs beyond what its runner holds: a new runner (held undefined) its K/V
 * cache and max(prefill, steps); a reused one max(prefill, the steps' growth over its slots).
 */
export function generationNeed(spec: ModelSpec, price: GenerationPrice, capacity: number, held?: HeldRunner): { readonly total: number; readonly kvCache: number; readonly prefill: number; readonly steps: number } {
  const kvCache = held ? 0 : kvCacheBytes(spec, capacity);
  const before = held?.slots ?? new Map<string, number>();
  const steps = sum(raise(new Map(before), price.steps)) - sum(before);
  return { total: kvCache + Math.max(price.prefill, steps), kvCache, prefill: price.prefill, steps };
}

/** What a refused generation could run with instead. */
export interface Alternatives {
  /** The largest compiled draft length below the plan's that fits (TiDAR). */
  readonly draft?: number | undefined;
  /** The largest capacity (a multiple of the pool's quantum, below the refused one) that fits for this kind; 0: none. */
  readonly capacity?: number | undefined;
  /** TiDAR: whether AR decoding of the same request fits. */
  readonly ar?: boolean | undefined;
}

/**
 * The decision (pure): nothing when `need` fits in what is free, else one error naming the step
 * kind, the bytes needed (K/V cache, prefill, decode steps) and free, and what would fit.
 */
export function checkGenerationFits(plan: GenerationPlan, capacity: number, need: ReturnType<typeof generationNeed>, device: DeviceMemoryNow, alternatives: () => Alternatives): void {
  if (need.total <= device.freeBytes) return;
  const alt = alternatives();
  const parts = [need.kvCache > 0 ? `K/V cache ${formatBytes(need.kvCache)}` : '', `prefill ${formatBytes(need.prefill)}`, `decode steps ${formatBytes(need.steps)}`].filter(Boolean).join(', ');
  const fits: string[] = [];
  if (alt.draft !== undefined) fits.push(`draft length ${alt.draft} fits (--draft ${alt.draft})`);
  if (alt.capacity !== undefined && alt.capacity > 0) fits.push(`a runner of ${alt.capacity} tokens fits (shorten the prompt or --max-tokens)`);
  if (alt.ar) fits.push('AR decoding fits (--mode ar)');
  const what = fits.length > 0 ? fits.join('; ') : 'free device memory or run with --backend cpu';
  // Figures that round alike say their bytes too (a refusal by a few bytes must not read as "x needs x").
  const [needs, free] = [formatBytes(need.total), formatBytes(device.freeBytes)];
  const exact = needs === free ? [` (${need.total} bytes)`, ` (${device.freeBytes} bytes)`] : ['', ''];
  throw new TidarcError('runtime', `a ${stepKindName(plan)} generation on a ${capacity}-token runner needs ${needs}${exact[0]} more on ${device.name} (${parts}: the larger of prefill and decode steps counts) and ${free}${exact[1]} of ${formatBytes(device.totalBytes)} is free; ${what}`, { field: plan.mode === 'tidar' ? 'draft' : 'capacity', value: plan.mode === 'tidar' ? plan.draft : capacity });
}

/**
 * The check a generation runs where it takes its runner, before the prefill: `held` the reused
 * runner (undefined: a new one of `capacity`), `free` the device's memory now. Alternatives:
 * the largest smaller compiled draft length at this capacity, and the largest capacity (a
 * multiple of `quantum`, at least the one a 1-token generation needs) for this kind.
 */
export function checkGeneration(ctx: PriceContext, plan: GenerationPlan, capacity: number, held: HeldRunner | undefined, device: DeviceMemoryNow, quantum = 1): void {
  const needOf = (p: GenerationPlan, c: number, h = held) => generationNeed(ctx.spec, generationPrice(ctx, p, c), c, h);
  checkGenerationFits(plan, capacity, needOf(plan, capacity), device, () => {
    const draft = plan.mode === 'tidar' ? [...ctx.spec.draftLengths].filter((d) => d < plan.draft).sort((a, b) => b - a).find((d) => needOf({ ...plan, draft: d }, capacity).total <= device.freeBytes) : undefined;
    // A new runner of a smaller capacity (the held one's cache would be given back): the largest that fits, by bisection (the need grows with the capacity).
    // lo: the largest multiple known to fit (least - 1: none yet); hi: the largest one to try (below the refused capacity).
    const least = Math.ceil((plan.promptTokens + (plan.mode === 'tidar' ? plan.draft : 0) + 2) / quantum);
    let lo = least - 1, hi = Math.ceil(capacity / quantum) - 1;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi + 1) / 2);
      if (needOf(plan, mid * quantum, undefined).total <= device.freeBytes) lo = mid;
      else hi = mid - 1;
    }
    const ar = plan.mode === 'tidar' && needOf({ ...plan, mode: 'ar' }, capacity).total <= device.freeBytes;
    return { draft, capacity: lo >= least ? lo * quantum : 0, ar };
  });
}
