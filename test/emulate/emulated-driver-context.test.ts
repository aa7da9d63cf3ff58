/**
 * The primary context of the emulated CUDA driver (runtime/emu/fake_cuda.cpp) is reference-counted
 * as on a GPU, which the runtime's release of it (runtime/src/cuda/cuda_napi.cc close()) is
 * tested against: fixtures/context_driver_client.cpp loads libcuda.so.1 as the runtime does.
 * A release without a retain is CUDA_ERROR_INVALID_CONTEXT; two retains need two releases;
 * cuDevicePrimaryCtxGetState is active exactly while a reference is held; after the last
 * release the context's memory calls fail (CUDA_ERROR_INVALID_CONTEXT) until a new retain;
 * cuModuleUnload of a module the context does not hold is CUDA_ERROR_INVALID_HANDLE.
 * Tagged: g++.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { packageRoot } from '../../src/util/paths.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-driver-context-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('the emulated driver\'s primary context', () => {
  test('is reference-counted as on a GPU; a release without a retain and an unknown module are errors', { timeout: 600_000 }, async () => {
    if (!cxx.found) return;
    const library = await sharedEmulatedDriver();
    const client = join(root, 'context_driver_client');
    await exec(cxx.tool.path, ['-std=c++17', '-O1', `-I${join(packageRoot(), 'runtime', 'src', 'cuda')}`, join(packageRoot(), 'test', 'emulate', 'fixtures', 'context_driver_client.cpp'), '-o', client, '-ldl']);
    const { stdout } = await exec(client, [library], { timeout: 60_000 });
    const lines = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { check?: string; got?: number; want?: number; done?: boolean });
    expect(lines.at(-1)).toEqual({ done: true });
    const checks = lines.filter((l) => l.check !== undefined);
    expect(checks).toHaveLength(20);
    for (const c of checks) expect({ check: c.check, got: c.got }).toEqual({ check: c.check, got: c.want });
  });
});
