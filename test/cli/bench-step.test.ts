// Needs: g++ and the native addon (compiles the CPU kernels of a small random model).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type StepBenchResult, stepRoofline } from '../../src/bench/step-bench.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { initModel } from '../../src/model/init-model.js';
import { expectOneErrorLine, runTidarc } from '../helpers/cli.js';


const run = runTidarc;


const SPEC: ModelSpec = {
  name: 'bench-step-t', family: 'qwen3', layers: 2, hiddenSize: 256, queryHeads: 4, kvHeads: 2, headDim: 64, intermediateSize: 512,
  vocabSize: 260, ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true, dtype: 'bf16', maskTokenId: 259,
  draftLengths: [4, 8], maxPositionEmbeddings: 512,
};

const root = mkdtempSync(join(tmpdir(), 'tidarc-cli-bench-step-'));
const dir = join(root, 'model');
const savedCache = process.env['TIDARC_CACHE'];
// Small and quick: 1 thread (no thread start-up noise in the sanity comparison), few rounds.
const QUICK = ['--threads', '1', '--reps', '5', '--min-seconds', '0', '--warmup', '1'];

beforeAll(async () => {
  process.env['TIDARC_CACHE'] = join(root, 'cache'); // the kernels compile here, not in ~/.cache
  await initModel({ spec: SPEC, outDir: dir, seed: 3 });
}, 300_000);

afterAll(() => {
  if (savedCache === undefined) delete process.env['TIDARC_CACHE'];
  else process.env['TIDARC_CACHE'] = savedCache;
  rmSync(root, { recursive: true, force: true });
});

describe('tidarc bench-step', () => {
  it('--json: every figure, and sane ones (AR step faster than TiDAR k=8)', async () => {
    const r = await run('bench-step', dir, '--draft', '8', '--prefix', '64', '--backend', 'cpu', ...QUICK, '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as StepBenchResult;
    expect(j).toMatchObject({ model: SPEC.name, family: 'qwen3', layers: 2, backend: 'cpu', threads: 1, prefix: 64, draft: 8, warmupRounds: 1, graphs: false });
    expect(j.fill).toMatchObject({ method: 'prefill', prefillTokens: 64 });
    expect(j.rounds).toBeGreaterThanOrEqual(5);
    for (const [s, variant, tokens] of [[j.tidar, 'tidar_k8', 72], [j.ar, 'ar', 1]] as const) {
      expect(s.variant).toBe(variant);
      expect(s.inStepTokens).toBe(tokens);
      expect(s.steps).toBe(j.rounds);
      const q = s.stepMs;
      expect(q.min).toBeGreaterThan(0);
      expect(q.min <= q.p20 && q.p20 <= q.median && q.median <= q.p80 && q.p80 <= q.max).toBe(true);
      expect(s.kernelMs).toBeGreaterThan(0);
      expect(s.operatorsMs).toBeGreaterThan(0);
      expect(s.outsideFraction).toBeGreaterThanOrEqual(0);
      expect(s.outsideFraction).toBeLessThan(1);
      expect(s.nativeMs['attention']).toBeGreaterThan(0);
      expect(s.nativeMs['matmul']).toBeGreaterThan(0);
      expect(s.nativeCallsPerStep).toBeGreaterThan(0);
    }
    expect(j.ar.stepMs.median).toBeLessThan(j.tidar.stepMs.median);
    expect(j.ratio).toBeCloseTo(j.tidar.stepMs.median / j.ar.stepMs.median, 10);
    expect(j.ratio).toBeGreaterThan(1);
    expect(j.breakEvenTokensPerForward).toBe(j.ratio);
    expect(j.outsideGoal).toEqual({ max: 0.05, tidarMet: j.tidar.outsideFraction <= 0.05, arMet: j.ar.outsideFraction <= 0.05 });
  });

  it('--json: per step kind, launches, host and GPU ms, host<->device bytes and the roofline from the rates measured in the run', async () => {
    // --no-graphs: accepted on the cpu backend, which launches no graphs.
    const r = await run('bench-step', dir, '--draft', '4', '--prefix', '64', '--backend', 'cpu', ...QUICK, '--no-graphs', '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as StepBenchResult;
    expect(j.machine.copyBytesPerMs).toBeGreaterThan(0);
    expect(j.machine.matmulFlopsPerMs).toBeGreaterThan(0);
    expect(j.machine.how).toMatch(/^cpu: a 64 MiB copy in [\d.]+ ms; bf16 matmul 64x2048x2048 in [\d.]+ ms/);
    for (const [s, kind] of [[j.tidar, 'tidar'], [j.ar, 'ar']] as const) {
      // On the CPU a launch is a native call, the device time the wall time, and nothing crosses a bus.
      expect(s.launchesPerStep).toBe(s.nativeCallsPerStep);
      expect(s.hostMs).toBe(s.outsideMs);
      expect(s.gpuMs).toBe(s.stepMs.median);
      expect(s.hostDeviceBytesPerStep).toBe(0);
      const limit = stepRoofline(SPEC, kind, 4, 64, j.machine);
      expect(s.roofline).toEqual(JSON.parse(JSON.stringify(limit)));
      expect(s.rooflineMs).toBe(Math.max((limit.weightBytes + limit.kvBytes) / j.machine.copyBytesPerMs, limit.flops / j.machine.matmulFlopsPerMs));
      expect(s.rooflineRatio).toBeCloseTo(s.stepMs.median / s.rooflineMs, 10);
      expect(s.rooflineRatio).toBeGreaterThan(0);
    }
    expect(j.tidar.roofline.flops).toBeGreaterThan(j.ar.roofline.flops);
  });

  it('text report; a long prefix is filled by repeating a shorter prefill, and says so', async () => {
    const r = await run('bench-step', dir, '--draft', '4', '--prefix', '300', '--fill', 'repeat', ...QUICK);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('prefix L = 300: a real prefill of 256 random tokens, its K/V repeated over 299 slots');
    expect(r.stdout).toMatch(/^tidar_k4 +20 +[\d.]+ +[\d.]+ +[\d.]+ /m);
    expect(r.stdout).toMatch(/^ar +1 +[\d.]+ /m);
    expect(r.stdout).toMatch(/TiDAR \/ AR step time = [\d.]+x: TiDAR k=4 breaks even with AR at [\d.]+ tokens per forward/);
    expect(r.stdout).toMatch(/outside kernels and operators .*: TiDAR [\d.]+%, AR [\d.]+% \[goal <= 5\.0%/);
    expect(r.stdout).toMatch(/^roofline: max\(\(weights \+ KV\) \/ copy bandwidth, FLOPs \/ matmul rate\); cpu: a 64 MiB copy/m);
    expect(r.stdout).toMatch(/^tidar_k4 +\d+ +[\d.]+ +[\d.]+ +0\.0 +[\d.]+ +(memory|compute) +[\d.]+x$/m);
  });

  it('refuses a draft length the model has no kernels for', async () => {
    expectOneErrorLine(await run('bench-step', dir, '--draft', '3', '--prefix', '64'), 'no kernels for this draft length', '--draft = 3', '4, 8');
  });

  it('refuses bad prefixes: not a positive integer, longer than the context allows, missing', async () => {
    expectOneErrorLine(await run('bench-step', dir, '--draft', '4', '--prefix', '0'), '--prefix = 0', 'an integer from 1');
    expectOneErrorLine(await run('bench-step', dir, '--draft', '4', '--prefix', 'abc'), '--prefix = abc');
    expectOneErrorLine(await run('bench-step', dir, '--draft', '8', '--prefix', '500'), 'prefix length out of range', '--prefix = 500', 'from 1 to 496');
    expectOneErrorLine(await run('bench-step', dir, '--draft', '4'), 'a prefix length is required', '--prefix');
  });

  it('refuses the cuda backend with the reason loadModel gives', async () => {
    expectOneErrorLine(await run('bench-step', dir, '--prefix', '64', '--backend', 'cuda'), 'cuda', 'backend = cuda');
  });
});
