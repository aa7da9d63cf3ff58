/**
 * Which GEMMs the cuda runner launches (src/runtime/cuda/gpu-gemm-sm90a.ts gemmsFor), on a
 * recording stand-in for the device: the selection rule once per runner (the sm_90a units on a
 * 9.0 device when the compile built sm_90a; else the mma.sync ones), per role and for every
 * row count (never per launch), lm_head always on the mma.sync kernels; an sm_90a launch is
 * the kernel of the token tile, its grid and threads (64 or 128 weight rows a CTA), its shared memory and the 64-byte aligned struct
 * of two tensor maps and TidarcGemmArgs; and the family a tuning record chose (tunedSm90aUnits):
 * a shape the record keeps on mma.sync ('sm_90') runs its mma.sync kernels at every row count
 * though the compile built its sm_90a unit, an sm_90a winner and the untuned shapes keep the
 * rule, and a record that chose sm_90a for a shape with no sm_90a unit is refused in one line
 * naming the kernels' directory, on any device. Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { gemmTarget, planReduction } from '../../../src/codegen/gemm-plan.js';
import { describeSm90aUnit, planSm90aKernels } from '../../../src/codegen/gemm-sm90a.js';
import type { ManifestGemm } from '../../../src/codegen/manifest.js';
import type { ArchName } from '../../../src/codegen/arch.js';
import type { CudaDevice, DeviceBuffer, KernelRef } from '../../../src/runtime/cuda/device.js';
import { GpuGemmsWithSm90a, gemmsFor } from '../../../src/runtime/cuda/gpu-gemm-sm90a.js';

interface Launch { kernel: string; grid: readonly number[]; block: readonly number[]; shared: number; bytes: number }

function recorder(major: number, minor: number) {
  const launches: Launch[] = [];
  let next = 0x10000;
  const device = {
    info: { major, minor },
    arch: `sm_${major}${minor}`,
    kernel: (_module: string, name: string): KernelRef => ({ name, handle: 0, sharedBytes: 0 }) as unknown as KernelRef,
    launch: (fn: KernelRef, grid: readonly number[], block: readonly number[], shared: number, args: Uint8Array) => launches.push({ kernel: fn.name, grid, block, shared, bytes: args.length }),
    alloc: (bytes: number, label: string): DeviceBuffer => ({ ptr: (next += 0x100000), bytes, label }),
    fill: () => undefined,
    free: () => undefined,
    encodeTensorMap: () => new Uint8Array(128),
  } as unknown as CudaDevice;
  return { device, launches };
}

const QKV = { n: 6144, k: 4096, dtype: 'bf16' as const };
const HEAD = { n: 1024, k: 4096, dtype: 'bf16' as const };
const mma = (unit: string, shape: typeof QKV, role: string, m: number, kernel?: 'sm_90' | 'sm_90a'): ManifestGemm => ({
  unit, roles: [role], m, n: shape.n, k: shape.k, dtype: shape.dtype, splitK: 1, kernel: `tidarc_${unit}_m${m}`, source: `cuda/${unit}.cu`,
  plan: { blockM: 16, blockN: 128, blockK: 64, warpsM: 1, warpsN: 8, stages: 4, kTilesPerSplit: 64 },
  launch: { grid: ['ceil(rows / 16)', String(shape.n / 128), '1'], blockM: 16, nTiles: shape.n / 128, block: 256, dynamicSharedBytes: 1000 },
  ...(kernel ? { tuned: { arch: 'sm_90', device: 'NVIDIA H200', tile: false, kernel } } : {}),
} as ManifestGemm);
const reduction = planReduction(QKV, gemmTarget(['sm_90', 'sm_90a']), 2);
const SM90A = [describeSm90aUnit(QKV, ['qkv'], reduction, planSm90aKernels(QKV, [1, 72, 272])), describeSm90aUnit(HEAD, ['lm_head'], planReduction(HEAD, gemmTarget(['sm_90a']), 2), planSm90aKernels(HEAD, [1]))];
const GEMMS = [mma('gemm_bf16_n6144_k4096', QKV, 'qkv', 272), mma('gemm_bf16_n1024_k4096', HEAD, 'lm_head', 272)];
const buf = (ptr: number): DeviceBuffer => ({ ptr, bytes: 1 << 30, label: `b${ptr}` });

function runAll(arches: ArchName[], major: number, minor: number) {
  const { device, launches } = recorder(major, minor);
  const gemms = gemmsFor(device, '/k', { arches, gemms: GEMMS, gemmsSm90a: SM90A });
  for (const rows of [1, 20, 72, 272]) gemms.run('qkv', { x: buf(0x1000), rows, w: { buf: buf(0x2000), dtype: 'bf16', rows: 6144, cols: 4096 }, outs: [buf(0x3000)] });
  gemms.run('lm_head', { x: buf(0x1000), rows: 3, w: { buf: buf(0x4000), dtype: 'bf16', rows: 1024, cols: 4096 }, outs: [buf(0x5000)], rowIds: buf(0x6000) });
  return { gemms, launches };
}

describe('gemmsFor: the selection rule in the runner', () => {
  test('a 9.0 device and a compile with sm_90a: every qkv launch on the sm_90a kernels, lm_head on mma.sync', () => {
    const { gemms, launches } = runAll(['sm_90', 'sm_90a'], 9, 0);
    expect(gemms).toBeInstanceOf(GpuGemmsWithSm90a);
    expect((gemms as GpuGemmsWithSm90a).sm90aRoles()).toEqual(['qkv']);
    const mains = launches.filter((l) => l.kernel.includes('_sm90a_t'));
    expect(mains.map((l) => [l.kernel.replace(/.*_sm90a_/, ''), ...l.grid, l.block[0], l.bytes])).toEqual([
      // M = 20: no 32-token kernel compiled, the next one up; 64 weight rows a CTA (160 threads) up to 128 tokens, 128 (288) past; 2 maps + TidarcGemmArgs (184 since ABI v6), padded to 64
      ['t8', 1, 96, 2, 160, 448], ['t128', 1, 96, 2, 160, 448], ['t128', 1, 96, 2, 160, 448], ['t136', 2, 48, 2, 288, 448],
    ]);
    expect(mains.map((l) => l.shared)).toEqual([8, 128, 128, 136].map((t) => SM90A[0]!.kernels.find((k) => k.tileT === t)!.sharedBytes));
    expect(launches.filter((l) => !l.kernel.includes('n1024')).length).toBe(4);  // split-K 2 summed inside each launch: no reduce after it
    expect(launches.filter((l) => l.kernel.includes('n1024')).map((l) => l.kernel)).toEqual(['tidarc_gemm_bf16_n1024_k4096_m272']);
  });

  test.for([
    ['a compile without sm_90a on a 9.0 device', ['sm_80', 'sm_90'], 9, 0],
    ['an 8.0 device', ['sm_80', 'sm_90', 'sm_90a'], 8, 0],
  ] as const)('%s: the mma.sync GEMMs only', ([, arches, major, minor]) => {
    const { gemms, launches } = runAll([...arches], major, minor);
    expect(gemms).not.toBeInstanceOf(GpuGemmsWithSm90a);
    expect(launches.every((l) => !l.kernel.includes('sm90a'))).toBe(true);
    expect(launches.map((l) => l.kernel)).toEqual([...Array(4).fill('tidarc_gemm_bf16_n6144_k4096_m272'), 'tidarc_gemm_bf16_n1024_k4096_m272']);
  });
});

describe('gemmsFor honours the GEMM family a tuning record chose', () => {
  const O = { n: 4096, k: 4096, dtype: 'bf16' as const };
  type Family = 'sm_90' | 'sm_90a';
  const unitOf = (shape: typeof QKV, role: string) => describeSm90aUnit(shape, [role], planReduction(shape, gemmTarget(['sm_90', 'sm_90a']), 2), planSm90aKernels(shape, [1, 272]));
  function run(qkv: Family | undefined, o: Family | undefined, units = [unitOf(QKV, 'qkv'), unitOf(O, 'o')], cc: [number, number] = [9, 0]) {
    const { device, launches } = recorder(...cc);
    const gemms = gemmsFor(device, '/kernels', { arches: ['sm_90', 'sm_90a'], gemms: [mma('gemm_bf16_n6144_k4096', QKV, 'qkv', 272, qkv), mma('gemm_bf16_n4096_k4096', O, 'o', 272, o)], gemmsSm90a: units });
    for (const rows of [1, 272]) {
      gemms.run('qkv', { x: buf(0x1000), rows, w: { buf: buf(0x2000), dtype: 'bf16', rows: 6144, cols: 4096 }, outs: [buf(0x3000)] });
      gemms.run('o', { x: buf(0x1000), rows, w: { buf: buf(0x4000), dtype: 'bf16', rows: 4096, cols: 4096 }, outs: [buf(0x5000)] });
    }
    return { gemms, launches: launches.map((l) => l.kernel) };
  }

  test('qkv kept on mma.sync runs its mma.sync kernels at every M; o (tuned sm_90a) and an untuned run keep the sm_90a kernels', () => {
    const { gemms, launches } = run('sm_90', 'sm_90a');
    expect((gemms as GpuGemmsWithSm90a).sm90aRoles()).toEqual(['o']);
    expect(launches).toEqual(['tidarc_gemm_bf16_n6144_k4096_m272', 'tidarc_gemm_bf16_n4096_k4096_sm90a_t8', 'tidarc_gemm_bf16_n6144_k4096_m272', 'tidarc_gemm_bf16_n4096_k4096_sm90a_t136']);
    expect((run(undefined, undefined).gemms as GpuGemmsWithSm90a).sm90aRoles()).toEqual(['o', 'qkv']);
  });

  test('without a record the compile\'s cost-model choice decides (heuristic); a record outranks it', () => {
    const choose = (u: ReturnType<typeof unitOf>, kernel: Family) => ({ ...u, heuristic: { kernel, ratio: kernel === 'sm_90' ? 1.2 : 0.8 } });
    const units = [choose(unitOf(QKV, 'qkv'), 'sm_90'), choose(unitOf(O, 'o'), 'sm_90a')];
    expect((run(undefined, undefined, units).gemms as GpuGemmsWithSm90a).sm90aRoles()).toEqual(['o']);
    expect((run('sm_90a', 'sm_90', units).gemms as GpuGemmsWithSm90a).sm90aRoles()).toEqual(['qkv']);
    expect(run(undefined, undefined, [choose(unitOf(QKV, 'qkv'), 'sm_90'), choose(unitOf(O, 'o'), 'sm_90')]).gemms).not.toBeInstanceOf(GpuGemmsWithSm90a);
  });

  test('both kept on mma.sync: no sm_90a path at all', () => {
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
