/**
 * The attention cost model's arithmetic (src/bench/attention-cost-model.ts) on one shape worked by hand:
 * Qwen3-8B's AR step at batch 1, L = 4096, 2 CTAs per SM on the H200; and the split count and
 * roofline share move the way the model says when the occupancy or the batch changes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { H200, predictAttention } from '../../src/bench/attention-cost-model.js';
import { ARCHES } from '../../src/codegen/arch.js';
import { planAttention } from '../../src/codegen/plan.js';
import { variantsForModel } from '../../src/codegen/variant.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { packageRoot } from '../../src/util/paths.js';

const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
const plan = (name: string) => planAttention(variantsForModel({ ...spec, draftLengths: [4, 16] }).find((v) => v.name === name)!, ARCHES.sm_90.tile);

describe('attention cost model', () => {
  test('AR, batch 1, L = 4096, 2 CTAs/SM: every term by hand', () => {
    const p = predictAttention(plan('ar'), { batch: 1, prefix: 4096 }, H200, 2);
    // 8 KV heads x 1 row tile = 8 CTAs a split; 64 prefix tiles; 264 slots: 32 splits of 2 tiles, 256 CTAs.
    expect([p.splits, p.ctas]).toEqual([32, 256]);
    const kv = 2 * 8 * 4096 * 128 * 2;                     // 16,777,216 bytes of K and V
    const essential = kv + (2 * 32 + 2 * 8) * 128 * 2 + 32 * 4;  // + q, o (32 heads), k, v step (8), lse
    const partials = 32 * 32 * 129 * 4;                    // 32 splits x 32 rows x (128 + 1) floats
    expect(p.essentialBytes).toBe(essential);
    expect(p.hbmBytes).toBe(essential + partials);
    expect(p.l2Bytes).toBe(kv);                              // one row tile: the prefix once through L2
    expect(p.usefulFlops).toBe(4 * 128 * 32 * 4097);        // 32 rows see 4096 + 1 keys
    expect(p.executedFlops).toBe(4 * 128 * 8 * 16 * 64 * 65);  // one 16-row tile (split keys) x (64 prefix + 1 step) key tiles of 64
    const balance = (256 / 132) / 2;
    expect(p.balance).toBeCloseTo(balance, 12);
    expect(p.hbmS).toBeCloseTo((essential + partials) / 4.3e12 / balance, 15);
    expect(p.mmaS).toBeCloseTo((4 * 128 * 8 * 16 * 64 * 65) / 395e12 / balance, 15);
    // The merge: the 8 row groups' last CTAs read the partials (from L2) and write O, on 8 of 132 SMs; no launch gap.
    expect(p.mergeS).toBeCloseTo((partials / 10e12 + 32 * (256 + 4) / 4.3e12) / (8 / 132), 15);
    expect(p.bound).toBe('HBM');
    expect(p.predictedS).toBeCloseTo(p.hbmS + p.mergeS, 15);
    expect(p.rooflineS).toBeCloseTo(essential / 4.3e12, 15);
    expect(p.rooflineShare).toBeCloseTo(p.rooflineS / p.predictedS, 12);
    expect(p.rooflineShare).toBeGreaterThan(0.75);  // 0.6 to 0.65 with the combine's second launch
    expect(p.rooflineShare).toBeLessThan(0.8);
  });

  test('a given split count is used as is; one split has no merge', () => {
    const p = predictAttention(plan('ar'), { batch: 1, prefix: 4096 }, H200, 2, 1);
    expect([p.splits, p.ctas, p.mergeS]).toEqual([1, 8, 0]);
    expect(p.balance).toBeCloseTo(8 / 132, 12);  // 8 SMs pull the whole prefix
    expect(p.predictedS).toBeGreaterThan(10 * predictAttention(plan('ar'), { batch: 1, prefix: 4096 }, H200, 2).predictedS);
  });

  test('k = 16 is bound by mma.sync: 17 row tiles of 64 for 1088 rows, 5 splits at 2 CTAs/SM, none at 1', () => {
    const p = predictAttention(plan('tidar_k16'), { batch: 1, prefix: 4096 }, H200, 2);
    expect(p.bound).toBe('mma');
    expect([p.splits, p.ctas]).toEqual([5, 680]);
    expect(p.l2Bytes).toBe(17 * 2 * 8 * 4096 * 128 * 2);  // the prefix once per row tile
    expect(predictAttention(plan('tidar_k16'), { batch: 1, prefix: 4096 }, H200, 1).splits).toBe(1);
  });
});
