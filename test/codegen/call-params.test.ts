/**
 * Per-call parameters: the tuned lookup by shape bucket, the CPU threads rule, and the runtime
 * honouring them in this order: what the caller says, what a tuned compile recorded for the
 * backend it runs on, the heuristic.
 */
import { describe, expect, test } from 'vitest';
import { CPU_PARALLEL_MICROS, NS_PER_KV_ELEMENT, NS_PER_MAC, cpuCallMicros, cpuSplitsFor, cpuThreadsFor, heuristicCpuCall, splitsFor, tunedCall, tunedCallOf } from '../../src/codegen/call-params.js';
import { generateModel } from '../../src/codegen/generate.js';
import type { ManifestVariant } from '../../src/codegen/manifest.js';
import { chooseAttentionSplits, chooseSplits, splitKernel } from '../../src/codegen/splits.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { AttentionLauncher } from '../../src/runtime/cuda/attention-launch.js';
import type { CudaDevice } from '../../src/runtime/cuda/device.js';
import { prepareCall } from '../../src/runtime/kernel-library.js';

const CALLS = { 'b1 L256': { splits: 1, threads: 1 }, 'b1 L4096': { splits: 4, threads: 0 }, 'b8 L1024': { splits: 2, threads: 0 } };

describe('tuned call lookup', () => {
  test('the bucket itself, else the nearest tuned prefix of the same batch, never another batch', () => {
    expect(tunedCall(CALLS, 1, 200)).toEqual(CALLS['b1 L256']);
    expect(tunedCall(CALLS, 1, 4000)).toEqual(CALLS['b1 L4096']);
    expect(tunedCall(CALLS, 1, 1000)).toEqual(CALLS['b1 L256']);   // L1024: 2 steps from both, the shorter wins
    expect(tunedCall(CALLS, 1, 2000)).toEqual(CALLS['b1 L4096']);  // L2048: 1 step from L4096
    expect(tunedCall(CALLS, 1, 1 << 16)).toEqual(CALLS['b1 L4096']);
    expect(tunedCall(CALLS, 8, 100)).toEqual(CALLS['b8 L1024']);
    expect(tunedCall(CALLS, 2, 1024)).toBeUndefined();
    expect(tunedCall(undefined, 1, 1024)).toBeUndefined();
  });
});

describe('CPU threads heuristic', () => {
  test('one thread for a call estimated shorter than the threshold, all for a longer one', () => {
    expect(cpuThreadsFor(CPU_PARALLEL_MICROS - 1)).toBe(1);
    expect(cpuThreadsFor(CPU_PARALLEL_MICROS)).toBe(0);
  });
  test('the estimate: K/V conversions per row tile and multiply-adds per row', () => {
    const base = { batch: 1, kvHeads: 2, rows: 2, rowTiles: 1, keys: 1025, headDim: 64 };
    const perHead = 2 * 1025 * 64;
    expect(cpuCallMicros(base)).toBeCloseTo((perHead * 2 * NS_PER_KV_ELEMENT + perHead * 2 * 2 * NS_PER_MAC) / 1000, 9);
    expect(cpuCallMicros({ ...base, rowTiles: 3 })).toBeGreaterThan(cpuCallMicros(base));
    expect(cpuCallMicros({ ...base, rows: 40 })).toBeGreaterThan(cpuCallMicros(base));
    expect(cpuCallMicros({ ...base, batch: 4 })).toBeCloseTo(4 * cpuCallMicros(base), 9);
  });
  test('split-KV only while the work items leave threads idle; none on one thread', () => {
    const shape = { batch: 1, kvHeads: 2, rows: 2, rowTiles: 1, steps: 1, headDim: 64, tileN: 64 };
    expect(heuristicCpuCall({ ...shape, prefix: 4096 }, 2)).toEqual({ threads: 0, splits: 1 });  // 2 items fill 2 threads
    expect(heuristicCpuCall({ ...shape, prefix: 4096 }, 16)).toEqual({ threads: 0, splits: chooseSplits(2, 16, 64) });
    expect(heuristicCpuCall({ ...shape, prefix: 4096 }, 16).splits).toBeGreaterThan(1);
    expect(heuristicCpuCall({ ...shape, prefix: 256 }, 16)).toEqual({ threads: 1, splits: 1 });
    expect(cpuSplitsFor(2, 1, 16, 64)).toBe(1);
    expect(cpuSplitsFor(2, 4, 16, 64)).toBe(chooseSplits(2, 4, 64));
  });
});

describe('the runtime uses the tuned calls of its backend', () => {
  const spec: ModelSpec = {
    name: 'calls', family: 'qwen3', layers: 1, hiddenSize: 128, queryHeads: 2, kvHeads: 1, headDim: 64, intermediateSize: 128, vocabSize: 260,
    ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true, dtype: 'bf16', maskTokenId: 259, draftLengths: [2],
  };
  const tiles = { tidar_k2: { warps: 2, tileN: 32, calls: CALLS, measuredOn: { backend: 'cpu' as const, device: 'test CPU x 16' } } };
  const tuned = generateModel(spec, { arches: ['sm_90'], tiles }).manifest.variants.find((v) => v.name === 'tidar_k2')!;
  const call = (v: ManifestVariant, prefix: number, extra: { splits?: number; threads?: number } = {}) => {
    const capacity = 8192;
    const args = prepareCall(v, {
      batch: 1, cacheCapacity: capacity, prefixLen: [prefix], q: new Uint16Array(v.steps * 2 * 64), kCache: new Uint16Array(capacity * 64), vCache: new Uint16Array(capacity * 64),
      kStep: new Uint16Array(v.steps * 64), vStep: new Uint16Array(v.steps * 64), ...extra,
    }, 16);
    return { splits: args.numSplits, threads: args.numThreads };
  };

  test('the manifest records the tuned calls and where they were measured', () => {
    expect(tuned.plan).toMatchObject({ warps: 2, tileN: 32 });
    expect(tuned.tuned).toEqual({ calls: CALLS, backend: 'cpu', device: 'test CPU x 16' });
  });
  test('a cpu-tuned variant takes its bucket\'s calls; the caller\'s own values win', () => {
    expect(call(tuned, 3000)).toEqual({ splits: 4, threads: 0 });
    expect(call(tuned, 200)).toEqual({ splits: 1, threads: 1 });
    expect(call(tuned, 3000, { splits: 2 })).toEqual({ splits: 2, threads: 0 });
    expect(call(tuned, 3000, { threads: 3 })).toEqual({ splits: 4, threads: 3 });
  });
  test('calls measured on the GPU do not set a CPU call: the heuristic does', () => {
    const gpu = { ...tuned, tuned: { ...tuned.tuned!, backend: 'cuda' as const } };
    const h = heuristicCpuCall({ batch: 1, kvHeads: 1, rows: tuned.rows, rowTiles: tuned.plan.rowTiles, prefix: 3000, steps: tuned.steps, headDim: 64, tileN: 32 }, 16);
    expect(call(gpu, 3000)).toEqual(h);
  });
});

describe('split-KV: one rule for every GPU caller (splitsFor)', () => {
  const kernel = splitKernel({ tileM: 80, rows: 80, rowTiles: 1, tileN: 64, headDim: 128 });
  test('the tuned value, else the rule of least estimated time over the SMs; never more than the prefix tiles', () => {
    expect(splitsFor({ tuned: 3, workItems: 200, sms: 132, prefixTiles: 10, kernel })).toBe(3);  // the heuristic alone: 1 (200 items fill 132 SMs)
    expect(splitsFor({ tuned: undefined, workItems: 200, sms: 132, prefixTiles: 10, kernel })).toBe(1);
    expect(splitsFor({ tuned: undefined, workItems: 8, sms: 132, prefixTiles: 64, kernel })).toBe(chooseAttentionSplits({ workItems: 8, sms: 132, prefixTiles: 64, kernel }));
    expect(splitsFor({ tuned: undefined, workItems: 8, sms: 132, prefixTiles: 64, kernel })).toBe(chooseSplits(8, 132, 64));  // the merge spread over every CTA weighs little: the wave rule's 16
    expect(splitsFor({ tuned: 8, workItems: 8, sms: 132, prefixTiles: 3, kernel })).toBe(3);
    expect(splitsFor({ tuned: 8, workItems: 8, sms: 132, prefixTiles: 0, kernel })).toBe(1);
  });
  test('tuned calls apply to the backend they were measured on only', () => {
    const tuned = { tuned: { calls: CALLS, backend: 'cuda' as const } };
    expect(tunedCallOf(tuned, 'cuda', 1, 3000)).toEqual(CALLS['b1 L4096']);
    expect(tunedCallOf(tuned, 'cpu', 1, 3000)).toBeUndefined();
    expect(tunedCallOf({}, 'cuda', 1, 3000)).toBeUndefined();
  });
  test('the cuda launcher: tuned on cuda, else the rule over the device\'s SMs with batch * kvHeads * rowTiles CTAs a split and the variant\'s tile', () => {
    const spec: ModelSpec = {
      name: 'gpu-calls', family: 'qwen3', layers: 1, hiddenSize: 128, queryHeads: 2, kvHeads: 1, headDim: 64, intermediateSize: 128, vocabSize: 260,
      ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true, dtype: 'bf16', maskTokenId: 259, draftLengths: [2],
    };
    const tiles = { tidar_k2: { warps: 2, tileN: 32, calls: CALLS, measuredOn: { backend: 'cuda' as const, device: 'test GPU x 132' } } };
    const { manifest } = generateModel(spec, { arches: ['sm_90'], tiles });
    const v = manifest.variants.find((x) => x.name === 'tidar_k2')!;
    const ar = manifest.variants.find((x) => x.name === 'ar')!;
    // The split choice reads the device's SM count only; nothing is loaded or launched.
    const launcher = (sms: number) => new AttentionLauncher({ info: { multiprocessors: sms } } as CudaDevice, '/nowhere', manifest);
    expect(launcher(132).splitsFor(v, 1, 3000)).toBe(4);   // tuned b1 L4096
    expect(launcher(132).splitsFor(v, 1, 200)).toBe(1);    // tuned b1 L256
    const rule = (x: ManifestVariant, batch: number, prefix: number) =>
      chooseAttentionSplits({ workItems: batch * x.launch.rowTiles, sms: 132, prefixTiles: Math.ceil(prefix / x.plan.tileN), kernel: splitKernel({ ...x.plan, rows: x.rows, headDim: 64 }) });
    expect(launcher(132).splitsFor(v, 2, 3000)).toBe(rule(v, 2, 3000));  // no tuned batch 2
    expect(launcher(132).splitsFor(ar, 1, 3000)).toBe(rule(ar, 1, 3000));
    expect(launcher(1).splitsFor(ar, 1, 3000)).toBe(1);
    expect(() => launcher(132).variant('tidar_k9')).toThrow(/the compiled kernels have no variant tidar_k9/);
  });
});
