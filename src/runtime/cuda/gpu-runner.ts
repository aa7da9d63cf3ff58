/**
 * The forward pass and KV cache on a CUDA device: the step graph the CPU ModelRunner runs
 * (ir/step-graph.ts), rewritten with the GPU's fusions (ir/step-rewrite.ts) and executed on the
 * cuda op table (gpu-op-table.ts), with weights, activations and the cache resident on the
 * device. A prefill (pass): token ids and positions in; per lm_head query the requested rows'
 * argmax, sampled token (or logits) out. A decode step (decodeStep): one upload of its inputs
 * from pinned memory, the whole step on the device, [n, tokens, next drafts, lse] out, replayed
 * as one CUDA graph per step kind and split-KV bucket (gpu-decode-step.ts, step-graphs.ts).
 * Attention launches go through the shared AttentionLauncher
 * (attention-launch.ts), which the cuda kernel library uses too: split-KV as tidarc tune measured
 * on a GPU for the shape, else the split rule (splits.ts: least estimated time over the SMs). The linear layers run on the generated GEMMs of the manifest
 * ("gemms": Q/K/V fused into one matrix and gate/up into one at upload, gpu-weights.ts); a layer
 * the GEMMs refuse ("gemmRefusals") runs tidarc_op_matmul per part. Its device buffers (the K/V
 * cache, pass activations, the prefill's lm_head scratch) are allocated by gpu-runner-buffers.ts.
 */
import { join } from 'node:path';
import type { Manifest } from '../../codegen/manifest.js';
import { TidarcError } from '../../errors.js';
import type { ModelSpec } from '../../ir/model.js';
import { type OpOf, type StepGraph, stepK, stepV } from '../../ir/step-graph.js';
import { runOps, type OpTable } from '../../ir/step-exec.js';
import { rewriteForGpu } from '../../ir/step-rewrite.js';
import {
  type AttentionSchedule, type DeviceStepInput, type DeviceStepOutput, type ForwardPass, type Runner, checkLogitsFinite,
} from '../model/forward.js';
import type { KvCache } from '../model/kv-cache.js';
import { checkNeededVariants } from '../model/needed-variants.js';
import { type ResolvedLaunch, passGraph, passKey, resolveLaunches } from '../model/step.js';
import { AttentionLauncher } from './attention-launch.js';
import type { CudaDevice, DeviceBuffer } from './device.js';
import { DeviceStepIo, samplingSetup, stepShape, stepShapeKey } from './gpu-decode-step.js';
import type { GemmRowScale, GpuGemms } from './gpu-gemm.js';
import { gemmsFor } from './gpu-gemm-sm90a.js';
import { type GpuGraphChoice, type GpuPass, gpuGraphChoice, gpuOpTable, headRowScale, runLinear } from './gpu-op-table.js';
import { GpuOps, packKvCommitTable, packSampleParams } from './gpu-ops.js';
import type { GpuWeights } from './gpu-weights.js';
import { GpuKvCache, type HeadScratch, type PassBuffers, allocHeadScratch, allocPassBuffers, headBuffers } from './gpu-runner-buffers.js';
import { type BufferLedger, type StepLaunch, StepGraphs, trackBuffers } from './step-graphs.js';

export { type GpuWeights, uploadWeights } from './gpu-weights.js';
export { GpuKvCache } from './gpu-runner-buffers.js';

/** The ops module inside a compiled kernels directory. */
export const OPS_MODULE = 'cuda/tidarc_ops.fatbin';

/** What one attention launch reads and writes (the attention op's tensors; kBits/vBits indexed by layer). */
interface Workspace {
  readonly rows: number;
  readonly prefixLen: DeviceBuffer;
  readonly qBits: DeviceBuffer;
  readonly kBits: readonly DeviceBuffer[];
  readonly vBits: readonly DeviceBuffer[];
  readonly oBits: DeviceBuffer;
  readonly lse: DeviceBuffer;
}

export interface GpuRunnerOptions {
  /** Decode steps as CUDA graphs (default true); false: launch by launch (comparison, debugging). */
  readonly graphs?: boolean;
  /**
   * A greedy TiDAR step's lm_head in one pass over the verify and every candidate next-draft row
   * (default true); false: the next drafts' own pass after acceptance (a test compares the two).
   */
  readonly oneHeadPass?: boolean;
  /**
   * Every kernel launched with programmatic dependent launch (default false). The caller decides
   * with pdl.ts programmaticLaunchFor (the kernels' manifest, the device, the compile's arches,
   * the driver): launched so, a kernel built without griddepcontrol.wait would race its predecessor.
   */
  readonly pdl?: boolean;
  /** Fold the RMSNorms into the GEMMs around them where allowed (default true; gpu-op-table.ts gpuGraphChoice says where and why not). */
  readonly foldNorms?: boolean;
}

/** What the attention launches of the pass running now read: its prefix lengths, workspace rows, launcher, and the split counts a step's bucket fixed. */
interface LaunchContext {
  readonly prefixLen: DeviceBuffer;
  readonly rows: number;
  readonly launcher: AttentionLauncher;
  readonly splits?: readonly number[];
}

/**
 * The kernels' scratch (GEMM split-K and row statistics, split-KV) and the op table over it,
 * one set for passes (the prefill: freed once decoding begins) and one for decode steps (kept
 * while the runner lives: its graphs read it, across the sequences of a reused runner).
 */
interface Launchers {
  readonly gemms: GpuGemms;
  readonly attention: AttentionLauncher;
  readonly table: OpTable<GpuPass>;
}

export class GpuModelRunner implements Runner {
  readonly cache: GpuKvCache;
  /** How the last decode step ran (tests, bench). */
  lastStepLaunch: StepLaunch | undefined;
  /** What the last decode step downloaded: n, tokens, next drafts and each lm_head row's lse (tests). */
  lastStepResult: ReturnType<DeviceStepIo['read']> | undefined;
  private readonly oneHeadPass: boolean;
  /** Whether the kernels are launched programmatically (PDL): GpuRunnerOptions.pdl. */
  readonly pdl: boolean;
  private readonly device: CudaDevice;
  private readonly ledger: BufferLedger;
  private readonly stepGraphs: StepGraphs;
  /** Step inputs and outputs by step shape (every sampling setup of a shape shares them). */
  private readonly stepIo = new Map<string, DeviceStepIo>();
  private context?: LaunchContext;
  private readonly ops: GpuOps;
  private readonly passes: Launchers;
  private readonly steps: Launchers;
  /** Activations of passes (pass) and of decode steps (decodeStep) by token count: a prompt of a step's length must not free the step's. */
  private readonly passWorkspaces = new Map<number, PassBuffers>();
  private readonly stepWorkspaces = new Map<number, PassBuffers>();
  /** Per step workspace (by token count): the device table of each layer's step K/V and cache buffers that the step's one commit launch reads. */
  private readonly commitTables = new Map<number, DeviceBuffer>();
  /** Token counts of the prefill passes whose scratch is still allocated (released by the next decode step). */
  private readonly prefillTokens = new Set<number>();
  private readonly graphs = new Map<string, StepGraph>();
  private head?: HeadScratch;
  /** The rewrite options of every graph, and whether the norms fold (else why not). */
  readonly graphChoice: GpuGraphChoice;

  constructor(
    readonly spec: ModelSpec,
    device: CudaDevice,
    private readonly weights: GpuWeights,
    kernelsDir: string,
    manifest: Manifest,
    capacity: number,
    options: GpuRunnerOptions = {},
  ) {
    checkNeededVariants(spec, manifest, kernelsDir);
    // Everything the runner owns allocates through a view that numbers its buffers: a free may
    // be a buffer a captured step graph reads (step-graphs.ts).
    this.ledger = trackBuffers(device);
    this.device = device = this.ledger.device;
    this.stepGraphs = new StepGraphs(this.ledger, options.graphs ?? true);
    this.oneHeadPass = options.oneHeadPass ?? true;
    this.pdl = options.pdl === true;
    // Every launch site of the runner (operators, both GEMM families and their row statistics, attention and its split merge), in passes and in captured steps.
    const launch = { programmatic: this.pdl };
    this.ops = new GpuOps(device, join(kernelsDir, OPS_MODULE), launch);
    const launchers = (): Launchers => {
      // The selection rule (arch.ts selectArch): the sm_90a GEMMs on a 9.0 device when the compile built them.
      const gemms = gemmsFor(device, kernelsDir, manifest, launch);
      return { gemms, attention: new AttentionLauncher(device, kernelsDir, manifest, launch), table: gpuOpTable({ spec, ops: this.ops, gemms, weights, attention: (op, p) => this.attentionOp(op, p) }) };
    };
    this.passes = launchers();
    this.steps = launchers();
    this.graphChoice = gpuGraphChoice(spec, this.passes.gemms, weights, options.foldNorms ?? true);
    this.cache = new GpuKvCache(device, { layers: spec.layers, kvHeads: spec.kvHeads, headDim: spec.headDim, capacity });
  }

  /**
   * A pass (the prefill) runs launch by launch; it is not captured as a graph. Why, in figures
   * (Qwen3 shapes, qk-norm): a pass of T prompt tokens in C = ceil(T / 64) chunks issues
   * L x (7 + 2C + 1) + 2 launches (per layer 2 norms, 4 GEMMs and rope_pack, which applies the
   * q/k head norms, an attention launch and a K/V commit per chunk, the mask block; the embed and
   * the final norm: gpu-runner-graph.test.ts), each ~5 us of host time (JS packing, N-API,
   * cuLaunchKernel: assumed, not yet measured on the H200), against the pass's roofline on an
   * H200 (4.8 TB/s, 790 TFLOP/s; src/bench/roofline.ts stepCost):
   *          T = 64              256                 1024                 4096
   *   0.6B   282 l: 1.4 vs 0.25  450 l: 2.3 vs 0.30  1122 l: 5.6 vs 1.45  3810 l: 19.1 vs 9.4 ms
   *   8B     362 l: 1.8 vs 3.2   578 l: 2.9 vs 4.6   1442 l: 7.2 vs 18.8  4898 l: 24.5 vs 84.6 ms
   * The 8B prefill is GPU-bound at every length (the host issues ahead of the GPU: a graph saves
   * nothing). The 0.6B one is host-bound by 1.2 to 10 ms of time to first token, once per prompt;
   * a graph would win that back only from a chunk count's third prompt (warm-up, capture,
   * replay) and only with every per-prompt value on the device: the chunks' prefix lengths and
   * commit slots (read on the device, as the steps' kv_commit_layers), rows padded to whole chunks in the GEMMs, and
   * split-KV counts fixed per chunk count. And a graph holds the addresses of the pass's
   * activations and GEMM/split-KV scratch, which the first decode step frees (releasePrefill):
   * a kept prefill graph would keep them, 183 / 699 MiB at T = 1024 / 4096 for 0.6B, 349 / 1333
   * MiB for 8B (the rewritten graph's tensors in whole chunks), per bucket. At long prompts most
   * launches are the per-chunk attention and commit (2C a layer): one attention launch over
   * every chunk would remove them with no graph. So: not captured; the device check's e2e part
   * reports the measured host microseconds per launch (e2e_report.py) to revisit this.
   */
  pass(ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule): ForwardPass {
    const T = ids.length;
    const graph = this.graph(T, schedule);
    const ws = this.workspace(graph, this.passWorkspaces);
    if (schedule.kind === 'prefill') this.prefillTokens.add(T);
    const hidden = this.forward(graph, ws, ids, positions);
    const { cache, device, ops, spec } = this;
    const scale = headRowScale(graph, ws.bufs, spec);
    return {
      attentionMs: 0,
      argmax: (rows) => {
        const head = this.lmHead(hidden, T, rows, 'argmax', scale);
        const out = new Int32Array(rows.length);
        device.download(head.argmax, out);
        return [...out];
      },
      logits: (rows) => {
        const head = this.lmHead(hidden, T, rows, 'logits', scale);
        const V = this.lmHeadWeight().rows;
        const out = new Float32Array(rows.length * V);
        device.download(head.logits, out);
        return rows.map((_, i) => out.subarray(i * V, (i + 1) * V));
      },
      sample: (rows, o) => {
        // The draw on the device (tidarc_op_sample): only the tokens come back, not the logits rows.
        const head = this.lmHead(hidden, T, rows, 'logits', scale);
        device.upload(head.params, packSampleParams({ ...o, beta: 1, step: o.rngStep }));
        ops.sample({
          logits: { buf: head.logits }, params: { buf: head.params }, tokens: head.tokens, accepted: head.accepted, rows: rows.length, vocab: this.lmHeadWeight().rows,
          ...(o.neverEmit === undefined ? {} : { neverEmit: o.neverEmit }),
        });
        const out = new Int32Array(rows.length);
        device.download(head.tokens, out);
        return [...out];
      },
      commit: (count) => {
        for (let layer = 0; layer < spec.layers; layer++) {
          ops.kvCommit({ kStep: { buf: ws.bufs.get(stepK(layer))! }, vStep: { buf: ws.bufs.get(stepV(layer))! }, kCache: cache.k[layer]!, vCache: cache.v[layer]!, from: 0, count, slot: cache.length, kvHeads: spec.kvHeads, capacity: cache.shape.capacity, headDim: spec.headDim });
        }
        cache.length += count;
      },
    };
  }

  /**
   * A whole decode step on the device (see DeviceStepInput): one upload from pinned memory, the
   * forward, lm_head, verification and acceptance, the next drafts and the commit of the
   * accepted rows, then one download. With graphs, the step's graph for its kind and split
   * bucket (step-graphs.ts); without, the same launches one by one.
   */
  decodeStep(input: DeviceStepInput): DeviceStepOutput {
    const shape = stepShape(input);
    this.releasePrefill();
    const graph = this.graph(shape.tokens, { kind: 'step', variant: input.variant });
    const ws = this.workspace(graph, this.stepWorkspaces);
    const launches = resolveLaunches(graph, this.cache.length);
    if (launches.length !== 1 || launches[0]!.commitRows !== 0) throw new TidarcError('runtime', `decode step ${input.variant}: expected one attention launch without commits, the graph has ${launches.length}`);
    const shapeKey = stepShapeKey(input.variant, shape);
    let io = this.stepIo.get(shapeKey);
    if (!io) this.stepIo.set(shapeKey, (io = new DeviceStepIo(this.device, shape, this.lmHeadWeight().rows)));
    const launcher = this.steps.attention;
    const splits = launches.map((l) => launcher.splitsFor(launcher.variant(l.variant), 1, l.prefix));
    io.fill(input, launches[0]!.prefix);
    const stepIo = io;
    const commitTable = this.commitTable(shape.tokens, ws);
    const { spec, cache, ops } = this;
    // One graph per kind and bucket: a request's temperature, top-k, top-p, seed and beta are in
    // the upload (TidarcSampleParams), so a new setup replays the graph another one captured.
    const key = `${shapeKey} ${samplingSetup(input)} splits ${splits.join(',')}`;
    this.lastStepLaunch = this.stepGraphs.run(key, () => {
      stepIo.upload();
      const bufs = new Map(ws.bufs).set('ids', stepIo.ids).set('positions', stepIo.positions);
      const hidden = this.runGraph(graph, { ...ws, bufs }, launches, { prefixLen: stepIo.prefixLen, rows: ws.rows, launcher, splits }, this.steps);
      stepIo.recordTail({
        ops, gemms: this.steps.gemms, lmHead: this.lmHeadWeight(), hidden, input, oneHeadPass: this.oneHeadPass, headScale: headRowScale(graph, bufs, spec),
        // Every layer's commit in one launch, through the workspace's table of its step K/V and the cache's layers.
        commit: (count, slot, maxCount) => ops.kvCommitLayers({ table: { buf: commitTable }, layers: spec.layers, count: { buf: count }, slot: { buf: slot }, maxCount, kvHeads: spec.kvHeads, capacity: cache.shape.capacity, headDim: spec.headDim }),
      });
    });
    this.device.download(io.out, io.host);
    const r = (this.lastStepResult = io.read());
    // A NaN or infinite row must stop the run, not become a token (its lse is not finite).
    checkLogitsFinite(r.lse.rows, input.verifyRows);
    if (input.mixRows) checkLogitsFinite(r.lse.mix, input.mixRows);
    if (input.nextDrafts) checkLogitsFinite(r.lse.next, Array.from({ length: shape.nextRows }, (_, s) => input.nextDrafts!.stride * r.n + input.nextDrafts!.offset + s));
    cache.length += r.n;
    return { tokens: r.tokens, nextDrafts: r.nextDrafts };
  }

  /**
   * Frees what only the prefill needed once decoding has begun: its activations (a prompt's
   * rows, in whole chunks), the lm_head scratch of its queries, and the passes' GEMM and
   * split-KV scratch. None of it is in a step graph (steps have their own): on a reused runner
   * the graphs of the last sequence stay valid.
   */
  private releasePrefill(): void {
    if (this.prefillTokens.size === 0) return;
    for (const T of this.prefillTokens) {
      const ws = this.passWorkspaces.get(T);
      if (!ws) continue;
      for (const b of [ws.prefixLen, ...ws.bufs.values()]) this.device.free(b);
      this.passWorkspaces.delete(T);
    }
    this.prefillTokens.clear();
    if (this.head) for (const b of headBuffers(this.head)) this.device.free(b);
    this.head = undefined;
    this.passes.gemms.close();
    this.passes.attention.close();
  }

  /**
   * Readies the runner for another sequence (a model's runner pool): an empty cache, zeroed so
   * no K/V of the last sequence is ever read, and the prefill's scratch freed. The step
   * workspaces, step I/O, kernel scratch and captured graphs stay: the next sequence's steps of
   * the same kinds and buckets replay from its first step, whatever its sampling setup. Sampling
   * needs no reset: the device RNG is counter-based (seed, step), both uploaded each step.
   */
  reset(): void {
    this.releasePrefill();
    this.cache.length = 0;
    for (const b of [...this.cache.k, ...this.cache.v]) this.device.fill(b, 0);
    this.lastStepLaunch = undefined;
  }

  /** Device bytes this runner holds now (cache, workspaces, scratch, step I/O). */
  get deviceBytes(): number {
    return this.ledger.liveBytes();
  }

  /**
   * The decode steps' scratch this runner holds now, by slot (step-scratch.ts names them so): each
   * step kind's activations, commit table, I/O and logits, and the steps' GEMM and split-KV
   * scratch. A generation's price merges with it (a reused runner is not asked twice for them).
   */
  heldScratch(): Map<string, number> {
    const slots = new Map<string, number>();
    for (const [T, ws] of this.stepWorkspaces) slots.set(`step activations T${T}`, [ws.prefixLen, ...ws.bufs.values()].reduce((n, b) => n + b.bytes, 0));
    for (const [T, b] of this.commitTables) slots.set(`K/V commit table T${T}`, b.bytes);
    for (const [key, io] of this.stepIo) {
      const held = io.heldBytes();
      slots.set(`step I/O ${key}`, held.fixed);
      for (const [label, bytes] of held.lazy) slots.set(`${label} ${key}`, bytes);
    }
    for (const m of [this.steps.gemms.heldScratch(), this.steps.attention.heldScratch()]) for (const [k, v] of m) if (v > 0) slots.set(`step ${k}`, v);
    return slots;
  }

  /** Decode-step graphs held now. */
  get stepGraphCount(): number {
    return this.stepGraphs.size;
  }

  hostCache(): KvCache {
    return this.cache.toHost();
  }

  close(): void {
    this.stepGraphs.close();
    for (const io of this.stepIo.values()) io.free();
    this.stepIo.clear();
    const bufs = [...this.passWorkspaces.values(), ...this.stepWorkspaces.values()].flatMap((w) => [w.prefixLen, ...w.bufs.values()]);
    bufs.push(...this.commitTables.values());
    this.commitTables.clear();
    if (this.head) bufs.push(...headBuffers(this.head));
    for (const l of [this.passes, this.steps]) {
      l.attention.close();
      l.gemms.close();
    }
    for (const b of bufs) this.device.free(b);
    this.passWorkspaces.clear();
    this.stepWorkspaces.clear();
    this.prefillTokens.clear();
    this.graphs.clear();
    this.head = undefined;
    this.cache.free();
  }

  /** The pass's graph: the base graph with the GPU's fusions, built once per T and schedule. */
  private graph(T: number, schedule: AttentionSchedule): StepGraph {
    const key = passKey(T, schedule);
    let graph = this.graphs.get(key);
    if (!graph) {
      if (this.graphs.size >= MAX_CACHED_GRAPHS) this.graphs.clear();
      this.graphs.set(key, (graph = rewriteForGpu(passGraph(this.spec, T, schedule), this.graphChoice.options)));
    }
    return graph;
  }

  /** Uploads the pass's inputs and runs the graph; returns the final-normed hidden states [T, hidden]. */
  private forward(graph: StepGraph, ws: PassBuffers, ids: Int32Array, positions: Int32Array): DeviceBuffer {
    const launches = resolveLaunches(graph, this.cache.length);
    this.device.upload(ws.bufs.get('ids')!, ids);
    this.device.upload(ws.bufs.get('positions')!, positions);
    this.device.upload(ws.prefixLen, Int32Array.from(launches, (l) => l.prefix));
    return this.runGraph(graph, ws, launches, { prefixLen: ws.prefixLen, rows: ws.rows, launcher: this.passes.attention }, this.passes);
  }

  /** The graph's launches over inputs already on the device (nothing synchronous: a step graph captures it). */
  private runGraph(graph: StepGraph, ws: PassBuffers, launches: readonly ResolvedLaunch[], context: LaunchContext, launchers: Launchers): DeviceBuffer {
    this.context = context;
    try {
      runOps(graph.ops, launchers.table, { bufs: ws.bufs, widths: ws.widths, types: ws.types, tokens: graph.tokens, launches }, 'cuda');
    } finally {
      this.context = undefined;
    }
    return ws.bufs.get(graph.head.x)!;
  }

  /** Every launch of the pass for one layer; a prefill chunk's K/V enters the cache before the next chunk runs. */
  private attentionOp(op: OpOf<'attention'>, p: GpuPass): void {
    const { layer } = op;
    const kBits: DeviceBuffer[] = [], vBits: DeviceBuffer[] = [];
    kBits[layer] = p.bufs.get(op.k)!, vBits[layer] = p.bufs.get(op.v)!;
    const context = this.context!;
    const ws: Workspace = { rows: context.rows, prefixLen: context.prefixLen, qBits: p.bufs.get(op.q)!, kBits, vBits, oBits: p.bufs.get(op.out)!, lse: p.bufs.get(op.lse)! };
    const { kvHeads: Hkv, headDim: D } = this.spec;
    for (const [i, l] of p.launches.entries()) {
      this.attention(context.launcher, layer, ws, l.variant, l.from, l.prefix, i, context.splits?.[i]);
      if (l.commitRows > 0) {
        this.ops.kvCommit({ kStep: { buf: kBits[layer]! }, vStep: { buf: vBits[layer]! }, kCache: this.cache.k[layer]!, vCache: this.cache.v[layer]!, from: l.from, count: l.commitRows, slot: l.prefix, kvHeads: Hkv, capacity: this.cache.shape.capacity, headDim: D });
      }
    }
  }

  private lmHeadWeight() {
    return this.weights.matrices.get('lm_head.weight')!;
  }

  /** One attention launch over rows [from, from + n) of the pass (n = the variant's tokens), split-KV as the shared launcher chooses. */
  private attention(launcher: AttentionLauncher, layer: number, ws: Workspace, variantName: string, from: number, prefix: number, launchIndex: number, splits?: number): void {
    const v = launcher.variant(variantName);
    if (from + v.steps > ws.rows) throw new TidarcError('runtime', `attention ${variantName} at row ${from} needs ${v.steps} rows; the workspace has ${ws.rows}`);
    const { queryHeads: Hq, kvHeads: Hkv, headDim: D } = this.spec;
    launcher.launch(v, {
      q: ws.qBits.ptr + from * Hq * D * 2,
      kCache: this.cache.k[layer]!.ptr, vCache: this.cache.v[layer]!.ptr,
      kStep: ws.kBits[layer]!.ptr + from * Hkv * D * 2, vStep: ws.vBits[layer]!.ptr + from * Hkv * D * 2,
      prefixLen: ws.prefixLen.ptr + launchIndex * 4,
      o: ws.oBits.ptr + from * Hq * D * 2, lse: ws.lse.ptr + from * Hq * 4,
      batch: 1, cacheCapacity: this.cache.shape.capacity, maxPrefix: prefix, ...(splits === undefined ? {} : { splits }),
    });
  }

  /**
   * lm_head of the requested rows: their argmax / max / lse on the device, and for `logits`
   * the logits [R, V]. A greedy query (`argmax`) on a GEMM with the row statistics epilogue
   * writes no logits: per-tile statistics, then their merge (R x V x 4 bytes neither written
   * nor read again).
   */
  private lmHead(hidden: DeviceBuffer, T: number, rows: readonly number[], want: 'argmax' | 'logits', scale: { rowScale?: GemmRowScale }): HeadScratch {
    for (const r of rows) if (!(Number.isInteger(r) && r >= 0 && r < T)) throw new TidarcError('invalid-argument', 'lm_head row outside the pass', { field: 'rows', value: r, allowed: `0..${T - 1}` });
    const head = this.headScratch(rows.length);
    const W = this.lmHeadWeight();
    const V = W.rows;
    this.device.upload(head.rowIds, Int32Array.from(rows));
    const { gemms } = this.passes;
    if (want === 'argmax' && gemms.hasRowStats() && gemms.covers('lm_head', W)) {
      gemms.run('lm_head', { x: hidden, rows: rows.length, w: W, rowIds: head.rowIds, outs: [], epilogue: 'rowStats', stats: { argmax: head.argmax, max: head.maxLogit, lse: head.lse }, ...scale });
    } else {
      runLinear(gemms, this.ops, 'lm_head', hidden, rows.length, { whole: W, bias: null, parts: [[W, null, head.logits]] }, { rowIds: head.rowIds, ...scale });
      this.ops.rowStats(head.logits, head.argmax, head.maxLogit, head.lse, rows.length, V);
    }
    // A NaN or infinite row must stop the run, not become a token: its lse is not finite
    // (row_stats propagates NaN and infinities into it). One more small download per query.
    const lse = new Float32Array(rows.length);
    this.device.download(head.lse, lse);
    checkLogitsFinite(lse, rows);
    return head;
  }

  private headScratch(rows: number): HeadScratch {
    if (this.head && this.head.rows >= rows) return this.head;
    if (this.head) for (const b of headBuffers(this.head)) this.device.free(b);
    return (this.head = allocHeadScratch(this.device, rows, this.lmHeadWeight().rows));
  }

  /**
   * tidarc_op_kv_commit_layers' table for the step workspace of T tokens: per layer its step K/V
   * and the cache's K/V addresses, uploaded once (not in a capture: decodeStep asks before its
   * graph runs). Step workspaces and the cache live as long as the runner (reset zeroes the cache
   * in place), so the addresses never change, as the captured graphs that read them require.
   */
  private commitTable(T: number, ws: PassBuffers): DeviceBuffer {
    const known = this.commitTables.get(T);
    if (known) return known;
    const { cache } = this;
    const table = packKvCommitTable(Array.from({ length: this.spec.layers }, (_, layer) => ({ kStep: ws.bufs.get(stepK(layer))!, vStep: ws.bufs.get(stepV(layer))!, kCache: cache.k[layer]!, vCache: cache.v[layer]! })));
    const buf = this.device.alloc(table.byteLength, `K/V commit table [${T} tokens]`);
    this.device.upload(buf, table);
    this.commitTables.set(T, buf);
    return buf;
  }

  /** The graph's tensors for its T, allocated once per T (allocPassBuffers). */
  private workspace(graph: StepGraph, workspaces: Map<number, PassBuffers>): PassBuffers {
    const known = workspaces.get(graph.tokens);
    if (known) return known;
    const ws = allocPassBuffers(this.device, graph, workspaces === this.stepWorkspaces);
    workspaces.set(graph.tokens, ws);
    return ws;
  }
}

/** Graphs a runner keeps (a prefill's differs per prompt length; decode steps reuse a few). */
const MAX_CACHED_GRAPHS = 32;
