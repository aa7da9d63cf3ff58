/**
 * The cuda backend end to end on the emulated CUDA driver: the addon dlopens
 * $TIDARC_LIBCUDA (runtime/emu/fake_cuda.cpp built as libcuda.so.1), the runtime uploads the
 * weights, launches the GPU operators and the compiled attention kernels through
 * cuLaunchKernel, and decodes. Invariants 1 and 3 of the runtime issue, on this backend: greedy
 * TiDAR == greedy AR, and the committed caches of the two runs agree (layer 0 bitwise, deeper
 * layers within bf16 rounding) with nothing written past the committed length.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { buildEmulatedDriver } from '../../../src/emulate/emulated-driver.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-cuda-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('cuda backend on the emulated driver', () => {
  test('greedy TiDAR (k = 2) == greedy AR, the same committed cache', { timeout: 900_000 }, async () => {
    const driver = await buildEmulatedDriver(join(root, 'driver'));
    const dir = await writeRandomModel(root, smallSpec('emucuda', [2]), 5);
    const { stdout, stderr } = await exec(process.execPath, [resolve('node_modules/tsx/dist/cli.mjs'), resolve('test/runtime/cuda/fixtures/cuda-decode.ts'), dir, join(root, 'cache'), '2', '16'], {
      env: { ...process.env, TIDARC_LIBCUDA: driver },
      maxBuffer: 64 << 20,
    });
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as { backend: string; reason: string; ar: number[]; tidar: number[]; tidarNfe: number; arNfe: number; comparedSlots: number; layer0Differing: number; maxRelDiff: number; writtenPastLength: number };
    expect(r.backend, stderr).toBe('cuda');
    expect(r.reason).toMatch(/tidarc emulated/);
    expect(r.ar).toHaveLength(16);
    expect(r.tidar).toEqual(r.ar);
    expect(r.tidarNfe).toBeLessThanOrEqual(r.arNfe);
    expect(r.comparedSlots).toBeGreaterThan(9 + 10);
    expect(r.layer0Differing).toBe(0);
    expect(r.maxRelDiff).toBeLessThan(2 ** -6);
    expect(r.writtenPastLength).toBe(0);
  });
});
