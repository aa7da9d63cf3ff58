/**
 * The planner's mma.sync tile per (weight shape, M), chosen by the GEMM cost model
 * (src/codegen/gemm-tile-choice.ts, gemm-plan.ts heuristicScore): at the shared-memory-bound M
 * it takes the wider warp tiles (4 warps of 48 x 32 over 64 columns) over the 48 x 16 of
 * 2 x 4 warps; where the model sees no difference it keeps the first candidate; every planned
 * tile has ptxas's registers; the reduction stays the shape's at every M. The split-K rule
 * over a shape's row counts (leastRegretSplit) is here too; gemm-plan.test checks what it picks.
 */
import { describe, expect, test } from 'vitest';
import { type GemmRole, gemmShapeOf, planModelGemms } from '../../src/codegen/gemm-model.js';
import { predictGemm } from '../../src/codegen/gemm-cost-model.js';
import { GEMM_TILE_TOLERANCE, chooseGemmTile, leastRegretSplit, scoreGemmTiles, splitMachine } from '../../src/codegen/gemm-tile-choice.js';
import { gemmRegisters } from '../../src/codegen/gemm-registers.js';
import { gemmTarget, gemmTileName, gemmTileProblem, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';
import { H200 } from '../../src/codegen/machine.js';
import type { ModelSpec } from '../../src/ir/model.js';

const QWEN3_8B = {
  name: 'qwen3-8b', family: 'qwen3', layers: 36, hiddenSize: 4096, queryHeads: 32, kvHeads: 8, headDim: 128, intermediateSize: 12288,
  vocabSize: 151936, ropeTheta: 1e6, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: false, dtype: 'bf16', maskTokenId: 151662, draftLengths: [4, 8, 16],
} as ModelSpec;
const ROLES: readonly GemmRole[] = ['qkv', 'o', 'gate_up', 'down', 'lm_head'];
const target = gemmTarget(['sm_90']);
/** The tile every M had before the choice: 64 columns in 2 x 4 warps (48 x 16 at 96 rows). */
const OLD_72 = { blockM: 96, warpsM: 2, stages: 5, blockN: 64 } as const;

const planned = (role: GemmRole, m: number) => {
  const shape = gemmShapeOf(QWEN3_8B, role), opts = { rowStats: role === 'lm_head' };
  const reduction = planReduction(shape, target, undefined, opts);
  return { shape, reduction, plan: planGemm(shape, m, target, reduction, undefined, opts) };
};
const predicted = (p: ReturnType<typeof planned>['plan'], m: number) => predictGemm(p, m, H200, gemmRegisters(p, p.reduction.splitK).registers);

describe('the mma.sync tile chosen per M by the cost model', () => {
  test('Qwen3-8B at M = 72 and 272: the four layer GEMMs take 4 warps of 48 x 32 over 64 columns, faster than the 2 x 4 warps of 48 x 16', () => {
    for (const role of ['qkv', 'o', 'gate_up', 'down'] as const) {
      for (const m of [72, 272]) {
        const { shape, reduction, plan } = planned(role, m);
        expect([plan.blockM, plan.blockN, plan.warpsM, plan.warpsN, plan.threads], `${role} M=${m}`).toEqual([96, 64, 2, 2, 128]);
        const old = planGemm(shape, m, target, reduction, OLD_72);
        expect(predicted(plan, m).sharedBytes, `${role} M=${m}`).toBeLessThan(0.8 * predicted(old, m).sharedBytes);
        expect(predicted(plan, m).predictedS, `${role} M=${m}`).toBeLessThan(0.9 * predicted(old, m).predictedS);
      }
    }
  });
  test('every M <= 72 of the four layer GEMMs and lm_head reaches 80% of the copy rate under the model (qkv at 72: 4 parts)', () => {
    const share = (role: GemmRole, m: number) => {
      const p = planned(role, m).plan;
      return predictGemm(p, m, H200, gemmRegisters(p, p.reduction.splitK).registers, { accumulate: role === 'o' || role === 'down', epilogue: role === 'gate_up' ? 'swiglu' : role === 'lm_head' ? 'rowStats' : 'none' }).copyShare;
    };
    for (const role of ROLES) for (const m of [1, 20, 72]) expect(share(role, m), `${role} M=${m}`).toBeGreaterThanOrEqual(0.8);
  });
  test('HBM-bound M = 1 keeps the first candidate (8 warps, 64 columns): within the tolerance nothing is faster', () => {
    for (const role of ['qkv', 'o', 'gate_up', 'down'] as const) expect(gemmTileName(planned(role, 1).plan), role).toBe('b32w2s6n64');
    expect(gemmTileName(planned('lm_head', 1).plan)).toBe('b16w1s6');
  });
  test('the rule: the least predicted time wins, unless an earlier candidate is within the tolerance', () => {
    const { shape, reduction } = planned('gate_up', 72);
    const a = planGemm(shape, 72, target, reduction, OLD_72), b = planGemm(shape, 72, target, reduction, { ...OLD_72, warps: 4 });
    const [sa, sb] = scoreGemmTiles([a, b], 72);
    expect(sb!.predictedS).toBeLessThan(sa!.predictedS / (1 + GEMM_TILE_TOLERANCE));
    expect(chooseGemmTile([a, b], 72).plan).toBe(b);
    expect(chooseGemmTile([b, a], 72).plan).toBe(b);
    // Equal times: the first.
    expect(chooseGemmTile([a, a], 72).plan).toBe(a);
  });
  test('every planned tile of Qwen3-8B (sm_80 + sm_86 + sm_90, and sm_90) has ptxas\'s registers, none spilled, and the shape\'s reduction', () => {
    for (const arches of [['sm_80', 'sm_86', 'sm_90'], ['sm_90']] as const) {
      for (const u of planModelGemms(QWEN3_8B, QWEN3_8B.draftLengths, [...arches]).units) {
        for (const p of u.plans) {
          const r = gemmRegisters(p, u.reduction.splitK);
          expect([r.measured, r.spills], `${arches} ${u.name} M=${p.m} ${gemmTileName(p)}`).toEqual([true, false]);
          expect(p.reduction).toBe(u.reduction);
        }
      }
    }
  });
  test('the split-K rule: least summed relative regret over the row counts (not least summed time), ties to fewer parts', () => {
    // Summed time would take 2 parts (10.4 < 12: the large M decides); relative regret takes 1 (3.25 < 3.4): two rows 20% slower outweigh one 25% faster.
    expect(leastRegretSplit(new Map([[1, [1, 1, 10]], [2, [1.2, 1.2, 8]]]))).toBe(1);
    expect(leastRegretSplit(new Map([[1, [1, 1, 10]], [2, [1.05, 1.05, 8]]]))).toBe(2);
    // Equal regret (1 + 2 and 2 + 1): the fewer parts, whatever the map's order.
    expect(leastRegretSplit(new Map([[4, [2, 1]], [2, [1, 2]]]))).toBe(2);
    expect(leastRegretSplit(new Map([[3, [5]]]))).toBe(3);
  });
  test('the split is priced on the H200, or on its rates over the target\'s SMs where it counts others (a portable compile: sm_89\'s 142)', () => {
    expect(splitMachine(132)).toBe(H200);
    const wide = splitMachine(142);
    expect({ ...wide, name: H200.name, sms: H200.sms, sharedBytesPerS: H200.sharedBytesPerS }).toEqual(H200);
    expect([wide.sms, wide.sharedBytesPerS / wide.sms]).toEqual([142, H200.sharedBytesPerS / H200.sms]);
    expect(gemmTarget(['sm_80', 'sm_86', 'sm_89', 'sm_90']).sms).toBe(142);
  });
  test('a tile names 8 or 4 warps; 4 warps are named t128 in a search symbol', () => {
    expect(gemmTileProblem({ blockM: 32, warpsM: 1, stages: 3, warps: 2 }, target)).toMatch(/2 warps is not 8 or 4/);
    expect(gemmTileProblem({ blockM: 32, warpsM: 1, stages: 3, blockN: 64, warps: 4 }, target)).toBeNull();
    expect(gemmTileName({ blockM: 96, warpsM: 2, stages: 4, blockN: 64, warps: 4 })).toBe('b96w2s4n64t128');
    expect(gemmTileName({ blockM: 96, warpsM: 2, stages: 4, blockN: 64 })).toBe('b96w2s4n64');
  });
});
