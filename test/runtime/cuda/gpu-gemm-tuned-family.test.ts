/**
 * The runner launches the GEMM family a tuning record chose (src/runtime/cuda/gpu-gemm-sm90a.ts
 * gemmsFor, tunedSm90aUnits), on a recording stand-in for a 9.0 device: a weight shape the
 * record keeps on mma.sync ('sm_90') runs its mma.sync kernels at every row count though the
 * compile built its sm_90a unit; an sm_90a winner and the untuned shapes keep the selection rule;
 * a record that chose sm_90a for a shape the compile has no sm_90a unit for is refused in one
 * line naming the kernels' directory, on any device. Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { gemmTarget, planReduction } from '../../../src/codegen/gemm-plan.js';
import { describeSm90aUnit, planSm90aKernels } from '../../../src/codegen/gemm-sm90a.js';
import type { ManifestGemm } from '../../../src/codegen/manifest.js';
import type { CudaDevice, DeviceBuffer, KernelRef } from '../../../src/runtime/cuda/device.js';
import { GpuGemmsWithSm90a, gemmsFor } from '../../../src/runtime/cuda/gpu-gemm-sm90a.js';

function recorder(major: number, minor: number) {
  const launches: string[] = [];
  let next = 0x10000;
  const device = {
    info: { major, minor },
    kernel: (_module: string, name: string): KernelRef => ({ name, handle: 0, sharedBytes: 0 }) as unknown as KernelRef,
    launch: (fn: KernelRef) => launches.push(fn.name),
    alloc: (bytes: number, label: string): DeviceBuffer => ({ ptr: (next += 0x100000), bytes, label }),
    fill: () => undefined,
    free: () => undefined,
    encodeTensorMap: () => new Uint8Array(128),
  } as unknown as CudaDevice;
  return { device, launches };
}

const QKV = { n: 6144, k: 4096, dtype: 'bf16' as const };
const O = { n: 4096, k: 4096, dtype: 'bf16' as const };
type Family = 'sm_90' | 'sm_90a';
const mma = (unit: string, shape: typeof QKV, role: string, m: number, kernel?: Family): ManifestGemm => ({
  unit, roles: [role], m, n: shape.n, k: shape.k, dtype: shape.dtype, splitK: 2, kernel: `tidarc_${unit}_m${m}`, source: `cuda/${unit}.cu`,
  plan: { blockM: 16, blockN: 128, blockK: 64, warpsM: 1, warpsN: 8, stages: 4, kTilesPerSplit: 32 },
  launch: { grid: ['ceil(rows / 16)', String(shape.n / 128), '2'], blockM: 16, nTiles: shape.n / 128, block: 256, dynamicSharedBytes: 1000 },
  ...(kernel ? { tuned: { arch: 'sm_90', device: 'NVIDIA H200', tile: false, kernel } } : {}),
} as ManifestGemm);
const unitOf = (shape: typeof QKV, role: string) => describeSm90aUnit(shape, [role], planReduction(shape, gemmTarget(['sm_90', 'sm_90a']), 2), planSm90aKernels(shape, [1, 272]));
const buf = (ptr: number): DeviceBuffer => ({ ptr, bytes: 1 << 30, label: `b${ptr}` });

function run(qkv: Family | undefined, o: Family | undefined, sm90aUnits = [unitOf(QKV, 'qkv'), unitOf(O, 'o')], cc: [number, number] = [9, 0]) {
  const { device, launches } = recorder(...cc);
  const gemms = gemmsFor(device, '/kernels', { arches: ['sm_90', 'sm_90a'], gemms: [mma('gemm_bf16_n6144_k4096', QKV, 'qkv', 272, qkv), mma('gemm_bf16_n4096_k4096', O, 'o', 272, o)], gemmsSm90a: sm90aUnits });
  for (const rows of [1, 272]) {
    gemms.run('qkv', { x: buf(0x1000), rows, w: { buf: buf(0x2000), dtype: 'bf16', rows: 6144, cols: 4096 }, outs: [buf(0x3000)] });
    gemms.run('o', { x: buf(0x1000), rows, w: { buf: buf(0x4000), dtype: 'bf16', rows: 4096, cols: 4096 }, outs: [buf(0x5000)] });
  }
  return { gemms, launches };
}

describe('gemmsFor honours the tuned GEMM family', () => {
  test('qkv tuned to mma.sync runs its mma.sync kernels at every M; o (tuned sm_90a) and an untuned run keep the sm_90a kernels', () => {
    const { gemms, launches } = run('sm_90', 'sm_90a');
    expect((gemms as GpuGemmsWithSm90a).sm90aRoles()).toEqual(['o']);
    expect(launches).toEqual(['tidarc_gemm_bf16_n6144_k4096_m272', 'tidarc_gemm_bf16_n4096_k4096_sm90a_t8', 'tidarc_gemm_bf16_n6144_k4096_m272', 'tidarc_gemm_bf16_n4096_k4096_sm90a_t136']);
    expect((run(undefined, undefined).gemms as GpuGemmsWithSm90a).sm90aRoles()).toEqual(['o', 'qkv']);
  });

  test('both tuned to mma.sync: no sm_90a path at all', () => {
    const { gemms, launches } = run('sm_90', 'sm_90');
    expect(gemms).not.toBeInstanceOf(GpuGemmsWithSm90a);
    expect(launches.every((l) => !l.includes('sm90a'))).toBe(true);
  });

  test('an sm_90a record for a shape without an sm_90a unit: one error naming the kernels, on a 9.0 device and an 8.0 one', () => {
    for (const cc of [[9, 0], [8, 0]] as [number, number][]) {
      expect(() => run('sm_90a', undefined, [unitOf(O, 'o')], cc)).toThrow(expect.objectContaining({
        message: '/kernels: tuned GEMM gemm_bf16_n6144_k4096 chose the sm_90a kernel, which the compile did not build (gemms.tuned.kernel = sm_90a); allowed: sm_90 (the compile\'s sm_90a units: gemm_bf16_n4096_k4096_sm90a)',
        details: expect.objectContaining({ field: 'gemms.tuned.kernel', value: 'sm_90a', source: '/kernels' }),
      }));
    }
  });
});
