/**
 * The cuda launcher's split-KV choice counts slots as SMs x the CTAs an SM holds at the device's
 * arch, from the manifest's occupancy (issue 15 item 2); a manifest without it (no nvcc build, or
 * another arch) counts 1 a SM as before. Nothing is loaded or launched: only the choice is read.
 */
import { describe, expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import type { Manifest } from '../../../src/codegen/manifest.js';
import { chooseSplits } from '../../../src/codegen/splits.js';
import { AttentionLauncher } from '../../../src/runtime/cuda/attention-launch.js';
import type { CudaDevice } from '../../../src/runtime/cuda/device.js';
import { modelForShape } from '../../helpers/models.js';

describe('AttentionLauncher.splitsFor', () => {
  test('Qwen3-8B\'s AR at L = 4096: 32 splits where sm_90 holds 2 CTAs a SM, 16 (1 a SM) without a record', () => {
    const { manifest } = generateModel(modelForShape({ dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 }, [4]), { arches: ['sm_90'] });
    const withOccupancy: Manifest = {
      ...manifest,
      variants: manifest.variants.map((v) => ({ ...v, occupancy: { sm_90: { registers: 169, sharedBytes: v.launch.dynamicSharedBytes, ctasPerSm: 2, limit: 'registers' } } })),
    };
    const device = (arch: string) => ({ info: { multiprocessors: 132 }, arch }) as unknown as CudaDevice;
    const ar = withOccupancy.variants.find((v) => v.name === 'ar')!;
    expect(ar.launch.rowTiles).toBe(1);
    expect(new AttentionLauncher(device('sm_90'), '/nowhere', withOccupancy).splitsFor(ar, 1, 4096)).toBe(32);
    expect(chooseSplits(8, 132, 64, 64, 2)).toBe(32);
    expect(new AttentionLauncher(device('sm_80'), '/nowhere', withOccupancy).splitsFor(ar, 1, 4096)).toBe(16);  // no sm_80 record
    const plainAr = manifest.variants.find((v) => v.name === 'ar')!;
    expect(new AttentionLauncher(device('sm_90'), '/nowhere', manifest).splitsFor(plainAr, 1, 4096)).toBe(16);
    const k4 = withOccupancy.variants.find((v) => v.name === 'tidar_k4')!;
    expect(new AttentionLauncher(device('sm_90'), '/nowhere', withOccupancy).splitsFor(k4, 8, 4096)).toBe(chooseSplits(8 * 8 * k4.launch.rowTiles, 132, 64, 64, 2));
  });
});
