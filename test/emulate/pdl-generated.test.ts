/**
 * The generated kernels keep the PDL contract (every global access after the thread's
 * tidarc::grid_dependency_wait(), only prefetch_l2_line of weights before it), checked on the SIMT
 * emulator under programmatic launches (runtime/emu/emu_global.cpp: any earlier access to a
 * device allocation is a "pdl" finding):
 *   - every GPU operator of templates/cuda/tidarc_ops.cu, through runtime/emu/ops_check.cpp
 *     --programmatic (its C++ references and no findings);
 *   - an mma.sync GEMM (N = 197, K = 1032, M = 20, split-K 3 with its counters, bias; the weight
 *     prefetch before the wait in bounds and aligned) against the float64 reference;
 *   - an sm_90a GEMM (TMA and wgmma; N = 200, K = 520, M = 20, split-K 3, bias, residual);
 *   - an sm_80 attention variant (examples/tiny.json tidar_k2, splits 1 and 3: the split merge's
 *     counters) and an sm_90a attention kernel (TMA, k = 16, fp16, d64, G1) against the reference;
 * and the check can fail: a copy of the GEMM with its grid_dependency_wait() moved after the
 * prologue's first cp.async of weights gives "pdl" findings naming the weights, and none in a
 * plain launch. Tagged: g++.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { findCxx } from '../../src/build/toolchain.js';
import { planAttentionSm90a } from '../../src/codegen/attention-sm90a.js';
import type { GemmShape } from '../../src/codegen/gemm-plan.js';
import { tidarDecodeVariant } from '../../src/codegen/variant.js';
import { type EmulateRow, emulateDirectory } from '../../src/emulate/emulate-dir.js';
import { type EmulationReport, emulateVariant } from '../../src/emulate/emulate-variant.js';
import { EMU_FLAGS, EMU_KERNEL_FLAGS, compileWith, emulatorIncludeFlags, emulatorSourceDir } from '../../src/emulate/emulator-build.js';
import { buildGemmEmulator, type GemmRunResult, runGemmEmulator } from '../../src/emulate/gemm-emulator.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { packageRoot } from '../../src/util/paths.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';
import { gemmInputs, randomGemmProblem, referenceGemm, worstRatio, writeGemmUnit } from '../helpers/gemm.js';
import { buildSm90aAttentionHarness, sm90aRunVariant, writeSm90aAttentionUnit } from './attention-sm90a-emu.js';
import { type Sm90aRun, buildSm90aHarness, runSm90a, writeSm90aUnit } from './gemm-sm90a-emu.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-pdl-gen-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SHAPE: GemmShape = { n: 197, k: 1032, dtype: 'bf16' };
const M = 20, SPLIT_K = 3;
/** The GEMM kernel's wrapper waits (tidarc_gemm.cu.hbs); the mutant waits after the prologue's first weight tile instead (tidarc_gemm.cuh). */
const WAIT = '  tidarc::grid_dependency_wait();';
const FIRST_CP_ASYNC = '      gemm_load_w<C>(a, stage_w(s), n0, kt0 + s);\n';

let ops: { exit: number | string; checks: { op: string; case: string; ok: boolean }[]; findings: unknown[] } | undefined;
const gemm = new Map<string, { run: GemmRunResult; worst: number }>();
let attention: EmulateRow[] = [];
const sm90a: EmulationReport[] = [];
let mutantEdits = 0;
const SM90A_GEMM: GemmShape = { n: 200, k: 520, dtype: 'bf16' };
let sm90aGemm: { run: Sm90aRun; worst: number } | undefined;

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  const t0 = performance.now();

  // The operators, all of them programmatic.
  const opsExe = join(root, 'ops_check');
  await compileWith(cxx.tool.path, [
    ...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...emulatorIncludeFlags(), `-I${join(packageRoot(), 'templates', 'cuda')}`, '-include', 'tidarc_emu.h',
    '-x', 'c++', join(packageRoot(), 'templates', 'cuda', 'tidarc_ops.cu'), join(emulatorSourceDir(), 'ops_check.cpp'), '-x', 'none', ...objects, '-o', opsExe,
  ], 'the GPU operators and ops_check.cpp');
  let stdout: string, exit: number | string = 0;
  try {
    ({ stdout } = await exec(opsExe, ['--programmatic'], { maxBuffer: 256 << 20 }));
  } catch (e) {
    const err = e as { stdout?: string; code?: number | string };
    stdout = err.stdout ?? '', exit = err.code ?? 'unknown';
  }
  const lines = stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  ops = { exit, checks: lines.filter((l) => typeof l['op'] === 'string') as never, findings: lines.filter((l) => typeof l['op'] !== 'string') };

  // The mma.sync GEMM and its mutant.
  const problem = randomGemmProblem(SHAPE, M, 9);
  const { ref, bound } = referenceGemm(SHAPE, problem, M, SPLIT_K, { bias: true });
  const unit = writeGemmUnit(join(root, 'gemm'), SHAPE, [M], SPLIT_K);
  const gemmExe = join(root, 'gemm', 'emu');
  await buildGemmEmulator(cxx.tool.path, unit.source, unit.cudaDir, unit.plans, objects, gemmExe);
  const mutantDir = join(root, 'mutant'), mutantCuda = join(mutantDir, 'cuda');
  mkdirSync(mutantCuda, { recursive: true });
  for (const h of ['tidarc_gemm_abi.h', 'tidarc_device.cuh']) copyFileSync(join(unit.cudaDir, h), join(mutantCuda, h));
  const source = readFileSync(unit.source, 'utf8'), header = readFileSync(join(unit.cudaDir, 'tidarc_gemm.cuh'), 'utf8');
  mutantEdits = Number(source.includes(`${WAIT}\n`)) + Number(header.includes(FIRST_CP_ASYNC));
  const mutantSource = join(mutantDir, unit.source.slice(dirname(unit.cudaDir).length + 1));
  mkdirSync(dirname(mutantSource), { recursive: true });
  writeFileSync(mutantSource, source.replace(`${WAIT}\n`, ''));
  writeFileSync(join(mutantCuda, 'tidarc_gemm.cuh'), header.replace(FIRST_CP_ASYNC, `${FIRST_CP_ASYNC}      grid_dependency_wait();  // mutant: after the first cp.async\n`));
  const mutantExe = join(mutantDir, 'emu');
  await buildGemmEmulator(cxx.tool.path, mutantSource, mutantCuda, unit.plans, objects, mutantExe);
  for (const [name, exe, programmatic] of [['pdl', gemmExe, true], ['mutant pdl', mutantExe, true], ['mutant plain', mutantExe, false]] as const) {
    const run = await runGemmEmulator(exe, unit.plans[0]!, { ...gemmInputs(problem, M, { bias: true }), programmatic }, root, name.replace(' ', '-'));
    gemm.set(name, { run, worst: worstRatio(run.out, ref, bound) });
  }

  // An sm_90a GEMM (token tile 64 at M = 20).
  const sm90aProblem = randomGemmProblem(SM90A_GEMM, M, 11);
  const sm90aGemmUnit = writeSm90aUnit(join(root, 'sm90a-gemm'), SM90A_GEMM, [M], SPLIT_K);
  const sm90aGemmExe = join(root, 'sm90a-gemm', 'emu');
  await buildSm90aHarness(cxx.tool.path, SM90A_GEMM, sm90aGemmUnit, objects, sm90aGemmExe);
  const sm90aRun = await runSm90a(sm90aGemmExe, join(root, 'sm90a-gemm'), SM90A_GEMM, sm90aGemmUnit, sm90aGemmUnit.kernels[0]!, sm90aProblem, { rows: M, bias: true, accumulate: true, programmatic: true });
  const sm90aRef = referenceGemm(SM90A_GEMM, sm90aProblem, M, SPLIT_K, { bias: true, accumulate: true });
  sm90aGemm = { run: sm90aRun, worst: worstRatio(sm90aRun.out, sm90aRef.ref, sm90aRef.bound) };

  // An sm_80 attention variant of a compiled model.
  const kernels = join(root, 'tiny');
  const spec = await loadModelSpecFile(join(packageRoot(), 'examples', 'tiny.json'));
  await compileModel({ spec, arches: ['sm_80'], outDir: kernels, build: 'none', log: () => undefined });
  attention = await emulateDirectory(kernels, { variants: ['tidar_k2'], batch: 3, prefix: [17, 0, 130], splits: [1, 3], seed: 5, runtimeObjects: objects, jobs: 1, programmatic: true, log: () => undefined });

  // An sm_90a attention kernel (TMA producer, wgmma consumers).
  const plan = planAttentionSm90a(tidarDecodeVariant(16, { dtype: 'fp16', headDim: 64, qHeads: 1, kvHeads: 1 }));
  const sm90aUnit = writeSm90aAttentionUnit(join(root, 'sm90a'), plan);
  const sm90aExe = join(root, 'sm90a', 'emu');
  await buildSm90aAttentionHarness(cxx.tool.path, sm90aUnit, objects, sm90aExe);
  for (const splits of [1, 3]) sm90a.push(await emulateVariant(sm90aExe, sm90aRunVariant(plan), { batch: 2, prefixLen: [130, 0], splits, seed: 31, programmatic: true }, join(root, 'sm90a')));
  console.log(`PDL on generated kernels: built and emulated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}, 600_000);

describe.skipIf(!cxx.found)('generated kernels under programmatic launches on the emulator', () => {
  test('every GPU operator: its C++ reference, no findings', () => {
    expect(ops!.findings, JSON.stringify(ops!.findings.slice(0, 3))).toEqual([]);
    expect(ops!.exit).toBe(0);
    expect(ops!.checks.length).toBeGreaterThan(50);
    for (const c of ops!.checks) expect(c.ok, `${c.op} ${c.case}`).toBe(true);
  });

  test('mma.sync GEMM, split-K 3: float64 reference, no findings', () => {
    const { run, worst } = gemm.get('pdl')!;
    expect(run.findings, JSON.stringify(run.findings.slice(0, 3))).toEqual([]);
    expect(run.completed).toBe(true);
    expect(worst).toBeLessThanOrEqual(1);
  });

  test('sm_90a GEMM (TMA, wgmma), split-K 3: float64 reference, no findings', () => {
    expect(sm90aGemm!.run.messages, sm90aGemm!.run.messages.slice(0, 3).join('\n')).toEqual([]);
    expect(sm90aGemm!.run.completed).toBe(true);
    expect(sm90aGemm!.worst).toBeLessThanOrEqual(1);
  });

  test('sm_80 attention (tidar_k2, splits 1 and 3): float64 reference, no findings', () => {
    expect(attention.map((r) => r.splits)).toEqual([1, 3]);
    for (const r of attention) {
      expect(r.findings, JSON.stringify(r.findings.slice(0, 3))).toEqual([]);
      expect(r.ok, `splits ${r.splits}: max error ${r.maxError}`).toBe(true);
    }
  });

  test('sm_90a attention (k = 16, fp16, d64, G1; splits 1 and 3): float64 reference, no findings', () => {
    expect(sm90a.length).toBe(2);
    for (const r of sm90a) {
      expect(r.findings, JSON.stringify(r.findings.slice(0, 3))).toEqual([]);
      expect(r.ok, `max error ${r.maxError}`).toBe(true);
    }
  });

  test('mutant: the GEMM waits after its first cp.async of weights: "pdl" findings under a programmatic launch only', () => {
    expect(mutantEdits, 'both text edits applied (the templates changed?)').toBe(2);
    const pdl = gemm.get('mutant pdl')!.run;
    expect(pdl.counts['pdl']).toBeGreaterThan(0);
    expect(Object.keys(pdl.counts)).toEqual(['pdl']);
    expect(pdl.findings[0]!.message).toMatch(/^tidarc_gemm_\w+: cp\.async of 16 bytes at byte \d+ of 'w' \(0x[0-9a-f]+\) before this thread's grid_dependency_wait, in a programmatic launch/);
    const plain = gemm.get('mutant plain')!;
    expect(plain.run.findings).toEqual([]);
    expect(plain.worst).toBeLessThanOrEqual(1);
  });
});
