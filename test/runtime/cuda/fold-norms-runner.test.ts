/**
 * Fold-norms on the cuda runner (gpu-op-table.ts, gpu-gemm.ts, gpu-weights.ts), on a recording
 * stand-in for the device and a real compile's manifest (bf16: its GEMM units carry the flags):
 *   - by default a pass launches exactly 2L rmsnorms fewer than with foldNorms: false (layer 0's
 *     input norm after the embedding stays), every other launch alike;
 *   - each o / down GEMM is the producer of the norm after it: its float32 weight (uploaded
 *     widened, exactly), the norm's old out h and the float64 sums h.sumsq [ceil(H / 64)];
 *     qkv (layers 1..), gate_up and the lm_head scale by those sums (cols H, the model's eps);
 *   - the sm_90a GEMMs (a 9.0 device, an sm_90a compile) fold alike;
 *   - fp16: no fold, and the runner says why.
 * The numerics: test/emulate/gemm-fold-norms.test.ts (F1) and fold-norms-model.test.ts.
 * Needs: nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import { tidarVariantName } from '../../../src/codegen/variant-name.js';
import type { ModelSpec } from '../../../src/ir/model.js';
import { loadCheckpoint } from '../../../src/model/checkpoint.js';
import type { CudaDevice, DeviceBuffer, KernelRef } from '../../../src/runtime/cuda/device.js';
import { OPS_ABI_BUFFER } from '../../../src/runtime/cuda/gpu-ops.js';
import { GpuModelRunner, uploadWeights } from '../../../src/runtime/cuda/gpu-runner.js';
import { GEMM, RMSNORM, layoutOf, OPS_ABI_VERSION } from '../../../src/runtime/cuda/op-abi.js';
import { TENSOR_MAP_BYTES } from '../../../src/runtime/cuda/tensor-map.js';
import { decode } from '../../../src/util/dtype.js';
import { modelWeights } from '../../../src/runtime/model/weights.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-fold-runner-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Launch { readonly kernel: string; readonly args: DataView }

function recorder(arch: 'sm_80' | 'sm_90a' = 'sm_80') {
  const launches: Launch[] = [];
  const buffers = new Map<number, DeviceBuffer>();
  const uploads = new Map<string, Uint8Array>();
  let next = 0x10000;
  const device = {
    info: { multiprocessors: 132, major: arch === 'sm_80' ? 8 : 9, minor: 0 }, arch,
    encodeTensorMap: () => new Uint8Array(TENSOR_MAP_BYTES),
    alloc: (bytes: number, label: string): DeviceBuffer => {
      const b = { ptr: next, bytes, label };
      buffers.set(next, b);
      next += Math.ceil(bytes / 256) * 256 + 256;
      return b;
    },
    free: () => undefined, fill: () => undefined, copy: () => undefined,
    upload: (b: DeviceBuffer, src: ArrayBufferView) => void uploads.set(b.label, new Uint8Array(src.buffer.slice(src.byteOffset, src.byteOffset + src.byteLength))),
    download: (b: DeviceBuffer, dst: ArrayBufferView) => void (b.label === OPS_ABI_BUFFER && ((dst as Int32Array)[0] = OPS_ABI_VERSION)),
    kernel: (module: string, name: string): KernelRef => ({ name, module }) as unknown as KernelRef,
    launch: (fn: KernelRef, _g: unknown, _b: unknown, _s: number, args: Uint8Array) => void launches.push({ kernel: (fn as unknown as { name: string }).name, args: new DataView(args.buffer, args.byteOffset, args.byteLength) }),
  } as unknown as CudaDevice;
  return { device, launches, buffers, uploads };
}

/** A field of a launch's argument; an sm_90a GEMM's TidarcGemmArgs follows its two tensor maps. */
const field = (l: Launch, s: typeof RMSNORM | typeof GEMM, name: string): number => {
  const at = layoutOf(s).offsets[name]! + (s === GEMM && l.kernel.includes('sm90a') ? 2 * TENSOR_MAP_BYTES : 0);
  const type = s.fields.find(([f]) => f === name)![1];
  return type === 'ptr' ? Number(l.args.getBigUint64(at, true)) : type === 'f32' ? l.args.getFloat32(at, true) : l.args.getInt32(at, true);
};

/** One tidar_k2 pass (6 tokens) and an lm_head query of two rows, folded or not. */
async function run(spec: ModelSpec, foldNorms?: boolean, arch: 'sm_80' | 'sm_90a' = 'sm_80') {
  const weights = modelWeights(await loadCheckpoint(await writeRandomModel(root, spec, 4)));
  const generated = generateModel(spec, { arches: [arch] }).manifest;
  // The cost model keeps these small shapes on mma.sync (heuristic sm_90); without a heuristic (an older compile) a 9.0 device takes the sm_90a units.
  const manifest = { ...generated, ...(generated.gemmsSm90a ? { gemmsSm90a: generated.gemmsSm90a.map(({ heuristic: _, ...u }) => u) } : {}) };
  const r = recorder(arch);
  const gpu = uploadWeights(r.device, spec, weights, manifest);
  const runner = new GpuModelRunner(spec, r.device, gpu, '/kernels', manifest, 256, foldNorms === undefined ? {} : { foldNorms });
  const pass = runner.pass(Int32Array.from([1, 2, 3, 4, 5, 6]), Int32Array.from([0, 1, 2, 3, 4, 5]), { kind: 'step', variant: tidarVariantName(2) });
  pass.argmax([0, 3]);
  const label = (ptr: number): string => (ptr === 0 ? '' : r.buffers.get(ptr)!.label.split(' [')[0]!);
  return { ...r, runner, weights, label };
}

describe('fold-norms on the cuda runner (recording device)', () => {
  const spec = smallSpec('fold-runner', [2], { family: 'qwen3', qkNorm: true, layers: 3, hiddenSize: 192 });

  test('bf16: 2L rmsnorm launches fewer, every other launch alike; producers and consumers carry the fold', async () => {
    const on = await run(spec);
    const off = await run(spec, false);
    expect(on.runner.graphChoice.foldNorms).toBe(true);
    expect(off.runner.graphChoice).toMatchObject({ foldNorms: false, foldNormsWhy: expect.stringMatching(/switched off/) });
    const H = spec.hiddenSize, L = spec.layers;
    const layerNorms = (ls: Launch[]) => ls.filter((l) => l.kernel === 'tidarc_op_rmsnorm' && field(l, RMSNORM, 'cols') === H);
    expect(layerNorms(off.launches)).toHaveLength(2 * L + 1);
    expect(layerNorms(on.launches)).toHaveLength(1);
    expect(on.launches.length).toBe(off.launches.length - 2 * L);
    const names = (ls: Launch[]) => ls.filter((l) => !(l.kernel === 'tidarc_op_rmsnorm' && field(l, RMSNORM, 'cols') === H)).map((l) => l.kernel);
    expect(names(on.launches)).toEqual(names(off.launches));

    const gemms = on.launches.filter((l) => l.kernel.startsWith('tidarc_gemm_') && !l.kernel.endsWith('_row_stats'));
    expect(gemms).toHaveLength(4 * L + 1);
    const f = (l: Launch, name: string): number => field(l, GEMM, name);
    for (let layer = 0; layer < L; layer++) {
      const [qkv, o, gateUp, down] = gemms.slice(4 * layer, 4 * layer + 4) as [Launch, Launch, Launch, Launch];
      const next = layer + 1 < L ? `model.layers.${layer + 1}.input_layernorm.weight` : 'model.norm.weight';
      for (const [p, norm] of [[o, `model.layers.${layer}.post_attention_layernorm.weight`], [down, next]] as const) {
        expect([on.label(f(p, 'normWeight')), on.label(f(p, 'normOut')), on.label(f(p, 'normSumsq')), f(p, 'rowSumsq')]).toEqual([`${norm} (float32, folded)`, 'h', 'h.sumsq', 0]);
        expect(f(p, 'accumulate')).toBe(1);
      }
      for (const c of layer === 0 ? [gateUp] : [qkv, gateUp]) {
        expect([on.label(f(c, 'rowSumsq')), f(c, 'sumsqChunks'), f(c, 'normCols'), f(c, 'normEps'), f(c, 'normWeight')]).toEqual(['h.sumsq', Math.ceil(H / 64), H, Math.fround(spec.rmsNormEps), 0]);
        expect(on.label(f(c, 'x'))).toBe('h');
      }
      if (layer === 0) expect([f(qkv, 'rowSumsq'), f(qkv, 'normCols')]).toEqual([0, 0]);
    }
    const head = gemms[4 * L]!;
    expect([on.label(f(head, 'x')), on.label(f(head, 'rowSumsq')), f(head, 'normCols'), on.label(f(head, 'rowIds'))]).toEqual(['h', 'h.sumsq', H, 'lm_head row ids']);
    // The sums: [rows, ceil(H / 64)] float64, whole prefill chunks of rows as every activation.
    expect(on.buffers.get(f(gemms[1]!, 'normSumsq'))!.bytes).toBe(64 * Math.ceil(H / 64) * 8);
    // Nothing folded without the flag: every GEMM of the unfolded run packs zeros.
    expect(off.launches.filter((l) => l.kernel.startsWith('tidarc_gemm_')).every((l) => ['normWeight', 'normOut', 'normSumsq', 'rowSumsq', 'normCols'].every((n) => f(l, n) === 0))).toBe(true);
    // The float32 weights are the checkpoint's bf16 ones widened exactly.
    const gamma = on.weights.get('model.norm.weight')!;
    expect(gamma.dtype).toBe('bf16');
    expect(new Float32Array(on.uploads.get('model.norm.weight (float32, folded)')!.buffer)).toEqual(decode('bf16', gamma.data as Uint16Array));
  });

  test('sm_90a: the layer GEMMs on the sm_90a kernels fold alike (their units carry the flags)', async () => {
    const on = await run({ ...spec, name: 'fold-runner-90a' }, undefined, 'sm_90a');
    const off = await run({ ...spec, name: 'fold-runner-90a' }, false, 'sm_90a');
    expect(on.runner.graphChoice.foldNorms).toBe(true);
    const sm90a = on.launches.filter((l) => l.kernel.includes('sm90a'));
    expect(sm90a.length).toBeGreaterThanOrEqual(4 * spec.layers - 1);
    expect(on.launches.length).toBe(off.launches.length - 2 * spec.layers);
    const f = (l: Launch, name: string): number => field(l, GEMM, name);
    // Every sm_90a launch produces or consumes (layer 0's qkv excepted), with the same buffers as the mma.sync path's.
    const roles = sm90a.map((l) => (f(l, 'normWeight') !== 0 ? 'producer' : f(l, 'rowSumsq') !== 0 ? 'consumer' : 'plain'));
    expect(roles.filter((r) => r === 'producer')).toHaveLength(2 * spec.layers);
    expect(roles.filter((r) => r === 'plain').length).toBeLessThanOrEqual(1);
    for (const l of sm90a.filter((x) => f(x, 'normWeight') !== 0)) expect([on.label(f(l, 'normOut')), on.label(f(l, 'normSumsq'))]).toEqual(['h', 'h.sumsq']);
    for (const l of sm90a.filter((x) => f(x, 'rowSumsq') !== 0)) expect([on.label(f(l, 'rowSumsq')), f(l, 'normCols')]).toEqual(['h.sumsq', spec.hiddenSize]);
  });

  test('fp16: no fold, and why', async () => {
    const fp16 = await run({ ...spec, name: 'fold-runner-fp16', dtype: 'fp16' });
    expect(fp16.runner.graphChoice).toMatchObject({ foldNorms: false, foldNormsWhy: expect.stringMatching(/fp16.*only bf16 folds/) });
    expect(fp16.launches.filter((l) => l.kernel === 'tidarc_op_rmsnorm' && field(l, RMSNORM, 'cols') === spec.hiddenSize)).toHaveLength(2 * spec.layers + 1);
  });
});
