/**
 * Issue 17 item 5: the harnesses' first CUDA call failing on a missing device or driver is
 * reported as "no GPU here", not as kernel findings; any other outcome keeps the rows.
 * Needs nothing (the findings are the harness's JSON lines, as runtime/gpu/gpu_main.cu prints them).
 */
import { describe, expect, test } from 'vitest';
import { gpuMissingIn, type HarnessOutcome } from '../../src/emulate/gpu-presence.js';

const stopped = (message: string): HarnessOutcome => ({ completed: false, findings: [{ kind: 'cuda-error', message }] });

describe('gpuMissingIn', () => {
  test.for([
    'q: CUDA driver version is insufficient for CUDA runtime version',
    'q: no CUDA-capable device is detected',
    'q: initialization error',
    'q: CUDA-capable device(s) is/are busy or unavailable',
  ])('every run stopped by "%s" is one error naming --on gpu', (message) => {
    const e = gpuMissingIn([stopped(message), stopped(message)]);
    expect(e?.code).toBe('unsupported');
    expect(e?.message).toBe(`there is no usable GPU or CUDA driver here (${message.slice(3)}) (--on = gpu); allowed: emulator on this machine (the same checks on the CPU); gpu needs an NVIDIA GPU and its driver`);
  });

  test('a kernel fault, a completed run or one run that got further keeps the rows', () => {
    expect(gpuMissingIn([stopped('kernel: an illegal memory access was encountered')])).toBeUndefined();
    expect(gpuMissingIn([{ completed: true, findings: [] }])).toBeUndefined();
    expect(gpuMissingIn([stopped('q: no CUDA-capable device is detected'), { completed: false, findings: [{ kind: 'oob-read', message: 'x' }] }])).toBeUndefined();
    expect(gpuMissingIn([])).toBeUndefined();
  });
});
