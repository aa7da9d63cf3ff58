/**
 * The device check's sm_90a GEMM part (scripts/device-check/gemm_sm90a.py, issue 18) without a
 * GPU: the dry-run bundle (src/bench/gemm-sm90a-bundle.ts: a kernel per token tile 8..256 of two
 * odd shapes, emulator modules) runs on the emulated CUDA driver through the same tensor-map
 * encoding and launch packing as on the H200, every kernel within the float64 bound and all
 * token tiles bitwise equal; and the check fails on a wrong launch geometry (a kernel's token
 * tile claimed twice its size: half its tokens are never written). The bundle records each
 * kernel's ring depth (stages). Tagged: a C++ compiler, python3 with numpy (the dry run).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DRY_RUN_SM90A, FULL_SM90A, type Sm90aBundle, prepareSm90aBundle } from '../../src/bench/gemm-sm90a-bundle.js';
import { gemmTarget, planReduction } from '../../src/codegen/gemm-plan.js';
import { SM90A_STAGES, SM90A_TOKEN_TILES, planSm90aKernels, sm90aSharedBytes } from '../../src/codegen/gemm-sm90a.js';
import { findCxx } from '../../src/build/toolchain.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';

const exec = promisify(execFile);
const SCRIPT = resolve('scripts/device-check/gemm_sm90a.py');
const cxx = await findCxx();
const numpy = await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-sm90a-check-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface CheckOut { sm90a: { label: string; ok: boolean; kernels: { tileT: number; worst: number; bitwiseSameAsFirst: boolean }[] }[]; dryRun: boolean }

async function check(bundle: string, driver: string): Promise<{ code: number; out: CheckOut }> {
  const r = await exec('python3', [SCRIPT, '--bundle', bundle, '--dry-run'], { env: { ...process.env, TIDARC_LIBCUDA: driver }, maxBuffer: 16 << 20 }).then(
    (x) => ({ code: 0, stdout: x.stdout }), (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }));
  return { code: r.code, out: JSON.parse(r.stdout.trim().split('\n').pop()!) as CheckOut };
}

test('the bundle records each kernel\'s ring depth as a compile sizes it, and the shared memory of that ring', async () => {
  const bundle = await prepareSm90aBundle(join(root, 'no-emulator'), FULL_SM90A, false);
  for (const [i, u] of bundle.units.entries()) {
    const s = FULL_SM90A.shapes[i]!, shape = { n: s.n, k: s.k, dtype: s.dtype };
    const planned = planSm90aKernels(shape, SM90A_TOKEN_TILES, planReduction(shape, gemmTarget(['sm_90a']), s.splitK));
    expect(u.kernels.map((k) => [k.tileT, k.stages, k.sharedBytes])).toEqual(planned.map((k) => [k.tileT, k.stages, sm90aSharedBytes(k.tileT, k.stages, k.blockW)]));
  }
  expect(bundle.units.flatMap((u) => u.kernels.map((k) => k.stages)).some((x) => x > SM90A_STAGES)).toBe(true);  // a ring deeper than the least: the field says which
});

describe.skipIf(!cxx.found || !numpy)('gemm_sm90a.py --dry-run on the emulated driver', () => {
  let driver = '';
  let bundle: Sm90aBundle;
  beforeAll(async () => {
    driver = await sharedEmulatedDriver();
    bundle = await prepareSm90aBundle(root, DRY_RUN_SM90A, true);
  }, 300_000);

  test('every token tile of each shape within the float64 bound and bitwise equal', async () => {
    expect(bundle.units.map((u) => u.kernels.map((k) => k.tileT))).toEqual(DRY_RUN_SM90A.shapes.map(() => [...SM90A_TOKEN_TILES]));
    expect(bundle.nvccFlags).toContain('-gencode=arch=compute_90a,code=sm_90a');
    const { code, out } = await check(root, driver);
    expect(code).toBe(0);
    expect(out.dryRun).toBe(true);
    expect(out.sm90a.map((u) => [u.label, u.ok])).toEqual([['odd bf16', true], ['odd fp16', true]]);
    for (const u of out.sm90a) for (const k of u.kernels) expect([k.tileT, k.bitwiseSameAsFirst, k.worst <= 1]).toEqual([k.tileT, true, true]);
  }, 300_000);

  test('device_check.py runs it as its sm90a part: in its own process after facts, reported in device-check.md', async () => {
    const out = join(root, 'orchestrated');
    const r = await exec('python3', [resolve('scripts/device-check/device_check.py'), '--bundle', root, '--out', out, '--dry-run', '--parts', 'sm90a'],
      { env: { ...process.env, TIDARC_LIBCUDA: driver }, maxBuffer: 16 << 20 });
    const data = JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { parts: { name: string; status: string }[]; sm90a: { ok: boolean; units: CheckOut['sm90a'] } };
    expect(data.parts.map((p) => [p.name, p.status])).toEqual([['facts', 'ok'], ['sm90a', 'ok']]);
    expect(data.sm90a.units.map((u) => [u.label, u.ok])).toEqual([['odd bf16', true], ['odd fp16', true]]);
    expect(r.stdout).toContain('sm_90a GEMM: 2/2 weight shapes ok (float64, every wgmma N bitwise equal)');
    const md = readFileSync(join(out, 'device-check.md'), 'utf8');
    expect(md).toContain('## sm_90a GEMM: the same sum for every wgmma N (issue 18)');
    expect(md).toContain('| odd bf16 | 200x520 | bf16 | 3 | 40 | 8, 16, 32, 64, 128, 136, 256 |');
  }, 300_000);

  test('a wrong launch geometry fails the check', async () => {
    const spec = JSON.parse(readFileSync(join(root, 'gemm_sm90a.json'), 'utf8')) as Sm90aBundle;
    const broken = { ...spec, units: [{ ...spec.units[1]!, kernels: spec.units[1]!.kernels.map((k) => (k.tileT === 64 ? { ...k, tileT: 128 } : k)) }] };
    const dir = mkdtempSync(join(root, 'broken-'));
    writeFileSync(join(dir, 'gemm_sm90a.json'), JSON.stringify(broken));
    rmSync(join(dir, 'gemm_sm90a'), { force: true });
    await exec('ln', ['-s', join(root, 'gemm_sm90a'), join(dir, 'gemm_sm90a')]);
    const { code, out } = await check(dir, driver);
    expect(code).toBe(1);
    expect(out.sm90a[0]!.ok).toBe(false);
    expect(out.sm90a[0]!.kernels.find((k) => k.tileT === 128 && k.worst === null)).toBeDefined();  // the launch failed (the emulator: more bytes than expect_tx announced), or NaN rows
  }, 300_000);
});
