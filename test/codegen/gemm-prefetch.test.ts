/**
 * The GEMM's L2 prefetch before its grid dependency wait (src/codegen/gemm-prefetch.ts): the
 * 8 MiB budget over the launch's CTAs, floored at the pipeline prologue's stages - 1 tiles and
 * capped by the CTA's split part; the k range of an uneven split's last part and of K's edge.
 */
import { describe, expect, test } from 'vitest';
import { GEMM_PREFETCH_L2_BUDGET, gemmPlanPrefetch, gemmPrefetchTiles, prefetchRuns, sm90aPrefetch } from '../../src/codegen/gemm-prefetch.js';
import type { GemmReduction, GemmShape } from '../../src/codegen/gemm-plan.js';

const red = (kTiles: number, splitK: number): GemmReduction => ({ blockK: 64, kTiles, splitK, kTilesPerSplit: Math.ceil(kTiles / splitK) });

describe('gemmPrefetchTiles', () => {
  test('budget / ctas / tileBytes, clamped to [stages - 1, kTilesPerSplit]', () => {
    expect(GEMM_PREFETCH_L2_BUDGET).toBe(8 << 20);
    expect(gemmPrefetchTiles(64, 8192, 4, 64)).toBe(16); // 8 MiB / 64 / 8 KiB
    expect(gemmPrefetchTiles(16, 8192, 4, 16)).toBe(16); // 64 by budget, capped by the part
    expect(gemmPrefetchTiles(1187, 16384, 4, 16)).toBe(3); // 0 by budget: the prologue's 3
    expect(gemmPrefetchTiles(1, 8192, 8, 4)).toBe(4); // stages - 1 past the part: the part
    expect(() => gemmPrefetchTiles(0, 8192, 4, 16)).toThrow(/ctas/);
  });
});

describe('per kernel', () => {
  const shape: GemmShape = { n: 1024, k: 1024, dtype: 'bf16' };
  test('mma.sync plan: CTAs at the plan m, Hopper stages, the launch under the budget', () => {
    const plan = { shape, reduction: red(16, 1), blockN: 64, mBlocks: 1, nTiles: 16, stages: 3, stagesByArch: { sm_80: 3, sm_90: 5 } };
    expect(gemmPlanPrefetch(plan)).toEqual({ ctas: 16, rows: 64, tileBytes: 8192, tiles: 16, bytesPerCta: 16 * 8192, launchBytes: 1024 * 1024 * 2 });
    const wide: GemmShape = { n: 151936, k: 1024, dtype: 'bf16' };
    const p = gemmPlanPrefetch({ shape: wide, reduction: red(16, 1), blockN: 128, mBlocks: 1, nTiles: 1187, stages: 3, stagesByArch: { sm_90: 5 } });
    expect(p.tiles).toBe(4); // the floor: sm_90's 5 stages - 1, not the common 3
    expect(p.launchBytes).toBe(151936 * 4 * 64 * 2);
  });
  test('uneven split and K edge: the last part prefetches only its own k, K clamps the last tile', () => {
    const s: GemmShape = { n: 64, k: 1000, dtype: 'bf16' }; // 16 k tiles, the last of 40
    const r = red(16, 3); // parts of 6, 6, 4
    expect(prefetchRuns(s, r, 6, 0)).toEqual({ kStart: 0, kEnd: 384 });
    expect(prefetchRuns(s, r, 6, 2)).toEqual({ kStart: 768, kEnd: 1000 });
    expect(prefetchRuns(s, r, 2, 1)).toEqual({ kStart: 384, kEnd: 512 });
    for (const sp of [0, 1, 2]) expect(((prefetchRuns(s, r, 6, sp).kEnd - prefetchRuns(s, r, 6, sp).kStart) * 2) % 16).toBe(0);
  });
  test('sm_90a: CTAs at the most rows the token tile serves', () => {
    const p = sm90aPrefetch({ n: 4096, k: 4096, dtype: 'bf16' }, red(64, 2), { tileT: 136, blockW: 128, stages: 4 }, [272]);
    expect(p.ctas).toBe(2 * 32 * 2);
    expect(p.tiles).toBe(Math.floor((8 << 20) / 128 / 16384)); // 4
    expect(p.launchBytes).toBeLessThanOrEqual(GEMM_PREFETCH_L2_BUDGET);
    expect(() => sm90aPrefetch({ n: 64, k: 64, dtype: 'bf16' }, red(1, 1), { tileT: 8, blockW: 64, stages: 4 }, [])).toThrow();
  });
});
