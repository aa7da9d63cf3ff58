import { existsSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { runTidarc } from '../helpers/cli.js';

describe('tidarc doctor', () => {
  test('--json lists every check with a reason', async () => {
    const r = await runTidarc('doctor', '--json');
    expect(r.code).toBe(0);
    const list = JSON.parse(r.stdout) as { name: string; ok: boolean; detail: string }[];
    expect(list.map((c) => c.name)).toEqual(['node', 'native addon', 'C++ compiler', 'nvcc', 'CUDA driver / GPU', 'BLAS']);
    for (const c of list) expect(c.detail.length).toBeGreaterThan(0);
  });

  test.skipIf(existsSync('/dev/nvidiactl'))('says which backend auto picks and why (no driver here)', async () => {
    const r = await runTidarc('doctor');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^backend auto: cpu \(no usable CUDA \(.*libcuda.*\)\)$/m);
  });
});
