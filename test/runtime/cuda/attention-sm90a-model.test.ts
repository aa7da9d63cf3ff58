/**
 * A model on the emulated driver's 9.0 device through the kernel cache (openModelParts: the
 * emulator target, which makes the compute-bound variants' sm_90a attention and names sm_90a
 * among the compile's arches) takes the sm_90a attention where a variant has one, and greedy
 * TiDAR still equals greedy AR token for token. The model: head dim 64, 4 query heads on 1 KV
 * head (G = 4), k = 8: the TiDAR step (72 x 4 = 288 rows a KV head) and the prefill chunk
 * (64 x 4 = 256) get sm_90a kernels, AR's 4 rows stay on mma.sync, so AR's decode steps and
 * TiDAR's agree only if the sm_90a step kernel computes what mma.sync does. Launches are counted
 * by kernel symbol (fixtures/attention-sm90a-model-child.ts): the TiDAR run launched the sm_90a
 * step kernel and never the variant's own, so the test cannot pass on the sm_90 path. The
 * sm_90a GEMMs do not run here (the emulator target leaves them out). In a child process: the
 * addon picks its driver once. Tagged: a C++ compiler.
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
const root = mkdtempSync(join(tmpdir(), 'tidarc-attn-sm90a-model-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const DRAFT = 8, TOKENS = 8;
const SPEC = smallSpec('sm90amodel', [DRAFT], { queryHeads: 4, kvHeads: 1, layers: 1 });

interface Run { tokens: number[]; steps: number; launches: Record<string, number> }
interface Out { arches: string[]; sm90a: Record<string, string | null>; own: Record<string, string>; ar: Run; tidar: Run }

describe.skipIf(!cxx.found)('a model on the emulated 9.0 device takes the sm_90a attention of its compute-bound variants', () => {
  let out: Out;
  beforeAll(async () => {
    const dir = await writeRandomModel(root, SPEC, 13);
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'attention-sm90a-model-child.ts'), dir, await sharedKernelCache(), String(TOKENS), String(DRAFT)], {
      cwd: packageRoot(), env: { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver() }, maxBuffer: 64 << 20, timeout: 600_000,
    });
    out = JSON.parse(stdout.trim().split('\n').pop()!) as Out;
  }, 660_000);

  test('the emulator compile made sm_90a kernels for the k = 8 step and the prefill only, and names sm_90a', () => {
    expect(out.arches).toEqual(['sm_90', 'sm_90a']);
    expect(Object.entries(out.sm90a).filter(([, s]) => s !== null).map(([v]) => v).sort()).toEqual(['prefill_c64', `tidar_k${DRAFT}`]);
  });

  test('TiDAR launched the sm_90a step kernel and never its own; AR ran its own mma.sync kernel', () => {
    const step = `tidar_k${DRAFT}`;
    const sm90aStep = out.sm90a[step]!, ownStep = out.own[step]!;
    expect(out.tidar.steps).toBeGreaterThan(0);
    // A launch a layer on the warm-up step (later steps replay its graph).
    expect(out.tidar.launches[sm90aStep]).toBeGreaterThanOrEqual(SPEC.layers);
    expect(out.tidar.launches[ownStep]).toBeUndefined();
    expect(out.tidar.launches[out.sm90a.prefill_c64!]).toBe(SPEC.layers);
    expect(out.ar.launches[out.own.ar!]).toBeGreaterThan(0);
    expect(out.ar.launches[sm90aStep]).toBeUndefined();
  });

  test('greedy TiDAR == greedy AR token for token', () => {
    expect(out.ar.tokens).toHaveLength(TOKENS);
    expect(out.tidar.tokens).toEqual(out.ar.tokens);
  });
});
