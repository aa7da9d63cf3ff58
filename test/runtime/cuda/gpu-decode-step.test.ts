/**
 * Decode steps as CUDA graphs on the emulated driver (src/runtime/cuda/step-graphs.ts,
 * gpu-decode-step.ts): the same random model decoded with graphs on and off, in a child process
 * (the addon picks its driver once per process; fixtures/decode-step-child.ts):
 *   - greedy TiDAR == greedy AR token for token, graphs on and off, and both give the same
 *     tokens; TiDAR's committed cache agrees with AR's (the KV-cache rule: layer 0 bitwise,
 *     nothing written past the committed length);
 *   - a step's kind warms up once launch by launch, is captured on its second step, and from
 *     then on a step is one graph launch, no kernel launch, one upload and one download; a
 *     prefix past a KV tile boundary (another split count) is another bucket: another graph;
 *     without graphs every step is launched kernel by kernel;
 *   - sampling and acceptance on the device: a seeded sampled run is reproducible, the same
 *     with graphs on and off, and another seed gives other tokens; a step downloads only its
 *     result (no logits), and so does the prefill's sampled first token;
 *   - the loaded model's host memory holds no copy of the weights (ArrayBuffers after a GC).
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
const root = mkdtempSync(join(tmpdir(), 'tidarc-decode-step-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The cuda backend tests' model (emulated-backend.test.ts): its kernels compile once into the shared kernel cache. */
const SMALL = smallSpec('cudasmall', [2]);
const TOKENS = 6;

interface Step { launch: string; kernelLaunches: number; graphLaunches: number; uploads: number; downloads: number; downloadBytes: number }
interface Run { tokens: number[]; prefillDownloadBytes: number; steps: Step[]; graphs: number }
interface Side { ar: Run; arByPass: Run; tidar: Run; sampledTidar: Run; sampledTidarSeed8: Run; crossing: Run; mixed: Run; tidarCache: { comparedSlots: number; layer0Differing: number; maxRelDiff: number; writtenPastLength: number } }

describe.skipIf(!cxx.found)('decode-step graphs on the emulated driver', () => {
  // Graphs off runs greedy and sampled TiDAR only (their tokens must equal graphs on's); its cache is compared with graphs on's AR run.
  let on: Side, off: Pick<Side, 'tidar' | 'sampledTidar' | 'crossing' | 'mixed' | 'tidarCache'>, memory: { checkpointBytes: number; hostBytesAfterLoad: number; controlBytes: number };
  let crossingCache: Side['tidarCache'];
  beforeAll(async () => {
    const dir = await writeRandomModel(root, SMALL, 11);
    const { stdout } = await exec(process.execPath, ['--expose-gc', '--import', 'tsx', join(here, 'fixtures', 'decode-step-child.ts'), dir, await sharedKernelCache(), String(TOKENS)], {
      cwd: packageRoot(), env: { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver() }, maxBuffer: 64 << 20, timeout: 840_000,
    });
    ({ on, off, memory, crossingCache } = JSON.parse(stdout.trim().split('\n').pop()!) as { on: Side; off: typeof off; memory: typeof memory; crossingCache: typeof crossingCache });
  }, 900_000);

  test('greedy TiDAR == greedy AR with graphs on and off, the same tokens both ways, and the KV-cache rule', () => {
    expect(on.ar.tokens).toHaveLength(TOKENS);
    expect(on.tidar.tokens).toEqual(on.ar.tokens);
    expect(off.tidar.tokens).toEqual(on.ar.tokens);
    for (const side of [on, off]) {
      expect(side.tidarCache.comparedSlots).toBeGreaterThan(TOKENS);
      expect(side.tidarCache.layer0Differing).toBe(0);
      expect(side.tidarCache.maxRelDiff).toBeLessThan(2 ** -6);
      expect(side.tidarCache.writtenPastLength).toBe(0);
    }
  });

  test("a greedy step's tokens (lm_head's row statistics on the device, the never-emitted token -inf by a bias row) are those the host picks from each pass", () => {
    expect(on.arByPass.steps.every((s) => s.launch === undefined)).toBe(true);
    expect(on.ar.tokens).toEqual(on.arByPass.tokens);
  });

  test('after its warm-up a step is one graph launch, no kernel launch, one upload and one download', () => {
    for (const run of [on.ar, on.tidar, on.sampledTidar]) {
      expect(run.steps.length).toBeGreaterThanOrEqual(3);
      expect(run.steps.map((s) => s.launch)).toEqual(['warm-up', 'captured', ...run.steps.slice(2).map(() => 'replayed')]);
      expect(run.steps[0]!.kernelLaunches).toBeGreaterThan(10);
      for (const s of run.steps.slice(1)) expect(s).toMatchObject({ kernelLaunches: 0, graphLaunches: 1, uploads: 1, downloads: 1 });
      expect(run.graphs).toBe(1);
    }
    // A runner's first greedy step also uploads its never-emit bias row and its step workspace's
    // K/V commit table (each layer's step K/V and cache addresses, for kv_commit_layers): once each.
    for (const [i, s] of off.tidar.steps.entries()) expect(s).toMatchObject({ launch: 'direct', graphLaunches: 0, uploads: i === 0 ? 3 : 1, downloads: 1 });
    expect(off.tidar.steps[1]!.kernelLaunches).toBe(on.tidar.steps[0]!.kernelLaunches);
  });

  test('a prefix that crosses into the next split-KV bucket warms up and captures another graph; the tokens and cache are those of graphs off', () => {
    expect(on.crossing.steps.map((s) => s.launch)).toEqual(['warm-up', 'captured', 'replayed', 'replayed', 'warm-up', 'captured', 'replayed']);
    expect(on.crossing.graphs).toBe(2);
    expect(on.crossing.tokens).toEqual(off.crossing.tokens);
    expect(crossingCache).toMatchObject({ layer0Differing: 0, maxRelDiff: 0, writtenPastLength: 0 });
  });

  test('sampling on the device: a seeded run is reproducible and the same with graphs on and off', () => {
    expect(on.sampledTidar.tokens).toHaveLength(TOKENS);
    // Two runs with the same seed (graphs on, then off) give the same tokens.
    expect(off.sampledTidar.tokens).toEqual(on.sampledTidar.tokens);
    // Only what the step made final comes back (k = 2): [n, 2 tokens], 1 next draft and 3 lse floats, never a logits row (vocabulary x 4 bytes).
    for (const s of [...on.sampledTidar.steps, ...off.sampledTidar.steps]) expect(s.downloadBytes).toBe(7 * 4);
    // The prefill's first token is drawn on the device too: its token and lse, and the one draft's argmax and lse.
    expect(on.sampledTidar.prefillDownloadBytes).toBe(4 * 4);
    // beta = 0.5: the verify rows mixed with block i + 1's slot 0 on the device (second lm_head), the same both ways.
    expect(on.mixed.tokens).toHaveLength(TOKENS);
    expect(off.mixed.tokens).toEqual(on.mixed.tokens);
    expect(on.mixed.steps.slice(1).every((s) => s.launch !== 'warm-up' && s.kernelLaunches === 0)).toBe(true);
    // The draws depend on the seed (else "reproducible" would prove nothing).
    expect(on.sampledTidarSeed8.tokens).not.toEqual(on.sampledTidar.tokens);
  });

  test('the loaded model keeps no host copy of its weights once they are on the device', () => {
    expect(memory.checkpointBytes).toBeGreaterThan(500_000);
    expect(memory.hostBytesAfterLoad).toBeLessThan(memory.checkpointBytes / 4);
    // The measure sees a checkpoint's copy that the model object holds (else it could not fail).
    expect(memory.controlBytes).toBeGreaterThanOrEqual(memory.checkpointBytes);
  });
});
