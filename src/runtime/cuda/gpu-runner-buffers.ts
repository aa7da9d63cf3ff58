/**
 * A cuda runner's device buffers (GpuModelRunner, gpu-runner.ts): the K/V cache of one sequence,
 * a pass's activations (the rewritten graph's tensors, rows in whole prefill chunks) and the
 * prefill's lm_head scratch, allocated with the sizes device-memory.ts prices (kvLayerBytes,
 * tensorBytes, prefixLengthBytes, headScratchSizes). A pass whose activations do not fit gives
 * back what it allocated and fails with its figures (passOutOfMemory).
 */
import type { StepGraph, TensorType } from '../../ir/step-graph.js';
import type { CacheState } from '../model/forward.js';
import { KvCache, type KvShape, checkRoom } from '../model/kv-cache.js';
import type { CudaDevice, DeviceBuffer } from './device.js';
import { headScratchSizes, kvLayerBytes, passOutOfMemory, passRows, prefixLengthBytes, tensorBytes } from './device-memory.js';

/** The committed K/V of one sequence on the device, [kvHeads, capacity, headDim] per layer. */
export class GpuKvCache implements CacheState {
  readonly k: DeviceBuffer[];
  readonly v: DeviceBuffer[];
  length = 0;

  constructor(private readonly device: CudaDevice, readonly shape: KvShape) {
    const bytes = kvLayerBytes(shape);
    const k: DeviceBuffer[] = [], v: DeviceBuffer[] = [];
    try {
      for (let i = 0; i < shape.layers; i++) k.push(device.alloc(bytes, `K cache layer ${i}`));
      for (let i = 0; i < shape.layers; i++) v.push(device.alloc(bytes, `V cache layer ${i}`));
      // Unwritten slots are never read (prefix_len bounds every read); zero them anyway so a bug
      // reads zeros, never stale memory.
      for (const b of [...k, ...v]) device.fill(b, 0);
    } catch (e) {
      // A cache that does not fit gives back the layers it got: the runner is never made, and the
      // model (a long-lived process's) must not keep them until it closes, refusing generations
      // for memory nothing uses.
      freeAfterFailure(device, [...k, ...v]);
      throw e;
    }
    this.k = k;
    this.v = v;
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

/** Device buffers of a pass of T tokens: the graph's tensors by name (rows padded to a whole prefill chunk, zero-filled). */
export interface PassBuffers {
  readonly rows: number;
  readonly bufs: ReadonlyMap<string, DeviceBuffer>;
  readonly widths: ReadonlyMap<string, number>;
  /** Element types as the graph declares them (u16: the model's dtype, e.g. the GEMMs' activations). */
  readonly types: ReadonlyMap<string, TensorType>;
  readonly prefixLen: DeviceBuffer;
}

/** lm_head scratch for up to `rows` requested rows. */
export interface HeadScratch {
  readonly rows: number;
  readonly rowIds: DeviceBuffer;
  readonly logits: DeviceBuffer;
  readonly argmax: DeviceBuffer;
  readonly maxLogit: DeviceBuffer;
  readonly lse: DeviceBuffer;
  /** A device draw's tokens and acceptance flags [rows], and its sampling setup (TidarcSampleParams). */
  readonly tokens: DeviceBuffer;
  readonly accepted: DeviceBuffer;
  readonly params: DeviceBuffer;
}

export const headBuffers = (h: HeadScratch): DeviceBuffer[] => [h.rowIds, h.logits, h.argmax, h.maxLogit, h.lse, h.tokens, h.accepted, h.params];

/** lm_head scratch for `rows` requested rows (at least HEAD_SCRATCH_MIN_ROWS), sized where the load's preflight reads them (device-memory.ts headScratchSizes). */
export function allocHeadScratch(d: CudaDevice, rows: number, vocab: number): HeadScratch {
  const z = headScratchSizes(rows, vocab);
  return {
    rows: z.rows, rowIds: d.alloc(z.rowIds, 'lm_head row ids'), logits: d.alloc(z.logits, 'lm_head logits'), argmax: d.alloc(z.argmax, 'lm_head argmax'), maxLogit: d.alloc(z.maxLogit, 'lm_head max'), lse: d.alloc(z.lse, 'lm_head lse'),
    tokens: d.alloc(z.tokens, 'lm_head sampled tokens'), accepted: d.alloc(z.accepted, 'lm_head sampled accepted'), params: d.alloc(z.params, 'lm_head sampling setup'),
  };
}

/**
 * The graph's tensors for its T (the cuda graph's tensors do not depend on the schedule): what
 * the fused graph does not name (the up half of a SwiGLU-fused MLP) is not allocated. `step`: a
 * decode step's workspace (its out-of-memory error says so).
 */
export function allocPassBuffers(d: CudaDevice, graph: StepGraph, step: boolean): PassBuffers {
  const T = graph.tokens;
  const rows = passRows(T);
  const bufs = new Map<string, DeviceBuffer>();
  let prefixLen: DeviceBuffer;
  try {
    for (const t of graph.tensors) {
      // Token ids and positions: exactly T; activations: whole prefill chunks (device-memory.ts prices them so).
      const buf = d.alloc(tensorBytes(t, T), `${t.name} [${T} tokens]`);
      bufs.set(t.name, buf);
      // Rows past T stay zero: padded keys of a prefill chunk are finite (masked out, but p * V must not meet a NaN).
      if (t.type === 'u16') d.fill(buf, 0);
    }
    prefixLen = d.alloc(prefixLengthBytes(T), 'prefix lengths');
  } catch (e) {
    // A long prompt's activations past what is free: what was allocated goes back, and the error says what the pass needs.
    freeAfterFailure(d, bufs.values());
    const needed = graph.tensors.reduce((n, t) => n + tensorBytes(t, T), 0) + prefixLengthBytes(T);
    throw passOutOfMemory(e, T, needed, () => ({ name: d.info.name, ...d.memory() }), step);
  }
  return { rows, bufs, widths: new Map(graph.tensors.map((t) => [t.name, t.width])), types: new Map(graph.tensors.map((t) => [t.name, t.type as TensorType])), prefixLen };
}

/**
 * Frees what an allocation that failed part way got, each buffer on its own: after a sticky fault
 * (an earlier kernel's, reported by the failing cuMemAlloc) cuMemFree fails too, and the error to
 * see is the allocation's, not a free's.
 */
function freeAfterFailure(d: CudaDevice, bufs: Iterable<DeviceBuffer>): void {
  for (const b of bufs) {
    try {
      d.free(b);
    } catch {
      // the context is unusable: the allocation's error says why
    }
  }
}
