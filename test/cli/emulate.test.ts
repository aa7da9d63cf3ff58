/** `tidarc emulate` as a user runs it: table, JSON contract, exit codes, option errors. */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx, findNvcc } from '../../src/build/toolchain.js';
import { emulatorRuntimeEntry } from '../../src/emulate/runtime-cache.js';
import { loadNative } from '../../src/runtime/native.js';
import { packageRoot } from '../../src/util/paths.js';
import { expectOneErrorLine, runTidarc } from '../helpers/cli.js';

const cxx = await findCxx();
const nvcc = await findNvcc();
const gpu = loadNative().cudaStatus();
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-cli-emu-'));
const compiled = join(scratch, 'tiny');

const run = runTidarc;

// The emulator runtime is cached in the kernel cache (src/emulate/runtime-cache.ts): this file's
// own, so its runs build it once and a user's ~/.cache is never touched.
const cacheDir = join(scratch, 'cache');
let savedCache: string | undefined;
beforeAll(async () => {
  savedCache = process.env['TIDARC_CACHE'];
  process.env['TIDARC_CACHE'] = cacheDir;
  expect((await run('compile', join(packageRoot(), 'examples', 'tiny.json'), '--no-build', '--out', compiled)).code).toBe(0);
}, 120_000);
afterAll(() => {
  if (savedCache === undefined) delete process.env['TIDARC_CACHE'];
  else process.env['TIDARC_CACHE'] = savedCache;
  rmSync(scratch, { recursive: true, force: true });
});

describe.skipIf(!cxx.found)('tidarc emulate', () => {
  test('--json prints the contract for one variant and exits 0', async () => {
    const r = await run('emulate', compiled, '--variant', 'tidar_k2', '--batch', '2', '--prefix', '5,70', '--splits', '1,2', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(row).toMatchObject({ variant: 'tidar_k2', findings: [], completed: true, ok: true, prefixLen: [5, 70] });
      for (const k of ['maxError', 'meanError', 'tolerance']) expect(typeof row[k]).toBe('number');
      expect(row['maxError'] as number).toBeLessThanOrEqual(row['tolerance'] as number);
    }
  }, 120_000);

  test('the table says what it checked', async () => {
    const r = await run('emulate', compiled, '--variant', 'ar', '--splits', '1');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^(emulator runtime: cached|building the emulator runtime) \(/m);
    expect(r.stdout).toMatch(/built the emulator of ar/);
    // Progress as each check ends (a large variant's check runs for minutes), before the table.
    expect(r.stdout).toMatch(/^\[1\/1\] checked ar at splits 1: ok \(\d+\.\d s\)\nvariant /m);
    expect(r.stdout).toMatch(/ar\s+1\s+37,18\s+.*ok/);
    expect(r.stdout).toContain('all 1 checks passed');
  }, 120_000);

  test('a second run links the cached emulator runtime: nothing compiled, nothing rewritten', async () => {
    expect((await run('emulate', compiled, '--variant', 'ar', '--splits', '1', '--json')).code).toBe(0);
    if (!cxx.found) throw new Error(cxx.reason);
    const entry = emulatorRuntimeEntry(cxx.tool, cacheDir);
    const objects = readFileSync(join(entry, 'objects.json'), 'utf8');
    const mtimes = () => (JSON.parse(objects) as { objects: { name: string }[] }).objects.map((o) => statSync(join(entry, o.name)).mtimeMs);
    const before = mtimes();
    expect(before).toHaveLength(7);
    const r = await run('emulate', compiled, '--variant', 'ar', '--splits', '1');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`emulator runtime: cached (${entry})`);
    expect(r.stdout).not.toContain('building the emulator runtime');
    expect(mtimes()).toEqual(before);
  }, 120_000);

  test('a wrong kernel gives exit code 1 and names the failing variant', async () => {
    const broken = join(scratch, 'broken');
    expect((await run('compile', join(packageRoot(), 'examples', 'tiny.json'), '--no-build', '--out', broken)).code).toBe(0);
    const path = join(broken, 'cuda', 'tidar_k2.cu');
    writeFileSync(path, readFileSync(path, 'utf8').replace('(tk <= tq)', '(tk < tq)'));
    const r = await run('emulate', broken, '--variant', 'tidar_k2', '--splits', '1');
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('MISMATCH');
    expect(r.stderr.trim().split('\n')).toEqual(['tidarc: error: kernels failed their check on the emulator: tidar_k2 (splits 1)']);
  }, 120_000);
});

describe.skipIf(!nvcc.found || !gpu.available)('tidarc emulate --on gpu, on a GPU', () => {
  test('builds the nvcc harness of a variant and passes the same checks', async () => {
    const r = await run('emulate', compiled, '--variant', 'ar', '--splits', '1', '--on', 'gpu', '--arch', 'sm_80', '--json');
    const rows = JSON.parse(r.stdout) as { ok: boolean; timing?: { ms: number } }[];
    expect(rows).toHaveLength(1);
    expect(r.code).toBe(0);
    expect(rows[0]!.ok).toBe(true);
    expect(rows[0]!.timing!.ms).toBeGreaterThan(0);
  }, 180_000);
});

describe.skipIf(gpu.available)('tidarc emulate --on gpu without a GPU or driver', () => {
  // Issue 17 item 5: it printed the CUDA runtime's "driver version is insufficient" as a
  // finding of every variant, with Infinity errors, after building every harness with nvcc.
  test.for([[], ['--json']])('says there is no GPU in one line and exits 1, before building anything %s', async (extra) => {
    const r = await run('emulate', compiled, '--variant', 'ar', '--splits', '1', '--on', 'gpu', '--arch', 'sm_80', ...extra);
    expectOneErrorLine(r, 'there is no usable GPU or CUDA driver here', gpu.reason, '(--on = gpu)', 'allowed: emulator on this machine');
    expect(r.stderr).not.toMatch(/Infinity|kernels failed/);
  });
});

describe('tidarc emulate errors', () => {
  test.for([
    [['emulate', join(scratch, 'nope')], /no manifest\.json/],
    [['emulate', compiled, '--variant', 'tidar_k99'], /no such variant in this directory \(--variant = tidar_k99\); allowed: tidar_k2, tidar_k4, block_k2, block_k4, ar, prefill_c64/],
    [['emulate', compiled, '--batch', '0'], /--batch = 0\); allowed: an integer from 1 to 16/],
    [['emulate', compiled, '--splits', '1,x'], /--splits = 1,x\); allowed: integers from 1 to 16/],
    [['emulate', compiled, '--on', 'tpu'], /unknown target \(--on = tpu\); allowed: emulator, gpu/],
  ] as const)('%s', async ([argv, message]) => {
    const r = await run(...argv);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^tidarc: error: /);
    expect(lines[0]).toMatch(message);
  });

  test('--help lists every option with examples and the limits', async () => {
    const r = await run('emulate', '--help');
    for (const opt of ['--variant', '--batch', '--prefix', '--splits', '--seed', '--jobs', '--json']) expect(r.stdout).toContain(opt);
    expect(r.stdout).toContain('Examples:');
    expect(r.stdout).toContain('not a GPU');
  });
});
