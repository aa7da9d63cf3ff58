/**
 * A model's runners outlive one sequence (src/load/runner-pool.ts, GpuModelRunner.reset), on the
 * emulated driver through Model.stream (fixtures/runner-reuse-child.ts: the addon picks its
 * driver once per process):
 *   - a later generate of the same shape runs on the first one's runner: no new runner, and each
 *     of its decode steps, from the first, is one graph launch (no warm-up, no capture), with the
 *     tokens of a fresh runner, greedy and seeded sampled (sampling on a runner that only decoded
 *     greedily warms up and captures once; another seed, temperature, top-k and top-p then
 *     replay the same graph: the setup is uploaded data), with the tokens of the
 *     launch-by-launch path (graphs off) for the same seed; every graph is captured once;
 *   - two sequences alive at once (interleaved streams) run on two runners, the kept one and a
 *     new one, and both give the tokens of a sequence run alone (greedy TiDAR and greedy AR);
 *   - greedy AR on the runner a greedy TiDAR sequence ran on (steps of another token count: their
 *     own step workspace and K/V commit table) gives the TiDAR sequence's tokens;
 *   - what the kept runners hold is all the device holds besides the weights, and dropRunners
 *     gives it back;
 *   - no host -> device copy is a synchronous one from pageable memory (the legacy NULL stream):
 *     loading the weights, prefills and steps all copy from pinned memory on our stream.
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
const root = mkdtempSync(join(tmpdir(), 'tidarc-runner-reuse-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The cuda backend tests' model (emulated-backend.test.ts): its kernels compile once into the shared kernel cache. */
const SMALL = smallSpec('cudasmall', [2]);
const TOKENS = 3;

interface Step { kernelLaunches: number; graphLaunches: number; uploads: number; downloads: number; captures: number }
interface Gen { tokens: number[]; steps: Step[]; created: number; reused: number }
interface Out {
  weightBytes: number; greedyFresh: Gen; sampledOnReused: Gen; sampledSeed8: Gen; sampledOther: Gen; sampledFresh: Gen; longTidar: Gen; longArOnTidarRunner: Gen;
  captureLabels: string[]; noGraphs: { sampledSeed8: number[]; sampledOther: number[] };
  copiesAtLoad: { sync: number; async: number }; copies: { sync: number; async: number };
  interleaved: { tidar: Gen; ar: Gen; created: number; reused: number };
  kept: { idle: number; idleBytes: number; deviceBytesOverWeights: number };
  afterDrop: { idle: number; deviceBytesOverWeights: number };
}

describe.skipIf(!cxx.found)('runner reuse across generate calls on the emulated driver', () => {
  let out: Out;
  beforeAll(async () => {
    const dir = await writeRandomModel(root, SMALL, 11);
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'runner-reuse-child.ts'), dir, await sharedKernelCache(), String(TOKENS)], {
      cwd: packageRoot(), env: { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver() }, maxBuffer: 64 << 20, timeout: 840_000,
    });
    out = JSON.parse(stdout.trim().split('\n').pop()!) as Out;
  }, 900_000);

  /** A replayed graph: a captured one issues the same, so captures are counted too. */
  const graphOnly = { kernelLaunches: 0, graphLaunches: 1, uploads: 1, downloads: 1, captures: 0 };

  test("a later greedy generate reuses the first's runner: every decode step one graph launch from the first, the same tokens", () => {
    expect(out.greedyFresh).toMatchObject({ created: 1, reused: 0 });
    expect(out.greedyFresh.tokens).toHaveLength(TOKENS);
    // A fresh runner warms up launch by launch first, then captures.
    expect(out.greedyFresh.steps[0]!.kernelLaunches).toBeGreaterThan(10);
    expect(out.greedyFresh.steps[1]!.captures).toBe(1);
    const reused = out.interleaved.tidar;
    expect(reused.tokens).toEqual(out.greedyFresh.tokens);
    expect(reused.steps.length).toBeGreaterThanOrEqual(1);
    for (const s of reused.steps) expect(s).toEqual(graphOnly);
  });

  test("sampling on a reused runner: sampled steps warm up and capture once, then every seed, temperature, top-k and top-p replays that graph; the tokens are a fresh runner's and graphs-off's", () => {
    expect(out.sampledOnReused).toMatchObject({ created: 0, reused: 1 });
    expect(out.sampledOnReused.steps[0]!.kernelLaunches).toBeGreaterThan(10);
    expect(out.sampledOnReused.steps.reduce((n, s) => n + s.captures, 0)).toBe(1);
    for (const g of [out.sampledSeed8, out.sampledOther]) {
      expect(g).toMatchObject({ created: 0, reused: 1 });
      expect(g.steps.length).toBeGreaterThanOrEqual(1);
      for (const s of g.steps) expect(s).toEqual(graphOnly);
    }
    // One capture per step kind and bucket on the kept runners (greedy and sampled are different kernels).
    expect(new Set(out.captureLabels).size).toBe(out.captureLabels.length);
    expect(out.captureLabels.filter((l) => / sampled /.test(l))).toHaveLength(1);
    expect(out.sampledFresh).toMatchObject({ created: 1, reused: 0, tokens: out.sampledSeed8.tokens });
    expect(out.noGraphs).toEqual({ sampledSeed8: out.sampledSeed8.tokens, sampledOther: out.sampledOther.tokens });
    expect(out.sampledOther.tokens).not.toEqual(out.sampledSeed8.tokens);
    // The draws depend on the seed and are not the greedy tokens (else "the same tokens" would prove little).
    expect(out.sampledSeed8.tokens).not.toEqual(out.sampledOnReused.tokens);
    expect(out.sampledFresh.tokens).not.toEqual(out.greedyFresh.tokens);
  });

  test('two sequences alive at once run on two runners, each with the tokens it has alone', () => {
    expect(out.interleaved).toMatchObject({ created: 1, reused: 1 });
    // The AR sequence's runner is new: it warms up.
    expect(out.interleaved.ar.steps[0]!.kernelLaunches).toBeGreaterThan(10);
    // Greedy AR == greedy TiDAR.
    expect(out.interleaved.ar.tokens).toEqual(out.greedyFresh.tokens);
    expect(out.interleaved.tidar.tokens).toEqual(out.greedyFresh.tokens);
  });

  test('greedy AR on the runner greedy TiDAR decoded on (1-token steps after k (k + 1)-token ones) gives the same tokens', () => {
    // After dropRunners the pool holds one runner (sampledFresh's): both take it.
    expect(out.longTidar).toMatchObject({ created: 0, reused: 1 });
    expect(out.longArOnTidarRunner).toMatchObject({ created: 0, reused: 1 });
    expect(out.longTidar.tokens).toHaveLength(10);
    expect(out.longArOnTidarRunner.tokens).toEqual(out.longTidar.tokens);
  });

  test('every host -> device copy, the weights\' and the prefill\'s included, is asynchronous from pinned memory on our stream: none on the legacy NULL stream', () => {
    expect(out.copiesAtLoad.sync).toBe(0);
    expect(out.copiesAtLoad.async).toBeGreaterThan(10);  // the weights, staged
    expect(out.copies.sync).toBe(0);
    expect(out.copies.async).toBeGreaterThan(out.copiesAtLoad.async);
  });

  test('the kept runners are all the device holds besides the weights; dropRunners gives it back', () => {
    expect(out.kept.idle).toBe(1);
    expect(out.kept.idleBytes).toBeGreaterThan(0);
    expect(out.kept.deviceBytesOverWeights).toBe(out.kept.idleBytes);
    expect(out.afterDrop).toEqual({ idle: 0, deviceBytesOverWeights: 0 });
  });
});
