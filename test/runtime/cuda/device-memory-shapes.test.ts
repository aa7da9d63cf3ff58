/**
 * Device memory priced before it is allocated (src/runtime/cuda/device-memory.ts), where
 * device-memory.test.ts does not reach, on a recording stand-in for the device:
 *   - a compile for sm_90 / sm_90a whose gate_up GEMM is its own unit with the SwiGLU epilogue:
 *     uploadWeights interleaves gate | up (checked in the uploaded bytes) and weightBytes is still
 *     what it allocates, byte for byte; a gate_up whose N is no multiple of 16 (no interleave)
 *     likewise; a first pass's activations on such a device are passBytes with the interleave;
 *   - a checkpoint whose tensors are partly F32 (norms, a fused q/k/v, an o_proj: as some HF
 *     checkpoints store them), priced by the load's own preflight (cudaPreflight, its element-size
 *     rule, over a stand-in device) and uploaded by uploadWeights: the same bytes;
 *   - what a decode loop allocates beyond the priced weights and runner (step workspaces and
 *     I/O, GEMM split-K and split-KV scratch, a sampled step's logits: the file comment of
 *     device-memory.ts quotes these figures), for the small spec and for the Qwen3-0.6B shape
 *     (no weights in memory: the upload reads only their lengths). Needs: nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { QWEN3_0_6B } from '../../../src/bench/step-report.js';
import type { ArchName } from '../../../src/codegen/arch.js';
import { generateModel } from '../../../src/codegen/generate.js';
import { GEMM_SWIGLU_INTERLEAVE } from '../../../src/codegen/gemm-epilogue.js';
import { AR_VARIANT, tidarVariantName } from '../../../src/codegen/variant-name.js';
import type { ModelSpec } from '../../../src/ir/model.js';
import { cudaPreflight } from '../../../src/load/model-parts.js';
import { CAPACITY_QUANTUM } from '../../../src/load/runner-pool.js';
import { expectedTensors, loadCheckpoint } from '../../../src/model/checkpoint.js';
import { readSafetensors, type Tensor, writeSafetensors } from '../../../src/model/safetensors.js';
import { CudaDevice, type DeviceBuffer, type GraphRef, type KernelRef, type PinnedBuffer } from '../../../src/runtime/cuda/device.js';
import { headScratchBytes, passBytes, runnerBytes, weightBytes } from '../../../src/runtime/cuda/device-memory.js';
import { OPS_ABI_BUFFER } from '../../../src/runtime/cuda/gpu-ops.js';
import { GpuModelRunner, uploadWeights } from '../../../src/runtime/cuda/gpu-runner.js';
import { OPS_ABI_VERSION } from '../../../src/runtime/cuda/op-abi.js';
import type { WeightMatrix } from '../../../src/runtime/ops.js';
import { type ModelWeights, modelWeights } from '../../../src/runtime/model/weights.js';
import { decode } from '../../../src/util/dtype.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-device-memory-shapes-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const MiB = 2 ** 20;

/**
 * A device that records its live allocations, their peak, and the uploads' bytes (by label); a
 * decode step's download reads "1 token accepted"; graphs are captured by running their launches.
 */
function recorder(arch: string) {
  const live = new Map<number, DeviceBuffer>();
  const uploads = new Map<string, Uint8Array>();
  let next = 0x10000, now = 0, peak = 0;
  const device = {
    capture: (label: string, record: () => void): GraphRef => (record(), { handle: 1, label, kernels: 0, programmaticKernels: 0, uploads: 0, uploadBytes: 0, downloads: 0, downloadBytes: 0 }),
    launchGraph: () => undefined, destroyGraph: () => undefined,
    info: { multiprocessors: 132, name: 'recorder', computeCapability: arch.startsWith('sm_9') ? [9, 0] : [8, 0] }, arch,
    alloc: (bytes: number, label: string): DeviceBuffer => {
      const b = { ptr: next, bytes: Math.max(1, Math.ceil(bytes)), label };
      next += Math.ceil(bytes / 256) * 256 + 256;
      live.set(b.ptr, b);
      now += b.bytes;
      peak = Math.max(peak, now);
      return b;
    },
    free: (b: DeviceBuffer) => void (live.delete(b.ptr) && (now -= b.bytes)),
    allocPinned: (bytes: number, label: string): PinnedBuffer => ({ buffer: new ArrayBuffer(bytes), bytes, label }),
    freePinned: () => undefined, fill: () => undefined, copy: () => undefined, uploadAsync: () => undefined,
    upload: (b: DeviceBuffer, data: ArrayBufferView) => void (data.buffer instanceof ArrayBuffer && uploads.set(b.label, new Uint8Array(data.buffer, data.byteOffset, data.byteLength))),
    download: (b: DeviceBuffer, dst: ArrayBufferView) => void ((b.label === 'decode step output' && ((dst as Int32Array)[0] = 1)) || (b.label === OPS_ABI_BUFFER && ((dst as Int32Array)[0] = OPS_ABI_VERSION))),
    kernel: (_module: string, name: string): KernelRef => ({ name, handle: 0, maxShared: 0 }),
    launch: () => undefined,
  } as unknown as CudaDevice;
  const bytes = (filter: (label: string) => boolean = () => true): number => [...live.values()].filter((b) => filter(b.label)).reduce((n, b) => n + b.bytes, 0);
  return {
    device, uploads, bytes,
    /** The most bytes live at once since the last call (then: what is live now). */
    peakSince: (): number => {
      const p = peak;
      peak = now;
      return p;
    },
  };
}

describe('an sm_90 compile: gate_up with the SwiGLU interleave, priced byte for byte', () => {
  // qkv: N = (4 + 2 x 2) x 64 = 512; gate_up: N = 2 x 384 = 768, its own GEMM unit (a multiple of 16: interleaved).
  const own = smallSpec('mem-sm90-swiglu', [2], { intermediateSize: 384 });
  // gate_up: N = 2 x 196 = 392, no multiple of 16: no SwiGLU epilogue, gate | up as they are.
  const odd = smallSpec('mem-sm90-plain', [2], { intermediateSize: 196 });

  test.each([['sm_90', own.name, own], ['sm_90a', own.name, own], ['sm_90', odd.name, odd]] as const)('%s, %s: weightBytes == what uploadWeights allocates; the first pass is passBytes', async (arch, _name, spec) => {
    const weights = modelWeights(await loadCheckpoint(await writeRandomModel(root, spec, 3)));
    const { manifest } = generateModel(spec, { arches: [arch as ArchName] });
    const gateUp = manifest.gemms!.find((g) => g.roles.includes('gate_up'))!;
    expect(gateUp.n).toBe(2 * spec.intermediateSize);
    expect(gateUp.roles).not.toContain('qkv');
    const d = recorder(arch);
    const gpu = uploadWeights(d.device, spec, weights, manifest);
    const interleaved = spec === own;
    expect(gateUp.swigluInterleave).toBe(interleaved ? GEMM_SWIGLU_INTERLEAVE : undefined);
    expect(gpu.gateUpInterleave).toBe(interleaved ? GEMM_SWIGLU_INTERLEAVE : undefined);
    // The upload's gate_up rows: gate rows 0..7, up rows 0..7, gate rows 8..15, ... when interleaved.
    const name = 'model.layers.1.mlp.gate_up_proj.weight';
    const uploaded = new Uint16Array(d.uploads.get(name)!.slice().buffer);
    const gate = weights.get('model.layers.1.mlp.gate_proj.weight')!.data as Uint16Array, up = weights.get('model.layers.1.mlp.up_proj.weight')!.data as Uint16Array;
    const H = spec.hiddenSize, b = GEMM_SWIGLU_INTERLEAVE;
    expect(uploaded.length).toBe(gate.length + up.length);
    expect(uploaded.subarray(b * H, 2 * b * H)).toEqual(interleaved ? up.subarray(0, b * H) : gate.subarray(b * H, 2 * b * H));
    expect(d.bytes()).toBe(gpu.bytes);
    expect(weightBytes(spec)).toBe(gpu.bytes);
    // A first pass of one chunk on this device: its activations and lm_head scratch are runnerBytes' firstPass.
    const runner = new GpuModelRunner(spec, d.device, gpu, '/kernels', manifest, 256, { graphs: false });
    const T = 64, schedule = { kind: 'prefill', promptTokens: T } as const;
    const ids = Int32Array.from({ length: T }, (_, i) => i);
    runner.pass(ids, ids, schedule).argmax([T - 1]);
    const activations = d.bytes((l) => l.endsWith(`[${T} tokens]`) || l === 'prefix lengths');
    expect(activations).toBe(passBytes(spec, T, schedule, gpu.gateUpInterleave));
    expect(activations + d.bytes((l) => l.startsWith('lm_head '))).toBe(runnerBytes(spec, 256, gpu.gateUpInterleave).firstPass);
    expect(d.bytes((l) => l.startsWith('lm_head '))).toBe(headScratchBytes(1, spec.vocabSize));
    // The interleave leaves the up half out of the activations: the default pricing (without it) is an upper bound.
    if (interleaved) expect(passBytes(spec, T, schedule)).toBeGreaterThan(activations);
    runner.close();
  });
});

describe('a checkpoint with F32 tensors: the preflight prices what the upload allocates', () => {
  test('norms, a fused q/k/v and an o_proj stored F32: cudaPreflight == uploadWeights, byte for byte', async () => {
    const spec = smallSpec('mem-f32', [2], { family: 'qwen3', qkNorm: true, tieEmbeddings: false });
    const dir = await writeRandomModel(root, spec, 6);
    // Rewrite model.safetensors with some tensors as F32 (the same values), as an HF checkpoint may hold them.
    const file = join(dir, 'model.safetensors');
    const f = await readSafetensors(file);
    const asF32 = new Set(['model.norm.weight', 'model.layers.0.input_layernorm.weight', 'model.layers.1.self_attn.q_norm.weight', 'model.layers.1.self_attn.o_proj.weight',
      ...['q', 'k', 'v'].map((p) => `model.layers.0.self_attn.${p}_proj.weight`)]);
    const tensors: Record<string, Tensor> = {};
    for (const t of expectedTensors(spec)) {
      const x = f.tensor(t.name);
      tensors[t.name] = asF32.has(t.name) ? { dtype: 'F32', shape: x.shape, data: decode('bf16', x.data as Uint16Array) } : x;
    }
    await writeSafetensors(file, tensors, { format: 'pt' });
    const ckpt = await loadCheckpoint(dir);
    expect([...asF32].map((n) => ckpt.tensors.get(n)!.dtype)).toEqual([...asF32].map(() => 'F32'));
    const { manifest } = generateModel(spec, { arches: ['sm_90'] });
    const d = recorder('sm_90');
    const gpu = uploadWeights(d.device, spec, modelWeights(ckpt), manifest);
    expect(d.bytes()).toBe(gpu.bytes);
    // The load's preflight over a stand-in device with plenty free: what it needs is the weights and a CAPACITY_QUANTUM runner.
    const open = vi.spyOn(CudaDevice, 'open').mockReturnValue({ info: { name: 'stand-in' }, memory: () => ({ freeBytes: 2 ** 40, totalBytes: 2 ** 40 }) } as unknown as CudaDevice);
    try {
      const fit = cudaPreflight(spec, ckpt);
      expect(fit.fits).toBe(true);
      expect(fit.neededBytes - runnerBytes(spec, CAPACITY_QUANTUM).total).toBe(gpu.bytes);
    } finally {
      open.mockRestore();
    }
    // Each F32 element is 2 bytes more than the all-16-bit pricing counts.
    const f32Elements = [...asF32].reduce((n, name) => n + ckpt.tensors.get(name)!.data.length, 0);
    expect(gpu.bytes - weightBytes(spec)).toBe(2 * f32Elements);
  });
});

/** Weights of a spec's shapes without their values in memory: the upload reads only a matrix's length (fused parts share one zero array per shape). */
function shapeOnlyWeights(spec: ModelSpec): ModelWeights {
  const zeros = new Map<string, Uint16Array>();
  const w = new Map<string, WeightMatrix>();
  for (const t of expectedTensors(spec)) {
    const n = t.shape.reduce((a, b) => a * b, 1), fused = /_proj\.weight$/.test(t.name);
    const data = fused ? (zeros.get(t.shape.join('x')) ?? zeros.set(t.shape.join('x'), new Uint16Array(n)).get(t.shape.join('x'))!) : ({ byteLength: 2 * n, length: n } as Uint16Array);
    w.set(t.name, { data, dtype: 'bf16', rows: t.shape.length === 2 ? t.shape[0]! : 1, cols: t.shape.at(-1)! } as WeightMatrix);
  }
  if (spec.tieEmbeddings) w.set('lm_head.weight', w.get('model.embed_tokens.weight')!);
  return w;
}

/**
 * Bytes a decode loop holds at its peak beyond the priced weights and runner of `capacity`
 * (weightBytes + runnerBytes): a one-chunk prompt, then steps of `k` drafts (0: AR) every 97
 * positions up to the capacity (each split-KV bucket), greedy or sampled; graphs captured.
 */
function decodeExtra(spec: ModelSpec, k: number, temperature: number, capacity: number): { prefill: number; extra: number; labels: Map<string, number> } {
  const { manifest } = generateModel(spec, { arches: ['sm_90'] });
  const d = recorder('sm_90');
  const gpu = uploadWeights(d.device, spec, shapeOnlyWeights(spec), manifest);
  expect(gpu.bytes).toBe(weightBytes(spec));
  const runner = new GpuModelRunner(spec, d.device, gpu, '/kernels', manifest, capacity);
  const priced = gpu.bytes + runnerBytes(spec, capacity, gpu.gateUpInterleave).total;
  const S = 64;
  const ids = Int32Array.from({ length: S }, (_, i) => i);
  runner.pass(ids, ids, { kind: 'prefill', promptTokens: S }).argmax([S - 1]);
  // The pass's own GEMM and split-KV scratch (freed by the first step) are not priced either.
  const prefill = d.peakSince() - priced;
  const T = k + k * k, sampling = { temperature, topP: 1, beta: 1, seed: 0 };
  for (let L = S, n = 1; L + Math.max(T, 1) < capacity; L += 97, n++) {
    runner.cache.length = L;
    if (k === 0) runner.decodeStep({ variant: AR_VARIANT, ids: Int32Array.of(5), positions: Int32Array.of(L), verifyRows: [0], verifyDrafts: [-1], sampling, rngStep: n });
    else {
      runner.decodeStep({
        variant: tidarVariantName(k), ids: new Int32Array(T), positions: Int32Array.from({ length: T }, (_, i) => L + i), verifyRows: Array.from({ length: k }, (_, i) => i),
        verifyDrafts: [...Array<number>(k - 1).fill(7), -1], ...(k > 1 ? { nextDrafts: { stride: k, offset: 1, count: k - 1 } } : {}), sampling, rngStep: n,
      });
    }
  }
  const extra = d.peakSince() - priced;
  const labels = new Map<string, number>();
  for (const l of ['decode step logits', 'split-KV workspace', 'GEMM workspace (split-K partials, row statistics tiles)']) labels.set(l, d.bytes((x) => x === l));
  runner.close();
  return { prefill, extra, labels };
}

describe("what a decode loop allocates beyond the priced runner (device-memory.ts's file comment)", () => {
  test('the small spec: under 1 MiB, greedy or sampled, AR or TiDAR', () => {
    const spec = smallSpec('mem-decode', [2]);
    for (const k of [0, 2]) for (const temperature of [0, 0.8]) {
      const { extra } = decodeExtra(spec, k, temperature, 512);
      expect(extra).toBeGreaterThan(0);
      expect(extra).toBeLessThan(MiB);
    }
  });

  test('the Qwen3-0.6B shape at 4096 tokens: ~2 MiB for AR, up to ~56 MiB for TiDAR k = 16 sampled (its logits, split-KV and split-K scratch)', () => {
    const ar = decodeExtra(QWEN3_0_6B, 0, 0, 4096);
    expect(ar.extra).toBeLessThan(3 * MiB);
    const k16 = decodeExtra(QWEN3_0_6B, 16, 0.8, 4096);
    // The figures the file comment quotes: more than a few MiB, all of it scratch the step sizes from its token count.
    expect(k16.extra).toBeGreaterThan(40 * MiB);
    expect(k16.extra).toBeLessThan(64 * MiB);
    // A sampled step's logits: its k verify rows x vocab in fp32 (a greedy step has none: row statistics).
    expect(k16.labels.get('decode step logits')).toBe(16 * QWEN3_0_6B.vocabSize * 4);
    expect(k16.labels.get('split-KV workspace')).toBeGreaterThan(8 * MiB);
    expect(k16.labels.get('GEMM workspace (split-K partials, row statistics tiles)')).toBeGreaterThan(4 * MiB);
  }, 60_000);
});
