/**
 * Issue 17 item 4: the first use of a model compiles its kernels for seconds; `tidarc run`
 * says what it compiles, and how many of how many, on stderr as it goes; a warm cache prints
 * nothing of it; under --json stderr stays empty unless --progress asks (test/cli/run.test.ts
 * checks the empty stderr of a cold --json run).
 * Needs: g++ and the native addon.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runTidarc } from '../helpers/cli.js';
import { smallSpec, writeRandomModel } from '../helpers/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-run-progress-'));
let dir: string;

beforeAll(async () => {
  dir = await writeRandomModel(root, smallSpec('progress', [1], { layers: 1 }), 2);
}, 120_000);

afterAll(() => {
  delete process.env['TIDARC_CACHE'];
  rmSync(root, { recursive: true, force: true });
});

/** The progress lines of a CPU compile: a first line, then [i/n] per C++ source, then the library. */
function expectProgress(stderr: string): void {
  const lines = stderr.split('\n');
  expect(lines[0]).toMatch(/^compiling the kernels of progress for cpu \(first use; kept in .*kernels[/\\]progress-cpu-[0-9a-f]{16}\)$/);
  const steps = lines.filter((l) => /^\[\d+\/\d+\] /.test(l));
  const n = Number(/^\[\d+\/(\d+)\]/.exec(steps[0] ?? '')?.[1]);
  expect(n).toBeGreaterThanOrEqual(4); // the library and one source per variant
  expect(steps).toHaveLength(n);
  expect(steps.map((l) => Number(/^\[(\d+)\//.exec(l)![1])).sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  for (const l of steps) expect(l).toMatch(/^\[\d+\/\d+\] \S+ cpu\/\S+\.cpp \d+\.\d s$/);
  expect(lines).toContainEqual(expect.stringMatching(/^cpu: cpu\/libtidarc_cpu\.so \(\d+ sources, .*\) \d+\.\d s$/));
  expect(stderr).not.toContain('CUDA sources written');
}

describe('tidarc run on a cold kernel cache', () => {
  test('prints the compile progress on stderr, then only the summary once the kernels are cached', async () => {
    process.env['TIDARC_CACHE'] = join(root, 'cache-text');
    const cold = await runTidarc('run', dir, '--prompt', 'hi', '--max-tokens', '4', '--threads', '1');
    expect(cold.code, cold.stderr).toBe(0);
    expectProgress(cold.stderr);
    expect(cold.stderr).toMatch(/\n\[tidar k=1, cpu\] \d+ tokens in \d+ forwards/);
    const warm = await runTidarc('run', dir, '--prompt', 'hi', '--max-tokens', '4', '--threads', '1');
    expect(warm.code).toBe(0);
    expect(warm.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^\[tidar k=1, cpu\] /)]);
  }, 300_000);

  test('--json --progress prints the progress on stderr and the result on stdout', async () => {
    process.env['TIDARC_CACHE'] = join(root, 'cache-json');
    const r = await runTidarc('run', dir, '--prompt', 'hi', '--max-tokens', '4', '--threads', '1', '--json', '--progress');
    expect(r.code, r.stderr).toBe(0);
    expectProgress(r.stderr);
    expect(JSON.parse(r.stdout)).toMatchObject({ mode: 'tidar', backend: 'cpu' });
  }, 300_000);
});
