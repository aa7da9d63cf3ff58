/**
 * The GEMM cost model (src/codegen/gemm-cost-model.ts: the planner's tile choice and bench:gemm),
 * lightly: occupancy from registers and shared memory, the memory-bound and compute-bound ends,
 * the split-K sum term, the bytes the fused epilogues save, HBM under-fill (Little's law) and
 * shared-memory traffic.
 */
import { describe, expect, test } from 'vitest';
import { H200 } from '../../src/codegen/machine.js';
import { occupancy } from '../../src/codegen/occupancy.js';
import { gemmSharedBytes, predictGemm, predictOp } from '../../src/codegen/gemm-cost-model.js';
import { gemmTarget, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';

const target = gemmTarget(['sm_90']);
const plan = (n: number, k: number, m: number, splitK?: number) => {
  const shape = { n, k, dtype: 'bf16' as const };
  return planGemm(shape, m, target, planReduction(shape, target, splitK));
};

/** 64 columns in 2 x 4 warps of 48 x 16 at 96 rows: the planner's tile at M = 272 before it chose by the cost model (gemm-tile-choice.ts). */
const NARROW_8_WARPS = { blockM: 96, warpsM: 2, stages: 4, blockN: 64 } as const;

describe('gemm cost model', () => {
  test('occupancy: the CTAs an SM holds are occupancy.ts\'s (the manifest\'s and the split rule\'s) at the plan\'s threads and shared memory', () => {
    const shape = { n: 4096, k: 4096, dtype: 'bf16' as const };
    const p = planGemm(shape, 272, target, planReduction(shape, target), NARROW_8_WARPS);
    for (const registers of [64, 128, 129, 168]) {
      expect(predictGemm(p, 272, H200, registers).ctasPerSm, `${registers} registers`).toBe(occupancy(H200.arch, { registers, sharedBytes: p.sharedBytes, threads: p.threads }).ctasPerSm);
    }
    expect(predictGemm(p, 272, H200, 129).ctasPerSm).toBe(1);  // 129 -> 136 registers a thread: 3 warps of a sub-partition's 16,384 registers; the plan's 2 a CTA
  });
  test('M = 1 is memory-bound: the weight bytes at the copy rate', () => {
    const p = predictGemm(plan(24576, 4096, 1), 1, H200, 64);
    expect(p.bound).toBe('HBM');
    expect(p.reduceS).toBe(0);
    expect(p.predictedS).toBeCloseTo((24576 * 4096 * 2) / 4.3e12, 6);
    expect(p.copyShare).toBeGreaterThan(0.99);
    expect(p.copyShare).toBeLessThanOrEqual(1);
  });
  test('M = 272 is compute-bound: padding rows and idle SMs cost time', () => {
    const p = predictGemm(plan(24576, 4096, 272), 272, H200, 120);
    expect(p.bound).not.toBe('HBM');
    expect(p.executedFlops).toBe(2 * 272 * 24576 * 4096);  // CTAs of 96, 96, 80 rows: fragments past M are skipped
    expect(predictGemm(plan(24576, 4096, 20), 20, H200, 80).executedFlops).toBe(2 * 32 * 24576 * 4096);  // 20 rows: two m16 fragments
    expect(p.predictedS).toBeGreaterThan(p.usefulFlops / H200.mmaSyncFlops);
    expect(p.matmulShare).toBeLessThan(0.5);
  });
  test('split-K is summed in the launch: the last CTA of each of the 64 output tiles (64 columns) reads the other 3 parts from L2 at the per-SM rate and writes the output, no launch gap', () => {
    const one = predictGemm(plan(4096, 4096, 20, 1), 20, H200, 80);
    const four = predictGemm(plan(4096, 4096, 20, 4), 20, H200, 80);
    expect(four.ctas).toBe(4 * one.ctas);
    expect(four.reduceS).toBeCloseTo(((3 * 20 * 4096 * 4) / H200.l2BytesPerS + (20 * 4096 * 4) / H200.copyBytesPerS) / (64 / H200.sms), 12);
    expect(four.hbmBytes - one.hbmBytes).toBe(4 * 20 * 4096 * 4);  // the partials written; the other parts' are read back from L2
    // The old separate reduce kernel (bench:gemm's "2-launch"): every partial again from HBM and a launch gap; slower here.
    const kernel = predictGemm(plan(4096, 4096, 20, 4), 20, H200, 80, { splitSum: 'kernel' });
    expect(kernel.reduceS).toBeCloseTo((4 * 20 * 4096 * 4 + 20 * 4096 * 4) / 4.3e12 + H200.launchGapS, 12);
    expect(kernel.hbmBytes - one.hbmBytes).toBe(2 * 4 * 20 * 4096 * 4);
    expect(four.predictedS).toBeLessThan(kernel.predictedS);
    expect(predictGemm(plan(4096, 4096, 20, 1), 20, H200, 80, { splitSum: 'kernel' })).toEqual(one);  // nothing to sum at split-K 1
  });
  test('epilogues: SwiGLU writes half the columns; row statistics write 12 bytes a row and 128-column tile instead of the logits, plus the merge', () => {
    const V = 151936, tiles = Math.ceil(V / 128), m = 20;
    const head = plan(V, 4096, m);
    const plain = predictGemm(head, m, H200, 64), stats = predictGemm(head, m, H200, 64, { epilogue: 'rowStats' });
    expect(plain.hbmBytes - stats.hbmBytes).toBe(m * V * 4 - (2 * m * tiles * 12 + m * 12));
    expect(stats.mergeS).toBeGreaterThan(0);
    // Unfused the logits are read once more by row_stats: M V 4 written + read in all.
    expect(plain.hbmBytes + predictOp(m * V * 4, H200).bytes - stats.hbmBytes).toBeGreaterThan(2 * m * V * 4 - 3 * m * tiles * 12);
    const gateUp = plan(24576, 4096, m);
    // SwiGLU: the down GEMM's 16-bit [M, I] input instead of the float32 [M, 2I] gate | up.
    expect(predictGemm(gateUp, m, H200, 64).hbmBytes - predictGemm(gateUp, m, H200, 64, { epilogue: 'swiglu' }).hbmBytes).toBe(m * 24576 * 4 - m * 12288 * 2);
  });
  test('Qwen3-8B on sm_90 (issue 14): the planned qkv, o and down reach 80% of the copy rate at M = 20, and are no slower at M = 1 than 128-column tiles with the wave rule', () => {
    const shapes = { qkv: [6144, 4096], o: [4096, 4096], down: [4096, 12288] } as const;
    for (const [role, [n, k]] of Object.entries(shapes)) {
      const shape = { n, k, dtype: 'bf16' as const };
      const accumulate = role !== 'qkv';
      const planned = planReduction(shape, target), wide = planReduction(shape, target, undefined, { rowStats: true });
      // From M = 20 (qkv) the narrow tile's warps (16 columns) reread the activations 4 times through shared memory (the tests below).
      for (const m of [1, 20]) {
        const p = predictGemm(planGemm(shape, m, target, planned), m, H200, 128, { accumulate });
        const before = predictGemm(planGemm(shape, m, target, wide, undefined, { rowStats: true }), m, H200, 128, { accumulate });
        if (m === 20) expect(p.copyShare, `${role} M=${m}`).toBeGreaterThanOrEqual(0.8);
        if (m === 1) expect(p.predictedS, `${role} M=${m}`).toBeLessThanOrEqual(before.predictedS * 1.001);
      }
    }
  });
  test('16-bit activations: a launch reads M K 2 bytes of them from HBM, and every N tile M K 2 from L2', () => {
    const p = plan(4096, 4096, 72, 1);
    const r = predictGemm(p, 72, H200, 94);
    expect(r.hbmBytes).toBe(4096 * 4096 * 2 + 72 * 4096 * 2 + 72 * 4096 * 4);
    expect(r.l2Bytes).toBe(p.nTiles * 72 * 4096 * 2 + 4096 * 4096 * 2);
  });
  test('HBM under-fill: one CTA on 132 SMs pulls only its pipeline\'s bytes in flight over the latency, far below the copy rate', () => {
    const shape = { n: 64, k: 4096, dtype: 'bf16' as const };
    const p = planGemm(shape, 1, target, planReduction(shape, target, 1));
    const r = predictGemm(p, 1, H200, 64);
    expect(r.ctas).toBe(1);
    const inFlight = (p.stagesByArch.sm_90! - 1) * 64 * 64 * 2;  // stages - 1 weight tiles of 64 rows x 64 k
    expect(r.hbm.bytesPerS).toBeCloseTo(inFlight / H200.hbmLatencyS, 0);
    expect(r.hbmS).toBeCloseTo(r.hbmBytes / (inFlight / H200.hbmLatencyS), 12);
    expect(r.hbm.underFilled).toBe(true);
    expect(r.hbmS).toBeGreaterThan((50 * r.hbmBytes) / H200.copyBytesPerS);
    expect(r.copyShare).toBeLessThan(0.02);
    // The same weight bytes over 132 CTAs fill the machine: the copy rate.
    const wide = { n: 64 * 132, k: 4096, dtype: 'bf16' as const };
    expect(predictGemm(planGemm(wide, 1, target, planReduction(wide, target, 1)), 1, H200, 64).hbm.bytesPerS).toBe(H200.copyBytesPerS);
  });
  test('shared memory: cp.async writes every stage row, ldmatrix.x4 reads A once per warp column and B once per warp row, skipping fragments past M', () => {
    const shape = { n: 6144, k: 4096, dtype: 'bf16' as const };
    const r = planReduction(shape, target);
    const p = planGemm(shape, 272, target, r, NARROW_8_WARPS);  // 3 CTAs of 96 rows along M, 2 x 4 warps of 48 x 16
    expect([p.blockM, p.blockN, p.warpsM, p.warpsN]).toEqual([96, 64, 2, 4]);
    const x4 = 512, k16 = 4, stage = (96 + 64) * 64 * 2, b = 2 * 4 * 1;
    const full = stage + k16 * x4 * (2 * 3 * 4 + b);   // 96 rows: 3 m16 fragments in each warp row, read by 4 warp columns
    const last = stage + k16 * x4 * ((3 + 2) * 4 + b);  // rows 192..271: the second warp row's third fragment (rows 80..95) is past M
    expect(gemmSharedBytes(p, 272)).toBe(96 * 64 * (2 * full + last));
    expect(predictGemm(p, 272, H200, 80).sharedS).toBeCloseTo(gemmSharedBytes(p, 272) / H200.sharedBytesPerS, 12);
  });
  test('a wider warp tile moves fewer shared-memory bytes a FLOP: at M = 272, 48 x 32 beats the planned 48 x 16, which is shared-memory-bound', () => {
    const shape = { n: 6144, k: 4096, dtype: 'bf16' as const };
    const r = planReduction(shape, target);
    const narrow = predictGemm(planGemm(shape, 272, target, r, { blockM: 96, warpsM: 2, stages: 4, blockN: 64 }), 272, H200, 128);
    const wide = predictGemm(planGemm(shape, 272, target, r, { blockM: 96, warpsM: 2, stages: 4, blockN: 128 }), 272, H200, 128);
    expect(wide.executedFlops).toBe(narrow.executedFlops);
    expect(wide.sharedS).toBeLessThan(0.8 * narrow.sharedS);
    expect(narrow.bound).toBe('shared');
    expect(wide.predictedS).toBeLessThan(narrow.predictedS);
    // The planner's tile (gemm-tile-choice.ts) is neither: 4 warps of 48 x 32 over 64 columns, the fastest of the candidates.
    const planned = planGemm(shape, 272, target, r);
    expect([planned.blockM, planned.blockN, planned.warpsM, planned.warpsN, planned.threads]).toEqual([96, 64, 2, 2, 128]);
    expect(predictGemm(planned, 272, H200, 122).predictedS).toBeLessThan(wide.predictedS);
  });
});
