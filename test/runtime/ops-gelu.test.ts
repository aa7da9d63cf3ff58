/**
 * ops.gelu (the CPU op table's gelu, src/runtime/ops.ts): torch's tanh form rounded once to
 * float32, in place or not; a wrong output length is one error naming it.
 * Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { gelu } from '../../src/runtime/ops.js';
import { seededRandom } from '../../src/util/random.js';

const reference = (v: number): number => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

describe('ops.gelu', () => {
  test('equals float64 gelu(approximate=tanh) rounded to float32, also in place', () => {
    const rng = seededRandom(5);
    const x = Float32Array.from({ length: 4096 }, (_, i) => (i < 6 ? [0, -0, 1, -1, 30, -30][i]! : 8 * rng.normal()));
    const out = new Float32Array(x.length);
    gelu(x, out);
    expect([...out]).toEqual([...x].map((v) => Math.fround(reference(v))));
    expect([...out.subarray(0, 6)]).toEqual([0, -0, Math.fround(reference(1)), Math.fround(reference(-1)), 30, -0]);
    gelu(x, x);
    expect([...x]).toEqual([...out]);
  });

  test('an output of another length is refused, naming it', () => {
    expect(() => gelu(new Float32Array(4), new Float32Array(3))).toThrow(/gelu.*out.*x\.length/);
  });
});
