/**
 * The GPU device check's parts that run without a GPU (issue 5): the bundle (grid.json from
 * the IR), the whole check in --dry-run on the emulated CUDA driver (the same ctypes driver
 * code, launch packing and float64 reference as on a GPU; a wrong mask must fail it), and the
 * report writer on recorded sample data.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DRY_RUN_GRID, type BundleGrid, prepareDeviceBundle } from '../../src/bench/device-bundle.js';
import { findCxx } from '../../src/build/toolchain.js';
import { buildEmulatedDriver } from '../../src/emulate/emulated-driver.js';
import { expectWellFormedXml } from '../helpers/well-formed-xml.js';

const exec = promisify(execFile);
const SCRIPT = resolve('scripts/device-check/device_check.py');
const cxx = await findCxx();
const numpy = await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-device-check-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function runCheck(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('python3', [SCRIPT, ...args], { env, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe.skipIf(!cxx.found || !numpy)('device check without a GPU', () => {
  let grid: BundleGrid;
  let driver: string;
  const bundle = join(root, 'bundle');
  beforeAll(async () => {
    grid = await prepareDeviceBundle({ outDir: bundle, grid: DRY_RUN_GRID, emulated: true });
    driver = await buildEmulatedDriver(join(root, 'driver'));
  }, 600_000);

  test('grid.json describes every variant with its mask from the IR', () => {
    expect(grid.models).toHaveLength(DRY_RUN_GRID.length);
    const k2 = grid.models[0]!.variants.find((v) => v.name === 'tidar_k2')!;
    expect(k2.steps).toBe(6);
    expect(k2.visible).toEqual(['100000', '110000', '101100', '101100', '110011', '110011']);
    expect(k2.offsets).toEqual([0, 1, 1, 2, 2, 3]);
    expect(k2.prefixVisible).toBe(true);
  });

  test('--dry-run: every variant, batch 1 and 2, splits 1 and 2, within tolerance on the emulated driver; the runtime part too', async () => {
    const out = join(root, 'out');
    // --runtime-root: runtime_check.mjs on this checkout's dist (built by npm ci), as the GPU run does on the packed one.
    const r = await runCheck(['--bundle', bundle, '--out', out, '--dry-run', '--runtime-root', resolve('.')], { ...process.env, TIDARC_LIBCUDA: driver });
    expect(r.code, r.stderr).toBe(0);
    const data = JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { correctness: { ok: boolean; maxError: number }[]; runtime: { ok: boolean; backend: string; runs: { equal: boolean }[] } };
    expect(data.runtime.backend).toBe('cuda');
    expect(data.runtime.runs.length).toBe(3);
    expect(data.runtime.runs.every((x) => x.equal)).toBe(true);
    expect(data.runtime.ok).toBe(true);
    const variants = grid.models.reduce((n, m) => n + m.variants.length, 0);
    expect(data.correctness).toHaveLength(variants * 4);
    for (const c of data.correctness) expect(c.ok).toBe(true);
    expect(r.stdout).toMatch(new RegExp(`correctness: ${variants * 4}/${variants * 4} ok`));
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(/## Correctness: \d+ of \d+ checks ok/);
  }, 600_000);

  test('--dry-run fails (exit 1) when the mask it checks against differs from the kernel\'s', async () => {
    const broken = JSON.parse(readFileSync(join(bundle, 'grid.json'), 'utf8')) as BundleGrid;
    const v = broken.models[0]!.variants.find((x) => x.name === 'tidar_k2')! as unknown as { visible: string[] };
    v.visible[1] = '100000';  // d1 no longer sees itself
    writeFileSync(join(bundle, 'grid.json'), JSON.stringify(broken));
    try {
      const r = await runCheck(['--bundle', bundle, '--out', join(root, 'out-broken'), '--dry-run'], { ...process.env, TIDARC_LIBCUDA: driver });
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/FAILED: bf16-d64-q4-kv1\/tidar_k2/);
    } finally {
      writeFileSync(join(bundle, 'grid.json'), `${JSON.stringify(grid, null, 1)}\n`);
    }
  }, 600_000);
});

describe.skipIf(!numpy)('device check report writer', () => {
  test('--report-only renders recorded results: tables, goals, a chart', async () => {
    const out = join(root, 'report');
    const r = await runCheck(['--report-only', resolve('test/bench/fixtures/device-check-sample.json'), '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const md = readFileSync(join(out, 'device-check.md'), 'utf8');
    expect(md).toMatch(/Ceilings measured in this run: device-to-device copy 4\.00 TB\/s, bf16 matmul 800 TFLOP\/s/);
    expect(md).toMatch(/\| tidar_k16 \| 272 \| 16384 \| 1 \| 100\.0 \(98\.0-104\.0\) \| 140\.0 \| 400\.0 \| 1\.40x \| 4\.00x \|/);
    expect(md).toMatch(/error: sample failure/);
    expect(md).toMatch(/\| TiDAR k=16 step >= 1\.3x faster than FlexAttention \(L >= 4k\) \| 1\.40x \(worst point\) \| yes \|/);
    expect(md).toMatch(/\| AR step >= 85% of copy bandwidth at >= 256 MB of KV \| 90% \(worst point\) \| yes \|/);
    expect(md).toMatch(/\| k=4 step <= 1\.15x the AR step \(L >= 4k\) \| 1\.15x \(worst point\) \| yes \|/);
    expect(md).toMatch(/Skipped for the time budget: tidar_k16 L=65536 B=8/);
    expectWellFormedXml(readFileSync(join(out, 'device-check.svg'), 'utf8'));
    expect(r.stdout.trim().split('\n').pop()).toMatch(/tidar_k16 L=16384 +B=1: tidarc +100\.0 us +flex +140\.0 +sdpa +400\.0/);
  });
});
