/**
 * Cost model of one generated attention step (templates/cuda/tidarc_attention.cuh, planned by
 * src/codegen/plan.ts), to predict before a GPU measures (issue 15; /work/shared/docs/
 * performance-model.md). Pure: plan + shape + machine + occupancy -> figures.
 *
 *   CTAs        batch x KV heads x row tiles per split, x splits (the runtime's rule,
 *               call-params.ts splitsFor: the split count of least estimated time, splits.ts
 *               chooseAttentionSplits); CTAs per SM from ptxas (occupancy.ts).
 *   HBM bytes   each KV head's prefix K and V once per sequence (the row tiles of one KV head
 *               re-read it from L2), Q, the step's K and V, O and lse; with splits > 1 the
 *               partials' lse words (splits x rows floats), left dirty in L2 and written back
 *               when later launches evict them. Not the partial O (splits x rows x D floats):
 *               written to L2, read back from it by the merge microseconds later (the launch's
 *               footprint, ~20 MB at L = 4k, is a third of the H200's 60 MB L2) and then dropped
 *               unwritten (tidarc_attention.cuh merge_slice: discard.global.L2), so no HBM write-back
 *               ever. Before the discard they were counted here, rightly in sum: the write-back
 *               happened, only later, when the step's GEMMs evicted them.
 *   L2 bytes    the prefix once per row tile (every row tile reads all of it), Q again for every
 *               split after the first (each split's CTA loads its rows' Q), and the partials'
 *               writes (their reads are the merge's).
 *   FLOPs       useful: 4 D per (query row, visible key); executed: whole row tiles of the
 *               plan's tileM rows (padding rows included; 16 x row warps: plan.ts rowTileOf, so
 *               16 for AR's 4 rows, whose warps split the keys instead) against every key tile
 *               a row tile visits. The split-key merge (16 x D floats a warp through shared
 *               memory, once per CTA) is not counted.
 *   shared      bytes through shared memory (attentionSharedTraffic; Machine.sharedBytesPerS,
 *               128 B a clock an SM, what cp.async writes and ldmatrix reads share, as the GEMM
 *               cost model counts them): per key tile a CTA visits, K and V written once and read
 *               by every row warp, and 32-row warps' Q rows read again; Q once per CTA. The
 *               re-read per row warp is what makes mma.sync shared-bound on compute-heavy
 *               variants: 16-row warps at 64 keys move 0.078 bytes a FLOP at 4 row warps (5.5 ns
 *               a tile of 64 x 64 at 29.7 TB/s against mma.sync's 5.3).
 *   issue       the SASS a warp issues (sass-counts.ts: one iteration of the main loop, measured by
 *               cuobjdump for each tile the planner can pick): every warp of a CTA runs one iteration
 *               a key tile the CTA visits, and one iteration takes a sub-partition (4 an SM, one
 *               instruction issued a clock each) max(its instructions, each pipe's instructions x 32 /
 *               its lanes: fp32, IMAD, ALU, conversions, MUFU, shuffles, the CUDA guide's throughput
 *               table; HMMA at the mma term's rate) clocks (sass-mix.ts iterationCycles) at
 *               Machine.smClockHz. Where the tensor pipe limits the iteration the term equals the mma
 *               term; above it the softmax, the addresses and the loop control are what bound the
 *               tile ('issue'). A tile not measured has no issue term (issueS undefined). Every
 *               iteration is priced as an unmasked one: the in-step tiles' mask blocks (a few
 *               partial tiles a row tile) and the last S - 1 iterations' skipped copies are not.
 *   balance     an SM's time is its CTA count (CTAs on one SM share its bandwidth and tensor
 *               cores): the work runs at w / ceil(w) of the machine, w = CTAs / SMs; below one
 *               CTA a SM the idle SMs neither load nor compute (one CTA of 4 warps with 2 stages
 *               of 32 KB in flight is assumed enough to pull an SM's share of the bandwidth).
 *   time        max(HBM / copy rate, L2 / L2 rate, max(executed / mma.sync rate, shared /
 *               shared rate, issue)) / balance (the mma.sync rate of 32-row warps is higher:
 *               mmaSyncRate; the balance spreads both over the SMs the CTAs occupy)
 *               + the merge when splits > 1: every CTA (the G x splits compute items and the
 *               splits merge-only CTAs, tidarc_attention.cuh split_work) merges 1 / splits of
 *               the previous row group's partials, just written and so read from L2 (the L2
 *               rate), and writes its share of O (the copy rate), over the SMs those CTAs occupy
 *               (min(1, CTAs / SMs)), + the schedule's latencies (splits.ts SPLIT_RATES.scheduleS:
 *               the id draw, the count-in and the first poll, 0.5 us assumed); it is the same
 *               launch, so no launch gap (the combine kernel's 2 us). Host launch cost is not
 *               included (CUDA graphs);
 *               + the fill: the latency before a CTA's first tile (its Q load, then its first
 *               K/V tile), paid once per wave of the CTAs an SM holds together (the busiest SM's
 *               ceil(ceil(CTAs / SMs) / CTAs per SM) waves; splits.ts SPLIT_RATES.fillS, 1 us
 *               assumed). The split rule (splits.ts splitEstimate) weighs the same terms.
 *   roofline    max(the essential HBM bytes at the copy rate, useful FLOPs at the measured
 *               bf16 matmul rate); share = roofline / predicted.
 * Qwen3-8B, batch 1, L = 4k, the issue's k = 4 / AR target (<= 1.15), term by term (us):
 *   AR 5.6 = HBM 4.0 (16.8 MB: K, V; 16 splits) + merge 0.5 (0.26 MB of partials at the L2 rate,
 *   0.03, + the schedule's 0.5) + fill 1.0. k = 4 (20 tokens x 4 heads = 80 rows a KV head) on the
 *   planned 1 x 5 warps, 16 splits, 128 CTAs: 6.2 = HBM 4.1 (17.2 MB: + the step's Q, K, V, O,
 *   0.4 MB; L2 2.5, mma.sync 3.6 and shared memory 3.7 run under it) + merge 1.1 (5.3 MB of partials, 0.53, + O 0.04
 *   + 0.5) + fill 1.0: 1.12 x AR. The gap is the merge of 20 x AR's rows, and the step's tokens.
 *   While the partials counted as HBM bytes, k = 4 was 6.6 on 2 x 3 warps and 8 splits (HBM 19.8
 *   MB, 2.6 of them partials: +0.6 us), 1.17 x AR; the 5-warp CTA's 16 splits were 7.5.
 *   Pricing shared memory moved the compute-bound steps (batch 1, L = 4k): k = 8 on 3 x 3 warps
 *   of 32 rows 12.5 -> 12.8 (shared 10.5 over mma.sync 10.2); k = 16 from 12 x 3 warps of 32 rows
 *   (43.4, then 44.4 shared-bound) to 9 x 4 (46.2, mma.sync 41.0 over shared 40.2), within the
 *   planner's tolerance on the mean of its four shapes and fewer row tiles (row-tile-choice.ts).
 * The issue term (SASS of nvcc 13.0, sm_90; cycles a warp-iteration on a sub-partition, HMMA at
 *   9.6 clocks each at 395 TFLOP/s, 7.2 for 32-row warps at 32 keys: mmaSyncRate) binds none of
 *   these: AR's split-key warps issue 439 instructions a 16-key slice (32 HMMA, 307 clocks:
 *   issue-limited) but 1.0 us under HBM 4.0; k = 4's 5 warps of 16 rows 825 against
 *   1230 (3.6 = mma); k = 8's 3 x 3 of 32 rows at 32 keys 869 against 922 (10.2 = mma, under shared
 *   10.5); k = 16's 9 x 4 779 against 922 (41.0 = mma; 84%: 128 HMMA, 228 FMUL/FADD/FFMA, 72 IMAD,
 *   145 ALU, 16 F2FP, 36 MUFU, 8 SHFL and 146 others: LDSM, LDGSTS, BRA, uniform ops). If mma.sync
 *   ran at the tensor cores' own rate (790 TFLOP/s: 4.8 clocks an HMMA, 614 an iteration), k = 16's
 *   iteration would be issue-limited (779 / 614 = 1.27), the issue term 34.6 us over mma 27.3 but
 *   under shared memory's 40.2 (k = 8: 9.7 over 6.8, under 10.5). At head dim 64 the HMMA halve and the softmax does not: 32-row
 *   warps issue 986-1073 against 769 and are issue-bound (tiny's prefill chunk: 2 x 2 warps 5.75
 *   -> 6.32 us on the mean of the four shapes, and the planner takes 1 x 4, 6.36).
 * Assumptions (performance-model.md): H200 copy 4.3 TB/s (read + written, measured through
 * torch), bf16 790 TFLOP/s (torch's 8192^3 matmul), mma.sync ~half of that (ldmatrix's shared
 * memory bandwidth, not the tensor cores, limits it), L2 10 TB/s (assumed, not measured).
 */
import type { AttentionPlan } from './plan.js';
import { splitsFor } from './call-params.js';
import { SPLIT_RATES, chooseSplits, splitKernel } from './splits.js';
import { stepVisibility } from '../ir/mask.js';
import type { Machine } from './machine.js';
import { loopCounts } from './sass-counts.js';
import { hmmaCycles, type IterationCycles, iterationCycles, SUB_PARTITIONS } from './sass-mix.js';


export interface AttentionShape {
  readonly batch: number;
  /** Cached prefix length L of every sequence. */
  readonly prefix: number;
}

export interface AttentionPrediction {
  readonly splits: number;
  readonly ctas: number;
  readonly ctasPerSm: number;
  /** CTAs / (SMs x CTAs per SM). */
  readonly waves: number;
  readonly balance: number;
  readonly hbmBytes: number;
  readonly essentialBytes: number;
  readonly l2Bytes: number;
  readonly usefulFlops: number;
  readonly executedFlops: number;
  readonly hbmS: number;
  readonly l2S: number;
  readonly mmaS: number;
  /** Bytes through shared memory (attentionSharedTraffic): cp.async writes and ldmatrix reads. */
  readonly sharedBytes: number;
  readonly sharedS: number;
  /**
   * The busiest SM's warp-iterations at the issue model's cycles each (issueOf), or undefined where
   * the plan's tile has no measured SASS counts (sass-counts.ts: then no issue term).
   */
  readonly issueS: number | undefined;
  /** One warp-iteration's cycles on a sub-partition (issue slots and each pipe), where measured. */
  readonly issue: IterationCycles | undefined;
  /** The split-KV merge spread over every CTA, and the split schedule's latencies (0 with one split). */
  readonly mergeS: number;
  /** The latency before a CTA's first tile, once per wave of CTAs an SM holds together (splits.ts SPLIT_RATES.fillS). */
  readonly fillS: number;
  readonly predictedS: number;
  readonly bound: 'HBM' | 'L2' | 'mma' | 'shared' | 'issue';
  readonly rooflineS: number;
  /** rooflineS / predictedS. */
  readonly rooflineShare: number;
}

const ELEMENT_BYTES = 2;

/** Visible in-step keys of every query token of the plan's mask, summed. */
function visibleStepKeys(plan: AttentionPlan): number {
  return stepVisibility(plan.variant.mask).reduce((n, x) => n + x, 0);
}

/**
 * The split count of FA2's wave rule (chooseSplits over SMs x CTAs per SM), which the runtime used
 * before the rule weighed the merge: bench:attention prints its prediction beside the rule's.
 */
export function waveRuleSplits(plan: AttentionPlan, s: AttentionShape, m: Machine, ctasPerSm: number): number {
  const L = plan.variant.mask.prefix === 'all' ? s.prefix : 0;
  return chooseSplits(plan.variant.shape.kvHeads * s.batch * plan.rowTiles, m.sms, Math.ceil(L / plan.tile.tileN), undefined, ctasPerSm);
}

/**
 * The mma.sync rate of the plan's warps. The machine's mmaSyncFlops is that of 16-row warps,
 * whose ldmatrix traffic is 0.5 x4-loads an mma (Q's fragments in registers; every K and V
 * fragment feeds one m16 tile). A 32-row warp's K and V fragments feed two m16 tiles and Q's are
 * read from shared memory at each k16 step: (keys / 8 + 2) / (keys / 2) loads an mma for the
 * keys it scores a tile (0.3125 at 64), so the rate scales by 0.5 / that, at most to the bf16
 * matmul rate (an assumption: the tensor cores are not what limits mma.sync first).
 */
export function mmaSyncRate(plan: AttentionPlan, m: Machine): number {
  if (plan.rowTile.warpRows !== 32) return m.mmaSyncFlops;
  const keys = plan.tile.tileN / plan.rowTile.keyWarps;
  return Math.min(m.matmulFlops, (m.mmaSyncFlops * 0.5) / ((keys / 8 + 2) / (keys / 2)));
}

/**
 * Bytes a launch moves through shared memory (tidarc_attention.cuh attention_tile_kernel), over
 * `ctas` CTAs. Per key tile a CTA visits: the cp.async writes of its K and V tile (2 tileN D
 * 16-bit), then every row warp ldmatrix-reads the whole K and V tile (key warps split the keys,
 * so a tile is read once per row warp), and 32-row warps re-read their Q rows at each k16 step
 * (tileM D per tile). Per CTA once: Q's cp.async write (tileM D), and 16-row warps' one ldmatrix
 * read of their Q rows into registers (every key warp reads its row warp's 16 rows). P stays in
 * registers (the score accumulators are its A fragments); the split-key merge's 16 x D floats a
 * warp and the split merge's partials (read from global) are not counted.
 */
export function attentionSharedTraffic(plan: AttentionPlan, prefixTiles: number, batch: number, ctas: number): number {
  const D = plan.variant.shape.headDim;
  const { rowWarps, warps, warpRows } = plan.rowTile;
  const tileKv = 2 * plan.tile.tileN * D * ELEMENT_BYTES;
  const perTile = tileKv * (1 + rowWarps) + (warpRows === 32 ? plan.tileM * D * ELEMENT_BYTES : 0);
  const tilesVisited = batch * plan.variant.shape.kvHeads * (plan.rowTiles * prefixTiles + plan.stepTileOffset[plan.rowTiles]!);
  const q = plan.tileM * D * ELEMENT_BYTES + (warpRows === 32 ? 0 : warps * 16 * D * ELEMENT_BYTES);
  return tilesVisited * perTile + ctas * q;
}

/**
 * One warp-iteration of the plan's main loop on a sub-partition of `m`'s SMs (sass-mix.ts
 * iterationCycles over the measured counts, sass-counts.ts), HMMA at the plan's mma.sync rate
 * (mmaSyncRate over SMs x clock: the mma term's own assumption, so an iteration the tensor pipe
 * limits costs what the mma term says); undefined where the tile was not measured.
 */
export function issueOf(plan: AttentionPlan, m: Machine): IterationCycles | undefined {
  const measured = loopCounts(plan, m.arch);
  if (!measured) return undefined;
  return iterationCycles(measured.counts, m.arch === 'sm_90' || m.arch === 'sm_90a' ? 'sm_90' : 'sm_80', hmmaCycles(mmaSyncRate(plan, m) / m.sms / m.smClockHz));
}

/**
 * The prediction for one launch at `ctasPerSm` (ptxas's occupancy), with the split-KV count the
 * runtime would choose (or `splits`, e.g. a tuned one).
 */
export function predictAttention(plan: AttentionPlan, s: AttentionShape, m: Machine, ctasPerSm: number, splits?: number): AttentionPrediction {
  const { qHeads: Hq, kvHeads: Hkv, headDim: D } = plan.variant.shape;
  const n = plan.steps;
  const prefixVisible = plan.variant.mask.prefix === 'all';
  const L = prefixVisible ? s.prefix : 0;
  const prefixTiles = Math.ceil(L / plan.tile.tileN);
  const perSplit = plan.variant.shape.kvHeads * s.batch * plan.rowTiles;
  const kernel = splitKernel({ ...plan, tileN: plan.tile.tileN, headDim: D });
  const parts = splits ?? splitsFor({ tuned: undefined, workItems: perSplit, sms: m.sms, prefixTiles, ctasPerSm, kernel });
  const ctas = perSplit * parts;
  const rows = s.batch * n * Hq;
  const kvBytes = 2 * s.batch * Hkv * L * D * ELEMENT_BYTES;
  const essentialBytes = kvBytes + s.batch * n * (2 * Hq + 2 * Hkv) * D * ELEMENT_BYTES + rows * 4;
  const partialBytes = parts > 1 ? parts * rows * (D + 1) * 4 : 0;
  const lsePartialBytes = parts > 1 ? parts * rows * 4 : 0;
  const hbmBytes = essentialBytes + lsePartialBytes;
  const l2Bytes = kvBytes * plan.rowTiles + (parts - 1) * rows * D * ELEMENT_BYTES + partialBytes;
  const usefulFlops = 4 * D * s.batch * (plan.group * Hkv) * (n * L + visibleStepKeys(plan));
  const stepTilesVisited = plan.stepTileOffset[plan.rowTiles]!;
  const executedFlops = 4 * D * s.batch * Hkv * plan.tileM * plan.tile.tileN * (plan.rowTiles * prefixTiles + stepTilesVisited);
  const w = ctas / m.sms;
  const balance = w / Math.ceil(w);
  const hbmS = hbmBytes / m.copyBytesPerS / balance;
  const l2S = l2Bytes / m.l2BytesPerS / balance;
  const mmaS = executedFlops / mmaSyncRate(plan, m) / balance;
  const sharedBytes = attentionSharedTraffic(plan, prefixTiles, s.batch, ctas);
  const sharedS = sharedBytes / m.sharedBytesPerS / balance;
  // Every warp of a CTA runs one iteration a key tile the CTA visits; an SM's 4 sub-partitions issue in parallel.
  const issue = issueOf(plan, m);
  const warpIterations = s.batch * Hkv * (plan.rowTiles * prefixTiles + stepTilesVisited) * plan.rowTile.warps;
  const issueS = issue ? (warpIterations * issue.cycles) / (SUB_PARTITIONS * m.smClockHz * m.sms) / balance : undefined;
  const mergeBalance = Math.min(1, (ctas + parts) / m.sms);
  const mergeS = parts > 1 ? (partialBytes / m.l2BytesPerS + rows * (D * ELEMENT_BYTES + 4) / m.copyBytesPerS) / mergeBalance + SPLIT_RATES.scheduleS : 0;
  const computeS = Math.max(mmaS, sharedS, issueS ?? 0);
  // 'issue' only past the mma term by more than rounding: an iteration the HMMA pipe limits is the mma term.
  const bound = hbmS >= l2S && hbmS >= computeS ? 'HBM' : l2S >= computeS ? 'L2'
    : issueS !== undefined && issueS > Math.max(mmaS, sharedS) * (1 + 1e-9) ? 'issue' : sharedS > mmaS ? 'shared' : 'mma';
  const fillS = Math.ceil(Math.ceil(ctas / m.sms) / Math.max(1, ctasPerSm)) * SPLIT_RATES.fillS;
  const predictedS = Math.max(hbmS, l2S, computeS) + mergeS + fillS;
  const rooflineS = Math.max(essentialBytes / m.copyBytesPerS, usefulFlops / m.matmulFlops);
  return {
    splits: parts, ctas, ctasPerSm, waves: ctas / (m.sms * ctasPerSm), balance, hbmBytes, essentialBytes, l2Bytes, usefulFlops, executedFlops,
    hbmS, l2S, mmaS, sharedBytes, sharedS, issueS, issue, mergeS, fillS, predictedS, bound, rooflineS, rooflineShare: rooflineS / predictedS,
  };
}
