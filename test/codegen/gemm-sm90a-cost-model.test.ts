/**
 * The sm_90a GEMM cost model (src/codegen/gemm-sm90a-cost-model.ts), pure: bytes and FLOPs of a
 * launch from its plan (weights once, 16-bit activations, split-K partials summed in the launch;
 * padded token tiles and weight tiles executed), the bound it names, and that at the same
 * bytes it never predicts slower than the mma.sync GEMM where the tensor cores bound it.
 */
import { describe, expect, test } from 'vitest';
import { H200 } from '../../src/codegen/machine.js';
import { type GemmLaunchPrediction, predictGemm } from '../../src/codegen/gemm-cost-model.js';
import { predictSm90aGemm } from '../../src/codegen/gemm-sm90a-cost-model.js';
import { gemmTarget, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';
import { sm90aBlockW, sm90aTokenTile } from '../../src/codegen/gemm-sm90a.js';

const QKV = { n: 6144, k: 4096, dtype: 'bf16' as const };

describe('predictSm90aGemm', () => {
  test('M = 1: HBM-bound; weights once, activations 16-bit, the partials written, the other part read back from L2 by each tile\'s last CTA', () => {
    const r = planReduction(QKV, gemmTarget(['sm_90a']), 2);
    const p = predictSm90aGemm(QKV, r, 8, 1, H200, 30);
    expect(p.bound).toBe('HBM');
    expect(p.ctas).toBe(48 * 2);
    expect(p.hbmBytes).toBe(6144 * 4096 * 2 + 4096 * 2 + 2 * 6144 * 4 + 6144 * 4);
    expect(p.reduceS).toBeCloseTo(((6144 * 4) / H200.l2BytesPerS + (6144 * 4) / H200.copyBytesPerS) / (48 / H200.sms), 12);  // 48 output tiles' last CTAs
    const twoLaunch = predictSm90aGemm(QKV, r, 8, 1, H200, 30, { splitSum: 'kernel' });
    expect(twoLaunch.hbmBytes - p.hbmBytes).toBe(2 * 6144 * 4);
    expect(twoLaunch.reduceS).toBeCloseTo((2 * 6144 * 4 + 6144 * 4) / H200.copyBytesPerS + H200.launchGapS, 12);
    expect(p.executedFlops).toBe(2 * 6144 * 8 * 4096);  // 128-row W tiles x the 8-token tile
    expect(p.hbmS).toBeCloseTo((6144 * 4096 * 2 + 4096 * 2 + 2 * 6144 * 4) / H200.copyBytesPerS, 12);
  });

  test('CTAs an SM by occupancy.ts: 9 warps take 3 of each sub-partition, so 94 registers (ptxas, the 136-token tile) hold 1 CTA, not the 2 that 9 x 3072 of 65,536 registers suggest', () => {
    const r = planReduction(QKV, gemmTarget(['sm_90a']), 1);
    expect(predictSm90aGemm(QKV, r, 8, 1, H200, 94).ctasPerSm).toBe(1);
    expect(predictSm90aGemm(QKV, r, 8, 1, H200, 30).ctasPerSm).toBe(3);  // shared memory: 3 x (70,728 + 1 KB)
  });

  test('the bytes in flight and shared memory follow the kernel\'s ring (stages): o at M = 72 at 6 stages pulls 5 / 3 of 4 stages\' rate, up to the copy rate', () => {
    const O = { n: 4096, k: 4096, dtype: 'bf16' as const };
    const r = planReduction(O, gemmTarget(['sm_90', 'sm_90a']), 2);
    const slow = { ...H200, hbmLatencyS: 1050e-9 };
    const at = (stages: number) => predictSm90aGemm(O, r, 128, 72, slow, 137, { blockW: 64, stages });
    expect(at(6).hbm.pulledBytesPerS / at(4).hbm.pulledBytesPerS).toBeCloseTo(5 / 3, 12);
    expect(at(4).hbm.underFilled).toBe(true);
    expect(at(6).hbm.bytesPerS).toBe(H200.copyBytesPerS);
    expect(at(6).hbmS).toBeLessThan(at(4).hbmS);
    expect(predictSm90aGemm(O, r, 128, 72, slow, 137, { blockW: 64 }).hbm).toEqual(at(4).hbm);  // no stages: the 4-stage ring
  });

  test('M = 272 in five 64-token tiles: the weight tile once per token tile through L2', () => {
    const r = planReduction(QKV, gemmTarget(['sm_90a']), 1);
    const p = predictSm90aGemm(QKV, r, 64, 272, H200, 58);
    expect(p.ctas).toBe(48 * 5);
    expect(p.l2Bytes).toBe(48 * 272 * 4096 * 2 + 5 * 6144 * 4096 * 2);
    expect(p.executedFlops).toBe(2 * 6144 * 320 * 4096);
  });

  test('64 weight rows (one consumer warpgroup): twice the weight tiles, each crossing the activations through L2 once; sm90aBlockW picks the faster width at Qwen3-8B o and down (M = 1, 72, 272) under the 2-part split', () => {
    const o = { n: 4096, k: 4096, dtype: 'bf16' as const }, down = { n: 4096, k: 12288, dtype: 'bf16' as const };
    const r1 = planReduction(QKV, gemmTarget(['sm_90a']), 1);
    const narrow = predictSm90aGemm(QKV, r1, 128, 72, H200, 90, { blockW: 64 });
    expect([narrow.blockW, narrow.ctas, narrow.l2Bytes, narrow.executedFlops]).toEqual([64, 96, 96 * 72 * 4096 * 2 + 6144 * 4096 * 2, 2 * 6144 * 128 * 4096]);
    for (const shape of [o, down]) {
      const r = planReduction(shape, gemmTarget(['sm_90', 'sm_90a']));
      expect(r.splitK).toBe(2);  // 64 tiles of 64 rows: the cost model's count over Qwen3-8B's step rows (gemm-plan.ts costModelSplits)
      for (const m of [1, 72, 272]) {
        const t = sm90aTokenTile(m);
        const at = (blockW: number) => predictSm90aGemm(shape, r, t, m, H200, 90, { accumulate: true, blockW }).predictedS;
        const other = sm90aBlockW(t) === 64 ? 128 : 64;
        expect(at(sm90aBlockW(t)), `${shape.k} M = ${m}`).toBeLessThanOrEqual(at(other));
      }
    }
    expect(predictSm90aGemm(o, planReduction(o, gemmTarget(['sm_90', 'sm_90a'])), 128, 72, H200, 90, { accumulate: true, blockW: 64 }).copyShare).toBeGreaterThanOrEqual(0.8);
  });

  test('where the tensor cores bound the step, wgmma at the matmul rate predicts no slower than mma.sync', () => {
    const big = { n: 24576, k: 4096, dtype: 'bf16' as const };
    const target = gemmTarget(['sm_90']);
    const r = planReduction(big, target);
    const sm90a = predictSm90aGemm(big, r, 128, 72, H200, 90);
    const mma = predictGemm(planGemm(big, 72, target, r), 72, H200, 128);
    expect(sm90a.predictedS).toBeLessThanOrEqual(mma.predictedS);
    expect(['HBM', 'L2', 'wgmma']).toContain(sm90a.bound);
  });

  test('HBM under-fill: one CTA pulls the TMA ring\'s stages - 1 weight tiles in flight over the latency, far below the copy rate', () => {
    const one = { n: 64, k: 4096, dtype: 'bf16' as const };
    const p = predictSm90aGemm(one, planReduction(one, gemmTarget(['sm_90a']), 1), 8, 1, H200, 30, { blockW: 64 });
    expect(p.ctas).toBe(1);
    expect(p.hbm.bytesPerS).toBeCloseTo((3 * 64 * 64 * 2) / H200.hbmLatencyS, 0);
    expect(p.hbmS).toBeCloseTo(p.hbmBytes / p.hbm.bytesPerS, 12);
    expect(p.bound).toBe('HBM');
    expect(p.copyShare).toBeLessThan(0.01);
    // Qwen3-8B o at M = 72 (128 CTAs of 64 weight rows) just fills HBM at the assumed 700 ns.
    const o = { n: 4096, k: 4096, dtype: 'bf16' as const };
    const at72 = predictSm90aGemm(o, planReduction(o, gemmTarget(['sm_90', 'sm_90a'])), 128, 72, H200, 135, { accumulate: true, blockW: 64 });
    expect(at72.hbm.underFilled).toBe(false);
    expect(at72.hbm.pulledBytesPerS).toBeLessThan(1.1 * H200.copyBytesPerS);
  });
  test('either family\'s prediction is a GemmLaunchPrediction: copy and matmul shares from its own bytes, FLOPs and time, by one formula', () => {
    const target = gemmTarget(['sm_90a']);
    const r = planReduction(QKV, target, 1);
    const m = 72, moved = 6144 * 4096 * 2 + m * 4096 * 2 + m * 6144 * 4;  // weights, 16-bit x, float32 out
    const launches: GemmLaunchPrediction[] = [predictGemm(planGemm(QKV, m, target, r), m, H200, 128), predictSm90aGemm(QKV, r, 72, m, H200, 137)];
    for (const p of launches) {
      expect(p.copyShare).toBe(moved / p.predictedS / H200.copyBytesPerS);
      expect(p.matmulShare).toBe(2 * m * 6144 * 4096 / p.predictedS / H200.matmulFlops);
    }
    expect(launches[0]!.predictedS).not.toBe(launches[1]!.predictedS);
  });
});
