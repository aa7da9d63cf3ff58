/**
 * The runners a model keeps between sequences, so the next `generate` of the same shape pays
 * no cache allocation, no launch-by-launch warm-up and no graph capture (cuda: GpuModelRunner's
 * step graphs replay from its first decode step).
 *
 * Rule: a request for `capacity` tokens takes the smallest idle runner of capacity >= it, else
 * a new runner of capacity rounded up to CAPACITY_QUANTUM (so prompts of similar length share
 * one). A runner serves one sequence at a time: it leaves the pool while in use, so two
 * sequences alive at once never share one. A finished sequence's runner is reset and kept, at
 * most one per capacity and MAX_IDLE in all (least recently used closed first); a sequence that
 * failed closes its runner (its state is unknown). drop() closes every idle runner. A request
 * may bring a check (acquire's `fits`: cuda, the generation's device memory, step-scratch.ts)
 * that runs before a runner is handed out or made.
 *
 * What an idle runner holds (cuda): its KV cache (layers x 2 x kvHeads x capacity x headDim x 2
 * bytes), each step kind's activations (whole 64-row chunks), GEMM and split-KV scratch, step
 * I/O (lm_head logits of its verify and draft rows: rows x vocab x 4 bytes) and its graphs;
 * `idleBytes` sums them.
 */
import { runEvery } from '../util/run-every.js';

/** Capacities are rounded up to a multiple of this many tokens (costs at most that many KV slots). */
export const CAPACITY_QUANTUM = 256;
/** Idle runners a model keeps. */
export const MAX_IDLE = 2;

/** What the pool needs of a runner. */
export interface ReusableRunner {
  readonly cache: { readonly shape: { readonly capacity: number } };
  /** An empty cache for the next sequence, everything else kept. */
  reset(): void;
  close(): void;
  /** Device bytes held (0 where unknown). */
  readonly deviceBytes?: number;
}

export interface RunnerPoolStats {
  /** Runners made so far. */
  readonly created: number;
  /** Requests served by a kept runner. */
  readonly reused: number;
  readonly idle: number;
  readonly idleBytes: number;
}

export class RunnerPool<R extends ReusableRunner> {
  /** Least recently released first. */
  private readonly idle: R[] = [];
  private created = 0;
  private reused = 0;
  private closed = false;

  constructor(private readonly make: (capacity: number) => R) {}

  /**
   * `fits`: the generation's check before its prefill (cuda: step-scratch.ts checkGeneration),
   * called with the idle runner it would take (undefined: a new one) and that runner's capacity;
   * it throws when the generation does not fit. A refusal closes the other idle runners (their
   * memory goes back) and asks once more; refused again with an idle runner to take, that one is
   * closed too and a new runner of the request's capacity asked for (its error, if refused).
   */
  acquire(capacity: number, fits?: (runner: R | undefined, capacity: number) => void): R {
    const pick = (): number => {
      let best = -1;
      for (const [i, r] of this.idle.entries()) {
        const c = r.cache.shape.capacity;
        if (c >= capacity && (best < 0 || c < this.idle[best]!.cache.shape.capacity)) best = i;
      }
      return best;
    };
    const made = Math.ceil(capacity / CAPACITY_QUANTUM) * CAPACITY_QUANTUM;
    if (fits) {
      const taken = this.idle[pick()];
      const ask = (): void => fits(taken, taken ? taken.cache.shape.capacity : made);
      try {
        ask();
      } catch (e) {
        const others = this.idle.filter((r) => r !== taken);
        if (others.length === 0 && !taken) throw e;
        // Out of the pool before they close: a runner whose close failed part way is never handed out again.
        this.idle.splice(0, this.idle.length, ...(taken ? [taken] : []));
        closeAll(others, e);
        try {
          if (others.length === 0) throw e;
          ask();
        } catch (again) {
          if (!taken) throw again;
          // The idle runner it would take does not fit the generation either: it may hold more than
          // the request needs (a larger capacity's K/V cache, another step kind's scratch, split-KV
          // priced over its whole capacity). It goes, and a new runner of the request's capacity is asked for.
          this.idle.splice(this.idle.indexOf(taken), 1);
          closeAll([taken], again);
          fits(undefined, made);
        }
      }
    }
    const best = pick();
    if (best >= 0) {
      this.reused++;
      return this.idle.splice(best, 1)[0]!;
    }
    this.created++;
    return this.make(made);
  }

  /** A sequence is done with `runner`: kept for the next (reset), or closed when it failed or the pool is full. */
  release(runner: R, failed = false): void {
    if (failed || this.closed) return runner.close();
    try {
      runner.reset();
    } catch (e) {
      // Closed, never kept: a reset that failed leaves its state unknown. The reset's error is the
      // one to see (after a fault the close's frees fail too).
      closeAll([runner], e);
      throw e;
    }
    const capacity = runner.cache.shape.capacity;
    const same = this.idle.findIndex((r) => r.cache.shape.capacity === capacity);
    if (same >= 0) this.idle.splice(same, 1)[0]!.close();
    this.idle.push(runner);
    while (this.idle.length > MAX_IDLE) this.idle.shift()!.close();
  }

  /** Closes every idle runner (a runner in use comes back by its release). */
  drop(): void {
    // Each closes even where one before failed (the first error is thrown): none stays allocated for nothing.
    runEvery(this.idle.splice(0).map((r) => () => r.close()));
  }

  /** drop(), and from now on a released runner is closed (the model is closing). */
  close(): void {
    this.closed = true;
    this.drop();
  }

  get stats(): RunnerPoolStats {
    return { created: this.created, reused: this.reused, idle: this.idle.length, idleBytes: this.idle.reduce((n, r) => n + (r.deviceBytes ?? 0), 0) };
  }
}

/**
 * Closes every runner of `runners` for `cause` (a check's refusal that needs their room, a failed
 * reset); where a close fails, `cause` is thrown: it says what happened, and the device's trouble
 * shows at its next call.
 */
function closeAll(runners: readonly ReusableRunner[], cause: unknown): void {
  try {
    runEvery(runners.map((r) => () => r.close()));
  } catch {
    throw cause;
  }
}
