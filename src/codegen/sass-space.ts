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
