import { expect, test } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import { BACKEND_CHOICES, checkBackendChoice } from '../../src/codegen/target.js';
import { openKernelLibrary } from '../../src/runtime/kernel-library.js';
import { chooseBackend } from '../../src/load/model-parts.js';

test('one backend vocabulary: every choice passes, anything else is one error naming the field', () => {
  for (const b of BACKEND_CHOICES) expect(checkBackendChoice(b)).toBe(b);
  expect(() => checkBackendChoice('tpu', '--backend')).toThrow('unknown backend (--backend = tpu); allowed: auto, cpu, cuda');
});

test('the kernel library and the model loader refuse an unknown backend with the same sentence', async () => {
  const sentence = 'unknown backend (backend = tpu); allowed: auto, cpu, cuda';
  expect(() => openKernelLibrary('/nonexistent', { backend: 'tpu' as never })).toThrow(sentence);
  await expect(chooseBackend('tpu' as never)).rejects.toThrow(sentence);
  await expect(chooseBackend('tpu' as never)).rejects.toBeInstanceOf(TidarcError);
});
