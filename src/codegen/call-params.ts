/**
 * The per-call parameters of an attention launch (split-KV count, CPU threads): what a tuned
 * compile records per shape bucket, and the heuristic used for the shapes it does not cover.
 * Pure: the runtime (kernel-library.ts) and the tuner (tune/space.ts) share these rules.
 *
 *   shape bucket: `b<batch> L<prefix rounded up to a power of two>`; one tuning serves every
 *                 prefix of the bucket;
 *   tuned lookup: the bucket itself, else the nearest tuned prefix bucket of the same batch
 *                 (in powers of two; the shorter one on a tie); other batches are not guessed;
 *   CPU threads:  one thread when the call is small, all of them otherwise (see cpuThreadsFor).
 */
import { chooseSplits } from './splits.js';

export interface CallParams {
  readonly splits: number;
  /** CPU threads (0 = all). */
  readonly threads?: number;
}

/** `b<batch> L<prefix rounded up to a power of two>` (L0 for an empty prefix). */
export function shapeBucket(batch: number, prefix: number): string {
  const L = prefix <= 0 ? 0 : 2 ** Math.ceil(Math.log2(prefix));
  return `b${batch} L${L}`;
}

function parseBucket(bucket: string): { batch: number; L: number } | undefined {
  const m = /^b(\d+) L(\d+)$/.exec(bucket);
  return m ? { batch: Number(m[1]), L: Number(m[2]) } : undefined;
}

/** The tuned parameters for a call of this batch and (longest) prefix, when a bucket applies. */
export function tunedCall(calls: Readonly<Record<string, CallParams>> | undefined, batch: number, prefix: number): CallParams | undefined {
  if (!calls) return undefined;
  const exact = calls[shapeBucket(batch, prefix)];
  if (exact) return exact;
  const want = Math.log2(Math.max(1, prefix));
  let best: { d: number; L: number; p: CallParams } | undefined;
  for (const [bucket, p] of Object.entries(calls)) {
    const b = parseBucket(bucket);
    if (!b || b.batch !== batch) continue;
    const d = Math.abs(Math.log2(Math.max(1, b.L)) - want);
    if (!best || d < best.d || (d === best.d && b.L < best.L)) best = { d, L: b.L, p };
  }
  return best?.p;
}

/**
 * Multiply-adds of one CPU attention call, the measure cpuThreadsFor decides on: per sequence
 * and KV head, every key (prefix and in-step) is converted from 16 bits once per row tile (K and
 * V: counted as 4) and meets every GQA-packed row twice (S = Q K^T, then P V).
 */
export function cpuAttentionMacs(o: { batch: number; kvHeads: number; rows: number; rowTiles: number; keys: number; headDim: number }): number {
  return o.batch * o.kvHeads * o.keys * o.headDim * (4 * o.rowTiles + 2 * o.rows);
}

/**
 * Below this many multiply-adds a CPU attention call runs on the calling thread alone: the call
 * is over before a woken worker would help. Measured with `tidarc tune` on the shipped model
 * (AMD EPYC, 2 threads): AR steps up to L = 1k (1.1M) and k = 4 steps at L = 256 (0.9M) are 1.2
 * to 1.6x faster on one thread; k = 4 at L = 1k (3.3M) and AR at L = 4k (4.2M) faster on two.
 */
export const CPU_SINGLE_THREAD_MACS = 2_000_000;

/** CPU threads for an attention call: 1 for a small call, else 0 (all). */
export function cpuThreadsFor(macs: number): number {
  return macs < CPU_SINGLE_THREAD_MACS ? 1 : 0;
}

/**
 * The heuristic call parameters of a CPU call: threads by size (cpuThreadsFor), then split-KV by
 * the wave-efficiency rule over the threads it runs on.
 */
export function heuristicCpuCall(o: { batch: number; kvHeads: number; rows: number; rowTiles: number; prefix: number; steps: number; headDim: number; tileN: number }, parallelism: number): Required<CallParams> {
  const threads = cpuThreadsFor(cpuAttentionMacs({ ...o, keys: o.prefix + o.steps }));
  const slots = threads === 0 ? parallelism : threads;
  return { threads, splits: chooseSplits(o.batch * o.kvHeads * o.rowTiles, slots, Math.ceil(o.prefix / o.tileN)) };
}
