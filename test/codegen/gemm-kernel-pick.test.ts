/**
 * The one rule a GEMM launch picks its kernel by (src/codegen/gemm-kernel-pick.ts), which the
 * runtime (gpu-gemm.ts, gpu-gemm-sm90a.ts) and a filtered compile (gemm-omission.ts) share: the
 * same kernel as the runtime's own expressions picked before the rule moved here, for every row
 * count 1..600 over the Qwen3-8B kernel sets, in any order the list comes.
 */
import { describe, expect, test } from 'vitest';
import { pickMmaKernel, pickSm90aKernel } from '../../src/codegen/gemm-kernel-pick.js';
import { mmaKernelFor, sm90aKernelFor } from '../../src/codegen/gemm-omission.js';
import { sm90aTokenTile } from '../../src/codegen/gemm-sm90a.js';

/** The runtime's expressions before the move, over its sorted lists (gpu-gemm.ts byRole, the manifest's kernels by tile). */
const before = {
  mma: (ms: readonly number[], rows: number) => ms.find((m) => m >= rows) ?? ms[ms.length - 1]!,
  sm90a: (tiles: readonly number[], rows: number) => tiles.find((t) => t === sm90aTokenTile(rows)) ?? tiles.find((t) => t >= rows) ?? tiles[tiles.length - 1]!,
};
const MS = [1, 12, 20, 72, 240, 272, 512];  // a compile's planned row counts (step rows and a prefill chunk)
const TILES = [[8, 16, 32, 64, 128, 136, 256], [8, 32, 128, 136], [8, 256], [16]];  // full, and as a filtered or older compile leaves them
const shuffled = <T>(xs: readonly T[]): T[] => [...xs].reverse().sort((a, b) => (String(a) < String(b) ? -1 : 1));
const ROWS = Array.from({ length: 600 }, (_, i) => i + 1);

describe('gemm-kernel-pick', () => {
  test('mma.sync: the fewest planned rows >= rows, else the most, as gpu-gemm.ts picked', () => {
    for (const ms of [MS, [72], [1, 600]]) {
      const objects = shuffled(ms).map((m) => ({ m }));
      for (const rows of ROWS) {
        const want = before.mma(ms, rows);
        expect(pickMmaKernel(objects, rows, (x) => x.m), `rows ${rows} of ${ms.join(',')}`).toBe(objects.find((x) => x.m === want));
        expect(mmaKernelFor(shuffled(ms), rows)).toBe(want);
      }
    }
  });

  test('sm_90a: the planned token tile, else the smallest holding the rows, else the largest, as gpu-gemm-sm90a.ts picked', () => {
    for (const tiles of TILES) {
      const objects = shuffled(tiles).map((tileT) => ({ tileT }));
      for (const rows of ROWS) {
        const want = before.sm90a(tiles, rows);
        expect(pickSm90aKernel(objects, rows, (k) => k.tileT), `rows ${rows} of ${tiles.join(',')}`).toBe(objects.find((k) => k.tileT === want));
        expect(sm90aKernelFor(shuffled(tiles), rows)).toBe(want);
      }
    }
    // The three branches, named: 300 rows plan 64-token tiles (fewest padded), absent from [8, 256].
    expect([pickSm90aKernel([256, 8], 8, (t) => t), pickSm90aKernel([256, 136, 8], 20, (t) => t), pickSm90aKernel([256, 8], 300, (t) => t)]).toEqual([8, 136, 256]);
  });

  test('a unit without kernels is an error, not an undefined kernel', () => {
    expect(() => pickMmaKernel([], 1, (m: number) => m)).toThrow(/no kernels/);
    expect(() => pickSm90aKernel([], 1, (t: number) => t)).toThrow(/no kernels/);
  });
});
