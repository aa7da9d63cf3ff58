/**
 * 16-bit activations between operators on the cuda runner (src/ir/step-rewrite.ts
 * storeGemmInputs16, src/runtime/cuda/gpu-op-table.ts), on a recording stand-in for the device
 * and a real compile's manifest: the element type of each tensor comes from the step graph and
 * reaches the launches. Each layer's input norm stores h in bf16 (out_dtype 0) into a buffer of
 * 2 bytes an element, and the q|k|v GEMM reads exactly that buffer; qwen3's per-head q/k norms
 * are rope_pack's (no rmsnorm launch of their own): it reads the GEMM's float32 q and k (4 bytes
 * an element) with the layer's q_norm / k_norm weights and the model's eps; o_proj reads the
 * attention's 16-bit output directly (no to_float); the down GEMM reads the gate_up GEMM's
 * SwiGLU output, a 2-byte buffer. The numerics: test/emulate/gemm*.test.ts, ops-kernels.test.ts.
 * Needs: nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import { tidarVariantName } from '../../../src/codegen/variant-name.js';
import { loadCheckpoint } from '../../../src/model/checkpoint.js';
import type { CudaDevice, DeviceBuffer, KernelRef } from '../../../src/runtime/cuda/device.js';
import { OPS_ABI_BUFFER } from '../../../src/runtime/cuda/gpu-ops.js';
import { GpuModelRunner, uploadWeights } from '../../../src/runtime/cuda/gpu-runner.js';
import { DTYPE_CODE, GEMM, RMSNORM, ROPE_PACK, layoutOf, OPS_ABI_VERSION } from '../../../src/runtime/cuda/op-abi.js';
import { modelWeights } from '../../../src/runtime/model/weights.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-act16-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Launch { readonly kernel: string; readonly args: DataView }

function recorder(): { device: CudaDevice; launches: Launch[]; buffers: Map<number, DeviceBuffer> } {
  const launches: Launch[] = [];
  const buffers = new Map<number, DeviceBuffer>();
  let next = 0x10000;
  const device = {
    info: { multiprocessors: 132, major: 8, minor: 0 }, arch: 'sm_80',
    alloc: (bytes: number, label: string): DeviceBuffer => {
      const b = { ptr: next, bytes, label };
      buffers.set(next, b);
      next += Math.ceil(bytes / 256) * 256 + 256;
      return b;
    },
    free: () => undefined, fill: () => undefined, copy: () => undefined, upload: () => undefined,
    download: (b: DeviceBuffer, dst: ArrayBufferView) => void (b.label === OPS_ABI_BUFFER && ((dst as Int32Array)[0] = OPS_ABI_VERSION)),
    kernel: (module: string, name: string): KernelRef => ({ name, module }) as unknown as KernelRef,
    launch: (fn: KernelRef, _g: unknown, _b: unknown, _s: number, args: Uint8Array) => void launches.push({ kernel: (fn as unknown as { name: string }).name, args: new DataView(args.buffer, args.byteOffset, args.byteLength) }),
  } as unknown as CudaDevice;
  return { device, launches, buffers };
}

const field = (l: Launch, s: typeof RMSNORM | typeof GEMM | typeof ROPE_PACK, name: string, type: 'ptr' | 'i32'): number => {
  const at = layoutOf(s).offsets[name]!;
  return type === 'ptr' ? Number(l.args.getBigUint64(at, true)) : l.args.getInt32(at, true);
};

describe('16-bit activations on the cuda runner (recording device)', () => {
  test('qwen3 tidar_k2: h, o16 and the SwiGLU output are 2-byte buffers the GEMMs read; rope_pack norms the float32 q and k', async () => {
    const spec = smallSpec('act16', [2], { family: 'qwen3', qkNorm: true });
    const weights = modelWeights(await loadCheckpoint(await writeRandomModel(root, spec, 4)));
    const { manifest } = generateModel(spec, { arches: ['sm_80'] });
    const { device, launches, buffers } = recorder();
    // The unfolded graph (fold-norms off): each layer's norms are launches of their own (fold-norms-runner.test.ts: folded).
    const runner = new GpuModelRunner(spec, device, uploadWeights(device, spec, weights, manifest), '/kernels', manifest, 256, { foldNorms: false });
    runner.pass(Int32Array.from([1, 2, 3, 4, 5, 6]), Int32Array.from([0, 1, 2, 3, 4, 5]), { kind: 'step', variant: tidarVariantName(2) });
    const label = (ptr: number): string => buffers.get(ptr)!.label.split(' ')[0]!;
    const perToken = (ptr: number, width: number): number => buffers.get(ptr)!.bytes / (64 * width);  // activations: whole prefill chunks of rows

    expect(launches.map((l) => l.kernel)).not.toContain('tidarc_op_to_float');
    const norms = launches.filter((l) => l.kernel === 'tidarc_op_rmsnorm');
    const layerNorms = norms.filter((l) => field(l, RMSNORM, 'cols', 'i32') === spec.hiddenSize);
    expect(layerNorms).toHaveLength(2 * spec.layers + 1);
    expect(norms).toHaveLength(layerNorms.length);  // no head-norm launches: rope_pack's
    for (const l of layerNorms) {
      expect(field(l, RMSNORM, 'outDtype', 'i32')).toBe(DTYPE_CODE[spec.dtype]);
      expect([label(field(l, RMSNORM, 'out', 'ptr')), perToken(field(l, RMSNORM, 'out', 'ptr'), spec.hiddenSize)]).toEqual(['h', 2]);
    }
    const packs = launches.filter((l) => l.kernel === 'tidarc_op_rope_pack');
    expect(packs).toHaveLength(spec.layers);
    packs.forEach((l, layer) => {
      const f = (name: string, type: 'ptr' | 'i32' = 'ptr'): number => field(l, ROPE_PACK, name, type);
      expect([label(f('q')), perToken(f('q'), spec.queryHeads * spec.headDim), label(f('k')), perToken(f('k'), spec.kvHeads * spec.headDim)]).toEqual(['q', 4, 'k', 4]);
      expect([buffers.get(f('qNorm'))?.label, buffers.get(f('kNorm'))?.label]).toEqual([`model.layers.${layer}.self_attn.q_norm.weight`, `model.layers.${layer}.self_attn.k_norm.weight`]);
      expect(f('normDtype', 'i32')).toBe(DTYPE_CODE[spec.dtype]);
      expect(l.args.getFloat32(layoutOf(ROPE_PACK).offsets['eps']!, true)).toBe(Math.fround(spec.rmsNormEps));
    });

    // Per layer: qkv, o, gate_up, down (then lm_head, which this pass does not query).
    const gemms = launches.filter((l) => l.kernel.startsWith('tidarc_gemm_') && !l.kernel.endsWith('_reduce'));
    expect(gemms).toHaveLength(4 * spec.layers);
    for (let layer = 0; layer < spec.layers; layer++) {
      const [qkv, o, gateUp, down] = gemms.slice(4 * layer, 4 * layer + 4).map((l) => field(l, GEMM, 'x', 'ptr'));
      const swigluOut = field(gemms[4 * layer + 2]!, GEMM, 'out', 'ptr');
      expect([qkv, o, gateUp, down].map((p) => label(p!))).toEqual(['h', 'o16', 'h', 'gate']);
      expect(down).toBe(swigluOut);
      expect(perToken(down!, spec.intermediateSize)).toBe(2);
      expect(field(gemms[4 * layer + 2]!, GEMM, 'epilogue', 'i32')).toBe(1);  // SwiGLU
    }
  });
});
