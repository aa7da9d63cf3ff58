/**
 * The generated GEMMs on the SIMT emulator: g++ compiles a GEMM source (one weight shape, a
 * kernel per planned M) UNCHANGED against runtime/emu with the harness runtime/emu/gemm_main.cpp;
 * a run writes its inputs to a file, launches one kernel over `rows` rows (`launches` times
 * in a row on the same split-K counters, the outputs poisoned again before each: a counter left
 * nonzero shows in the second), and reads `out` and the emulator's findings back.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TidarcError } from '../errors.js';
import { decode } from '../util/dtype.js';
import { GEMM_EPILOGUE } from '../codegen/gemm-epilogue.js';
import { type GemmPlan, gemmRowStatsSymbol, gemmSymbol } from '../codegen/gemm-plan.js';
import { EMU_FLAGS, EMU_KERNEL_FLAGS, compileWith, emulatorIncludeFlags, emulatorSourceDir } from './emulator-build.js';
import type { EmulatorFinding } from './emulator-run.js';

const exec = promisify(execFile);

/** Builds the emulator executable of a GEMM source; `plans` are its kernels (one reduction); `rowStats`: the source has <unit>_row_stats. */
export async function buildGemmEmulator(cxx: string, cudaSource: string, cudaDir: string, plans: readonly GemmPlan[], runtimeObjects: readonly string[], exe: string, rowStats = false): Promise<void> {
  const shape = plans[0]!.shape;
  const kernels = plans.map((p) => `X(${gemmSymbol(shape, p.m)})`).join(' ');
  await compileWith(cxx, [
    ...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...emulatorIncludeFlags(), `-I${cudaDir}`,
    '-include', 'tidarc_emu.h',
    `-DTIDARC_GEMM_KERNELS=${kernels}`,
    ...(rowStats ? [`-DTIDARC_GEMM_ROW_STATS=${gemmRowStatsSymbol(shape)}`] : []),
    '-x', 'c++', cudaSource, join(emulatorSourceDir(), 'gemm_main.cpp'), '-x', 'none', ...runtimeObjects, '-o', exe,
  ], `GEMM ${shape.n}x${shape.k}`);
}

export interface GemmInputs {
  /** Rows the launch computes. */
  readonly rows: number;
  /** [xRows, k] 16-bit bits of the plan's dtype (the activations as the op before stores them); xRows >= rows (or >= every row id). */
  readonly x: Uint16Array;
  /** [n, k] 16-bit bits of the plan's dtype. */
  readonly w: Uint16Array;
  readonly bias?: Float32Array;
  readonly rowIds?: Int32Array;
  /** The old out [rows, n] for an accumulating launch; without it the outputs start as NaN. */
  readonly accumulate?: Float32Array;
  /** Output columns split at [seg1, seg2) into three buffers (tidarc_gemm_abi.h); default one out. */
  readonly segments?: readonly [number, number];
  /** A fused epilogue (tidarc_gemm_abi.h): out [rows, n / 2] for swiglu, `stats` instead of out for rowStats. */
  readonly epilogue?: 'swiglu' | 'rowStats';
  /** Launches of the same inputs one after another (default 1): the last one's outputs come back. */
  readonly launches?: number;
  /** Programmatic dependent launches (PDL): a global access before a thread's grid_dependency_wait is a "pdl" finding. */
  readonly programmatic?: boolean;
  /** Fold-norms producer (a kernel with Reduction::kNormOut): gamma [n] of the folded RMSNorm; the run returns normOut and normSumsq. */
  readonly normOut?: { readonly weight: Float32Array };
  /** Fold-norms consumer (Reduction::kRowScale): a producer's chunk sums [xRows, ceil(cols / 64)], the normed width and eps. */
  readonly rowScale?: { readonly sumsq: Float64Array; readonly cols: number; readonly eps: number };
}

/** The row statistics of a rowStats run (NaN-poisoned where never written). */
export interface GemmRowStats {
  /** [rows, nTiles, 2]: each tile's max and sum of exp(x - max). */
  readonly tileStats: Float32Array;
  readonly tileArgmax: Int32Array;
  readonly argmax: Int32Array;
  readonly max: Float32Array;
  readonly lse: Float32Array;
}

export interface GemmRunResult {
  /** [rows, n], the segments put back side by side (swiglu: [rows, n / 2], its 16-bit output widened exactly). */
  readonly out: Float32Array;
  readonly stats?: GemmRowStats;
  /** normOut runs: [rows, n] 16-bit bits of round16(gamma * out) and [rows, ceil(n / 64)] float64 chunk sums of out^2 (NaN-poisoned where never written). */
  readonly normOut?: Uint16Array;
  readonly normSumsq?: Float64Array;
  readonly findings: readonly EmulatorFinding[];
  readonly counts: Readonly<Record<string, number>>;
  /** False when a launch stopped (deadlock) or the process died on a fault. */
  readonly completed: boolean;
}

const bytesOf = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Column ranges of the output buffers, in file order. */
function segmentRanges(n: number, segments: readonly [number, number] | undefined): [number, number][] {
  const [s1, s2] = segments ?? [n, n];
  return ([[0, s1], [s1, s2], [s2, n]] as [number, number][]).filter(([a, b]) => b > a);
}

/** [rows, n] -> the segments' buffers one after another (and back with `join`). */
function splitColumns(m: Float32Array, rows: number, n: number, ranges: readonly [number, number][]): Float32Array {
  const out = new Float32Array(rows * n);
  let at = 0;
  for (const [a, b] of ranges) for (let r = 0; r < rows; r++) for (let c = a; c < b; c++) out[at++] = m[r * n + c]!;
  return out;
}
function joinColumns(file: Float32Array, rows: number, n: number, ranges: readonly [number, number][]): Float32Array {
  const out = new Float32Array(rows * n);
  let at = 0;
  for (const [a, b] of ranges) for (let r = 0; r < rows; r++) for (let c = a; c < b; c++) out[r * n + c] = file[at++]!;
  return out;
}

export async function runGemmEmulator(exe: string, plan: GemmPlan, inputs: GemmInputs, workDir: string, tag: string): Promise<GemmRunResult> {
  const { n, k } = plan.shape;
  const xRows = inputs.x.length / k;
  const inPath = join(workDir, `${tag}.in`), outPath = join(workDir, `${tag}.out`);
  const ranges = segmentRanges(n, inputs.segments);
  const old = inputs.accumulate ? splitColumns(inputs.accumulate, inputs.rows, n, ranges) : undefined;
  await writeFile(inPath, Buffer.concat([inputs.x, inputs.w, inputs.bias, inputs.rowIds, inputs.normOut?.weight, inputs.rowScale?.sumsq, old].filter((a): a is NonNullable<typeof a> => a !== undefined).map(bytesOf)));
  const args = [
    '--kernel', gemmSymbol(plan.shape, plan.m), '--rows', inputs.rows, '--x-rows', xRows, '--n', n, '--k', k,
    '--split', plan.reduction.splitK, '--block-m', plan.blockM, '--n-tiles', plan.nTiles, '--threads', plan.threads, '--smem', plan.sharedBytes,
    '--bias', inputs.bias ? 1 : 0, '--row-ids', inputs.rowIds ? 1 : 0, '--accumulate', inputs.accumulate ? 1 : 0,
    ...(inputs.segments ? ['--seg1', inputs.segments[0], '--seg2', inputs.segments[1]] : []),
    ...(inputs.epilogue ? ['--epilogue', GEMM_EPILOGUE[inputs.epilogue]] : []), ...(inputs.launches ? ['--launches', inputs.launches] : []),
    ...(inputs.programmatic ? ['--programmatic', 1] : []),
    ...(inputs.normOut ? ['--norm-out', 1] : []),
    ...(inputs.rowScale ? ['--row-scale', 1, '--norm-cols', inputs.rowScale.cols, '--norm-eps', inputs.rowScale.eps] : []),
    '--in', inPath, '--out', outPath,
  ].map(String);
  let stdout: string, fatal = false;
  try {
    stdout = (await exec(exe, args, { maxBuffer: 64 << 20 })).stdout;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number; message: string };
    if (err.code !== 70 || err.stdout === undefined) throw new TidarcError('runtime', `the GEMM emulator failed (${(err.stderr || err.message).trim().split('\n')[0]})`);
    stdout = err.stdout;
    fatal = true;
  }
  const findings: EmulatorFinding[] = [];
  const counts: Record<string, number> = {};
  let completed = false;
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const rec = JSON.parse(line) as Record<string, unknown>;
    if (typeof rec['finding'] === 'string') findings.push({ kind: rec['finding'], kernel: rec['kernel'] as string, block: rec['block'] as [number, number, number], thread: rec['thread'] as [number, number, number], message: rec['message'] as string });
    else if (typeof rec['count'] === 'string') counts[rec['count']] = rec['n'] as number;
    else if (rec['done'] === true) completed = rec['completed'] === true;
  }
  const rows = inputs.rows;
  const elems = inputs.epilogue === 'rowStats' ? 0 : inputs.epilogue === 'swiglu' ? rows * (n / 2) : rows * n;
  if (fatal || !completed) return { out: new Float32Array(elems).fill(Number.NaN), findings, counts, completed: false };
  const raw = await readFile(outPath);
  if (inputs.epilogue === 'rowStats') {
    const tiles = rows * plan.nTiles;
    const take = <T extends Float32Array | Int32Array>(make: new (b: ArrayBuffer) => T, at: number, count: number): T => new make(raw.buffer.slice(raw.byteOffset + at * 4, raw.byteOffset + (at + count) * 4) as ArrayBuffer);
    const stats: GemmRowStats = {
      tileStats: take(Float32Array, 0, 2 * tiles), tileArgmax: take(Int32Array, 2 * tiles, tiles),
      argmax: take(Int32Array, 3 * tiles, rows), max: take(Float32Array, 3 * tiles + rows, rows), lse: take(Float32Array, 3 * tiles + 2 * rows, rows),
    };
    return { out: new Float32Array(0), stats, findings, counts, completed };
  }
  if (inputs.epilogue === 'swiglu') return { out: decode(plan.shape.dtype, new Uint16Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + elems * 2) as ArrayBuffer)), findings, counts, completed };
  const file = new Float32Array(elems);
  new Uint8Array(file.buffer).set(raw.subarray(0, elems * 4));
  if (inputs.normOut) {
    const sums = rows * Math.ceil(n / 64);
    const normOut = new Uint16Array(elems), normSumsq = new Float64Array(sums);
    new Uint8Array(normOut.buffer).set(raw.subarray(elems * 4, elems * 6));
    new Uint8Array(normSumsq.buffer).set(raw.subarray(elems * 6, elems * 6 + sums * 8));
    return { out: joinColumns(file, inputs.rows, n, ranges), normOut, normSumsq, findings, counts, completed };
  }
  return { out: joinColumns(file, inputs.rows, n, ranges), findings, counts, completed };
}
