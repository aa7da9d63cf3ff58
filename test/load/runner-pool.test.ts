/**
 * A model's runner pool (src/load/runner-pool.ts) over stand-in runners: capacities round up to
 * a quantum, the smallest idle runner that fits serves a request, a runner in use is never handed
 * out again, a released runner is reset and kept (one per capacity, MAX_IDLE in all, least
 * recently used closed first), a failed sequence's runner is closed, and drop / close free what
 * is kept. Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { CAPACITY_QUANTUM, MAX_IDLE, RunnerPool } from '../../src/load/runner-pool.js';

/** Stand-in runners numbered from 0; closing one of `failing` throws after it is logged (a faulted device's refused free). */
function pool(failing: readonly number[] = []) {
  const log: string[] = [];
  let next = 0;
  const make = (capacity: number) => {
    const id = next++;
    return {
      id, cache: { shape: { capacity } }, deviceBytes: capacity,
      reset: () => void log.push(`reset ${id}`),
      close: () => {
        log.push(`close ${id}`);
        if (failing.includes(id)) throw new Error(`cannot free runner ${id}`);
      },
    };
  };
  return { pool: new RunnerPool(make), log };
}

describe('runner pool', () => {
  test('a finished runner serves the next request that fits; capacities round up to the quantum', () => {
    const { pool: p, log } = pool();
    const a = p.acquire(143);
    expect(a.cache.shape.capacity).toBe(CAPACITY_QUANTUM);
    p.release(a);
    expect(log).toEqual(['reset 0']);
    expect(p.acquire(CAPACITY_QUANTUM)).toBe(a);
    p.release(a);
    // Too small for this one: a new runner, and the first stays idle.
    const b = p.acquire(CAPACITY_QUANTUM + 1);
    expect(b.id).toBe(1);
    expect(b.cache.shape.capacity).toBe(2 * CAPACITY_QUANTUM);
    p.release(b);
    // The smallest idle runner that fits.
    expect(p.acquire(10)).toBe(a);
    expect(p.stats).toEqual({ created: 2, reused: 2, idle: 1, idleBytes: 2 * CAPACITY_QUANTUM });
  });

  test('two sequences alive at once never share a runner; the pool keeps one per capacity', () => {
    const { pool: p, log } = pool();
    const a = p.acquire(100), b = p.acquire(100);
    expect(b).not.toBe(a);
    p.release(a);
    p.release(b);
    expect(log).toEqual(['reset 0', 'reset 1', 'close 0']);
    expect(p.stats.idle).toBe(1);
  });

  test(`at most ${MAX_IDLE} idle runners, the least recently released closed first`, () => {
    const { pool: p, log } = pool();
    const rs = [1, 2, 3].map((n) => p.acquire(n * CAPACITY_QUANTUM));
    for (const r of rs) p.release(r);
    expect(log.filter((l) => l.startsWith('close'))).toEqual(['close 0']);
    expect(p.stats.idle).toBe(MAX_IDLE);
  });

  test('a failed sequence closes its runner; drop closes the idle ones; after close a released runner is closed', () => {
    const { pool: p, log } = pool();
    const a = p.acquire(1), b = p.acquire(1);
    p.release(a, true);
    expect(log).toEqual(['close 0']);
    p.release(b);
    p.drop();
    expect(log).toEqual(['close 0', 'reset 1', 'close 1']);
    const c = p.acquire(1);
    p.close();
    p.release(c);
    expect(log.at(-1)).toBe('close 2');
    expect(p.stats.idle).toBe(0);
  });

  test("a generation's check runs before a runner is handed out or made; a refusal closes the other idle runners and asks once more", () => {
    const { pool: p, log } = pool();
    const a = p.acquire(CAPACITY_QUANTUM), b = p.acquire(2 * CAPACITY_QUANTUM);
    p.release(a);
    p.release(b);
    // The check sees the runner it would take (the smallest idle one that fits) and its capacity; it fits: that runner.
    const asked: [number | undefined, number][] = [];
    const fits = (r: { id: number } | undefined, c: number): void => void asked.push([r?.id, c]);
    expect(p.acquire(10, fits)).toBe(a);
    expect(asked).toEqual([[0, CAPACITY_QUANTUM]]);
    p.release(a);
    // No idle runner fits the request: asked for a new one of the rounded capacity, and made only after the answer.
    asked.length = 0;
    const c = p.acquire(3 * CAPACITY_QUANTUM, fits);
    expect(asked).toEqual([[undefined, 3 * CAPACITY_QUANTUM]]);
    expect(c.id).toBe(2);
    p.release(c, true);
    // Refused while others are idle: they are closed and the check asked again; the runner it would take stays.
    let calls = 0;
    expect(p.acquire(10, () => void (calls++ === 0 && (() => { throw new Error('no room'); })()))).toBe(a);
    expect(calls).toBe(2);
    expect(log.slice(-2)).toEqual(['close 2', 'close 1']);
    p.release(a);
    // Refused by every runner: the error, nothing made; the idle runner it would take was closed
    // for a new one (which was refused too).
    const refusals: [number | undefined, number][] = [];
    expect(() => p.acquire(10, (r, c) => { refusals.push([r?.id, c]); throw new Error(`no room for ${r ? `runner ${r.id}` : 'a new runner'}`); })).toThrow('no room for a new runner');
    expect(refusals).toEqual([[0, CAPACITY_QUANTUM], [undefined, CAPACITY_QUANTUM]]);
    expect(log.at(-1)).toBe('close 0');
    expect(p.stats).toMatchObject({ created: 3, idle: 0 });
  });

  test('an idle runner refused for a generation is closed for a new runner of the request\'s capacity where that fits', () => {
    const { pool: p, log } = pool();
    // A large runner kept from a long generation, the only idle one.
    const big = p.acquire(8 * CAPACITY_QUANTUM);
    p.release(big);
    // A short generation: the big runner (its K/V cache, its scratch, split-KV priced over 8 quanta) does not fit
    // beside the rest of the device; a new runner of one quantum does once it is closed.
    const asked: [number | undefined, number][] = [];
    const r = p.acquire(100, (runner, c) => {
      asked.push([runner?.id, c]);
      if (runner) throw new Error('the big runner does not fit');
    });
    expect(asked).toEqual([[0, 8 * CAPACITY_QUANTUM], [undefined, CAPACITY_QUANTUM]]);
    expect(log).toEqual(['reset 0', 'close 0']);
    expect(r.id).toBe(1);
    expect(r.cache.shape.capacity).toBe(CAPACITY_QUANTUM);
    expect(p.stats).toMatchObject({ created: 2, reused: 0, idle: 0 });
  });

  test('a runner whose close fails making room leaves the pool all the same; the check\'s refusal is the error; drop closes every one', () => {
    const { pool: p, log } = pool([1]);
    const rs = [1, 2].map((n) => p.acquire(n * CAPACITY_QUANTUM));
    for (const r of rs) p.release(r);
    // Refused on runner 0: runner 1 is closed to make room and its close fails; the refusal is thrown, runner 1 never handed out again.
    expect(() => p.acquire(10, (r) => { throw new Error(`no room on ${r?.id}`); })).toThrow('no room on 0');
    expect(log.slice(-1)).toEqual(['close 1']);
    expect(p.stats.idle).toBe(1);
    expect(p.acquire(2 * CAPACITY_QUANTUM).id).toBe(2);
    // drop: a failing close does not keep the others open.
    const { pool: q, log: qlog } = pool([0]);
    const qs = [1, 2].map((n) => q.acquire(n * CAPACITY_QUANTUM));
    for (const r of qs) q.release(r);
    expect(() => q.drop()).toThrow('cannot free runner 0');
    expect(qlog.filter((l) => l.startsWith('close'))).toEqual(['close 0', 'close 1']);
    expect(q.stats.idle).toBe(0);
  });

  test('a released runner whose reset fails is closed, not kept; the reset\'s error is thrown even when its close fails too', () => {
    const { pool: p, log } = pool([0]);
    const a = p.acquire(1);
    a.reset = () => { throw new Error('reset failed'); };
    expect(() => p.release(a)).toThrow('reset failed');
    expect(log).toEqual(['close 0']);
    expect(p.stats.idle).toBe(0);
  });
});
