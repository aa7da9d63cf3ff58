/**
 * The cuda backend end to end: the addon dlopens the CUDA driver, the runtime uploads the
 * weights, launches the GPU operators and the compiled attention kernels through
 * cuLaunchKernel, and decodes. Invariants 1 and 3 of the runtime issue on this backend: greedy
 * TiDAR == greedy AR, and each TiDAR run's committed cache agrees with the AR run's (layer 0
 * bitwise, deeper layers within bf16 rounding) with nothing written past the committed length
 * (test/helpers/runtime-check.ts), through the device check's runtime part
 * (scripts/device-check/runtime_check.mjs) on this checkout's build (dist/, which npm ci builds):
 *   - on the emulated driver ($TIDARC_LIBCUDA = runtime/emu/fake_cuda.cpp as libcuda.so.1), the
 *     device check's dry run proves them (test/bench/device-check.test.ts: k = 2, 8 tokens,
 *     three prompts). Where it cannot run (no numpy), the first test here runs the same check;
 *   - [gpu] on the real driver, where there is a GPU and nvcc: k in {1, 2, 4, 8}, 200 tokens,
 *     three prompts (`npm run test:gpu` runs only these).
 * Greedy TiDAR == AR through `tidarc run` on the emulated driver, past one KV tile and with
 * tuned splits, is the split-KV test's. The driver is chosen once per process, from
 * $TIDARC_LIBCUDA, so each run is a child process.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx, findNvcc } from '../../../src/build/toolchain.js';
import { loadNative } from '../../../src/runtime/native.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../../helpers/emulated-driver.js';
import { type RuntimeCheckReport, expectRuntimeInvariants } from '../../helpers/runtime-check.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const gpu = loadNative().cudaStatus().available && (await findNvcc()).found;
/** The device check's dry run (device-check.test.ts) needs numpy; it proves the emulated run where it can run. */
const numpy = await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-cuda-backend-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/**
 * The model of the bench-step and split-KV tests (other weights each) and of
 * test/runtime/model/non-finite.test.ts: one spec, so its kernels and their emulated modules
 * compile once into the shared kernel cache (test/helpers/emulated-driver.ts).
 */
const SMALL = smallSpec('cudasmall', [2]);

/** scripts/device-check/runtime_check.mjs on this checkout's build (dist/, as npm ci leaves it): the device check's runtime part. */
async function decodeOnCuda(env: NodeJS.ProcessEnv, drafts: readonly number[], tokens: number): Promise<RuntimeCheckReport> {
  const work = mkdtempSync(join(root, 'work-'));
  const { stdout } = await exec(process.execPath, [resolve('scripts/device-check/runtime_check.mjs'), resolve('.'), work, String(tokens), drafts.join(',')], { env, maxBuffer: 64 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

// Only where the device check's dry run cannot run: with numpy, device-check.test.ts makes these checks (the same script, model and checker).
describe.skipIf(!cxx.found || numpy)('cuda backend on the emulated driver (without numpy)', () => {
  test('greedy TiDAR (k = 2) == greedy AR on three prompts, the same committed cache', { timeout: 900_000 }, async () => {
    const driver = await sharedEmulatedDriver();
    const cache = await sharedKernelCache();
    const r = await decodeOnCuda({ ...process.env, TIDARC_LIBCUDA: driver, TIDARC_CACHE: cache }, [2], 8);
    expect(readdirSync(join(cache, 'kernels')).filter((e) => /^gpu-runtime-check-emulator-[0-9a-f]{16}$/.test(e))).toHaveLength(1);
    expect(r.backend).toBe('cuda');
    expect(r.reason).toMatch(/tidarc emulated/);
    expect(r.runs).toHaveLength(3);  // three prompts
    expectRuntimeInvariants(r.runs, 8);
  });
});

describe.skipIf(!cxx.found)('tidarc bench-step --backend cuda on the emulated driver', () => {
  test('times a TiDAR and an AR step through the driver and reports the host/GPU split', { timeout: 600_000 }, async () => {
    const driver = await sharedEmulatedDriver();
    const dir = await writeRandomModel(join(root, 'bench'), SMALL, 6);
    const { stdout } = await exec(process.execPath, [
      resolve('bin/tidarc.js'), 'bench-step', dir, '--backend', 'cuda', '--prefix', '20', '--reps', '2', '--min-seconds', '0', '--warmup', '2', '--json',
    ], { env: { ...process.env, TIDARC_LIBCUDA: driver, TIDARC_CACHE: await sharedKernelCache() }, maxBuffer: 64 << 20 });
    type Kind = { steps: number; nativeMs: Record<string, number>; launchesPerStep: number; hostMs: number; gpuMs: number; hostDeviceBytesPerStep: number; rooflineMs: number; rooflineRatio: number };
    const r = JSON.parse(stdout) as { backend: string; graphs: boolean; tidar: Kind; ar: Kind; ratio: number; machine: { how: string } };
    expect(r.backend).toBe('cuda');
    expect(r.graphs).toBe(true);
    expect(r.tidar.steps).toBeGreaterThanOrEqual(2);
    expect(r.ar.steps).toBeGreaterThanOrEqual(2);
    // Two warm-up rounds: each step kind ran launch by launch, then was captured; a timed step replays its graph.
    expect(r.tidar.nativeMs['cuda.graphLaunch']).toBeGreaterThan(0);
    expect(r.tidar.nativeMs['cuda.launch']).toBeUndefined();
    expect(Number.isFinite(r.ratio) && r.ratio > 0).toBe(true);
    // The roofline report: launches, host and GPU (CUDA events) time, the step's uploads and downloads.
    expect(r.machine.how).toMatch(/^cuda \(emulated: not a speed\): a 4 MiB device copy in [\d.]+ ms; GEMM \S+ at \d+ rows in/);
    for (const k of [r.tidar, r.ar]) {
      expect(k.launchesPerStep).toBe(1);
      expect(k.gpuMs).toBeGreaterThan(0);
      expect(k.hostMs).toBeGreaterThan(0);
      expect(k.hostDeviceBytesPerStep).toBeGreaterThan(0);
      expect(k.rooflineMs).toBeGreaterThan(0);
      expect(k.rooflineRatio).toBeGreaterThan(0);
    }
  });

  test('sampled steps (temperature, top-p, top-k) are one graph launch a step too', { timeout: 600_000 }, async () => {
    const driver = await sharedEmulatedDriver();
    const dir = await writeRandomModel(join(root, 'bench-sampled'), SMALL, 6);
    const { stdout } = await exec(process.execPath, [
      resolve('bin/tidarc.js'), 'bench-step', dir, '--backend', 'cuda', '--prefix', '20', '--reps', '2', '--min-seconds', '0', '--warmup', '2', '--json',
      '--temperature', '0.8', '--top-p', '0.9', '--top-k', '5',
    ], { env: { ...process.env, TIDARC_LIBCUDA: driver, TIDARC_CACHE: await sharedKernelCache() }, maxBuffer: 64 << 20 });
    type Kind = { steps: number; nativeMs: Record<string, number>; launchesPerStep: number };
    const r = JSON.parse(stdout) as { graphs: boolean; sampling: { temperature: number; topP: number; topK?: number }; tidar: Kind; ar: Kind };
    expect(r.graphs).toBe(true);
    expect(r.sampling).toEqual({ temperature: 0.8, topP: 0.9, topK: 5 });
    for (const k of [r.tidar, r.ar]) {
      expect(k.steps).toBeGreaterThanOrEqual(2);
      expect(k.launchesPerStep).toBe(1);
      expect(k.nativeMs['cuda.graphLaunch']).toBeGreaterThan(0);
      expect(k.nativeMs['cuda.launch']).toBeUndefined();
    }
  });
});

describe.skipIf(!cxx.found)('split-KV on the cuda backend (emulated driver)', () => {
  // 150 prompt bytes: every decode step sees 3 KV tiles, which the launcher's split rule (least
  // estimated time, splits.ts) may split over grid z (one launch: a row group's last CTA merges);
  // the tuned databases below force 1 and 3 splits.
  const prompt = 'def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint([fib(i) for i in range(10)])\n# the first ten Fibonacci numbers.';
  const run = async (driver: string, dir: string, ...extra: string[]) => {
    const { stdout, stderr } = await exec(process.execPath, [resolve('bin/tidarc.js'), 'run', dir, '--backend', 'cuda', '--prompt', prompt, '--max-tokens', '6', '--ignore-eos', '--json', ...extra],
      { env: { ...process.env, TIDARC_LIBCUDA: driver, TIDARC_CACHE: await sharedKernelCache() }, maxBuffer: 64 << 20 });
    return { ...(JSON.parse(stdout) as { tokens: number[]; backend: string }), stderr };
  };

  test('greedy TiDAR == greedy AR past one KV tile, with the heuristic splits and with tuned ones (run --tuned)', { timeout: 900_000 }, async () => {
    expect(prompt.length).toBeGreaterThan(128);
    const driver = await sharedEmulatedDriver();
    const dir = await writeRandomModel(join(root, 'split'), SMALL, 8);
    const ar = await run(driver, dir, '--mode', 'ar');
    expect(ar.backend).toBe('cuda');
    expect(ar.tokens).toHaveLength(6);
    expect((await run(driver, dir, '--draft', '2')).tokens).toEqual(ar.tokens);
    // Databases as the device check writes them, setting the splits of every variant at this
    // prefix: 1 (no split: the reference the split runs must agree with) and 3.
    const tunedTo = (splits: number): string => {
      const meta = { tidarc: '0', compiler: 'nvcc', backend: 'cuda', device: 'tidarc emulated x 132 SMs' };
      const timing = { medianUs: 10, p20Us: 9, p80Us: 11 };
      const entries = Object.fromEntries(['tidar_k2', 'ar'].map((name) => {
        const variant = `${name} bf16 d64 q4/kv2`;
        const best = { warps: 4, tileN: 64, splits };
        return [`${variant} | b1 L256`, { variant, bucket: 'b1 L256', best, bestTiming: timing, heuristic: best, heuristicTiming: timing, timed: 1, rejected: [], meta, date: '2026-11-29', byTile: { 'w4-n64': { splits, medianUs: 10 } } }];
      }));
      const db = join(root, `cuda-tune-s${splits}.json`);
      writeFileSync(db, JSON.stringify({ format: 1, entries }));
      return db;
    };
    const unsplit = await run(driver, dir, '--draft', '2', '--tuned', tunedTo(1));
    // The database's old-format tile (w4-n64) reads as 16 rows a warp and 2 stages.
    expect(unsplit.stderr).toMatch(/tuned tidar_k2: w4r16-n64p2 .*cuda call parameters for 1 shape bucket\n/);
    expect(unsplit.tokens).toEqual(ar.tokens);
    expect((await run(driver, dir, '--draft', '2', '--tuned', tunedTo(3))).tokens).toEqual(ar.tokens);

    // The GPU operators' module was built once in the cache's shared directory (kernel-cache.ts
    // sharedCacheDir); the untuned and the tuned entry each hold a copy of it.
    const cache = await sharedKernelCache();
    const shared = readdirSync(join(cache, 'shared')).filter((n) => /^emulated-ops-[0-9a-f]{16}$/.test(n));
    expect(shared).toHaveLength(1);
    const library = readFileSync(join(cache, 'shared', shared[0]!, 'tidarc_ops.emu.so'));
    const copies = readdirSync(join(cache, 'kernels')).filter((e) => /^cudasmall-emulator-[0-9a-f]{16}$/.test(e)).map((e) => join(cache, 'kernels', e, 'cuda', 'tidarc_ops.emu.so'));
    expect(copies.length).toBeGreaterThanOrEqual(2);
    for (const c of copies) expect(readFileSync(c).equals(library), c).toBe(true);
  });
});

describe.skipIf(!gpu)('[gpu] cuda backend on the GPU', () => {
  test('greedy TiDAR == greedy AR for k in {1, 2, 4, 8}, 200 tokens, three prompts; exact caches', { timeout: 900_000 }, async () => {
    const env = { ...process.env };
    delete env['TIDARC_LIBCUDA'];
    const r = await decodeOnCuda(env, [1, 2, 4, 8], 200);
    expect(r.backend).toBe('cuda');
    expect(r.runs).toHaveLength(12);
    expectRuntimeInvariants(r.runs, 200);
  });
});
