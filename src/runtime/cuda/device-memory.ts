/**
 * Device memory, priced before it is allocated: what the weights take on the device exactly as
 * gpu-weights.ts uploads them (Q/K/V and gate/up fused into one buffer each, their biases into
 * one fp32 buffer, a tied lm_head sharing the embedding's), and what a cuda runner holds for a
 * capacity (gpu-runner.ts allocates its K/V cache, pass activations and lm_head scratch with the
 * sizes below). From the spec only (and, where known, each tensor's element size): no I/O, no
 * device. The load compares weights + one runner of the least capacity with the device's free
 * memory before it uploads anything, and a runner's creation compares its own bytes
 * (loadFit, checkRunnerFits; the load's choice: cudaFitChoice); a pass whose activations do not
 * fit (a long prompt) fails with its figures (passOutOfMemory).
 *
 * What is not priced here but in step-scratch.ts, per generation before its prefill: the GEMMs'
 * split-K and split-KV scratch, the prefill's activations past one chunk, and a decode step's
 * I/O, activations (k + k^2 tokens in whole chunks, in place of the priced one-chunk pass's) and
 * a sampled step's logits (k rows x vocab, fp32), sized by the compiled kernels, the step's token
 * count and the prefix (split-KV: the most over the runner's prefixes, an upper bound), on top of
 * the K/V cache. What they add beyond weightBytes + runnerBytes for a runner of 4096 tokens, over
 * a 64-token prefill and decode steps at every 97th prefix (an sm_90 compile's mma GEMMs, 132
 * SMs; counted on a recording device: `npx tsx test/runtime/cuda/fixtures/decode-scratch.ts 0.6b|8b`):
 *                   prefill  AR    k=4   k=8 greedy/sampled  k=16 greedy/sampled
 *   Qwen3-0.6B      2.0      2.0   2.0   6.8 / 11.4          47.0 / 56.3 MiB
 *   Qwen3-8B        6.0      6.0   6.0   17.7 / 22.3         104.5 / 113.8 MiB
 * (0.6B, k = 16 sampled: step activations 46.3 MiB where the priced pass had 9.3, split-KV 10.8,
 * split-K 8.5, logits 9.3 MiB; the script prints step-scratch.ts's price beside each, equal to
 * 0.1 MiB.) So the load's preflight (weights + one runner) is a floor; a
 * generation is refused before its prefill when its own price does not fit (runners.acquire with
 * its plan: step-scratch.ts checkGeneration), and passOutOfMemory remains the last line of
 * defence (memory another process takes meanwhile). Counted nowhere: cuMemAlloc's rounding, the
 * CUDA context and captured graphs' own driver memory.
 */
import { PREFILL_CHUNK } from '../../codegen/variant.js';
import { AR_VARIANT } from '../../codegen/variant-name.js';
import { TidarcError } from '../../errors.js';
import type { ModelSpec } from '../../ir/model.js';
import { type AttentionSchedule, type StepGraph, type TensorDecl, opWeights, tensorElemBytes } from '../../ir/step-graph.js';
import { gpuRewriteOptions, rewriteForGpu } from '../../ir/step-rewrite.js';
import { expectedTensors } from '../../model/checkpoint.js';
import { passGraph } from '../model/step.js';
import type { KvShape } from '../model/kv-cache.js';
import { SAMPLE_PARAMS_BYTES } from './gpu-ops.js';
import { compiledFolding } from '../../codegen/step-kinds.js';
import { foldedNormWeights } from './gpu-weights.js';

/** Bytes of one element of a checkpoint tensor on the device: its safetensors format (2, or 4 for F32). */
export type ElementBytesOf = (tensor: string) => number;

/**
 * The weights' bytes on the device (uploadWeights' GpuWeights.bytes): every matrix and norm the
 * cuda step graph reads once, fused ones as one buffer, biases in fp32 (a fused layer's biases
 * as one buffer with zeros for a part without one), and RoPE's inverse frequencies. Element
 * sizes: `elementBytesOf` (the checkpoint's formats; F32 tensors are uploaded as they are),
 * else the spec's dtype (2 bytes). `foldNorms` (default: a bf16 model, which folds unless switched
 * off): the folded norms' float32 weights too.
 */
export function weightBytes(spec: ModelSpec, elementBytesOf: ElementBytesOf = () => 2, foldNorms = spec.dtype === 'bf16'): number {
  const shapes = new Map(expectedTensors(spec).map((t) => [t.name, t.shape]));
  // A tied lm_head is the embedding's matrix (weights.ts): one buffer.
  const alias = (name: string): string => (spec.tieEmbeddings && name === 'lm_head.weight' ? 'model.embed_tokens.weight' : name);
  const shapeOf = (name: string): readonly number[] => {
    const s = shapes.get(alias(name));
    if (!s) throw new TidarcError('runtime', 'the cuda step graph reads a tensor the spec does not have', { field: 'tensor', value: name });
    return s;
  };
  const rowsOf = (name: string): number => (shapeOf(name).length === 2 ? shapeOf(name)[0]! : 1);
  const elements = (name: string): number => shapeOf(name).reduce((a, b) => a * b, 1);
  // The graph's weights do not depend on its token count, schedule or the SwiGLU interleave (gpu-weights.ts).
  const graph = rewriteForGpu(passGraph(spec, 1, { kind: 'step', variant: AR_VARIANT }));
  const uploaded = new Set<string>();
  let bytes = 0;
  const matrix = (name: string): void => {
    const key = alias(name);
    if (uploaded.has(key)) return;
    uploaded.add(key);
    bytes += elements(key) * elementBytesOf(key);
  };
  for (const op of graph.ops) {
    if (op.kind === 'linear' && op.parts.length > 1) {
      // Fused: the parts' rows in one buffer of their common format (parts in different formats are widened to f32: the widest); biases likewise (fp32).
      const rows = op.parts.reduce((n, p) => n + rowsOf(p.weight), 0);
      bytes += rows * shapeOf(op.parts[0]!.weight).at(-1)! * Math.max(...op.parts.map((p) => elementBytesOf(p.weight)));
      if (op.bias) bytes += rows * 4;
    } else if (op.kind === 'linear') {
      matrix(op.weight);
      const bias = op.parts[0]!.bias;
      if (bias && !uploaded.has(bias)) (uploaded.add(bias), (bytes += elements(bias) * 4));
    } else {
      for (const name of opWeights(op)) matrix(name);
    }
  }
  matrix(graph.head.weight);
  // A bf16 load folds its norms by default (gpu-weights.ts): each folded norm's weight again in float32.
  const folding = foldNorms ? compiledFolding(spec) : undefined;
  if (folding) for (const name of foldedNormWeights(spec, folding)) bytes += elements(name) * 4;
  return bytes + (spec.headDim / 2) * 4;  // ropeInvFreq: headDim / 2 fp32
}

/** Bytes of one layer's K (or V) cache: [kvHeads, capacity, headDim] of 16-bit elements (GpuKvCache). */
export function kvLayerBytes(shape: Omit<KvShape, 'layers'>): number {
  return shape.kvHeads * shape.capacity * shape.headDim * 2;
}

/** The K/V cache of `capacity` tokens: layers x 2 x kvHeads x capacity x headDim x 2 bytes. */
export function kvCacheBytes(spec: Pick<ModelSpec, 'layers' | 'kvHeads' | 'headDim'>, capacity: number): number {
  return spec.layers * 2 * kvLayerBytes({ kvHeads: spec.kvHeads, headDim: spec.headDim, capacity });
}

/** Rows of a pass of T tokens' activations: whole prefill chunks. */
export function passRows(T: number): number {
  return Math.ceil(T / PREFILL_CHUNK) * PREFILL_CHUNK;
}

/** One activation of a pass of T tokens (gpu-runner.ts workspace): ids and positions T rows, the rest whole chunks. */
export function tensorBytes(t: TensorDecl, T: number): number {
  return (t.type === 'i32' ? T : passRows(T)) * t.width * tensorElemBytes(t.type);
}

/** A pass's prefix lengths: one int per chunk, and one more. */
export function prefixLengthBytes(T: number): number {
  return (Math.ceil(T / PREFILL_CHUNK) + 1) * 4;
}

/**
 * The activations of a pass of T tokens (a runner allocates them once per T): the tensors of the
 * GPU's rewritten graph. `swigluInterleave`: the compiled gate_up GEMM's (its graph names no up
 * half); without it the up half is counted, an upper bound.
 */
export function passBytes(spec: ModelSpec, T: number, schedule: AttentionSchedule, swigluInterleave?: number, foldNorms = spec.dtype === 'bf16'): number {
  // A bf16 load folds by default: the folded graph's float64 row sums are its one more tensor (an upper bound when it does not).
  const folding = foldNorms ? compiledFolding(spec) : undefined;
  return graphPassBytes(rewriteForGpu(passGraph(spec, T, schedule), gpuRewriteOptions(swigluInterleave, folding)));
}

/** passBytes of a rewritten graph already built (its tokens, tensors and prefix lengths). */
export function graphPassBytes(graph: Pick<StepGraph, 'tokens' | 'tensors'>): number {
  return graph.tensors.reduce((n, t) => n + tensorBytes(t, graph.tokens), 0) + prefixLengthBytes(graph.tokens);
}

/** lm_head scratch is made for at least this many requested rows. */
export const HEAD_SCRATCH_MIN_ROWS = 16;

/** lm_head scratch of `rows` requested rows (gpu-runner.ts headScratch): each buffer's bytes. */
export function headScratchSizes(rows: number, vocab: number) {
  const n = Math.max(rows, HEAD_SCRATCH_MIN_ROWS);
  return { rows: n, rowIds: n * 4, logits: n * vocab * 4, argmax: n * 4, maxLogit: n * 4, lse: n * 4, tokens: n * 4, accepted: n * 4, params: SAMPLE_PARAMS_BYTES };
}

export function headScratchBytes(rows: number, vocab: number): number {
  const { rows: _rows, ...sizes } = headScratchSizes(rows, vocab);
  return Object.values(sizes).reduce((a, b) => a + b, 0);
}

/** What a runner of `capacity` tokens holds once it has run its first pass of up to one chunk. */
export interface RunnerBytes {
  readonly kvCache: number;
  /** A prompt of up to PREFILL_CHUNK tokens' activations and its lm_head scratch. */
  readonly firstPass: number;
  readonly total: number;
}

/**
 * A runner of `capacity` tokens: its K/V cache (allocated when it is made) and the activations
 * and lm_head scratch of a first pass of one chunk (the least any pass allocates). Not counted:
 * see the file comment.
 */
export function runnerBytes(spec: ModelSpec, capacity: number, swigluInterleave?: number): RunnerBytes {
  const kvCache = kvCacheBytes(spec, capacity);
  const firstPass = passBytes(spec, PREFILL_CHUNK, { kind: 'prefill', promptTokens: PREFILL_CHUNK }, swigluInterleave) + headScratchBytes(1, spec.vocabSize);
  return { kvCache, firstPass, total: kvCache + firstPass };
}

/**
 * The largest capacity (a multiple of `quantum`) whose runner fits in `freeBytes`; 0 when none
 * does (the runner's fixed part alone is too big).
 */
export function largestCapacity(spec: ModelSpec, freeBytes: number, quantum = 1, swigluInterleave?: number): number {
  const fixed = runnerBytes(spec, 0, swigluInterleave).firstPass;
  const perToken = kvCacheBytes(spec, 1);
  const tokens = Math.floor((freeBytes - fixed) / perToken);
  return tokens <= 0 ? 0 : Math.floor(tokens / quantum) * quantum;
}

/** "15.3 GiB", "12.0 MiB", "4.0 KiB", "100 bytes": one unit a figure. */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) if (bytes >= size) return `${(bytes / size).toFixed(1)} ${unit}`;
  return `${bytes} bytes`;
}

/** The device, as the preflight names it. */
export interface DeviceMemoryNow {
  readonly name: string;
  readonly freeBytes: number;
  readonly totalBytes: number;
}

/** Whether the model fits, and one sentence that says with what figures. */
export interface LoadFit {
  readonly fits: boolean;
  readonly neededBytes: number;
  /** "the weights (x) and a 256-token runner (y) need z on <device> and f of t is free" */
  readonly sentence: string;
}

/** Weights + one runner of `capacity` tokens against the device's free memory. */
export function loadFit(weights: number, runner: RunnerBytes, capacity: number, device: DeviceMemoryNow): LoadFit {
  const neededBytes = weights + runner.total;
  const sentence = `the weights (${formatBytes(weights)}) and a ${capacity}-token runner (${formatBytes(runner.total)}) need ${formatBytes(neededBytes)} on ${device.name} and ${formatBytes(device.freeBytes)} of ${formatBytes(device.totalBytes)} is free`;
  return { fits: neededBytes <= device.freeBytes, neededBytes, sentence };
}

/**
 * What a load does with a fit: cuda where it fits; where it does not, auto runs on the cpu
 * backend and says why, an explicit cuda is an error that says what to do.
 */
export function cudaFitChoice(choice: 'auto' | 'cuda', fit: LoadFit, field = 'backend'): { readonly backend: 'cuda' } | { readonly backend: 'cpu'; readonly reason: string } {
  if (fit.fits) return { backend: 'cuda' };
  if (choice === 'cuda') {
    throw new TidarcError('unsupported', `the model does not fit on the GPU: ${fit.sentence}; run it with --backend cpu (or free device memory)`, { field, value: 'cuda', allowed: 'auto, cpu' });
  }
  return { backend: 'cpu', reason: `the model does not fit on the GPU: ${fit.sentence}` };
}

/**
 * A runner of `capacity` tokens against what is free now: an error naming the capacity, the bytes
 * needed and free, and the largest capacity that fits (a multiple of `quantum`), not a raw
 * out-of-memory from the middle of an allocation.
 */
export function checkRunnerFits(spec: ModelSpec, capacity: number, device: DeviceMemoryNow, quantum = 1, swigluInterleave?: number): void {
  const need = runnerBytes(spec, capacity, swigluInterleave);
  if (need.total <= device.freeBytes) return;
  const largest = largestCapacity(spec, device.freeBytes, quantum, swigluInterleave);
  const fits = largest > 0 ? `the largest that fits is ${largest} tokens: shorten the prompt or --max-tokens` : 'no capacity fits: free device memory or run with --backend cpu';
  throw new TidarcError('runtime', `a runner of ${capacity} tokens needs ${formatBytes(need.total)} on ${device.name} (K/V cache ${formatBytes(need.kvCache)}) and ${formatBytes(device.freeBytes)} of ${formatBytes(device.totalBytes)} is free; ${fits}`, { field: 'capacity', value: capacity });
}

/**
 * What a pass's failed allocation becomes: out of device memory, one error with the pass's token
 * count, the activations it needs and what is free (read after its own allocations went back);
 * any other failure unchanged. `step`: a decode step's workspace (a few tokens: no shorter prompt
 * helps it, only memory that something else holds).
 */
export function passOutOfMemory(cause: unknown, tokens: number, neededBytes: number, memory: () => DeviceMemoryNow, step = false): unknown {
  if (!(cause instanceof TidarcError && cause.details.value === 'CUDA_ERROR_OUT_OF_MEMORY')) return cause;
  let device: DeviceMemoryNow;
  try {
    device = memory();
  } catch {
    return cause;
  }
  const what = step ? `a ${tokens}-token decode step` : `a ${tokens}-token pass`;
  const helps = step ? 'free device memory or run with --backend cpu' : 'a shorter prompt needs less';
  return new TidarcError('runtime', `the activations of ${what} need ${formatBytes(neededBytes)} on ${device.name} and ${formatBytes(device.freeBytes)} of ${formatBytes(device.totalBytes)} is free (the weights, K/V caches and scratch hold the rest): ${helps}`, { field: 'tokens', value: tokens });
}
