/**
 * What a GEMM search may try for the linear layers (src/codegen/gemm-plan.ts), as data, and
 * the heuristic default (the plan). Pure: no I/O. Two levels, because lossless decoding needs
 * a row's result to be independent of M (tidarc_gemm_abi.h):
 *   - the reduction (split-K) is chosen per (N, K, dtype, arch) only: gemmReductionSpace lists
 *     the split counts, and the search picks one with chooseGemmKernel (of mma.sync alone where
 *     it does not race sm_90a; gemm_tune.py gemm_entry) from timings over every step row count by
 *     the planner's rule (gemm-tile-choice.ts leastRegretSplit: least summed relative regret,
 *     ties to fewer parts), never per M (a split count changes the order of the sum);
 *   - the tile (rows per CTA, warp layout, pipeline stages) is chosen per (shape, M) under
 *     that reduction: gemmTileSpace: width 128 or 64 (128 only with row statistics), 8 or 4
 *     warps, rows, warp rows and stages; blockK (64: the swizzle's row) is fixed by the kernel.
 * Static pruning, before anything is compiled:
 *   - shared memory: stages x (128 + blockM) x 64 x 2 bytes above the targets' per-CTA limit;
 *   - registers: ptxas's figure for the tile (width, rows, warp rows) and the split-K
 *     (codegen/gemm-registers.ts, measured at sm_90 with nvcc 13): a tile ptxas spilled
 *     (128 x 128 rows in 4 warp rows at split-K > 1) or whose estimate passes 255 is dropped
 *     (the space stops at 128 rows for that reason);
 *   - padding: at M <= 128 a blockM above M rounded to 16 a warp row computes only padding rows; past 128
 *     a blockM whose CTAs leave more than one m16 fragment of padding each is dropped too.
 * On a 9.0 device the sm_90a GEMM (TMA + wgmma, gemm-sm90a.ts) races the mma.sync one:
 * gemmSm90aSpace lists it per split-K count at the planner's token tile of each M, and
 * chooseGemmKernel picks the family with the split-K, both once per weight shape (the two
 * families round apart, so a family per M would break batch invariance as a split per M would),
 * by the rule a compile for sm_90a applies to predicted times (gemm-unit-split.ts
 * planUnitReduction with gemm-kernel-choice.ts sm90aGemmHeuristic): per split count the family of
 * the least summed time, then the count of least summed relative regret. The tuner and the
 * planner decide one thing by one rule; only their times differ (measured against predicted).
 */
import { MAX_REGISTERS, gemmRegisters } from '../codegen/gemm-registers.js';
import { sm90aRefusal, sm90aTokenTile } from '../codegen/gemm-sm90a.js';
import { leastRegretSplit } from '../codegen/gemm-tile-choice.js';
import type { GemmFamily } from './db.js';
import {
  GEMM_BLOCK_N, GEMM_NARROW_BLOCK_N, GEMM_MAX_SPLIT_K, GEMM_MAX_STAGES, GEMM_MIN_STAGES, GEMM_THREADS, GEMM_WARPS, type GemmPlanOptions, type GemmReduction, type GemmShape, type GemmTarget, type GemmTile,
  gemmPlanTile, gemmTilePadding, gemmTileProblem, planGemm, planReduction,
} from '../codegen/gemm-plan.js';

/**
 * The search space and kernel generation a GEMM tuning record was made in (db.ts GemmTuneEntry.space):
 *   1 (records without the field): 128-column tiles only, split-K by FA3's wave rule (Qwen3-8B o
 *     and down at 4 parts);
 *   2: 64-column tiles and the filling split rule (b9defb2, 5898629), the sm_90a GEMM's 64-row
 *     tiles (b9d15e2);
 *   3: 4-warp tiles (gemm-plan.ts GEMM_WARPS) and the planner's tile chosen per M by the cost
 *     model (gemm-tile-choice.ts): a record's heuristic column timed another tile;
 *   4: the split-K (and, raced, the family) chosen from the measured times by the planner's rule
 *     (least summed relative regret over the row counts; per count the family of least summed
 *     time) instead of the least summed time: a record of 3 may name a count that today's rule
 *     would not pick from its own timings (on predicted times, Qwen3-8B down takes 4 parts by
 *     summed time and 2 by regret: gemm-plan.ts costModelSplits).
 * A record of another space times kernels and splits of a search this tidarc no longer runs
 * (its split-K 4 would override the current rule): compile --tuned and tune --report name it in
 * one line and leave it unused. Raise it when the space or the kernels change what a record means.
 */
export const GEMM_SEARCH_SPACE = 4;

/** Why a GEMM record is not of this tidarc's search space (null when it is). */
export function gemmSpaceProblem(e: { readonly space?: number }): string | null {
  return e.space === GEMM_SEARCH_SPACE ? null : `made by GEMM search space ${e.space ?? 1}, this tidarc's is ${GEMM_SEARCH_SPACE}`;
}

export const GEMM_BLOCK_M: readonly number[] = [16, 32, 48, 64, 80, 96, 112, 128];
export const GEMM_WARPS_M: readonly number[] = [1, 2, 4];
export const GEMM_STAGES: readonly number[] = Array.from({ length: GEMM_MAX_STAGES - GEMM_MIN_STAGES + 1 }, (_, i) => GEMM_MIN_STAGES + i);

export interface GemmPruned<C> {
  readonly config: C;
  readonly why: string;
}

/**
 * Why a tile cannot (or should not) run M rows (null when it can): what the kernel cannot run at
 * all is gemmTileProblem's (the one source, also used on tuned records); this adds what it
 * should not run: a tile ptxas spills (measured, or an estimate past 255 registers) at `splitK`
 * (absent: at split-K 1 or above it, either), and padding rows.
 */
export function gemmTileInfeasible(t: GemmTile, m: number, target: GemmTarget, splitK?: number): string | null {
  const problem = gemmTileProblem(t, target);
  if (problem) return problem;
  const threads = 32 * (t.warps ?? GEMM_THREADS / 32);
  const spilled = (splitK === undefined ? [1, 2] : [splitK]).map((s) => ({ s, r: gemmRegisters({ ...t, blockN: t.blockN ?? GEMM_BLOCK_N, threads }, s) })).find(({ r }) => r.spills);
  if (spilled) return `${spilled.r.measured ? '' : 'about '}${spilled.r.registers} registers a thread at split-K ${spilled.s > 1 ? '> 1' : '1'}: ptxas ${spilled.r.measured ? 'spilled it' : `spills past ${MAX_REGISTERS}`}`;
  // Rows in 16s a warp row (the planner's rule).
  return gemmTilePadding(t, m);
}

/** Every tile for (shape, M) under the target, split into what may run and what is pruned and why. */
export function gemmTileSpace(m: number, target: GemmTarget, opts: GemmPlanOptions = {}, splitK?: number): { configs: GemmTile[]; pruned: GemmPruned<GemmTile>[] } {
  const configs: GemmTile[] = [], pruned: GemmPruned<GemmTile>[] = [];
  // 128-column tiles, then 64-column ones (gemm-plan.ts GEMM_NARROW_BLOCK_N) unless row statistics need 128; 8 warps, then 4.
  const widths = opts.rowStats ? [GEMM_BLOCK_N] : [GEMM_BLOCK_N, GEMM_NARROW_BLOCK_N];
  for (const blockN of widths) for (const warps of GEMM_WARPS) for (const blockM of GEMM_BLOCK_M) for (const warpsM of GEMM_WARPS_M) for (const stages of GEMM_STAGES) {
    if (warpsM > warps) continue;
    const t = { blockM, warpsM, stages, ...(blockN !== GEMM_BLOCK_N ? { blockN } : {}), ...(warps !== GEMM_THREADS / 32 ? { warps } : {}) };
    const why = gemmTileInfeasible(t, m, target, splitK);
    if (why) pruned.push({ config: t, why });
    else configs.push(t);
  }
  return { configs, pruned };
}

/** The split-K counts of a weight shape: 1 .. GEMM_MAX_SPLIT_K, those that leave no part empty. */
export function gemmReductionSpace(shape: GemmShape, target: GemmTarget): { configs: GemmReduction[]; pruned: GemmPruned<number>[] } {
  const configs: GemmReduction[] = [], pruned: GemmPruned<number>[] = [];
  for (let s = 1; s <= GEMM_MAX_SPLIT_K; s++) {
    try {
      configs.push(planReduction(shape, target, s));
    } catch (e) {
      pruned.push({ config: s, why: e instanceof Error ? e.message : String(e) });
    }
  }
  return { configs, pruned };
}

/** The heuristic default: what `tidarc compile` plans (planReduction, then planGemm), as a point of the space. */
export function gemmHeuristic(shape: GemmShape, m: number, target: GemmTarget, opts: GemmPlanOptions = {}): { reduction: GemmReduction; tile: GemmTile } {
  const reduction = planReduction(shape, target, undefined, opts);
  return { reduction, tile: gemmPlanTile(planGemm(shape, m, target, reduction, undefined, opts)) };
}

/** One sm_90a candidate: the planner's token tile for M under one split-K count. */
export interface GemmSm90aCandidate {
  readonly splitK: number;
  readonly m: number;
  readonly tileT: number;
}

/**
 * The sm_90a GEMM's candidates for a weight shape serving `roles` at the row counts `ms`: every
 * split-K count of gemmReductionSpace (the sm_90a unit takes the mma.sync unit's reduction, so
 * the same counts) x the token tile the planner gives each M (sm90aTokenTile: the runtime
 * launches no other). `refused`: why the shape has no sm_90a kernel (then no candidates).
 */
export function gemmSm90aSpace(shape: GemmShape, roles: readonly string[], ms: readonly number[], target: GemmTarget): { configs: GemmSm90aCandidate[]; refused?: string } {
  const reductions = gemmReductionSpace(shape, target).configs;
  const refused = reductions.map((r) => sm90aRefusal(shape, roles, r)).find((why) => why !== null);
  if (refused) return { configs: [], refused };
  return { configs: reductions.flatMap((r) => ms.map((m) => ({ splitK: r.splitK, m, tileT: sm90aTokenTile(m) }))) };
}

/**
 * The kernel family and split-K of a weight shape from measured times: `us.get(family).get(splitK)
 * .get(m)` is the best time of that pair at step row count m. Of the pairs that reached every row
 * count any pair reached (a pair cut short by the budget, or with a rejected M, is not weighed
 * against those it did not run; when none reached all, the rows every pair reached), the rule of
 * a compile for sm_90a (gemm-unit-split.ts planUnitReduction): per split-K count the family of
 * the least total over those rows (ties to mma.sync: it runs on every arch, as sm90aGemmHeuristic
 * takes sm_90a only when its sum is below), then of those the count of least summed relative
 * regret (leastRegretSplit, ties to fewer parts). One pair for every M: a row's sum order and
 * rounding never depend on the step. Relative regret, not summed time: M = 272 takes several
 * times M = 72's time, and a sum would let it choose for the memory-bound decode steps. The
 * mma.sync split-K alone (a search that does not race, or the losing family's own count) is this
 * over a map of that one family.
 */
export function chooseGemmKernel(us: ReadonlyMap<GemmFamily, ReadonlyMap<number, ReadonlyMap<number, number>>>): { kernel: GemmFamily; splitK: number } | undefined {
  const order: readonly GemmFamily[] = ['sm_90', 'sm_90a'];
  const pairs = order.filter((f) => us.has(f)).flatMap((kernel) => [...us.get(kernel)!.keys()].sort((a, b) => a - b).map((splitK) => ({ kernel, splitK, at: us.get(kernel)!.get(splitK)! })));
  const all = [...new Set(pairs.flatMap((p) => [...p.at.keys()]))].sort((a, b) => a - b);
  const complete = pairs.filter((p) => all.every((m) => p.at.has(m)));
  const pool = complete.length > 0 ? complete : pairs;
  const rows = all.filter((m) => pool.every((p) => p.at.has(m)));
  if (pool.length === 0 || rows.length === 0) return undefined;
  const total = (p: (typeof pool)[number]): number => rows.reduce((t, m) => t + p.at.get(m)!, 0);
  // Per count, its family: the pool is in family order, so a tie keeps mma.sync.
  const byCount = new Map<number, (typeof pool)[number]>();
  for (const p of pool) {
    const cur = byCount.get(p.splitK);
    if (cur === undefined || total(p) < total(cur)) byCount.set(p.splitK, p);
  }
  const splitK = leastRegretSplit(new Map([...byCount].map(([s, p]) => [s, rows.map((m) => p.at.get(m)!)])));
  return { kernel: byCount.get(splitK)!.kernel, splitK };
}
