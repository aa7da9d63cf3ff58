/**
 * The device check's runtime part (scripts/device-check/runtime_check.mjs) when PDL fails: a driver
 * that refuses programmatic launches (the emulated driver with TIDARC_FAKE_REFUSE_PROGRAMMATIC) makes
 * the PDL-on pass throw; the part still runs the check with PDL off, in a fresh process, and says PDL
 * is the likely cause, instead of ending with the first error. On a GPU this is the difference
 * between one failed line and a diagnosis plus the TiDAR == AR check of the 15-minute window.
 * Runs on this checkout's dist/ (npm ci builds it), with the shared kernel cache. Tagged: a C++ compiler.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../helpers/emulated-driver.js';
import { type RuntimeCheckReport, expectRuntimeInvariants } from '../helpers/runtime-check.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-runtime-refused-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('runtime_check.mjs on a driver that refuses programmatic launches', () => {
  test('PDL on fails naming --no-pdl; PDL off runs in a fresh process and passes; the part fails with a diagnosis', { timeout: 900_000 }, async () => {
    const env = { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver(), TIDARC_CACHE: await sharedKernelCache(), TIDARC_FAKE_REFUSE_PROGRAMMATIC: '1' };
    const { stdout } = await exec(process.execPath, [resolve('scripts/device-check/runtime_check.mjs'), resolve('.'), root, '4', '2', '600'], { env, maxBuffer: 64 << 20 });
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as RuntimeCheckReport;
    expect(r.backend).toBe('cuda');
    expect(r.pdl?.on).toBe(true);
    expect(r.ok).toBe(false);
    expect(r.error).toHaveLength(1);
    expect(r.error![0]).toMatch(/^PDL on: .*programmatically.*CUDA_ERROR_NOT_SUPPORTED.*--no-pdl/);
    expect(r.runs).toEqual([]);  // the first programmatic launch refused: no PDL-on run finished
    const off = r.pdlOff!;
    expect(off.afterFailure).toBe(true);
    expect(off.pdl?.on).toBe(false);
    expect(off.error).toBeUndefined();
    expect(off.runs).toHaveLength(3);  // three prompts, k = 2
    expectRuntimeInvariants(off.runs!, 4);
    expect(off.ok).toBe(true);
    expect(off.tokensEqual).toBeNull();
    expect(r.diagnosis).toMatch(/^PDL is the likely cause: .*its 3 runs passed/);
  });
});
