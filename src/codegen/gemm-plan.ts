/**
 * GEMM plan for the linear layers: out[M, N] = x[M, K] * w[N, K]^T on tensor cores.
 *
 * Two decisions, made in this order so that the first cannot see the M of one kernel:
 *   planReduction(shape, target)     -> k tiling and split-K: the order in which an output
 *                                       element is summed. Depends on (N, K, dtype, target)
 *                                       and the model's step row counts, all of them at once.
 *   planGemm(shape, m, target, red)  -> the tile of one kernel (rows per CTA, warp layout,
 *                                       pipeline stages). Takes the reduction as given.
 * Every kernel of one weight shape shares one reduction, so a row's result is bitwise the
 * same whatever M (greedy TiDAR == greedy AR rests on it; see tidarc_gemm_abi.h).
 */
import { TidarcError } from '../errors.js';
import { chooseSplits } from './splits.js';
import { GEMM_SPLIT_STATIC_SHARED_BYTES, gemmRegisters } from './gemm-registers.js';
import { occupancy } from './occupancy.js';
import { type GemmTileScore, chooseGemmTile, leastRegretSplit, splitMachine, tileTimeOn } from './gemm-tile-choice.js';
import { DEFAULT_STEP_ROWS } from './step-rows.js';
import type { DType } from '../ir/model.js';
import type { ArchName } from './arch.js';

export interface GemmShape {
  /** Output features (weight rows). */
  readonly n: number;
  /** Input features (weight columns). */
  readonly k: number;
  readonly dtype: DType;
}

/** What a plan needs to know about the GPUs it is for (several arches: the tightest of each). */
export interface GemmTarget {
  readonly arches: readonly ArchName[];
  /** SMs the split-K rule fills (the largest part of the targets: more parts never hurt correctness). */
  readonly sms: number;
  readonly maxSharedPerBlock: number;
}

/**
 * The GPUs behind each arch name as the plan sees them: data, one record per arch. What an SM
 * holds (registers, shared memory, threads) is occupancy.ts's SM_LIMITS, the one residency rule.
 */
export const GEMM_ARCH_DATA: Readonly<Record<ArchName, { readonly sms: number; readonly maxSharedPerBlock: number; readonly example: string }>> = {
  sm_80: { sms: 108, maxSharedPerBlock: 166_912, example: 'A100' },
  sm_86: { sms: 84, maxSharedPerBlock: 101_376, example: 'A40 / RTX 3090' },
  sm_89: { sms: 142, maxSharedPerBlock: 101_376, example: 'L40S' },
  sm_90: { sms: 132, maxSharedPerBlock: 232_448, example: 'H100 SXM / H200' },
  sm_90a: { sms: 132, maxSharedPerBlock: 232_448, example: 'H100 SXM / H200' },
};

export function gemmTarget(arches: readonly ArchName[]): GemmTarget {
  if (arches.length === 0) throw new TidarcError('invalid-argument', 'a GEMM plan needs at least one GPU architecture', { field: '--arch', allowed: Object.keys(GEMM_ARCH_DATA).join(', ') });
  const data = arches.map((a) => GEMM_ARCH_DATA[a]);
  return {
    arches: [...arches],
    sms: Math.max(...data.map((d) => d.sms)),
    maxSharedPerBlock: Math.min(...data.map((d) => d.maxSharedPerBlock)),
  };
}

/** k per pipeline stage: one 128-byte shared row of 16-bit elements (the swizzle needs exactly this). */
export const GEMM_BLOCK_K = 64;
/** Weight rows (output columns) per CTA: the wide tile, and the row statistics' tile (lm_head keeps it at every M). */
export const GEMM_BLOCK_N = 128;
/**
 * The narrow tile the heuristic plans where no row statistics need 128 columns: twice the output
 * tiles, so twice the CTAs run the split-K sum (o at M = 72: 64 last CTAs instead of 32) and the
 * last wave of an mma-bound M is half as coarse. The width never changes an element's sum (an
 * mma computes each output element alike; k order and split-K come from the reduction).
 */
export const GEMM_NARROW_BLOCK_N = 64;
export const GEMM_THREADS = 256;
/**
 * Warps a CTA may have: 8 (GEMM_THREADS, absent in a tile) or 4. Four warps in 2 x 2 over 64
 * columns give each warp a 48 x 32 tile at 96 rows where eight (2 x 4) give 48 x 16: the
 * activations are re-read from shared memory by 2 warp columns instead of 4 (heuristicScore).
 */
export const GEMM_WARPS: readonly number[] = [8, 4];
/** Threads of the row-statistics merge kernel (tidarc_gemm.cuh kGemmReduceThreads). */
export const GEMM_REDUCE_THREADS = 256;
/** Token rows one CTA covers at most: up to here each weight byte is read once per step. */
export const GEMM_MAX_BLOCK_M = 128;
/** Split-K never leaves a part with fewer k tiles than this (the pipeline needs room to fill). */
export const GEMM_MIN_K_TILES_PER_SPLIT = 8;
/** At most this many split-K parts: their float32 partials cost 8 bytes per part, row and column. */
export const GEMM_MAX_SPLIT_K = 4;
export const GEMM_MIN_STAGES = 3;
export const GEMM_MAX_STAGES = 6;
const ELEMENT_BYTES = 2;

/** What the heuristic must know of a unit beyond its shape: row statistics (lm_head) need 128-column tiles at every M. */
export interface GemmPlanOptions {
  readonly rowStats?: boolean;
}

/** What the split-K choice needs besides: the step row counts the shape runs at. */
export interface GemmReductionOptions extends GemmPlanOptions {
  /**
   * The model's step row counts (step-rows.ts stepRows(spec.draftLengths)), whatever subset a
   * compile builds: the split is one per shape and chosen over all of them. DEFAULT_STEP_ROWS
   * when absent.
   */
  readonly rows?: readonly number[];
}

/**
 * The output-tile width the heuristic plans for a unit on a target, at every M: 64 unless the
 * unit has row statistics. A compile that builds sm_90a too: its wgmma kernels of the same
 * reduction take 64 weight rows (one consumer warpgroup) at the token tiles the split rule is
 * for (gemm-sm90a.ts sm90aBlockW), so both families count the same tiles.
 */
export function heuristicBlockN(_target: GemmTarget, opts: GemmPlanOptions = {}): number {
  return opts.rowStats ? GEMM_BLOCK_N : GEMM_NARROW_BLOCK_N;
}

export interface GemmReduction {
  readonly blockK: number;
  readonly kTiles: number;
  readonly splitK: number;
  readonly kTilesPerSplit: number;
}

export interface GemmPlan {
  readonly shape: GemmShape;
  /** Token rows the kernel is planned for (any row count runs: ceil(rows / blockM) CTAs along M). */
  readonly m: number;
  readonly reduction: GemmReduction;
  readonly blockM: number;
  readonly blockN: number;
  readonly warpsM: number;
  readonly warpsN: number;
  readonly threads: number;
  /** Pipeline stages every target arch can run (the tightest shared memory): what a build without a per-arch choice compiles (the emulator, host passes). */
  readonly stages: number;
  /**
   * Per target arch, the stages its own shared memory suggests (chooseStages for that arch
   * alone: deeper, or fewer where that keeps two CTAs an SM): nvcc compiles each
   * arch's pass of the unit with its own (Config's kStages, chosen by __CUDA_ARCH__), and the
   * launch asks for that arch's sharedBytesByArch. Stages never change the reduction order.
   */
  readonly stagesByArch: Readonly<Partial<Record<ArchName, number>>>;
  /** CTAs along M at m rows. */
  readonly mBlocks: number;
  readonly nTiles: number;
  readonly stageBytes: number;
  readonly sharedBytes: number;
  readonly sharedBytesByArch: Readonly<Partial<Record<ArchName, number>>>;
}

function unsupported(message: string, field: string, value: unknown, allowed: string): never {
  throw new TidarcError('unsupported', message, { field, value, allowed });
}

export function checkGemmShape(shape: GemmShape): GemmShape {
  if (shape.dtype !== 'bf16' && shape.dtype !== 'fp16') unsupported('GEMM weights must be 16-bit', 'dtype', shape.dtype, 'bf16, fp16');
  if (!Number.isInteger(shape.n) || shape.n < 1) unsupported('GEMM output features must be a positive integer', 'n', shape.n, 'an integer >= 1');
  // cp.async moves 16-byte chunks: every weight and activation row must start on one.
  if (!Number.isInteger(shape.k) || shape.k < 8 || shape.k % 8 !== 0) unsupported('GEMM input features must be a multiple of 8 (16-byte rows)', 'k', shape.k, 'a multiple of 8');
  return shape;
}

/**
 * The reduction order of every output element of a weight shape: k tiles of GEMM_BLOCK_K,
 * split into `splitK` parts of `kTilesPerSplit` tiles. `splitK` overrides the choice (tests,
 * tuning records). The default is one count for every M (batch invariance), chosen by the GEMM
 * cost model over the model's step rows (costModelSplits: least summed relative regret), among
 * the counts that leave no part empty, none under GEMM_MIN_K_TILES_PER_SPLIT tiles and at most
 * GEMM_MAX_SPLIT_K. Qwen3-8B on sm_90 over M = 1, 20, 64, 72, 272: qkv 4 (2 by the old rule
 * that filled 80% of the SMs with CTAs: 78% of copy at M = 72, 4 gives 83%), o 2, gate_up 1,
 * down 2; bench:gemm prints every count's predicted time. Row statistics (lm_head: 128-column
 * tiles) keep FA3's wave rule (chooseSplits): their launches run other row counts than the step
 * (the greedy pass adds every accepted count's draft rows) and 1187 tiles fill any GPU unsplit.
 */
export function planReduction(shape: GemmShape, target: GemmTarget, splitK?: number, opts: GemmReductionOptions = {}): GemmReduction {
  checkGemmShape(shape);
  const kTiles = Math.ceil(shape.k / GEMM_BLOCK_K);
  if (splitK !== undefined && (!Number.isInteger(splitK) || splitK < 1 || splitK > kTiles)) {
    unsupported('split-K must be a whole number of k tiles', 'splitK', splitK, `an integer from 1 to ${kTiles} (k tiles of ${GEMM_BLOCK_K} in K = ${shape.k})`);
  }
  const blockN = heuristicBlockN(target, opts);
  const nTiles = Math.ceil(shape.n / blockN);
  const wanted = splitK ?? (blockN === GEMM_NARROW_BLOCK_N ? costModelSplits(shape, target, opts.rows ?? DEFAULT_STEP_ROWS, opts)
    : chooseSplits(nTiles, target.sms, kTiles, Math.min(GEMM_MAX_SPLIT_K, Math.floor(kTiles / GEMM_MIN_K_TILES_PER_SPLIT))));
  const r = splitReduction(kTiles, wanted);
  if (splitK !== undefined && r.splitK !== splitK) {
    const ok = Array.from({ length: kTiles }, (_, i) => i + 1).filter((s) => Math.ceil(kTiles / Math.ceil(kTiles / s)) === s);
    unsupported(`split-K ${splitK} leaves an empty part of ${kTiles} k tiles`, 'splitK', splitK, ok.join(', '));
  }
  return r;
}

/** `wanted` parts of ceil(kTiles / wanted) k tiles: fewer where the last would be empty. */
function splitReduction(kTiles: number, wanted: number): GemmReduction {
  const kTilesPerSplit = Math.ceil(kTiles / wanted);
  return { blockK: GEMM_BLOCK_K, kTiles, splitK: Math.ceil(kTiles / kTilesPerSplit), kTilesPerSplit };
}

/**
 * The split-K count the GEMM cost model prefers over the step rows (leastRegretSplit: least sum
 * over M of pred(M, s) / min over s' of pred(M, s'), ties to fewer parts), each pred the time of
 * the tile the heuristic gives that M at that split (heuristicScore). Relative regret, not
 * summed time: M = 272 takes 3x the time of M = 72, and a sum of times would let its mma-bound
 * waves choose for the memory-bound decode steps (Qwen3-8B down: 4 parts by summed time, 174.5
 * against 176.4 us, though 3-4% slower than 2 at M = 64 and 72 for 5% faster at 272; 2 by
 * regret). Every row count weighs alike: how often a step kind runs is the decoder's, not the
 * compile's. Priced on the H200's rates over the target's SMs (splitMachine: the largest of its
 * arches, the count the old fill rule used) for the plain output, as the tile choice: the
 * residual read and SwiGLU's half-width store are left out (priced with them, Qwen3-8B's
 * regrets pick the same counts). Counts under which some M has no tile are not
 * candidates; none left: the fewest parts (planGemm then names the M that does not fit).
 */
function costModelSplits(shape: GemmShape, target: GemmTarget, rows: readonly number[], opts: GemmPlanOptions): number {
  const candidates = gemmSplitCandidates(shape, target, rows, opts);
  return candidates.length > 0 ? leastRegretSplit(new Map(candidates.map((c) => [c.reduction.splitK, c.times]))) : 1;
}

/** One split-K count a weight shape may take, with the heuristic's tile at each step row count and its time (costModelSplits). */
export interface GemmSplitCandidate {
  readonly reduction: GemmReduction;
  /** One per row count, in the rows' order. */
  readonly plans: readonly GemmPlan[];
  readonly times: readonly number[];
}

/**
 * Every count costModelSplits weighs (no part empty or under GEMM_MIN_K_TILES_PER_SPLIT tiles,
 * at most GEMM_MAX_SPLIT_K, a tile for every row count), fewest parts first, each with its
 * tiles and their predicted times on splitMachine.
 */
export function gemmSplitCandidates(shape: GemmShape, target: GemmTarget, rows: readonly number[], opts: GemmPlanOptions = {}): GemmSplitCandidate[] {
  if (rows.length === 0 || !rows.every((m) => Number.isInteger(m) && m >= 1)) unsupported('the split-K choice needs the step row counts', 'rows', rows.join(', '), 'integers >= 1, at least one');
  const kTiles = Math.ceil(checkGemmShape(shape).k / GEMM_BLOCK_K);
  const limit = Math.max(1, Math.min(GEMM_MAX_SPLIT_K, Math.floor(kTiles / GEMM_MIN_K_TILES_PER_SPLIT)));
  const eligible = Array.from({ length: limit }, (_, i) => i + 1).filter((s) => Math.ceil(kTiles / Math.ceil(kTiles / s)) === s);
  const machine = splitMachine(target.sms);
  const out: GemmSplitCandidate[] = [];
  for (const s of eligible) {
    const reduction = splitReduction(kTiles, s);
    const scores = rows.map((m) => heuristicScore(shape, m, target, reduction, opts));
    if (scores.every((sc) => sc !== undefined)) out.push({ reduction, plans: scores.map((sc) => sc!.plan), times: scores.map((sc, i) => tileTimeOn(sc!, rows[i]!, machine)) });
  }
  return out;
}

/**
 * The heuristic's tile for m rows: of the layouts tidarc_gemm.cuh runs, the one the GEMM cost
 * model (gemm-cost-model.ts, via gemm-tile-choice.ts) predicts fastest on the H200. Why a choice
 * and not one layout: per k16 step a CTA moves (warpsN x M + warpsM x N) x 32 bytes of
 * ldmatrix reads plus its stage's cp.async writes through shared memory for 2 M N 16 FLOPs,
 * so the warp decomposition sets the bytes a FLOP: about (1 + warpsM) / M + (1 + warpsN) / N
 * (the 1s: the stage's writes). 48 x 16 warp tiles (64 columns, 2 x 4 warps) move 0.119 bytes a FLOP at
 * M = 72 (80 rows computed), above the 0.075 where the 29.7 TB/s of shared memory falls behind
 * the 395 TFLOP/s of mma.sync: shared-bound from M = 20 (qkv). What the kernel runs:
 *   - blockN 64 or 128 (128 always for row statistics; the width never changes the sum);
 *   - 8 or 4 warps (GEMM_WARPS), warpsM x warpsN of them, a warp tile of whole m16 x (2 x n8)
 *     fragments: 64 columns in 8 warps are 2 x 4 (48 x 16 at 96 rows), 4 x 2 (32 x 32 at 128
 *     rows) or 8 x 1; in 4 warps 1 x 4 (80 x 16), 2 x 2 (48 x 32) or 4 x 1; 128 columns in
 *     8 warps 1 x 8 .. 8 x 1, in 4 warps 1 x 4 (80 x 32), 2 x 2 (48 x 64), 4 x 1;
 *   - rows: all m up to GEMM_MAX_BLOCK_M in one CTA (rounded to 16 x warpsM: fragments past m
 *     are skipped), past it balanced CTAs that pad by less than a fragment each (gemmTilePadding,
 *     the search's rule);
 *   - stages: chooseStages (two CTAs an SM if registers and shared memory allow);
 *   - registers: ptxas's figure per tile (gemm-registers.ts), a tile ptxas spills is not one.
 * Bytes per FLOP at M = 72 (80 rows): 64 x 2 x 4 warps 0.119, 64 x 4 x 2 (128 rows) 0.119,
 * 128 x 2 x 4 0.078, 64 in 4 warps 2 x 2 0.088, 128 in 4 warps 2 x 2 0.063. Fewer warps a CTA
 * leave fewer warps an SM to hide latency with, which the cost model does not weigh: a 4-warp
 * tile is a candidate only where two of its CTAs fit an SM of every target arch at its stages,
 * and the device check's search times the choice against the best 8-warp tile (gemm-bundle.ts). Warp layout and warps never change
 * the k order of an output element (each element is one thread's accumulator over the same
 * k16 steps in the same order), so every M of a shape stays bitwise the same.
 */
function heuristicScore(shape: GemmShape, m: number, target: GemmTarget, reduction: GemmReduction, opts: GemmPlanOptions): GemmTileScore | undefined {
  const plans: GemmPlan[] = [];
  for (const blockN of opts.rowStats ? [GEMM_BLOCK_N] : [GEMM_NARROW_BLOCK_N, GEMM_BLOCK_N]) {
    for (const warps of GEMM_WARPS) {
      for (let warpsM = 1; warpsM <= warps; warpsM *= 2) {
        const unit = 16 * warpsM;
        const mBlocks = Math.ceil(m / GEMM_MAX_BLOCK_M);
        const blockM = unit * Math.ceil(Math.ceil(m / mBlocks) / unit);
        const t = { blockM, warpsM, blockN, stages: GEMM_MIN_STAGES, ...(warps !== GEMM_THREADS / 32 ? { warps } : {}) };
        if (gemmTileProblem(t, target) !== null || gemmTilePadding(t, m) !== null) continue;
        if (gemmRegisters({ ...t, threads: warps * 32 }, reduction.splitK).spills) continue;
        const p = tilePlan(shape, m, target, reduction, t, true);
        const kernel = { ...t, splitK: reduction.splitK, threads: warps * 32 };
        if (p && (warps === GEMM_THREADS / 32 || target.arches.every((a) => gemmCtasPerSm(kernel, p.sharedBytesByArch[a]!, [a]) >= 2))) plans.push(p);
      }
    }
  }
  return plans.length > 0 ? chooseGemmTile(plans, m) : undefined;
}

/**
 * Why a tile should not run m rows (null when it may): padding. At m <= GEMM_MAX_BLOCK_M a
 * blockM above m rounded to the tile's own row unit (16 a warp row: a layout of 2 warp rows
 * covers 72 rows with 96) computes only padding (fragments wholly past m are skipped, but their
 * rows still take cp.async's zero fill), and so does a warp row wholly past m unless the width
 * needs that many warp rows (64 columns in 8 warps: at least 2, a warp's columns being 2 n8
 * fragments); past it, CTAs that pad m by more than one m16 fragment each.
 */
export function gemmTilePadding(t: GemmTile, m: number): string | null {
  const rows = 16 * t.warpsM;
  const fewestWarpRows = Math.max(1, ((t.warps ?? GEMM_THREADS / 32) * 16) / (t.blockN ?? GEMM_BLOCK_N));
  if (m <= GEMM_MAX_BLOCK_M && t.blockM > rows * Math.ceil(m / rows)) return `${t.blockM} rows for M = ${m}: only padding past ${rows * Math.ceil(m / rows)}`;
  if (m <= GEMM_MAX_BLOCK_M && t.warpsM > fewestWarpRows && (t.warpsM - 1) * (t.blockM / t.warpsM) >= m) return `${t.warpsM} warp rows of ${t.blockM / t.warpsM} for M = ${m}: the last computes only padding`;
  if (m > GEMM_MAX_BLOCK_M && Math.ceil(m / t.blockM) * t.blockM - m >= 16 * Math.ceil(m / t.blockM)) return `${Math.ceil(m / t.blockM)} CTAs of ${t.blockM} rows pad M = ${m} by more than a fragment each`;
  return null;
}

/** What decides how many CTAs of a kernel an SM holds, besides its stages. */
export interface GemmKernelShape {
  readonly blockM: number;
  readonly warpsM: number;
  readonly blockN: number;
  readonly splitK: number;
  /** GEMM_THREADS when absent (a 4-warp tile: 128). */
  readonly threads?: number;
}

/**
 * CTAs of a kernel one SM of every arch of `arches` holds at `sharedBytes` of dynamic shared
 * memory: occupancy.ts (the rule every cost model uses) over ptxas's registers for the tile
 * (gemm-registers.ts) and its static shared memory (the split-K ticket).
 */
export function gemmCtasPerSm(k: GemmKernelShape, sharedBytes: number, arches: readonly ArchName[]): number {
  const registers = gemmRegisters(k, k.splitK).registers;
  const shared = sharedBytes + (k.splitK > 1 ? GEMM_SPLIT_STATIC_SHARED_BYTES : 0);
  return Math.min(...arches.map((a) => occupancy(a, { registers, sharedBytes: shared, threads: k.threads ?? GEMM_THREADS }).ctasPerSm));
}

/**
 * Pipeline depth: as deep as two CTAs per SM allow (bytes in flight hide HBM latency at small
 * M; gemmCtasPerSm says what an SM holds, registers too), else as deep as one CTA allows (at
 * most 4), between GEMM_MIN_STAGES and GEMM_MAX_STAGES.
 */
function chooseStages(k: GemmKernelShape, stageBytes: number, target: GemmTarget): number | undefined {
  for (let s = GEMM_MAX_STAGES; s >= GEMM_MIN_STAGES; s--) if (gemmCtasPerSm(k, s * stageBytes, target.arches) >= 2) return s;
  const onePerSm = Math.floor(target.maxSharedPerBlock / stageBytes);
  return onePerSm >= GEMM_MIN_STAGES ? Math.min(4, onePerSm) : undefined;
}

/** A kernel's tile as tuning chooses it (src/tune/gemm-space.ts); the reduction is not part of it. */
export interface GemmTile {
  readonly blockM: number;
  readonly warpsM: number;
  readonly stages: number;
  /** Weight rows per CTA: GEMM_BLOCK_N (absent) or GEMM_NARROW_BLOCK_N. */
  readonly blockN?: number;
  /** Warps per CTA: GEMM_THREADS / 32 = 8 (absent) or 4 (GEMM_WARPS). */
  readonly warps?: number;
}

/**
 * A GEMM tuned for one weight shape on one arch (a tuning record's GEMM entry as the compile
 * takes it, src/tune/gemm-tuned.ts): the split-K count for every M, and per step row count the
 * tile timed fastest there. Row counts without a tile keep the heuristic's.
 */
export interface GemmTuning {
  readonly arch: ArchName;
  readonly splitK: number;
  /** Step row count (decimal) -> tile. */
  readonly tiles: Readonly<Record<string, GemmTile>>;
  /** The device the record was measured on (the manifest says it). */
  readonly measuredOn: string;
  /**
   * The kernel family every M runs on a 9.0 device, where the search raced both (src/tune/gemm-space.ts
   * chooseGemmKernel): 'sm_90' keeps the mma.sync GEMM though the compile built sm_90a; absent: the
   * selection rule (arch.ts selectArch). One per weight shape, like splitK: the families round apart.
   */
  readonly kernel?: 'sm_90' | 'sm_90a';
}

/** Per GEMM unit name (gemmUnitName: dtype, N, K), its tuning (`tidarc compile --tuned`). */
export type GemmOverrides = Readonly<Record<string, GemmTuning>>;

/** Why a tile cannot run on the target (null when it can): what tidarc_gemm.cuh's static_asserts and the launch need. */
export function gemmTileProblem(t: GemmTile, target: GemmTarget): string | null {
  if (!Number.isInteger(t.blockM) || t.blockM < 16 || t.blockM > GEMM_MAX_BLOCK_M || t.blockM % 16 !== 0) return `blockM ${t.blockM} is not a multiple of 16 from 16 to ${GEMM_MAX_BLOCK_M}`;
  const warps = t.warps ?? GEMM_THREADS / 32;
  if (!GEMM_WARPS.includes(warps)) return `${warps} warps is not ${GEMM_WARPS.join(' or ')}`;
  const blockN = t.blockN ?? GEMM_BLOCK_N;
  if (blockN !== GEMM_BLOCK_N && blockN !== GEMM_NARROW_BLOCK_N) return `blockN ${blockN} is not ${GEMM_NARROW_BLOCK_N} or ${GEMM_BLOCK_N}`;
  if (!Number.isInteger(t.warpsM) || t.warpsM < 1 || warps % t.warpsM !== 0) return `warpsM ${t.warpsM} does not divide the ${warps} warps of a CTA`;
  if ((t.blockM / t.warpsM) % 16 !== 0 || (blockN / (warps / t.warpsM)) % 16 !== 0) return `${t.warpsM} warp rows split ${t.blockM} rows or ${blockN} columns into parts that are not whole m16 x (2 x n8) fragments`;
  if (!Number.isInteger(t.stages) || t.stages < GEMM_MIN_STAGES || t.stages > GEMM_MAX_STAGES) return `${t.stages} pipeline stages is not from ${GEMM_MIN_STAGES} to ${GEMM_MAX_STAGES}`;
  const smem = t.stages * gemmStageBytes(t.blockM, blockN);
  if (smem > target.maxSharedPerBlock) return `${t.stages} stages of ${t.blockM} rows need ${smem} bytes of shared memory; ${target.arches.join(',')} allow ${target.maxSharedPerBlock}`;
  return null;
}

/**
 * A tuning as the compile can use it for `shape` on `target`, or one clear error naming the
 * record: measured for an arch the compile does not target, a split-K that leaves a part
 * empty, or a tile the kernel cannot run.
 */
export function checkGemmTuning(shape: GemmShape, tuning: GemmTuning, target: GemmTarget, source?: string): GemmTuning {
  const where = `tuned GEMM ${gemmUnitName(shape)} (${tuning.arch})`;
  const at = source === undefined ? {} : { source };
  if (!target.arches.includes(tuning.arch)) {
    throw new TidarcError('invalid-argument', `${where} was measured for another GPU architecture than this compile's`, { field: 'arch', value: tuning.arch, allowed: target.arches.join(', '), ...at });
  }
  const kTiles = Math.ceil(shape.k / GEMM_BLOCK_K);
  const splits = Array.from({ length: Math.min(kTiles, GEMM_MAX_SPLIT_K) }, (_, i) => i + 1).filter((s) => Math.ceil(kTiles / Math.ceil(kTiles / s)) === s);
  if (!splits.includes(tuning.splitK)) throw new TidarcError('invalid-argument', `${where} names a split-K this shape cannot use`, { field: 'splitK', value: tuning.splitK, allowed: splits.join(', '), ...at });
  for (const [m, tile] of Object.entries(tuning.tiles)) {
    if (!/^[1-9]\d*$/.test(m)) throw new TidarcError('invalid-argument', `${where} names a tile for a row count that is not a positive integer`, { field: 'tiles', value: m, ...at });
    const problem = gemmTileProblem(tile, target);
    if (problem) throw new TidarcError('invalid-argument', `${where} at M = ${m} names a tile the kernel cannot run: ${problem}`, { field: `tiles.${m}`, value: `blockM ${tile.blockM}, warpsM ${tile.warpsM}, stages ${tile.stages}`, ...at });
  }
  return tuning;
}

/** Shared memory of one pipeline stage: blockN weight rows and blockM token rows of 64 16-bit elements. */
export function gemmStageBytes(blockM: number, blockN = GEMM_BLOCK_N): number {
  return (blockN + blockM) * GEMM_BLOCK_K * ELEMENT_BYTES;
}

export function planGemm(shape: GemmShape, m: number, target: GemmTarget, reduction: GemmReduction, tile?: GemmTile, opts: GemmPlanOptions = {}): GemmPlan {
  checkGemmShape(shape);
  if (!Number.isInteger(m) || m < 1) unsupported('GEMM rows must be a positive integer', 'm', m, 'an integer >= 1');
  if (tile) {
    const blockN = tile.blockN ?? GEMM_BLOCK_N;
    if (opts.rowStats && blockN !== GEMM_BLOCK_N) unsupported(`GEMM ${shape.n}x${shape.k} has row statistics, which are per ${GEMM_BLOCK_N}-column tile`, 'blockN', blockN, String(GEMM_BLOCK_N));
    const stageBytes = gemmStageBytes(tile.blockM, blockN);
    if (tile.stages * stageBytes > target.maxSharedPerBlock) {
      unsupported(`GEMM tile ${tile.blockM} rows x ${tile.stages} stages needs ${tile.stages * stageBytes} bytes of shared memory`, 'stages', tile.stages, `at most ${Math.floor(target.maxSharedPerBlock / stageBytes)} stages on ${target.arches.join(',')}`);
    }
    return tilePlan(shape, m, target, reduction, tile, false)!;
  }
  const chosen = heuristicScore(shape, m, target, reduction, opts);
  if (chosen) return chosen.plan;
  const stageBytes = gemmStageBytes(Math.min(GEMM_MAX_BLOCK_M, 16 * Math.ceil(m / 16)), heuristicBlockN(target, opts));
  return unsupported(`GEMM ${shape.n}x${shape.k} at M = ${m} needs ${GEMM_MIN_STAGES} stages of ${stageBytes} bytes of shared memory`, 'arch', target.arches.join(','), `arches with at least ${GEMM_MIN_STAGES * stageBytes} bytes per CTA`);
}

/**
 * The plan of one tile. A tuned tile (heuristic false) keeps its stages on every arch (it was
 * measured so); the heuristic's takes chooseStages, common and per arch (undefined when
 * GEMM_MIN_STAGES do not fit).
 */
function tilePlan(shape: GemmShape, m: number, target: GemmTarget, reduction: GemmReduction, tile: GemmTile, heuristic: boolean): GemmPlan | undefined {
  const { blockM, warpsM } = tile;
  const blockN = tile.blockN ?? GEMM_BLOCK_N;
  const threads = 32 * (tile.warps ?? GEMM_THREADS / 32);
  const warpsN = threads / 32 / warpsM;
  const stageBytes = gemmStageBytes(blockM, blockN);
  const kernel = { blockM, warpsM, blockN, splitK: reduction.splitK, threads };
  const stages = heuristic ? chooseStages(kernel, stageBytes, target) : tile.stages;
  if (stages === undefined) return undefined;
  const stagesByArch = Object.fromEntries(target.arches.map((a) => [a, heuristic ? chooseStages(kernel, stageBytes, gemmTarget([a]))! : tile.stages]));
  return checkGemmPlan({
    shape, m, reduction, blockM, blockN, warpsM, warpsN, threads, stages, stagesByArch, mBlocks: Math.ceil(m / blockM),
    nTiles: Math.ceil(shape.n / blockN), stageBytes, sharedBytes: stages * stageBytes,
    sharedBytesByArch: Object.fromEntries(Object.entries(stagesByArch).map(([a, st]) => [a, st * stageBytes])),
  });
}

/** The tile a plan runs, as the search and tuning records name it. */
export function gemmPlanTile(p: GemmPlan): GemmTile {
  return { blockM: p.blockM, warpsM: p.warpsM, stages: p.stages, ...(p.blockN !== GEMM_BLOCK_N ? { blockN: p.blockN } : {}), ...(p.threads !== GEMM_THREADS ? { warps: p.threads / 32 } : {}) };
}

/** Invariants tidarc_gemm.cuh relies on (its static_asserts say the same in C++). */
function checkGemmPlan(p: GemmPlan): GemmPlan {
  const fail = (what: string): never => {
    throw new TidarcError('unsupported', `GEMM plan ${p.shape.n}x${p.shape.k} M=${p.m} is invalid: ${what}`);
  };
  const warpM = p.blockM / p.warpsM, warpN = p.blockN / p.warpsN;
  if (p.warpsM * p.warpsN * 32 !== p.threads) fail('warps do not match threads');
  if (warpM % 16 !== 0 || warpN % 16 !== 0) fail('a warp tile must be whole m16 x (2 x n8) fragments');
  if ((p.blockN * 8) % p.threads !== 0) fail('every thread must issue the same number of weight copies');
  if (p.mBlocks * p.blockM < p.m) fail('the CTAs along M do not cover M');
  for (const [arch, st] of Object.entries(p.stagesByArch)) {
    if (st! * p.stageBytes > GEMM_ARCH_DATA[arch as ArchName].maxSharedPerBlock) fail(`${st} stages on ${arch} do not fit its shared memory`);
  }
  const r = p.reduction;
  if (r.kTilesPerSplit * (r.splitK - 1) >= r.kTiles || r.kTilesPerSplit * r.splitK < r.kTiles) fail('split-K parts must cover the k tiles, none empty');
  return p;
}

/** Grid of a launch over `rows` token rows (any count; the plan's m only sizes the tile). */
export function gemmGrid(p: GemmPlan, rows: number): [number, number, number] {
  return [Math.ceil(rows / p.blockM), p.nTiles, p.reduction.splitK];
}

export function gemmUnitName(shape: GemmShape): string {
  return `gemm_${shape.dtype}_n${shape.n}_k${shape.k}`;
}

export function gemmSymbol(shape: GemmShape, m: number): string {
  return `tidarc_${gemmUnitName(shape)}_m${m}`;
}

/** A tile's name in a search's candidate symbols (`b32w2s4`; `b32w2s4n64` for the narrow tile, `b96w2s4n64t128` for 4 warps). */
export function gemmTileName(t: GemmTile & { readonly threads?: number }): string {
  const threads = t.threads ?? 32 * (t.warps ?? GEMM_THREADS / 32);
  return `b${t.blockM}w${t.warpsM}s${t.stages}${t.blockN !== undefined && t.blockN !== GEMM_BLOCK_N ? `n${t.blockN}` : ''}${threads !== GEMM_THREADS ? `t${threads}` : ''}`;
}

/** The combine of the lm_head's per-tile row statistics (TIDARC_GEMM_EPILOGUE_ROW_STATS). */
export function gemmRowStatsSymbol(shape: GemmShape): string {
  return `tidarc_${gemmUnitName(shape)}_row_stats`;
}
