/** The decoding API's option checks (checkDecodeOptions): one TidarcError naming the option, before anything runs. */
import { describe, expect, test } from 'vitest';
import { TidarcError } from '../../../src/errors.js';
import { checkDecodeOptions, type DecodeOptions } from '../../../src/runtime/model/decoder.js';

const ok: DecodeOptions = { mode: 'tidar', draft: 4, temperature: 0.8, topP: 0.9, trustAr: 1, seed: 0 };

describe('checkDecodeOptions', () => {
  test('accepts a sampling setup with or without top-k (0 keeps every token)', () => {
    for (const topK of [undefined, 0, 1, 50]) expect(() => checkDecodeOptions({ ...ok, ...(topK === undefined ? {} : { topK }) }, [4])).not.toThrow();
  });

  test.for([-1, 2.5, Number.NaN, 2 ** 31])('refuses top-k %s, naming topK', (topK) => {
    let error: unknown;
    try {
      checkDecodeOptions({ ...ok, topK }, [4]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TidarcError);
    expect((error as TidarcError).message).toMatch(/top-k out of range/);
    expect((error as TidarcError).details.field).toBe('topK');
  });
});
