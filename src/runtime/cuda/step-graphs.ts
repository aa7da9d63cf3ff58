/**
 * Decode steps as CUDA graphs: one graph per step kind and shape bucket, warmed up once
 * launch by launch, then captured and replayed each step (CudaDevice.capture / launchGraph).
 *
 * A graph holds device addresses and launch arguments as they were at capture; what changes
 * from step to step lives in device buffers its in-graph upload fills. So the key of a graph
 * is everything that sits in an argument by value:
 *   - the step kind and its token count (tidar_k<K>: K + K^2, ar: 1), and the sampling setup
 *     (greedy or sampled, beta mix, top-k/top-p, seed, never-emitted token);
 *   - the bucket: the split-KV count of each attention launch. The launcher chooses splits from
 *     the prefix length (tuned, else the wave rule, clamped to the prefix's KV tiles), so a
 *     bucket is the range of prefix lengths over which that choice stays the same: a decode
 *     that crosses into the next range warms up and captures once more. The kernels read the
 *     prefix length itself from device memory, so it is not part of the key.
 * A graph also holds the scratch buffers of the GEMMs and attention, which grow (free, then
 * allocate) when a larger shape first needs more: every free on the runner's device makes the
 * graphs captured before it stale (FreeCounter), and they are captured again.
 */
import { TidarcError } from '../../errors.js';
import type { CudaDevice, GraphRef } from './device.js';

/** How a step ran: launch by launch (graphs off, or its warm-up), or its graph (captured now, or replayed). */
export type StepLaunch = 'direct' | 'warm-up' | 'captured' | 'replayed';

/** The device with its frees counted: what was captured before a free may read freed memory. */
export interface FreeCounter {
  readonly device: CudaDevice;
  frees(): number;
}

/** `device` seen through a view that counts free() calls (everything else goes to the device itself). */
export function countFrees(device: CudaDevice): FreeCounter {
  let frees = 0;
  const view = new Proxy(device, {
    get(target, prop) {
      if (prop === 'free') return (buf: Parameters<CudaDevice['free']>[0]) => (frees++, target.free(buf));
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { device: view, frees: () => frees };
}

export class StepGraphs {
  private readonly graphs = new Map<string, { readonly ref: GraphRef; readonly frees: number }>();
  private readonly warm = new Set<string>();

  constructor(private readonly counter: FreeCounter, readonly enabled: boolean) {}

  /** Runs the step `record` issues: directly, or as the graph of `key` (warm-up, capture, replay). */
  run(key: string, record: () => void): StepLaunch {
    if (!this.enabled) {
      record();
      return 'direct';
    }
    const { device } = this.counter;
    const known = this.graphs.get(key);
    if (known && known.frees === this.counter.frees()) {
      device.launchGraph(known.ref);
      return 'replayed';
    }
    if (known) {
      this.graphs.delete(key);
      device.destroyGraph(known.ref);
    }
    // The first run of a key loads its kernels, opts them in to their shared memory and grows
    // the scratch it needs: none of that can happen inside a capture.
    if (!this.warm.has(key)) {
      record();
      this.warm.add(key);
      return 'warm-up';
    }
    const before = this.counter.frees();
    let ref: GraphRef;
    try {
      ref = device.capture(`decode step ${key}`, record);
    } catch (e) {
      // The step ran fine launch by launch (its warm-up): say how to keep doing that.
      if (!(e instanceof TidarcError)) throw e;
      throw new TidarcError(e.code, `${e.message.replace(/\.$/, '')}; without graphs the step runs launch by launch`, { field: 'graphs', value: true, allowed: 'false (--no-graphs on tidarc run and bench-step; loadModel(dir, { graphs: false }))' });
    }
    if (this.counter.frees() !== before) {
      // Something was reallocated while recording: the graph may hold a freed address.
      device.destroyGraph(ref);
      record();
      return 'warm-up';
    }
    this.graphs.set(key, { ref, frees: before });
    device.launchGraph(ref);
    return 'captured';
  }

  /** Graphs held now (tests, bench). */
  get size(): number {
    return this.graphs.size;
  }

  close(): void {
    for (const { ref } of this.graphs.values()) this.counter.device.destroyGraph(ref);
    this.graphs.clear();
    this.warm.clear();
  }
}
