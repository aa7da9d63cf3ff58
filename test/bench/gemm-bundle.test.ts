/**
 * The device check's GEMM part (issue 14) without a GPU: the bundle (src/bench/gemm-bundle.ts:
 * the Qwen3-8B weight shapes at M = 1, 20, 72, 272 with the cost model's predictions), the
 * check's GEMM correctness and bitwise invariance in --dry-run on the emulated CUDA driver
 * (scripts/device-check/gemm.py: the same launch packing and reference as on a GPU; a wrong
 * launch geometry must fail it), and the report's GEMM table and goals on sample timings.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { prepareDeviceBundle } from '../../src/bench/device-bundle.js';
import { type BundleGemm, DRY_RUN_GEMM, FULL_GEMM, prepareGemmBundle } from '../../src/bench/gemm-bundle.js';
import { findCxx } from '../../src/build/toolchain.js';
import { buildEmulatedModule, emulatedModulePath } from '../../src/emulate/emulated-driver.js';
import { GEMM, GEMM_NO_NORM, packStruct } from '../../src/runtime/cuda/op-abi.js';
import { gemmTarget, gemmTileName } from '../../src/codegen/gemm-plan.js';
import { GEMM_SEARCH_SPACE, chooseGemmKernel, gemmHeuristic, gemmReductionSpace, gemmTileInfeasible } from '../../src/tune/gemm-space.js';
import { gemmEntryKey, parseTuneDb } from '../../src/tune/db.js';
import { tuningOfEntry } from '../../src/tune/gemm-tuned.js';
import { checkGemmTuning, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';
import { predictGemm } from '../../src/codegen/gemm-cost-model.js';
import { gemmEpilogues } from '../../src/codegen/gemm-epilogue.js';
import type { GemmRole } from '../../src/codegen/gemm-model.js';
import { gemmRegisters } from '../../src/codegen/gemm-registers.js';
import { H200 } from '../../src/codegen/machine.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';
import { planModelGemms } from '../../src/codegen/gemm-model.js';
import { sm90aGemmHeuristic } from '../../src/codegen/gemm-kernel-choice.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { packageRoot } from '../../src/util/paths.js';

const exec = promisify(execFile);
const SCRIPTS = resolve('scripts/device-check');
const cxx = await findCxx();
const numpy = await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-gemm-bundle-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Every module `entry` loads, following relative imports (.js specifiers name .ts sources), as paths relative to the repository. */
function importClosure(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    const rel = relative(resolve('.'), file);
    if (seen.has(rel)) return;
    seen.add(rel);
    for (const [, spec] of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) visit(resolve(dirname(file), spec!.replace(/\.js$/, '.ts')));
  };
  visit(resolve(entry));
  return [...seen].sort();
}

describe('what the package ships', () => {
  test('the GEMM bundle imports nothing outside src/ (package.json ships dist/src, not bench/)', () => {
    const files = (JSON.parse(readFileSync('package.json', 'utf8')) as { files: string[] }).files;
    expect(files).toContain('dist/src/');
    expect(files.some((f) => f.startsWith('bench'))).toBe(false);
    const closure = importClosure('src/bench/gemm-bundle.ts');
    expect(closure).toContain('src/bench/gemm-cost-model.ts');
    expect(closure.filter((f) => !f.startsWith('src/'))).toEqual([]);
  });
});

describe('the GEMM bundle of the device check', () => {
  let full: BundleGemm;
  beforeAll(async () => {
    full = await prepareGemmBundle(join(root, 'full'), FULL_GEMM);
  });
  test('Qwen3-8B: five weight shapes, a kernel per M in 1, 20, 72, 272, sources written, predictions attached', () => {
    expect(full.units.map((u) => [u.role, u.n, u.k, u.splitK])).toEqual([
      ['qkv', 6144, 4096, 4], ['o', 4096, 4096, 2], ['gate_up', 24576, 4096, 1], ['down', 4096, 12288, 2], ['lm_head', 151936, 4096, 1],
    ]);
    for (const u of full.units) {
      expect(u.kernels.map((k) => k.m)).toEqual([1, 20, 72, 272]);
      expect(existsSync(join(root, 'full', u.cu))).toBe(true);
      expect(Boolean(u.splitCounters)).toBe(u.splitK > 1);
      for (const k of u.kernels) expect(k.predictedUs).toBeGreaterThan(0);
    }
    // Weight-bound at M = 1: gate_up's 201 MB at the copy rate.
    expect(full.units[2]!.kernels[0]!.predictedUs).toBeCloseTo((24576 * 4096 * 2 + 4096 * 2 + 24576 * 4) / 4.3e12 * 1e6, 1);  // weights, 16-bit x, float32 out
    expect(JSON.parse(readFileSync(join(root, 'full', 'gemm.json'), 'utf8'))).toEqual(full);
  });
  test('predicted as the planner prices the tile (its registers from the ptxas table, gemm-registers.ts, not an assumed 128) for the launch gemm.py times: no epilogue, no residual read', () => {
    const target = gemmTarget(['sm_90']);
    for (const u of full.units) {
      const shape = { n: u.n, k: u.k, dtype: u.dtype };
      const opts = { rowStats: gemmEpilogues(shape, [u.role as GemmRole]).rowStats === true };
      const reduction = planReduction(shape, target, u.splitK, opts);
      for (const k of u.kernels) {
        const plan = planGemm(shape, k.m, target, reduction, undefined, opts);
        const registers = gemmRegisters(plan, reduction.splitK).registers;
        const p = predictGemm(plan, k.m, H200, registers);  // gemm_bench: accumulate 0, as F.linear beside it
        expect([u.role, k.m, k.blockM, k.predictedRegisters, k.predictedCtasPerSm, k.predictedUs]).toEqual([u.role, k.m, plan.blockM, registers, p.ctasPerSm, p.predictedS * 1e6]);
      }
    }
  });
  test('the search: every shape, each split-K gemm-space allows, per M the heuristic tile first and at most 4, all runnable on sm_90', () => {
    const target = gemmTarget(['sm_90']);
    expect(full.tune!.map((t) => [t.role, t.sources.map((x) => x.splitK)])).toEqual(full.units.map((u) => [u.role, gemmReductionSpace({ n: u.n, k: u.k, dtype: u.dtype }, target).configs.map((r) => r.splitK)]));
    for (const t of full.tune!) {
      expect(t.heuristicSplitK).toBe(full.units.find((u) => u.name === t.unit)!.splitK);
      expect(t.heuristicArches).toEqual(['sm_90']);  // what "heuristic" means here: planned for sm_90, not a compile's every arch
      for (const src of t.sources) {
        expect(existsSync(join(root, 'full', src.cu))).toBe(true);
        // The search covers every row count the Qwen3-8B compile plans, the prefill chunk included.
        for (const m of [1, 20, 64, 72, 272]) {
          const mine = t.candidates.filter((c) => c.splitK === src.splitK && c.m === m);
          expect(mine.length).toBeGreaterThanOrEqual(1);
          expect(mine.length).toBeLessThanOrEqual(4);
          expect(mine[0]!.heuristic).toBe(true);
          expect(mine[0]!.tile).toEqual(gemmHeuristic({ n: t.n, k: t.k, dtype: t.dtype }, m, target, { rowStats: t.role === 'lm_head' }).tile);
          for (const c of mine) expect(gemmTileInfeasible(c.tile, m, target, c.splitK), `${t.role} M=${m} split-K ${c.splitK}`).toBeNull();  // ptxas spills some tiles at split-K > 1 only
          // Then other layouts, no stage variants: first the cost model's fastest of the other warp count (a device weighs 4 warps against 8).
          const layouts = mine.map((c) => gemmTileName({ ...c.tile, stages: 0 }));
          expect(new Set(layouts).size, `${t.role} M=${m} ${layouts}`).toBe(layouts.length);
          expect(mine.length, `${t.role} M=${m}`).toBeGreaterThan(1);
          expect(mine[1]!.tile.warps ?? 8, `${t.role} M=${m}`).not.toBe(mine[0]!.tile.warps ?? 8);
        }
      }
      for (const src of t.sources) {
        const symbols = t.candidates.filter((c) => c.splitK === src.splitK).map((c) => c.symbol);
        expect(new Set(symbols).size).toBe(symbols.length);
      }
    }
  });
  test('the heuristic per compile is what the runtime launches: a compile with sm_90a (the kernel cache\'s on a 9.0 device) prices the split on the family it runs', async () => {
    const spec = await loadModelSpecFile(join(packageRoot(), 'examples', 'qwen3-8b.json'));
    const units = planModelGemms(spec, spec.draftLengths, ['sm_90', 'sm_90a']).units;
    const plain = planModelGemms(spec, spec.draftLengths, ['sm_90']).units;
    for (const t of full.tune!) {
      const h = t.heuristicByArch;
      const unit = units.find((u) => u.name === t.unit)!;
      // A compile for sm_90 alone: mma.sync at heuristicSplitK, the tiles the search marks as the heuristic's.
      expect([h.sm_90.arches, h.sm_90.kernel, h.sm_90.splitK]).toEqual([['sm_90'], 'sm_90', plain.find((u) => u.name === t.unit)!.reduction.splitK]);
      expect(h.sm_90.splitK).toBe(t.heuristicSplitK);
      for (const [m, tile] of Object.entries(h.sm_90.tiles!)) expect(t.candidates.find((c) => c.splitK === t.heuristicSplitK && c.m === Number(m) && c.heuristic)!.tile).toEqual(tile);
      // With sm_90a: generate.ts's unit (planUnitReduction) and its recorded family (sm90aGemmHeuristic; lm_head has no sm_90a kernel).
      const kernel = t.role === 'lm_head' ? 'sm_90' : sm90aGemmHeuristic(unit).kernel;
      expect([h.sm_90a.arches, h.sm_90a.kernel, h.sm_90a.splitK], t.role).toEqual([['sm_90', 'sm_90a'], kernel, unit.reduction.splitK]);
      // An mma.sync heuristic's tiles are among the candidates the search times at its split-K.
      if (h.sm_90a.kernel === 'sm_90') {
        for (const [m, tile] of Object.entries(h.sm_90a.tiles!)) expect(t.candidates.filter((c) => c.splitK === h.sm_90a.splitK && c.m === Number(m)).map((c) => c.tile)).toContainEqual(tile);
      }
    }
    // The point: Qwen3-8B qkv runs unsplit on the sm_90a kernel on an H200, where the sm_90 compile splits it in 4.
    expect(full.tune!.map((t) => [t.role, t.heuristicByArch.sm_90.splitK, t.heuristicByArch.sm_90a.kernel, t.heuristicByArch.sm_90a.splitK])).toEqual([
      ['qkv', 4, 'sm_90a', 1], ['o', 2, 'sm_90a', 2], ['gate_up', 1, 'sm_90a', 1], ['down', 2, 'sm_90a', 2], ['lm_head', 1, 'sm_90', 1],
    ]);
  });
});

/**
 * The GEMM part and the tune part (the GEMM search) only: the bundle's attention grid is there
 * because the check reads it, and the attention part over it is device-check.test.ts's (here it
 * re-ran the emulator over every variant in each of the three dry runs: a fifth of this file's CPU).
 */
async function dryRun(bundle: string, out: string, driver: string): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await exec('python3', [join(SCRIPTS, 'device_check.py'), '--dry-run', '--parts', 'gemm,tune', '--bundle', bundle, '--out', out], { env: { ...process.env, TIDARC_LIBCUDA: driver }, maxBuffer: 64 << 20 });
    return { code: 0, stdout };
  } catch (e) {
    const err = e as { code: number; stdout: string };
    return { code: err.code, stdout: err.stdout };
  }
}

interface GemmCheck { unit: string; m: number; worstRatio: number | null; invariant: boolean; ok: boolean; bitwiseUnfused?: boolean }

describe.skipIf(!cxx.found || !numpy)('the GEMM part in --dry-run on the emulated driver', () => {
  const bundle = join(root, 'dry');
  let driver: string;
  beforeAll(async () => {
    await prepareDeviceBundle({ outDir: bundle, grid: [{ dtype: 'fp16', headDim: 64, qHeads: 2, kvHeads: 2, drafts: [1] }], emulated: true });
    await prepareGemmBundle(bundle, DRY_RUN_GEMM, true);
    driver = await sharedEmulatedDriver();
  }, 600_000);

  test('every kernel within the bound and bitwise invariant across M; reported', async () => {
    const out = join(root, 'dry-out');
    const r = await dryRun(bundle, out, driver);
    expect(r.code).toBe(0);
    const data = JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { gemm: { correctness: GemmCheck[]; epilogues: (GemmCheck & { epilogue: string })[] } };
    expect(data.gemm.correctness.map((c) => [c.unit, c.m, c.ok, c.invariant])).toEqual([
      ['gemm_bf16_n197_k520', 1, true, true], ['gemm_bf16_n197_k520', 20, true, true], ['gemm_fp16_n72_k264', 1, true, true], ['gemm_fp16_n72_k264', 20, true, true],
      ['gemm_bf16_n208_k520', 1, true, true], ['gemm_bf16_n208_k520', 20, true, true], ['gemm_bf16_n300_k264', 1, true, true], ['gemm_bf16_n300_k264', 20, true, true],
    ]);
    expect(r.stdout).toContain('gemm: 8/8 kernels ok');
    // The fused epilogues through the split-K reduce: SwiGLU (gate_up) and the row statistics + merge (lm_head).
    expect(data.gemm.epilogues.map((c) => [c.epilogue, c.m, c.ok, c.invariant, c.bitwiseUnfused])).toEqual([
      ['swiglu', 1, true, true, true], ['swiglu', 20, true, true, true], ['rowStats', 1, true, true, undefined], ['rowStats', 20, true, true, undefined],
    ]);
    expect(r.stdout).toContain('gemm epilogues: 4/4 ok');
    expect(r.stdout).toMatch(/gemm tune: 1 of 1 shapes tuned \(\d+ candidates timed, 0 rejected\); tune-cuda\.json; odd split-K 3: split-K [13] M=1 b\d+w\ds\d+(n64)?(t128)?, M=20 b\d+w\ds\d+(n64)?(t128)?/);  // the winners are timed on the emulator: any tile
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toContain('## GEMMs of the linear layers (issue 14)');
    // The heuristic the search compares with names the arches it was planned for.
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(/\| odd split-K 3 \| 1 \| split-K \d b\d+w\ds\d+(n64)?(t128)? for sm_90 \|/);
  }, 300_000);

  test('the search: every candidate checked then timed; one split-K for the shape, a tile per M, in tune-cuda.json for compile --tuned', () => {
    const out = join(root, 'dry-out');
    const gem = JSON.parse(readFileSync(join(bundle, 'gemm.json'), 'utf8')) as BundleGemm;
    const t = gem.tune![0]!;
    expect([t.role, t.sources.map((x) => x.splitK)]).toEqual(['odd split-K 3', [1, 3]]);
    const data = JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { gemm: { tune: { shapes: { unit: string; timed: number; rejected: string[]; splitK: number }[] } } };
    const rec = data.gemm.tune.shapes[0]!;
    expect([rec.unit, rec.timed, rec.rejected]).toEqual([t.unit, t.candidates.length, []]);
    const db = parseTuneDb(readFileSync(join(out, 'tune-cuda.json'), 'utf8'), 'tune-cuda.json');
    const e = db.gemms![gemmEntryKey(t.unit, 'sm_90')]!;
    expect([1, 3]).toContain(e.splitK);
    expect([t.space, e.space]).toEqual([GEMM_SEARCH_SPACE, GEMM_SEARCH_SPACE]);  // so compile --tuned uses the record
    expect(e.heuristicSplitK).toBe(planReduction({ n: t.n, k: t.k, dtype: t.dtype }, gemmTarget(['sm_90'])).splitK);
    expect(Object.keys(e.rows)).toEqual(['1', '20']);
    for (const [m, r] of Object.entries(e.rows)) {
      const mine = t.candidates.filter((c) => c.splitK === e.splitK && c.m === Number(m));
      expect(mine.map((c) => c.tile)).toContainEqual(r.best);
      expect(r.heuristic).toEqual(t.candidates.find((c) => c.splitK === e.heuristicSplitK && c.m === Number(m) && c.heuristic)!.tile);
      expect(r.bestTiming.medianUs).toBeGreaterThan(0);
    }
    // The split-K is the TS rule's (the planner's relative regret, mma.sync alone: no race) over the times the record says were measured.
    expect(Object.keys(e.splitRowsUs!)).toEqual(['1', '3']);
    expect(chooseGemmKernel(new Map([['sm_90', new Map(Object.entries(e.splitRowsUs!).map(([s, ms]) => [Number(s), new Map(Object.entries(ms).map(([m, us]) => [Number(m), us]))]))]]))).toEqual({ kernel: 'sm_90', splitK: e.splitK });
    expect(e.meta.device).toBe('tidarc emulated GPU x 132 SMs');
    // What compile --tuned would take: runnable for this shape on sm_90.
    expect(() => checkGemmTuning({ n: t.n, k: t.k, dtype: t.dtype }, tuningOfEntry(e), gemmTarget(['sm_90']))).not.toThrow();
  });

  test('the SwiGLU comparison with the unfused MLP can fail: silu_mul truncating its 16-bit output (not nearest even) differs in some bits; the fused one stays within tolerance', async () => {
    const path = join(bundle, 'gemm.json');
    const good = readFileSync(path, 'utf8');
    const gem = JSON.parse(good) as BundleGemm;
    const line = 'store_at(a.out, i, g / (1.0f + expf(-g)) * a.up[i], a.out_dtype);';
    const text = readFileSync(join(bundle, gem.ops.cu), 'utf8');
    expect(text).toContain(line);
    const mutant = { cu: 'gemm/cuda/tidarc_ops_mutant.cu', fatbin: 'gemm/cuda/tidarc_ops_mutant.fatbin' };
    // The float32 result cut to its top 16 bits before the store: an exact bf16, so the store keeps it (truncation, not nearest even).
    writeFileSync(join(bundle, mutant.cu), text.replace(line, 'store_at(a.out, i, __uint_as_float(__float_as_uint(g / (1.0f + expf(-g)) * a.up[i]) & 0xffff0000u), a.out_dtype);'));
    await buildEmulatedModule(join(bundle, mutant.cu), emulatedModulePath(join(bundle, mutant.fatbin)), [{ name: 'tidarc_op_silu_mul', argsType: 'TidarcSiluMulArgs' }]);
    writeFileSync(path, JSON.stringify({ ...gem, tune: [], ops: mutant }));
    try {
      const out = join(root, 'dry-silu');
      const r = await dryRun(bundle, out, driver);
      expect(r.code).toBe(1);
      const data = JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { gemm: { epilogues: (GemmCheck & { epilogue: string })[] } };
      const swiglu = data.gemm.epilogues.filter((c) => c.epilogue === 'swiglu');
      expect(swiglu.map((c) => [c.m, c.bitwiseUnfused, c.ok])).toEqual([[1, false, false], [20, false, false]]);
      for (const c of swiglu) expect(c.worstRatio).toBeLessThanOrEqual(1);
    } finally {
      writeFileSync(path, good);
    }
  }, 300_000);

  test('a wrong launch (one N tile of two) fails the check: unwritten columns stay NaN', async () => {
    const path = join(bundle, 'gemm.json');
    const good = readFileSync(path, 'utf8');
    const lie = JSON.parse(good) as BundleGemm;
    // And one search candidate (split-K 3, M = 20, not the heuristic's tile): one N tile of two.
    const broken = lie.tune![0]!.candidates.find((c) => c.splitK === 3 && c.m === 20 && !c.heuristic)!;
    const tune = lie.tune!.map((t, i) => (i === 0 ? { ...t, candidates: t.candidates.map((c) => (c === broken ? { ...c, nTiles: 1 } : c)) } : t));
    writeFileSync(path, JSON.stringify({ ...lie, tune, units: lie.units.map((u, i) => (i === 0 ? { ...u, kernels: u.kernels.map((k) => ({ ...k, nTiles: 1 })) } : u)) }));
    try {
      const out = join(root, 'dry-lie');
      const r = await dryRun(bundle, out, driver);
      expect(r.code).toBe(1);
      const data = JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { gemm: { correctness: GemmCheck[] } };
      expect(data.gemm.correctness.filter((c) => !c.ok).map((c) => [c.unit, c.m, c.worstRatio])).toEqual([['gemm_bf16_n197_k520', 1, null], ['gemm_bf16_n197_k520', 20, null]]);
      expect(r.stdout).toMatch(/gemm: 6\/8 kernels ok .*FAILED/);
      const tuned = (JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { gemm: { tune: { shapes: { rejected: string[] }[] } } }).gemm.tune.shapes[0]!;
      const name = `s3 M=20 ${gemmTileName(broken.tile)}`;  // gemm_tune.py's tile_name is gemmTileName
      expect(tuned.rejected).toEqual([`${name}: unwritten or non-finite output`]);
      const e = parseTuneDb(readFileSync(join(out, 'tune-cuda.json'), 'utf8'), 'tune-cuda.json').gemms![gemmEntryKey(lie.tune![0]!.unit, 'sm_90')]!;
      expect(e.rejected).toEqual(tuned.rejected);
      if (e.splitK === 3) expect(e.rows['20']!.best).not.toEqual(broken.tile);
    } finally {
      writeFileSync(path, good);
    }
  }, 300_000);
});

describe.skipIf(!numpy)('gemm.py\'s launch arguments', () => {
  test('packed by the generated tidarc_abi.GEMM (op-abi.ts), so a changed ABI reaches them', async () => {
    // The second line packs under a schema with the pointers in reverse order: gemm.py must follow it.
    const script = `import sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nimport gemm, tidarc_abi
print(gemm.gemm_args(1, 2, 3, 4, 5, 6, 7, 1, 300).hex())
f = tidarc_abi.GEMM.fields
gemm.GEMM = tidarc_abi.Struct('T', tidarc_abi.GEMM.format, tuple(reversed(f[:13])) + f[13:])
print(gemm.gemm_args(1, 2, 3, 4, 5, 6, 7, 1, 300).hex())`;
    const [plain, reversed] = (await exec('python3', ['-c', script])).stdout.trim().split('\n');
    const values = { x: 1, w: 2, bias: 3, rowIds: 4, out: 5, out2: 0, out3: 0, workspace: 6, tileStats: 0, tileArgmax: 0, rowArgmax: 0, rowMax: 0, rowLse: 0, rows: 7, accumulate: 1, seg1: 300, seg2: 300, epilogue: 0, splitCounters: 0, ...GEMM_NO_NORM };
    expect(plain).toBe(Buffer.from(packStruct(GEMM, values)).toString('hex'));
    const swapped = { ...GEMM, fields: [...GEMM.fields.slice(0, 13).reverse(), ...GEMM.fields.slice(13)] };
    expect(reversed).toBe(Buffer.from(packStruct(swapped, values)).toString('hex'));
  });

  test('gemm_bench records the registers the prediction read (the bundle\'s predictedRegisters) beside ptxas\'s', async () => {
    // torch and the launch stood in: only the row gemm_bench writes for one kernel is read.
    const script = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nimport gemm
class T:
    def to(self, dt): return self
    def __rmul__(self, x): return self
    def data_ptr(self): return 0
class Torch:
    bfloat16, float16 = 'bf16', 'fp16'
    class nn:
        class functional:
            linear = staticmethod(lambda x, w: None)
    class cuda:
        empty_cache = staticmethod(lambda: None)
    randn = staticmethod(lambda *a, **k: T())
    empty = staticmethod(lambda *a, **k: T())
gemm.launch_gemm = lambda *a, **k: None
def timed(torch, fn, reps):
    fn(0)
    return {'medianUs': 10.0, 'p20Us': 9.0, 'p80Us': 11.0, 'reps': reps}
kernel = {'m': 1, 'symbol': 'k1', 'blockM': 16, 'predictedUs': 5.0, 'predictedBound': 'HBM', 'predictedRegisters': 63}
gem = {'units': [{'name': 'u', 'role': 'o', 'n': 64, 'k': 64, 'dtype': 'bf16', 'splitK': 2, 'kernels': [kernel]}]}
points, _ = gemm.gemm_bench(Torch, None, None, gem, {'copyTBs': 4.3, 'matmulTflops': 790}, timed, 60, lambda s: None, {'k1': 70})
print(json.dumps(points[0]))`;
    const row = JSON.parse((await exec('python3', ['-c', script])).stdout) as Record<string, unknown>;
    expect([row['registers'], row['predictedRegisters'], row['predictedUs']]).toEqual([70, 63, 5]);
  });
});

describe.skipIf(!numpy)('gemm_tune.py\'s database writer', () => {
  test('the attention search\'s database writer keeps the GEMM entries, and the GEMM writer the attention ones', async () => {
    const path = join(root, 'merge-db.json');
    const script = `import json, sys, pathlib\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nfrom tune import write_db\nfrom gemm_tune import write_gemm_db
p = pathlib.Path(sys.argv[1])
write_gemm_db(p, [{'unit': 'gemm_bf16_n8_k8', 'arch': 'sm_90', 'splitK': 1}])
write_db(p, [{'variant': 'v', 'bucket': 'b1 L64', 'x': 1}])
write_gemm_db(p, [{'unit': 'gemm_bf16_n16_k8', 'arch': 'sm_90', 'splitK': 2}])
print(json.dumps(json.loads(p.read_text())))`;
    const db = JSON.parse((await exec('python3', ['-c', script, path])).stdout) as { entries: Record<string, unknown>; gemms: Record<string, unknown> };
    expect(Object.keys(db.entries)).toEqual(['v | b1 L64']);
    expect(Object.keys(db.gemms)).toEqual(['gemm_bf16_n16_k8 | sm_90', 'gemm_bf16_n8_k8 | sm_90']);
  });
});

describe.skipIf(!numpy)('the report of the GEMM part', () => {
  test('a table per point and the issue\'s goals, from recorded timings', async () => {
    const t = (us: number) => ({ medianUs: us, p20Us: us * 0.98, p80Us: us * 1.02, reps: 100 });
    const row = (role: string, m: number, us: number, torch: number, copyShare: number, matmulShare: number) => ({
      unit: `u-${role}`, role, n: 4096, k: 4096, m, splitK: 4, blockM: 16, registers: 63, predictedUs: 9.8, predictedBound: 'HBM',
      tidarc: t(us), torch: t(torch), tidarcTBs: 3.9, tidarcTflops: 3, copyShare, matmulShare, vsTorch: torch / us, measuredOverPredicted: us / 9.8,
    });
    const gemm = { correctness: [{ unit: 'u-o', role: 'o', m: 1, rows: 1, splitK: 4, worstRatio: 0.01, invariant: true, ok: true }],
      bench: [row('o', 1, 10, 12, 0.9, 0.01), row('o', 72, 20, 18, 0.6, 0.2), row('o', 272, 40, 30, 0.4, 0.35)] };
    const script = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nfrom report import gemm_lines\nprint('\\n'.join(gemm_lines(json.loads(sys.argv[1]))))`;
    const { stdout } = await exec('python3', ['-c', script, JSON.stringify(gemm)]);
    expect(stdout).toContain('| o | 4096x4096 | 72 | 4 | 63 | 20.0 (19.6-20.4) | 18.0 | 0.90x |');
    expect(stdout).toContain('| M <= 72: >= 80% of copy bandwidth | 60% (worst point) | NO |');
    expect(stdout).toContain('| M <= 72: at least as fast as torch.matmul | 0.90x (worst point) | NO |');
    expect(stdout).toContain('| M = 272: >= 50% of the bf16 matmul rate | 35% (worst point) | NO |');
  });
});
