import { expect, test } from 'vitest';
import { sha256, sha256Hasher } from '../../src/util/hash.js';

test('sha256 of text and bytes is the standard digest', () => {
  expect(sha256('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  expect(sha256(new TextEncoder().encode('abc'))).toBe(sha256('abc'));
});

test('the incremental hasher equals hashing the concatenation', () => {
  const h = sha256Hasher();
  h.update('a');
  h.update(new TextEncoder().encode('bc'));
  expect(h.digest()).toBe(sha256('abc'));
});
