/**
 * The per-call parameters of an attention launch (split-KV count, CPU threads): what a tuned
 * compile records per shape bucket, and the heuristic used for the shapes it does not cover.
 * Pure: the runtime (kernel-library.ts) and the tuner (tune/space.ts) share these rules.
 *
 *   shape bucket: `b<batch> L<prefix rounded up to a power of two>`; one tuning serves every
 *                 prefix of the bucket;
 *   tuned lookup: the bucket itself, else the nearest tuned prefix bucket of the same batch
 *                 (in powers of two; the shorter one on a tie); other batches are not guessed;
 *   CPU threads:  one thread for a call too short to pay for waking a worker, all otherwise;
 *                 split-KV only while the work items leave threads idle (cpuThreadsFor, cpuSplitsFor).
 *   split-KV:     on every backend, the caller's value, else the tuned one, else the rule: on a
 *                 GPU the split count of least estimated time (splitsFor: chooseAttentionSplits,
 *                 which weighs the merge; the cuda launcher, graph buckets, tune's default and the
 *                 device check's points use it), on the CPU the wave rule over its threads (cpuSplitsFor).
 */
import { type SplitKernel, chooseAttentionSplits, chooseSplits } from './splits.js';
import type { Backend } from './target.js';

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

/** What `tidarc compile --tuned` recorded in a manifest variant for this call, when it was measured on `backend` (another backend's timings say nothing here). */
export function tunedCallOf(v: { readonly tuned?: { readonly calls: Readonly<Record<string, CallParams>>; readonly backend?: Backend } }, backend: Backend, batch: number, prefix: number): CallParams | undefined {
  return v.tuned?.backend === backend ? tunedCall(v.tuned.calls, batch, prefix) : undefined;
}

/** The inputs of the GPU split-KV rule, explicit so that every caller states the machine and kernel it weighs. */
export interface SplitInputs {
  /** The tuned split count of this call's shape bucket on this backend (tunedCallOf), if any. */
  readonly tuned: number | undefined;
  /** CTAs of one split: batch * kvHeads * rowTiles. */
  readonly workItems: number;
  /** The GPU's SMs. */
  readonly sms: number;
  /** KV tiles of the longest prefix: ceil(prefix / tileN). */
  readonly prefixTiles: number;
  /** CTAs of the kernel one SM holds (the manifest's occupancy at the device's arch); absent: 1. */
  readonly ctasPerSm?: number | undefined;
  /** The kernel's tile (splitKernel of its plan): what a split's CTA and its merge cost. */
  readonly kernel: SplitKernel;
}

/**
 * Split-KV of a GPU attention call the caller left open: what tidarc tune measured for this
 * shape, else the split count of least estimated time (chooseAttentionSplits); never more than
 * the prefix tiles (a split past them reads no key and only adds merge work).
 */
export function splitsFor(s: SplitInputs): number {
  const rule = (): number => chooseAttentionSplits({ workItems: s.workItems, sms: s.sms, prefixTiles: s.prefixTiles, ctasPerSm: s.ctasPerSm, kernel: s.kernel });
  return Math.max(1, Math.min(s.tuned ?? rule(), Math.max(1, s.prefixTiles)));
}

/**
 * The single-thread time of a CPU attention call, estimated (microseconds): per sequence, KV
 * head and row tile every key of K and V is converted from 16 bits once (NS_PER_KV_ELEMENT
 * each), and meets every GQA-packed row twice, in S = Q K^T and P V (NS_PER_MAC each). The
 * constants are fitted to single-thread `tidarc tune` timings of the shipped model (AMD EPYC
 * VM): AR at L = 1k (262K elements, 0.5M multiply-adds) 69 to 76 us, estimated 76; k = 4 at
 * L = 256 (70K, 2.8M) 72 to 78 us, estimated 74; k = 4 at L = 1k 233 to 248 us, estimated 281.
 */
export function cpuCallMicros(o: { batch: number; kvHeads: number; rows: number; rowTiles: number; keys: number; headDim: number }): number {
  const perHead = o.batch * o.kvHeads * o.keys * o.headDim;
  return (perHead * 2 * o.rowTiles * NS_PER_KV_ELEMENT + perHead * 2 * o.rows * NS_PER_MAC) / 1000;
}
export const NS_PER_KV_ELEMENT = 0.25;
export const NS_PER_MAC = 0.02;

/**
 * A CPU attention call estimated shorter than this runs on the calling thread alone: a woken
 * worker joins 30 to 60 us late (measured: a small AR step took 84 us on two threads against
 * 25 us on one while the pool waited for it), so a shorter call cannot gain from it.
 */
export const CPU_PARALLEL_MICROS = 100;

/** CPU threads for an attention call: 1 for a short call, else 0 (all). */
export function cpuThreadsFor(micros: number): number {
  return micros < CPU_PARALLEL_MICROS ? 1 : 0;
}

/**
 * Split-KV of a CPU call: the tuned value, else the wave-efficiency rule (chooseSplits) over the
 * threads it runs on; none on one thread; never more than the prefix tiles. Splitting costs the CPU a second parallel phase (the
 * combine) and its worker wake-up: with 4 work items per thread instead (more items to balance a late worker), k = 8 steps at
 * L = 256 to 4k took 1.2 to 1.5x longer than unsplit ones in `tidarc tune` (2-thread VM).
 */
export function cpuSplitsFor(workItems: number, threads: number, parallelism: number, prefixTiles: number, tuned?: number): number {
  const used = threads > 0 ? Math.min(threads, parallelism) : parallelism;
  if (tuned === undefined && used <= 1) return 1;
  return Math.max(1, Math.min(tuned ?? chooseSplits(workItems, used, prefixTiles), Math.max(1, prefixTiles)));
}

/** The heuristic call parameters of a CPU call: threads by estimated time (cpuThreadsFor), then split-KV (cpuSplitsFor). */
export function heuristicCpuCall(o: { batch: number; kvHeads: number; rows: number; rowTiles: number; prefix: number; steps: number; headDim: number; tileN: number }, parallelism: number): Required<CallParams> {
  const threads = cpuThreadsFor(cpuCallMicros({ ...o, keys: o.prefix + o.steps }));
  return { threads, splits: cpuSplitsFor(o.batch * o.kvHeads * o.rowTiles, threads, parallelism, Math.ceil(o.prefix / o.tileN)) };
}
