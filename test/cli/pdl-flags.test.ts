/**
 * `--no-pdl` on `tidarc bench-step` and `tidarc run`, on the emulated driver (compute capability
 * 9.0, cuLaunchKernelEx: PDL on by default): bench-step's text says "PDL on" by default and its
 * JSON `pdl: false` with the reason under --no-pdl; run's load line on stderr says which.
 * Tagged: a C++ compiler (the emulated driver and modules).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../helpers/emulated-driver.js';
import { smallSpec, writeRandomModel } from '../helpers/random-model.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-pdl-flags-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The cuda backend tests' model (emulated-backend.test.ts): its kernels compile once into the shared kernel cache. */
const SMALL = smallSpec('cudasmall', [2]);
const BENCH = ['--backend', 'cuda', '--prefix', '8', '--reps', '1', '--min-seconds', '0', '--warmup', '1'];

describe.skipIf(!cxx.found)('--no-pdl on the emulated driver', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const tidarc = (...args: string[]) => exec(process.execPath, [resolve('bin/tidarc.js'), ...args], { env, maxBuffer: 64 << 20, timeout: 600_000 });
  beforeAll(async () => {
    dir = await writeRandomModel(join(root, 'model'), SMALL, 8);
    env = { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver(), TIDARC_CACHE: await sharedKernelCache() };
  }, 600_000);

  test('bench-step: PDL on by default (text), off with --no-pdl (JSON pdl, pdlReason)', { timeout: 900_000 }, async () => {
    const on = await tidarc('bench-step', dir, ...BENCH);
    expect(on.stdout).toMatch(/; PDL on; greedy\)/);
    const off = await tidarc('bench-step', dir, ...BENCH, '--no-pdl', '--json');
    const j = JSON.parse(off.stdout) as { backend: string; pdl: boolean; pdlReason: string };
    expect(j).toMatchObject({ backend: 'cuda', pdl: false, pdlReason: expect.stringMatching(/^turned off \(--no-pdl/) });
  });

  test('run: the load line says PDL on, or off and why with --no-pdl; the same tokens', { timeout: 900_000 }, async () => {
    const args = ['run', dir, '--backend', 'cuda', '--prompt', 'hi', '--max-tokens', '3', '--ignore-eos'];
    const on = await tidarc(...args);
    const off = await tidarc(...args, '--no-pdl');
    expect(on.stderr).toMatch(/^cuda: .*; PDL on$/m);
    expect(off.stderr).toMatch(/^cuda: .*; PDL off: turned off \(--no-pdl, or loadModel pdl: false\)$/m);
    expect(off.stdout).toBe(on.stdout);
  });
});
