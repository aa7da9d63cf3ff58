/**
 * The sm_90a attention of a variant (templates/cuda/tidarc_attention_sm90a.cuh): TMA producer
 * warp, mbarrier ring, wgmma consumer warpgroups of 64 rows. Which variants get it is data
 * (sm90aAttentionRefusal): the compute-bound ones, whose packed rows per KV head (the FLOP per
 * KV byte) are past the H200's ridge (~184 FLOP/byte, performance-model.md), so tensor-core
 * rate, not bandwidth, sets their time: k = 16 (272 G rows), the prefill chunk at G >= 4
 * (64 G), k = 8 at G >= 4 (72 G). AR and small k stay on mma.sync (memory-bound). The in-step
 * tile schedule is classified from the mask IR for its own 64 x consumers row tiles, exactly as
 * plan.ts does for the sm_80 tiles. Pure.
 */
import { banner, scheduleFields } from './kernel-source.js';
import { ARCHES } from './arch.js';
import { type StepTileSchedule, stepTileSchedule } from './plan.js';
import type { VariantOccupancy } from './manifest.js';
import { TARGETS } from './targets.js';
import { renderTemplate } from './templates.js';
import { type AttentionVariant, groupSize } from './variant.js';

/** Packed rows per KV head from which a variant is compute-bound on an H200 (its ridge, ~184, rounded up to whole 64-row warpgroups). */
export const SM90A_ATTENTION_MIN_ROWS = 256;
/** Keys per K/V tile: wgmma N of S = Q K^T, 16 KiB of K and V a stage at head dim 128. */
export const SM90A_ATTENTION_TILE_N = 64;
/** The TMA ring: 3 stages keep two tiles in flight while one is consumed (132 KB at head dim 128, 2 consumers). */
export const SM90A_ATTENTION_STAGES = 3;
const HEAD_DIMS = [64, 128] as const;

export interface AttentionSm90aPlan extends StepTileSchedule {
  readonly variant: AttentionVariant;
  readonly steps: number;
  readonly group: number;
  readonly rows: number;
  /** Consumer warpgroups of 64 rows: 2 (FA3's) where a KV head has 128 rows or more. */
  readonly consumers: 1 | 2;
  /** The two consumers take turns issuing their wgmmas (FA3's ping-pong, by named barriers), so
   *  one's softmax runs under the other's GEMMs; one consumer has nobody to take turns with. */
  readonly pingPong: boolean;
  readonly tileM: number;
  readonly tileN: number;
  readonly stages: number;
  readonly threads: number;
  readonly sharedBytes: number;
  readonly scaleLog2: number;
  readonly symbol: string;
  /** Source path under the compiled directory. */
  readonly source: string;
}

/** Why the sm_90a kernel does not take this variant (null when it does). */
export function sm90aAttentionRefusal(variant: AttentionVariant): string | null {
  const rows = variant.mask.tokens.length * groupSize(variant.shape);
  if (!(HEAD_DIMS as readonly number[]).includes(variant.shape.headDim)) return `head dim ${variant.shape.headDim}: the sm_90a attention takes ${HEAD_DIMS.join(' or ')}`;
  if (rows < SM90A_ATTENTION_MIN_ROWS) return `${rows} packed rows per KV head is memory-bound (below ${SM90A_ATTENTION_MIN_ROWS}): mma.sync serves it`;
  return null;
}

/** Dynamic shared memory: alignment slack, Q of each consumer, the ring of K and V tiles, 2 mbarriers a stage. */
export function sm90aAttentionSharedBytes(headDim: number, consumers: number, tileN = SM90A_ATTENTION_TILE_N, stages = SM90A_ATTENTION_STAGES): number {
  const slices = headDim / 64;
  return 1024 + consumers * slices * 64 * 128 + stages * 2 * slices * tileN * 128 + 2 * stages * 8;
}

export function planAttentionSm90a(variant: AttentionVariant, consumersOverride?: 1 | 2): AttentionSm90aPlan {
  const refusal = sm90aAttentionRefusal(variant);
  if (refusal) throw new Error(`${variant.name}: ${refusal}`);
  const { mask } = variant;
  const steps = mask.tokens.length;
  const group = groupSize(variant.shape);
  const rows = steps * group;
  const consumers = consumersOverride ?? (rows >= 128 ? 2 : 1);
  const tileM = 64 * consumers;
  const tileN = SM90A_ATTENTION_TILE_N;
  const schedule = stepTileSchedule(variant, tileM, tileN);
  const sharedBytes = sm90aAttentionSharedBytes(variant.shape.headDim, consumers);
  if (sharedBytes > ARCHES.sm_90a.maxSharedPerBlock) throw new Error(`${variant.name}: the sm_90a attention needs ${sharedBytes} bytes of shared memory`);
  return {
    variant, steps, group, rows, consumers, pingPong: consumers === 2, tileM, tileN, stages: SM90A_ATTENTION_STAGES, threads: 128 * consumers + 32, ...schedule, sharedBytes,
    scaleLog2: Math.LOG2E / Math.sqrt(variant.shape.headDim),
    symbol: `${variant.symbol}_sm90a`,
    source: `cuda/${variant.name}.sm90a.cu`,
  };
}

export function renderAttentionSm90a(plan: AttentionSm90aPlan, modelName: string): string {
  const { variant } = plan;
  const dialect = TARGETS.sm_80.dialect;
  return renderTemplate('cuda/variant_sm90a.cu.hbs', {
    banner: banner(modelName),
    description: variant.description,
    symbol: plan.symbol,
    elementType: dialect.elementTypes[variant.shape.dtype],
    steps: plan.steps,
    group: plan.group,
    rows: plan.rows,
    qHeads: variant.shape.qHeads,
    kvHeads: variant.shape.kvHeads,
    headDim: variant.shape.headDim,
    consumers: plan.consumers,
    pingPong: plan.pingPong,
    stages: plan.stages,
    tileM: plan.tileM,
    tileN: plan.tileN,
    threads: plan.threads,
    ...scheduleFields(plan, variant, dialect),
  });
}

/** Headers an sm_90a attention unit includes beyond the sm_80 attention's: output path -> template. */
export const SM90A_ATTENTION_STATIC_FILES: readonly (readonly [string, string])[] = [
  ['cuda/tidarc_attention_sm90a.cuh', 'cuda/tidarc_attention_sm90a.cuh'],
  ['cuda/tidarc_attention_sm90a_abi.h', 'cuda/tidarc_attention_sm90a_abi.h'],
  ['cuda/tidarc_gemm_sm90a_abi.h', 'cuda/tidarc_gemm_sm90a_abi.h'],
  ['cuda/tidarc_hopper.cuh', 'cuda/tidarc_hopper.cuh'],
];

/** A variant's sm_90a kernel as the manifest names it (ManifestVariant.sm90a): compiled for sm_90a alone. */
export interface ManifestAttentionSm90a {
  readonly arch: 'sm_90a';
  readonly symbol: string;
  readonly source: string;
  readonly consumers: number;
  readonly stages: number;
  readonly tileM: number;
  readonly tileN: number;
  readonly rowTiles: number;
  readonly block: number;
  readonly dynamicSharedBytes: number;
  /** After an nvcc build: its ptxas registers, shared memory and CTAs an SM holds at sm_90a (the split rule's slots). */
  readonly occupancy?: VariantOccupancy;
  /**
   * A compile for sm_90a: the kernel the cost models predict faster on a 9.0 device, which the
   * runtime takes when no tune record says (attention-kernel-choice.ts); ratio: sm_90a / mma.sync
   * predicted time, geometric mean over the reference shapes. Absent: the arch rule alone.
   */
  readonly heuristic?: { readonly kernel: 'sm_90' | 'sm_90a'; readonly ratio: number };
}

export function describeAttentionSm90a(plan: AttentionSm90aPlan): ManifestAttentionSm90a {
  return {
    arch: 'sm_90a', symbol: plan.symbol, source: plan.source, consumers: plan.consumers, stages: plan.stages, tileM: plan.tileM, tileN: plan.tileN,
    rowTiles: plan.rowTiles, block: plan.threads, dynamicSharedBytes: plan.sharedBytes,
  };
}

/** What a compile with sm_90a adds for the attention: a unit per compute-bound variant. */
export interface Sm90aAttentions {
  readonly sources: ReadonlyMap<string, string>;
  readonly byVariant: ReadonlyMap<string, ManifestAttentionSm90a>;
  /** Variants left to the mma.sync kernel on sm_90a too, and why. */
  readonly refusals: readonly { readonly variant: string; readonly reason: string }[];
}

/** The sm_90a attention units of a compile's variants (pure). */
export function planSm90aAttentions(variants: readonly AttentionVariant[], modelName: string): Sm90aAttentions {
  const sources = new Map<string, string>();
  const byVariant = new Map<string, ManifestAttentionSm90a>();
  const refusals: { variant: string; reason: string }[] = [];
  for (const v of variants) {
    const reason = sm90aAttentionRefusal(v);
    if (reason) {
      refusals.push({ variant: v.name, reason });
      continue;
    }
    const plan = planAttentionSm90a(v);
    sources.set(plan.source, renderAttentionSm90a(plan, modelName));
    byVariant.set(v.name, describeAttentionSm90a(plan));
  }
  return { sources, byVariant, refusals };
}

/** The manifest with each variant's sm_90a kernel named (variant.sm90a). */
export function withSm90aAttention<M extends { readonly variants: readonly { readonly name: string }[] }>(manifest: M, byVariant: ReadonlyMap<string, ManifestAttentionSm90a>): M {
  if (byVariant.size === 0) return manifest;
  return { ...manifest, variants: manifest.variants.map((v) => (byVariant.has(v.name) ? { ...v, sm90a: byVariant.get(v.name)! } : v)) };
}
