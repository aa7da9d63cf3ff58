/**
 * The cuda runner's launches are its rewritten step graph's ops, in order (src/ir/step-rewrite.ts,
 * src/runtime/cuda/gpu-op-table.ts), on a recording stand-in for the device and a real compile's
 * manifest: per layer rmsnorm, the q|k|v GEMM, rope_pack (qwen3: with its qk-norm), the attention
 * launches of the schedule (a prefill's chunks each followed by its K/V commit, then the mask
 * block), the o GEMM (accumulating; it reads the attention's 16-bit output: no to_float), rmsnorm,
 * the gate|up GEMM with SwiGLU, the down GEMM (accumulating); then the final rmsnorm. No
 * silu_mul, matmul, add or rope of its own. By default a bf16 model's norms after o and down are
 * folded into those GEMMs (fold-norms): only layer 0's input norm is a launch; foldNorms: false
 * gives the sequence above.
 * Needs: nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import { blockVariantName, tidarVariantName } from '../../../src/codegen/variant-name.js';
import type { ModelSpec } from '../../../src/ir/model.js';
import { loadCheckpoint } from '../../../src/model/checkpoint.js';
import type { CudaDevice, DeviceBuffer, KernelRef } from '../../../src/runtime/cuda/device.js';
import { OPS_ABI_BUFFER } from '../../../src/runtime/cuda/gpu-ops.js';
import { GpuModelRunner, uploadWeights } from '../../../src/runtime/cuda/gpu-runner.js';
import { OPS_ABI_VERSION } from '../../../src/runtime/cuda/op-abi.js';
import { modelWeights } from '../../../src/runtime/model/weights.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-runner-graph-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function recorder(): { device: CudaDevice; names: string[] } {
  const names: string[] = [];
  let next = 0x10000;
  const device = {
    info: { multiprocessors: 132 },
    alloc: (bytes: number, label: string): DeviceBuffer => {
      const b = { ptr: next, bytes, label };
      next += Math.ceil(bytes / 256) * 256 + 256;
      return b;
    },
    free: () => undefined, fill: () => undefined, copy: () => undefined, upload: () => undefined,
    download: (b: DeviceBuffer, dst: ArrayBufferView) => void (b.label === OPS_ABI_BUFFER && ((dst as Int32Array)[0] = OPS_ABI_VERSION)),
    kernel: (module: string, name: string): KernelRef => ({ name, module }) as unknown as KernelRef,
    launch: (fn: KernelRef) => void names.push((fn as unknown as { name: string }).name),
  } as unknown as CudaDevice;
  return { device, names };
}

/** Kernel names without shapes: tidarc_gemm_bf16_n512_k128_m8 -> gemm, tidarc_attn_tidar_k2_bf16_... -> attn tidar_k2. */
const short = (n: string): string => n.replace(/^tidarc_gemm_.*$/, 'gemm').replace(/^tidarc_op_/, '').replace(/^tidarc_attn_([a-z]+_[a-z]\d+|ar)_.*$/, 'attn $1');

async function launches(family: ModelSpec['family'], passes: (r: GpuModelRunner) => void, o: { foldNorms?: boolean } = {}): Promise<string[]> {
  const spec = smallSpec(`graph-${family}`, [2], { family, qkNorm: family === 'qwen3' });
  const weights = modelWeights(await loadCheckpoint(await writeRandomModel(root, spec, 4)));
  const { manifest } = generateModel(spec, { arches: ['sm_80'] });
  const { device, names } = recorder();
  const runner = new GpuModelRunner(spec, device, uploadWeights(device, spec, weights, manifest), '/kernels', manifest, 256, o);
  // The construction's one launch: GpuOps reading the ops module's ABI version.
  expect(names.splice(0).map(short)).toEqual(['abi_version']);
  passes(runner);
  return names.map(short);
}

describe('the cuda runner launches its step graph', () => {
  test.each(['qwen2', 'qwen3'] as const)('%s: a tidar_k2 step, layer by layer', async (family) => {
    const step = (r: GpuModelRunner) => void r.pass(Int32Array.from([1, 2, 3, 4, 5, 6]), Int32Array.from([0, 1, 2, 3, 4, 5]), { kind: 'step', variant: tidarVariantName(2) });
    // qwen3's q/k head norms are rope_pack's (fuseHeadNorms): no rmsnorm launches of their own.
    const layer = ['rmsnorm', 'gemm', 'rope_pack', 'attn tidar_k2', 'gemm', 'rmsnorm', 'gemm', 'gemm'];
    expect(await launches(family, step, { foldNorms: false })).toEqual(['embed', ...layer, ...layer, 'rmsnorm']);
    // By default (bf16) the norms after o and down are those GEMMs' epilogues (fold-norms): only layer 0's input norm launches.
    const folded = layer.filter((n) => n !== 'rmsnorm');
    expect(await launches(family, step)).toEqual(['embed', 'rmsnorm', ...folded, ...folded]);
  });

  test('a prefill of 70 prompt tokens and a mask block: chunk, commit, chunk, commit, block in every layer', async () => {
    const S = 70;
    const names = await launches('llama', (r) => void r.pass(Int32Array.from({ length: S + 2 }, (_, i) => i), Int32Array.from({ length: S + 2 }, (_, i) => i), { kind: 'prefill', promptTokens: S, blockVariant: blockVariantName(2) }));
    const attention = names.filter((n) => n.startsWith('attn') || n === 'kv_commit');
    // The block's 70 cached keys are two KV tiles: split-KV in two, merged by the same launch's last CTA.
    const once = ['attn prefill_c64', 'kv_commit', 'attn prefill_c64', 'kv_commit', 'attn block_k2'];
    expect(attention).toEqual([...once, ...once]);
    expect(names.filter((n) => ['silu_mul', 'matmul'].includes(n))).toEqual([]);
  });
});
