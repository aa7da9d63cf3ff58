// Needs: nothing (pure TypeScript).
import { describe, expect, it } from 'vitest';
import { anyNonFinite, findNonFinite } from '../../src/model/finite.js';
import { decode } from '../../src/util/dtype.js';

/** The slow truth: decode every element and ask Number.isFinite. */
function naive(dtype: 'BF16' | 'F16', bits: Uint16Array): number[] {
  const values = decode(dtype === 'BF16' ? 'bf16' : 'fp16', bits);
  return [...values.keys()].filter((i) => !Number.isFinite(values[i]!));
}

describe('non-finite scan of 16-bit weights', () => {
  for (const dtype of ['BF16', 'F16'] as const) {
    it(`${dtype}: every one of the 65536 bit patterns, alone and as either half of an aligned pair`, () => {
      const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
      const bad = new Set(naive(dtype, all));
      expect(bad.size).toBe(2 * 1024 * (dtype === 'BF16' ? 1 / 8 : 1)); // exponent all ones: 2 * mantissa values
      const pair = new Uint16Array(4);  // [x, 0] and [0, x] at byte offset 0, then [x] at offset 2 (unaligned)
      for (let x = 0; x < 65536; x++) {
        pair.set([x, 0, 0, x]);
        const want = bad.has(x);
        if (anyNonFinite(dtype, pair.subarray(0, 2)) !== want || anyNonFinite(dtype, pair.subarray(2, 4)) !== want || anyNonFinite(dtype, pair.subarray(3, 4)) !== want) {
          throw new Error(`${dtype} 0x${x.toString(16)}: expected ${want}`);
        }
      }
    });

    it(`${dtype}: finds the first bad element anywhere in views of every alignment and length`, () => {
      const nan = dtype === 'BF16' ? 0x7fc1 : 0x7e01, inf = dtype === 'BF16' ? 0x7f80 : 0x7c00;
      const base = Uint16Array.from({ length: 67 }, (_, i) => (i * 2654435761) & 0x3fff);  // finite values
      expect(findNonFinite(dtype, base)).toBeUndefined();
      for (let start = 0; start < 3; start++) {
        for (let at = start; at < 67; at++) {
          const data = base.slice();
          data[at] = at % 2 ? nan : inf | 0x8000;
          const view = data.subarray(start);
          expect(findNonFinite(dtype, view), `start ${start} at ${at}`).toEqual({ index: at - start, value: at % 2 ? NaN : -Infinity, count: 1 });
        }
      }
    });
  }

  it('F32: NaN, +inf and -inf are found and counted; the largest finite values are not', () => {
    const x = new Float32Array(1000).fill(3.4e38);
    x[0] = -3.4e38;
    expect(findNonFinite('F32', x)).toBeUndefined();
    x[500] = Infinity;
    x[999] = NaN;
    expect(findNonFinite('F32', x)).toEqual({ index: 500, value: Infinity, count: 2 });
    expect(findNonFinite('F32', x.subarray(501))).toEqual({ index: 498, value: NaN, count: 1 });
  });
});
