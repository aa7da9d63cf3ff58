/**
 * The split rules (src/codegen/splits.ts). The GPU attention's (issue 15 item 2) takes the split
 * count of least estimated time, the merge and the per-CTA costs included; no split is ever
 * empty. The wave rule (FA2/FA3's) stays for the CPU attention and the GEMMs' split-K.
 * Kernels: the planner's Qwen3-8B tiles at sm_90 (head dim 128, 64 keys a tile, 8 KV heads).
 */
import { describe, expect, test } from 'vitest';
import { gemmTarget, planReduction } from '../../src/codegen/gemm-plan.js';
import { SPLIT_RATES, SPLIT_TIME_TOLERANCE, type SplitKernel, chooseAttentionSplits, chooseSplits, splitEstimate, splitKernel } from '../../src/codegen/splits.js';

const nonEmpty = (tiles: number, s: number): number => Math.ceil(tiles / Math.ceil(tiles / s));
const efficiency = (work: number, slots: number): number => work / (Math.ceil(work / slots) * slots);

/** AR: one 16-row m-tile for 4 rows; k = 4: one CTA of 80 rows; k = 8: 3 x 96; k = 16: 17 x 64 (plan.ts rowTileOf). */
const KERNELS: Readonly<Record<string, SplitKernel>> = {
  ar: splitKernel({ tileM: 16, rows: 4, rowTiles: 1, tileN: 64, headDim: 128 }),
  k4: splitKernel({ tileM: 80, rows: 80, rowTiles: 1, tileN: 64, headDim: 128 }),
  k8: splitKernel({ tileM: 96, rows: 288, rowTiles: 3, tileN: 64, headDim: 128 }),
  k16: splitKernel({ tileM: 64, rows: 1088, rowTiles: 17, tileN: 64, headDim: 128 }),
};
const call = (k: string, batch: number, prefix: number, ctasPerSm: number) => {
  const kernel = KERNELS[k]!;
  return { workItems: batch * 8 * kernel.rowTiles, sms: 132, ctasPerSm, prefixTiles: Math.ceil(prefix / 64), kernel };
};

describe('chooseAttentionSplits: the split count of least estimated time', () => {
  test('k = 4, batch 1, L = 4k (8 CTAs a split): the wave rule\'s 16, now that the merge is spread over every CTA (each merges 1/16 of a row group, not 8 CTAs all of it)', () => {
    const a = call('k4', 1, 4096, 1);
    const wave = chooseSplits(8, 132, 64, undefined, 1);
    expect(wave).toBe(16);
    const s = chooseAttentionSplits(a);
    expect(s).toBe(wave);
    expect(splitEstimate(s, a).totalS).toBeLessThan(splitEstimate(8, a).totalS);
    // A CTA's slice: 16 x 80 partial rows / 16; two CTAs on the busiest SM (136 on 132), + the schedule's 0.5 us.
    expect(splitEstimate(s, a).mergeS).toBeLessThan(splitEstimate(s, a).workS);
  });

  test('with splits a CTA\'s partial O is L2 traffic (the merge reads it back and discards it, tidarc_attention.cuh merge_slice) and only its lse reaches HBM: one 80-row tile at 3 prefix tiles takes 3 splits (1 while the partial O was priced as HBM bytes)', () => {
    const a = call('k4', 1, 192, 1);  // 8 CTAs a split, 3 tiles of 64 keys
    const hbm = (2 * 64 * 128 * 2 + 80 * 4) / SPLIT_RATES.hbmBytesPerSmS;  // one K/V tile and the lse
    const l2 = (2 * 64 * 128 * 2 + 80 * 128 * 2 + 80 * 129 * 4) / SPLIT_RATES.l2BytesPerSmS;  // the tile, Q, the partial O and lse
    const mma = (4 * 80 * 64 * 128) / SPLIT_RATES.mmaFlopsPerSmS;
    expect(splitEstimate(3, a).workS).toBeCloseTo(Math.max(hbm, l2, mma), 15);
    expect(l2).toBeGreaterThan(hbm);
    expect(chooseAttentionSplits(a)).toBe(3);
    expect(splitEstimate(3, a).totalS).toBeLessThan(splitEstimate(1, a).totalS);
  });

  test('AR, batch 1, L = 4k: still splits enough to fill the GPU (at least one CTA on 90% of the SMs), with no empty split, at 1 to 3 CTAs/SM', () => {
    for (const ctas of [1, 2, 3]) {
      const s = chooseAttentionSplits(call('ar', 1, 4096, ctas));
      expect(8 * s, `${ctas} CTAs/SM: ${s} splits`).toBeGreaterThanOrEqual(0.9 * 132);
      expect(nonEmpty(64, s)).toBe(s);
    }
  });

  test('a large batch takes 1 split: batch 32 of every variant at L = 4k to 64k, 1 to 3 CTAs/SM', () => {
    for (const k of Object.keys(KERNELS)) {
      for (const prefix of [4096, 16384, 65536]) {
        for (const ctas of [1, 2, 3]) expect(chooseAttentionSplits(call(k, 32, prefix, ctas)), `${k} L ${prefix}, ${ctas} CTAs/SM`).toBe(1);
      }
    }
  });

  test('no split is ever empty, never more than the prefix tiles or 64 (grid of variants, batch, tiles, occupancy)', () => {
    for (const k of Object.keys(KERNELS)) {
      for (const batch of [1, 2, 3, 8]) {
        for (const tiles of [0, 1, 2, 3, 5, 7, 16, 17, 63, 64, 100, 256, 1024, 4096]) {
          for (const ctas of [1, 2, 3]) {
            const s = chooseAttentionSplits({ ...call(k, batch, 0, ctas), prefixTiles: tiles });
            expect(nonEmpty(Math.max(1, tiles), s), `${k} batch ${batch}, ${tiles} tiles, ${ctas} CTAs/SM: ${s}`).toBe(s);
            expect(s).toBeLessThanOrEqual(Math.max(1, Math.min(64, tiles)));
          }
        }
      }
    }
  });

  test('more prefix is never predicted faster (beyond the tolerance); the split count itself is not monotone, by design', () => {
    for (const k of Object.keys(KERNELS)) {
      for (const batch of [1, 3, 8]) {
        for (const ctas of [1, 2]) {
          let previous = 0;
          for (let tiles = 1; tiles <= 300; tiles++) {
            const a = { ...call(k, batch, 0, ctas), prefixTiles: tiles };
            const t = splitEstimate(chooseAttentionSplits(a), a).totalS;
            expect(t * (1 + SPLIT_TIME_TOLERANCE), `${k} batch ${batch}, ${ctas} CTAs/SM, ${tiles} tiles`).toBeGreaterThanOrEqual(previous);
            previous = t;
          }
        }
      }
    }
    // Why not the count: AR at 16 tiles takes 16 splits of 1 tile; at 17 tiles 17 splits (136 CTAs)
    // would put 2 CTAs on 4 SMs, so 9 splits of 2 tiles cost the same critical path with fewer merges.
    expect(chooseAttentionSplits(call('ar', 1, 16 * 64, 1))).toBe(16);
    expect(chooseAttentionSplits(call('ar', 1, 17 * 64, 1))).toBe(9);
  });

  test('the estimate: one split has no merge; the merge grows with the rows a group merges, and with the splits once the CTAs outnumber the SMs', () => {
    const a = call('k4', 1, 4096, 1);
    expect(splitEstimate(1, a).mergeS).toBe(0);
    // Each CTA merges 1/s of a row group: more splits, smaller slices, until the busiest SM holds more CTAs (8 x 32 + 32 on 132: 3).
    expect(splitEstimate(8, a).mergeS).toBeLessThan(splitEstimate(4, a).mergeS);
    expect(splitEstimate(32, a).mergeS).toBeGreaterThan(splitEstimate(16, a).mergeS);
    const bytesOnly = (s: number, x: typeof a) => splitEstimate(s, x).mergeS - SPLIT_RATES.scheduleS;
    expect(bytesOnly(8, a)).toBeGreaterThan(10 * bytesOnly(8, call('ar', 1, 4096, 1)));  // 80 rows against AR's 4
    // Resident CTAs overlap their fill: 2 CTAs an SM at 2 a SM pay it once, at 1 a SM twice.
    const two = { ...a, workItems: 264 };
    expect(splitEstimate(1, { ...two, ctasPerSm: 2 }).fillS * 2).toBeCloseTo(splitEstimate(1, { ...two, ctasPerSm: 1 }).fillS, 15);
  });
});

describe('chooseSplits: the wave rule (CPU attention, GEMM split-K)', () => {
  test('no split is ever empty: the kernel gives each ceil(tiles / s) tiles (grid of work, tiles, occupancy)', () => {
    for (const work of [1, 2, 3, 8, 16, 40, 100]) {
      for (const tiles of [1, 2, 3, 5, 7, 16, 63, 64, 100, 256, 1024]) {
        for (const ctas of [1, 2, 3]) {
          const s = chooseSplits(work, 132, tiles, 64, ctas);
          expect(nonEmpty(tiles, s), `work ${work}, tiles ${tiles}, ${ctas} CTAs/SM: ${s} splits`).toBe(s);
          expect(s).toBeLessThanOrEqual(Math.max(1, tiles));
        }
      }
    }
  });

  test('8 items, 64 tiles: FA3\'s 15 splits left 2 empty; 16 on 1 slot a SM, 32 on 2', () => {
    expect(nonEmpty(64, 15)).toBe(13);
    expect(chooseSplits(8, 132, 64)).toBe(16);
    expect(chooseSplits(8, 132, 64, 64, 2)).toBe(32);
  });

  test('136 items at 2 slots a SM: split so the second wave is not 4; enough work for the slots: no split', () => {
    expect(chooseSplits(136, 132, 64)).toBe(1);
    const s = chooseSplits(136, 132, 64, 64, 2);
    expect(efficiency(136 * s, 264)).toBeGreaterThan(0.85);
    expect(chooseSplits(220, 132, 64, 64, 2)).toBe(1);
    expect(chooseSplits(200, 132, 64, 64, 2)).toBeGreaterThan(1);
    expect(chooseSplits(1, 132, 0, 64, 3)).toBe(1);
  });

  test('split-K of the GEMMs: K = 3072 (48 k tiles), N = 4096: 2 parts of 24 k tiles over 64 tiles of 64 columns, 4 of 12 over 32 of 128, none empty', () => {
    const target = gemmTarget(['sm_90']);
    expect(planReduction({ n: 4096, k: 3072, dtype: 'bf16' }, target)).toMatchObject({ kTiles: 48, splitK: 2, kTilesPerSplit: 24 });
    expect(planReduction({ n: 4096, k: 3072, dtype: 'bf16' }, target, undefined, { rowStats: true })).toMatchObject({ kTiles: 48, splitK: 4, kTilesPerSplit: 12 });
  });
});
