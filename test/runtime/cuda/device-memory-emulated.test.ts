/**
 * Device memory on the emulated driver, which counts it as a GPU does (runtime/emu/fake_cuda.cpp:
 * cuMemGetInfo_v2, TIDARC_FAKE_DEVICE_MEMORY, TIDARC_FAKE_FAIL_ALLOC):
 *   - the pricing (src/runtime/cuda/device-memory.ts) equals what the driver saw allocated, byte
 *     for byte: the weights of a load, a runner's K/V cache;
 *   - a load whose upload fails after the preflight passed (the 3rd cuMemAlloc fails) throws an
 *     error naming the allocation and closes the device: all its memory is free again, and a
 *     second load in the same process succeeds;
 *   - a runner capacity that does not fit beside an idle runner is made after the pool drops it;
 *     one past what the device holds is one error naming the capacity, the bytes and the largest
 *     capacity that fits; a prompt whose activations do not fit is one error with their bytes,
 *     and what its pass had allocated goes back;
 *   - through the CLI, as a user sees it, on a device too small for the model: `run --backend
 *     cuda` is one error line (exit 1) before anything is compiled or uploaded; `run` (auto) runs
 *     on the cpu backend and its stderr says why;
 *   - `doctor` prints the device's free and total memory;
 *   - a generation's check before its prefill (step-scratch.ts): one byte short of its price, a
 *     k = 2 generation is refused with no runner made and no kernel launched, though the runner
 *     alone would fit; with exactly its price free it runs; a reused runner runs with only its
 *     prefill's bytes free (fixtures/step-scratch-child.ts);
 *   - a real decode loop (generate: TiDAR greedy and sampled) holds at most a few KiB beyond
 *     the priced weights and runner on this small spec (split-K and split-KV scratch, step I/O
 *     and workspaces: device-memory.ts's file comment; device-memory-shapes.test.ts prices the
 *     same for the Qwen3-0.6B shape).
 * Children: the addon picks its driver once per process. Tagged: a C++ compiler (the emulated
 * driver and modules).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
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
const root = mkdtempSync(join(tmpdir(), 'tidarc-device-memory-emulated-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The cuda backend tests' model (emulated-backend.test.ts): its kernels compile once into the shared kernel cache. */
const SMALL = smallSpec('cudasmall', [2]);
/** The emulated device's memory here: the model and a 256-token runner fit (~1.6 MiB), a 4096-token one does not. */
const DEVICE_BYTES = 4 << 20;

interface Out {
  total: number;
  failedLoad?: { error: string; freeAfter: number };
  load: { onDevice: number; allocated: number; priced: number; backend: string };
  kv: { onDevice: number; priced: number };
  pool: { idleBefore: number; largest: number; made: number; idleAfter: number; tooBig: string };
  longPass: { error: string; freeBefore: number; freeAfter: number; priced: string };
  closed: number;
}

/** Exit status and output of a child, whether it failed or not. */
async function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, args, { cwd: packageRoot(), env, maxBuffer: 64 << 20, timeout: 840_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

describe.skipIf(!cxx.found)('device memory on the emulated driver', () => {
  let model: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    model = await writeRandomModel(root, SMALL, 5);
    env = { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver(), TIDARC_CACHE: await sharedKernelCache() };
    delete env['TIDARC_DEBUG'];
  }, 600_000);

  test('the pricing is what the driver allocated; a failed upload closes the device; the pool makes room; a capacity too big is one error', { timeout: 900_000 }, async () => {
    const r = await run(['--import', 'tsx', join(here, 'fixtures', 'device-memory-child.ts'), model, env['TIDARC_CACHE']!], {
      ...env, TIDARC_FAKE_DEVICE_MEMORY: String(DEVICE_BYTES), TIDARC_FAKE_FAIL_ALLOC: '3',
    });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Out;
    expect(out.total).toBe(DEVICE_BYTES);
    // The upload's third allocation failed: the error names it; the load gave every byte back.
    expect(out.failedLoad?.error).toMatch(/^CUDA: cannot allocate \d+ bytes for model\.\S+: cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY/);
    expect(out.failedLoad?.freeAfter).toBe(DEVICE_BYTES);
    // The second load: the weights on the device, as the driver counts them, are the priced bytes.
    expect(out.load.backend).toBe('cuda');
    expect(out.load.onDevice).toBe(out.load.allocated);
    expect(out.load.onDevice).toBe(out.load.priced);
    expect(out.kv.onDevice).toBe(out.kv.priced);
    // The largest capacity fits only once the idle runner is gone: the pool dropped it.
    expect(out.pool.idleBefore).toBe(1);
    expect(out.pool.largest).toBeGreaterThan(256);
    expect(out.pool.made).toBe(out.pool.largest);
    expect(out.pool.idleAfter).toBe(0);
    expect(out.pool.tooBig).toMatch(new RegExp(`^a runner of ${out.pool.largest + 256} tokens needs [\\d.]+ (KiB|MiB) on tidarc emulated GPU \\(K/V cache [\\d.]+ (KiB|MiB)\\) and [\\d.]+ (KiB|MiB) of 4\\.0 MiB is free; the largest that fits is \\d+ tokens`));
    expect(out.pool.tooBig).not.toContain('\n');
    // A 4000-token prompt's activations past what is free: one error with the priced bytes; what the pass allocated went back.
    expect(out.longPass.error).toMatch(new RegExp(`^the activations of a 4000-token pass need ${out.longPass.priced.replace('.', '\\.')} on tidarc emulated GPU and [\\d.]+ MiB of 4\\.0 MiB is free`));
    expect(out.longPass.freeAfter).toBe(out.longPass.freeBefore);
    expect(out.closed).toBe(DEVICE_BYTES);
  });

  test('through the CLI, a device too small for the model: --backend cuda is one error line; auto runs on cpu and says why', { timeout: 900_000 }, async () => {
    const small = { ...env, TIDARC_FAKE_DEVICE_MEMORY: String(1 << 20) };
    const tidarc = resolve('bin/tidarc.js');
    const cuda = await run([tidarc, 'run', model, '--prompt', 'hi', '--max-tokens', '2', '--backend', 'cuda'], small);
    expect(cuda.code).toBe(1);
    expect(cuda.stdout).toBe('');
    const lines = cuda.stderr.split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^tidarc: error: the model does not fit on the GPU: the weights \([\d.]+ KiB\) and a 256-token runner \([\d.]+ KiB\) need [\d.]+ MiB on tidarc emulated GPU and 1\.0 MiB of 1\.0 MiB is free; run it with --backend cpu \(or free device memory\) \(--backend = cuda\); allowed: auto, cpu$/);
    const auto = await run([tidarc, 'run', model, '--prompt', 'hi', '--max-tokens', '2'], small);
    expect(auto.code).toBe(0);
    expect(auto.stderr).toMatch(/^cuda: the weights \([\d.]+ KiB\) and a 256-token runner \([\d.]+ KiB\) need [\d.]+ MiB on tidarc emulated GPU and 1\.0 MiB of 1\.0 MiB is free: running on the cpu backend$/m);
    expect(auto.stderr).toMatch(/^\[tidar k=2, cpu\] 2 tokens/m);
    const doctor = await run([tidarc, 'doctor'], small);
    expect(doctor.stdout).toMatch(/GPU memory\s+1\.0 MiB free of 1\.0 MiB on tidarc emulated GPU/);
  });

  test('a generation whose decode-step scratch does not fit is refused before its prefill; the price is exactly enough; a reused runner needs its prefill only', { timeout: 900_000 }, async () => {
    const r = await run(['--import', 'tsx', join(here, 'fixtures', 'step-scratch-child.ts'), model, env['TIDARC_CACHE']!], env);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      capacity: number; fresh: number;
      refused: { error: string; free: number; runnerPreflight: number; launches: number; created: number };
      exact: { tokens: number; created: number }; reused: { tokens: number; reused: number; fresh: number; need: number };
    };
    // One byte short: refused with the step kind, the figures and what may fit; no runner made, no kernel launched (no prefill).
    expect(out.refused.error).toMatch(new RegExp(`^a tidar k=2 greedy generation on a ${out.capacity}-token runner needs [\\d.]+ KiB \\(${out.fresh} bytes\\) more on tidarc emulated GPU \\(K/V cache [\\d.]+ KiB, prefill [\\d.]+ KiB, decode steps [\\d.]+ KiB: the larger of prefill and decode steps counts\\) and [\\d.]+ KiB \\(${out.fresh - 1} bytes\\) of [\\d.]+ GiB is free; AR decoding fits \\(--mode ar\\) \\(draft = 2\\)$`));
    expect(out.refused.launches).toBe(0);
    expect(out.refused.created).toBe(0);
    // The runner alone (what the pool's creation checks) fits in that memory: the steps' scratch is what does not.
    expect(out.refused.runnerPreflight).toBeLessThan(out.refused.free);
    // Exactly the price free: it runs (a new runner).
    expect(out.exact.tokens).toBe(40);
    expect(out.exact.created).toBe(1);
    // The kept runner holds its steps' scratch: a reused generation runs with only its prefill's bytes free.
    expect(out.reused.need).toBeLessThan(out.reused.fresh);
    expect(out.reused.tokens).toBe(40);
    expect(out.reused.reused).toBe(1);
  });

  test('a decode loop holds a few KiB beyond the priced weights and runner (its scratch, step I/O and workspaces)', { timeout: 900_000 }, async () => {
    const r = await run(['--import', 'tsx', join(here, 'fixtures', 'device-memory-decode-child.ts'), model, env['TIDARC_CACHE']!], env);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { weights: number; loaded: number; runner: number; modes: Record<string, number> };
    console.log(`decode beyond weights + runner (bytes): ${JSON.stringify(out)}`);
    // What the load leaves on the device besides the weights: the operators' ABI word and the like (bytes).
    expect(out.loaded - out.weights).toBeGreaterThanOrEqual(0);
    expect(out.loaded - out.weights).toBeLessThan(4096);
    expect(Object.keys(out.modes)).toEqual(['tidar greedy', 'tidar sampled']);
    for (const extra of Object.values(out.modes)) expect(extra).toBeLessThan(64 << 10);
    // Steps past 128 keys grow split-KV and GEMM scratch and their own I/O past the priced runner; a sampled one its logits too.
    expect(out.modes['tidar greedy']).toBeGreaterThan(0);
    expect(out.modes['tidar sampled']).toBeGreaterThan(out.modes['tidar greedy']!);
  });
});
