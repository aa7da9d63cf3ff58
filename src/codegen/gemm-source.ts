/**
 * Renders the GEMM kernels of one weight shape as one CUDA file: a Reduction (the summation
 * order, shared) and one Config per planned M. The view model is prepared here; the template
 * only loops over it.
 */
import { banner } from './kernel-source.js';
import { gemmEpilogues } from './gemm-epilogue.js';
import { type GemmPlan, type GemmShape, gemmReduceSymbol, gemmRowStatsSymbol, gemmSymbol, gemmUnitName } from './gemm-plan.js';
import { renderTemplate } from './templates.js';

export function gemmSource(shape: GemmShape): string {
  return `cuda/${gemmUnitName(shape)}.cu`;
}

/** `plans`: every kernel of `shape` (one reduction; sorted by m). `roles`: what the model uses them for. */
export function renderGemmUnit(shape: GemmShape, plans: readonly GemmPlan[], roles: readonly string[], modelName: string): string {
  const reduction = plans[0]!.reduction;
  if (plans.some((p) => JSON.stringify(p.reduction) !== JSON.stringify(reduction) || JSON.stringify(p.shape) !== JSON.stringify(shape))) {
    throw new Error(`GEMM ${gemmUnitName(shape)}: kernels of one weight shape must share one reduction`);
  }
  return renderTemplate('cuda/tidarc_gemm.cu.hbs', {
    banner: banner(modelName),
    n: shape.n,
    k: shape.k,
    dtype: shape.dtype,
    roles: roles.join(', '),
    cudaType: shape.dtype === 'bf16' ? '__nv_bfloat16' : '__half',
    blockK: reduction.blockK,
    kTiles: reduction.kTiles,
    splitK: reduction.splitK,
    kTilesPerSplit: reduction.kTilesPerSplit,
    splitReduce: reduction.splitK > 1,
    reduceSymbol: gemmReduceSymbol(shape),
    rowStats: gemmEpilogues(shape, roles).rowStats === true,
    rowStatsSymbol: gemmRowStatsSymbol(shape),
    kernels: [...plans].sort((a, b) => a.m - b.m).map((p) => ({
      m: p.m,
      symbol: gemmSymbol(shape, p.m),
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
    })),
  });
}
