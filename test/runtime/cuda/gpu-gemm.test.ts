/**
 * The cuda backend's GEMM launcher (src/runtime/cuda/gpu-gemm.ts) on a recording stand-in for
 * the device: it launches only kernels the manifest lists, the one planned for the fewest rows
 * >= the launch's (else the largest), with the manifest's grid, block and shared memory, then the
 * split-K reduce over the same arguments; a weight the GEMMs do not cover is refused.
 * Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import type { ManifestGemm } from '../../../src/codegen/manifest.js';
import type { CudaDevice, DeviceBuffer, KernelRef } from '../../../src/runtime/cuda/device.js';
import { GpuGemms } from '../../../src/runtime/cuda/gpu-gemm.js';
import { GEMM, layoutOf } from '../../../src/runtime/cuda/op-abi.js';
import { TidarcError } from '../../../src/errors.js';

interface Launch { module: string; kernel: string; grid: readonly number[]; block: readonly number[]; shared: number; args: Uint8Array }

function recorder() {
  const launches: Launch[] = [];
  const allocs: number[] = [];
  let next = 0x10000;
  const device = {
    kernel: (module: string, name: string): KernelRef => ({ name, module, handle: 0, sharedBytes: 0 }) as unknown as KernelRef,
    launch: (fn: KernelRef & { module: string }, grid: readonly number[], block: readonly number[], shared: number, args: Uint8Array) => launches.push({ module: fn.module, kernel: fn.name, grid, block, shared, args }),
    alloc: (bytes: number, label: string): DeviceBuffer => (allocs.push(bytes), { ptr: (next += 0x100000), bytes, label }),
    free: () => undefined,
  } as unknown as CudaDevice;
  return { device, launches, allocs };
}

const entry = (m: number, blockM: number, splitK: number): ManifestGemm => ({
  unit: 'gemm_bf16_n300_k512', roles: ['qkv', 'gate_up'], m, n: 300, k: 512, dtype: 'bf16', splitK,
  kernel: `tidarc_gemm_bf16_n300_k512_m${m}`, ...(splitK > 1 ? { reduceKernel: 'tidarc_gemm_bf16_n300_k512_reduce' } : {}),
  source: 'cuda/gemm_bf16_n300_k512.cu',
  plan: { blockM, blockN: 128, blockK: 64, warpsM: 1, warpsN: 8, stages: 4, kTilesPerSplit: 4 },
  launch: { grid: [`ceil(rows / ${blockM})`, '3', String(splitK)], blockM, nTiles: 3, block: 256, dynamicSharedBytes: 1000 * blockM, ...(splitK > 1 ? { reduceBlock: 256 } : {}) },
});
const GEMMS = [entry(64, 64, 2), entry(1, 16, 2), entry(6, 16, 2)];
const buf = (ptr: number): DeviceBuffer => ({ ptr, bytes: 1 << 20, label: `b${ptr}` });
const W = { buf: buf(0x100), dtype: 'bf16' as const, rows: 300, cols: 512 };
const field = (args: Uint8Array, name: string): number => {
  const at = layoutOf(GEMM).offsets[name]!;
  const v = new DataView(args.buffer, args.byteOffset);
  return GEMM.fields.find(([f]) => f === name)![1] === 'ptr' ? Number(v.getBigUint64(at, true)) : v.getInt32(at, true);
};

describe('GpuGemms', () => {
  test('the kernel planned for the fewest rows >= the launch\'s, else the largest; then the reduce', () => {
    const { device, launches } = recorder();
    const g = new GpuGemms(device, '/k', GEMMS);
    for (const rows of [1, 2, 6, 7, 64, 100]) g.run('qkv', { x: buf(0x200), rows, w: W, outs: [buf(0x300), buf(0x400), buf(0x500)], segments: [128, 192] });
    const mains = launches.filter((l) => !l.kernel.endsWith('_reduce'));
    expect(mains.map((l) => [l.kernel.replace(/.*_m/, 'm'), ...l.grid])).toEqual([['m1', 1, 3, 2], ['m6', 1, 3, 2], ['m6', 1, 3, 2], ['m64', 1, 3, 2], ['m64', 1, 3, 2], ['m64', 2, 3, 2]]);
    expect(mains.every((l) => l.module === '/k/cuda/gemm_bf16_n300_k512.fatbin' && l.block[0] === 256)).toBe(true);
    expect(mains.map((l) => l.shared)).toEqual([16_000, 16_000, 16_000, 64_000, 64_000, 64_000]);
    const reduces = launches.filter((l) => l.kernel.endsWith('_reduce'));
    expect(reduces.map((l) => l.grid[0])).toEqual([2, 3, 8, 9, 75, 118]);  // ceil(rows * 300 / 256)
    expect(reduces.map((l) => l.args)).toEqual(mains.map((l) => l.args));
    const a = mains[5]!.args;
    expect([field(a, 'rows'), field(a, 'seg1'), field(a, 'seg2'), field(a, 'out'), field(a, 'out2'), field(a, 'out3')]).toEqual([100, 128, 192, 0x300, 0x400, 0x500]);
    expect(field(a, 'workspace')).not.toBe(0);
  });
  test('two outputs (gate | up): out3 is null; one output: seg1 = seg2 = N', () => {
    const { device, launches } = recorder();
    const g = new GpuGemms(device, '/k', GEMMS);
    g.run('gate_up', { x: buf(0x200), rows: 3, w: W, outs: [buf(0x300), buf(0x400)], segments: [150, 300] });
    g.run('gate_up', { x: buf(0x200), rows: 3, w: W, outs: [buf(0x300)], accumulate: true });
    const [two, one] = launches.filter((l) => !l.kernel.endsWith('_reduce')).map((l) => l.args);
    expect([field(two!, 'out2'), field(two!, 'out3'), field(two!, 'seg2')]).toEqual([0x400, 0, 300]);
    expect([field(one!, 'out2'), field(one!, 'seg1'), field(one!, 'seg2'), field(one!, 'accumulate')]).toEqual([0, 300, 300, 1]);
  });
  test('the split-K workspace is allocated once and grown only when a launch needs more', () => {
    const { device, allocs } = recorder();
    const g = new GpuGemms(device, '/k', GEMMS);
    for (const rows of [6, 1, 6, 20]) g.run('qkv', { x: buf(0x200), rows, w: W, outs: [buf(0x300)] });
    expect(allocs).toEqual([2 * 6 * 300 * 4, 2 * 20 * 300 * 4]);
  });
  test('SwiGLU: epilogue 1 into one [rows, n / 2] out; the reduce over rows * n / 2 threads', () => {
    const { device, launches } = recorder();
    const g = new GpuGemms(device, '/k', GEMMS.map((e) => ({ ...e, swigluInterleave: 8 })));
    expect(g.swigluInterleave()).toBe(8);
    g.run('gate_up', { x: buf(0x200), rows: 20, w: W, outs: [buf(0x300)], epilogue: 'swiglu' });
    const [main, reduce] = launches;
    expect([field(main!.args, 'epilogue'), field(main!.args, 'out'), field(main!.args, 'seg1'), field(main!.args, 'seg2')]).toEqual([1, 0x300, 300, 300]);
    expect(reduce!.kernel).toMatch(/_reduce$/);
    expect(reduce!.grid[0]).toBe(Math.ceil((20 * 150) / 256));
    // Without the manifest's interleave, with two outputs or a residual: refused, nothing launched.
    expect(() => new GpuGemms(device, '/k', GEMMS).run('gate_up', { x: buf(0x200), rows: 1, w: W, outs: [buf(0x300)], epilogue: 'swiglu' })).toThrow(/swiglu epilogue needs/);
    expect(() => g.run('gate_up', { x: buf(0x200), rows: 1, w: W, outs: [buf(0x300)], epilogue: 'swiglu', accumulate: true })).toThrow(/swiglu epilogue needs/);
    expect(launches).toHaveLength(2);
  });
  test('row statistics: no out, tiles in the workspace after the split-K partials, reduce a warp per row and tile, then the merge', () => {
    const { device, launches, allocs } = recorder();
    const g = new GpuGemms(device, '/k', GEMMS.map((e) => ({ ...e, roles: ['lm_head'], rowStatsKernel: 'tidarc_gemm_bf16_n300_k512_row_stats' })));
    expect(g.hasRowStats()).toBe(true);
    g.run('lm_head', { x: buf(0x200), rows: 20, w: W, rowIds: buf(0x250), outs: [], epilogue: 'rowStats', stats: { argmax: buf(0x600), max: buf(0x700), lse: buf(0x800) } });
    expect(launches.map((l) => l.kernel)).toEqual(['tidarc_gemm_bf16_n300_k512_m64', 'tidarc_gemm_bf16_n300_k512_reduce', 'tidarc_gemm_bf16_n300_k512_row_stats']);
    const a = launches[0]!.args;
    expect([field(a, 'epilogue'), field(a, 'out'), field(a, 'rowArgmax'), field(a, 'rowMax'), field(a, 'rowLse'), field(a, 'rowIds')]).toEqual([2, 0, 0x600, 0x700, 0x800, 0x250]);
    const ws = field(a, 'workspace'), partials = 2 * 20 * 300;
    expect([field(a, 'tileStats') - ws, field(a, 'tileArgmax') - ws]).toEqual([partials * 4, (partials + 2 * 20 * 3) * 4]);
    expect(allocs).toEqual([(partials + 3 * 20 * 3) * 4]);
    expect(launches[1]!.grid[0]).toBe(Math.ceil((20 * 3 * 32) / 256));  // a warp per (row, tile)
    expect(launches[2]!.grid[0]).toBe(Math.ceil(20 / 8));                // a warp per row
    expect(launches.every((l) => l.args === a)).toBe(true);
    expect(() => new GpuGemms(device, '/k', GEMMS).run('qkv', { x: buf(0x200), rows: 1, w: W, outs: [], epilogue: 'rowStats', stats: { argmax: buf(1), max: buf(2), lse: buf(3) } })).toThrow(/rowStats epilogue needs/);
  });
  test('a weight the GEMMs do not cover is refused: another role, shape or format', () => {
    const { device } = recorder();
    const g = new GpuGemms(device, '/k', GEMMS);
    expect(g.covers('qkv', W)).toBe(true);
    expect(g.covers('down', W)).toBe(false);
    expect(g.covers('qkv', { ...W, cols: 520 })).toBe(false);
    expect(g.covers('qkv', { ...W, dtype: 'f32' })).toBe(false);
    expect(() => g.run('down', { x: buf(0x200), rows: 1, w: W, outs: [buf(0x300)] })).toThrow(TidarcError);
    expect(() => g.run('qkv', { x: buf(0x200), rows: 1, w: W, outs: [buf(0x300), buf(0x400)], segments: [128, 192] })).toThrow(/2 outputs do not match the segments 128, 192 of 300 columns/);
  });
});
