/**
 * A model load gives the CUDA primary context back whenever it is done with the device
 * (src/load/model-parts.ts over CudaDevice.close(), which releases it: runtime/src/cuda/cuda_napi.cc):
 *   - load (cuda), generate, close: no context; a second load in the same process generates the
 *     same tokens (every module loaded again, no stale function handle) and closes to none;
 *   - `--backend auto` on a device too small for the model runs on the cpu backend and holds no
 *     context while it runs (it kept the probe's and the preflight's context for the whole run);
 *   - a load whose upload fails after the device opened holds none either;
 *   - `tidarc doctor`'s GPU memory line opens the device and closes it (it held the context);
 *   - a model whose context a kernel fault left unusable: close() throws the first refused free
 *     and still releases the context (its runners' refused close skipped the device's, which kept
 *     the faulted context retained), and a second load in the process generates the same.
 * The state is the driver's (cuDevicePrimaryCtxGetState) and tidarc's open devices. Children on
 * the emulated driver (the addon picks its driver once per process). Tagged: a C++ compiler.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { packageRoot } from '../../src/util/paths.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../helpers/emulated-driver.js';
import { smallSpec, writeRandomModel } from '../helpers/random-model.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-model-parts-context-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The cuda backend tests' model (emulated-backend.test.ts): its kernels compile once into the shared kernel cache. */
const SMALL = smallSpec('cudasmall', [2]);
const none = { active: false, opens: 0 };
const held = { active: true, opens: 1 };

describe.skipIf(!cxx.found)('the context after a load on the emulated driver', () => {
  let model: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    model = await writeRandomModel(root, SMALL, 5);
    env = { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver(), TIDARC_CACHE: await sharedKernelCache() };
    delete env['TIDARC_DEBUG'];
  }, 600_000);

  const child = async (mode: string, extra: NodeJS.ProcessEnv = {}): Promise<Record<string, unknown>> => {
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'model-parts-context-child.ts'), mode, model, env['TIDARC_CACHE']!], {
      cwd: packageRoot(), env: { ...env, ...extra }, maxBuffer: 64 << 20, timeout: 840_000,
    });
    return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  };

  test('load, generate, close: no context; a second load generates the same and closes to none', { timeout: 900_000 }, async () => {
    const out = await child('reload');
    expect(out.before).toEqual(none);
    // One device per load: the probe's, kept for the preflight and the upload.
    expect(out.loaded1).toEqual(held);
    expect(out.closed).toEqual(none);
    expect(out.loaded3).toEqual(held);
    expect(out.closedAgain).toEqual(none);
    expect(out.tokens).toHaveLength(6);
    expect(out.same).toBe(true);
  });

  test('--backend auto on a device too small: cpu, and no context while it runs', { timeout: 900_000 }, async () => {
    const out = await child('auto', { TIDARC_FAKE_DEVICE_MEMORY: String(1 << 20) });
    expect(out.backend).toBe('cpu');
    expect(out.whileCpu).toEqual(none);
    expect(out.closed).toEqual(none);
  });

  test('a load whose upload fails after the device opened holds no context', { timeout: 900_000 }, async () => {
    const out = await child('fail', { TIDARC_FAKE_FAIL_ALLOC: '3' });
    expect(out.error).toMatch(/^CUDA: cannot allocate \d+ bytes for model\.\S+: cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY/);
    expect(out.afterFailure).toEqual(none);
  });

  test('tidarc doctor reads the GPU\'s memory and gives the context back', { timeout: 900_000 }, async () => {
    const out = await child('doctor');
    expect(out.gpuMemory).toMatch(/free of .* on /);
    expect(out.afterDoctor).toEqual(none);
  });

  test('a kernel fault: close() throws but gives the context back, and the next load runs', { timeout: 900_000 }, async () => {
    const out = await child('fault', { TIDARC_FAKE_REFUSE_PROGRAMMATIC: 'fault' });
    expect(out.faulted).toMatch(/cuLaunchKernelEx failed: CUDA_ERROR_LAUNCH_FAILED/);
    expect(out.closeError).toMatch(/CUDA_ERROR_LAUNCH_FAILED/);
    expect(out.afterClose).toEqual(none);
    expect(out.same).toBe(true);
    expect(out.end).toEqual(none);
  });
});
