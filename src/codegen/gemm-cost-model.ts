/**
 * Cost model of one generated GEMM launch (src/codegen/gemm-plan.ts), to predict before a GPU
 * measures (../shared/docs/performance-model.md). Pure: plan + machine + occupancy -> figures.
 * In codegen because the planner chooses each mma.sync tile by it (gemm-tile-choice.ts); the
 * device check's bundle (src/bench/gemm-bundle.ts) and `npm run bench:gemm` print its predictions.
 *
 *   HBM bytes   main kernel: weights once (N K 2: one CTA covers all M <= 128 rows; past that
 *               the CTAs of one weight tile run side by side and share it through L2),
 *               activations once (M K 2: 16-bit, as the op before the GEMM stores them), then
 *               the output (M N 4, read too when accumulating; SwiGLU epilogue: M N/2 2, the
 *               down GEMM's 16-bit input; row statistics: M tiles 12, tiles = ceil(N / 128))
 *               or, with split-K S > 1, the partials (S M N 4, counted as HBM although they
 *               may stay in L2); each output tile's last CTA then reads the other S - 1 parts'
 *               partials and writes the output (the split sum, below).
 *               Row statistics add the merge: it reads M tiles 12 and writes M 12, one launch.
 *   folded norm a producer (o, down with the next RMSNorm folded in: fold-design's norm_out)
 *               also writes M N 2 (round16(gamma y)) and M ceil(N / 64) 8 (float64 sums of
 *               squares); a consumer (qkv, gate_up, lm_head) reads its rows' sums, M chunks 8.
 *               Both where the output is written (with split-K: by the split sum).
 *   unfused     what the epilogues replace (predictOp): silu_mul reads gate and up (2 M I 4) and
 *               writes M I 2; the plain lm_head writes M V 4 logits that row_stats reads again.
 *   L2 bytes    activations as every N tile's CTAs read them (nTiles M K 2 over all parts) and
 *               the weight tile once per CTA along M.
 *   FLOPs       2 M N K useful; executed: whole m16 fragments of every CTA (padding rows included).
 *   HBM rate    the copy rate, unless the launch keeps too few bytes in flight to reach it
 *               (in-flight-rate.ts, Little's law): each CTA's cp.async pipeline has stages - 1
 *               weight tiles (blockN x 64 x 2 bytes each) loading at a time, at the arch's
 *               stages (stagesByArch); the activations are not counted (after the first N tile's
 *               CTAs read them they come from L2, at a shorter latency).
 *   shared      bytes through shared memory (Machine.sharedBytesPerS, 128 B a clock an SM): per
 *               CTA and k tile, the cp.async writes of its stage (every row of the tile: rows
 *               past M are zero-filled) and the ldmatrix.x4 reads (512 bytes each): per warp and
 *               k16 step one per two n8 fragments of its columns (B) and one per m16 fragment
 *               it computes (A; fragments wholly past M are skipped, warp-uniform). A narrow warp
 *               tile reloads A for fewer columns: 48 x 16 moves 0.109 bytes a FLOP, 48 x 32 0.070.
 *   issue       the SASS a warp issues (gemm-sass-counts.ts: one iteration of the k-tile loop,
 *               measured by cuobjdump for every tile the planner can offer): every warp of every
 *               CTA runs one iteration a k tile (mBlocks x nTiles x kTiles x warps over all
 *               split parts), one a sub-partition (4 an SM, one instruction issued a clock each)
 *               taking max(its instructions, each pipe's instructions x 32 / its lanes, HMMA at
 *               the mma term's rate) clocks (sass-mix.ts iterationCycles) at Machine.smClockHz,
 *               spread over the SMs like the mma term (the wave term then charges the busiest
 *               SM's). Where the tensor pipe limits the iteration the term equals the mma term
 *               (every fragment computed); above it the cp.async addresses, the ldmatrix and the
 *               loop control bound the tile ('issue'). A warp whose m16 fragments lie wholly past
 *               M skips them (warp-uniform, tidarc_gemm.cuh: their A ldmatrix, its address and
 *               their HMMA); gemmWarpCycles takes out only their HMMA (the table has no per-fragment
 *               counts), so a partial M block's issue slots are over-counted: a skipped fragment's
 *               k16 block is 12 instructions, 4 of them HMMA, on 96 x 128 in 2 x 4 warps (sm_90,
 *               split-K 2). A tile not measured has no term (issueS undefined; opts.issue false drops
 *               it, as gemm-tile-choice.ts does for all of an M's candidates when one lacks it).
 *   time        max(main HBM / HBM rate, L2 / L2 rate, max(executed / mma.sync rate, shared /
 *               shared rate, issue) + wave term) + split-K sum. Host launch cost is not included (CUDA
 *               graphs remove it; performance-model.md).
 *   split sum   in the launch (tidarc_gemm_abi.h; the attention cost model's merge term): the
 *               last CTAs, one per output tile (ceil(M / blockM) x nTiles of them), read the
 *               (S - 1) M N 4 bytes of the other parts from L2 at the per-SM L2 rate (l2 / SMs)
 *               and write the output at the copy rate, spread over min(1, tiles / SMs) of the
 *               SMs; no launch gap. `splitSum: 'kernel'` predicts the old separate reduce
 *               kernel instead (all partials and the output at the copy rate + one launch gap),
 *               for bench:gemm's before / after.
 *   wave term   the mma (or shared-memory) time lost to SMs left idle by the last wave: t_mma (ceil(w) - w) / w with
 *               w = CTAs / SMs (the CTAs an SM holds at once share its tensor cores, so an SM's
 *               time is its CTA count). `waves` reports CTAs / (SMs x CTAs an SM): residency at
 *               the occupancy ptxas allows (registers, shared memory).
 */
import type { GemmPlan } from './gemm-plan.js';
import type { Machine } from './machine.js';
import { occupancy } from './occupancy.js';
import { type FillRate, fillRate, pipelineBytesInFlight } from './in-flight-rate.js';
import { gemmHmmaCycles, gemmLoopCounts } from './gemm-sass-counts.js';
import { type IterationCycles, iterationCycles, SUB_PARTITIONS } from './sass-mix.js';

/** What a prediction of one GEMM launch gives on either family: mma.sync (GemmPrediction) or sm_90a (gemm-sm90a-cost-model.ts). */
export interface GemmLaunchPrediction {
  readonly ctas: number;
  readonly ctasPerSm: number;
  readonly hbmBytes: number;
  readonly l2Bytes: number;
  readonly usefulFlops: number;
  readonly executedFlops: number;
  /** The main loop's HBM time at the HBM rate (the split sum's is in reduceS). */
  readonly hbmS: number;
  /** What the launch can pull from HBM: the copy rate, or less with too few bytes in flight. */
  readonly hbm: FillRate;
  readonly l2S: number;
  /** The compute time (tensor cores; on mma.sync shared memory where it binds) lost to SMs left idle by the last wave. */
  readonly waveS: number;
  /** The split-K sum (0 at split-K 1): in the launch's last CTAs, or the old reduce kernel (splitSum 'kernel'). */
  readonly reduceS: number;
  readonly predictedS: number;
  readonly bound: 'HBM' | 'L2' | 'mma.sync' | 'shared' | 'issue' | 'wgmma';
  /** Weights + activations + output bytes / predicted time, as a share of the copy rate. */
  readonly copyShare: number;
  /** Useful FLOP/s as a share of the measured bf16 matmul rate. */
  readonly matmulShare: number;
}

export interface GemmPrediction extends GemmLaunchPrediction {
  readonly waves: number;
  readonly mmaS: number;
  /** Bytes through shared memory: cp.async writes and ldmatrix reads. */
  readonly sharedBytes: number;
  readonly sharedS: number;
  /**
   * Every warp-iteration of the k-tile loop at the issue model's cycles, over the SMs (as mmaS),
   * or undefined where the tile has no measured SASS counts (gemm-sass-counts.ts) or opts.issue
   * is false.
   */
  readonly issueS: number | undefined;
  /** One warp-iteration's cycles on a sub-partition (issue slots and each pipe), where priced. */
  readonly issue: IterationCycles | undefined;
  /** The row statistics' merge kernel (0 without that epilogue). */
  readonly mergeS: number;
  readonly bound: 'HBM' | 'L2' | 'mma.sync' | 'shared' | 'issue';
}

/**
 * The cycles of one k tile summed over the warps of a column of CTAs (every M block of one N
 * tile) over `rows` rows: each warp at its measured iteration (gemmLoopCounts) with the HMMA of
 * its m16 fragments wholly past `rows` taken out of the HMMA pipe and the issue slots (the
 * kernel skips those fragments, warp-uniform, with their A ldmatrix and its address arithmetic,
 * which stay counted here: the table has no per-fragment counts), so a tensor-limited iteration
 * costs what the mma term's executed FLOPs say. 0 where not measured.
 */
export function gemmWarpCycles(p: GemmPlan, rows: number, m: Machine): number {
  const counts = gemmLoopCounts(p, m.arch);
  if (!counts) return 0;
  const arch = m.arch === 'sm_90' || m.arch === 'sm_90a' ? 'sm_90' : 'sm_80';
  const warpM = p.blockM / p.warpsM, fragments = warpM / 16, warpsN = p.threads / 32 / p.warpsM;
  const each = gemmHmmaCycles(m);
  const byComputed = new Map<number, number>();
  let total = 0;
  for (let b = 0; b * p.blockM < rows; b++) {
    for (let wr = 0; wr < p.warpsM; wr++) {
      let computed = 0;
      for (let i = 0; i < fragments; i++) if (b * p.blockM + wr * warpM + i * 16 < rows) computed++;
      if (!byComputed.has(computed)) byComputed.set(computed, iterationCycles({ ...counts, hmma: (counts.hmma * computed) / fragments }, arch, each).cycles);
      total += warpsN * byComputed.get(computed)!;
    }
  }
  return total;
}

/**
 * One k-tile iteration of `p`'s main loop on a sub-partition of `m`'s SMs (sass-mix.ts
 * iterationCycles over gemm-sass-counts.ts's measured counts at the stages m.arch runs), HMMA at
 * the mma term's rate; undefined where the tile was not measured.
 */
export function gemmIssueOf(p: GemmPlan, m: Machine): IterationCycles | undefined {
  const counts = gemmLoopCounts(p, m.arch);
  if (!counts) return undefined;
  return iterationCycles(counts, m.arch === 'sm_90' || m.arch === 'sm_90a' ? 'sm_90' : 'sm_80', gemmHmmaCycles(m));
}

/** copyShare and matmulShare of a launch that moves `bytes` (weights + activations + output) and does `usefulFlops` in `predictedS`. */
export function gemmShares(bytes: number, usefulFlops: number, predictedS: number, machine: Machine): Pick<GemmLaunchPrediction, 'copyShare' | 'matmulShare'> {
  return { copyShare: bytes / predictedS / machine.copyBytesPerS, matmulShare: usefulFlops / predictedS / machine.matmulFlops };
}

/** Rows a CTA computes: whole m16 fragments of its rows (fragments wholly past M are skipped). */
function executedRows(p: GemmPlan, rows: number): number {
  let total = 0;
  for (let b = 0; b * p.blockM < rows; b++) total += 16 * Math.ceil(Math.min(p.blockM, rows - b * p.blockM) / 16);
  return total;
}

/** Bytes of one ldmatrix.x4: 32 lanes x 16 bytes. */
const LDMATRIX_X4_BYTES = 512;

/**
 * Shared-memory bytes of a launch over `rows` rows (tidarc_gemm.cuh's main loop): per CTA and
 * k tile its stage's cp.async writes, then per warp and k16 step an ldmatrix.x4 per two n8
 * fragments (B) and per m16 fragment it computes (A).
 */
export function gemmSharedBytes(p: GemmPlan, rows: number): number {
  const warpM = p.blockM / p.warpsM, warpN = p.blockN / p.warpsN;
  const k16PerTile = p.reduction.blockK / 16;
  const bLoads = p.warpsM * p.warpsN * (warpN / 8 / 2);
  let perNTile = 0;
  for (let b = 0; b * p.blockM < rows; b++) {
    const inBlock = Math.min(p.blockM, rows - b * p.blockM);
    let aLoads = 0;
    for (let wr = 0; wr < p.warpsM; wr++) for (let i = 0; i * 16 < warpM; i++) if (wr * warpM + i * 16 < inBlock) aLoads += p.warpsN;
    perNTile += p.reduction.kTiles * (p.stageBytes + k16PerTile * LDMATRIX_X4_BYTES * (aLoads + bLoads));
  }
  return p.nTiles * perNTile;
}

/** The fused epilogues (tidarc_gemm_abi.h): what the GEMM writes instead of its [rows, N] output. */
export type GemmEpilogue = 'none' | 'swiglu' | 'rowStats';

/** Bytes of one activation element the GEMMs read, and of the SwiGLU epilogue's output: the model's 16-bit dtype. */
export const ACTIVATION_BYTES = 2;

/** Bytes a launch over `rows` rows writes as its output (read too when accumulating). */
function outputBytes(n: number, rows: number, epilogue: GemmEpilogue): number {
  if (epilogue === 'swiglu') return rows * (n / 2) * ACTIVATION_BYTES;
  if (epilogue === 'rowStats') return rows * Math.ceil(n / 128) * 12;
  return rows * n * 4;
}

/** Columns one float64 sum of squares of a folded norm's producer covers (fold-design.md: norm_sumsq). */
export const NORM_SUMSQ_COLUMNS = 64;

/** A folded RMSNorm's epilogue bytes (fold-design.md): none, the producer's writes, or the consumer's reads of `chunks` sums a row. */
export type GemmNormFold = { readonly normOut: true } | { readonly rowScaleChunks: number };

/** Bytes a launch over `rows` rows moves for a folded norm: producer M N 2 + M ceil(N / 64) 8 written, consumer M chunks 8 read. */
export function normFoldBytes(n: number, rows: number, fold: GemmNormFold | undefined): number {
  if (!fold) return 0;
  if ('normOut' in fold) return rows * n * ACTIVATION_BYTES + rows * Math.ceil(n / NORM_SUMSQ_COLUMNS) * 8;
  return rows * fold.rowScaleChunks * 8;
}

/** Where the split-K parts are summed: in the GEMM launch (today's kernels) or by a second kernel (before GEMM ABI 5). */
export type GemmSplitSum = 'launch' | 'kernel';

/**
 * The split-K sum's time: in the launch, the last CTAs' read of the other parts' partials at
 * the per-SM L2 rate and their output at the copy rate, over the SMs they occupy (the attention
 * cost model's merge term); as a kernel, all partials and the output at the copy rate + a gap.
 */
export function splitSumS(splitK: number, rows: number, n: number, outputBytes: number, lastCtas: number, machine: Machine, how: GemmSplitSum): number {
  if (splitK <= 1) return 0;
  const partials = splitK * rows * n * 4;
  if (how === 'kernel') return (partials + outputBytes) / machine.copyBytesPerS + machine.launchGapS;
  const balance = Math.min(1, lastCtas / machine.sms);
  return (((splitK - 1) * rows * n * 4) / machine.l2BytesPerS + outputBytes / machine.copyBytesPerS) / balance;
}

export function predictGemm(p: GemmPlan, rows: number, machine: Machine, registers: number, opts: { accumulate?: boolean; epilogue?: GemmEpilogue; splitSum?: GemmSplitSum; issue?: boolean; fold?: GemmNormFold } = {}): GemmPrediction {
  const epilogue = opts.epilogue ?? 'none';
  const { n, k } = p.shape;
  const s = p.reduction.splitK;
  const mBlocks = Math.ceil(rows / p.blockM);
  const ctas = mBlocks * p.nTiles * s;
  const perSm = occupancy(machine.arch, { registers, sharedBytes: p.sharedBytes, threads: p.threads }).ctasPerSm;
  const slots = machine.sms * Math.max(1, perSm);
  const waves = ctas / slots;
  const weights = n * k * 2, acts = rows * k * ACTIVATION_BYTES, output = outputBytes(n, rows, epilogue) * (opts.accumulate ? 2 : 1) + normFoldBytes(n, rows, opts.fold);
  const partials = s * rows * n * 4;
  const mainBytes = weights + acts + (s > 1 ? partials : output);
  const reduceBytes = s > 1 ? (opts.splitSum === 'kernel' ? partials : 0) + output : 0;  // in the launch the other parts' partials come from L2
  const mergeBytes = epilogue === 'rowStats' ? rows * Math.ceil(n / 128) * 12 + rows * 12 : 0;
  const hbmBytes = mainBytes + reduceBytes + mergeBytes;
  const l2Bytes = p.nTiles * acts + mBlocks * weights;
  const usefulFlops = 2 * rows * n * k;
  const executedFlops = 2 * executedRows(p, rows) * p.nTiles * p.blockN * p.reduction.kTiles * p.reduction.blockK;
  const stages = p.stagesByArch[machine.arch] ?? p.stages;
  const hbm = fillRate(machine, { bytesPerCta: pipelineBytesInFlight(stages, p.blockN * p.reduction.blockK * 2), ctas, ctasPerSm: perSm });
  const hbmS = mainBytes / hbm.bytesPerS;
  const l2S = l2Bytes / machine.l2BytesPerS;
  const mmaS = executedFlops / machine.mmaSyncFlops;
  const sharedBytes = gemmSharedBytes(p, rows);
  const sharedS = sharedBytes / machine.sharedBytesPerS;
  // Every warp of every CTA runs one iteration a k tile of its part; an SM's 4 sub-partitions issue in parallel.
  const issue = opts.issue === false ? undefined : gemmIssueOf(p, machine);
  const issueS = issue ? (p.nTiles * p.reduction.kTiles * gemmWarpCycles(p, rows, machine)) / (SUB_PARTITIONS * machine.smClockHz * machine.sms) : undefined;
  const computeS = Math.max(mmaS, sharedS, issueS ?? 0);
  const smWaves = ctas / machine.sms;
  const waveS = computeS * (Math.ceil(smWaves) - smWaves) / smWaves;
  const reduceS = splitSumS(s, rows, n, output, mBlocks * p.nTiles, machine, opts.splitSum ?? 'launch');
  const mergeS = mergeBytes > 0 ? mergeBytes / machine.copyBytesPerS + machine.launchGapS : 0;
  const main = Math.max(hbmS, l2S, computeS + waveS);
  // 'issue' only past mma and shared by more than rounding: an iteration the HMMA pipe limits is the mma term.
  const bound = main === hbmS ? 'HBM' : main === l2S ? 'L2' : issueS !== undefined && issueS > Math.max(mmaS, sharedS) * (1 + 1e-9) ? 'issue' : sharedS > mmaS ? 'shared' : 'mma.sync';
  const predictedS = main + reduceS + mergeS;
  return {
    ctas, ctasPerSm: perSm, waves, hbmBytes, l2Bytes, usefulFlops, executedFlops, hbmS, hbm, l2S, mmaS, sharedBytes, sharedS, issueS, issue, waveS, reduceS, mergeS, predictedS, bound,
    ...gemmShares(weights + acts + output, usefulFlops, predictedS, machine),
  };
}

/** An elementwise or row operator of tidarc_ops.cu that the epilogues remove: its bytes at the copy rate plus one launch gap. */
export function predictOp(bytes: number, machine: Machine): { readonly bytes: number; readonly predictedS: number } {
  return { bytes, predictedS: bytes / machine.copyBytesPerS + machine.launchGapS };
}
