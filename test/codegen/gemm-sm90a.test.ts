/**
 * The sm_90a record and the sm_90a GEMM's plan (pure): the selection rule (sm_90a kernels on a
 * compute capability 9.0 device where the compile built them, else sm_90; other devices their
 * own arch), sm_90a never a default arch, token tiles per row count, shared memory and stages
 * within sm_90's limits, the reduction taken unchanged from the sm_80 plan, and what the sm_90a
 * kernel refuses.
 */
import { describe, expect, test } from 'vitest';
import { DEFAULT_ARCHES } from '../../src/cli/commands/compile.js';
import { ARCHES, PORTABLE_ARCH_NAMES, parseArch, selectArch } from '../../src/codegen/arch.js';
import { gemmTarget, planReduction } from '../../src/codegen/gemm-plan.js';
import { SM90A_LATENCY_MARGIN, SM90A_STAGES, planSm90aKernels, renderSm90aUnit, sm90aBlockW, sm90aGrid, sm90aRefusal, sm90aRegisters, sm90aSharedBytes, sm90aThreads, sm90aTokenTile } from '../../src/codegen/gemm-sm90a.js';
import { fillRate, pipelineBytesInFlight } from '../../src/codegen/in-flight-rate.js';
import { H200 } from '../../src/codegen/machine.js';
import { occupancy } from '../../src/codegen/occupancy.js';
import { TARGETS, compileTargets } from '../../src/codegen/targets.js';
import { planBuild, stepArgs } from '../../src/codegen/build-steps.js';
import { planModelGemms } from '../../src/codegen/gemm-model.js';
import { planSm90aGemms } from '../../src/codegen/gemm-sm90a.js';
import { generateModel } from '../../src/codegen/generate.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { packageRoot } from '../../src/util/paths.js';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { parseModelJson } from '../../src/ir/model-validate.js';

describe('the sm_90a record', () => {
  test('nvcc -gencode for sm_90a with the limits of sm_90; asked for by name, never by default', () => {
    expect(parseArch('sm_90a').gencode).toBe('-gencode=arch=compute_90a,code=sm_90a');
    expect({ ...ARCHES.sm_90a, name: 'sm_90', gencode: '', specific: undefined }).toEqual({ ...ARCHES.sm_90, gencode: '', specific: undefined });
    expect(DEFAULT_ARCHES).toEqual(PORTABLE_ARCH_NAMES);
    expect(DEFAULT_ARCHES).not.toContain('sm_90a');
    expect(TARGETS.sm_90a.build).toMatchObject({ kind: 'units', tool: 'nvcc' });
    expect(TARGETS.sm_90a.build.kind === 'units' && TARGETS.sm_90a.build.flags).toContain('-gencode=arch=compute_90a,code=sm_90a');
  });

  test.for([
    ['9.0 device, compiled for sm_90 and sm_90a', ['sm_80', 'sm_90', 'sm_90a'], [9, 0], 'sm_90a'],
    ['9.0 device, compiled for sm_90a alone', ['sm_90a'], [9, 0], 'sm_90a'],
    ['9.0 device, no sm_90a in the compile', ['sm_80', 'sm_90'], [9, 0], 'sm_90'],
    ['8.0 device, sm_90a in the compile', ['sm_80', 'sm_90', 'sm_90a'], [8, 0], 'sm_80'],
    ['8.9 device, compiled for sm_80 and sm_90a', ['sm_80', 'sm_90a'], [8, 9], undefined],
    ['a 10.0 device', ['sm_90', 'sm_90a'], [10, 0], undefined],
  ] as const)('selectArch: %s', ([, compiled, cc, want]) => {
    expect(selectArch(compiled, cc)).toBe(want);
  });
});

describe('the sm_90a GEMM plan', () => {
  test('token tiles: the smallest holding M up to 256, else the tile of >= 64 padding least', () => {
    expect([1, 8, 9, 20, 72, 128, 129, 137, 256, 272, 300, 400, 520].map(sm90aTokenTile)).toEqual([8, 8, 16, 32, 128, 128, 136, 256, 256, 136, 64, 136, 136]);
    expect(() => sm90aTokenTile(0)).toThrow(/GEMM rows must be a positive integer/);
  });

  test('one kernel per distinct tile, 4 stages within sm_90a shared memory; 64 weight rows and 160 threads up to 128 tokens, 128 and 288 past it; the grid covers the tokens', () => {
    const shape = { n: 6144, k: 4096, dtype: 'bf16' as const };
    const kernels = planSm90aKernels(shape, [1, 20, 72, 272, 8]);
    expect(kernels.map((k) => [k.tileT, k.blockW, k.stages, k.threads])).toEqual([[8, 64, 4, 160], [32, 64, 4, 160], [128, 64, 4, 160], [136, 128, 4, 288]]);
    expect(planSm90aKernels(shape, [8])[0]!.sharedBytes).toBe(1024 + SM90A_STAGES * (64 + 8) * 128 + 72);
    for (const t of [8, 16, 32, 64, 128, 136, 256]) expect(planSm90aKernels(shape, [t])[0]!.sharedBytes).toBeLessThanOrEqual(ARCHES.sm_90a.maxSharedPerBlock);
    expect(planSm90aKernels(shape, [256])[0]!.sharedBytes).toBe(1024 + SM90A_STAGES * (128 + 256) * 128 + 72);
    const red = planReduction(shape, gemmTarget(['sm_90a']));
    expect(red).toEqual(planReduction(shape, gemmTarget(['sm_90'])));
    expect(sm90aGrid(shape, red, { tileT: 64, blockW: 64 }, 272)).toEqual([5, 96, red.splitK]);
    expect(sm90aGrid(shape, red, kernels[3]!, 272)).toEqual([2, 48, red.splitK]);  // M = 272: two 136-token CTAs a weight tile
    expect(sm90aGrid(shape, red, kernels[2]!, 72)).toEqual([1, 96, red.splitK]);
  });

  test('the unit names its reduction once and a kernel per tile; lm_head row statistics are refused at every split-K', () => {
    const shape = { n: 200, k: 520, dtype: 'fp16' as const };
    const red = planReduction(shape, gemmTarget(['sm_90a']), 3);
    const src = renderSm90aUnit(shape, red, planSm90aKernels(shape, [1, 72]), ['o'], 'm');
    expect(src).toContain('static constexpr int kSplitK = 3;');
    expect(src.match(/extern "C" __global__/g)).toHaveLength(2);  // t8, t128: split-K is summed inside their launch, no reduce kernel
    expect(src).toContain('tidarc_gemm_fp16_n200_k520_sm90a_t128(const __grid_constant__ TidarcGemmSm90aArgs args)');
    expect(src.match(/static constexpr int kConsumers = \d;/g)).toEqual(['static constexpr int kConsumers = 1;', 'static constexpr int kConsumers = 1;']);
    expect(renderSm90aUnit(shape, red, planSm90aKernels(shape, [272]), ['o'], 'm')).toContain('static constexpr int kConsumers = 2;');
    expect(sm90aRefusal(shape, ['lm_head'], planReduction(shape, gemmTarget(['sm_90a']), 1))).toMatch(/row statistics are not in the sm_90a epilogue/);
    expect(sm90aRefusal(shape, ['lm_head'], planReduction(shape, gemmTarget(['sm_90a']), 2))).toMatch(/row statistics are not in the sm_90a epilogue/);
    expect(sm90aRefusal(shape, ['gate_up'], planReduction(shape, gemmTarget(['sm_90a']), 1))).toBeNull();
  });
});

describe('the ring depth of an sm_90a kernel (sm90aStages)', () => {
  const O = { n: 4096, k: 4096, dtype: 'bf16' as const };  // Qwen3-8B o_proj: 2-part split-K
  const red = planReduction(O, gemmTarget(['sm_90', 'sm_90a']), 2);
  const sized = { ...H200, hbmLatencyS: H200.hbmLatencyS * SM90A_LATENCY_MARGIN };
  const pulled = (m: number, stages: number, machine = sized) => {
    const tileT = sm90aTokenTile(m), blockW = sm90aBlockW(tileT);
    const perSm = occupancy(H200.arch, { registers: sm90aRegisters(tileT, red.splitK), sharedBytes: sm90aSharedBytes(tileT, stages, blockW), threads: sm90aThreads(blockW) }).ctasPerSm;
    return fillRate(machine, { bytesPerCta: pipelineBytesInFlight(stages, blockW * 64 * 2), ctas: sm90aGrid(O, red, { tileT, blockW }, m).reduce((a, b) => a * b), ctasPerSm: perSm });
  };

  test('o at M = 72 (128 CTAs of 64 weight rows): 4 stages fill HBM at 700 ns but not at the 1050 ns the ring is sized for; the chosen depth does, the one below it does not', () => {
    expect(pulled(72, SM90A_STAGES, H200).underFilled).toBe(false);
    expect(pulled(72, SM90A_STAGES).underFilled).toBe(true);
    const [k] = planSm90aKernels(O, [72], red);
    expect(k!.stages).toBe(6);
    expect(pulled(72, k!.stages).underFilled).toBe(false);
    expect(pulled(72, k!.stages - 1).underFilled).toBe(true);
    expect(k!.sharedBytes).toBe(sm90aSharedBytes(128, 6, 64));
    expect(k!.sharedBytes).toBeGreaterThan(sm90aSharedBytes(128, SM90A_STAGES, 64));
  });

  test('a kernel whose launches fill HBM at the margin keeps 4 stages (o at M = 272: 128 CTAs of 128 weight rows)', () => {
    expect(pulled(272, SM90A_STAGES).underFilled).toBe(false);
    expect(planSm90aKernels(O, [272], red)[0]!.stages).toBe(SM90A_STAGES);
  });

  test('capped by the block\'s shared memory: a depth one deeper would not fit', () => {
    const down = { n: 1024, k: 3072, dtype: 'bf16' as const };  // Qwen3-0.6B's down: 4-part split-K, 64 CTAs at M = 72
    const r = planReduction(down, gemmTarget(['sm_90', 'sm_90a']), 4);
    const [k] = planSm90aKernels(down, [72], r);
    expect(k!.stages).toBeGreaterThan(SM90A_STAGES);
    expect(k!.sharedBytes).toBeLessThanOrEqual(ARCHES.sm_90a.maxSharedPerBlock);
    expect(sm90aSharedBytes(128, k!.stages + 1, 64)).toBeGreaterThan(ARCHES.sm_90a.maxSharedPerBlock);
  });

  test('capped by the occupancy the unit needs: gate_up at M = 72 (384 CTAs, 90 registers) holds 2 CTAs an SM at 4 stages and fills HBM with them; qkv at M = 1 (384 CTAs of the 8-token tile) needs 3 of the 5 it holds', () => {
    const GU = { n: 24576, k: 4096, dtype: 'bf16' as const };
    const gu = planReduction(GU, gemmTarget(['sm_90', 'sm_90a']), 1);
    const [k] = planSm90aKernels(GU, [72], gu);
    expect(k!.stages).toBe(SM90A_STAGES);
    expect(occupancy(H200.arch, { registers: sm90aRegisters(128, 1), sharedBytes: k!.sharedBytes, threads: k!.threads }).ctasPerSm).toBe(2);
    expect(occupancy(H200.arch, { registers: sm90aRegisters(128, 1), sharedBytes: sm90aSharedBytes(128, 6, 64), threads: k!.threads }).ctasPerSm).toBe(1);
    const QKV = { n: 6144, k: 4096, dtype: 'bf16' as const };
    expect(planSm90aKernels(QKV, [1], planReduction(QKV, gemmTarget(['sm_90', 'sm_90a']), 4))[0]!.stages).toBe(SM90A_STAGES);
  });

  test('a launch too small to use its resident CTAs may trade them for depth: o at M = 1 (128 CTAs, 1 an SM needed) takes 6 stages though 6 hold fewer 8-token CTAs an SM than 4', () => {
    const [k] = planSm90aKernels(O, [1], red);
    expect(k!.stages).toBe(6);
    const at = (stages: number) => occupancy(H200.arch, { registers: sm90aRegisters(8, 2), sharedBytes: sm90aSharedBytes(8, stages, 64), threads: k!.threads }).ctasPerSm;
    expect(at(6)).toBeLessThan(at(SM90A_STAGES));
  });

  test('never deeper than the k tiles a CTA sums', () => {
    const short = { n: 256, k: 320, dtype: 'bf16' as const };  // 5 k tiles, 4 CTAs: far from filling HBM
    const [k] = planSm90aKernels(short, [1], planReduction(short, gemmTarget(['sm_90a']), 1));
    expect(k!.stages).toBe(5);
  });

  test('a compile records each kernel\'s depth in the manifest, with the shared memory it launches with, and renders it', () => {
    const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
    const out = generateModel(spec, { arches: ['sm_90', 'sm_90a'] });
    const o = out.manifest.gemmsSm90a!.find((g) => g.roles.includes('o'))!;
    const t128 = o.kernels.find((k) => k.tileT === 128)!;
    expect(t128).toMatchObject({ stages: 6, sharedBytes: sm90aSharedBytes(128, 6, 64) });
    for (const k of o.kernels) expect(k.sharedBytes).toBe(sm90aSharedBytes(k.tileT, k.stages, k.blockW));
    expect(out.files.get(o.source)).toMatch(/struct ConfigT128 : Reduction \{\n  static constexpr int kTileT = 128;\n  static constexpr int kConsumers = 1;\n  static constexpr int kStages = 6;/);
  });
});

describe('a compile with sm_90a', () => {
  test('an sm_90a unit per GEMM unit, the same reduction and roles; built for sm_90a alone, and only when the compile targets it', async () => {
    const spec = await loadModelSpecFile(join(packageRoot(), 'examples', 'tiny.json'));
    const { units } = planModelGemms(spec, spec.draftLengths, ['sm_90', 'sm_90a']);
    const sm90a = planSm90aGemms(units, spec.name);
    expect(sm90a.gemms.length + sm90a.refusals.length).toBe(units.length);
    for (const g of sm90a.gemms) {
      const u = units.find((x) => `${x.name}_sm90a` === g.unit)!;
      expect([g.splitK, g.roles, g.arch]).toEqual([u.reduction.splitK, u.roles, 'sm_90a']);
      expect(sm90a.sources.get(g.source)).toContain(`static constexpr int kKTilesPerSplit = ${u.reduction.kTilesPerSplit};`);
    }
    for (const r of sm90a.refusals) expect(r.reason).toMatch(/row statistics are not in the sm_90a epilogue/);
    const manifest = { variants: [], gemms: [], gemmsSm90a: sm90a.gemms };
    const steps = planBuild(compileTargets({ arches: ['sm_90', 'sm_90a'] }), manifest, []).cuda!.steps;
    const unitSteps = steps.filter((s) => s.unit.endsWith('_sm90a'));
    expect(unitSteps.length).toBe(sm90a.gemms.length);
    for (const s of unitSteps) expect(stepArgs(s).filter((a) => a.startsWith('-gencode'))).toEqual(['-gencode=arch=compute_90a,code=sm_90a']);
    const without = planBuild(compileTargets({ arches: ['sm_90'] }), manifest, []).cuda!.steps;
    expect(without.some((s) => s.unit.endsWith('_sm90a'))).toBe(false);
  });
});

describe('generateModel with sm_90a', () => {
  test('--arch sm_90,sm_90a: the manifest names the sm_90a units, their sources and headers are emitted and CMake builds them for sm_90a; without sm_90a nothing of it', async () => {
    const spec = await loadModelSpecFile(join(packageRoot(), 'examples', 'tiny.json'));
    const out = generateModel(spec, { arches: ['sm_90', 'sm_90a'] });
    const units = out.manifest.gemmsSm90a ?? [];
    expect(units.length).toBeGreaterThan(0);
    for (const u of units) expect(out.files.has(u.source)).toBe(true);
    for (const h of ['cuda/tidarc_gemm_sm90a.cuh', 'cuda/tidarc_gemm_sm90a_abi.h', 'cuda/tidarc_hopper.cuh']) expect(out.files.has(h)).toBe(true);
    expect(out.files.get('CMakeLists.txt')).toContain(units[0]!.source);
    const plain = generateModel(spec, { arches: ['sm_90'] });
    expect(plain.manifest.gemmsSm90a).toBeUndefined();
    expect([...plain.files.keys()].some((f) => f.includes('sm90a'))).toBe(false);
  });
});
