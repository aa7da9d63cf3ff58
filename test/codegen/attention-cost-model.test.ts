/**
 * The attention cost model's arithmetic (src/codegen/attention-cost-model.ts) on one shape worked by hand:
 * Qwen3-8B's AR step at batch 1, L = 4096, 2 CTAs per SM on the H200; and the split count and
 * roofline share move the way the model says when the occupancy or the batch changes; and no
 * shape of the written prediction is slower with the split rule than with the wave rule it replaced.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { mmaSyncRate, predictAttention, waveRuleSplits } from '../../src/codegen/attention-cost-model.js';
import { H200 } from '../../src/codegen/machine.js';
import { ARCHES } from '../../src/codegen/arch.js';
import { SPLIT_RATES } from '../../src/codegen/splits.js';
import { planAttention } from '../../src/codegen/plan.js';
import { variantsForModel } from '../../src/codegen/variant.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { packageRoot } from '../../src/util/paths.js';

const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
const plan = (name: string) => planAttention(variantsForModel({ ...spec, draftLengths: [4, 8, 16] }).find((v) => v.name === name)!, ARCHES.sm_90.tile);

describe('attention cost model', () => {
  test('AR, batch 1, L = 4096, 2 CTAs/SM: every term by hand', () => {
    const p = predictAttention(plan('ar'), { batch: 1, prefix: 4096 }, H200, 2);
    // 8 KV heads x 1 row tile = 8 CTAs a split; 64 prefix tiles: 16 splits of 4 tiles, 128 CTAs,
    // one a SM (the wave rule took 32 splits for 256 CTAs, 2 on most SMs: the same bytes, more merge).
    expect([p.splits, p.ctas]).toEqual([16, 128]);
    const kv = 2 * 8 * 4096 * 128 * 2;                     // 16,777,216 bytes of K and V
    const essential = kv + (2 * 32 + 2 * 8) * 128 * 2 + 32 * 4;  // + q, o (32 heads), k, v step (8), lse
    const partials = 16 * 32 * 129 * 4;                    // 16 splits x 32 rows x (128 + 1) floats
    const lsePartials = 16 * 32 * 4;                        // their lse words: left in L2, written back later
    expect(p.essentialBytes).toBe(essential);
    // The merge drops the partial O it read from L2 unwritten (discard.global.L2): L2 traffic only.
    expect(p.hbmBytes).toBe(essential + lsePartials);
    expect(p.l2Bytes).toBe(kv + 15 * 32 * 128 * 2 + partials);  // one row tile: the prefix once through L2; Q again for 15 splits; the partials
    expect(p.usefulFlops).toBe(4 * 128 * 32 * 4097);        // 32 rows see 4096 + 1 keys
    expect(p.executedFlops).toBe(4 * 128 * 8 * 16 * 64 * 65);  // one 16-row tile (split keys) x (64 prefix + 1 step) key tiles of 64
    const balance = 128 / 132;
    expect(p.balance).toBeCloseTo(balance, 12);
    expect(p.hbmS).toBeCloseTo((essential + lsePartials) / 4.3e12 / balance, 15);
    expect(p.mmaS).toBeCloseTo((4 * 128 * 8 * 16 * 64 * 65) / 395e12 / balance, 15);
    // The merge: every CTA (128 compute items + 16 merge-only) merges 1/16 of a row group's partials
    // (read from L2) and writes its share of O, over all 132 SMs; + the schedule's latencies
    // (SPLIT_RATES.scheduleS, 0.5 us: id draw, count-in, first poll); no launch gap.
    expect(p.mergeS).toBeCloseTo(partials / 10e12 + 32 * (256 + 4) / 4.3e12 + 0.5e-6, 15);
    // Shared memory: the 4 key warps split each K and V tile, so it is written once and read once;
    // Q (16 rows) written once a CTA and read by each of its 4 warps.
    expect(p.sharedBytes).toBe(8 * 65 * 2 * (2 * 64 * 128 * 2) + 128 * (16 + 4 * 16) * 128 * 2);
    expect(p.bound).toBe('HBM');
    expect(p.fillS).toBeCloseTo(1e-6, 15);  // one CTA a SM: one wave, one fill (splits.ts SPLIT_RATES.fillS)
    expect(p.predictedS).toBeCloseTo(p.hbmS + p.mergeS + p.fillS, 15);
    expect(p.rooflineS).toBeCloseTo(essential / 4.3e12, 15);
    expect(p.rooflineShare).toBeCloseTo(p.rooflineS / p.predictedS, 12);
    expect(p.rooflineShare).toBeGreaterThan(0.65);  // 0.77 before the fill was counted
    expect(p.rooflineShare).toBeLessThan(0.75);
  });

  test('Qwen3-8B k = 4, batch 1, L = 4k: the partials cost L2, not HBM (the merge discards them), and the step is within 1.15x of AR (1.17 while they were priced as HBM)', () => {
    const k4 = planAttention(variantsForModel({ ...spec, draftLengths: [4] }).find((v) => v.name === 'tidar_k4')!, ARCHES.sm_90.tile, [ARCHES.sm_90]);
    const s = { batch: 1, prefix: 4096 };
    const [ar, p] = [predictAttention(plan('ar'), s, H200, 3), predictAttention(k4, s, H200, 1)];
    const rows = 20 * 32;
    expect(p.hbmBytes).toBe(p.essentialBytes + p.splits * rows * 4);
    expect(p.l2Bytes).toBe(k4.rowTiles * 2 * 8 * 4096 * 128 * 2 + (p.splits - 1) * rows * 128 * 2 + p.splits * rows * 129 * 4);
    // The partials are still read back by the merge, from L2: the gap to AR is the merge and the step's tokens.
    expect(p.mergeS - ar.mergeS).toBeCloseTo((p.splits * rows - 16 * 32) * 129 * 4 / 10e12 + (rows - 32) * 260 / 4.3e12, 12);
    expect(p.predictedS / ar.predictedS).toBeLessThanOrEqual(1.15);
  });

  test('the split rule weighs the H200 the model predicts: its per-SM rates are the machine record\'s over its SMs', () => {
    expect(SPLIT_RATES.hbmBytesPerSmS * H200.sms).toBeCloseTo(H200.copyBytesPerS, 0);
    expect(SPLIT_RATES.l2BytesPerSmS * H200.sms).toBeCloseTo(H200.l2BytesPerS, 0);
    expect(SPLIT_RATES.mmaFlopsPerSmS * H200.sms).toBeCloseTo(H200.mmaSyncFlops, 0);
  });

  test('a given split count is used as is; one split has no merge', () => {
    const p = predictAttention(plan('ar'), { batch: 1, prefix: 4096 }, H200, 2, 1);
    expect([p.splits, p.ctas, p.mergeS]).toEqual([1, 8, 0]);
    expect(p.balance).toBeCloseTo(8 / 132, 12);  // 8 SMs pull the whole prefix
    expect(p.predictedS).toBeGreaterThan(10 * predictAttention(plan('ar'), { batch: 1, prefix: 4096 }, H200, 2).predictedS);
  });

  test('k = 16 on 17 row tiles of 4 warps of 16 rows is bound by shared memory: every row warp ldmatrix-reads the whole K and V tile; 5 splits at 2 CTAs/SM, 4 at 1 (whose waves do not overlap their fill)', () => {
    const p = predictAttention(plan('tidar_k16'), { batch: 1, prefix: 4096 }, H200, 2);
    expect([p.splits, p.ctas]).toEqual([5, 680]);
    // Per key tile a CTA visits: the cp.async writes of K and V (2 x 64 x 128 x 2 bytes), then 4
    // row warps each read both whole; 8 KV heads x 17 row tiles x 64 prefix tiles + the step's
    // tiles (35 a KV head: each row tile's visible step keys). Per CTA once: Q written (64 rows)
    // and read into registers by its 4 warps of 16 rows.
    const tileKv = 2 * 64 * 128 * 2;
    const visits = 8 * (17 * 64 + plan('tidar_k16').stepTileOffset[17]!);
    expect(p.sharedBytes).toBe(visits * tileKv * 5 + 680 * 2 * 64 * 128 * 2);
    expect(p.sharedS).toBeCloseTo(p.sharedBytes / (128 * 132 * 1.755e9) / p.balance, 15);
    expect(p.sharedS).toBeGreaterThan(p.mmaS);  // 0.078 bytes a FLOP: 5.5 ns a tile at 29.7 TB/s against mma.sync's 5.3
    expect(p.bound).toBe('shared');
    expect(p.predictedS).toBeCloseTo(p.sharedS + p.mergeS + p.fillS, 15);
    expect(p.l2Bytes).toBe(17 * 2 * 8 * 4096 * 128 * 2 + 4 * 272 * 32 * 128 * 2 + 5 * 272 * 32 * 129 * 4);  // the prefix once per row tile, Q again for 4 splits, the partials
    expect(predictAttention(plan('tidar_k16'), { batch: 1, prefix: 4096 }, H200, 1).splits).toBe(4);
  });

  test('the written prediction\'s shapes (AR, k = 4, 8, 16; L = 4k, 16k; batch 1, 8) at 1 to 3 CTAs/SM: none slower with the split rule than with the wave rule; k = 4 at batch 1, L = 4k takes the wave rule\'s 16 now that every CTA merges a slice', () => {
    for (const name of ['ar', 'tidar_k4', 'tidar_k8', 'tidar_k16']) {
      for (const prefix of [4096, 16384]) {
        for (const batch of [1, 8]) {
          for (const ctas of [1, 2, 3]) {
            const s = { batch, prefix };
            const wave = predictAttention(plan(name), s, H200, ctas, waveRuleSplits(plan(name), s, H200, ctas));
            expect(predictAttention(plan(name), s, H200, ctas).predictedS, `${name} L ${prefix} B ${batch}, ${ctas} CTAs/SM`).toBeLessThanOrEqual(wave.predictedS);
          }
        }
      }
    }
    const k4 = { batch: 1, prefix: 4096 };
    const [rule, wave] = [predictAttention(plan('tidar_k4'), k4, H200, 1), predictAttention(plan('tidar_k4'), k4, H200, 1, waveRuleSplits(plan('tidar_k4'), k4, H200, 1))];
    expect(wave.splits).toBe(16);
    // The merge spread over all 16 x 16 + 16 CTAs (tidarc_attention.cuh split_work) no longer
    // outweighs the splits (the last-CTA merge made the rule take 8): under a fifth of the launch
    // (a sixth while the partials were priced as HBM bytes too, which made the rest longer).
    expect(rule.splits).toBe(16);
    expect(rule.mergeS).toBeLessThan(rule.predictedS / 5);
  });

  test('32-row warps: each K/V fragment feeds two m16 tiles, so mma.sync is credited 0.5 / ((keys / 8 + 2) / (keys / 2)) of its 16-row rate', () => {
    const d64 = variantsForModel({ ...spec, headDim: 64, draftLengths: [16] }).find((v) => v.name === 'tidar_k16')!;
    const r32 = planAttention(d64, ARCHES.sm_90.tile);
    const r16 = planAttention(d64, { ...ARCHES.sm_90.tile, warpRows: 16 });
    expect([r32.rowTile.warpRows, r16.rowTile.warpRows]).toEqual([32, 16]);
    expect(mmaSyncRate(r16, H200)).toBe(395e12);
    expect(mmaSyncRate(r32, H200)).toBeCloseTo(395e12 * 0.5 / 0.3125, 3);  // 64 keys: 10 x4-loads for 32 mma, 1.6x
    expect(mmaSyncRate(planAttention(d64, { tileN: 16 }), H200)).toBeCloseTo(395e12 * 0.5 / 0.5, 3);  // 16 keys: Q's reloads eat the saving
    const a = predictAttention(r32, { batch: 8, prefix: 16384 }, H200, 1, 1);
    const b = predictAttention(r16, { batch: 8, prefix: 16384 }, H200, 1, 1);
    expect(a.mmaS).toBeLessThan(b.mmaS);
  });

  test('32-row warps re-read their Q rows from shared memory at every key tile, beside the K and V tile each row warp reads', () => {
    const k8 = planAttention(variantsForModel({ ...spec, draftLengths: [8] }).find((v) => v.name === 'tidar_k8')!, ARCHES.sm_90.tile, [ARCHES.sm_90]);
    expect([k8.rowTiles, k8.rowTile.warps, k8.rowTile.warpRows, k8.tile.tileN]).toEqual([3, 3, 32, 32]);
    const p = predictAttention(k8, { batch: 1, prefix: 4096 }, H200, 2);
    const tileKv = 2 * 32 * 128 * 2;
    const visits = 8 * (3 * 128 + k8.stepTileOffset[3]!);
    // cp.async K and V, 3 row warps read both, 96 Q rows read a tile; Q written once a CTA.
    expect(p.sharedBytes).toBe(visits * (tileKv * 4 + 96 * 128 * 2) + p.ctas * 96 * 128 * 2);
    // 0.057 bytes a FLOP: shared memory (3.04 ns a tile) just above mma.sync at 32-row warps' rate (2.99).
    expect(p.bound).toBe('shared');
    expect(p.predictedS).toBeCloseTo(p.sharedS + p.mergeS + p.fillS, 15);
  });
});
