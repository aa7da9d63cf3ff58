/**
 * The split-KV rule (issue 15 item 2): slots are SMs x CTAs per SM, no split is ever empty, and
 * the waves it picks are not tails; with the default occupancy (1 CTA a SM) it is FA3's rule.
 */
import { describe, expect, test } from 'vitest';
import { gemmTarget, planReduction } from '../../src/codegen/gemm-plan.js';
import { chooseSplits } from '../../src/codegen/splits.js';

const nonEmpty = (tiles: number, s: number): number => Math.ceil(tiles / Math.ceil(tiles / s));
const efficiency = (work: number, slots: number): number => work / (Math.ceil(work / slots) * slots);

describe('chooseSplits', () => {
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

  test('Qwen3-8B AR, batch 1, L = 4k (8 CTAs, 64 tiles): FA3\'s 15 splits left 2 empty; now 16 on 1 CTA/SM, 32 on 2', () => {
    expect(nonEmpty(64, 15)).toBe(13);  // what the old rule picked: 120 CTAs, 16 of them idle
    expect(chooseSplits(8, 132, 64)).toBe(16);
    expect(chooseSplits(8, 132, 64, 64, 2)).toBe(32);  // 256 CTAs on 264 slots
  });

  test('k = 16, batch 1 (136 CTAs) at 2 CTAs/SM: split so the second wave is not 4 CTAs; 1 CTA/SM keeps FA3\'s "enough work"', () => {
    expect(chooseSplits(136, 132, 64)).toBe(1);
    const s = chooseSplits(136, 132, 64, 64, 2);
    expect(s).toBeGreaterThan(1);
    expect(efficiency(136 * s, 264)).toBeGreaterThan(0.85);
    expect(efficiency(136, 264)).toBeLessThan(0.6);
  });

  test('enough work for the slots: no split; the occupancy counts', () => {
    expect(chooseSplits(220, 132, 64, 64, 2)).toBe(1);
    expect(chooseSplits(200, 132, 64, 64, 2)).toBeGreaterThan(1);  // 200 of 264 slots is under 80%
    expect(chooseSplits(1, 132, 0, 64, 3)).toBe(1);
    expect(chooseSplits(1, 132, 3, 64, 2)).toBeLessThanOrEqual(3);
  });
});

describe('split-K of the GEMMs (the same rule, in k tiles)', () => {
  test('K = 3072 (48 k tiles), N = 4096: 4 parts of 12 k tiles, none empty (counted in groups of 8 tiles the rule would see 6 and drop to 3)', () => {
    const target = gemmTarget(['sm_90']);
    expect(planReduction({ n: 4096, k: 3072, dtype: 'bf16' }, target)).toMatchObject({ kTiles: 48, splitK: 4, kTilesPerSplit: 12 });
  });
});
