/**
 * The sm_90a side of the device check's GEMM search (scripts/device-check/gemm_tune.py, issues
 * 14 and 18 item 3): for a searched weight shape, the sm_90a GEMM (TMA + wgmma, gemm-sm90a.ts)
 * at each split-K count the mma.sync search tries, one source per count with a kernel per token
 * tile its row counts need (src/tune/gemm-space.ts gemmSm90aSpace: the planner's tile per M, the
 * only one the runtime launches). The search races it against the mma.sync candidates on a 9.0
 * device and records the winning family with the split-K, once per shape (db.ts GemmTuneEntry).
 * Writes the sources under <out>/gemm/tune and the Hopper headers beside the GEMM's in
 * <out>/gemm/cuda; `emulated` also builds each source's emulator module for the dry run.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ARCHES } from '../codegen/arch.js';
import { type GemmShape, type GemmTarget, gemmUnitName, planReduction } from '../codegen/gemm-plan.js';
import { SM90A_STATIC_FILES, planSm90aKernels, renderSm90aUnit } from '../codegen/gemm-sm90a.js';
import { NVCC_BASE_FLAGS } from '../codegen/targets.js';
import { readTemplateFile } from '../codegen/templates.js';
import { buildEmulatedModule, emulatedModulePath } from '../emulate/emulated-driver.js';
import { gemmSm90aSpace } from '../tune/gemm-space.js';

/** One sm_90a kernel of the search: the token tile of M under one split-K count. */
export interface BundleSm90aCandidate {
  readonly m: number;
  readonly splitK: number;
  readonly tileT: number;
  /** Weight rows per CTA (gemm-sm90a.ts sm90aBlockW): the grid's y and the W map's box. */
  readonly blockW: number;
  readonly symbol: string;
  readonly threads: number;
  readonly sharedBytes: number;
}

export interface BundleSm90aSearch {
  /** nvcc's flags for a source (the check adds -I<bundle>/gemm/cuda, -o and the source): sm_90a alone. */
  readonly nvccFlags: readonly string[];
  readonly sources: readonly { readonly splitK: number; readonly cu: string; readonly fatbin: string }[];
  readonly candidates: readonly BundleSm90aCandidate[];
}

/**
 * The sm_90a search of one shape at `splits` (the mma.sync search's counts) and row counts `ms`,
 * or why the shape has none (lm_head's row statistics: the mma.sync kernel alone runs it).
 */
export async function prepareSm90aSearch(outDir: string, shape: GemmShape, role: string, ms: readonly number[], splits: readonly number[], target: GemmTarget, emulated: boolean): Promise<BundleSm90aSearch | { readonly refused: string }> {
  const space = gemmSm90aSpace(shape, [role], ms, target);
  if (space.refused) return { refused: space.refused };
  const cudaDir = join(outDir, 'gemm', 'cuda');
  for (const [out, src] of SM90A_STATIC_FILES) await writeFile(join(cudaDir, out.replace(/^cuda\//, '')), readTemplateFile(src));
  const sources: BundleSm90aSearch['sources'][number][] = [];
  const candidates: BundleSm90aCandidate[] = [];
  for (const splitK of [...new Set(space.configs.map((c) => c.splitK))].filter((s) => splits.includes(s))) {
    const mine = space.configs.filter((c) => c.splitK === splitK);
    const kernels = planSm90aKernels(shape, mine.map((c) => c.m), planReduction(shape, target, splitK));
    const cu = `gemm/tune/${gemmUnitName(shape)}_sm90a_s${splitK}.cu`;
    const fatbin = cu.replace(/\.cu$/, '.fatbin');
    await writeFile(join(outDir, cu), renderSm90aUnit(shape, planReduction(shape, target, splitK), kernels, [role], 'device-check search'));
    if (emulated) await buildEmulatedModule(join(outDir, cu), emulatedModulePath(join(outDir, fatbin)), kernels.map((k) => ({ name: k.symbol, argsType: 'TidarcGemmSm90aArgs' })), { includeDirs: [cudaDir] });
    sources.push({ splitK, cu, fatbin });
    candidates.push(...mine.map((c) => {
      const k = kernels.find((x) => x.tileT === c.tileT)!;
      return { m: c.m, splitK, tileT: c.tileT, blockW: k.blockW, symbol: k.symbol, threads: k.threads, sharedBytes: k.sharedBytes };
    }));
  }
  return { nvccFlags: [...NVCC_BASE_FLAGS, ARCHES.sm_90a.gencode], sources, candidates };
}
