/**
 * The exact KV cache of one sequence: per layer K and V in the attention kernels' layout
 * [1, kvHeads, capacity, headDim] (16-bit bits of the model dtype). Only committed tokens
 * live here: a TiDAR step's drafts are copied in after verification, mask tokens never.
 */
import { TidarcError } from '../../errors.js';

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
