/**
 * The GEMM part of a compile (pure): the sources of a model's GEMM units and their manifest
 * entries, one per kernel, plus the refusals.
 */
import type { GemmRefusal, GemmUnit } from './gemm-model.js';
import { gemmEpilogues } from './gemm-epilogue.js';
import { gemmRowStatsSymbol, gemmSymbol } from './gemm-plan.js';
import { gemmSource, renderGemmUnit } from './gemm-source.js';
import type { ManifestGemm, ManifestGemmRefusal } from './manifest.js';

/** Static headers every GEMM source includes: output dir -> template path. */
export const GEMM_STATIC_FILES: readonly (readonly [string, string])[] = [
  ['cuda/tidarc_gemm.cuh', 'cuda/tidarc_gemm.cuh'],
  ['cuda/tidarc_gemm_abi.h', 'cuda/tidarc_gemm_abi.h'],
];

export function renderGemmSources(units: readonly GemmUnit[], modelName: string): Map<string, string> {
  return new Map(units.map((u) => [gemmSource(u.shape), renderGemmUnit(u.shape, u.plans, u.roles, modelName, u.tuned ? { tuned: u.tuned } : {})]));
}

export function describeGemms(units: readonly GemmUnit[]): ManifestGemm[] {
  return units.flatMap((u) => u.plans.map((p): ManifestGemm => {
    const split = u.reduction.splitK > 1;
    const epilogues = gemmEpilogues(u.shape, u.roles);
    return {
      unit: u.name,
      roles: u.roles,
      m: p.m,
      n: u.shape.n,
      k: u.shape.k,
      dtype: u.shape.dtype,
      splitK: u.reduction.splitK,
      kernel: gemmSymbol(u.shape, p.m),
      ...(epilogues.rowStats ? { rowStatsKernel: gemmRowStatsSymbol(u.shape) } : {}),
      ...(epilogues.swigluInterleave ? { swigluInterleave: epilogues.swigluInterleave } : {}),
      ...(epilogues.normOut ? { normOut: true } : {}),
      ...(epilogues.rowScale ? { rowScale: true } : {}),
      source: gemmSource(u.shape),
      ...(u.tuned ? { tuned: { arch: u.tuned.arch, device: u.tuned.measuredOn, tile: u.tuned.tiles[String(p.m)] !== undefined, ...(u.tuned.kernel ? { kernel: u.tuned.kernel } : {}) } } : {}),
      plan: { blockM: p.blockM, blockN: p.blockN, blockK: u.reduction.blockK, warpsM: p.warpsM, warpsN: p.warpsN, stages: p.stages, stagesByArch: p.stagesByArch as Record<string, number>, kTilesPerSplit: u.reduction.kTilesPerSplit },
      launch: {
        grid: [`ceil(rows / ${p.blockM})`, String(p.nTiles), String(u.reduction.splitK)],
        blockM: p.blockM,
        nTiles: p.nTiles,
        block: p.threads,
        dynamicSharedBytes: p.sharedBytes,
        dynamicSharedBytesByArch: p.sharedBytesByArch as Record<string, number>,
        ...(split ? { splitCounters: `ceil(rows / ${p.blockM}) * ${p.nTiles}` } : {}),
      },
    };
  }));
}

export function describeGemmRefusals(refusals: readonly GemmRefusal[]): ManifestGemmRefusal[] {
  return refusals.map((r) => ({ role: r.role, n: r.shape.n, k: r.shape.k, reason: r.reason }));
}
