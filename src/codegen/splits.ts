/**
 * Split-KV and split-K counts. Two rules:
 *
 * chooseAttentionSplits (the GPU attention kernel's, issue 15 item 2): the split count whose
 * estimated time is least (splitEstimate). Splitting shortens each CTA's walk over the prefix
 * but adds CTAs (more waves), a Q load and pipeline fill per CTA, and the merge, which the last
 * CTAs spread over the whole launch (tidarc_attention.cuh split_work: every CTA merges 1 / s of the
 * previous row group's partials after its own split): FA2's wave rule counted none of these, and
 * once took 16 splits for k = 4's 8 CTAs at L = 4k, whose merge (then each row group's last CTA
 * reading 16 x 80 rows of fp32 partials alone) cost more than the splits saved.
 *
 * chooseSplits (FA2/FA3's wave rule): what the CPU attention (whose combine is a parallel phase of
 * its own, tuned by measurement: call-params.ts) and the GEMMs' split-K use.
 *
 * Both give only split counts that leave no split empty: the kernel gives each split
 * ceil(tiles / s) tiles, so e.g. 64 tiles in 15 splits are 13 splits of 5 and 2 idle CTAs (FA2's
 * is_split_eligible).
 */

/** Splits are never more than this (nor than the prefix's tiles). */
export const MAX_SPLITS_RULE = 64;

const eligible = (tiles: number, s: number): boolean => s === 1 || Math.ceil(tiles / s) !== Math.ceil(tiles / (s - 1));

/**
 * FA2/FA3's rule: when the work items of a launch cannot fill the machine, split. The machine runs
 * `sms * ctasPerSm` work items at once (1 a SM when unknown). Wave efficiency of s splits =
 * work / (waves * slots); take the fewest splits whose efficiency is within 85% of the best.
 */
export function chooseSplits(workItems: number, sms: number, prefixTiles: number, maxSplits = MAX_SPLITS_RULE, ctasPerSm = 1): number {
  const slots = sms * Math.max(1, Math.floor(ctasPerSm));
  const limit = Math.max(1, Math.min(maxSplits, prefixTiles));
  if (workItems >= 0.8 * slots || limit === 1) return 1;
  const efficiency = (s: number): number => {
    const work = workItems * s;
    return work / (Math.ceil(work / slots) * slots);
  };
  let best = 0;
  for (let s = 1; s <= limit; s++) if (eligible(prefixTiles, s)) best = Math.max(best, efficiency(s));
  for (let s = 1; s <= limit; s++) if (eligible(prefixTiles, s) && efficiency(s) >= 0.85 * best) return s;
  return 1;
}

/**
 * What one SM does per second, and the latency a CTA waits before its first tile. The rule weighs
 * these against each other, so their ratios matter, not the GPU's size. Figures: the H200's
 * (/work/shared/docs/performance-model.md, src/codegen/machine.ts H200) over its 132 SMs:
 * copy 4.3 TB/s (measured, read + written), L2 10 TB/s (assumed), mma.sync 395 TFLOP/s (half the
 * measured bf16 matmul rate). sm_80 to sm_89 have about the same ratios (A100: 1.9 TB/s over 108 SMs).
 */
export interface SplitRates {
  readonly hbmBytesPerSmS: number;
  readonly l2BytesPerSmS: number;
  readonly mmaFlopsPerSmS: number;
  /**
   * Latency a CTA pays before its first mma, once per wave of CTAs resident together: its Q load
   * and the first K/V tile, two HBM round trips of ~0.5 us on Hopper (published pointer-chase
   * latencies; assumed, not measured here). Open: the kernel now issues K/V tiles 0 .. S - 2
   * beside Q and waits for Q alone (tidarc_attention.cuh kQBesideTiles), so the two overlap and
   * one loaded round trip (Machine.hbmLatencyS, 0.7 us) may be nearer; not re-derived yet (it
   * moves split counts; Qwen3-8B k = 4 / AR at L = 4k, batch 1 would be 5.9 / 5.3 = 1.12).
   */
  readonly fillS: number;
  /**
   * What the split schedule adds to a launch with splits > 1 beyond the merge's bytes
   * (tidarc_attention.cuh split_work): the dynamic id's atomicAdd before a CTA's first load, and
   * after its split the count-in atomicAdd, the first ld.acquire poll of the predecessor group's
   * count and the barrier after it: ~3 dependent L2 round trips of ~0.15 us (published Hopper L2
   * and atomic latencies; assumed, not measured here). The predecessor group's CTAs started
   * before (ids in start order) and carry the same work, so the poll is taken to succeed at once;
   * a skew between them is not modelled.
   */
  readonly scheduleS: number;
}

export const H200_SMS = 132;
export const SPLIT_RATES: SplitRates = {
  hbmBytesPerSmS: 4.3e12 / H200_SMS,
  l2BytesPerSmS: 10e12 / H200_SMS,
  mmaFlopsPerSmS: 395e12 / H200_SMS,
  fillS: 1e-6,
  scheduleS: 0.5e-6,
};

/** The kernel as the rule weighs it: a manifest variant's plan fields, or an AttentionPlan's. */
export interface SplitKernel {
  /** Rows one CTA computes, padding rows included (the plan's tileM). */
  readonly tileM: number;
  /** Real rows of the largest row group, whose partials the merging CTA reads: min(tileM, packed rows). */
  readonly groupRows: number;
  /** Row tiles of one KV head: the first reads the prefix from HBM, the others from L2. */
  readonly rowTiles: number;
  readonly tileN: number;
  readonly headDim: number;
}

export interface AttentionSplitInputs {
  /** CTAs of one split: batch x KV heads x row tiles. */
  readonly workItems: number;
  readonly sms: number;
  /** CTAs one SM holds (ptxas occupancy); absent: 1. */
  readonly ctasPerSm?: number | undefined;
  /** KV tiles of the longest prefix: ceil(prefix / tileN). */
  readonly prefixTiles: number;
  readonly kernel: SplitKernel;
  readonly maxSplits?: number;
  readonly rates?: SplitRates;
}

/** The estimate of one split count, seconds; the busiest SM's. */
export interface SplitEstimate {
  readonly splits: number;
  /** CTAs on the busiest SM: ceil(workItems x splits / SMs). */
  readonly ctasOnSm: number;
  /** Those CTAs' prefix tiles (ceil(prefixTiles / splits) each), Q loads and partial outputs, at the SM's rates. */
  readonly workS: number;
  /** fillS once per wave of resident CTAs: ceil(ctasOnSm / ctasPerSm). */
  readonly fillS: number;
  /** The merge (0 with one split). */
  readonly mergeS: number;
  readonly totalS: number;
}

const ELEMENT_BYTES = 2;  // K, V, Q and O are 16-bit (bf16 or fp16)
const FLOAT_BYTES = 4;

/**
 * The time of `splits` splits, on the busiest SM (CTAs on one SM share its bandwidth and tensor
 * cores, so the SM's time is its CTAs' work summed; the cost model's balance rule):
 *   work   per CTA, the slowest of three streams over its ceil(prefixTiles / s) K/V tiles:
 *          HBM (each tile's K and V once per KV head, so 1 / rowTiles of them a CTA, and with
 *          s > 1 its partials' lse, groupRows fp32, left dirty in L2 and written back later),
 *          L2 (every tile, its Q rows, and with s > 1 its partial O and lse, groupRows x (D + 1)
 *          fp32: the merge reads them back from L2 and drops the partial O unwritten,
 *          tidarc_attention.cuh merge_slice, as the cost model counts them) and mma
 *          (tileM x tileN x D x 4 FLOP a tile, padding rows included);
 *   fill   per wave of resident CTAs (the CTAs an SM holds at once overlap their latencies);
 *   merge  with s > 1, after the splits: a row group's merge reads s x groupRows x (D + 1) fp32
 *          partials from L2 and writes groupRows x D 16-bit O and an fp32 lse, cut into s slices,
 *          one a CTA (split_work); the busiest SM's CTAs (compute items and the s merge-only
 *          CTAs: ceil((row groups + 1) x s / SMs)) each merge a slice, + the schedule's
 *          latencies (scheduleS).
 * In-step key tiles cost the same with any split count and are left out; so is the launch.
 */
export function splitEstimate(splits: number, a: AttentionSplitInputs): SplitEstimate {
  const r = a.rates ?? SPLIT_RATES;
  const { tileM, groupRows, rowTiles, tileN, headDim: D } = a.kernel;
  const ctasOnSm = Math.ceil((a.workItems * splits) / a.sms);
  const tiles = Math.ceil(a.prefixTiles / splits);
  const kvTileBytes = 2 * tileN * D * ELEMENT_BYTES;
  const partialBytes = splits > 1 ? groupRows * (D + 1) * FLOAT_BYTES : 0;
  const lseBytes = splits > 1 ? groupRows * FLOAT_BYTES : 0;
  const hbmS = (tiles * kvTileBytes / Math.max(1, rowTiles) + lseBytes) / r.hbmBytesPerSmS;
  const l2S = (tiles * kvTileBytes + groupRows * D * ELEMENT_BYTES + partialBytes) / r.l2BytesPerSmS;
  const mmaS = (tiles * 4 * tileM * tileN * D) / r.mmaFlopsPerSmS;
  const workS = ctasOnSm * Math.max(hbmS, l2S, mmaS);
  const fillS = Math.ceil(ctasOnSm / Math.max(1, Math.floor(a.ctasPerSm ?? 1))) * r.fillS;
  const mergeOne = (splits * groupRows * (D + 1) * FLOAT_BYTES) / r.l2BytesPerSmS + (groupRows * (D * ELEMENT_BYTES + FLOAT_BYTES)) / r.hbmBytesPerSmS;
  const mergeS = splits > 1 ? Math.ceil(((a.workItems + 1) * splits) / a.sms) * (mergeOne / splits) + r.scheduleS : 0;
  return { splits, ctasOnSm, workS, fillS, mergeS, totalS: workS + fillS + mergeS };
}

/**
 * Estimates within this fraction of the least count as equal, and the fewest splits of those win:
 * the estimate's constants are not measured, and a split count that only evens out the last
 * wave by a few percent (AR, batch 32, L = 64k: 18 splits instead of 1 for 2.6%) costs a
 * workspace and merge for less than the model's error.
 */
export const SPLIT_TIME_TOLERANCE = 0.03;

/** The fewest eligible splits (1 to min(maxSplits, prefixTiles)) estimated within SPLIT_TIME_TOLERANCE of the least time. */
export function chooseAttentionSplits(a: AttentionSplitInputs): number {
  const limit = Math.max(1, Math.min(a.maxSplits ?? MAX_SPLITS_RULE, a.prefixTiles));
  const estimates: SplitEstimate[] = [];
  for (let s = 1; s <= limit; s++) if (eligible(a.prefixTiles, s)) estimates.push(splitEstimate(s, a));
  const least = Math.min(...estimates.map((e) => e.totalS));
  return estimates.find((e) => e.totalS <= least * (1 + SPLIT_TIME_TOLERANCE))!.splits;
}

/** The rule's view of a kernel from its plan's fields (a manifest variant's plan, or an AttentionPlan). */
export function splitKernel(p: { readonly tileM: number; readonly tileN: number; readonly rowTiles: number; readonly rows: number; readonly headDim: number }): SplitKernel {
  return { tileM: p.tileM, groupRows: Math.min(p.tileM, p.rows), rowTiles: p.rowTiles, tileN: p.tileN, headDim: p.headDim };
}
