/**
 * scripts/device-check/results.py: a device check's output folder becomes
 * bench/results/<date>-<gpu>/ in one command (the JSON, the tables, a README with GPU, driver and
 * CUDA version and each part's result); a dry run and an existing folder are refused. Needs python3.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';

const exec = promisify(execFile);
const SCRIPT = resolve('scripts/device-check/results.py');
const SAMPLE = resolve('test/bench/fixtures/device-check-sample.json');
const python = await exec('python3', ['--version']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-results-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function results(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return exec('python3', [SCRIPT, ...args]).then((r) => ({ code: 0, ...r }), (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }));
}

describe.skipIf(!python)('results.py', () => {
  const out = join(root, 'out');
  const into = join(root, 'bench-results');
  mkdirSync(out, { recursive: true });
  const sample = JSON.parse(readFileSync(SAMPLE, 'utf8')) as Record<string, unknown>;
  writeFileSync(join(out, 'device-check.json'), JSON.stringify({
    ...sample, device: { ...(sample.device as object), name: 'NVIDIA H200', nvidiaSmi: '580.159.04, 1980 MHz, 3201 MHz' }, date: '2026-12-05', budgetS: 420,
    parts: [{ name: 'facts', status: 'ok', seconds: 9.5 }, { name: 'e2e', status: 'not started', why: '2 s left of its window' }],
  }));
  writeFileSync(join(out, 'device-check.log'), 'part facts: ok\n');

  test('the folder is named by date and GPU and holds the JSON, the tables and a README with GPU, driver, CUDA version and the parts', async () => {
    const r = await results([out, '--into', into]);
    expect(r.code, r.stderr).toBe(0);
    const dest = join(into, '2026-12-05-h200');
    expect(r.stdout.trim()).toBe(dest);
    for (const f of ['device-check.json', 'device-check.md', 'device-check.svg', 'device-check.log', 'README.md']) expect(existsSync(join(dest, f)), f).toBe(true);
    const md = readFileSync(join(dest, 'README.md'), 'utf8');
    expect(md).toMatch(/^# Device check on NVIDIA H200, 2026-12-05$/m);
    expect(md).toContain('| GPU | NVIDIA H200 |');
    expect(md).toContain('| driver | 580.159.04, 1980 MHz, 3201 MHz |');
    expect(md).toContain('| CUDA (torch) | 13.0 |');
    expect(md).toContain('| ceilings | copy 4.00 TB/s, bf16 matmul 800 TFLOP/s |');
    expect(md).toContain('| e2e | not started | - | 2 s left of its window |');
    expect(md).toMatch(/tidar_k16 L=16384 +B=1: tidarc +100\.0 us/);
  });

  test('a run on an H100 SXM goes to an h100 folder, not the h200 one', async () => {
    const h100 = join(root, 'h100');
    mkdirSync(h100);
    writeFileSync(join(h100, 'device-check.json'), JSON.stringify({ ...sample, device: { ...(sample.device as object), name: 'NVIDIA H100 80GB HBM3' }, date: '2026-12-05' }));
    const r = await results([h100, '--into', into]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(join(into, '2026-12-05-h100-80gb-hbm3'));
    expect(readFileSync(join(into, '2026-12-05-h100-80gb-hbm3', 'README.md'), 'utf8')).toMatch(/^# Device check on NVIDIA H100 80GB HBM3, 2026-12-05$/m);
  });

  test('an existing folder is refused without --replace; a dry run always', async () => {
    const again = await results([out, '--into', into]);
    expect([again.code, again.stderr.trim()]).toEqual([1, `tidarc: error: ${join(into, '2026-12-05-h200')}: already exists; allowed: a new folder, or --replace`]);
    expect((await results([out, '--into', into, '--replace'])).code).toBe(0);
    const dry = join(root, 'dry');
    mkdirSync(dry);
    copyFileSync(SAMPLE, join(dry, 'device-check.json'));
    writeFileSync(join(dry, 'device-check.json'), JSON.stringify({ ...sample, dryRun: true }));
    const r = await results([dry, '--into', into]);
    expect([r.code, r.stderr.trim()]).toEqual([1, `tidarc: error: ${join(dry, 'device-check.json')}: a dry run (emulator figures are not a GPU's results)`]);
  });
});
