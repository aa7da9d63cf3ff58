/**
 * Renders the GEMM kernels of one weight shape as one CUDA file: a Reduction (the summation
 * order, shared) and one Config per planned M. The view model is prepared here; the template
 * only loops over it.
 */
import { ARCHES, type ArchName } from './arch.js';
import { banner } from './kernel-source.js';
import { gemmEpilogues } from './gemm-epilogue.js';
import { type GemmPlan, type GemmReduction, type GemmShape, type GemmTuning, gemmRowStatsSymbol, gemmSymbol, gemmTileName, gemmUnitName } from './gemm-plan.js';
import { renderTemplate } from './templates.js';
import { gemmPlanPrefetch } from './gemm-prefetch.js';
import { CUDA_ELEMENT_TYPES } from './targets.js';

export function gemmSource(shape: GemmShape): string {
  return `cuda/${gemmUnitName(shape)}.cu`;
}

/** A search candidate's kernel: the tile in the symbol, since one M has several (`..._m20_b32w2s4`). */
export function gemmCandidateSymbol(p: GemmPlan): string {
  return `${gemmSymbol(p.shape, p.m)}_${gemmTileName(p)}`;
}

/** What every GEMM unit's template says of its weight shape and its reduction (mma.sync and sm_90a alike). */
export function gemmUnitFields(shape: GemmShape, reduction: GemmReduction, roles: readonly string[]) {
  return {
    n: shape.n,
    k: shape.k,
    dtype: shape.dtype,
    roles: roles.join(', '),
    cudaType: CUDA_ELEMENT_TYPES[shape.dtype],
    blockK: reduction.blockK,
    kTiles: reduction.kTiles,
    splitK: reduction.splitK,
    kTilesPerSplit: reduction.kTilesPerSplit,
    splitReduce: reduction.splitK > 1,
  };
}

export interface GemmUnitOptions {
  /** The tuning record the plans came from (a comment says so). */
  readonly tuned?: GemmTuning;
  /** Search candidates: several tiles per M, each named by gemmCandidateSymbol. */
  readonly candidates?: boolean;
  /** The fold-norms code compiled in (Reduction::kNormOut, kRowScale): gemmEpilogues(shape, roles)'s when absent (tests set it for a unit the roles would not give it, e.g. fp16). */
  readonly fold?: { readonly normOut: boolean; readonly rowScale: boolean };
}

/** `plans`: every kernel of `shape` (one reduction; sorted by m). `roles`: what the model uses them for. */
export function renderGemmUnit(shape: GemmShape, plans: readonly GemmPlan[], roles: readonly string[], modelName: string, options: GemmUnitOptions = {}): string {
  const reduction = plans[0]!.reduction;
  if (plans.some((p) => JSON.stringify(p.reduction) !== JSON.stringify(reduction) || JSON.stringify(p.shape) !== JSON.stringify(shape))) {
    throw new Error(`GEMM ${gemmUnitName(shape)}: kernels of one weight shape must share one reduction`);
  }
  return renderTemplate('cuda/tidarc_gemm.cu.hbs', {
    banner: banner(modelName),
    ...gemmUnitFields(shape, reduction, roles),
    tuned: options.tuned ? tunedNote(options.tuned, plans) : '',
    rowStats: gemmEpilogues(shape, roles).rowStats === true,
    normOut: options.fold?.normOut ?? gemmEpilogues(shape, roles).normOut === true,
    rowScale: options.fold?.rowScale ?? gemmEpilogues(shape, roles).rowScale === true,
    rowStatsSymbol: gemmRowStatsSymbol(shape),
    kernels: [...plans].sort((a, b) => a.m - b.m || gemmTileName(a).localeCompare(gemmTileName(b))).map((p) => ({
      m: p.m,
      tag: options.candidates ? `M${p.m}_${gemmTileName(p)}` : `M${p.m}`,
      symbol: options.candidates ? gemmCandidateSymbol(p) : gemmSymbol(shape, p.m),
      mBlocks: p.mBlocks,
      nTiles: p.nTiles,
      splitK: reduction.splitK,
      threads: p.threads,
      warpsM: p.warpsM,
      warpsN: p.warpsN,
      blockM: p.blockM,
      blockN: p.blockN,
      blockK: reduction.blockK,
      stages: p.stages,
      sharedBytes: p.sharedBytes,
      archStages: archStages(p),
      prefetchTiles: gemmPlanPrefetch(p).tiles,
      prefetchBytes: gemmPlanPrefetch(p).bytesPerCta,
    })),
  });
}

/**
 * The arches whose own shared memory gives a kernel more stages than the common `stages`: one
 * `__CUDA_ARCH__` case each (nvcc compiles the unit once per arch), in arch order; arches of
 * one compute capability (sm_90, sm_90a) share a case.
 */
function archStages(p: GemmPlan): { cudaArch: number; arches: string; stages: number; sharedBytes: number }[] {
  const byCc = new Map<number, { arches: string[]; stages: number }>();
  for (const [arch, stages] of Object.entries(p.stagesByArch) as [ArchName, number][]) {
    if (stages === p.stages) continue;
    const [major, minor] = ARCHES[arch].computeCapability;
    const cc = major * 100 + minor * 10;
    const known = byCc.get(cc);
    if (known && known.stages !== stages) throw new Error(`GEMM ${gemmUnitName(p.shape)} M=${p.m}: arches of compute capability ${cc} want ${known.stages} and ${stages} stages`);
    (known ?? byCc.set(cc, { arches: [], stages }).get(cc)!).arches.push(arch);
  }
  return [...byCc.entries()].sort(([a], [b]) => a - b).map(([cudaArch, v]) => ({ cudaArch, arches: v.arches.join(', '), stages: v.stages, sharedBytes: v.stages * p.stageBytes }));
}

function tunedNote(t: GemmTuning, plans: readonly GemmPlan[]): string {
  const ms = plans.map((p) => p.m).filter((m) => t.tiles[String(m)] !== undefined);
  return `split-K ${t.splitK}${ms.length ? ` and the tiles of M = ${ms.join(', ')}` : ''} measured on ${t.measuredOn}, ${t.arch}`;
}
