/**
 * Non-finite checks of raw tensor data, cheap enough to run on every weight at load: a NaN or
 * infinite weight never errors downstream, it turns every logit into NaN and the decoding loop
 * into garbage reported as success. Pure: typed arrays in, a finding out.
 *
 * A 16-bit float is non-finite exactly when its exponent bits are all ones (bf16: 0x7f80,
 * fp16: 0x7c00; float32: 0x7f800000). The scan reads two 16-bit words per 32-bit load and
 * adds one to each half's exponent field: only an all-ones field carries into that half's top
 * bit, and no half can carry into the next (0x7f80 + 0x0080 = 0x8000). OR-ing the sums of a
 * block and testing once leaves the loop without a branch per element; the slow exact scan
 * runs only on a tensor that has a bad value, to say where.
 */
import type { SafetensorsDType, TensorArray } from './safetensors.js';

export interface NonFinite {
  /** Flat index of the first non-finite element. */
  readonly index: number;
  /** What it is: NaN, Infinity or -Infinity. */
  readonly value: number;
  /** Non-finite elements in the tensor. */
  readonly count: number;
}

/** Exponent mask and the one added to each 16-bit half (see the file comment). */
const HALF_EXPONENT: Readonly<Record<'BF16' | 'F16', { mask: number; one: number }>> = {
  BF16: { mask: 0x7f80, one: 0x0080 },
  F16: { mask: 0x7c00, one: 0x0400 },
};
const F32_EXPONENT = 0x7f800000;
const F32_ONE = 0x00800000;

/** The first non-finite element of `data` (stored as `dtype`) and how many there are; undefined when all are finite. */
export function findNonFinite(dtype: SafetensorsDType, data: TensorArray): NonFinite | undefined {
  return anyNonFinite(dtype, data) ? locate(dtype, data) : undefined;
}

/** True when some element is non-finite: the fast, branch-free scan. */
export function anyNonFinite(dtype: SafetensorsDType, data: TensorArray): boolean {
  if (dtype === 'F32') {
    const words = new Uint32Array(data.buffer, data.byteOffset, data.length);
    let acc = 0;
    for (let i = 0; i < words.length; i++) acc |= (words[i]! & F32_EXPONENT) + F32_ONE;
    // A carry out of the exponent field lands in bit 31 (the sum can exceed 2^31: compare as unsigned).
    return (acc >>> 31) !== 0;
  }
  const { mask, one } = HALF_EXPONENT[dtype];
  const halves = data as Uint16Array;
  let head = 0;
  // A 16-bit view may start at an odd word: check that element alone, then read aligned pairs.
  if (halves.byteOffset % 4 !== 0 && halves.length > 0) {
    if ((halves[0]! & mask) === mask) return true;
    head = 1;
  }
  const pairs = (halves.length - head) >> 1;
  const words = new Uint32Array(halves.buffer, halves.byteOffset + head * 2, pairs);
  const pairMask = mask * 0x10001, pairOne = one * 0x10001, topBits = 0x80008000;
  let acc = 0;
  for (let i = 0; i < pairs; i++) acc |= ((words[i]! & pairMask) + pairOne);
  if ((acc & topBits) !== 0) return true;
  const last = head + 2 * pairs;
  return last < halves.length && (halves[last]! & mask) === mask;
}

function locate(dtype: SafetensorsDType, data: TensorArray): NonFinite | undefined {
  let index = -1, count = 0;
  if (dtype === 'F32') {
    const f = data as Float32Array;
    for (let i = 0; i < f.length; i++) {
      if (Number.isFinite(f[i]!)) continue;
      if (count++ === 0) index = i;
    }
    return count === 0 ? undefined : { index, value: f[index]!, count };
  }
  const { mask } = HALF_EXPONENT[dtype];
  const h = data as Uint16Array;
  for (let i = 0; i < h.length; i++) {
    if ((h[i]! & mask) !== mask) continue;
    if (count++ === 0) index = i;
  }
  if (count === 0) return undefined;
  const bits = h[index]!;
  const mantissa = bits & ~mask & 0x7fff;
  return { index, value: mantissa !== 0 ? NaN : bits & 0x8000 ? -Infinity : Infinity, count };
}
