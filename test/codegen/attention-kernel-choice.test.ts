/**
 * The compile's cost-model choice of attention kernel on a 9.0 device (issue 18 item 3,
 * src/codegen/attention-kernel-choice.ts), pure: a compile for sm_90a records on each sm_90a
 * unit the kernel the models predict faster over the reference shapes (the tune's rule: sm_90a
 * where its time over mma.sync's is below 1 on geometric mean), checked against the models' own
 * ratio; Qwen3-8B's k = 8 (288 rows a KV head, just past the ridge) keeps mma.sync while k = 16
 * and the prefill chunk take sm_90a; the emulator's compile records none (it exists to run the
 * sm_90a kernels). The GEMMs' sm_90a units the same (gemm-kernel-choice.ts): the family of the
 * least predicted sum over the unit's planned row counts; Qwen3-8B's take sm_90a, the 0.6B
 * shape's o and down keep mma.sync.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { sm90aAttentionTimes, sm90aKernelOf } from '../../src/codegen/attention-kernel-choice.js';
import { generateModel } from '../../src/codegen/generate.js';
import { sm90aGemmTimes } from '../../src/codegen/gemm-kernel-choice.js';
import { planModelGemms } from '../../src/codegen/gemm-model.js';
import { QWEN3_0_6B } from '../../src/bench/step-report.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { packageRoot } from '../../src/util/paths.js';
import { smallSpec } from '../helpers/random-model.js';

describe('the rule over per-shape time ratios', () => {
  test('geometric mean below 1 takes sm_90a, at or above 1 mma.sync', () => {
    expect(sm90aKernelOf([0.5, 2])).toEqual({ kernel: 'sm_90', ratio: 1 });
    expect(sm90aKernelOf([0.5, 1.9]).kernel).toBe('sm_90a');
    expect(sm90aKernelOf([0.25, 4, 4]).ratio).toBeCloseTo(Math.cbrt(4), 12);
  });
});

describe('a Qwen3-8B compile for sm_90a', () => {
  const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
  const out = generateModel(spec, { arches: ['sm_90', 'sm_90a'] });
  const chosen = Object.fromEntries(out.manifest.variants.filter((v) => v.sm90a).map((v) => [v.name, v.sm90a!.heuristic]));

  test('every sm_90a unit records the models\' choice and ratio', () => {
    expect(Object.keys(chosen).sort()).toEqual(['prefill_c64', 'tidar_k16', 'tidar_k8']);
    for (const [name, h] of Object.entries(chosen)) {
      const times = sm90aAttentionTimes(out.plans.find((p) => p.variant.name === name)!);
      expect(times).toHaveLength(4);  // L = 4k and 16k, batch 1 and 8
      const ratio = Math.exp(times.reduce((a, t) => a + Math.log(t.sm90aS / t.sm90S), 0) / times.length);
      expect(h, name).toEqual({ kernel: ratio < 1 ? 'sm_90a' : 'sm_90', ratio: Number(ratio.toFixed(4)) });
    }
  });

  test('every sm_90a GEMM unit records the family of the least predicted sum over its row counts: all sm_90a here', () => {
    const units = out.manifest.gemmsSm90a!;
    expect(units.length).toBe(4);  // qkv, o, gate_up, down (lm_head stays on mma.sync)
    for (const g of units) {
      const times = sm90aGemmTimes(planModelGemms(spec, spec.draftLengths, ['sm_90', 'sm_90a']).units.find((u) => `${u.name}_sm90a` === g.unit)!);
      const ratio = times.reduce((a, t) => a + t.sm90aS, 0) / times.reduce((a, t) => a + t.sm90S, 0);
      expect(g.heuristic, g.unit).toEqual({ kernel: ratio < 1 ? 'sm_90a' : 'sm_90', ratio: Number(ratio.toFixed(4)) });
      expect(g.heuristic!.kernel).toBe('sm_90a');
    }
  });

  test('k = 8, k = 16 and the prefill chunk take sm_90a (k = 8 narrowly: with the sm_90a softmax from measured SASS, sass-counts-sm90a.ts; the assumed factor gave 1.011, mma.sync)', () => {
    expect(chosen.tidar_k8!.kernel).toBe('sm_90a');
    expect(chosen.tidar_k8!.ratio).toBeGreaterThan(0.85);
    expect(chosen.tidar_k8!.ratio).toBeLessThan(1);
    expect(chosen.tidar_k16!.kernel).toBe('sm_90a');
    expect(chosen.prefill_c64!.kernel).toBe('sm_90a');
  });
});

test('the emulator\'s compile makes sm_90a units but records no choice (the arch rule runs them)', () => {
  const out = generateModel(smallSpec('choice', [8], { queryHeads: 4, kvHeads: 1, layers: 1 }), { targets: ['emulator'] });
  const units = out.manifest.variants.filter((v) => v.sm90a);
  expect(units.length).toBeGreaterThan(0);
  expect(units.filter((v) => v.sm90a!.heuristic !== undefined)).toEqual([]);
});

test('the Qwen3-0.6B shape runs every GEMM on sm_90a: each unit\'s split-K is priced on its family (gemm-unit-split.ts; o and down at 3 parts, where the mma.sync count kept them on mma.sync)', () => {
  const out = generateModel(QWEN3_0_6B, { arches: ['sm_90', 'sm_90a'] });
  expect(Object.fromEntries(out.manifest.gemmsSm90a!.map((g) => [g.roles.join('|'), g.heuristic!.kernel]))).toEqual({ qkv: 'sm_90a', o: 'sm_90a', gate_up: 'sm_90a', down: 'sm_90a' });
});
