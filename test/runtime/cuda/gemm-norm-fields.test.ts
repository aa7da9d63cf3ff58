/**
 * The fold-norms fields of a GEMM launch (ABI v6; gpu-gemm.ts gemmNormFields and GpuGemms.run
 * on a recording stand-in): a producer packs its float32 weight, norm out and sums, a consumer
 * its sums, ceil(cols / 64) chunks, cols and eps; a plain launch packs zeros. Refused host-side:
 * a kernel without the flag launched with the field (it would ignore it), a producer with an
 * epilogue or several outputs, a weight of the wrong length, a consumer whose cols are not k.
 * Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import type { ManifestGemm } from '../../../src/codegen/manifest.js';
import type { CudaDevice, DeviceBuffer, KernelRef } from '../../../src/runtime/cuda/device.js';
import { GpuGemms, gemmNormFields } from '../../../src/runtime/cuda/gpu-gemm.js';
import { GEMM, GEMM_NO_NORM, layoutOf } from '../../../src/runtime/cuda/op-abi.js';

const launches: Uint8Array[] = [];
let next = 0x10000;
const device = {
  kernel: (module: string, name: string): KernelRef => ({ name, module, handle: 0, sharedBytes: 0 }) as unknown as KernelRef,
  launch: (_fn: KernelRef, _grid: readonly number[], _block: readonly number[], _shared: number, args: Uint8Array) => void launches.push(args),
  alloc: (bytes: number, label: string): DeviceBuffer => ({ ptr: (next += 0x100000), bytes, label }),
  fill: () => undefined,
  free: () => undefined,
  arch: 'sm_80',
} as unknown as CudaDevice;

const entry = (n: number, k: number, roles: string[], flags: Partial<Pick<ManifestGemm, 'normOut' | 'rowScale'>>): ManifestGemm => ({
  unit: `gemm_bf16_n${n}_k${k}`, roles, m: 16, n, k, dtype: 'bf16', splitK: 1, kernel: `tidarc_gemm_bf16_n${n}_k${k}_m16`, source: `cuda/gemm_bf16_n${n}_k${k}.cu`,
  plan: { blockM: 16, blockN: 128, blockK: 64, warpsM: 1, warpsN: 8, stages: 4, kTilesPerSplit: 4 },
  launch: { grid: ['ceil(rows / 16)', '2', '1'], blockM: 16, nTiles: 2, block: 256, dynamicSharedBytes: 1000 }, ...flags,
});
const buf = (ptr: number, bytes = 1 << 20): DeviceBuffer => ({ ptr, bytes, label: `b${ptr}` });
const field = (args: Uint8Array, name: string): number => {
  const at = layoutOf(GEMM).offsets[name]!;
  const v = new DataView(args.buffer, args.byteOffset);
  const type = GEMM.fields.find(([f]) => f === name)![1];
  return type === 'ptr' ? Number(v.getBigUint64(at, true)) : type === 'f32' ? v.getFloat32(at, true) : v.getInt32(at, true);
};
const H = 200;
const gemms = new GpuGemms(device, '/k', [entry(H, 512, ['down'], { normOut: true }), entry(600, H, ['qkv'], { rowScale: true }), entry(H, H, ['o'], {})]);
const w = (rows: number, cols: number) => ({ buf: buf(0x100), dtype: 'bf16' as const, rows, cols });
const normOut = { weight: buf(0x700, H * 4), out: buf(0x800), sumsq: buf(0x900) };

describe('GEMM fold-norms fields', () => {
  test('a producer packs weight, out and sums; a consumer its sums, chunks, cols, eps; a plain launch zeros', () => {
    launches.length = 0;
    gemms.run('down', { x: buf(0x200), rows: 5, w: w(H, 512), outs: [buf(0x300)], accumulate: true, normOut });
    gemms.run('qkv', { x: buf(0x200), rows: 5, w: w(600, H), outs: [buf(0x300), buf(0x400), buf(0x500)], segments: [400, 500], rowScale: { sumsq: buf(0x900), cols: H, eps: 1e-6 } });
    gemms.run('o', { x: buf(0x200), rows: 5, w: w(H, H), outs: [buf(0x300)], accumulate: true });
    const names = Object.keys(GEMM_NO_NORM);
    expect(names.map((n) => field(launches[0]!, n))).toEqual([0x700, 0x800, 0x900, 0, 0, 0, 0]);
    expect(names.map((n) => field(launches[1]!, n))).toEqual([0, 0, 0, 0x900, Math.ceil(H / 64), H, Math.fround(1e-6)]);
    expect(names.map((n) => field(launches[2]!, n))).toEqual([0, 0, 0, 0, 0, 0, 0]);
  });

  test('refused host-side: no flag, an epilogue or segments on a producer, a wrong weight, cols not k', () => {
    expect(() => gemms.run('o', { x: buf(0x200), rows: 5, w: w(H, H), outs: [buf(0x300)], accumulate: true, normOut })).toThrow(/GEMM o: launched as a folded RMSNorm's producer, but its kernel has no norm-out epilogue/);
    expect(() => gemms.run('o', { x: buf(0x200), rows: 5, w: w(H, H), outs: [buf(0x300)], rowScale: { sumsq: buf(0x900), cols: H, eps: 1e-6 } })).toThrow(/no row-scale epilogue/);
    expect(() => gemms.run('down', { x: buf(0x200), rows: 5, w: w(H, 512), outs: [buf(0x300)], normOut: { ...normOut, weight: buf(0x700, H * 2) } })).toThrow(/a float32 weight of 200/);
    const unit = { n: H, k: 512, normOut: true as const };
    expect(() => gemmNormFields('down', unit, { x: buf(0x200), rows: 5, w: w(H, 512), outs: [buf(0x300)], normOut }, false)).toThrow(/one plain output/);
    expect(() => gemms.run('qkv', { x: buf(0x200), rows: 5, w: w(600, H), outs: [buf(0x300), buf(0x400), buf(0x500)], segments: [400, 500], rowScale: { sumsq: buf(0x900), cols: 512, eps: 1e-6 } })).toThrow(/over 512 columns, the GEMM's k is 200/);
    expect(gemmNormFields('o', { n: H, k: H }, { x: buf(0x200), rows: 5, w: w(H, H), outs: [buf(0x300)] }, true)).toBe(GEMM_NO_NORM);
  });

  test('foldFlags: per role, from its kernels', () => {
    expect(gemms.foldFlags()).toEqual(new Map([['down', { normOut: true }], ['qkv', { rowScale: true }], ['o', {}]]));
  });
});
