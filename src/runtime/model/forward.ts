/**
 * One forward pass of a Qwen2 / Qwen3 / Llama decoder on the CPU operators, with attention
 * through the compiled kernels. A pass is one NFE: every token of the step goes through
 * every layer once, whatever number of attention launches a layer needs:
 *   - step:    all T tokens in one launch of a decode variant (tidar_k<K>, ar) after the
 *              committed prefix;
 *   - prefill: the prompt rows in launches of the causal prefill chunk (each chunk's K/V
 *              enters the cache before the next chunk), then the trailing mask block
 *              (block_k<K>) over the whole prompt.
 */
import type { ModelSpec } from '../../ir/model.js';
import { PREFILL_CHUNK } from '../../codegen/variant.js';
import { TidarcError } from '../../errors.js';
import { fromFp16Bits } from '../../util/dtype.js';
import type { KernelLibrary } from '../kernel-library.js';
import * as ops from '../ops.js';
import type { KvCache, KvShape } from './kv-cache.js';
import type { LayerWeights, ModelWeights } from './weights.js';
import { prefillVariantName } from '../../codegen/variant-name.js';

/** Decodes 16-bit bits into an existing fp32 array. */
function decodeInto(dtype: 'bf16' | 'fp16', bits: Uint16Array, out: Float32Array): void {
  if (dtype === 'bf16') {
    const words = new Uint32Array(out.buffer, out.byteOffset, out.length);
    for (let i = 0; i < bits.length; i++) words[i] = bits[i]! << 16;
  } else {
    out.set(fromFp16Bits(bits));
  }
}

export type AttentionSchedule =
  | { readonly kind: 'step'; readonly variant: string }
  | { readonly kind: 'prefill'; readonly promptTokens: number; readonly blockVariant?: string };

/**
 * What a forward returns. Its arrays belong to the runner's workspace for this T: they stay
 * valid until the next forward with the same number of tokens (the decoder reads them, and
 * commits the K/V it keeps, before it runs the next step).
 */
export interface ForwardResult {
  /** Final-normed hidden states [T, hiddenSize]. */
  readonly hidden: Float32Array;
  /** Per layer, the step's K and V ([T, kvHeads, headDim], model dtype bits). */
  readonly kStep: readonly Uint16Array[];
  readonly vStep: readonly Uint16Array[];
  /** Milliseconds of the attention stage: the kernel launches and their step-buffer copies. */
  readonly attentionMs: number;
}

/**
 * What the decoding loop sees of one forward pass, whatever the backend: the lm_head of chosen
 * rows and the commit of accepted in-step tokens. Valid until the next pass with the same
 * number of tokens.
 */
export interface ForwardPass {
  /** Milliseconds of the attention stage (CPU: kernel calls and their copies; GPU: 0, not timed apart). */
  readonly attentionMs: number;
  /** argmax of the logits of these rows of the pass (first maximum). */
  argmax(rows: readonly number[]): number[];
  /** The full logits rows (for sampling and beta mixing). */
  logits(rows: readonly number[]): Float32Array[];
  /** In-step rows 0..count-1 enter the cache at slots length..length+count-1; length += count. */
  commit(count: number): void;
}

/**
 * A pass's logits row that is not finite: NaN or +inf somewhere, or every logit -inf. The
 * lm_head's log-sum-exp shows it on both backends (NaN and infinities propagate into it), so
 * the check costs one float per row. Thrown by argmax/logits; the decoder names the step.
 */
export class NonFiniteLogits extends TidarcError {
  constructor(readonly row: number, readonly lse: number) {
    super('runtime', `the model produced non-finite logits (log-sum-exp ${String(lse)}) in row ${row} of a forward pass`);
  }
}

/** Throws NonFiniteLogits for the first requested row whose log-sum-exp is not finite. */
export function checkLogitsFinite(lse: Float32Array, rows: readonly number[]): void {
  for (let i = 0; i < rows.length; i++) if (!Number.isFinite(lse[i]!)) throw new NonFiniteLogits(rows[i]!, lse[i]!);
}

/** The cache as the decoding loop uses it. */
export interface CacheState {
  length: number;
  readonly shape: KvShape;
  ensureRoom(count: number): void;
  /** Tiles slots [0, source) over [source, count) (benchmarks: see KvCache.repeatSlots). */
  repeatSlots(source: number, count: number): void;
}

/** A model on one backend, over one sequence's cache (CPU: ModelRunner; CUDA: GpuModelRunner). */
export interface Runner {
  readonly spec: ModelSpec;
  readonly cache: CacheState;
  /** One forward (one NFE); see AttentionSchedule. A prefill's prompt rows enter the cache; the caller adds them to length. */
  pass(ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule): ForwardPass;
  /** The committed cache as host arrays (the CPU cache itself; a copy from the device). */
  hostCache(): KvCache;
  /** Releases what the runner holds (device memory); the CPU runner holds nothing to free. */
  close(): void;
}

/** Every buffer one forward of T tokens needs, allocated once per T and reused. */
interface Workspace {
  readonly x: Float32Array;
  readonly h: Float32Array;
  readonly q: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
  readonly attnOut: Float32Array;
  readonly gate: Float32Array;
  readonly up: Float32Array;
  readonly oF32: Float32Array;
  readonly oBits: Uint16Array;
  readonly qBits: Uint16Array;
  /** Per layer: the step's K/V, kept until the decoder commits the accepted ones. */
  readonly kBits: Uint16Array[];
  readonly vBits: Uint16Array[];
}

export class ModelRunner implements Runner {
  private readonly workspaces = new Map<number, Workspace>();

  constructor(
    readonly spec: ModelSpec,
    private readonly weights: ModelWeights,
    private readonly kernels: KernelLibrary,
    readonly cache: KvCache,
    /** Threads of the operators (0 = all); attention calls get them only when set, else they choose per call (tuned or heuristic). */
    private readonly threads: number,
    private readonly attentionThreads?: number,
  ) {}

  pass(ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule): ForwardPass {
    const r = this.forward(ids, positions, schedule);
    const { lmHead } = this.weights;
    const threads = this.threads;
    const cache = this.cache;
    return {
      attentionMs: r.attentionMs,
      argmax: (rows) => {
        const head = ops.lmHead(r.hidden, lmHead, Int32Array.from(rows), { logits: false }, threads);
        checkLogitsFinite(head.lse, rows);
        return [...head.argmax];
      },
      logits: (rows) => {
        const head = ops.lmHead(r.hidden, lmHead, Int32Array.from(rows), { logits: true }, threads);
        checkLogitsFinite(head.lse, rows);
        const out = head.logits!;
        return rows.map((_, i) => out.subarray(i * lmHead.rows, (i + 1) * lmHead.rows));
      },
      commit: (count) => {
        for (let layer = 0; layer < r.kStep.length; layer++) cache.write(layer, r.kStep[layer]!, r.vStep[layer]!, 0, count, cache.length);
        cache.length += count;
      },
    };
  }

  hostCache(): KvCache {
    return this.cache;
  }

  close(): void {}

  forward(ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule): ForwardResult {
    const D = this.spec.headDim;
    const T = ids.length;
    const ws = this.workspace(T);
    const { x, h, q, k, v, attnOut, gate, up } = ws;
    let attentionMs = 0;
    ops.embed(ids, this.weights.embedding, x);
    for (const [layer, w] of this.weights.layers.entries()) {
      ops.rmsnorm(x, w.inputNorm, this.spec.rmsNormEps, h);
      ops.matmul(h, w.q, w.qBias, q, this.threads);
      ops.matmul(h, w.k, w.kBias, k, this.threads);
      ops.matmul(h, w.v, w.vBias, v, this.threads);
      if (w.qNorm && w.kNorm) {
        ops.rmsnormHeads(q, w.qNorm, this.spec.rmsNormEps);
        ops.rmsnormHeads(k, w.kNorm, this.spec.rmsNormEps);
      }
      ops.rope(q, positions, this.spec.ropeTheta, D, this.spec.ropeScaling);
      ops.rope(k, positions, this.spec.ropeTheta, D, this.spec.ropeScaling);
      const qBits = this.toModelDtype(q, ws.qBits), kBits = this.toModelDtype(k, ws.kBits[layer]!), vBits = this.toModelDtype(v, ws.vBits[layer]!);
      const t0 = performance.now();
      this.attention(layer, qBits, kBits, vBits, T, schedule, ws.oBits);
      attentionMs += performance.now() - t0;
      decodeInto(this.spec.dtype, ws.oBits, ws.oF32);
      ops.matmul(ws.oF32, w.o, null, attnOut, this.threads);
      ops.addInPlace(x, attnOut);
      this.mlp(w, x, h, gate, up, attnOut);
    }
    ops.rmsnorm(x, this.weights.finalNorm, this.spec.rmsNormEps, h);
    return { hidden: h, kStep: ws.kBits, vStep: ws.vBits, attentionMs };
  }

  private workspace(T: number): Workspace {
    let ws = this.workspaces.get(T);
    if (ws) return ws;
    const { hiddenSize: H, queryHeads: Hq, kvHeads: Hkv, headDim: D, intermediateSize: I, layers } = this.spec;
    ws = {
      x: new Float32Array(T * H), h: new Float32Array(T * H),
      q: new Float32Array(T * Hq * D), k: new Float32Array(T * Hkv * D), v: new Float32Array(T * Hkv * D),
      attnOut: new Float32Array(T * H), gate: new Float32Array(T * I), up: new Float32Array(T * I),
      oF32: new Float32Array(T * Hq * D), oBits: new Uint16Array(T * Hq * D), qBits: new Uint16Array(T * Hq * D),
      kBits: Array.from({ length: layers }, () => new Uint16Array(T * Hkv * D)),
      vBits: Array.from({ length: layers }, () => new Uint16Array(T * Hkv * D)),
    };
    this.workspaces.set(T, ws);
    return ws;
  }

  private mlp(w: LayerWeights, x: Float32Array, h: Float32Array, gate: Float32Array, up: Float32Array, out: Float32Array): void {
    ops.rmsnorm(x, w.postNorm, this.spec.rmsNormEps, h);
    ops.matmul(h, w.gate, null, gate, this.threads);
    ops.matmul(h, w.up, null, up, this.threads);
    ops.siluMul(gate, up, gate, this.threads);
    ops.matmul(gate, w.down, null, out, this.threads);
    ops.addInPlace(x, out);
  }

  private toModelDtype(x: Float32Array, out: Uint16Array): Uint16Array {
    if (this.spec.dtype === 'bf16') ops.toBf16(x, out);
    else ops.toFp16(x, out);
    return out;
  }

  /** Attention of every row of the pass into o [T, qHeads, headDim] (model dtype bits). */
  private attention(layer: number, q: Uint16Array, k: Uint16Array, v: Uint16Array, T: number, schedule: AttentionSchedule, o: Uint16Array): void {
    const { queryHeads: Hq, kvHeads: Hkv, headDim: D } = this.spec;
    const cache = this.cache;
    const launch = (variant: string, rows: number, from: number, prefix: number, out: Uint16Array) => {
      // Rows [from, from + rows) of the pass; a shorter tail is zero-padded to the variant's n.
      const n = this.kernels.manifest.variants.find((x) => x.name === variant)!.steps;
      // A whole pass that is exactly one launch needs no copies (every decode step).
      const exact = from === 0 && rows === n && T === n;
      const slice = (src: Uint16Array, width: number) => {
        if (exact) return src;
        const buf = new Uint16Array(n * width);
        buf.set(src.subarray(from * width, Math.min(T, from + rows) * width));
        return buf;
      };
      const r = this.kernels.run(variant, {
        batch: 1, cacheCapacity: cache.shape.capacity, prefixLen: [prefix],
        q: slice(q, Hq * D), kCache: cache.k[layer]!, vCache: cache.v[layer]!, kStep: slice(k, Hkv * D), vStep: slice(v, Hkv * D),
        ...(this.attentionThreads === undefined ? {} : { threads: this.attentionThreads }),
        ...(exact ? { outputs: { o: out, lse: this.lseBuffer(n * Hq) } } : {}),
      });
      if (!exact) out.set(r.o.subarray(0, rows * Hq * D), from * Hq * D);
    };
    if (schedule.kind === 'step') {
      launch(schedule.variant, T, 0, cache.length, o);
      return;
    }
    const S = schedule.promptTokens;
    for (let c0 = 0; c0 < S; c0 += PREFILL_CHUNK) {
      const rows = Math.min(PREFILL_CHUNK, S - c0);
      launch(prefillVariantName(PREFILL_CHUNK), rows, c0, cache.length + c0, o);
      cache.write(layer, k, v, c0, rows, cache.length + c0);
    }
    if (schedule.blockVariant !== undefined && T > S) launch(schedule.blockVariant, T - S, S, cache.length + S, o);
  }

  private lse?: Float32Array;
  private lseBuffer(size: number): Float32Array {
    if (!this.lse || this.lse.length !== size) this.lse = new Float32Array(size);
    return this.lse;
  }
}
