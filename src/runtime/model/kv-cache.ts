/**
 * The exact KV cache of one sequence: per layer K and V in the attention kernels' layout
 * [1, kvHeads, capacity, headDim] (16-bit bits of the model dtype). Only committed tokens
 * live here: a TiDAR step's drafts are copied in after verification, mask tokens never.
 */
import { TidarcError } from '../../errors.js';
import { decode } from '../../util/dtype.js';

export interface KvShape {
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly capacity: number;
}

export class KvCache {
  readonly k: Uint16Array[];
  readonly v: Uint16Array[];
  /** Committed tokens (positions 0..length-1). */
  length = 0;

  constructor(readonly shape: KvShape) {
    const size = shape.kvHeads * shape.capacity * shape.headDim;
    this.k = Array.from({ length: shape.layers }, () => new Uint16Array(size));
    this.v = Array.from({ length: shape.layers }, () => new Uint16Array(size));
  }

  /** Room check before a step writes `count` more tokens. */
  ensureRoom(count: number): void {
    checkRoom(this.shape, this.length, count);
  }

  /**
   * Tiles slots [0, source) over [source, count) of every layer and KV head (benchmarks: a
   * long prefix with the attention work of a real one, not the values of a real sequence).
   */
  repeatSlots(source: number, count: number): void {
    const { kvHeads, capacity, headDim: D } = this.shape;
    for (const arr of [...this.k, ...this.v]) {
      for (let h = 0; h < kvHeads; h++) {
        const base = h * capacity * D;
        for (let s = source; s < count; s += source) arr.copyWithin(base + s * D, base, base + Math.min(source, count - s) * D);
      }
    }
  }

  /**
   * Copies rows [from, from + count) of a step buffer ([tokens, kvHeads, headDim], the
   * layout the kernels read in-step K/V from) of `layer` into slots [slot, slot + count).
   */
  write(layer: number, kStep: Uint16Array, vStep: Uint16Array, from: number, count: number, slot: number): void {
    const { kvHeads, capacity, headDim } = this.shape;
    if (slot + count > capacity) this.ensureRoom(slot + count - this.length);
    const k = this.k[layer]!, v = this.v[layer]!;
    for (let t = 0; t < count; t++) {
      for (let h = 0; h < kvHeads; h++) {
        const src = ((from + t) * kvHeads + h) * headDim;
        const dst = (h * capacity + slot + t) * headDim;
        k.set(kStep.subarray(src, src + headDim), dst);
        v.set(vStep.subarray(src, src + headDim), dst);
      }
    }
  }
}

/** Throws when `count` more tokens after `length` would not fit the cache. */
export function checkRoom(shape: KvShape, length: number, count: number): void {
  if (length + count > shape.capacity) {
    throw new TidarcError('runtime', 'KV cache capacity exceeded', { field: 'capacity', value: length + count, allowed: `at most ${shape.capacity} tokens (raise maxTokens or the context)` });
  }
}

export interface CacheComparison {
  /** Slots both caches hold (the shorter length). */
  readonly comparedSlots: number;
  /** Elements of layer 0 that differ (layer 0 K/V depend only on token and position). */
  readonly layer0Differing: number;
  /** Largest |a - b| / max(1, |a|) over every compared element of every layer. */
  readonly maxRelDiff: number;
  /** Non-zero elements of `b` past its committed length (a rejected draft or a mask token written). */
  readonly writtenPastLength: number;
}

/**
 * Compares the committed slots of two caches of one model (capacities may differ), e.g. a
 * TiDAR run's against an AR run's over the same tokens: the KV-cache rule of docs/tidar.md holds
 * when layer 0 is bitwise equal, deeper layers agree within the dtype's rounding (attention
 * summed in another order) and `b` holds nothing past its length.
 */
export function compareCaches(a: KvCache, b: KvCache, dtype: 'bf16' | 'fp16'): CacheComparison {
  const n = Math.min(a.length, b.length);
  const { kvHeads, headDim } = a.shape;
  const capA = a.shape.capacity, capB = b.shape.capacity;
  let layer0Differing = 0, maxRelDiff = 0, writtenPastLength = 0;
  for (let layer = 0; layer < a.k.length; layer++) {
    for (const [x, y] of [[a.k[layer]!, b.k[layer]!], [a.v[layer]!, b.v[layer]!]] as const) {
      const xv = decode(dtype, x), yv = decode(dtype, y);
      for (let h = 0; h < kvHeads; h++) {
        for (let s = 0; s < n; s++) {
          for (let d = 0; d < headDim; d++) {
            const i = (h * capA + s) * headDim + d, j = (h * capB + s) * headDim + d;
            if (layer === 0 && x[i] !== y[j]) layer0Differing++;
            maxRelDiff = Math.max(maxRelDiff, Math.abs(xv[i]! - yv[j]!) / Math.max(1, Math.abs(xv[i]!)));
          }
        }
        for (let j = (h * capB + b.length) * headDim; j < (h + 1) * capB * headDim; j++) if (y[j] !== 0) writtenPastLength++;
      }
    }
  }
  return { comparedSlots: n, layer0Differing, maxRelDiff, writtenPastLength };
}
