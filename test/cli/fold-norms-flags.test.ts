/**
 * `--no-fold-norms` on `tidarc bench-step` and `tidarc run`, on the emulated driver: a bf16
 * model's norms are folded into its GEMMs by default (bench-step's text "norms folded", its JSON
 * `foldNorms: true`), not with the flag (`foldNorms: false` and `foldNormsWhy`); run decodes
 * either way.
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
const root = mkdtempSync(join(tmpdir(), 'tidarc-fold-flags-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The cuda backend tests' model (emulated-backend.test.ts): its kernels compile once into the shared kernel cache. */
const SMALL = smallSpec('cudasmall', [2]);
const BENCH = ['--backend', 'cuda', '--prefix', '8', '--reps', '1', '--min-seconds', '0', '--warmup', '1'];

describe.skipIf(!cxx.found)('--no-fold-norms on the emulated driver', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const tidarc = (...args: string[]) => exec(process.execPath, [resolve('bin/tidarc.js'), ...args], { env, maxBuffer: 64 << 20, timeout: 600_000 });
  beforeAll(async () => {
    dir = await writeRandomModel(join(root, 'model'), SMALL, 9);
    env = { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver(), TIDARC_CACHE: await sharedKernelCache() };
  }, 600_000);

  test('bench-step: folded by default (text and JSON), not with --no-fold-norms (JSON foldNorms, foldNormsWhy)', { timeout: 900_000 }, async () => {
    const on = await tidarc('bench-step', dir, ...BENCH);
    expect(on.stdout).toMatch(/; norms folded; PDL (on|off)/);
    const onJson = JSON.parse((await tidarc('bench-step', dir, ...BENCH, '--json')).stdout) as Record<string, unknown>;
    expect(onJson).toMatchObject({ backend: 'cuda', foldNorms: true });
    expect(onJson['foldNormsWhy']).toBeUndefined();
    const off = JSON.parse((await tidarc('bench-step', dir, ...BENCH, '--no-fold-norms', '--json')).stdout) as Record<string, unknown>;
    expect(off).toMatchObject({ backend: 'cuda', foldNorms: false, foldNormsWhy: expect.stringMatching(/switched off \(--no-fold-norms/) });
  });

  test('run: decodes with and without the fold', { timeout: 900_000 }, async () => {
    const args = ['run', dir, '--backend', 'cuda', '--prompt', 'hi', '--max-tokens', '3', '--ignore-eos', '--json'];
    for (const extra of [[], ['--no-fold-norms']]) {
      const r = JSON.parse((await tidarc(...args, ...extra)).stdout) as { tokens: number[] };
      expect(r.tokens, extra.join(' ')).toHaveLength(3);
    }
  });
});
