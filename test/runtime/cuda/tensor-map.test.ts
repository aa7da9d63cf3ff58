/**
 * Tensor maps for the sm_90a kernels (src/runtime/cuda/tensor-map.ts): the driver's rules as
 * clear one-line errors (alignment, box > 256, strides not multiples of 16, a box row wider
 * than its swizzle, wrong ranks) before the driver sees a map; and through the addon's
 * cuTensorMapEncodeTiled on the emulated driver (runtime/emu/fake_cuda_tensor_map.cpp), the
 * sm_90a GEMM's two maps arrive as the layout says, and the driver refuses a bad map itself
 * (CUDA_ERROR_INVALID_VALUE). In a child process: the addon picks its driver once per process.
 * Tagged: a C++ compiler.
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { TidarcError } from '../../../src/errors.js';
import { type TensorMapLayout, checkTensorMap, sm90aGemmMaps } from '../../../src/runtime/cuda/tensor-map.js';
import { packageRoot } from '../../../src/util/paths.js';
import { sharedEmulatedDriver } from '../../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const GOOD: TensorMapLayout = sm90aGemmMaps({ n: 256, k: 512, dtype: 'bf16' }, 20, 32).x;

function refusal(layout: TensorMapLayout, address = 0x10000): TidarcError {
  try {
    checkTensorMap(layout, address, 'x');
  } catch (e) {
    if (e instanceof TidarcError) return e;
    throw e;
  }
  throw new Error('accepted');
}

describe('checkTensorMap', () => {
  test('the sm_90a GEMM maps: 64 k x 128 weight rows and 64 k x the token tile, 128B swizzle, K-row strides', () => {
    const m = sm90aGemmMaps({ n: 200, k: 520, dtype: 'fp16' }, 72, 128);
    expect(m.w).toEqual({ dtype: 'fp16', dims: [520, 200], strides: [1040], box: [64, 128], swizzle: 128 });
    expect(m.x).toEqual({ dtype: 'fp16', dims: [520, 72], strides: [1040], box: [64, 128], swizzle: 128 });
    expect(checkTensorMap(m.w, 0x1000, 'w')).toBe(m.w);
  });

  test.for([
    ['an address not 16-byte aligned', GOOD, 0x10008, 'address', 'a multiple of 16'],
    ['a box of 257 rows', { ...GOOD, box: [64, 257] }, 0x10000, 'box[1]', '1 to 256 elements'],
    ['a stride not a multiple of 16 bytes (K = 100)', { ...GOOD, dims: [100, 20], strides: [200] }, 0x10000, 'strides[0]', 'a multiple of 16 bytes below 2^40'],
    ['a box row wider than the 64B swizzle', { ...GOOD, swizzle: 64 }, 0x10000, 'box[0]', 'at most 32 elements (the 64B swizzle span)'],
    ['a box row of 12 bytes', { ...GOOD, box: [6, 32] }, 0x10000, 'box[0]', 'a multiple of 8 16-bit elements (16 bytes)'],
    ['a box of another rank', { ...GOOD, box: [64] }, 0x10000, 'box', '2 sizes, one per dimension'],
  ] as const)('refuses %s, naming the field and what is allowed', ([, layout, address, field, allowed]) => {
    const e = refusal(layout as TensorMapLayout, address);
    expect(e.details.field).toBe(field);
    expect(e.details.allowed).toBe(allowed);
    expect(e.message).toMatch(/^tensor map of x: /);
    expect(e.message).not.toContain('\n');
  });
});

describe.skipIf(!cxx.found)('cuTensorMapEncodeTiled through the addon (emulated driver)', () => {
  test('the maps arrive as laid out; the driver refuses a 200-byte stride itself', async () => {
    const driver = await sharedEmulatedDriver();
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'tensor-map-child.ts')], {
      cwd: packageRoot(), env: { ...process.env, TIDARC_LIBCUDA: driver }, maxBuffer: 16 << 20,
    });
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, Record<string, unknown>> & { driverRefusal: string };
    expect(out['w']).toMatchObject({ rank: 2, elemBytes: 2, swizzle: 128, magic: 0x544d4150, dims: [520, 200], strides: [2, 1040], box: [64, 128] });
    expect(out['w']!['base']).toBe(out['w']!['ptr']);
    expect(out['x']).toMatchObject({ rank: 2, elemBytes: 2, swizzle: 128, dims: [520, 20], strides: [2, 1040], box: [64, 32] });
    expect(out['x']!['base']).toBe(out['x']!['ptr']);
    expect(out.driverRefusal).toBe('CUDA_ERROR_INVALID_VALUE');
  }, 300_000);
});
