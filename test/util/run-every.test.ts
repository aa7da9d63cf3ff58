/** runEvery (src/util/run-every.ts): every step runs even after one throws, and the first error is the one thrown. */
import { expect, test } from 'vitest';
import { runEvery } from '../../src/util/run-every.js';

test('every step runs after a failure; the first error is thrown', () => {
  const ran: string[] = [];
  const fail = (name: string) => () => {
    ran.push(name);
    throw new Error(`${name} failed`);
  };
  expect(() => runEvery([fail('runners'), () => void ran.push('device'), fail('again')])).toThrow('runners failed');
  expect(ran).toEqual(['runners', 'device', 'again']);
});

test('no failure: nothing thrown; a thrown non-Error value is still rethrown', () => {
  expect(() => runEvery([() => undefined, () => undefined])).not.toThrow();
  expect(() => runEvery([() => { throw 'refused'; }])).toThrow('refused');
});
