/**
 * Fold-norms end to end on the emulated driver (fixtures/fold-norms-child.ts): a random bf16
 * Qwen3 model (norm weights 1 + N(0, 0.2^2), so a dropped or misplaced gamma shows) decodes
 * through Model.generate with its RMSNorms folded into the GEMMs (loadModel's default) and not
 * (foldNorms: false, the CLI's --no-fold-norms):
 *   - the runner folds by default and says why not when switched off;
 *   - folded, greedy TiDAR == greedy AR token for token at k = 2 and k = 4 (batch invariance of
 *     the producer's sums and the consumer's scale), with CUDA graphs and launch by launch;
 *   - a sampled run is reproducible (same seed, same tokens);
 *   - each replayed decode step runs exactly 2L kernels fewer folded (layer 0's input norm stays);
 *   - unfolded, greedy TiDAR == AR as before. Tokens folded vs unfolded may differ (the bf16
 *     rounding point moves); the logits' distance to a float64 forward is norm-weights.test.ts's.
 * Tagged: a C++ compiler (the emulated driver and modules).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { packageRoot } from '../../../src/util/paths.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../../helpers/emulated-driver.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-fold-model-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SPEC = smallSpec('foldsmall', [2, 4]);
const TOKENS = 10;

interface Setup { choice: { foldNorms: boolean; foldNormsWhy?: string }; runs: Record<string, { tokens: number[]; kernelsPerReplay: number[] }> }
interface Out { folded: Setup; launches: Setup; unfolded: Setup }

describe.skipIf(!cxx.found)('fold-norms on the emulated driver', () => {
  let out: Out;
  beforeAll(async () => {
    const dir = await writeRandomModel(join(root, 'model'), SPEC, 7);
    const r = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'fold-norms-child.ts'), dir, await sharedKernelCache(), String(TOKENS)], {
      cwd: packageRoot(), env: { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver() }, maxBuffer: 64 << 20, timeout: 1_500_000,
    });
    out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Out;
    for (const [name, setup] of Object.entries(out) as [string, Setup][]) console.log(`${name}: ${Object.entries(setup.runs).map(([k, v]) => `${k} [${v.tokens.join(' ')}] ${v.kernelsPerReplay.join('')} kernels a replay`).join('; ')}`);
  }, 1_600_000);

  test('folded by default, not when switched off (and why)', () => {
    expect(SPEC.dtype).toBe('bf16');
    expect(out.folded.choice).toEqual({ options: expect.anything(), foldNorms: true });
    expect(out.launches.choice.foldNorms).toBe(true);
    expect(out.unfolded.choice).toMatchObject({ foldNorms: false, foldNormsWhy: expect.stringMatching(/switched off/) });
  });

  test('folded: greedy TiDAR == greedy AR at k = 2 and 4, graphs or not; a sampled run is reproducible', () => {
    const { runs } = out.folded;
    expect(runs['ar']!.tokens).toHaveLength(TOKENS);
    expect(runs['k2']!.tokens).toEqual(runs['ar']!.tokens);
    expect(runs['k4']!.tokens).toEqual(runs['ar']!.tokens);
    expect(out.launches.runs['k2']!.tokens).toEqual(runs['ar']!.tokens);
    expect(runs['sampledA']!.tokens).toHaveLength(TOKENS);
    expect(runs['sampledB']!.tokens).toEqual(runs['sampledA']!.tokens);
  });

  test('unfolded: greedy TiDAR == greedy AR as before', () => {
    const { runs } = out.unfolded;
    expect(runs['k2']!.tokens).toEqual(runs['ar']!.tokens);
    expect(runs['k4']!.tokens).toEqual(runs['ar']!.tokens);
  });

  test('a replayed decode step runs exactly 2L kernels fewer folded', () => {
    for (const kind of ['k2', 'k4', 'ar']) {
      const [f] = out.folded.runs[kind]!.kernelsPerReplay, [u] = out.unfolded.runs[kind]!.kernelsPerReplay;
      expect(Number.isInteger(f) && Number.isInteger(u), `${kind}: ${f} / ${u} kernels a replay`).toBe(true);
      expect(u! - f!, kind).toBe(2 * SPEC.layers);
    }
  });
});
