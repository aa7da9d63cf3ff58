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
 *     device-memory.ts quotes these figures; fixtures/decode-scratch.ts prints them), for the small
 *     spec and for the Qwen3-0.6B shape (no weights in memory: the upload reads only their
 *     lengths). Needs: nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { QWEN3_0_6B } from '../../../src/bench/step-report.js';
import type { ArchName } from '../../../src/codegen/arch.js';
import { generateModel } from '../../../src/codegen/generate.js';
import { GEMM_SWIGLU_INTERLEAVE } from '../../../src/codegen/gemm-epilogue.js';
import { cudaPreflight } from '../../../src/load/model-parts.js';
import { CAPACITY_QUANTUM } from '../../../src/load/runner-pool.js';
import { expectedTensors, loadCheckpoint } from '../../../src/model/checkpoint.js';
import { readSafetensors, type Tensor, writeSafetensors } from '../../../src/model/safetensors.js';
import { CudaDevice } from '../../../src/runtime/cuda/device.js';
import { headScratchBytes, passBytes, runnerBytes, weightBytes } from '../../../src/runtime/cuda/device-memory.js';
import { GpuModelRunner, uploadWeights } from '../../../src/runtime/cuda/gpu-runner.js';
import { modelWeights } from '../../../src/runtime/model/weights.js';
import { decode } from '../../../src/util/dtype.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';
import { decodeExtra, recorder } from './fixtures/decode-scratch.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-device-memory-shapes-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const MiB = 2 ** 20;

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
  test('norms, a fused q/k/v, an o_proj and a q_proj beside BF16 k/v stored F32: cudaPreflight == uploadWeights, byte for byte', async () => {
    const spec = smallSpec('mem-f32', [2], { family: 'qwen3', qkNorm: true, tieEmbeddings: false });
    const dir = await writeRandomModel(root, spec, 6);
    // Rewrite model.safetensors with some tensors as F32 (the same values), as an HF checkpoint may hold them.
    const file = join(dir, 'model.safetensors');
    const f = await readSafetensors(file);
    // Layer 1's q_proj alone F32: its fused q | k | v is widened to f32 whole (k and v too).
    const asF32 = new Set(['model.norm.weight', 'model.layers.0.input_layernorm.weight', 'model.layers.1.self_attn.q_norm.weight', 'model.layers.1.self_attn.o_proj.weight',
      ...['q', 'k', 'v'].map((p) => `model.layers.0.self_attn.${p}_proj.weight`), 'model.layers.1.self_attn.q_proj.weight']);
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
    const open = vi.spyOn(CudaDevice, 'open').mockReturnValue({ info: { name: 'stand-in' }, memory: () => ({ freeBytes: 2 ** 40, totalBytes: 2 ** 40 }), close: () => undefined } as unknown as CudaDevice);
    try {
      const fit = cudaPreflight(spec, ckpt);
      expect(fit.fits).toBe(true);
      expect(fit.neededBytes - runnerBytes(spec, CAPACITY_QUANTUM).total).toBe(gpu.bytes);
    } finally {
      open.mockRestore();
    }
    // Each F32 element is 2 bytes more than the all-16-bit pricing counts, and so is each element widened beside one.
    const f32Elements = [...asF32].reduce((n, name) => n + ckpt.tensors.get(name)!.data.length, 0);
    const widened = ['k', 'v'].reduce((n, p) => n + ckpt.tensors.get(`model.layers.1.self_attn.${p}_proj.weight`)!.data.length, 0);
    expect(gpu.bytes - weightBytes(spec)).toBe(2 * (f32Elements + widened));
    expect(gpu.matrices.get('model.layers.1.self_attn.qkv_proj.weight')!.dtype).toBe('f32');
  });
});

describe("what a decode loop allocates beyond the priced runner (device-memory.ts's file comment)", () => {
  test('the small spec: under 1 MiB, greedy or sampled, AR or TiDAR', () => {
    const spec = smallSpec('mem-decode', [2]);
    for (const k of [0, 2]) for (const temperature of [0, 0.8]) {
      const { decode } = decodeExtra(spec, k, temperature, 512);
      expect(decode).toBeGreaterThan(0);
      expect(decode).toBeLessThan(MiB);
    }
  });

  test('the Qwen3-0.6B shape at 4096 tokens: ~2 MiB for AR, up to ~56 MiB for TiDAR k = 16 sampled (its logits, split-KV and split-K scratch)', () => {
    const ar = decodeExtra(QWEN3_0_6B, 0, 0, 4096);
    expect(ar.prefill).toBeGreaterThan(MiB);
    expect(ar.decode).toBeLessThan(3 * MiB);
    const k16 = decodeExtra(QWEN3_0_6B, 16, 0.8, 4096);
    // The figures the file comment quotes: more than a few MiB, all of it sized by the step's token count and prefix.
    expect(k16.decode).toBeGreaterThan(40 * MiB);
    expect(k16.decode).toBeLessThan(64 * MiB);
    // A sampled step's logits: its k verify rows x vocab in fp32 (a greedy step has none: row statistics).
    expect(k16.logits).toBe(16 * QWEN3_0_6B.vocabSize * 4);
    expect(k16.splitKv).toBeGreaterThan(8 * MiB);
    expect(k16.splitK).toBeGreaterThan(4 * MiB);
    // The step's activations: 272 tokens in 5 whole chunks, beside the priced 64-token pass's (freed by the first step).
    expect(k16.stepActivations).toBeGreaterThan(4 * (runnerBytes(QWEN3_0_6B, 0).firstPass - headScratchBytes(1, QWEN3_0_6B.vocabSize)));
  }, 60_000);
});
