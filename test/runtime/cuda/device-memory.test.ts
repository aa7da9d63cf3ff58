/**
 * Device memory priced before it is allocated (src/runtime/cuda/device-memory.ts), against what
 * the cuda runtime allocates on a recording stand-in for the device, byte for byte: the weights
 * as uploadWeights puts them on the device (Qwen3 with q/k norms, Qwen2 with fused q/k/v biases,
 * a tied lm_head, a Llama), a runner's K/V cache when it is made, and a first pass's activations
 * and lm_head scratch. (test/runtime/cuda/device-memory-emulated.test.ts: the same figures
 * against the emulated driver's own count.) Then the decisions: a load that fits runs on cuda,
 * auto falls back to cpu with the sentence, an explicit cuda throws one error; a runner's
 * capacity that does not fit names the largest that does. Needs: nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import { TidarcError } from '../../../src/errors.js';
import type { ModelSpec } from '../../../src/ir/model.js';
import { loadCheckpoint } from '../../../src/model/checkpoint.js';
import { CudaDevice, type DeviceBuffer, type KernelRef, type PinnedBuffer } from '../../../src/runtime/cuda/device.js';
import {
  checkRunnerFits, cudaFitChoice, formatBytes, headScratchBytes, kvCacheBytes, largestCapacity, loadFit, passBytes, passOutOfMemory, runnerBytes, weightBytes,
} from '../../../src/runtime/cuda/device-memory.js';
import { OPS_ABI_BUFFER } from '../../../src/runtime/cuda/gpu-ops.js';
import { OPS_ABI_VERSION } from '../../../src/runtime/cuda/op-abi.js';
import { GpuModelRunner, uploadWeights } from '../../../src/runtime/cuda/gpu-runner.js';
import { modelWeights } from '../../../src/runtime/model/weights.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-device-memory-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A device that records its live allocations (what the driver would be asked for). */
function recorder() {
  const live = new Map<number, DeviceBuffer>();
  let next = 0x10000;
  const device = {
    info: { multiprocessors: 132, name: 'recorder' }, arch: 'sm_80',
    alloc: (bytes: number, label: string): DeviceBuffer => {
      const b = { ptr: next, bytes: Math.max(1, Math.ceil(bytes)), label };
      next += Math.ceil(bytes / 256) * 256 + 256;
      live.set(b.ptr, b);
      return b;
    },
    free: (b: DeviceBuffer) => void live.delete(b.ptr),
    allocPinned: (bytes: number, label: string): PinnedBuffer => ({ buffer: new ArrayBuffer(bytes), bytes, label }),
    freePinned: () => undefined, fill: () => undefined, copy: () => undefined, upload: () => undefined, uploadAsync: () => undefined,
    download: (b: DeviceBuffer, dst: ArrayBufferView) => void (b.label === OPS_ABI_BUFFER && ((dst as Int32Array)[0] = OPS_ABI_VERSION)),
    kernel: (_module: string, name: string): KernelRef => ({ name, handle: 0, maxShared: 0 }),
    launch: () => undefined,
  } as unknown as CudaDevice;
  const bytes = (filter: (label: string) => boolean = () => true): number => [...live.values()].filter((b) => filter(b.label)).reduce((n, b) => n + b.bytes, 0);
  return { device, bytes };
}

const SPECS: readonly ModelSpec[] = [
  smallSpec('mem-qwen3', [2], { family: 'qwen3', qkNorm: true, tieEmbeddings: false }),
  smallSpec('mem-qwen2', [2], { family: 'qwen2', qkNorm: false, tieEmbeddings: false }),
  smallSpec('mem-tied', [2], { family: 'qwen3', qkNorm: true, tieEmbeddings: true }),
  smallSpec('mem-llama', [1], { family: 'llama', qkNorm: false, layers: 3, tieEmbeddings: false }),
];

describe('the weights on the device, priced from the spec', () => {
  test.each(SPECS.map((s) => [s.name, s] as const))('%s: weightBytes == what uploadWeights allocates', async (_name, spec) => {
    const weights = modelWeights(await loadCheckpoint(await writeRandomModel(root, spec, 3)));
    const { manifest } = generateModel(spec, { arches: ['sm_80'] });
    const d = recorder();
    const gpu = uploadWeights(d.device, spec, weights, manifest);
    expect(d.bytes()).toBe(gpu.bytes);
    expect(weightBytes(spec)).toBe(gpu.bytes);
  });

  test('a tied lm_head is the embedding: one vocab x hidden matrix less; biases add fp32 rows', () => {
    const [qwen3, qwen2, tied] = SPECS as [ModelSpec, ModelSpec, ModelSpec];
    expect(weightBytes(qwen3) - weightBytes(tied)).toBe(qwen3.vocabSize * qwen3.hiddenSize * 2);
    // Qwen2: q/k/v biases (fp32) and no q/k norms (16-bit, headDim each) against Qwen3's.
    const q = qwen3.queryHeads * qwen3.headDim, kv = qwen3.kvHeads * qwen3.headDim;
    expect(weightBytes(qwen2) - weightBytes(qwen3)).toBe(qwen3.layers * ((q + 2 * kv) * 4 - 2 * qwen3.headDim * 2));
    // An F32 tensor in the checkpoint is uploaded as it is: 4-byte elements.
    expect(weightBytes(qwen3, (n) => (n === 'model.norm.weight' ? 4 : 2)) - weightBytes(qwen3)).toBe(qwen3.hiddenSize * 2);
  });
});

describe("a runner's bytes, priced from the spec", () => {
  test.each([40, 64])("the K/V cache when it is made, then a first pass of %i tokens' activations and lm_head scratch, byte for byte", async (T) => {
    const spec = SPECS[0]!;
    const weights = modelWeights(await loadCheckpoint(await writeRandomModel(root, spec, 4)));
    const { manifest } = generateModel(spec, { arches: ['sm_80'] });
    const d = recorder();
    const gpu = uploadWeights(d.device, spec, weights, manifest);
    const capacity = 512;
    const runner = new GpuModelRunner(spec, d.device, gpu, '/kernels', manifest, capacity, { graphs: false });
    expect(d.bytes() - gpu.bytes).toBe(kvCacheBytes(spec, capacity));
    expect(kvCacheBytes(spec, capacity)).toBe(spec.layers * 2 * spec.kvHeads * capacity * spec.headDim * 2);
    const schedule = { kind: 'prefill', promptTokens: T } as const;
    const ids = Int32Array.from({ length: T }, (_, i) => i);
    runner.pass(ids, ids, schedule).argmax([T - 1]);
    const activations = d.bytes((l) => l.endsWith(`[${T} tokens]`) || l === 'prefix lengths');
    expect(activations).toBe(passBytes(spec, T, schedule, gpu.gateUpInterleave));
    const head = d.bytes((l) => l.startsWith('lm_head '));
    expect(head).toBe(headScratchBytes(1, spec.vocabSize));
    // runnerBytes: the cache and a one-chunk pass (64 tokens: what any prompt of up to 64 allocates) with its lm_head scratch.
    const r = runnerBytes(spec, capacity, gpu.gateUpInterleave);
    expect(r.kvCache).toBe(kvCacheBytes(spec, capacity));
    if (T === 64) expect(r.firstPass).toBe(activations + head);
    else expect(r.firstPass).toBeGreaterThan(activations + head);
    // Without the compiled interleave the up half is counted too: an upper bound, never less.
    expect(runnerBytes(spec, capacity).total).toBeGreaterThanOrEqual(r.total);
    runner.close();
    expect(d.bytes()).toBe(gpu.bytes);
  });

  test("a pass's allocation that reports a sticky fault (an earlier kernel's) throws that error, not the frees' that follow it", async () => {
    const spec = SPECS[0]!;
    const weights = modelWeights(await loadCheckpoint(await writeRandomModel(root, spec, 4)));
    const { manifest } = generateModel(spec, { arches: ['sm_80'] });
    const d = recorder();
    const gpu = uploadWeights(d.device, spec, weights, manifest);
    const runner = new GpuModelRunner(spec, d.device, gpu, '/kernels', manifest, 256, { graphs: false });
    // From the pass's third activation on, every driver call returns the fault, cuMemFree included (as on a GPU).
    const dev = d.device as unknown as { alloc: (bytes: number, label: string) => DeviceBuffer; free: (b: DeviceBuffer) => void };
    const alloc = dev.alloc;
    let activations = 0;
    const fault = (doing: string) => new TidarcError('runtime', `CUDA: cannot ${doing}: CUDA_ERROR_ILLEGAL_ADDRESS`, { field: 'cuda', value: 'CUDA_ERROR_ILLEGAL_ADDRESS' });
    dev.alloc = (bytes, label) => {
      if (label.endsWith('[8 tokens]') && ++activations >= 3) throw fault(`allocate ${bytes} bytes for ${label}`);
      return alloc(bytes, label);
    };
    dev.free = (b) => {
      throw fault(`free ${b.label}`);
    };
    const ids = Int32Array.from({ length: 8 }, (_, i) => i);
    expect(() => runner.pass(ids, ids, { kind: 'prefill', promptTokens: 8 })).toThrow(/^CUDA: cannot allocate \d+ bytes for \S+ \[8 tokens\]: CUDA_ERROR_ILLEGAL_ADDRESS/);
    expect(activations).toBe(3);
  });
});

describe('decisions', () => {
  const spec = SPECS[0]!;
  const device = (freeBytes: number) => ({ name: 'NVIDIA H100 80GB HBM3', freeBytes, totalBytes: 85_000_000_000 });

  test('fits: cuda; too small: auto falls back to cpu saying why, an explicit cuda is one error saying what to do', () => {
    const w = weightBytes(spec), r = runnerBytes(spec, 256);
    const fit = loadFit(w, r, 256, device(w + r.total));
    expect(fit.fits).toBe(true);
    expect(cudaFitChoice('auto', fit)).toEqual({ backend: 'cuda' });
    expect(cudaFitChoice('cuda', fit)).toEqual({ backend: 'cuda' });
    const short = loadFit(w, r, 256, device(w + r.total - 1));
    expect(short.fits).toBe(false);
    expect(short.neededBytes).toBe(w + r.total);
    expect(short.sentence).toBe(`the weights (${formatBytes(w)}) and a 256-token runner (${formatBytes(r.total)}) need ${formatBytes(w + r.total)} on NVIDIA H100 80GB HBM3 and ${formatBytes(w + r.total - 1)} of 79.2 GiB is free`);
    expect(cudaFitChoice('auto', short)).toEqual({ backend: 'cpu', reason: `the model does not fit on the GPU: ${short.sentence}` });
    let err: unknown;
    try {
      cudaFitChoice('cuda', short);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TidarcError);
    expect((err as TidarcError).code).toBe('unsupported');
    expect((err as TidarcError).message).toContain(short.sentence);
    expect((err as TidarcError).message).toContain('--backend cpu');
    expect((err as TidarcError).message).not.toContain('\n');
    expect((err as TidarcError).message).toMatch(/\(backend = cuda\); allowed: auto, cpu$/);
    expect(() => cudaFitChoice('cuda', short, '--backend')).toThrow(/\(--backend = cuda\); allowed: auto, cpu$/);
  });

  test("a pass's out-of-memory becomes one error with its figures; any other failure stays as it was", () => {
    const oom = new TidarcError('runtime', 'CUDA: cannot allocate 9 bytes for x [4000 tokens]: cuMemAlloc failed', { field: 'cuda', value: 'CUDA_ERROR_OUT_OF_MEMORY' });
    const e = passOutOfMemory(oom, 4000, 3 * 2 ** 20, () => device(2 ** 20)) as TidarcError;
    expect(e.message).toBe('the activations of a 4000-token pass need 3.0 MiB on NVIDIA H100 80GB HBM3 and 1.0 MiB of 79.2 GiB is free (the weights, K/V caches and scratch hold the rest): a shorter prompt needs less (tokens = 4000)');
    const other = new TidarcError('runtime', 'CUDA: cannot fill x', { field: 'cuda', value: 'CUDA_ERROR_LAUNCH_FAILED' });
    // A decode step's workspace: a few tokens, so no shorter prompt helps it.
    expect((passOutOfMemory(oom, 9, 3 * 2 ** 20, () => device(2 ** 20), true) as TidarcError).message).toBe('the activations of a 9-token decode step need 3.0 MiB on NVIDIA H100 80GB HBM3 and 1.0 MiB of 79.2 GiB is free (the weights, K/V caches and scratch hold the rest): free device memory or run with --backend cpu (tokens = 9)');
    expect(passOutOfMemory(other, 4000, 1, () => device(0))).toBe(other);
    // Where the device cannot even say what is free, the driver's own error stands.
    expect(passOutOfMemory(oom, 4000, 1, () => { throw new Error('no context'); })).toBe(oom);
  });

  test('an addon built before memInfo existed: one error saying to rebuild it, not "memInfo is not a function"', () => {
    const open = (cuda: object) => new (CudaDevice as unknown as new (cuda: object, info: object) => CudaDevice)(cuda, { name: 'NVIDIA H100 80GB HBM3' });
    expect(() => open({}).memory()).toThrow(/^the native addon predates cuMemGetInfo \(the cuda load's memory preflight\); rebuild it with `npm run build:native`/);
    expect(open({ memInfo: () => ({ free: 5, total: 8 }) }).memory()).toEqual({ freeBytes: 5, totalBytes: 8 });
  });

  test('formatBytes: one unit a figure', () => {
    expect(formatBytes(15.3 * 2 ** 30)).toBe('15.3 GiB');
    expect(formatBytes(3 * 2 ** 20)).toBe('3.0 MiB');
    expect(formatBytes(2048)).toBe('2.0 KiB');
    expect(formatBytes(100)).toBe('100 bytes');
  });

  test("a runner's capacity that does not fit: the capacity, the bytes needed and free, the largest that fits", () => {
    const free = runnerBytes(spec, 1000).total;
    const largest = largestCapacity(spec, free, 256);
    expect(largest).toBe(768);
    expect(runnerBytes(spec, largest).total).toBeLessThanOrEqual(free);
    expect(runnerBytes(spec, largest + 256).total).toBeGreaterThan(free);
    expect(largestCapacity(spec, free)).toBe(1000);
    expect(() => checkRunnerFits(spec, 1000, device(free))).not.toThrow();
    expect(() => checkRunnerFits(spec, 1024, device(free), 256)).toThrow(
      `a runner of 1024 tokens needs ${formatBytes(runnerBytes(spec, 1024).total)} on NVIDIA H100 80GB HBM3 (K/V cache ${formatBytes(kvCacheBytes(spec, 1024))}) and ${formatBytes(free)} of 79.2 GiB is free; the largest that fits is 768 tokens`,
    );
    expect(largestCapacity(spec, runnerBytes(spec, 0).firstPass)).toBe(0);
    expect(() => checkRunnerFits(spec, 256, device(1000))).toThrow('no capacity fits: free device memory or run with --backend cpu');
  });
});
