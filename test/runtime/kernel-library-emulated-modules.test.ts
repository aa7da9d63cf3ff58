/**
 * load({ backend: 'cuda' }) (openKernelLibrary) on a plain `tidarc compile` directory under the
 * emulated driver ($TIDARC_LIBCUDA): the driver runs the .emu.so beside each fatbin, which a
 * compile never writes. It failed with CUDA_ERROR_FILE_NOT_FOUND for the fatbin and a stderr line
 * naming functions no public entry exported; now one line says what to do (emulateCompiledDir,
 * exported from 'tidarc'), nothing from the driver on stderr, and doing it makes the same open
 * work; on a compile for sm_90a the module the 9.0 device runs is the variant's sm_90a one, which the
 * same call builds. One variant each keeps the builds to a module or two. Needs: g++ (the driver, the modules).
 */
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
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

type Opened = { backend?: string; reason?: string; error?: { name: string; code: string; message: string }; stderr: string };

/** openKernelLibrary(dir, { backend: 'cuda' }) in a child on the shared emulated driver. */
async function open(dir: string): Promise<Opened> {
  const env = { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver() };
  const { stdout, stderr } = await exec(process.execPath, ['--import', 'tsx', CHILD, dir], { env, maxBuffer: 16 << 20 });
  return { ...(JSON.parse(stdout.trim().split('\n').pop()!) as Omit<Opened, 'stderr'>), stderr };
}

const refusal = (dir: string, variants: string): string => `the cuda backend cannot run here: the emulated CUDA driver ($TIDARC_LIBCUDA) runs the .emu.so beside each fatbin, and ${dir} has none for ${variants}: `
  + `build them once with \`await emulateCompiledDir(${JSON.stringify(dir)})\` (import { emulateCompiledDir } from 'tidarc'), then load again (backend = cuda); allowed: auto, cpu`;

describe.skipIf(!cxx.found)('the kernel library on the emulated driver without its modules', () => {
  test('one line says how to build them (emulateCompiledDir from \'tidarc\'); after that the cuda backend opens', { timeout: 600_000 }, async () => {
    const dir = join(await scratchDir('tidarc-open-emulated-'), 'kernels');
    const compiled = await runTidarc('compile', 'examples/tiny.json', '--arch', 'sm_90', '--no-build', '--variant', 'ar', '--out', dir);
    expect(compiled.code, compiled.stderr).toBe(0);

    const before = await open(dir);
    expect(before.error).toMatchObject({ name: 'TidarcError', code: 'unsupported' });
    expect(before.error!.message).toBe(refusal(dir, 'ar'));
    expect(before.error!.message).not.toMatch(/\n|CUDA_ERROR_FILE_NOT_FOUND|buildEmulatedModule/);
    expect(before.stderr).toBe('');

    // What the line says, as a user would: the public entry.
    const { emulateCompiledDir } = await import('../../src/index.js');
    await emulateCompiledDir(dir);
    const after = await open(dir);
    expect(after.error, after.stderr).toBeUndefined();
    expect(after.backend).toBe('cuda');
    expect(after.reason).toMatch(/^requested: tidarc emulated GPU/);
  });

  test('a compile for sm_90a: the emulated 9.0 device runs the variant\'s sm_90a kernel, which the same call builds and the check names', { timeout: 600_000 }, async () => {
    const dir = join(await scratchDir('tidarc-open-emulated-sm90a-'), 'kernels');
    // Qwen3-8B's 64-token prefill chunk: 256 packed rows a KV head, an sm_90a kernel the cost model picks.
    const compiled = await runTidarc('compile', 'examples/qwen3-8b.json', '--arch', 'sm_90a', '--no-build', '--variant', 'prefill_c64', '--out', dir);
    expect(compiled.code, compiled.stderr).toBe(0);
    const sm90a = join(dir, 'cuda', 'prefill_c64.sm90a.emu.so');
    const { emulateCompiledDir } = await import('../../src/index.js');
    const lines: string[] = [];
    await emulateCompiledDir(dir, { log: (l) => lines.push(l) });
    expect(lines).toEqual(['[1/2] built cuda/prefill_c64.emu.so', '[2/2] built cuda/prefill_c64.sm90a.emu.so']);
    expect(existsSync(sm90a)).toBe(true);
    const opened = await open(dir);
    expect(opened.error, opened.stderr).toBeUndefined();
    expect(opened.backend).toBe('cuda');
    // Without the sm_90a module (the variant's own is there) the open is refused in the same line, naming the variant.
    rmSync(sm90a);
    const without = await open(dir);
    expect(without.error?.message).toBe(refusal(dir, 'prefill_c64'));
    expect(without.stderr).toBe('');
  });
});
