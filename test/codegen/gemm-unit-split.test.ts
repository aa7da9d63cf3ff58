/**
 * A compile's split-K per GEMM unit (src/codegen/gemm-unit-split.ts): without sm_90a the mma.sync
 * cost model's count (planReduction); with sm_90a, each count priced on the family the unit's
 * heuristic gives it under that count, the least relative regret over the model's step rows.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { sm90aGemmHeuristic, sm90aGemmTimes } from '../../src/codegen/gemm-kernel-choice.js';
import { planModelGemms } from '../../src/codegen/gemm-model.js';
import { stepRows } from '../../src/codegen/step-rows.js';
import { gemmTarget, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { packageRoot } from '../../src/util/paths.js';

const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
const rows = stepRows(spec.draftLengths);

describe('the split-K of a compile\'s GEMM units', () => {
  test('with sm_90a: the count of least relative regret on the family the unit runs under it, and the unit then runs that family', () => {
    const arches = ['sm_90', 'sm_90a'] as const, t = gemmTarget(arches);
    const units = planModelGemms(spec, spec.draftLengths, [...arches]).units;
    let differs = 0;
    for (const u of units.filter((x) => !x.roles.includes('lm_head'))) {
      // Every count the shape may take (no part empty or under 8 k tiles), its heuristic tiles, both families' times per row.
      const kTiles = u.shape.k / 64;
      const counts = [1, 2, 3, 4].filter((s) => Math.ceil(kTiles / Math.ceil(kTiles / s)) === s && s <= kTiles / 8);
      const priced = counts.map((s) => {
        const reduction = planReduction(u.shape, t, s);
        const times = sm90aGemmTimes({ shape: u.shape, roles: u.roles, reduction, plans: rows.map((m) => planGemm(u.shape, m, t, reduction)) });
        const onSm90a = times.reduce((a, x) => a + x.sm90aS, 0) < times.reduce((a, x) => a + x.sm90S, 0);
        return { s, family: onSm90a ? 'sm_90a' : 'sm_90', times: times.map((x) => (onSm90a ? x.sm90aS : x.sm90S)) };
      });
      const regret = priced.map((p) => p.times.reduce((a, x, i) => a + x / Math.min(...priced.map((o) => o.times[i]!)), 0));
      const least = priced[regret.indexOf(Math.min(...regret))]!;
      expect(u.reduction.splitK, u.name).toBe(least.s);
      expect(sm90aGemmHeuristic(u).kernel, u.name).toBe(least.family);
      if (least.s !== planReduction(u.shape, t, undefined, { rows }).splitK) differs++;
    }
    // Some shape's count differs from the mma.sync kernels' own (Qwen3-8B qkv), or this test could not tell the two rules apart.
    expect(differs).toBeGreaterThan(0);
  });
  test('without sm_90a, and for row statistics: planReduction\'s count over the model\'s step rows', () => {
    const t = gemmTarget(['sm_80', 'sm_90']);
    for (const u of planModelGemms(spec, spec.draftLengths, ['sm_80', 'sm_90']).units) {
      expect(u.reduction, u.name).toEqual(planReduction(u.shape, t, undefined, { rowStats: u.roles.includes('lm_head'), rows }));
    }
    const withSm90a = planModelGemms(spec, spec.draftLengths, ['sm_90', 'sm_90a']).units.find((u) => u.roles.includes('lm_head'))!;
    expect(withSm90a.reduction).toEqual(planReduction(withSm90a.shape, gemmTarget(['sm_90', 'sm_90a']), undefined, { rowStats: true, rows }));
  });
});
