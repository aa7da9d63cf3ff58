/**
 * One forward pass on the CPU: the pass's step graph (ir/step-graph.ts, the same graph the
 * cuda runner rewrites and runs) on the CPU op table (cpu-op-table.ts), with attention through
 * the compiled kernels. A pass is one NFE: every token of the step goes through every layer
 * once, whatever number of attention launches a layer needs:
 *   - step:    all T tokens in one launch of a decode variant (tidar_k<K>, ar) after the
 *              committed prefix;
 *   - prefill: the prompt rows in launches of the causal prefill chunk (each chunk's K/V
 *              enters the cache before the next chunk), then the trailing mask block
 *              (block_k<K>) over the whole prompt (ir/step-graph.ts attentionLaunches).
 */
import type { ModelSpec } from '../../ir/model.js';
import { type AttentionSchedule, type StepGraph, stepK, stepV } from '../../ir/step-graph.js';
import { runOps, type OpTable } from '../../ir/step-exec.js';
import { validateGraph } from '../../ir/step-rewrite.js';
import { TidarcError } from '../../errors.js';
import type { KernelLibrary } from '../kernel-library.js';
import * as ops from '../ops.js';
import { type CpuBuffer, type CpuPass, cpuOpTable } from './cpu-op-table.js';
import { checkNeededVariants } from './needed-variants.js';
import type { KvCache, KvShape } from './kv-cache.js';
import { passGraph, passKey, resolveLaunches } from './step.js';
import { type ModelWeights, weightOf } from './weights.js';

export type { AttentionSchedule };

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
  /**
   * One draw per row from softmax(logits / temperature) after top-k and top-p, on the device
   * with the seeded counter-based RNG (cuda; tidarc_op_sample): only the tokens come back.
   * Absent: the caller draws on the host from logits().
   */
  readonly sample?: (rows: readonly number[], o: { readonly temperature: number; readonly topP: number; readonly topK?: number; readonly seed: number; readonly neverEmit?: number; readonly rngStep: number }) => number[];
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

/**
 * A decode step run whole on the backend's device (cuda): the forward, the lm_head of the rows
 * it verifies, their greedy or sampled verification and the lossless acceptance, the next
 * drafts and the commit of the accepted rows, with only what it made final coming back.
 */
export interface DeviceStepInput {
  /** The step's attention variant (tidar_k<K>, ar). */
  readonly variant: string;
  readonly ids: Int32Array;
  readonly positions: Int32Array;
  /** Rows of the pass whose logits verify, and per row the draft it checks (-1: none, a free draw). */
  readonly verifyRows: readonly number[];
  readonly verifyDrafts: readonly number[];
  /** beta < 1: the rows mixed into the verify rows (beta * verify + (1 - beta) * mix). */
  readonly mixRows?: readonly number[];
  /** The next drafts: the argmax of rows stride * n + offset + s (s < count) once n tokens are final. */
  readonly nextDrafts?: { readonly stride: number; readonly offset: number; readonly count: number };
  /** temperature 0: greedy. */
  readonly sampling: { readonly temperature: number; readonly topP: number; readonly topK?: number; readonly beta: number; readonly seed: number; readonly neverEmit?: number };
  /** The step's counter of the seeded RNG (reproducible runs). */
  readonly rngStep: number;
}

export interface DeviceStepOutput {
  /** The n tokens the step made final (n - 1 accepted drafts, then the correction or bonus); rows 0..n-1 entered the cache. */
  readonly tokens: readonly number[];
  readonly nextDrafts: readonly number[];
}

/** A model on one backend, over one sequence's cache (CPU: ModelRunner; CUDA: GpuModelRunner). */
export interface Runner {
  readonly spec: ModelSpec;
  readonly cache: CacheState;
  /** One forward (one NFE); see AttentionSchedule. A prefill's prompt rows enter the cache; the caller adds them to length. */
  pass(ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule): ForwardPass;
  /**
   * pass() with `pause` awaited between the graph's ops (the layers' stages, a prefill chunk's
   * attention among them), so that a long prefill lets the event loop (signals, timers, I/O) run
   * (CPU). Absent: the caller runs pass().
   */
  readonly passAsync?: (ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule, pause: () => Promise<void>) => Promise<ForwardPass>;
  /** A whole decode step on the device, where the backend has one (cuda); else the decoder runs it on the host over pass(). */
  readonly decodeStep?: (input: DeviceStepInput) => DeviceStepOutput;
  /** The committed cache as host arrays (the CPU cache itself; a copy from the device). */
  hostCache(): KvCache;
  /** Releases what the runner holds (device memory); the CPU runner holds nothing to free. */
  close(): void;
}

export class ModelRunner implements Runner {
  private readonly workspaces = new Map<number, Map<string, CpuBuffer>>();
  private readonly graphs = new Map<string, StepGraph>();
  private readonly table: OpTable<CpuPass>;

  constructor(
    readonly spec: ModelSpec,
    private readonly weights: ModelWeights,
    kernels: KernelLibrary,
    readonly cache: KvCache,
    /** Threads of the operators (0 = all); attention calls get them only when set, else they choose per call (tuned or heuristic). */
    private readonly threads: number,
    attentionThreads?: number,
  ) {
    checkNeededVariants(spec, kernels.manifest);
    this.table = cpuOpTable({ spec, weights, kernels, cache, threads, ...(attentionThreads === undefined ? {} : { attentionThreads }) });
  }

  pass(ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule): ForwardPass {
    return this.wrap(this.forward(ids, positions, schedule));
  }

  async passAsync(ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule, pause: () => Promise<void>): Promise<ForwardPass> {
    const run = this.forwardOps(ids, positions, schedule);
    for (let r = run.next(); ; r = run.next()) {
      if (r.done) return this.wrap(r.value);
      await pause();
    }
  }

  private wrap(r: ForwardResult & { readonly graph: StepGraph }): ForwardPass {
    const lmHead = weightOf(this.weights, r.graph.head.weight);
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

  /** Builds (once per T and schedule) the pass's graph and runs it on the CPU op table. */
  forward(ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule): ForwardResult & { readonly graph: StepGraph } {
    const run = this.forwardOps(ids, positions, schedule);
    for (;;) {
      const r = run.next();
      if (r.done) return r.value;
    }
  }

  /** forward(), one graph op a resumption (passAsync pauses between them). */
  private *forwardOps(ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule): Generator<void, ForwardResult & { readonly graph: StepGraph }> {
    const T = ids.length;
    const key = passKey(T, schedule);
    let graph = this.graphs.get(key);
    if (!graph) {
      if (this.graphs.size >= MAX_CACHED_GRAPHS) this.graphs.clear();
      this.graphs.set(key, (graph = validateGraph(passGraph(this.spec, T, schedule), 'cpu')));
    }
    const bufs = new Map(this.workspace(graph));
    bufs.set('ids', ids).set('positions', positions);
    const L = this.cache.length;
    const p: CpuPass = { bufs, tokens: T, launches: resolveLaunches(graph, L), attentionMs: 0 };
    for (let i = 0; i < graph.ops.length; i++) {
      if (i > 0) yield;
      runOps(graph.ops.slice(i, i + 1), this.table, p, 'cpu');
    }
    const layers = Array.from({ length: this.spec.layers }, (_, i) => i);
    return {
      graph, hidden: bufs.get(graph.head.x) as Float32Array, attentionMs: p.attentionMs,
      kStep: layers.map((i) => bufs.get(stepK(i)) as Uint16Array), vStep: layers.map((i) => bufs.get(stepV(i)) as Uint16Array),
    };
  }

  /** The graph's activations for its T, allocated once per T and reused (the base graph's tensors do not depend on the schedule). */
  private workspace(graph: StepGraph): Map<string, CpuBuffer> {
    let ws = this.workspaces.get(graph.tokens);
    if (ws) return ws;
    ws = new Map();
    for (const t of graph.tensors) {
      if (t.type === 'i32') continue;  // ids and positions: the pass's own arrays
      const n = graph.tokens * t.width;
      ws.set(t.name, t.type === 'f32' ? new Float32Array(n) : new Uint16Array(n));
    }
    this.workspaces.set(graph.tokens, ws);
    return ws;
  }
}

/** Graphs a runner keeps (a prefill's differs per prompt length; decode steps reuse a few). */
const MAX_CACHED_GRAPHS = 32;
