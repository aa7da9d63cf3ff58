/**
 * The device check's runtime part (scripts/device-check/runtime_check.mjs) on drivers that refuse
 * programmatic launches (the emulated driver with TIDARC_FAKE_REFUSE_PROGRAMMATIC):
 *   - refusing every one: the load's probe (src/runtime/cuda/pdl-probe.ts) turns PDL off and says
 *     why, and the model decodes with plain launches (what `tidarc run` does on such a driver);
 *   - refusing after the probe's two: the PDL-on pass throws; the part still runs the check with PDL
 *     off, in a fresh process, and says PDL is the likely cause, instead of ending with the first
 *     error (on a GPU: a diagnosis plus the TiDAR == AR check of the 15-minute window);
 *   - a fault at the probe's programmatic launch ("fault": sticky): the load throws, and the same.
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

async function runtimeCheck(refuse: string, budget = '600'): Promise<RuntimeCheckReport> {
  const env = { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver(), TIDARC_CACHE: await sharedKernelCache(), TIDARC_FAKE_REFUSE_PROGRAMMATIC: refuse };
  const { stdout } = await exec(process.execPath, [resolve('scripts/device-check/runtime_check.mjs'), resolve('.'), mkdtempSync(join(root, 'work-')), '4', '2', budget], { env, maxBuffer: 64 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as RuntimeCheckReport;
}

describe.skipIf(!cxx.found)('runtime_check.mjs on a driver that refuses programmatic launches', () => {
  test('refusing every one: the load\'s probe turns PDL off, says why, and the model decodes with plain launches', { timeout: 900_000 }, async () => {
    const r = await runtimeCheck('1');
    expect(r.pdl).toEqual({ on: false, why: expect.stringMatching(/^the driver refused programmatic dependent launch at load \(CUDA: cannot launch tidarc_op_to_float programmatically: .*CUDA_ERROR_NOT_SUPPORTED.*\): the kernels launch plainly$/) });
    expect(r.error).toBeUndefined();
    expect(r.runs).toHaveLength(3);
    expectRuntimeInvariants(r.runs, 4);
    expect(r.pdlOff?.skipped).toMatch(/^PDL was not on \(the driver refused/);
    expect(r.ok).toBe(true);
  });

  test('refusing after the probe: PDL on fails naming --no-pdl; PDL off runs in a fresh process and passes; the part fails with a diagnosis', { timeout: 900_000 }, async () => {
    const r = await runtimeCheck('after:2');  // the probe's two programmatic launches pass
    expect(r.backend).toBe('cuda');
    expect(r.pdl).toEqual({ on: true, why: expect.stringMatching(/a programmatic launch and a captured programmatic edge ran at load$/) });
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

  test('PDL on throws with no budget left: no PDL-off process is started, and the diagnosis says undecided (not "not PDL alone")', { timeout: 900_000 }, async () => {
    const r = await runtimeCheck('after:2', '0');
    expect(r.ok).toBe(false);
    expect(r.error![0]).toMatch(/^PDL on: .*--no-pdl/);
    const off = r.pdlOff! as NonNullable<RuntimeCheckReport['pdlOff']> & { notRun?: string };
    expect(off.afterFailure).toBe(true);
    expect(off.runs).toEqual([]);
    expect(off.skipped).toHaveLength(3);
    expect(off.notRun).toMatch(/s of the part's budget left, under the 5 s a fresh process needs/);
    expect(off.ok).toBeNull();
    expect(r.diagnosis).toMatch(/^undecided: with PDL on the check threw, and PDL off ran nothing/);
  });

  test('a fault at the load\'s probe (the load throws naming --no-pdl): PDL off still runs in a fresh process, with the diagnosis', { timeout: 900_000 }, async () => {
    const r = await runtimeCheck('fault');  // the probe's programmatic launch fails sticky: loadModel throws
    expect(r.backend).toBeUndefined();
    expect(r.ok).toBe(false);
    expect(r.error![0]).toMatch(/programmatically.*CUDA_ERROR_LAUNCH_FAILED.*--no-pdl/);
    const off = r.pdlOff!;
    expect(off.afterFailure).toBe(true);
    expect(off.pdl?.on).toBe(false);
    expect(off.runs).toHaveLength(3);
    expectRuntimeInvariants(off.runs!, 4);
    expect(off.ok).toBe(true);
    expect(r.diagnosis).toMatch(/^PDL is the likely cause: with PDL on the load threw .*its 3 runs passed/);
  });
});
