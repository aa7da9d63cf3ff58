/**
 * The selection rule for the attention (attention-launch.ts attentionKernelOf, arch.ts
 * selectArch, the GEMMs' rule too): a variant's sm_90a kernel runs on a 9.0 device where the
 * compile built sm_90a and made one for the variant, unless compile --tuned recorded the GPU
 * search's finding that its own kernel is faster or, without such a record, the compile's
 * cost-model choice (sm90a.heuristic) names it; else (an sm_90-only compile, an 8.0 device, a
 * variant without one) its own kernel. The sm_90a launch: its module, symbol, grid,
 * block and shared memory, the KV cache's two tensor maps (sm90aCacheMap's layout, encoded
 * through the device), then TidarcAttentionArgs exactly as the sm_80 launch packs it.
 * On a recording device: nothing is loaded or run.
 */
import { attentionGrid } from '../../../src/codegen/attention-grid.js';
import { describe, expect, test } from 'vitest';
import type { ArchName } from '../../../src/codegen/arch.js';
import { describeAttentionSm90a, planAttentionSm90a } from '../../../src/codegen/attention-sm90a.js';
import type { ManifestVariant } from '../../../src/codegen/manifest.js';
import { tidarDecodeVariant } from '../../../src/codegen/variant.js';
import { AttentionLauncher, attentionKernelOf } from '../../../src/runtime/cuda/attention-launch.js';
import type { CudaDevice, DeviceBuffer } from '../../../src/runtime/cuda/device.js';
import type { TensorMapLayout } from '../../../src/runtime/cuda/tensor-map.js';

const SHAPE = { dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 1 } as const;
const variant = tidarDecodeVariant(16, SHAPE);
const sm90a = describeAttentionSm90a(planAttentionSm90a(variant));
/** The variant as an sm_90-only compile describes it (its sm_80-path tile: 17 tiles of 4 warps). */
const plain: ManifestVariant = {
  name: 'tidar_k16', description: variant.description, mask: { kind: variant.mask.kind, params: variant.mask.params }, steps: 272, rows: 1088, shape: SHAPE,
  symbols: { cuda: variant.symbol, cpu: '' }, sources: { cuda: 'cuda/tidar_k16.cu', cpu: 'cpu/tidar_k16.cpp' },
  plan: { tileM: 64, tileN: 64, warps: 4, stages: 2, rowTiles: 17, stepKeyTiles: 5, stepTiles: { empty: 0, partial: 0, full: 0 } },
  launch: { grid: ['rowTiles', 'batch * kvHeads', 'splits'], rowTiles: 17, block: 128, dynamicSharedBytes: 36864 }, arches: ['sm_90'],
};
const k16: ManifestVariant = { ...plain, sm90a };

function recorder(cc: readonly [number, number]) {
  const launches: { module: string; fn: string; grid: readonly number[]; block: readonly number[]; smem: number; args: Uint8Array }[] = [];
  const maps: { ptr: number; layout: TensorMapLayout }[] = [];
  let next = 0x1000;
  const device = {
    info: { multiprocessors: 132, major: cc[0], minor: cc[1] },
    arch: cc[0] === 9 ? 'sm_90' : 'sm_80',
    kernel: (module: string, name: string) => `${module}#${name}`,
    alloc: (bytes: number, label: string): DeviceBuffer => ({ ptr: (next += 0x10000), bytes, label }),
    free: () => undefined,
    fill: () => undefined,
    encodeTensorMap: (buf: DeviceBuffer, layout: TensorMapLayout) => {
      maps.push({ ptr: buf.ptr, layout });
      return new Uint8Array(128).fill(maps.length);
    },
    launch: (fn: string, grid: readonly number[], block: readonly number[], smem: number, args: Uint8Array) => {
      const [module, name] = fn.split('#') as [string, string];
      launches.push({ module, fn: name, grid, block, smem, args: args.slice() });
    },
  } as unknown as CudaDevice;
  return { device, launches, maps };
}

const call = { q: 0x100, kCache: 0x200, vCache: 0x300, kStep: 0x400, vStep: 0x500, prefixLen: 0x600, o: 0x700, lse: 0x800, batch: 3, cacheCapacity: 512, maxPrefix: 500, splits: 1 };

describe('AttentionLauncher: the sm_90a attention where the selection rule picks it', () => {
  test.for([
    [['sm_80', 'sm_90', 'sm_90a'], [9, 0], k16, true],
    [['sm_90', 'sm_90a'], [9, 0], plain, false],  // no sm_90a kernel for this variant
    [['sm_80', 'sm_90'], [9, 0], k16, false],  // not compiled for sm_90a
    [['sm_80', 'sm_90a'], [8, 0], k16, false],  // an 8.0 device
    [undefined, [9, 0], k16, false],
    // compile --tuned's record of which kernel the search on a GPU measured faster (a CPU's record decides nothing here).
    [['sm_90', 'sm_90a'], [9, 0], { ...k16, tuned: { calls: {}, backend: 'cuda', kernel: 'sm_90' } }, false],
    [['sm_90', 'sm_90a'], [9, 0], { ...k16, tuned: { calls: {}, backend: 'cuda', kernel: 'sm_90a' } }, true],
    [['sm_90', 'sm_90a'], [9, 0], { ...k16, tuned: { calls: {}, backend: 'cpu', kernel: 'sm_90' } }, true],
    // Without a record: the compile's cost-model choice (sm90a.heuristic); a tuned record outranks it either way.
    [['sm_90', 'sm_90a'], [9, 0], { ...k16, sm90a: { ...sm90a, heuristic: { kernel: 'sm_90', ratio: 1.03 } } }, false],
    [['sm_90', 'sm_90a'], [9, 0], { ...k16, sm90a: { ...sm90a, heuristic: { kernel: 'sm_90a', ratio: 0.82 } } }, true],
    [['sm_90', 'sm_90a'], [8, 0], { ...k16, sm90a: { ...sm90a, heuristic: { kernel: 'sm_90a', ratio: 0.82 } } }, false],  // the arch rule still gates it
    [['sm_90', 'sm_90a'], [9, 0], { ...k16, sm90a: { ...sm90a, heuristic: { kernel: 'sm_90', ratio: 1.03 } }, tuned: { calls: {}, backend: 'cuda', kernel: 'sm_90a' } }, true],
    [['sm_90', 'sm_90a'], [9, 0], { ...k16, sm90a: { ...sm90a, heuristic: { kernel: 'sm_90a', ratio: 0.82 } }, tuned: { calls: {}, backend: 'cuda', kernel: 'sm_90' } }, false],
    [['sm_90', 'sm_90a'], [9, 0], { ...k16, sm90a: { ...sm90a, heuristic: { kernel: 'sm_90', ratio: 1.03 } }, tuned: { calls: {}, backend: 'cpu', kernel: 'sm_90a' } }, false],
  ] as const)('compiled %j, device %j: sm_90a %s', ([arches, cc, v, want]) => {
    expect(attentionKernelOf(v as ManifestVariant, arches as readonly ArchName[] | undefined, cc) !== undefined).toBe(want);
  });

  test('a 9.0 device runs the sm_90a kernel with the cache maps; an sm_90-only compile runs the variant\'s own, with the same TidarcAttentionArgs', () => {
    const a = recorder([9, 0]);
    new AttentionLauncher(a.device, '/kernels', { variants: [k16], arches: ['sm_90', 'sm_90a'] }).launch('tidar_k16', call);
    const b = recorder([9, 0]);
    new AttentionLauncher(b.device, '/kernels', { variants: [k16], arches: ['sm_90'] }).launch('tidar_k16', call);
    const [fast] = a.launches, [slow] = b.launches;
    expect({ module: fast!.module, fn: fast!.fn, grid: fast!.grid, block: fast!.block, smem: fast!.smem }).toEqual({
      module: '/kernels/cuda/tidar_k16.sm90a.fatbin', fn: sm90a.symbol, grid: [sm90a.rowTiles, 3, 1], block: [288], smem: sm90a.dynamicSharedBytes,
    });
    expect(sm90a.rowTiles).toBe(9);  // 1088 rows in tiles of 2 x 64
    expect({ module: slow!.module, fn: slow!.fn, grid: slow!.grid }).toEqual({ module: '/kernels/cuda/tidar_k16.fatbin', fn: plain.symbols.cuda, grid: [plain.launch.rowTiles, 3, 1] });
    const layout = { dtype: 'bf16', dims: [64, 512, 3], strides: [128, 512 * 128], box: [64, 64, 1], swizzle: 128 };
    expect(a.maps).toEqual([{ ptr: 0x200, layout }, { ptr: 0x300, layout }]);
    expect(b.maps).toEqual([]);
    expect(fast!.args.length % 64).toBe(0);
    expect([...fast!.args.subarray(0, 128)].every((x) => x === 1) && [...fast!.args.subarray(128, 256)].every((x) => x === 2)).toBe(true);
    expect(fast!.args.subarray(256, 256 + slow!.args.length)).toEqual(slow!.args);
  });

  test('splitsFor counts the sm_90a kernel\'s row tiles where it runs, as launch() does (the runner fixes its graphs\' counts by it)', () => {
    const { splits: _, ...open } = call;
    const L = 4096;
    const a = recorder([9, 0]);
    const launcher = new AttentionLauncher(a.device, '/kernels', { variants: [k16], arches: ['sm_90', 'sm_90a'] });
    const fixed = launcher.splitsFor(k16, 1, L);
    launcher.launch('tidar_k16', { ...open, batch: 1, maxPrefix: L });
    expect(a.launches[0]!.grid[2]).toBe(fixed);
    const own = new AttentionLauncher(recorder([9, 0]).device, '/kernels', { variants: [k16], arches: ['sm_90'] }).splitsFor(k16, 1, L);
    const sm90aView = { ...k16, launch: { ...k16.launch, rowTiles: sm90a.rowTiles } };
    expect(new AttentionLauncher(recorder([9, 0]).device, '/kernels', { variants: [sm90aView], arches: ['sm_90'] }).splitsFor(sm90aView, 1, L)).toBe(fixed);
    expect(fixed).not.toBe(own);  // 9 row tiles against the mma.sync kernel's 17
  });

  test('a tuned record takes the kernel it names on the 9.0 device, with its tuned split count', () => {
    const { splits: _, ...open } = call;
    const tuned = (kernel: 'sm_90' | 'sm_90a') => ({ ...k16, tuned: { calls: { 'b3 L512': { splits: 5 } }, backend: 'cuda' as const, kernel } });
    const a = recorder([9, 0]);
    new AttentionLauncher(a.device, '/kernels', { variants: [tuned('sm_90')], arches: ['sm_90', 'sm_90a'] }).launch('tidar_k16', open);
    expect({ module: a.launches[0]!.module, grid: a.launches[0]!.grid }).toEqual({ module: '/kernels/cuda/tidar_k16.fatbin', grid: attentionGrid(plain.launch.rowTiles, 3, 5) });
    expect(a.maps).toEqual([]);
    const b = recorder([9, 0]);
    new AttentionLauncher(b.device, '/kernels', { variants: [tuned('sm_90a')], arches: ['sm_90', 'sm_90a'] }).launch('tidar_k16', open);
    expect({ module: b.launches[0]!.module, grid: b.launches[0]!.grid }).toEqual({ module: '/kernels/cuda/tidar_k16.sm90a.fatbin', grid: attentionGrid(sm90a.rowTiles, 3, 5) });
  });
});
