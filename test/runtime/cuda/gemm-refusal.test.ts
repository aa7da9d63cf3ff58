/**
 * A linear layer the generated GEMMs refuse (down_proj with K = intermediate size 100, not a
 * multiple of 8) on the cuda backend: the compile names it under "gemmRefusals", the runner runs
 * it on tidarc_op_matmul while the other layers stay on the GEMMs, and greedy TiDAR still equals
 * greedy AR. On the emulated driver (built CLI, dist/). Tagged: a C++ compiler.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import type { Manifest } from '../../../src/codegen/manifest.js';
import { sharedEmulatedDriver } from '../../helpers/emulated-driver.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-gemm-refusal-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('a refused GEMM on the cuda backend (emulated driver)', () => {
  test('named in the manifest, run by tidarc_op_matmul; greedy TiDAR == greedy AR', { timeout: 600_000 }, async () => {
    const driver = await sharedEmulatedDriver();
    const dir = await writeRandomModel(root, { ...smallSpec('gemmrefusal', [2]), intermediateSize: 100 }, 6);
    const cache = join(root, 'cache');
    const run = async (...extra: string[]) => {
      const { stdout } = await exec(process.execPath, [resolve('bin/tidarc.js'), 'run', dir, '--backend', 'cuda', '--prompt', 'def f(x):', '--max-tokens', '6', '--ignore-eos', '--json', ...extra],
        { env: { ...process.env, TIDARC_LIBCUDA: driver, TIDARC_CACHE: cache }, maxBuffer: 64 << 20 });
      return JSON.parse(stdout) as { tokens: number[]; backend: string };
    };
    const ar = await run('--mode', 'ar');
    expect(ar.backend).toBe('cuda');
    expect(ar.tokens).toHaveLength(6);
    expect((await run('--draft', '2')).tokens).toEqual(ar.tokens);
    const kernels = join(cache, 'kernels');
    const manifest = JSON.parse(readFileSync(join(kernels, readdirSync(kernels)[0]!, 'manifest.json'), 'utf8')) as Manifest;
    expect(manifest.gemmRefusals?.map((r) => [r.role, r.n, r.k])).toEqual([['down', 128, 100]]);
    expect([...new Set(manifest.gemms!.flatMap((g) => g.roles))].sort()).toEqual(['gate_up', 'lm_head', 'o', 'qkv']);
  });
});
