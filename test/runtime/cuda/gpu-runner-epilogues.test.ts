/**
 * Which kernels the cuda runner launches for its MLP and its lm_head (src/runtime/cuda/gpu-runner.ts),
 * on a recording stand-in for the device and a real compile's manifest (smallSpec):
 *   - gate | up is uploaded interleaved in the manifest's blocks, and each layer's MLP is the
 *     gate_up GEMM with the SwiGLU epilogue into the [T, I] buffer the down GEMM reads: no
 *     tidarc_op_silu_mul;
 *   - a greedy query (argmax) runs the lm_head GEMM with the row statistics epilogue and its
 *     merge: no logits buffer written, no tidarc_op_row_stats; the lse still comes back for the
 *     non-finite check;
 *   - a sampling query (logits) keeps the plain lm_head over the requested rows and row_stats.
 * Needs: nothing (the numerics of both epilogues: test/emulate/gemm-epilogue.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import { interleaveGateUp } from '../../../src/codegen/gemm-epilogue.js';
import { AR_VARIANT, tidarVariantName } from '../../../src/codegen/variant-name.js';
import { loadCheckpoint } from '../../../src/model/checkpoint.js';
import type { CudaDevice, DeviceBuffer, KernelRef } from '../../../src/runtime/cuda/device.js';
import { OPS_ABI_BUFFER } from '../../../src/runtime/cuda/gpu-ops.js';
import { GpuModelRunner, uploadWeights } from '../../../src/runtime/cuda/gpu-runner.js';
import { GEMM, layoutOf, OPS_ABI_VERSION } from '../../../src/runtime/cuda/op-abi.js';
import { modelWeights } from '../../../src/runtime/model/weights.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-runner-epi-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Launch { kernel: string; args: Uint8Array }

function recorder() {
  const launches: Launch[] = [];
  const uploads = new Map<string, ArrayBufferView>();
  const allocs: string[] = [];
  let next = 0x10000;
  const device = {
    info: { multiprocessors: 132 },
    alloc: (bytes: number, label: string): DeviceBuffer => (allocs.push(label), { ptr: (next += Math.ceil(bytes / 256) * 256 + 256), bytes, label }),
    free: () => undefined,
    fill: () => undefined,
    copy: () => undefined,
    upload: (b: DeviceBuffer, data: ArrayBufferView) => uploads.set(b.label, data),
    download: (b: DeviceBuffer, dst: ArrayBufferView) => void (b.label === OPS_ABI_BUFFER && ((dst as Int32Array)[0] = OPS_ABI_VERSION)),  // else zeros: a finite lse
    kernel: (module: string, name: string): KernelRef => ({ name, module }) as unknown as KernelRef,
    launch: (fn: KernelRef, _g: unknown, _b: unknown, _s: number, args: Uint8Array) => launches.push({ kernel: fn.name, args }),
  } as unknown as CudaDevice;
  return { device, launches, uploads, allocs };
}

const field = (args: Uint8Array, name: string): number => {
  const at = layoutOf(GEMM).offsets[name]!;
  const v = new DataView(args.buffer, args.byteOffset);
  return GEMM.fields.find(([f]) => f === name)![1] === 'ptr' ? Number(v.getBigUint64(at, true)) : v.getInt32(at, true);
};

describe('the cuda runner on the fused epilogues', async () => {
  const spec = smallSpec('runnerepi', [2]);
  const weights = modelWeights(await loadCheckpoint(await writeRandomModel(root, spec, 3)));
  const { manifest } = generateModel(spec, { arches: ['sm_80'] });
  const I = spec.intermediateSize;

  test('gate | up uploaded interleaved; the MLP is one SwiGLU GEMM, no silu_mul; greedy lm_head writes no logits', () => {
    const { device, launches, uploads, allocs } = recorder();
    const w = uploadWeights(device, spec, weights, manifest);
    expect(w.gateUpInterleave).toBe(8);
    const natural = new Uint16Array(2 * I * spec.hiddenSize);
    natural.set(weights.get('model.layers.0.mlp.gate_proj.weight')!.data as Uint16Array);
    natural.set(weights.get('model.layers.0.mlp.up_proj.weight')!.data as Uint16Array, I * spec.hiddenSize);
    expect(uploads.get('model.layers.0.mlp.gate_up_proj.weight')).toEqual(interleaveGateUp(natural, spec.hiddenSize, 8));

    const runner = new GpuModelRunner(spec, device, w, '/kernels', manifest, 64);
    const pass = runner.pass(Int32Array.from([1, 2, 3, 4, 5, 6]), Int32Array.from([0, 1, 2, 3, 4, 5]), { kind: 'step', variant: tidarVariantName(2) });
    const names = launches.map((l) => l.kernel);
    expect(names).not.toContain('tidarc_op_silu_mul');
    // The workspace holds what the fused graph names: gate (the SwiGLU output), no up [T, I].
    expect(allocs).toContain('gate [6 tokens]');
    expect(allocs.filter((l) => l.startsWith('up ['))).toEqual([]);
    // smallSpec's q | k | v has gate | up's shape (512 x 128): one unit, the epilogue chosen per launch.
    const unit = launches.filter((l) => l.kernel.startsWith(`tidarc_gemm_bf16_n${2 * I}_k${spec.hiddenSize}_m`));
    expect(unit.map((l) => field(l.args, 'epilogue'))).toEqual([0, 1, 0, 1]);
    const gateUp = unit.filter((l) => field(l.args, 'epilogue') === 1);
    expect(gateUp.every((l) => field(l.args, 'out2') === 0)).toBe(true);
    // The SwiGLU output is what the down GEMM reads (o_proj shares its 128 x 256 unit: o, down, o, down).
    const down = launches.filter((l) => l.kernel.startsWith(`tidarc_gemm_bf16_n${spec.hiddenSize}_k${I}_m`)).filter((_, i) => i % 2 === 1);
    expect(down.map((l) => field(l.args, 'x'))).toEqual(gateUp.map((l) => field(l.args, 'out')));

    launches.length = 0;
    pass.argmax([0, 2]);
    const head = `tidarc_gemm_bf16_n${spec.vocabSize}_k${spec.hiddenSize}`;
    expect(launches.map((l) => l.kernel)).toEqual([`${head}_m6`, `${head}_row_stats`]);
    expect([field(launches[0]!.args, 'epilogue'), field(launches[0]!.args, 'out'), field(launches[0]!.args, 'rows')]).toEqual([2, 0, 2]);

    launches.length = 0;
    pass.logits([1]);
    expect(launches.map((l) => l.kernel)).toEqual([`${head}_m1`, 'tidarc_op_row_stats']);
    expect(field(launches[0]!.args, 'epilogue')).toBe(0);
    expect(field(launches[0]!.args, 'out')).not.toBe(0);
  });

  test('without the manifest\'s interleave (an older manifest) gate | up stays in order and silu_mul runs', () => {
    const { device, launches, allocs } = recorder();
    const plain = { ...manifest, gemms: manifest.gemms!.map(({ swigluInterleave: _, rowStatsKernel: __, ...g }) => g) };
    const w = uploadWeights(device, spec, weights, plain);
    expect(w.gateUpInterleave).toBeUndefined();
    const pass = new GpuModelRunner(spec, device, w, '/kernels', plain, 64).pass(Int32Array.from([1]), Int32Array.from([0]), { kind: 'step', variant: AR_VARIANT });
    expect(launches.filter((l) => l.kernel === 'tidarc_op_silu_mul')).toHaveLength(spec.layers);
    expect(allocs).toContain('up [1 tokens]');
    launches.length = 0;
    pass.argmax([0]);
    expect(launches.map((l) => l.kernel).at(-1)).toBe('tidarc_op_row_stats');
  });
});
