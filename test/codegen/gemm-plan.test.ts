/**
 * The GEMM plan (src/codegen/gemm-plan.ts): the reduction order is chosen once per weight shape
 * (the cost model over the model's step rows, never per M) and every kernel of a shape keeps it; one CTA covers all rows up to 128 (weights read once per step);
 * at least 3 pipeline stages that fit every targeted arch; refusals name the field.
 */
import { describe, expect, test } from 'vitest';
import { ARCH_NAMES } from '../../src/codegen/arch.js';
import { GEMM_ARCH_DATA, GEMM_MAX_BLOCK_M, GEMM_MIN_STAGES, gemmCtasPerSm, gemmGrid, gemmTarget, gemmTileProblem, gemmUnitName, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';
import { TidarcError } from '../../src/errors.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeGemms } from '../../src/codegen/gemm-manifest.js';
import { GEMM_ROLES, type GemmRole, gemmShapeOf, planModelGemms } from '../../src/codegen/gemm-model.js';
import { stepRows } from '../../src/codegen/step-rows.js';
import { predictGemm } from '../../src/codegen/gemm-cost-model.js';
import { gemmRegisters } from '../../src/codegen/gemm-registers.js';
import { generateModel } from '../../src/codegen/generate.js';
import { H200 } from '../../src/codegen/machine.js';
import { renderGemmUnit } from '../../src/codegen/gemm-source.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { gemmSharedBytes } from '../../src/runtime/cuda/gpu-gemm.js';
import { packageRoot } from '../../src/util/paths.js';

const QWEN3_8B = { qkv: [6144, 4096], o: [4096, 4096], gate_up: [24576, 4096], down: [4096, 12288], lm_head: [151936, 4096] } as const;

describe('planReduction', () => {
  test('Qwen3-8B on sm_90: each shape takes the split-K of least summed relative regret over its step rows, by the cost model', () => {
    const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
    const rows = stepRows(spec.draftLengths);
    const t = gemmTarget(['sm_90']);
    const chosen = (target: typeof t) => Object.fromEntries(GEMM_ROLES.map((role) => {
      const shape = gemmShapeOf(spec, role);
      return [role, planReduction(shape, target, undefined, { rowStats: role === 'lm_head', rows }).splitK];
    }));
    // The minimiser, from the cost model: every count that leaves no part empty, the heuristic's tile at each M under it.
    const predicted = (role: GemmRole, s: number, m: number) => {
      const shape = gemmShapeOf(spec, role), p = planGemm(shape, m, t, planReduction(shape, t, s));
      return predictGemm(p, m, H200, gemmRegisters(p, s).registers).predictedS;
    };
    for (const role of ['qkv', 'o', 'gate_up', 'down'] as const) {
      const kTiles = gemmShapeOf(spec, role).k / 64;
      const ok = [1, 2, 3, 4].filter((s) => Math.ceil(kTiles / Math.ceil(kTiles / s)) === s && s <= kTiles / 8);  // no part empty or under 8 k tiles
      const times = ok.map((s) => rows.map((m) => predicted(role, s, m)));
      const regret = times.map((ts) => ts.reduce((sum, x, i) => sum + x / Math.min(...times.map((o) => o[i]!)), 0));
      const least = ok[regret.indexOf(Math.min(...regret))]!;
      expect(chosen(t)[role], role).toBe(least);
      // qkv: the old rule's 2 parts (192 CTAs, 1.45 waves) left it at 78% of copy at M = 72; the issue asks >= 80%.
      if (role === 'qkv') {
        const shape = gemmShapeOf(spec, role), p = planGemm(shape, 72, t, planReduction(shape, t, least));
        expect(predictGemm(p, 72, H200, gemmRegisters(p, least).registers).copyShare).toBeGreaterThanOrEqual(0.8);
      }
    }
    // lm_head's row statistics keep the wave rule: 1187 tiles of 128 columns fill the SMs unsplit.
    expect(chosen(t).lm_head).toBe(1);
    // planReduction prices the mma.sync kernels whatever the arches (64-column tiles with sm_90a too): the same parts. A compile
    // with sm_90a prices each unit on the family it runs instead (gemm-unit-split.ts, its own test).
    expect(chosen(gemmTarget(['sm_90', 'sm_90a']))).toEqual(chosen(t));
  });
  test('the split is chosen over the model\'s step rows, not the compile\'s: --variant ar and --draft 4 compile the splits of a full compile', () => {
    const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
    const splits = (variants?: string[]) => {
      const gemms = generateModel(spec, { targets: ['sm_90'], ...(variants ? { variants } : {}) }).manifest.gemms!;
      return Object.fromEntries(gemms.map((g) => [g.unit, g.splitK]));
    };
    const full = splits();
    expect(Object.keys(full)).toHaveLength(5);
    expect(splits(['ar'])).toEqual(full);
    // --draft 4: the compile plans the GEMMs of its drafts (generate.ts passes them to planModelGemms).
    expect(Object.fromEntries(planModelGemms(spec, [4], ['sm_90']).units.map((u) => [u.name, u.reduction.splitK]))).toEqual(full);
    // What a split over the compile's rows alone (AR and the prefill chunk) would be: another count for some shape, so the two
    // comparisons above can fail.
    const t = gemmTarget(['sm_90']);
    const arOnly = Object.fromEntries(GEMM_ROLES.map((role) => {
      const shape = gemmShapeOf(spec, role);
      return [gemmUnitName(shape), planReduction(shape, t, undefined, { rowStats: role === 'lm_head', rows: stepRows([]) }).splitK];
    }));
    expect(arOnly).not.toEqual(full);
  });
  test('the step rows must be positive integers, at least one', () => {
    const t = gemmTarget(['sm_90']);
    expect(() => planReduction({ n: 4096, k: 4096, dtype: 'bf16' }, t, undefined, { rows: [] })).toThrow(/\(rows = \); allowed: integers >= 1, at least one/);
    expect(() => planReduction({ n: 4096, k: 4096, dtype: 'bf16' }, t, undefined, { rows: [1, 0.5] })).toThrow(/\(rows = 1, 0.5\)/);
  });
  test('parts cover the k tiles and none is empty, for every K and split', () => {
    const t = gemmTarget(['sm_80']);
    for (let k = 8; k <= 2048; k += 8) {
      const kTiles = Math.ceil(k / 64);
      for (let s = 1; s <= kTiles; s++) {
        let r;
        try {
          r = planReduction({ n: 100, k, dtype: 'fp16' }, t, s);
        } catch (e) {
          expect((e as TidarcError).details.field).toBe('splitK');
          continue;
        }
        expect(r.splitK).toBe(s);
        expect(r.kTilesPerSplit * (r.splitK - 1)).toBeLessThan(r.kTiles);
        expect(r.kTilesPerSplit * r.splitK).toBeGreaterThanOrEqual(r.kTiles);
      }
    }
  });
  test('a split that would leave an empty part is refused with the splits that work', () => {
    // K = 256: 4 tiles; 3 parts of ceil(4 / 3) = 2 tiles are only 2 parts.
    expect(() => planReduction({ n: 64, k: 256, dtype: 'bf16' }, gemmTarget(['sm_80']), 3)).toThrow(/splitK = 3\).*allowed: 1, 2, 4/);
  });
  test('K must be whole 16-byte chunks; 16-bit weights only', () => {
    const t = gemmTarget(['sm_90']);
    expect(() => planReduction({ n: 64, k: 100, dtype: 'bf16' }, t)).toThrow(TidarcError);
    expect(() => planReduction({ n: 64, k: 100, dtype: 'bf16' }, t)).toThrow(/\(k = 100\); allowed: a multiple of 8/);
    expect(() => planReduction({ n: 64, k: 128, dtype: 'f32' as never }, t)).toThrow(/dtype = f32/);
  });
});

describe('planGemm', () => {
  test('every kernel of a shape keeps the reduction it was given, whatever M', () => {
    for (const [n, k] of Object.values(QWEN3_8B)) {
      const shape = { n, k, dtype: 'bf16' as const };
      const t = gemmTarget(['sm_80', 'sm_90']);
      const red = planReduction(shape, t);
      for (const m of [1, 2, 20, 64, 72, 128, 129, 272, 1000]) expect(planGemm(shape, m, t, red).reduction).toBe(red);
    }
  });
  test.for(ARCH_NAMES)('%s: rows covered, one CTA up to 128 rows, >= 3 stages within shared memory', (arch) => {
    const t = gemmTarget([arch]);
    const shape = { n: 4096, k: 4096, dtype: 'bf16' as const };
    const red = planReduction(shape, t);
    for (let m = 1; m <= 600; m++) {
      const p = planGemm(shape, m, t, red);
      expect(p.mBlocks * p.blockM).toBeGreaterThanOrEqual(m);
      expect(p.blockM).toBeLessThanOrEqual(GEMM_MAX_BLOCK_M);
      // Rows in 16s a warp row (gemmTilePadding): 2 warp rows cover 72 rows with 96.
      if (m <= GEMM_MAX_BLOCK_M) expect([p.mBlocks, p.blockM - m < 16 * p.warpsM]).toEqual([1, true]);
      expect(p.stages).toBeGreaterThanOrEqual(GEMM_MIN_STAGES);
      expect(p.sharedBytes).toBeLessThanOrEqual(GEMM_ARCH_DATA[arch].maxSharedPerBlock);
      expect(gemmGrid(p, m)).toEqual([p.mBlocks, 4096 / p.blockN, red.splitK]);
    }
  });
  test('small M on sm_90 gets a deep pipeline with two CTAs an SM', () => {
    const t = gemmTarget(['sm_90']);
    const shape = { n: 6144, k: 4096, dtype: 'bf16' as const };
    const p = planGemm(shape, 1, t, planReduction(shape, t));
    expect(p.stages).toBe(6);
    expect(gemmCtasPerSm({ ...p, splitK: p.reduction.splitK }, p.sharedBytes, ['sm_90'])).toBeGreaterThanOrEqual(2);
  });
  test('the stage rule asks occupancy.ts, registers too: a 128-column, 128-row tile at split-K 2 (147 registers in 2 warp rows) holds one CTA an SM, so it takes the one-CTA depth', () => {
    const t = gemmTarget(['sm_90']);
    const shape = { n: 151_936, k: 4096, dtype: 'bf16' as const };
    const [one, two] = [1, 2].map((s) => planGemm(shape, 128, t, planReduction(shape, t, s, { rowStats: true }), undefined, { rowStats: true }));
    // Shared memory alone allows two CTAs of 3 stages of 32 KB at either split-K.
    expect([one!.blockN, one!.blockM, one!.warpsM, one!.stageBytes]).toEqual([128, 128, 2, 32_768]);
    expect([one!.stages, gemmCtasPerSm({ ...one!, splitK: 1 }, one!.sharedBytes, ['sm_90'])]).toEqual([3, 2]);
    expect([two!.stages, gemmCtasPerSm({ ...two!, splitK: 2 }, 3 * two!.stageBytes, ['sm_90'])]).toEqual([4, 1]);
    expect(two!.stagesByArch.sm_90).toBe(4);
  });
  test('a multi-arch plan fits the tightest arch', () => {
    const t = gemmTarget([...ARCH_NAMES]);
    expect(t.maxSharedPerBlock).toBe(101_376);
    const shape = { n: 4096, k: 4096, dtype: 'bf16' as const };
    const p = planGemm(shape, 128, t, planReduction(shape, t));
    expect(p.sharedBytes).toBeLessThanOrEqual(101_376);
  });
  test('one compile for sm_80, sm_86 and sm_90: each arch gets the stages of its own shared memory, one reduction for all', () => {
    const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
    const { units } = planModelGemms(spec, spec.draftLengths, ['sm_80', 'sm_86', 'sm_90']);
    const alone = planModelGemms(spec, spec.draftLengths, ['sm_90']).units;
    for (const [u, only90] of units.map((u, i) => [u, alone[i]!] as const)) {
      expect(u.reduction).toEqual(planReduction(u.shape, gemmTarget(['sm_80', 'sm_86', 'sm_90'])));
      for (const [p, p90] of u.plans.map((p, i) => [p, only90.plans[i]!] as const)) {
        const by = p.stagesByArch;
        expect(p.stages, `${u.name} M=${p.m}`).toBe(by.sm_86);  // the common stages: sm_86's 99 KB
        // What an sm_90-only compile plans, on the same tile; where that is a 4-warp tile the three-arch compile takes 8 warps
        // (a 4-warp tile must fit two CTAs an SM on every target: sm_86's 100 KB do not hold two at 96 rows).
        if (p.threads === p90.threads) expect(by.sm_90, `${u.name} M=${p.m}`).toBe(p90.stages);
        else expect([p.threads, p90.threads], `${u.name} M=${p.m}`).toEqual([256, 128]);
        for (const a of ['sm_80', 'sm_86', 'sm_90'] as const) expect(p.sharedBytesByArch[a]).toBeLessThanOrEqual(GEMM_ARCH_DATA[a].maxSharedPerBlock);
      }
      // Decode steps (AR, k = 4, 8): sm_90 pipelines deeper than sm_86 (the prefill chunk of 64 rows gets 4 stages on both).
      for (const p of u.plans.filter((p) => [1, 20, 72].includes(p.m))) expect(p.stagesByArch.sm_90!, `${u.name} M=${p.m}`).toBeGreaterThan(p.stagesByArch.sm_86!);
    }
    const o = units.find((u) => u.roles.includes('o'))!;
    const source = renderGemmUnit(o.shape, o.plans, o.roles, spec.name);
    const m1 = o.plans.find((p) => p.m === 1)!;
    expect(source).toMatch(new RegExp(`#(el)?if defined\\(__CUDA_ARCH__\\) && __CUDA_ARCH__ == 900\\n  static constexpr int kStages = ${m1.stagesByArch.sm_90};`));
    expect(source).toContain(`#else\n  static constexpr int kStages = ${m1.stages};\n#endif`);
    expect(describeGemms([o]).find((g) => g.m === 1)!.launch.dynamicSharedBytesByArch).toEqual({ sm_80: m1.sharedBytesByArch.sm_80, sm_86: m1.sharedBytes, sm_90: m1.stagesByArch.sm_90! * m1.stageBytes });
  });
  test('64-column tiles except for row statistics (lm_head, per 128-column tile at every M), compiles with sm_90a too', () => {
    const shape = { n: 4096, k: 4096, dtype: 'bf16' as const };
    for (const [arches, rowStats, width] of [[['sm_90'], false, 64], [['sm_90'], true, 128], [['sm_90', 'sm_90a'], false, 64], [['sm_90', 'sm_90a'], true, 128]] as const) {
      const t = gemmTarget(arches), red = planReduction(shape, t, undefined, { rowStats });
      for (const m of [1, 20, 72, 272]) expect(planGemm(shape, m, t, red, undefined, { rowStats }).blockN, `${arches} rowStats ${rowStats} M=${m}`).toBe(width);
    }
    const t = gemmTarget(['sm_90']);
    const narrow = { blockM: 32, warpsM: 2, stages: 3, blockN: 64 };
    expect(() => planGemm(shape, 20, t, planReduction(shape, t, 2), narrow, { rowStats: true })).toThrow(/row statistics.*\(blockN = 64\); allowed: 128/);
    expect(gemmTileProblem({ ...narrow, blockN: 96 }, t)).toMatch(/blockN 96 is not 64 or 128/);
    expect(gemmTileProblem({ ...narrow, warpsM: 1 }, t)).toMatch(/not whole m16 x \(2 x n8\)/);  // 8 warps of 8 columns
  });
  test('a tuned tile keeps its stages on every arch', () => {
    const t = gemmTarget(['sm_86', 'sm_90']);
    const shape = { n: 4096, k: 4096, dtype: 'bf16' as const };
    const p = planGemm(shape, 20, t, planReduction(shape, t), { blockM: 32, warpsM: 1, stages: 3 });
    expect(p.stagesByArch).toEqual({ sm_86: 3, sm_90: 3 });
  });
});

describe('gemmSharedBytes: the launch asks for what the code the driver picks was compiled with', () => {
  const launch = { grid: [], blockM: 16, nTiles: 1, block: 256, dynamicSharedBytes: 100, dynamicSharedBytesByArch: { sm_80: 150, sm_86: 100, sm_90: 200 } };
  test.for([['sm_90', 200], ['sm_86', 100], ['sm_89', 100], ['sm_80', 150], ['sm_90a', 200]] as const)('%s -> %d bytes', ([arch, bytes]) => {
    expect(gemmSharedBytes(launch, arch)).toBe(bytes);
  });
  test('no per-arch figures (an older manifest) or no matching arch: the common stages', () => {
    expect(gemmSharedBytes({ ...launch, dynamicSharedBytesByArch: undefined }, 'sm_90')).toBe(100);
    expect(gemmSharedBytes({ ...launch, dynamicSharedBytesByArch: { sm_90: 200 } }, 'sm_86')).toBe(100);
  });
});
