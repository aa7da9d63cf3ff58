/**
 * The forward pass and KV cache on a CUDA device: the same computation as the CPU ModelRunner
 * (src/runtime/model/forward.ts), with weights, activations and the cache resident on the
 * device, the attention through the compiled fatbins and everything else through the GPU
 * operators (tidarc_ops.cu). Host traffic per pass: token ids and positions in; per lm_head
 * query the requested rows' argmax (or logits) out. Each attention launch splits its prefix
 * (split-KV, then the combine kernel) as tidarc tune measured on a GPU for the shape, else by
 * the wave-efficiency rule over the device's SMs. The linear layers run on the generated GEMMs
 * of the manifest ("gemms": Q/K/V fused into one matrix and gate/up into one at upload, each
 * GEMM writing its parts straight into the buffers the next operators read); a layer the GEMMs
 * refuse ("gemmRefusals") runs tidarc_op_matmul per part.
 */
import { join } from 'node:path';
import { tunedCall } from '../../codegen/call-params.js';
import { chooseSplits } from '../../codegen/splits.js';
import { PREFILL_CHUNK } from '../../codegen/variant.js';
import { interleaveGateUp } from '../../codegen/gemm-epilogue.js';
import type { Manifest, ManifestVariant } from '../../codegen/manifest.js';
import { TidarcError } from '../../errors.js';
import type { ModelSpec } from '../../ir/model.js';
import { ropeInvFreq, type WeightMatrix } from '../ops.js';
import { type AttentionSchedule, type CacheState, type ForwardPass, type Runner, checkLogitsFinite } from '../model/forward.js';
import { KvCache, type KvShape, checkRoom } from '../model/kv-cache.js';
import type { ModelWeights } from '../model/weights.js';
import type { CudaDevice, DeviceBuffer, KernelRef } from './device.js';
import { GpuGemms } from './gpu-gemm.js';
import { type GpuMatrix, GpuOps } from './gpu-ops.js';
import { ATTENTION, packStruct } from './op-abi.js';
import { prefillVariantName } from '../../codegen/variant-name.js';

/** The ops module inside a compiled kernels directory. */
export const OPS_MODULE = 'cuda/tidarc_ops.fatbin';

interface GpuLayer {
  readonly inputNorm: GpuMatrix;
  readonly postNorm: GpuMatrix;
  readonly q: GpuMatrix;
  readonly k: GpuMatrix;
  readonly v: GpuMatrix;
  readonly o: GpuMatrix;
  readonly qBias: DeviceBuffer | null;
  readonly kBias: DeviceBuffer | null;
  readonly vBias: DeviceBuffer | null;
  readonly qNorm: GpuMatrix | null;
  readonly kNorm: GpuMatrix | null;
  readonly gate: GpuMatrix;
  readonly up: GpuMatrix;
  readonly down: GpuMatrix;
  /** q | k | v as one matrix (q, k and v above are views into it), with its bias when the model has one. */
  readonly qkv: GpuMatrix;
  readonly qkvBias: DeviceBuffer | null;
  /**
   * gate | up as one matrix (gate and up above are views into it), or, when the compiled
   * gate_up GEMM fuses SwiGLU (GpuWeights.gateUpInterleave), their rows interleaved in blocks
   * (gate and up are then not views of anything and only the GEMM reads gateUp).
   */
  readonly gateUp: GpuMatrix;
}

/** The model's weights on the device (a tied lm_head shares the embedding's buffer). */
export interface GpuWeights {
  readonly embedding: GpuMatrix;
  readonly layers: readonly GpuLayer[];
  readonly finalNorm: GpuMatrix;
  readonly lmHead: GpuMatrix;
  readonly invFreq: DeviceBuffer;
  readonly bytes: number;
  /** gate | up rows interleaved in blocks of this many for the SwiGLU epilogue (tidarc_gemm_abi.h). */
  readonly gateUpInterleave?: number;
}

/**
 * The interleave the compiled gate_up GEMM fuses SwiGLU with, when the manifest has one for
 * these weights' shape and format (the runner then launches it with the epilogue).
 */
function gateUpInterleaveOf(manifest: Pick<Manifest, 'gemms'> | undefined, w: ModelWeights): number | undefined {
  const l = w.layers[0];
  const g = manifest?.gemms?.find((x) => x.roles.includes('gate_up'));
  if (!l || !g?.swigluInterleave || g.n !== l.gate.rows + l.up.rows || g.k !== l.gate.cols || g.dtype !== l.gate.dtype || l.gate.rows !== l.up.rows) return undefined;
  return g.swigluInterleave;
}

export function uploadWeights(device: CudaDevice, spec: ModelSpec, w: ModelWeights, manifest?: Pick<Manifest, 'gemms'>): GpuWeights {
  const gateUpInterleave = gateUpInterleaveOf(manifest, w);
  const seen = new Map<WeightMatrix, GpuMatrix>();
  let bytes = 0;
  const matrix = (m: WeightMatrix, label: string): GpuMatrix => {
    const known = seen.get(m);
    if (known) return known;
    const buf = device.alloc(m.data.byteLength, label);
    device.upload(buf, m.data);
    bytes += buf.bytes;
    const g = { buf, dtype: m.dtype, rows: m.rows, cols: m.cols };
    seen.set(m, g);
    return g;
  };
  const vector = (v: Float32Array | null, label: string): DeviceBuffer | null => {
    if (!v) return null;
    const buf = device.alloc(v.byteLength, label);
    device.upload(buf, v);
    bytes += buf.bytes;
    return buf;
  };
  /** Row-concatenated matrices in one buffer (one GEMM reads them once), and a view of each part. */
  const fused = (parts: readonly WeightMatrix[], label: string, interleave?: number): { whole: GpuMatrix; views: GpuMatrix[] } => {
    const { dtype, cols } = parts[0]!;
    if (parts.some((m) => m.dtype !== dtype || m.cols !== cols)) throw new TidarcError('runtime', `${label}: the fused parts differ in format or columns`);
    const rows = parts.reduce((n, m) => n + m.rows, 0);
    const data = dtype === 'f32' ? new Float32Array(rows * cols) : new Uint16Array(rows * cols);
    let at = 0;
    for (const m of parts) data.set(m.data, at), (at += m.data.length);
    const buf = device.alloc(data.byteLength, label);
    device.upload(buf, interleave === undefined ? data : interleaveGateUp(data, cols, interleave));
    bytes += buf.bytes;
    const elem = data.BYTES_PER_ELEMENT;
    let row = 0;
    const views = parts.map((m) => {
      const view = { buf: { ptr: buf.ptr + row * cols * elem, bytes: m.rows * cols * elem, label: `${label} rows ${row}..${row + m.rows - 1}` }, dtype, rows: m.rows, cols };
      row += m.rows;
      return view;
    });
    return { whole: { buf, dtype, rows, cols }, views };
  };
  const fusedBias = (parts: readonly (Float32Array | null)[], sizes: readonly number[], label: string): DeviceBuffer | null => {
    if (parts.every((b) => b === null)) return null;
    const all = new Float32Array(sizes.reduce((a, b) => a + b, 0));
    let at = 0;
    parts.forEach((b, i) => (b && all.set(b, at), (at += sizes[i]!)));
    return vector(all, label);
  };
  const layers = w.layers.map((l, i): GpuLayer => {
    const p = `layer ${i} `;
    const qkv = fused([l.q, l.k, l.v], `${p}q|k|v_proj`);
    const gateUp = fused([l.gate, l.up], `${p}gate|up_proj`, gateUpInterleave);
    const qkvBias = fusedBias([l.qBias, l.kBias, l.vBias], [l.q.rows, l.k.rows, l.v.rows], `${p}q|k|v bias`);
    const biasView = (b: Float32Array | null, at: number, n: number): DeviceBuffer | null => (b && qkvBias ? { ptr: qkvBias.ptr + at * 4, bytes: n * 4, label: `${p}bias view` } : null);
    return {
      inputNorm: matrix(l.inputNorm, `${p}input norm`), postNorm: matrix(l.postNorm, `${p}post-attention norm`),
      q: qkv.views[0]!, k: qkv.views[1]!, v: qkv.views[2]!, o: matrix(l.o, `${p}o_proj`),
      qBias: biasView(l.qBias, 0, l.q.rows), kBias: biasView(l.kBias, l.q.rows, l.k.rows), vBias: biasView(l.vBias, l.q.rows + l.k.rows, l.v.rows),
      qNorm: l.qNorm ? matrix(l.qNorm, `${p}q_norm`) : null, kNorm: l.kNorm ? matrix(l.kNorm, `${p}k_norm`) : null,
      gate: gateUp.views[0]!, up: gateUp.views[1]!, down: matrix(l.down, `${p}down_proj`),
      qkv: qkv.whole, qkvBias, gateUp: gateUp.whole,
    };
  });
  const inv = ropeInvFreq(spec.ropeTheta, spec.headDim, spec.ropeScaling);
  const invFreq = vector(inv, 'rope inverse frequencies')!;
  return {
    embedding: matrix(w.embedding, 'embedding'), layers, finalNorm: matrix(w.finalNorm, 'final norm'),
    lmHead: matrix(w.lmHead, 'lm_head'), invFreq, bytes, ...(gateUpInterleave ? { gateUpInterleave } : {}),
  };
}

/** The committed K/V of one sequence on the device, [kvHeads, capacity, headDim] per layer. */
export class GpuKvCache implements CacheState {
  readonly k: DeviceBuffer[];
  readonly v: DeviceBuffer[];
  length = 0;

  constructor(private readonly device: CudaDevice, readonly shape: KvShape) {
    const bytes = shape.kvHeads * shape.capacity * shape.headDim * 2;
    this.k = Array.from({ length: shape.layers }, (_, i) => device.alloc(bytes, `K cache layer ${i}`));
    this.v = Array.from({ length: shape.layers }, (_, i) => device.alloc(bytes, `V cache layer ${i}`));
    // Unwritten slots are never read (prefix_len bounds every read); zero them anyway so a bug
    // reads zeros, never stale memory.
    for (const b of [...this.k, ...this.v]) device.fill(b, 0);
  }

  ensureRoom(count: number): void {
    checkRoom(this.shape, this.length, count);
  }

  repeatSlots(source: number, count: number): void {
    const { kvHeads, capacity, headDim: D } = this.shape;
    for (const buf of [...this.k, ...this.v]) {
      for (let h = 0; h < kvHeads; h++) {
        const base = h * capacity * D * 2;
        for (let s = source; s < count; s += source) this.device.copy(buf, base + s * D * 2, buf, base, Math.min(source, count - s) * D * 2);
      }
    }
  }

  /** A host copy of the committed cache. */
  toHost(): KvCache {
    const host = new KvCache(this.shape);
    for (let layer = 0; layer < this.shape.layers; layer++) {
      this.device.download(this.k[layer]!, host.k[layer]!);
      this.device.download(this.v[layer]!, host.v[layer]!);
    }
    host.length = this.length;
    return host;
  }

  free(): void {
    for (const b of [...this.k, ...this.v]) this.device.free(b);
  }
}

/** Device buffers of a pass of T tokens (rows padded to a whole prefill chunk, zero-filled). */
interface Workspace {
  readonly rows: number;
  readonly ids: DeviceBuffer;
  readonly positions: DeviceBuffer;
  readonly prefixLen: DeviceBuffer;
  readonly x: DeviceBuffer;
  readonly h: DeviceBuffer;
  readonly q: DeviceBuffer;
  readonly k: DeviceBuffer;
  readonly v: DeviceBuffer;
  readonly qBits: DeviceBuffer;
  readonly kBits: DeviceBuffer[];
  readonly vBits: DeviceBuffer[];
  readonly oBits: DeviceBuffer;
  readonly oF32: DeviceBuffer;
  readonly lse: DeviceBuffer;
  readonly gate: DeviceBuffer;
  readonly up: DeviceBuffer;
}

/** lm_head scratch for up to `rows` requested rows. */
interface HeadScratch {
  readonly rows: number;
  readonly rowIds: DeviceBuffer;
  readonly logits: DeviceBuffer;
  readonly argmax: DeviceBuffer;
  readonly maxLogit: DeviceBuffer;
  readonly lse: DeviceBuffer;
}

export class GpuModelRunner implements Runner {
  readonly cache: GpuKvCache;
  private readonly ops: GpuOps;
  private readonly gemms: GpuGemms;
  private readonly workspaces = new Map<number, Workspace>();
  private head?: HeadScratch;
  private readonly variants: Map<string, ManifestVariant>;
  private readonly attentionFns = new Map<string, { main: KernelRef; combine: KernelRef }>();

  constructor(
    readonly spec: ModelSpec,
    private readonly device: CudaDevice,
    private readonly weights: GpuWeights,
    private readonly kernelsDir: string,
    manifest: Manifest,
    capacity: number,
  ) {
    this.ops = new GpuOps(device, join(kernelsDir, OPS_MODULE));
    this.gemms = new GpuGemms(device, kernelsDir, manifest.gemms ?? []);
    this.variants = new Map(manifest.variants.map((v) => [v.name, v]));
    this.cache = new GpuKvCache(device, { layers: spec.layers, kvHeads: spec.kvHeads, headDim: spec.headDim, capacity });
  }

  pass(ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule): ForwardPass {
    const T = ids.length;
    const ws = this.workspace(T);
    const hidden = this.forward(ws, ids, positions, schedule);
    const { cache, device, ops, spec } = this;
    return {
      attentionMs: 0,
      argmax: (rows) => {
        const head = this.lmHead(hidden, T, rows, 'argmax');
        const out = new Int32Array(rows.length);
        device.download(head.argmax, out);
        return [...out];
      },
      logits: (rows) => {
        const head = this.lmHead(hidden, T, rows, 'logits');
        const V = this.weights.lmHead.rows;
        const out = new Float32Array(rows.length * V);
        device.download(head.logits, out);
        return rows.map((_, i) => out.subarray(i * V, (i + 1) * V));
      },
      commit: (count) => {
        for (let layer = 0; layer < spec.layers; layer++) {
          ops.kvCommit({ kStep: { buf: ws.kBits[layer]! }, vStep: { buf: ws.vBits[layer]! }, kCache: cache.k[layer]!, vCache: cache.v[layer]!, from: 0, count, slot: cache.length, kvHeads: spec.kvHeads, capacity: cache.shape.capacity, headDim: spec.headDim });
        }
        cache.length += count;
      },
    };
  }

  hostCache(): KvCache {
    return this.cache.toHost();
  }

  close(): void {
    const bufs = [...this.workspaces.values()].flatMap((w) => [w.ids, w.positions, w.prefixLen, w.x, w.h, w.q, w.k, w.v, w.qBits, ...w.kBits, ...w.vBits, w.oBits, w.oF32, w.lse, w.gate, w.up]);
    if (this.head) bufs.push(this.head.rowIds, this.head.logits, this.head.argmax, this.head.maxLogit, this.head.lse);
    if (this.splitScratch) bufs.push(this.splitScratch);
    this.splitScratch = undefined;
    this.gemms.close();
    for (const b of bufs) this.device.free(b);
    this.workspaces.clear();
    this.head = undefined;
    this.cache.free();
  }

  /** Runs every layer; returns the final-normed hidden states [T, hidden] (ws.h). */
  private forward(ws: Workspace, ids: Int32Array, positions: Int32Array, schedule: AttentionSchedule): DeviceBuffer {
    const { spec, ops, device } = this;
    const { queryHeads: Hq, kvHeads: Hkv, headDim: D } = spec;
    const T = ids.length;
    const w = this.weights;
    device.upload(ws.ids, ids);
    device.upload(ws.positions, positions);
    const launches = this.attentionLaunches(T, schedule);
    device.upload(ws.prefixLen, Int32Array.from(launches, (l) => l.prefix));
    ops.embed(ws.ids, w.embedding, ws.x, T);
    for (const [layer, lw] of w.layers.entries()) {
      ops.rmsnorm(ws.x, lw.inputNorm, spec.rmsNormEps, ws.h, T);
      this.linear('qkv', ws.h, T, { whole: lw.qkv, bias: lw.qkvBias, parts: [[lw.q, lw.qBias, ws.q], [lw.k, lw.kBias, ws.k], [lw.v, lw.vBias, ws.v]] });
      if (lw.qNorm && lw.kNorm) {
        ops.rmsnorm(ws.q, lw.qNorm, spec.rmsNormEps, ws.q, T * Hq);
        ops.rmsnorm(ws.k, lw.kNorm, spec.rmsNormEps, ws.k, T * Hkv);
      }
      ops.ropePack({ q: ws.q, k: ws.k, v: ws.v, positions: ws.positions, invFreq: w.invFreq, qOut: ws.qBits, kOut: ws.kBits[layer]!, vOut: ws.vBits[layer]!, rows: T, qHeads: Hq, kvHeads: Hkv, headDim: D, dtype: spec.dtype });
      for (const [i, l] of launches.entries()) {
        this.attention(layer, ws, l.variant, l.from, l.prefix, i);
        if (l.commitRows > 0) {
          ops.kvCommit({ kStep: { buf: ws.kBits[layer]! }, vStep: { buf: ws.vBits[layer]! }, kCache: this.cache.k[layer]!, vCache: this.cache.v[layer]!, from: l.from, count: l.commitRows, slot: l.prefix, kvHeads: Hkv, capacity: this.cache.shape.capacity, headDim: D });
        }
      }
      ops.toFloat(ws.oBits, ws.oF32, T * Hq * D, spec.dtype);
      this.linear('o', ws.oF32, T, { whole: lw.o, bias: null, parts: [[lw.o, null, ws.x]] }, { accumulate: true });
      ops.rmsnorm(ws.x, lw.postNorm, spec.rmsNormEps, ws.h, T);
      if (w.gateUpInterleave !== undefined) {
        // One launch: silu(gate) * up in the epilogue, [T, I] into ws.gate (no gate, up round trip).
        this.gemms.run('gate_up', { x: ws.h, rows: T, w: lw.gateUp, outs: [ws.gate], epilogue: 'swiglu' });
      } else {
        this.linear('gate_up', ws.h, T, { whole: lw.gateUp, bias: null, parts: [[lw.gate, null, ws.gate], [lw.up, null, ws.up]] });
        ops.siluMul(ws.gate, ws.up, ws.gate, T * spec.intermediateSize);
      }
      this.linear('down', ws.gate, T, { whole: lw.down, bias: null, parts: [[lw.down, null, ws.x]] }, { accumulate: true });
    }
    ops.rmsnorm(ws.x, w.finalNorm, spec.rmsNormEps, ws.h, T);
    return ws.h;
  }

  /**
   * One linear layer over `rows` rows: the generated GEMM of `role` when the compile made one for
   * this weight (one launch for a fused matrix, its parts written to their own buffers), else
   * tidarc_op_matmul per part (a shape the GEMMs refuse, or weights not in the model's 16-bit type).
   */
  private linear(role: string, x: DeviceBuffer, rows: number, w: { whole: GpuMatrix; bias: DeviceBuffer | null; parts: readonly (readonly [GpuMatrix, DeviceBuffer | null, DeviceBuffer])[] },
    o: { accumulate?: boolean; rowIds?: DeviceBuffer } = {}): void {
    if (this.gemms.covers(role, w.whole)) {
      const ends = w.parts.map((_, i) => w.parts.slice(0, i + 1).reduce((n, [m]) => n + m.rows, 0));
      const segments: [number, number] = [ends[0]!, ends[1] ?? w.whole.rows];
      this.gemms.run(role, { x, rows, w: w.whole, bias: w.bias, outs: w.parts.map(([, , out]) => out), segments, ...(o.accumulate ? { accumulate: true } : {}), ...(o.rowIds ? { rowIds: o.rowIds } : {}) });
      return;
    }
    for (const [m, bias, out] of w.parts) this.ops.matmul(x, m, bias, out, rows, o);
  }

  /**
   * The attention launches of a pass, as the CPU runner makes them: a step is one launch; a
   * prefill is the prompt in causal chunks (each chunk's K/V enters the cache before the next
   * chunk runs), then the trailing mask block over the whole prompt.
   */
  private attentionLaunches(T: number, schedule: AttentionSchedule): { variant: string; from: number; prefix: number; commitRows: number }[] {
    const L = this.cache.length;
    if (schedule.kind === 'step') return [{ variant: schedule.variant, from: 0, prefix: L, commitRows: 0 }];
    const S = schedule.promptTokens;
    const out = [];
    for (let c0 = 0; c0 < S; c0 += PREFILL_CHUNK) out.push({ variant: prefillVariantName(PREFILL_CHUNK), from: c0, prefix: L + c0, commitRows: Math.min(PREFILL_CHUNK, S - c0) });
    if (schedule.blockVariant !== undefined && T > S) out.push({ variant: schedule.blockVariant, from: S, prefix: L + S, commitRows: 0 });
    return out;
  }

  /** One attention launch over rows [from, from + n) of the pass (n = the variant's tokens). */
  private attention(layer: number, ws: Workspace, variantName: string, from: number, prefix: number, launchIndex: number): void {
    const v = this.variants.get(variantName);
    if (!v) throw new TidarcError('runtime', `the compiled kernels have no variant ${variantName}`, { source: this.kernelsDir });
    if (from + v.steps > ws.rows) throw new TidarcError('runtime', `attention ${variantName} at row ${from} needs ${v.steps} rows; the workspace has ${ws.rows}`);
    const fns = this.attentionKernels(v);
    const { queryHeads: Hq, kvHeads: Hkv, headDim: D } = this.spec;
    const splits = this.splitsFor(v, prefix);
    const rows = v.steps * Hq;
    const args = packStruct(ATTENTION, {
      q: ws.qBits.ptr + from * Hq * D * 2,
      kCache: this.cache.k[layer]!.ptr, vCache: this.cache.v[layer]!.ptr,
      kStep: ws.kBits[layer]!.ptr + from * Hkv * D * 2, vStep: ws.vBits[layer]!.ptr + from * Hkv * D * 2,
      prefixLen: ws.prefixLen.ptr + launchIndex * 4,
      o: ws.oBits.ptr + from * Hq * D * 2, lse: ws.lse.ptr + from * Hq * 4, workspace: splits > 1 ? this.splitWorkspace(splits * rows * (D + 1)).ptr : 0,
      batch: 1, cacheCapacity: this.cache.shape.capacity, numSplits: splits, numThreads: 0,
    });
    this.device.launch(fns.main, [v.launch.rowTiles, Hkv, splits], [v.launch.block], v.launch.dynamicSharedBytes, args);
    // Split-KV: each split wrote its partial output and lse to the workspace; the combine merges them by lse.
    if (splits > 1) this.device.launch(fns.combine, [Math.ceil(rows / v.launch.combine.rowsPerBlock)], [v.launch.combine.block], 0, args);
  }

  /**
   * Split-KV parts of a launch over `prefix` cached keys: what tidarc tune measured on a GPU for
   * this shape (compile --tuned), else the wave-efficiency rule over the device's SMs.
   */
  private splitsFor(v: ManifestVariant, prefix: number): number {
    const tuned = v.tuned?.backend === 'cuda' ? tunedCall(v.tuned.calls, 1, prefix)?.splits : undefined;
    const tiles = Math.ceil(prefix / v.plan.tileN);
    return Math.max(1, Math.min(tuned ?? chooseSplits(this.spec.kvHeads * v.launch.rowTiles, this.device.info.multiprocessors, tiles), Math.max(1, tiles)));
  }

  private attentionKernels(v: ManifestVariant): { main: KernelRef; combine: KernelRef } {
    let fns = this.attentionFns.get(v.name);
    if (!fns) {
      const module = join(this.kernelsDir, v.sources.cuda.replace(/\.cu$/, '.fatbin'));
      fns = { main: this.device.kernel(module, v.symbols.cuda), combine: this.device.kernel(module, v.symbols.cudaCombine) };
      this.attentionFns.set(v.name, fns);
    }
    return fns;
  }

  private splitScratch?: DeviceBuffer;
  /** The split-KV workspace (partial outputs and lse), grown on demand and shared by every launch (they run in order). */
  private splitWorkspace(floats: number): DeviceBuffer {
    if (this.splitScratch && this.splitScratch.bytes >= floats * 4) return this.splitScratch;
    if (this.splitScratch) this.device.free(this.splitScratch);
    this.splitScratch = this.device.alloc(floats * 4, 'split-KV workspace');
    return this.splitScratch;
  }

  /**
   * lm_head of the requested rows: their argmax / max / lse on the device, and for `logits`
   * the logits [R, V]. A greedy query (`argmax`) on a GEMM with the row statistics epilogue
   * writes no logits: per-tile statistics, then their merge (R x V x 4 bytes neither written
   * nor read again).
   */
  private lmHead(hidden: DeviceBuffer, T: number, rows: readonly number[], want: 'argmax' | 'logits'): HeadScratch {
    for (const r of rows) if (!(Number.isInteger(r) && r >= 0 && r < T)) throw new TidarcError('invalid-argument', 'lm_head row outside the pass', { field: 'rows', value: r, allowed: `0..${T - 1}` });
    const head = this.headScratch(rows.length);
    const V = this.weights.lmHead.rows;
    this.device.upload(head.rowIds, Int32Array.from(rows));
    if (want === 'argmax' && this.gemms.hasRowStats() && this.gemms.covers('lm_head', this.weights.lmHead)) {
      this.gemms.run('lm_head', { x: hidden, rows: rows.length, w: this.weights.lmHead, rowIds: head.rowIds, outs: [], epilogue: 'rowStats', stats: { argmax: head.argmax, max: head.maxLogit, lse: head.lse } });
    } else {
      this.linear('lm_head', hidden, rows.length, { whole: this.weights.lmHead, bias: null, parts: [[this.weights.lmHead, null, head.logits]] }, { rowIds: head.rowIds });
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
    if (this.head) for (const b of [this.head.rowIds, this.head.logits, this.head.argmax, this.head.maxLogit, this.head.lse]) this.device.free(b);
    const n = Math.max(rows, 16);
    const V = this.weights.lmHead.rows;
    const d = this.device;
    this.head = { rows: n, rowIds: d.alloc(n * 4, 'lm_head row ids'), logits: d.alloc(n * V * 4, 'lm_head logits'), argmax: d.alloc(n * 4, 'lm_head argmax'), maxLogit: d.alloc(n * 4, 'lm_head max'), lse: d.alloc(n * 4, 'lm_head lse') };
    return this.head;
  }

  private workspace(T: number): Workspace {
    const known = this.workspaces.get(T);
    if (known) return known;
    const { hiddenSize: H, queryHeads: Hq, kvHeads: Hkv, headDim: D, intermediateSize: I, layers } = this.spec;
    const rows = Math.ceil(T / PREFILL_CHUNK) * PREFILL_CHUNK;
    const d = this.device;
    const f32 = (n: number, label: string): DeviceBuffer => d.alloc(rows * n * 4, `${label} [${T} tokens]`);
    const u16 = (n: number, label: string): DeviceBuffer => d.alloc(rows * n * 2, `${label} [${T} tokens]`);
    const ws: Workspace = {
      rows,
      ids: d.alloc(T * 4, 'token ids'), positions: d.alloc(T * 4, 'positions'), prefixLen: d.alloc((Math.ceil(T / PREFILL_CHUNK) + 1) * 4, 'prefix lengths'),
      x: f32(H, 'x'), h: f32(H, 'h'), q: f32(Hq * D, 'q'), k: f32(Hkv * D, 'k'), v: f32(Hkv * D, 'v'),
      qBits: u16(Hq * D, 'q (model dtype)'),
      kBits: Array.from({ length: layers }, (_, i) => u16(Hkv * D, `step K layer ${i}`)),
      vBits: Array.from({ length: layers }, (_, i) => u16(Hkv * D, `step V layer ${i}`)),
      oBits: u16(Hq * D, 'attention output'), oF32: f32(Hq * D, 'attention output (f32)'), lse: f32(Hq, 'attention lse'),
      gate: f32(I, 'gate'), up: f32(I, 'up'),
    };
    // Rows past T stay zero: padded keys of a prefill chunk are finite (masked out, but p * V
    // must not meet a NaN).
    for (const b of [ws.qBits, ...ws.kBits, ...ws.vBits]) d.fill(b, 0);
    this.workspaces.set(T, ws);
    return ws;
  }
}
