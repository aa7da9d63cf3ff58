/**
 * Decode steps as CUDA graphs: one graph per step kind and shape bucket, warmed up once
 * launch by launch, then captured and replayed each step (CudaDevice.capture / launchGraph).
 *
 * A graph holds device addresses and launch arguments as they were at capture; what changes
 * from step to step lives in device buffers its in-graph upload fills. So the key of a graph
 * is everything that sits in an argument by value:
 *   - the step kind and its token count (tidar_k<K>: K + K^2, ar: 1), greedy or sampled (other
 *     kernels: row statistics and verify, or logits and sample) and the never-emitted token
 *     (the model's mask token). Temperature, top-k, top-p, seed, beta and the RNG step are in
 *     the upload (TidarcSampleParams), so every request's setup replays the same graph;
 *   - the bucket: the split-KV count of each attention launch. The launcher chooses splits from
 *     the prefix length (tuned, else the split rule, clamped to the prefix's KV tiles), so a
 *     bucket is the range of prefix lengths over which that choice stays the same: a decode
 *     that crosses into the next range warms up and captures once more. The kernels read the
 *     prefix length itself from device memory, so it is not part of the key.
 * A graph also holds the scratch buffers of the GEMMs and attention, which grow (free, then
 * allocate) when a larger shape first needs more. A graph is stale when a buffer that was live
 * at its capture is freed (BufferLedger numbers every allocation), and is captured again; a
 * buffer allocated after the capture (a later sequence's prefill scratch, on a runner reused
 * across sequences) is not in the graph, and freeing it keeps the graph.
 * Graphs are bounded per runner (MAX_GRAPHS, least recently used out).
 */
import { TidarcError } from '../../errors.js';
import type { CudaDevice, DeviceBuffer, GraphRef } from './device.js';

/** How a step ran: launch by launch (graphs off, or its warm-up), or its graph (captured now, or replayed). */
export type StepLaunch = 'direct' | 'warm-up' | 'captured' | 'replayed';

/** Graphs one runner keeps: kinds x split buckets x (greedy, sampled). */
export const MAX_GRAPHS = 32;

/** The device seen through a view that numbers its allocations and sees its frees. */
export interface BufferLedger {
  readonly device: CudaDevice;
  /** Frees so far. */
  frees(): number;
  /** Allocations so far: a graph captured now holds only buffers numbered below it. */
  allocations(): number;
  /** Bytes allocated through the view and not yet freed. */
  liveBytes(): number;
  /** Calls `listener` with the number of each buffer freed (-1: one the view did not allocate). */
  onFree(listener: (serial: number) => void): void;
}

/** `device` seen through a BufferLedger (everything but alloc and free goes to the device itself). */
export function trackBuffers(device: CudaDevice): BufferLedger {
  let frees = 0, allocations = 0, live = 0;
  const serials = new Map<number, { serial: number; bytes: number }>();
  const listeners: ((serial: number) => void)[] = [];
  const view = new Proxy(device, {
    get(target, prop) {
      if (prop === 'alloc') {
        return (bytes: number, label: string): DeviceBuffer => {
          const buf = target.alloc(bytes, label);
          serials.set(buf.ptr, { serial: allocations++, bytes: buf.bytes });
          live += buf.bytes;
          return buf;
        };
      }
      if (prop === 'free') {
        return (buf: DeviceBuffer): void => {
          const known = serials.get(buf.ptr);
          serials.delete(buf.ptr);
          if (known) live -= known.bytes;
          frees++;
          target.free(buf);
          for (const l of listeners) l(known?.serial ?? -1);
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { device: view, frees: () => frees, allocations: () => allocations, liveBytes: () => live, onFree: (l) => void listeners.push(l) };
}

interface Captured {
  readonly ref: GraphRef;
  /** Allocations made before the capture: a free of one of them makes the graph stale. */
  readonly allocations: number;
  stale: boolean;
}

export class StepGraphs {
  /** By key, least recently run first. */
  private readonly graphs = new Map<string, Captured>();
  /** Keys that ran once launch by launch (their kernels are loaded, their scratch grown; a stale graph of one captures again at once), oldest first. */
  private readonly warm = new Set<string>();

  constructor(private readonly ledger: BufferLedger, readonly enabled: boolean) {
    ledger.onFree((serial) => {
      for (const g of this.graphs.values()) if (serial < g.allocations) g.stale = true;
    });
  }

  /**
   * Runs the step `record` issues: directly, or as the graph of `key` (warm-up, capture, replay).
   */
  run(key: string, record: () => void): StepLaunch {
    if (!this.enabled) {
      record();
      return 'direct';
    }
    const { device } = this.ledger;
    const known = this.graphs.get(key);
    if (known) this.graphs.delete(key);
    if (known && !known.stale) {
      this.graphs.set(key, known);
      device.launchGraph(known.ref);
      return 'replayed';
    }
    if (known) device.destroyGraph(known.ref);
    // The first run of a key loads its kernels, opts them in to their shared memory and grows
    // the scratch it needs: none of that can happen inside a capture.
    if (!this.warm.has(key)) {
      record();
      this.warm.add(key);
      if (this.warm.size > 4 * MAX_GRAPHS) this.warm.delete(this.warm.values().next().value!);
      return 'warm-up';
    }
    const frees = this.ledger.frees(), allocations = this.ledger.allocations();
    let ref: GraphRef;
    try {
      ref = device.capture(`decode step ${key}`, record);
    } catch (e) {
      // The step ran fine launch by launch (its warm-up): say how to keep doing that.
      if (!(e instanceof TidarcError)) throw e;
      throw new TidarcError(e.code, `${e.message.replace(/\.$/, '')}; without graphs the step runs launch by launch`, { field: 'graphs', value: true, allowed: 'false (--no-graphs on tidarc run and bench-step; loadModel(dir, { graphs: false }))' });
    }
    if (this.ledger.frees() !== frees) {
      // Something was reallocated while recording: the graph may hold a freed address.
      device.destroyGraph(ref);
      record();
      return 'warm-up';
    }
    this.graphs.set(key, { ref, allocations, stale: false });
    if (this.graphs.size > MAX_GRAPHS) {
      const [oldest, g] = this.graphs.entries().next().value!;
      this.graphs.delete(oldest);
      device.destroyGraph(g.ref);
    }
    device.launchGraph(ref);
    return 'captured';
  }

  /** Graphs held now (tests, bench). */
  get size(): number {
    return this.graphs.size;
  }

  close(): void {
    for (const { ref } of this.graphs.values()) this.ledger.device.destroyGraph(ref);
    this.graphs.clear();
    this.warm.clear();
  }
}
