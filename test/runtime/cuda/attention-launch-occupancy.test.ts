/**
 * The cuda launcher's split-KV choice reads the CTAs an SM holds at the device's arch from the
 * manifest's occupancy (issue 15 item 2); a manifest without it (no nvcc build, or another arch)
 * counts 1 a SM. The rule weighs the merge and the kernel's tile (splits.ts chooseAttentionSplits).
 * Nothing is loaded or launched: only the choice is read.
 */
import { describe, expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import type { Manifest, ManifestVariant } from '../../../src/codegen/manifest.js';
import { chooseAttentionSplits, chooseSplits, splitKernel } from '../../../src/codegen/splits.js';
import { AttentionLauncher } from '../../../src/runtime/cuda/attention-launch.js';
import type { CudaDevice } from '../../../src/runtime/cuda/device.js';
import { modelForShape } from '../../helpers/models.js';

describe('AttentionLauncher.splitsFor', () => {
  test('Qwen3-8B at L = 4096, batch 1: AR 16 splits with or without a record (the wave rule took 32 at 2 CTAs/SM); k = 16 by the record\'s occupancy', () => {
    // k = 16 pinned to 17 tiles of 4 16-row warps, a tile whose split count moves with the CTAs an SM holds (the planner's 12 x 3 of 32 rows takes 4 at 1 or 2).
    const { manifest } = generateModel(modelForShape({ dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 }, [4, 16]), { arches: ['sm_90'], tiles: { tidar_k16: { warps: 4, tileN: 64, warpRows: 16 } } });
    const withOccupancy: Manifest = {
      ...manifest,
      variants: manifest.variants.map((v) => ({ ...v, occupancy: { sm_90: { registers: 169, sharedBytes: v.launch.dynamicSharedBytes, ctasPerSm: 2, limit: 'registers' } } })),
    };
    const device = (arch: string) => ({ info: { multiprocessors: 132 }, arch }) as unknown as CudaDevice;
    const launcher = (arch: string, m: Manifest) => new AttentionLauncher(device(arch), '/nowhere', m);
    const rule = (v: ManifestVariant, ctasPerSm: number) =>
      chooseAttentionSplits({ workItems: 8 * v.launch.rowTiles, sms: 132, ctasPerSm, prefixTiles: Math.ceil(4096 / v.plan.tileN), kernel: splitKernel({ ...v.plan, rows: v.rows, headDim: 128 }) });
    const ar = withOccupancy.variants.find((v) => v.name === 'ar')!;
    expect(ar.launch.rowTiles).toBe(1);
    expect(launcher('sm_90', withOccupancy).splitsFor(ar, 1, 4096)).toBe(16);  // 128 CTAs on 132 SMs, merging 4 rows each
    expect(chooseSplits(8, 132, 64, 64, 2)).toBe(32);
    expect(launcher('sm_80', withOccupancy).splitsFor(ar, 1, 4096)).toBe(16);  // no sm_80 record
    const k16 = withOccupancy.variants.find((v) => v.name === 'tidar_k16')!;
    const [two, one] = [rule(k16, 2), rule(k16, 1)];
    expect(two).not.toBe(one);  // 2 CTAs an SM overlap their fill: more waves cost less
    expect(launcher('sm_90', withOccupancy).splitsFor(k16, 1, 4096)).toBe(two);
    expect(launcher('sm_80', withOccupancy).splitsFor(k16, 1, 4096)).toBe(one);
    expect(launcher('sm_90', manifest).splitsFor(manifest.variants.find((v) => v.name === 'tidar_k16')!, 1, 4096)).toBe(one);
  });
});
