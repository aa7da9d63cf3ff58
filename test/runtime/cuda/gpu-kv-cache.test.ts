/**
 * A runner's K/V cache that does not fit gives back the layers it got (gpu-runner-buffers.ts
 * GpuKvCache): the runner is never made, and before, its first layers stayed allocated until the
 * model closed (a long-lived process then refused generations for memory nothing used). Pure: a
 * stand-in device whose n-th allocation fails as cuMemAlloc does.
 */
import { expect, test } from 'vitest';
import type { CudaDevice, DeviceBuffer } from '../../../src/runtime/cuda/device.js';
import { GpuKvCache } from '../../../src/runtime/cuda/gpu-runner-buffers.js';

/** Live buffers by pointer; allocation number `failAt` (from 1) throws; `freeFails`: every free throws too (a faulted context). */
function device(failAt: number, freeFails = false) {
  const live = new Map<number, DeviceBuffer>();
  let allocs = 0, next = 0x1000;
  const d = {
    alloc: (bytes: number, label: string): DeviceBuffer => {
      if (++allocs === failAt) throw new Error(`CUDA: cannot allocate ${bytes} bytes for ${label}: cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY`);
      const b = { ptr: next, bytes, label };
      next += bytes;
      live.set(b.ptr, b);
      return b;
    },
    free: (b: DeviceBuffer) => {
      if (freeFails) throw new Error('CUDA: cannot free: cuMemFree failed: CUDA_ERROR_LAUNCH_FAILED');
      live.delete(b.ptr);
    },
    fill: () => undefined,
  } as unknown as CudaDevice;
  return { d, live };
}

const shape = { layers: 3, kvHeads: 2, capacity: 256, headDim: 64 };

test('a K/V cache whose allocation fails part way frees the layers it got and throws the allocation\'s error', () => {
  // The 5th of 6 layers (V layer 1) does not fit.
  const { d, live } = device(5);
  expect(() => new GpuKvCache(d, shape)).toThrow('cannot allocate 65536 bytes for V cache layer 1: cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY');
  expect([...live.values()].map((b) => b.label)).toEqual([]);
});

test('after a fault (every free refused) the error is still the allocation\'s', () => {
  const { d } = device(2, true);
  expect(() => new GpuKvCache(d, shape)).toThrow('cannot allocate 65536 bytes for K cache layer 1');
});

test('a cache that fits holds every layer until freed', () => {
  const { d, live } = device(0);
  const cache = new GpuKvCache(d, shape);
  expect([...live.values()].map((b) => b.label)).toEqual(['K cache layer 0', 'K cache layer 1', 'K cache layer 2', 'V cache layer 0', 'V cache layer 1', 'V cache layer 2']);
  cache.free();
  expect(live.size).toBe(0);
});
