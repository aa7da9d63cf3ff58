/**
 * The sm_90a attention's cost model (src/codegen/attention-sm90a-cost-model.ts), pure: its FLOP
 * counts follow the plan (useful: 4 D per visible (row, key) pair; executed: whole 128-row tiles
 * against every key tile they visit), the wgmma term is the executed FLOPs at the matmul rate,
 * without a split count given it takes the one of least predicted time, and the softmax term
 * follows the plan's schedule (ping-pong: what outlasts the wgmmas plus the loop's two ends), from
 * the plan's measured SASS row (sass-counts-sm90a.ts).
 */
import { describe, expect, test } from 'vitest';
import { H200 } from '../../src/codegen/machine.js';
import { predictAttentionSm90a, sm90aSoftmaxCycles } from '../../src/codegen/attention-sm90a-cost-model.js';
import { sm90aLoopCounts } from '../../src/codegen/sass-counts-sm90a.js';
import { planAttentionSm90a } from '../../src/codegen/attention-sm90a.js';
import { prefillChunkVariant, tidarDecodeVariant } from '../../src/codegen/variant.js';

const QWEN3 = { dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 } as const;

describe('the sm_90a attention cost model', () => {
  test('the prefill chunk at L = 4096, batch 1: FLOPs from the plan, wgmma time at the matmul rate', () => {
    const plan = planAttentionSm90a(prefillChunkVariant(QWEN3));
    const p = predictAttentionSm90a(plan, { batch: 1, prefix: 4096 }, H200, 164, 1);
    // Useful: 32 heads x (64 rows x 4096 prefix keys + 64 x 65 / 2 causal pairs) x 4 x 128.
    expect(p.usefulFlops).toBe(4 * 128 * 32 * (64 * 4096 + (64 * 65) / 2));
    // Executed: 8 KV heads x 2 tiles of 128 rows x (64 prefix tiles + 1 in-step tile) x 64 keys x 4 x 128.
    expect(p.executedFlops).toBe(4 * 128 * 8 * 128 * (2 * 64 * 64 + plan.stepTileKey.length * 64));
    expect(p.wgmmaS).toBeCloseTo(p.executedFlops / H200.matmulFlops, 15);
    expect({ splits: p.splits, ctas: p.ctas, bound: p.bound }).toEqual({ splits: 1, ctas: 16, bound: 'wgmma' });
  });

  test('the split count of least predicted time: k = 16 at batch 1 fills the SMs (72 row groups, 1 CTA an SM)', () => {
    const plan = planAttentionSm90a(tidarDecodeVariant(16, QWEN3));
    const best = predictAttentionSm90a(plan, { batch: 1, prefix: 4096 }, H200, 151);
    for (let s = 1; s <= 32; s++) expect(best.predictedS).toBeLessThanOrEqual(predictAttentionSm90a(plan, { batch: 1, prefix: 4096 }, H200, 151, s).predictedS);
    expect(best.splits).toBeGreaterThan(1);
  });

  test('CTAs an SM by occupancy.ts: at head dim 64, 106 registers (ptxas) over 9 warps hold 1 CTA (3 warps a sub-partition), not 2', () => {
    const plan = planAttentionSm90a(tidarDecodeVariant(16, { ...QWEN3, headDim: 64 }));
    expect(plan.threads).toBe(288);
    expect(predictAttentionSm90a(plan, { batch: 1, prefix: 4096 }, H200, 106, 4).ctasPerSm).toBe(1);
  });

  test('the softmax not hidden: ping-pong (2 consumers) leaves what outlasts the wgmmas and one tile a warpgroup at the loop\'s ends; without it, what outlasts P V, halved', () => {
    const plan = planAttentionSm90a(tidarDecodeVariant(16, QWEN3));
    expect(plan.pingPong).toBe(true);
    expect(planAttentionSm90a(tidarDecodeVariant(16, QWEN3), 1).pingPong).toBe(false);
    const call = { batch: 1, prefix: 4096 };
    const p = predictAttentionSm90a(plan, call, H200, 138, 4);
    // The measured SASS row's non-tensor cycles a warpgroup tile (sass-counts-sm90a.ts), each 64 x 64 tile of a warpgroup, at the SM clock.
    const raw = (sm90aSoftmaxCycles(sm90aLoopCounts(plan)!).cycles * p.executedFlops) / (4 * 128 * 64 * 64) / (H200.smClockHz * H200.sms);
    // 4 splits of 64 prefix tiles: 16 a CTA, plus the row tile's in-step tiles on the last split.
    const tilesPerCta = (9 * 64 + plan.stepTileKey.length) / (9 * 4);
    expect(p.softmaxS).toBeCloseTo(Math.max(0, raw - p.wgmmaS) + raw / tilesPerCta, 12);
    const before = predictAttentionSm90a({ ...plan, pingPong: false }, call, H200, 138, 4);
    const rawNoPp = (sm90aSoftmaxCycles(sm90aLoopCounts({ ...plan, pingPong: false })!).cycles * p.executedFlops) / (4 * 128 * 64 * 64) / (H200.smClockHz * H200.sms);  // its own row
    expect(before.softmaxS).toBeCloseTo(Math.max(0, rawNoPp - p.wgmmaS / 2) * 0.5, 12);
    const others = (x: typeof p) => [x.wgmmaS, x.hbmS, x.l2S, x.mergeS, x.fillS, x.balance];
    expect(others(p)).toEqual(others(before));  // no other term moves
    expect(p.predictedS).toBeLessThan(before.predictedS);
  });
});
