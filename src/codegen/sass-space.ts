/**
 * The attention tiles bench:sass-counts measures (src/codegen/sass-counts.ts MEASURED_SASS): for the
 * mask kinds of the bundled examples (generated/) and bench:attention, at head dim 64 and 128, every
 * row tile the planner can pick (plan.ts rowTileCandidates at sm_90's default 64 keys, at the stages
 * planAttention gives each for an sm_90 compile and for the portable arches) and the split-key tile
 * of a variant of <= 16 rows (rowTileOf: 4 warps of 16 keys, the AR step's). Each kind by one variant
 * at G = 4, bf16 (attention-registers.ts measuredVariant; the small ones: TiDAR decode k = 1, block
 * diffusion 2, causal 1). Pure.
 */
import { ARCHES, PORTABLE_ARCH_NAMES } from './arch.js';
import { measuredVariant } from './attention-registers.js';
import { type AttentionPlan, planAttention, rowTileCandidates } from './plan.js';
import { layoutOf } from './sass-counts.js';
import { variantForMask } from './variant.js';
import { GEMM_BLOCK_N, GEMM_MAX_BLOCK_M, GEMM_MAX_STAGES, GEMM_MIN_STAGES, GEMM_NARROW_BLOCK_N, GEMM_THREADS, GEMM_WARPS, type GemmPlan, type GemmReduction, type GemmShape, gemmTarget, gemmTileProblem, planGemm, planReduction } from './gemm-plan.js';
import { gemmRegisters } from './gemm-registers.js';
import { blockDiffusion, causal, tidarDecode } from '../ir/mask-builders.js';
import type { MaskKind, MaskSpec } from '../ir/mask.js';

/** The kinds measured: those of the bundled examples and bench:attention. */
export const SASS_KINDS = ['tidar-decode', 'block-diffusion', 'causal'] as const satisfies readonly MaskKind[];

const SMALL: Readonly<Record<(typeof SASS_KINDS)[number], () => MaskSpec>> = {
  'tidar-decode': () => tidarDecode(1),
  'block-diffusion': () => blockDiffusion(2),
  causal: () => causal(1),
};

/** A tile's key in MEASURED_SASS: kind, head dim, layout, warps, keys a tile, stages. */
export function sassKey(p: AttentionPlan): string {
  return `${p.variant.mask.kind} ${p.variant.shape.headDim} ${layoutOf(p)} ${p.rowTile.warps} ${p.tile.tileN} ${p.tile.stages}`;
}

/** One plan a measured tile, in a stable order (kind, head dim, then the planner's candidates, then the split-key tile). */
export function sassSpace(): AttentionPlan[] {
  const sets = [[ARCHES.sm_90], PORTABLE_ARCH_NAMES.map((a) => ARCHES[a])];
  const plans = new Map<string, AttentionPlan>();
  for (const kind of SASS_KINDS) {
    for (const headDim of [64, 128]) {
      const v = measuredVariant(kind, headDim);
      const small = variantForMask(`${kind.replace(/-/g, '_')}_small`, SMALL[kind](), v.shape, `${kind} of <= 16 rows (sass-space.ts)`);
      const tiles = [...sets.flatMap((arches) => rowTileCandidates(v, ARCHES.sm_90.tile).map((t) => planAttention(v, t, arches))), planAttention(small, ARCHES.sm_90.tile)];
      for (const p of tiles) if (!plans.has(sassKey(p))) plans.set(sassKey(p), p);
    }
  }
  return [...plans.values()];
}

/** The weight shape the GEMM tiles are measured at (Qwen3-8B o, 4096 x 4096 bf16, as gemm-registers.ts): N and K enter the loop only as the bounds of its zero-fill tests. */
export const GEMM_SASS_SHAPE: GemmShape = { n: 4096, k: 4096, dtype: 'bf16' };

/** A GEMM tile's key in MEASURED_GEMM_SASS: width, warps, warp rows, rows, stages, split-K (1, or 2 for any count > 1). */
export function gemmSassKey(p: Pick<GemmPlan, 'blockN' | 'threads' | 'warpsM' | 'blockM' | 'reduction'>, stages: number): string {
  return `${p.blockN} ${p.threads / 32} ${p.warpsM} ${p.blockM} ${stages} ${gemmSassSplit(p)}`;
}

/** The split-K column of MEASURED_GEMM_SASS: 1, or 2 for every count > 1 (the same code: a runtime trip count and the in-launch sum). */
export function gemmSassSplit(p: Pick<GemmPlan, 'reduction'>): 1 | 2 {
  return p.reduction.splitK > 1 ? 2 : 1;
}

/**
 * The mma.sync GEMM tiles bench:sass-counts measures (src/codegen/gemm-sass-counts.ts): every tile
 * gemm-plan.ts heuristicScore can offer at any M (width 64 or 128, 8 or 4 warps, warp rows, rows a
 * multiple of 16 a warp row up to 128; not one ptxas spills at split-K 1) at every stage count an
 * sm_90 CTA's shared memory holds (3 to 6: the planner's chooseStages gives an arch of less shared
 * memory fewer, never another kernel), at split-K 1 and 2 (split-K 1's trip count is a constant,
 * which nvcc schedules differently: 96 x 128 on 2 x 4 warps issues 273 instructions a k tile at
 * split-K 1, 319 at 2; every count > 1 is the same code), on GEMM_SASS_SHAPE. N and K are constants
 * of the zero-fill tests and the addresses, which moves a few instructions: at split-K > 1 Qwen3-8B
 * qkv (6144 x 4096) and Qwen2.5-1.5B qkv (2048 x 1536) gave o's sm_90 counts for 96 x 128 (2 x 4),
 * 96 x 64 (2 x 2, 4 warps) and 32 x 64 (2 x 4), down (4096 x 12288) 10 fewer for 96 x 128 (309
 * against 319, 3%); sm_80 within 3. Pure.
 */
export function gemmSassSpace(): GemmPlan[] {
  const target = gemmTarget(['sm_90']);
  const plans: GemmPlan[] = [];
  for (const splitK of [1, 2]) plans.push(...gemmSassSpaceAt(planReduction(GEMM_SASS_SHAPE, target, splitK)));
  return plans;
}

function gemmSassSpaceAt(reduction: GemmReduction): GemmPlan[] {
  const target = gemmTarget(['sm_90']);
  const plans: GemmPlan[] = [];
  for (const blockN of [GEMM_NARROW_BLOCK_N, GEMM_BLOCK_N]) {
    for (const warps of GEMM_WARPS) {
      for (let warpsM = 1; warpsM <= warps; warpsM *= 2) {
        for (let blockM = 16 * warpsM; blockM <= GEMM_MAX_BLOCK_M; blockM += 16 * warpsM) {
          for (let stages = GEMM_MIN_STAGES; stages <= GEMM_MAX_STAGES; stages++) {
            const t = { blockM, warpsM, blockN, stages, ...(warps !== GEMM_THREADS / 32 ? { warps } : {}) };
            if (gemmTileProblem(t, target) !== null || gemmRegisters({ ...t, threads: warps * 32 }, reduction.splitK).spills) continue;
            plans.push(planGemm(GEMM_SASS_SHAPE, blockM, target, reduction, t));
          }
        }
      }
    }
  }
  return plans;
}
