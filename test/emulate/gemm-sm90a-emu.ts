/**
 * Builds and runs generated sm_90a GEMM units on the SIMT emulator for gemm-sm90a*.test.ts
 * (harness: fixtures/gemm_sm90a_main.cpp): a unit rendered by src/codegen/gemm-sm90a.ts,
 * inputs with 16-bit activations, the outputs and findings of one launch.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type GemmReduction, type GemmShape, gemmTarget, planReduction } from '../../src/codegen/gemm-plan.js';
import { SM90A_STAGES, type Sm90aFold, type Sm90aKernel, planSm90aKernels, renderSm90aUnit, sm90aSource } from '../../src/codegen/gemm-sm90a.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { EMU_FLAGS, EMU_KERNEL_FLAGS, emulatorIncludeFlags } from '../../src/emulate/emulator-build.js';
import { encode } from '../../src/util/dtype.js';
import { packageRoot } from '../../src/util/paths.js';
import type { GemmProblem } from '../helpers/gemm.js';
import { parseHarnessReport } from './hopper-emu.js';

const exec = promisify(execFile);
export const SM90A_HEADERS = ['tidarc_gemm_sm90a.cuh', 'tidarc_gemm_sm90a_abi.h', 'tidarc_gemm.cuh', 'tidarc_gemm_abi.h', 'tidarc_hopper.cuh', 'tidarc_device.cuh'] as const;
const HARNESS = join(packageRoot(), 'test', 'emulate', 'fixtures', 'gemm_sm90a_main.cpp');

export interface Sm90aUnit {
  readonly source: string;
  readonly cudaDir: string;
  readonly reduction: GemmReduction;
  readonly kernels: Sm90aKernel[];
}

/** Renders the unit of `shape` for rows `ms` (sm_90a's reduction, `splitK` forced; the 4-stage ring, or `stages`) under dir/cuda with its headers. */
export function writeSm90aUnit(dir: string, shape: GemmShape, ms: readonly number[], splitK: number, roles: readonly string[] = ['test'], stages?: number, fold?: Sm90aFold): Sm90aUnit {
  const reduction = planReduction(shape, gemmTarget(['sm_90a']), splitK);
  const kernels = planSm90aKernels(shape, ms, reduction, { stages: stages ?? SM90A_STAGES });
  const cudaDir = join(dir, 'cuda');
  mkdirSync(cudaDir, { recursive: true });
  for (const h of SM90A_HEADERS) writeFileSync(join(cudaDir, h), readTemplateFile(`cuda/${h}`));
  const source = join(dir, sm90aSource(shape));
  writeFileSync(source, renderSm90aUnit(shape, reduction, kernels, roles, 'test', fold ? { fold } : {}));
  return { source, cudaDir, reduction, kernels };
}

/** One executable per unit: every kernel of it. */
export async function buildSm90aHarness(cxx: string, shape: GemmShape, unit: Pick<Sm90aUnit, 'source' | 'cudaDir' | 'reduction' | 'kernels'>, runtimeObjects: readonly string[], exe: string): Promise<void> {
  await exec(cxx, [
    ...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...emulatorIncludeFlags(), `-I${unit.cudaDir}`, '-include', 'tidarc_emu.h',
    `-DTIDARC_SM90A_UNIT="${unit.source}"`, `-DTIDARC_SM90A_KERNELS=${unit.kernels.map((k) => `X(${k.symbol})`).join(' ')}`,
    '-x', 'c++', HARNESS, '-x', 'none', ...runtimeObjects, '-o', exe,
  ], { maxBuffer: 64 << 20 });
}

export interface Sm90aRun {
  readonly out: Float32Array;
  /** Fold-norms producer runs: [rows, n] 16-bit bits of round16(gamma * out) and [rows, ceil(n / 64)] float64 chunk sums (all ones, NaN, where never written). */
  readonly normOut?: Uint16Array;
  readonly normSumsq?: Float64Array;
  readonly completed: boolean;
  readonly counts: Record<string, number>;
  readonly messages: string[];
}

export interface Sm90aCall {
  readonly rows: number;
  readonly bias?: boolean;
  readonly accumulate?: boolean;
  /** 0 none, 1 SwiGLU (TIDARC_GEMM_EPILOGUE_*). */
  readonly epilogue?: 0 | 1;
  /** Launches one after another on the same split-K counters (default 1): the last one's out comes back. */
  readonly launches?: number;
  /** Programmatic dependent launches (PDL): a global access before a thread's grid_dependency_wait is a "pdl" finding. */
  readonly programmatic?: boolean;
  /** Fold-norms producer (a unit with Reduction::kNormOut): gamma [n]; the run returns normOut and normSumsq. */
  readonly normOut?: { readonly weight: Float32Array };
  /** Fold-norms consumer (Reduction::kRowScale): chunk sums [>= rows, ceil(cols / 64)] (the first rows' go in), the normed width and eps. */
  readonly rowScale?: { readonly sumsq: Float64Array; readonly cols: number; readonly eps: number };
}

/** Runs the kernel of `kernel` over the first `call.rows` rows of `p` (x rounded to the weights' 16-bit type). */
export async function runSm90a(exe: string, dir: string, shape: GemmShape, unit: Pick<Sm90aUnit, 'reduction'>, kernel: Sm90aKernel, p: GemmProblem, call: Sm90aCall): Promise<Sm90aRun> {
  const { n, k } = shape, rows = call.rows, epilogue = call.epilogue ?? 0;
  const outCount = rows * (epilogue === 1 ? n / 2 : n);
  const x = encode(shape.dtype, p.x.subarray(0, rows * k));
  const parts = [Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(p.w.buffer, p.w.byteOffset, p.w.byteLength)];
  if (call.bias) parts.push(Buffer.from(p.bias.buffer, p.bias.byteOffset, p.bias.byteLength));
  if (call.accumulate) parts.push(Buffer.from(p.old.buffer, p.old.byteOffset, outCount * 4));
  const chunks = Math.ceil(n / 64), sumsqChunks = call.rowScale ? Math.ceil(call.rowScale.cols / 64) : 0;
  if (call.normOut) parts.push(Buffer.from(call.normOut.weight.buffer, call.normOut.weight.byteOffset, n * 4));
  if (call.rowScale) parts.push(Buffer.from(call.rowScale.sumsq.buffer, call.rowScale.sumsq.byteOffset, rows * sumsqChunks * 8));
  const norm = call.normOut ? 1 : call.rowScale ? 2 : 0;
  const tag = `${kernel.symbol}-${rows}-${call.bias ? 1 : 0}${call.accumulate ? 1 : 0}${epilogue}-${call.launches ?? 1}${call.programmatic ? '-pdl' : ''}${norm ? `-norm${norm}` : ''}`;
  const input = join(dir, `${tag}.in`), output = join(dir, `${tag}.out`);
  writeFileSync(input, Buffer.concat(parts));
  const args = [kernel.symbol, kernel.tileT, kernel.blockW, rows, n, k, unit.reduction.splitK, call.bias ? 1 : 0, call.accumulate ? 1 : 0, epilogue, kernel.sharedBytes, input, output,
    ...(norm ? [call.launches ?? 1, call.programmatic ? 1 : 0, norm, call.rowScale?.cols ?? 0, call.rowScale?.eps ?? 0] : call.programmatic ? [call.launches ?? 1, 1] : call.launches ? [call.launches] : [])].map(String);
  const { stdout } = await exec(exe, args, { maxBuffer: 64 << 20 });
  const bytes = readFileSync(output);
  const copy = (from: number, len: number) => bytes.buffer.slice(bytes.byteOffset + from, bytes.byteOffset + from + len);  // aligned for the typed views
  return {
    out: new Float32Array(copy(0, outCount * 4)),
    ...(call.normOut ? { normOut: new Uint16Array(copy(outCount * 4, rows * n * 2)), normSumsq: new Float64Array(copy(outCount * 4 + rows * n * 2, rows * chunks * 8)) } : {}),
    ...parseHarnessReport(stdout),
  };
}
