/**
 * A generation that fails reports its own error (load-model.ts run): its runner is closed, and a
 * close that fails as well (cuda: a kernel fault leaves the context refusing every free) must not
 * replace the error that says what failed. It did: the release ran in a `finally`, so the user of
 * a faulted GPU read "cannot free kv cache ..." instead of the failing step's error. Pure: fake
 * parts and a runner that fails on first use.
 */
import { expect, test } from 'vitest';
import { modelOf } from '../../src/load/load-model.js';
import type { ModelParts } from '../../src/load/model-parts.js';
import type { Runner } from '../../src/runtime/model/forward.js';
import { smallSpec } from '../helpers/random-model.js';

function partsWith(release: (runner: Runner, failed?: boolean) => void): ModelParts {
  // Any use of the runner is the generation's failure (a kernel fault inside its prefill).
  const runner = new Proxy({}, { get: () => { throw new Error('the prefill faulted'); } }) as Runner;
  return {
    spec: smallSpec('failing', [2]),
    tokenizer: { decode: () => '', encode: () => [], eos: undefined } as unknown as ModelParts['tokenizer'],
    maskTokenId: undefined,
    backend: 'cuda',
    backendReason: 'test',
    threads: 1,
    newRunner: () => runner,
    runners: { acquire: () => runner, release, drop: () => undefined, stats: { created: 1, reused: 0, idle: 0, idleBytes: 0 } },
    close: () => undefined,
  };
}

test('a failed generation throws its own error when closing its runner fails too', async () => {
  const released: (boolean | undefined)[] = [];
  const model = modelOf(partsWith((_r, failed) => {
    released.push(failed);
    throw new Error('CUDA: cannot free kv cache: cuMemFree failed: CUDA_ERROR_LAUNCH_FAILED');
  }));
  await expect(model.generate({ prompt: [1, 2, 3], maxTokens: 4, mode: 'ar' })).rejects.toThrow('the prefill faulted');
  // Released once, as failed (closed, never kept for the next sequence).
  expect(released).toEqual([true]);
});

test('a failed generation whose runner closes cleanly: the same error, the runner released once as failed', async () => {
  const released: (boolean | undefined)[] = [];
  const model = modelOf(partsWith((_r, failed) => void released.push(failed)));
  await expect(model.generate({ prompt: [1, 2, 3], maxTokens: 4, mode: 'ar' })).rejects.toThrow('the prefill faulted');
  expect(released).toEqual([true]);
});
