/**
 * load({ backend: 'cuda' }) (openKernelLibrary) on a plain `tidarc compile` directory under the
 * emulated driver ($TIDARC_LIBCUDA): the driver runs the .emu.so beside each fatbin, which a
 * compile never writes. It failed with CUDA_ERROR_FILE_NOT_FOUND for the fatbin and a stderr line
 * naming functions no public entry exported; now one line says what to do (emulateCompiledDir,
 * exported from 'tidarc'), nothing from the driver on stderr, and doing it makes the same open
 * work. One variant (ar) keeps the build to one module. Needs: g++ (the driver, the module).
 */
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';
import { runTidarc } from '../helpers/cli.js';
import { scratchDir } from '../helpers/scratch.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const CHILD = resolve(import.meta.dirname, 'fixtures', 'open-cuda-child.ts');

describe.skipIf(!cxx.found)('the kernel library on the emulated driver without its modules', () => {
  test('one line says how to build them (emulateCompiledDir from \'tidarc\'); after that the cuda backend opens', { timeout: 600_000 }, async () => {
    const dir = join(await scratchDir('tidarc-open-emulated-'), 'kernels');
    const compiled = await runTidarc('compile', 'examples/tiny.json', '--arch', 'sm_90', '--no-build', '--variant', 'ar', '--out', dir);
    expect(compiled.code, compiled.stderr).toBe(0);
    const env = { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver() };
    const open = async () => {
      const { stdout, stderr } = await exec(process.execPath, ['--import', 'tsx', CHILD, dir], { env, maxBuffer: 16 << 20 });
      return { ...(JSON.parse(stdout.trim().split('\n').pop()!) as { backend?: string; reason?: string; error?: { name: string; code: string; message: string } }), stderr };
    };

    const before = await open();
    expect(before.error).toMatchObject({ name: 'TidarcError', code: 'unsupported' });
    const message = before.error!.message;
    expect(message).not.toContain('\n');
    expect(message).toBe(`the cuda backend cannot run here: the emulated CUDA driver ($TIDARC_LIBCUDA) runs the .emu.so beside each fatbin, and ${dir} has none for ar: `
      + `build them once with \`await emulateCompiledDir(${JSON.stringify(dir)})\` (import { emulateCompiledDir } from 'tidarc'), then load again (backend = cuda); allowed: auto, cpu`);
    expect(message).not.toMatch(/CUDA_ERROR_FILE_NOT_FOUND|buildEmulatedModule/);
    expect(before.stderr).toBe('');

    // What the line says, as a user would: the public entry.
    const { emulateCompiledDir } = await import('../../src/index.js');
    await emulateCompiledDir(dir);
    const after = await open();
    expect(after.error, after.stderr).toBeUndefined();
    expect(after.backend).toBe('cuda');
    expect(after.reason).toMatch(/^requested: tidarc emulated GPU/);
  });
});
