/**
 * CTAs per SM from ptxas's figures (issue 15 item 2), on the numbers the issue quotes: the
 * attention kernel's 178 registers at sm_90 hold 2 CTAs of 4 warps, 168 would hold 3; shared
 * memory limits sm_80 first.
 */
import { describe, expect, test } from 'vitest';
import { occupancy } from '../../src/codegen/occupancy.js';

// Qwen3-8B's attention CTA: 4 warps, 2 stages of K and V tiles of 64 keys x (128 + 8) bf16.
const KV_STAGES_BYTES = 2 * 2 * 64 * 136 * 2;

describe('occupancy', () => {
  test('registers: per warp in units of 256, whole warps per sub-partition', () => {
    expect(occupancy('sm_90', { registers: 178, sharedBytes: KV_STAGES_BYTES, threads: 128 })).toEqual({ ctasPerSm: 2, limit: 'registers' });
    expect(occupancy('sm_90', { registers: 168, sharedBytes: KV_STAGES_BYTES, threads: 128 })).toEqual({ ctasPerSm: 3, limit: 'registers' });
    expect(occupancy('sm_90', { registers: 169, sharedBytes: 0, threads: 128 }).ctasPerSm).toBe(2);  // 169 -> 176 a thread: 5632 a warp, 2 in 16384
    expect(occupancy('sm_90', { registers: 128, sharedBytes: 0, threads: 256 }).ctasPerSm).toBe(2);
    expect(occupancy('sm_90', { registers: 129, sharedBytes: 10_000, threads: 256 }).ctasPerSm).toBe(1);  // 136 a thread: 3 warps a sub-partition, 2 a CTA
  });
  test('a CTA of 9 warps (the sm_90a kernels: 2 consumer warpgroups and a producer warp) takes 3 of each sub-partition', () => {
    // 106 registers (the d64 sm_90a attention): 3584 a warp, 4 fit a sub-partition, so 1 CTA; 9 x
    // 3584 = 32,256 of the SM's 65,536 would say 2, and ptxas sizes its register cap by 12 warps too.
    expect(occupancy('sm_90a', { registers: 106, sharedBytes: 66_608, threads: 288 })).toEqual({ ctasPerSm: 1, limit: 'registers' });
    expect(occupancy('sm_90a', { registers: 64, sharedBytes: 66_608, threads: 288 })).toEqual({ ctasPerSm: 2, limit: 'registers' });  // 2048 a warp: 8 a sub-partition
  });
  test('shared memory: 1 KB reserved a CTA, the arch\'s per-SM size', () => {
    expect(occupancy('sm_80', { registers: 168, sharedBytes: KV_STAGES_BYTES, threads: 128 })).toEqual({ ctasPerSm: 2, limit: 'shared' });
    expect(occupancy('sm_90', { registers: 32, sharedBytes: 115_200, threads: 128 }).ctasPerSm).toBe(2);  // 2 x 116224 <= 233472
    expect(occupancy('sm_90', { registers: 32, sharedBytes: 116_224, threads: 128 })).toEqual({ ctasPerSm: 1, limit: 'shared' });  // 2 x 117248 > 233472
    expect(occupancy('sm_90', { registers: 64, sharedBytes: 116_000, threads: 256 })).toEqual({ ctasPerSm: 1, limit: 'shared' });  // rounded to 116,096 + 1 KB: 2 x 117,120 > 233472
  });
  test('threads and the CTA limit', () => {
    expect(occupancy('sm_86', { registers: 32, sharedBytes: 0, threads: 512 })).toEqual({ ctasPerSm: 3, limit: 'threads' });
    expect(occupancy('sm_90', { registers: 8, sharedBytes: 0, threads: 32 })).toEqual({ ctasPerSm: 32, limit: 'ctas' });
    expect(occupancy('sm_90', { registers: 32, sharedBytes: 1_000, threads: 256 }).ctasPerSm).toBe(8);  // 2048 threads
  });
});
