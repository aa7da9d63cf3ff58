/**
 * The device check's sm_90a GEMM part (scripts/device-check/gemm_sm90a.py): per weight shape,
 * the generated sm_90a unit with a kernel for EVERY token tile (wgmma N = 8 .. 256), so that
 * the check can test on the GPU what the emulator cannot prove: that the tensor core's fp32
 * sum of one output element is bitwise the same for every wgmma N (batch invariance of the
 * sm_90a path rests on it), and each kernel against float64. Writes <out>/gemm_sm90a/ (sources,
 * headers, and for a dry run the emulator modules beside the .fatbin paths the check loads)
 * and <out>/gemm_sm90a.json. On the GPU machine the check compiles the sources with nvcc.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type GemmShape, gemmTarget, planReduction } from '../codegen/gemm-plan.js';
import { SM90A_TOKEN_TILES, planSm90aKernels, renderSm90aUnit, sm90aUnitName } from '../codegen/gemm-sm90a.js';
import { ARCHES } from '../codegen/arch.js';
import { NVCC_BASE_FLAGS } from '../codegen/targets.js';
import { readTemplateFile } from '../codegen/templates.js';
import { buildEmulatedModule, emulatedModulePath } from '../emulate/emulated-driver.js';

export interface Sm90aCheckShape extends GemmShape {
  /** Split-K forced (default: the sm_90a plan's). */
  readonly splitK?: number;
  readonly label: string;
}

export interface Sm90aCheckPlan {
  readonly shapes: readonly Sm90aCheckShape[];
  /** Token rows every kernel runs: rows far past one tile, so each kernel has several CTAs along the tokens. */
  readonly rows: number;
}

/** The Qwen3-8B linear layers of issue 14 (qkv and down: the two K of the model), at a step of 272 rows. */
export const FULL_SM90A: Sm90aCheckPlan = {
  shapes: [
    { label: 'qkv', n: 6144, k: 4096, dtype: 'bf16' },
    { label: 'down', n: 4096, k: 12288, dtype: 'bf16' },
    { label: 'o fp16', n: 4096, k: 4096, dtype: 'fp16' },
  ],
  rows: 272,
};
/** Small shapes for --dry-run on the emulated driver: a partial weight tile, a partial k tile, split-K 3 and 1. */
export const DRY_RUN_SM90A: Sm90aCheckPlan = {
  shapes: [
    { label: 'odd bf16', n: 200, k: 520, dtype: 'bf16', splitK: 3 },
    { label: 'odd fp16', n: 160, k: 392, dtype: 'fp16', splitK: 1 },
  ],
  rows: 40,
};

export interface Sm90aBundleUnit {
  readonly label: string;
  readonly unit: string;
  readonly source: string;
  readonly fatbin: string;
  readonly n: number;
  readonly k: number;
  readonly dtype: GemmShape['dtype'];
  readonly splitK: number;
  /**
   * blockW: weight rows per CTA (gemm-sm90a.ts sm90aBlockW), the grid's y and the W map's box;
   * stages: the TMA ring's depth as a compile sizes it (sm90aStages), which sharedBytes holds.
   */
  readonly kernels: readonly { readonly symbol: string; readonly tileT: number; readonly blockW: number; readonly stages: number; readonly threads: number; readonly sharedBytes: number }[];
}

export interface Sm90aBundle {
  readonly format: 1;
  readonly rows: number;
  /** nvcc's flags for a unit (the check adds -o and the source). */
  readonly nvccFlags: readonly string[];
  readonly units: readonly Sm90aBundleUnit[];
}

const HEADERS = ['tidarc_gemm_sm90a.cuh', 'tidarc_gemm_sm90a_abi.h', 'tidarc_gemm.cuh', 'tidarc_gemm_abi.h', 'tidarc_hopper.cuh', 'tidarc_device.cuh'];

/** Writes the bundle under `outDir`; `emulated`: builds each unit's emulator module too (for --dry-run). */
export async function prepareSm90aBundle(outDir: string, plan: Sm90aCheckPlan, emulated: boolean): Promise<Sm90aBundle> {
  const dir = join(outDir, 'gemm_sm90a');
  await mkdir(dir, { recursive: true });
  for (const h of HEADERS) await writeFile(join(dir, h), readTemplateFile(`cuda/${h}`));
  const units: Sm90aBundleUnit[] = [];
  for (const s of plan.shapes) {
    const shape: GemmShape = { n: s.n, k: s.k, dtype: s.dtype };
    const reduction = planReduction(shape, gemmTarget(['sm_90a']), s.splitK);
    const kernels = planSm90aKernels(shape, SM90A_TOKEN_TILES, reduction);  // one kernel per tile: m = the tile itself, its ring as a compile sizes it
    const unit = sm90aUnitName(shape);
    const source = `gemm_sm90a/${unit}.cu`, fatbin = `gemm_sm90a/${unit}.fatbin`;
    await writeFile(join(outDir, source), renderSm90aUnit(shape, reduction, kernels, [s.label], 'device-check'));
    if (emulated) {
      const names = kernels.map((k) => ({ name: k.symbol, argsType: 'TidarcGemmSm90aArgs' }));
      await buildEmulatedModule(join(outDir, source), emulatedModulePath(join(outDir, fatbin)), names, { includeDirs: [dir] });
    }
    units.push({
      label: s.label, unit, source, fatbin, n: s.n, k: s.k, dtype: s.dtype, splitK: reduction.splitK,
      kernels: kernels.map((k) => ({ symbol: k.symbol, tileT: k.tileT, blockW: k.blockW, stages: k.stages, threads: k.threads, sharedBytes: k.sharedBytes })),
    });
  }
  const bundle: Sm90aBundle = { format: 1, rows: plan.rows, nvccFlags: [...NVCC_BASE_FLAGS, ARCHES.sm_90a.gencode], units };
  await writeFile(join(outDir, 'gemm_sm90a.json'), `${JSON.stringify(bundle, null, 2)}\n`);
  return bundle;
}
