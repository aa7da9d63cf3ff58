/**
 * The sm_90a GEMM through the runtime (src/runtime/cuda/gpu-gemm-sm90a.ts) on the emulated
 * CUDA driver, whose device reports compute capability 9.0: the selection rule takes the sm_90a
 * GEMMs there when the compile built sm_90a (and the mma.sync ones when it did not); the
 * launcher encodes the tensor maps through the addon, packs TidarcGemmSm90aArgs and runs the
 * kernel, split-K 3 summed inside its one launch (bf16 200 x 520), into three column segments
 * with bias and residual add at M = 1, 20, 72 (one consumer warpgroup, 64 weight rows a CTA) and
 * 272 (two, 128 rows): against float64, every row bitwise the same at each M; the M = 272 launch captured into a CUDA graph and replayed twice gives the direct
 * launch's bits each time (the split-K counters reset themselves); a row gather is refused in
 * one line; and the runner's GEMMs (gemmsFor) from a manifest whose tuning record keeps the
 * shape on mma.sync (tuned.kernel 'sm_90') launch the mma.sync kernel on this 9.0 device, the
 * untuned manifest the sm_90a one. In a child process: the addon picks its driver once.
 * Tagged: a C++ compiler.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { gemmTarget, gemmUnitName, planGemm, planReduction } from '../../../src/codegen/gemm-plan.js';
import { describeGemms } from '../../../src/codegen/gemm-manifest.js';
import { gemmSource, renderGemmUnit } from '../../../src/codegen/gemm-source.js';
import { describeSm90aUnit, planSm90aKernels, renderSm90aUnit, sm90aSource } from '../../../src/codegen/gemm-sm90a.js';
import { readTemplateFile } from '../../../src/codegen/templates.js';
import { buildEmulatedModule, emulatedModulePath } from '../../../src/emulate/emulated-driver.js';
import { encode } from '../../../src/util/dtype.js';
import { packageRoot } from '../../../src/util/paths.js';
import { randomGemmProblem, referenceGemm, worstRatio } from '../../helpers/gemm.js';
import { sharedEmulatedDriver } from '../../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-gpu-sm90a-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SHAPE = { n: 200, k: 520, dtype: 'bf16' as const };
const MS = [1, 20, 72, 272];  // 64 weight rows a CTA up to 72, 128 at 272 (gemm-sm90a.ts sm90aBlockW): the W box and grid follow the manifest
const SPLIT = 3;
const HEADERS = ['tidarc_gemm_sm90a.cuh', 'tidarc_gemm_sm90a_abi.h', 'tidarc_gemm.cuh', 'tidarc_gemm_abi.h', 'tidarc_hopper.cuh', 'tidarc_device.cuh'];
const problem = randomGemmProblem(SHAPE, Math.max(...MS), 23);

interface ChildOut {
  path: { both: string; plain: string; cc: number[] }; runs: Record<string, string>; replays: string[]; refusal: string; segments: number[];
  tuned: Record<'sm_90' | 'none', { launched: string[]; out: string }>;
}

describe.skipIf(!cxx.found)('GpuGemmsSm90a on the emulated driver (a 9.0 device)', () => {
  let out: ChildOut;
  beforeAll(async () => {
    const cudaDir = join(root, 'cuda');
    mkdirSync(cudaDir, { recursive: true });
    for (const h of HEADERS) writeFileSync(join(cudaDir, h), readTemplateFile(`cuda/${h}`));
    const reduction = planReduction(SHAPE, gemmTarget(['sm_90a']), SPLIT);
    const kernels = planSm90aKernels(SHAPE, MS);
    const source = join(root, sm90aSource(SHAPE));
    writeFileSync(source, renderSm90aUnit(SHAPE, reduction, kernels, ['qkv'], 'test'));
    const entry = describeSm90aUnit(SHAPE, ['qkv'], reduction, kernels);
    const names = kernels.map((k) => ({ name: k.symbol, argsType: 'TidarcGemmSm90aArgs' }));
    // The mma.sync unit of the same shape and reduction, and a manifest whose record keeps the shape on it.
    const target = gemmTarget(['sm_90', 'sm_90a']);
    const plans = MS.map((m) => planGemm(SHAPE, m, target, reduction));
    const mmaSource = join(root, gemmSource(SHAPE));
    writeFileSync(mmaSource, renderGemmUnit(SHAPE, plans, ['qkv'], 'test'));
    const tuned = { arch: 'sm_90' as const, splitK: SPLIT, tiles: {}, measuredOn: 'test', kernel: 'sm_90' as const };
    const gemms = describeGemms([{ name: gemmUnitName(SHAPE), shape: SHAPE, roles: ['qkv'], reduction, plans, tuned }]);
    writeFileSync(join(root, 'manifest.json'), JSON.stringify({ arches: ['sm_90', 'sm_90a'], gemms, gemmsSm90a: [entry] }));
    const [driver] = await Promise.all([
      sharedEmulatedDriver(),
      buildEmulatedModule(source, emulatedModulePath(source.replace(/\.cu$/, '.fatbin')), names, { includeDirs: [cudaDir] }),
      buildEmulatedModule(mmaSource, emulatedModulePath(mmaSource.replace(/\.cu$/, '.fatbin')), gemms.map((g) => ({ name: g.kernel, argsType: 'TidarcGemmArgs' })), { includeDirs: [cudaDir] }),
    ]);
    writeFileSync(join(root, 'entry.json'), JSON.stringify(entry));
    const x = encode(SHAPE.dtype, problem.x);
    writeFileSync(join(root, 'input.bin'), Buffer.concat([x, problem.w, problem.bias, problem.old].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))));
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'gemm-sm90a-child.ts'), root, join(root, 'entry.json'), join(root, 'input.bin'), MS.join(','), join(root, 'manifest.json')], {
      cwd: packageRoot(), env: { ...process.env, TIDARC_LIBCUDA: driver }, maxBuffer: 64 << 20,
    });
    out = JSON.parse(stdout.trim().split('\n').pop()!) as ChildOut;
  }, 300_000);

  test('the selection rule on the emulated 9.0 device: sm_90a where compiled, else the mma.sync GEMMs', () => {
    expect(out.path).toEqual({ both: 'sm_90a', plain: 'mma.sync', cc: [9, 0] });
  });

  const result = (m: number) => {
    const b = Buffer.from(out.runs[m]!, 'base64');
    return new Float32Array(b.buffer, b.byteOffset, m * SHAPE.n);
  };

  test.for(MS.map((m) => [m] as const))('M = %i: three segments, bias and residual vs float64', ([m]) => {
    const { ref, bound } = referenceGemm(SHAPE, problem, m, SPLIT, { bias: true, accumulate: true });
    expect(worstRatio(result(m), ref, bound)).toBeLessThanOrEqual(1);
  });

  test('every row bitwise the same at M = 1, 20, 72 and 272', () => {
    for (const [i, small] of MS.entries()) {
      // One decode per array: a small base64 decode lives in Node's shared pool, whose ArrayBuffer a second decode may not share.
      const bits = (m: number) => { const r = result(m); return new Uint32Array(r.buffer, r.byteOffset, small * SHAPE.n); };
      for (const big of MS.slice(i + 1)) expect(bits(big), `M = ${small} vs M = ${big}`).toEqual(bits(small));
    }
  });

  test('a captured launch replayed twice: each replay bitwise the direct launch (split-K 3 counters reset by every launch)', () => {
    expect(out.replays).toHaveLength(2);
    for (const r of out.replays) expect(r).toBe(out.runs[Math.max(...MS)]);
  });

  test('the tuned family on this 9.0 device: a record keeping the shape on mma.sync launches the mma.sync kernel, no record the sm_90a one; both vs float64', () => {
    expect(out.tuned.sm_90.launched).toEqual([`tidarc_${gemmUnitName(SHAPE)}_m20`]);
    expect(out.tuned.none.launched).toEqual([`tidarc_${gemmUnitName(SHAPE)}_sm90a_t32`]);
    const { ref, bound } = referenceGemm(SHAPE, problem, 20, SPLIT, { bias: true });
    for (const run of Object.values(out.tuned)) {
      const b = Buffer.from(run.out, 'base64');
      expect(worstRatio(new Float32Array(b.buffer, b.byteOffset, 20 * SHAPE.n), ref, bound)).toBeLessThanOrEqual(1);
    }
  });

  test('a row gather is refused in one line', () => {
    expect(out.refusal).toContain('sm_90a GEMM qkv: no row gather');
    expect(out.refusal).not.toContain('\n');
  });
});
