/**
 * The GEMM cost models price a folded RMSNorm (fold-design.md) where the output is written: a
 * producer (o, down) writes M N 2 bytes of round16(gamma y) and M ceil(N / 64) 8 of float64 sums
 * of squares; a consumer (qkv, gate_up, lm_head) reads M chunks 8. With split-K the split sum
 * writes them (its bytes and its time move, the partials do not).
 */
import { describe, expect, test } from 'vitest';
import { H200 } from '../../src/codegen/machine.js';
import { normFoldBytes, predictGemm } from '../../src/codegen/gemm-cost-model.js';
import { predictSm90aGemm } from '../../src/codegen/gemm-sm90a-cost-model.js';
import { gemmTarget, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';
import { GEMM, GEMM_NO_NORM, packStruct } from '../../src/runtime/cuda/op-abi.js';
import { gemmNormFold } from '../../src/bench/step-launch-price.js';

const target = gemmTarget(['sm_90']);
const plan = (n: number, k: number, m: number, splitK?: number) => {
  const shape = { n, k, dtype: 'bf16' as const };
  return planGemm(shape, m, target, planReduction(shape, target, splitK));
};

describe('a folded norm in the GEMM cost models', () => {
  test('the bytes: producer 2 a 16-bit element and 8 a row and 64 columns (the last chunk partial), consumer 8 a row and chunk read', () => {
    expect(normFoldBytes(1000, 3, { normOut: true })).toBe(3 * 1000 * 2 + 3 * 16 * 8);  // ceil(1000 / 64) = 16
    expect(normFoldBytes(1024, 20, { normOut: true })).toBe(20 * 1024 * 2 + 20 * 16 * 8);
    expect(normFoldBytes(6144, 20, { rowScaleChunks: 64 })).toBe(20 * 64 * 8);
    expect(normFoldBytes(6144, 20, undefined)).toBe(0);
  });

  test('mma.sync: added once where the output is written, not twice when accumulating; without split-K in the main loop, with it in the split sum', () => {
    for (const splitK of [1, 4]) {
      const p = plan(1024, 2048, 20, splitK);
      expect(p.reduction.splitK).toBe(splitK);
      const base = predictGemm(p, 20, H200, 128, { accumulate: true });
      const producer = predictGemm(p, 20, H200, 128, { accumulate: true, fold: { normOut: true } });
      const consumer = predictGemm(p, 20, H200, 128, { fold: { rowScaleChunks: 16 } });
      expect(producer.hbmBytes - base.hbmBytes).toBe(20 * 1024 * 2 + 20 * 16 * 8);
      expect(consumer.hbmBytes - predictGemm(p, 20, H200, 128).hbmBytes).toBe(20 * 16 * 8);
      if (p.reduction.splitK > 1) {
        expect(producer.hbmS).toBe(base.hbmS);  // the partials, not the output, leave the main loop
        expect(producer.reduceS).toBeGreaterThan(base.reduceS);
      } else {
        expect(producer.hbmS).toBeGreaterThan(base.hbmS);
        expect(producer.reduceS).toBe(0);
      }
      expect(producer.predictedS).toBeGreaterThanOrEqual(base.predictedS);
    }
  });

  test('sm_90a: the same bytes', () => {
    const shape = { n: 1024, k: 2048, dtype: 'bf16' as const };
    const r = planReduction(shape, gemmTarget(['sm_90a']), 1);
    const base = predictSm90aGemm(shape, r, 8, 4, H200, 90, { accumulate: true });
    const producer = predictSm90aGemm(shape, r, 8, 4, H200, 90, { accumulate: true, fold: { normOut: true } });
    expect(producer.hbmBytes - base.hbmBytes).toBe(4 * 1024 * 2 + 4 * 16 * 8);
    const qkv = { n: 4096, k: 1024, dtype: 'bf16' as const };
    const rq = planReduction(qkv, gemmTarget(['sm_90a']), 1);
    expect(predictSm90aGemm(qkv, rq, 8, 4, H200, 90, { fold: { rowScaleChunks: 16 } }).hbmBytes - predictSm90aGemm(qkv, rq, 8, 4, H200, 90).hbmBytes).toBe(4 * 16 * 8);
  });

  test('a launch\'s role from its TidarcGemmArgs (ABI v6): normWeight set -> producer, rowSumsq set -> consumer with its chunks, neither -> none', () => {
    const zero = Object.fromEntries(GEMM.fields.map(([name]) => [name, 0]));
    const args = (x: Partial<Record<string, number>>): Uint8Array => packStruct(GEMM, { ...zero, rows: 20, accumulate: 1, ...GEMM_NO_NORM, ...x });
    expect(gemmNormFold(args({}))).toBeUndefined();
    expect(gemmNormFold(args({ normWeight: 0x1000, normOut: 0x2000, normSumsq: 0x3000 }))).toEqual({ normOut: true });
    expect(gemmNormFold(args({ rowSumsq: 0x3000, sumsqChunks: 16, normCols: 1024, normEps: 1e-6 }))).toEqual({ rowScaleChunks: 16 });
  });
});
