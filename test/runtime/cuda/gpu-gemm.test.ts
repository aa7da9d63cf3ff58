/**
 * The cuda backend's GEMM launcher (src/runtime/cuda/gpu-gemm.ts) on a recording stand-in for
 * the device: it launches only kernels the manifest lists, the one planned for the fewest rows
 * >= the launch's (else the largest), with the manifest's grid, block and shared memory, and
 * nothing after it at split-K > 1 (the parts are summed inside the launch, on arrival counters
 * allocated and zeroed once); a weight the GEMMs do not cover is refused.
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
  const fills: { ptr: number; byte: number }[] = [];
  let next = 0x10000;
  const device = {
    kernel: (module: string, name: string): KernelRef => ({ name, module, handle: 0, sharedBytes: 0 }) as unknown as KernelRef,
    launch: (fn: KernelRef & { module: string }, grid: readonly number[], block: readonly number[], shared: number, args: Uint8Array) => launches.push({ module: fn.module, kernel: fn.name, grid, block, shared, args }),
    alloc: (bytes: number, label: string): DeviceBuffer => (allocs.push(bytes), { ptr: (next += 0x100000), bytes, label }),
    fill: (b: DeviceBuffer, byte: number) => fills.push({ ptr: b.ptr, byte }),
    free: () => undefined,
  } as unknown as CudaDevice;
  return { device, launches, allocs, fills };
}

const entry = (m: number, blockM: number, splitK: number): ManifestGemm => ({
  unit: 'gemm_bf16_n300_k512', roles: ['qkv', 'gate_up'], m, n: 300, k: 512, dtype: 'bf16', splitK,
  kernel: `tidarc_gemm_bf16_n300_k512_m${m}`,
  source: 'cuda/gemm_bf16_n300_k512.cu',
  plan: { blockM, blockN: 128, blockK: 64, warpsM: 1, warpsN: 8, stages: 4, kTilesPerSplit: 4 },
  launch: { grid: [`ceil(rows / ${blockM})`, '3', String(splitK)], blockM, nTiles: 3, block: 256, dynamicSharedBytes: 1000 * blockM, ...(splitK > 1 ? { splitCounters: `ceil(rows / ${blockM}) * 3` } : {}) },
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
  test('the kernel planned for the fewest rows >= the launch\'s, else the largest; one launch each, split-K included', () => {
    const { device, launches } = recorder();
    const g = new GpuGemms(device, '/k', GEMMS);
    for (const rows of [1, 2, 6, 7, 64, 100]) g.run('qkv', { x: buf(0x200), rows, w: W, outs: [buf(0x300), buf(0x400), buf(0x500)], segments: [128, 192] });
    const mains = launches;
    expect(mains.map((l) => [l.kernel.replace(/.*_m/, 'm'), ...l.grid])).toEqual([['m1', 1, 3, 2], ['m6', 1, 3, 2], ['m6', 1, 3, 2], ['m64', 1, 3, 2], ['m64', 1, 3, 2], ['m64', 2, 3, 2]]);
    expect(mains.every((l) => l.module === '/k/cuda/gemm_bf16_n300_k512.fatbin' && l.block[0] === 256)).toBe(true);
    expect(mains.map((l) => l.shared)).toEqual([16_000, 16_000, 16_000, 64_000, 64_000, 64_000]);
    expect(launches.some((l) => l.kernel.endsWith('_reduce'))).toBe(false);
    const a = mains[5]!.args;
    expect([field(a, 'rows'), field(a, 'seg1'), field(a, 'seg2'), field(a, 'out'), field(a, 'out2'), field(a, 'out3')]).toEqual([100, 128, 192, 0x300, 0x400, 0x500]);
    expect(field(a, 'workspace')).not.toBe(0);
    expect(field(a, 'splitCounters')).not.toBe(0);
  });
  test('two outputs (gate | up): out3 is null; one output: seg1 = seg2 = N', () => {
    const { device, launches } = recorder();
    const g = new GpuGemms(device, '/k', GEMMS);
    g.run('gate_up', { x: buf(0x200), rows: 3, w: W, outs: [buf(0x300), buf(0x400)], segments: [150, 300] });
    g.run('gate_up', { x: buf(0x200), rows: 3, w: W, outs: [buf(0x300)], accumulate: true });
    const [two, one] = launches.map((l) => l.args);
    expect([field(two!, 'out2'), field(two!, 'out3'), field(two!, 'seg2')]).toEqual([0x400, 0, 300]);
    expect([field(one!, 'out2'), field(one!, 'seg1'), field(one!, 'seg2'), field(one!, 'accumulate')]).toEqual([0, 300, 300, 1]);
  });
  test('the split-K workspace and counters are allocated once and grown only when a launch needs more; counters zeroed once, when allocated', () => {
    const { device, allocs, fills, launches } = recorder();
    const g = new GpuGemms(device, '/k', GEMMS);
    for (const rows of [6, 1, 6, 20, 64, 100, 20]) g.run('qkv', { x: buf(0x200), rows, w: W, outs: [buf(0x300)] });
    // Workspace 2 x rows x 300 floats; counters one per output tile: ceil(rows / blockM) x 3 N tiles (1 x 3 up to 64 rows, 2 x 3 at 100).
    expect(allocs).toEqual([2 * 6 * 300 * 4, 3 * 4, 2 * 20 * 300 * 4, 2 * 64 * 300 * 4, 2 * 100 * 300 * 4, 6 * 4]);
    const counters = launches.map((l) => field(l.args, 'splitCounters'));
    expect(new Set(counters.slice(0, 5)).size).toBe(1);
    expect(counters[6]).toBe(counters[5]);
    expect(fills).toEqual([{ ptr: counters[0], byte: 0 }, { ptr: counters[5], byte: 0 }]);
  });
  test('split-K 1 passes no counters and allocates none', () => {
    const { device, allocs, launches } = recorder();
    new GpuGemms(device, '/k', GEMMS.map((e) => ({ ...e, splitK: 1 }))).run('qkv', { x: buf(0x200), rows: 6, w: W, outs: [buf(0x300)] });
    expect([field(launches[0]!.args, 'splitCounters'), field(launches[0]!.args, 'workspace'), allocs.length]).toEqual([0, 0, 0]);
  });
  test('SwiGLU: epilogue 1 into one [rows, n / 2] out, in the one launch', () => {
    const { device, launches } = recorder();
    const g = new GpuGemms(device, '/k', GEMMS.map((e) => ({ ...e, swigluInterleave: 8 })));
    expect(g.swigluInterleave()).toBe(8);
    g.run('gate_up', { x: buf(0x200), rows: 20, w: W, outs: [buf(0x300)], epilogue: 'swiglu' });
    const [main] = launches;
    expect([field(main!.args, 'epilogue'), field(main!.args, 'out'), field(main!.args, 'seg1'), field(main!.args, 'seg2')]).toEqual([1, 0x300, 300, 300]);
    // Without the manifest's interleave, with two outputs or a residual: refused, nothing launched.
    expect(() => new GpuGemms(device, '/k', GEMMS).run('gate_up', { x: buf(0x200), rows: 1, w: W, outs: [buf(0x300)], epilogue: 'swiglu' })).toThrow(/swiglu epilogue needs/);
    expect(() => g.run('gate_up', { x: buf(0x200), rows: 1, w: W, outs: [buf(0x300)], epilogue: 'swiglu', accumulate: true })).toThrow(/swiglu epilogue needs/);
    expect(launches).toHaveLength(1);
  });
  test('row statistics: no out, tiles in the workspace after the split-K partials, then the merge', () => {
    const { device, launches, allocs } = recorder();
    const g = new GpuGemms(device, '/k', GEMMS.map((e) => ({ ...e, roles: ['lm_head'], rowStatsKernel: 'tidarc_gemm_bf16_n300_k512_row_stats' })));
    expect(g.hasRowStats()).toBe(true);
    g.run('lm_head', { x: buf(0x200), rows: 20, w: W, rowIds: buf(0x250), outs: [], epilogue: 'rowStats', stats: { argmax: buf(0x600), max: buf(0x700), lse: buf(0x800) } });
    expect(launches.map((l) => l.kernel)).toEqual(['tidarc_gemm_bf16_n300_k512_m64', 'tidarc_gemm_bf16_n300_k512_row_stats']);
    const a = launches[0]!.args;
    expect([field(a, 'epilogue'), field(a, 'out'), field(a, 'rowArgmax'), field(a, 'rowMax'), field(a, 'rowLse'), field(a, 'rowIds')]).toEqual([2, 0, 0x600, 0x700, 0x800, 0x250]);
    const ws = field(a, 'workspace'), partials = 2 * 20 * 300;
    expect([field(a, 'tileStats') - ws, field(a, 'tileArgmax') - ws]).toEqual([partials * 4, (partials + 2 * 20 * 3) * 4]);
    expect(allocs).toEqual([(partials + 3 * 20 * 3) * 4, 3 * 4]);
    expect(launches[1]!.grid[0]).toBe(Math.ceil(20 / 8));  // a warp per row
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
