/**
 * How much of its weight slice a GEMM CTA prefetches to L2 before its grid dependency wait
 * (programmatic dependent launch, docs: the PDL contract). One rule, read by the templates
 * (the per-CTA tile count a kernel is rendered with) and by the cost model (what a kernel's
 * weight stream has in L2 by the time its predecessor ends). Pure.
 *
 * Why: under PDL a GEMM's CTAs are scheduled while the kernel before it still runs; before
 * `griddepcontrol.wait` they may touch nothing an earlier kernel writes, but the weights are
 * written by no kernel of a step, so each CTA can start pulling its own weight tiles into L2
 * (prefetch.global.L2 of each 128-byte line, a hint that never changes a result). The prologue the kernel
 * runs after the wait then hits L2 instead of waiting on HBM's latency.
 *
 * The rule, per kernel (deterministic: it depends on the plan, never on a launch's rows):
 *   - the kernel's whole prefetch is capped at GEMM_PREFETCH_L2_BUDGET (8 MiB, a sixth of an
 *     H100/H200's 50 MB L2), so the predecessor's working set (activations, KV) stays in L2;
 *   - each CTA takes clamp(floor(budget / ctas / tileBytes), stages - 1, kTilesPerSplit) k
 *     tiles of its own weight slice, in k order from its split part's first tile, where
 *     tileBytes = the CTA's weight rows x blockK x 2 bytes and `ctas` the launch's CTA count at
 *     the plan's m. The floor, stages - 1, is what the cp.async/TMA prologue loads first anyway
 *     (so the prefetch is never less useful than the pipeline's own start, even where the budget
 *     would allow less: many CTAs); the ceiling is the CTA's split part (the last part of an
 *     uneven split has fewer tiles: the kernel clamps to its own, see prefetchRuns).
 * Weights are [N, K] row-major and a k tile of a row is 64 x 2 = 128 bytes, one L2 line, so a
 * CTA issues rows x tiles line prefetches spread over its threads (tidarc_gemm.cuh
 * gemm_prefetch_weights: each thread keeps a row and steps over its tiles; when K % 64 != 0 a
 * tile also prefetches the line of its last byte). Per-thread addresses: a bulk prefetch
 * (cp.async.bulk.prefetch.L2, uniform operands) made ptxas serialise the lanes of a warp.
 */
import type { ArchName } from './arch.js';
import type { GemmPlan, GemmReduction, GemmShape } from './gemm-plan.js';

/** The most weight bytes one GEMM launch prefetches to L2 before its wait: 8 MiB. */
export const GEMM_PREFETCH_L2_BUDGET = 8 * 1024 * 1024;
const ELEMENT_BYTES = 2;

/** What a CTA of a GEMM launch prefetches. */
export interface GemmPrefetch {
  /** CTAs of the launch the rule divides the budget among (at the plan's m). */
  readonly ctas: number;
  /** Weight rows of a CTA's tile. */
  readonly rows: number;
  /** Bytes of one weight k tile of a CTA: rows x blockK x 2. */
  readonly tileBytes: number;
  /** k tiles each CTA prefetches (a CTA of a shorter last split part: its own count, at most). */
  readonly tiles: number;
  /** Bytes a CTA of a full tile (all rows, whole k tiles) prefetches: tiles x tileBytes. */
  readonly bytesPerCta: number;
  /**
   * Distinct weight bytes the launch prefetches (the weight's edges: the last row tile's rows,
   * the last part's and the K edge's k, counted as they are; CTAs along M share a slice and
   * are counted once). At most GEMM_PREFETCH_L2_BUDGET unless the floor (stages - 1) passes it.
   */
  readonly launchBytes: number;
}

/** The rule on its numbers: clamp(floor(budget / ctas / tileBytes), stages - 1, kTilesPerSplit). */
export function gemmPrefetchTiles(ctas: number, tileBytes: number, stages: number, kTilesPerSplit: number, budget = GEMM_PREFETCH_L2_BUDGET): number {
  for (const [name, v] of [['ctas', ctas], ['tileBytes', tileBytes], ['stages', stages], ['kTilesPerSplit', kTilesPerSplit]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`gemmPrefetchTiles: ${name} must be a positive integer, got ${v}`);
  }
  const byBudget = Math.floor(budget / ctas / tileBytes);
  return Math.min(Math.max(byBudget, stages - 1), kTilesPerSplit);
}

/**
 * The k range (elements) CTA part `split` prefetches: from its part's first k tile, `tiles`
 * tiles, clamped to its part and to K. Each of its weight rows is one contiguous run of
 * (kEnd - kStart) x 2 bytes from row x K + kStart. Empty (kEnd == kStart) never happens for a
 * valid reduction (no part is empty).
 */
export function prefetchRuns(shape: GemmShape, reduction: GemmReduction, tiles: number, split: number): { readonly kStart: number; readonly kEnd: number } {
  const first = split * reduction.kTilesPerSplit;
  const last = Math.min(reduction.kTiles, first + reduction.kTilesPerSplit);
  const kStart = first * reduction.blockK;
  const kEnd = Math.min(shape.k, Math.min(last, first + tiles) * reduction.blockK);
  return { kStart, kEnd };
}

function describe(shape: GemmShape, reduction: GemmReduction, rows: number, ctas: number, stages: number): GemmPrefetch {
  const tileBytes = rows * reduction.blockK * ELEMENT_BYTES;
  const tiles = gemmPrefetchTiles(ctas, tileBytes, stages, reduction.kTilesPerSplit);
  let launchBytes = 0;
  for (let s = 0; s < reduction.splitK; s++) {
    const { kStart, kEnd } = prefetchRuns(shape, reduction, tiles, s);
    launchBytes += shape.n * (kEnd - kStart) * ELEMENT_BYTES;
  }
  return { ctas, rows, tileBytes, tiles, bytesPerCta: tiles * tileBytes, launchBytes };
}

/**
 * The stages a plan's kernel compiles on Hopper (sm_90 / sm_90a: the only arches where
 * prefetch_l2_line is not empty): its per-arch choice there, else the common one.
 */
export function hopperStages(plan: Pick<GemmPlan, 'stages' | 'stagesByArch'>): number {
  const hopper: ArchName[] = ['sm_90', 'sm_90a'];
  const s = hopper.map((a) => plan.stagesByArch[a]).filter((v): v is number => v !== undefined);
  return s.length > 0 ? Math.max(...s) : plan.stages;
}

/** The mma.sync kernel of a plan: mBlocks x nTiles x splitK CTAs at the plan's m, blockN weight rows a CTA. */
export function gemmPlanPrefetch(plan: Pick<GemmPlan, 'shape' | 'reduction' | 'blockN' | 'mBlocks' | 'nTiles' | 'stages' | 'stagesByArch'>): GemmPrefetch {
  const ctas = plan.mBlocks * plan.nTiles * plan.reduction.splitK;
  return describe(plan.shape, plan.reduction, plan.blockN, ctas, hopperStages(plan));
}

/**
 * The sm_90a kernel of token tile `tileT` (blockW weight rows a CTA, a ring of `stages`):
 * ceil(m / tileT) x ceil(n / blockW) x splitK CTAs, m the most rows of the planned row counts
 * the kernel serves (`ms`, those whose sm90aTokenTile is tileT: the most CTAs, so the budget
 * holds at every launch of it; 1 token tile along M for every row count up to 256).
 */
export function sm90aPrefetch(shape: GemmShape, reduction: GemmReduction, kernel: { readonly tileT: number; readonly blockW: number; readonly stages: number }, ms: readonly number[]): GemmPrefetch {
  if (ms.length === 0) throw new Error(`sm90aPrefetch: token tile ${kernel.tileT} serves no row count`);
  const ctas = Math.ceil(Math.max(...ms) / kernel.tileT) * Math.ceil(shape.n / kernel.blockW) * reduction.splitK;
  return describe(shape, reduction, kernel.blockW, ctas, kernel.stages);
}
