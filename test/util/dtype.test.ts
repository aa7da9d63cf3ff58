import { describe, expect, test } from 'vitest';
import {
  decode,
  decodeScalarBits,
  encode,
  encodeScalarBits,
  fromBf16Bits,
  fromFp16Bits,
  toBf16Bits,
  toFp16Bits,
} from '../../src/util/dtype.js';

const ALL_PATTERNS = Uint16Array.from({ length: 65536 }, (_, i) => i);
const p2 = (k: number): number => 2 ** k;
const cases = (rows: ReadonlyArray<readonly [number, number]>) =>
  rows.map(([x, bits]) => ({ x, bits, hex: `0x${bits.toString(16).padStart(4, '0')}` }));

describe('bf16', () => {
  test.for(cases([
    [1, 0x3f80],
    [-2, 0xc000],
    [0, 0x0000],
    [-0, 0x8000],
    [3.140625, 0x4049],
    [Infinity, 0x7f80],
    [-Infinity, 0xff80],
    [(2 - p2(-7)) * p2(127), 0x7f7f], // largest finite
    [p2(-126), 0x0080], // smallest normal
    [p2(-133), 0x0001], // smallest subnormal
    [-p2(-133), 0x8001],
    [p2(-134), 0x0000], // tie between 0 and the smallest subnormal: even is 0
    [3 * p2(-135), 0x0001], // 0.75 of a quantum rounds up
  ]))('encodes $x as $hex', ({ x, bits }) => {
    expect(toBf16Bits([x])[0]).toBe(bits);
    expect(toBf16Bits(Float32Array.of(x))[0]).toBe(bits);
    expect(encodeScalarBits('bf16', x)).toBe(bits);
  });

  test('rounds ties to even', () => {
    const xs = [1 + p2(-8), 1 + 3 * p2(-8), -(1 + p2(-8)), 1 + p2(-8) + p2(-20)];
    const expected = [0x3f80, 0x3f82, 0xbf80, 0x3f81];
    expect(Array.from(toBf16Bits(xs))).toEqual(expected);
    expect(Array.from(toBf16Bits(Float32Array.from(xs)))).toEqual(expected);
  });

  test('rounds a double once, not through float32', () => {
    // float32 rounds this to the tie 1 + 2^-8 (then even: 0x3f80); the double is above it.
    const x = 1 + p2(-8) + p2(-40);
    expect(toBf16Bits([x])[0]).toBe(0x3f81);
    expect(toBf16Bits(Float32Array.of(x))[0]).toBe(0x3f80);
  });

  test('overflows to infinity from the halfway point up', () => {
    const maxFinite = (2 - p2(-7)) * p2(127);
    const halfway = (2 - p2(-8)) * p2(127);
    expect(toBf16Bits([halfway, -halfway, halfway * (1 - p2(-30)), 1e300])).toEqual(
      Uint16Array.of(0x7f80, 0xff80, 0x7f7f, 0x7f80),
    );
    expect(toBf16Bits(Float32Array.of(maxFinite))[0]).toBe(0x7f7f);
  });

  test('NaN becomes the canonical quiet NaN, sign kept', () => {
    const negNaN = new Float32Array(new Uint32Array([0xff800001]).buffer);
    expect(toBf16Bits([NaN])[0]).toBe(0x7fc0);
    expect(toBf16Bits(Float32Array.of(NaN))[0]).toBe(0x7fc0);
    // payload only in the low bits: plain truncation would give infinity
    expect(toBf16Bits(negNaN)[0]).toBe(0xffc0);
    expect(Number.isNaN(fromBf16Bits(Uint16Array.of(0x7fc0))[0])).toBe(true);
  });

  test('decodes known patterns', () => {
    const v = fromBf16Bits(Uint16Array.of(0x3f80, 0xc000, 0x0001, 0x8000, 0x7f80, 0xff80, 0x7f7f));
    expect(Array.from(v)).toEqual([1, -2, p2(-133), -0, Infinity, -Infinity, (2 - p2(-7)) * p2(127)]);
    expect(Object.is(v[3], -0)).toBe(true);
    expect(decodeScalarBits('bf16', 0x0001)).toBe(p2(-133));
  });

  test('round-trips all 65536 patterns (NaNs stay NaN)', () => {
    const values = fromBf16Bits(ALL_PATTERNS);
    const viaF32 = toBf16Bits(values);
    const viaF64 = toBf16Bits(Array.from(values));
    for (let b = 0; b < 65536; b++) {
      const isNaN = (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;
      if (isNaN) {
        expect(Number.isNaN(values[b])).toBe(true);
        expect(viaF32[b]! & 0x7fff).toBe(0x7fc0);
      } else if (viaF32[b] !== b || viaF64[b] !== b) {
        expect([b, viaF32[b], viaF64[b]]).toEqual([b, b, b]);
      }
    }
  });

  test('float32 fast path agrees with the float64 path on random float32 values', () => {
    let state = 12345;
    const bits = new Uint32Array(20000);
    for (let i = 0; i < bits.length; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      bits[i] = state;
    }
    const f32 = new Float32Array(bits.buffer);
    const fast = toBf16Bits(f32);
    const slow = toBf16Bits(Array.from(f32));
    for (let i = 0; i < f32.length; i++) {
      if (Number.isNaN(f32[i])) continue;
      if (fast[i] !== slow[i]) expect([f32[i], fast[i]]).toEqual([f32[i], slow[i]]);
    }
  });
});

describe('fp16', () => {
  test.for(cases([
    [1, 0x3c00],
    [-2, 0xc000],
    [0, 0x0000],
    [-0, 0x8000],
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [65504, 0x7bff], // largest finite
    [65519, 0x7bff], // below the halfway point to 65536
    [65520, 0x7c00], // halfway: ties to even, which is infinity
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [p2(-14), 0x0400], // smallest normal
    [p2(-14) - p2(-24), 0x03ff], // largest subnormal
    [p2(-24), 0x0001], // smallest subnormal
    [p2(-25), 0x0000], // tie: even is 0
    [3 * p2(-26), 0x0001],
    [3 * p2(-25), 0x0002], // 1.5 quanta: tie to even 2
    [5 * p2(-25), 0x0002], // 2.5 quanta: tie to even 2
    [2 - p2(-11), 0x4000], // tie carries into the exponent
    [1 + p2(-11), 0x3c00],
    [1 + 3 * p2(-11), 0x3c02],
  ]))('encodes $x as $hex', ({ x, bits }) => {
    expect(toFp16Bits([x])[0]).toBe(bits);
    expect(toFp16Bits(Float32Array.of(x))[0]).toBe(Math.fround(x) === x ? bits : toFp16Bits([Math.fround(x)])[0]);
    expect(encodeScalarBits('fp16', x)).toBe(bits);
  });

  test('NaN becomes the canonical quiet NaN, sign kept', () => {
    expect(toFp16Bits([NaN])[0]).toBe(0x7e00);
    expect(toFp16Bits(new Float32Array(new Uint32Array([0xff800001]).buffer))[0]).toBe(0xfe00);
    expect(Number.isNaN(fromFp16Bits(Uint16Array.of(0x7c01))[0])).toBe(true);
  });

  test('decodes known patterns', () => {
    const v = fromFp16Bits(Uint16Array.of(0x3c00, 0x0001, 0x03ff, 0x7bff, 0xfc00, 0x8000, 0x3555));
    expect(Array.from(v)).toEqual([1, p2(-24), p2(-14) - p2(-24), 65504, -Infinity, -0, 0.25 + 0x155 / 4096]);
    expect(Object.is(v[5], -0)).toBe(true);
  });

  test('round-trips all 65536 patterns (NaNs stay NaN)', () => {
    const values = fromFp16Bits(ALL_PATTERNS);
    const viaF32 = toFp16Bits(values);
    const viaF64 = toFp16Bits(Array.from(values));
    for (let b = 0; b < 65536; b++) {
      const isNaN = (b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0;
      if (isNaN) {
        expect(Number.isNaN(values[b])).toBe(true);
        expect(viaF32[b]! & 0x7fff).toBe(0x7e00);
      } else if (viaF32[b] !== b || viaF64[b] !== b) {
        expect([b, viaF32[b], viaF64[b]]).toEqual([b, b, b]);
      }
    }
  });

  test('encodes random doubles to the nearest value', () => {
    let state = 99;
    for (let i = 0; i < 5000; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      const x = ((state / 2 ** 32) * 2 - 1) * 2 ** ((i % 40) - 26);
      const bits = toFp16Bits([x])[0]!;
      const err = Math.abs(decodeScalarBits('fp16', bits) - x);
      for (const neighbour of [bits - 1, bits + 1]) {
        if ((neighbour & 0x7c00) === 0x7c00 || neighbour < 0 || neighbour > 0xffff) continue;
        if ((bits & 0x8000) !== (neighbour & 0x8000)) continue;
        expect(err).toBeLessThanOrEqual(Math.abs(decodeScalarBits('fp16', neighbour) - x));
      }
    }
  });
});

test('encode/decode dispatch on the dtype', () => {
  expect(encode('bf16', [1, 2])).toEqual(Uint16Array.of(0x3f80, 0x4000));
  expect(encode('fp16', [1, 2])).toEqual(Uint16Array.of(0x3c00, 0x4000));
  expect(Array.from(decode('bf16', Uint16Array.of(0x3f80)))).toEqual([1]);
  expect(Array.from(decode('fp16', Uint16Array.of(0x3c00)))).toEqual([1]);
});
