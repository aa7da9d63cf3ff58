/** Generated GEMMs on the emulator for tests: a source directory, random inputs, the float64 reference. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type GemmPlan, type GemmShape, type GemmTile, gemmTarget, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';
import { gemmEpilogues } from '../../src/codegen/gemm-epilogue.js';
import { type GemmUnitOptions, gemmSource, renderGemmUnit } from '../../src/codegen/gemm-source.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import type { GemmInputs } from '../../src/emulate/gemm-emulator.js';
import { decode, encode } from '../../src/util/dtype.js';
import { seededRandom } from '../../src/util/random.js';

/** The headers a GEMM source includes, as `tidarc compile` copies them. */
export const GEMM_HEADERS = ['tidarc_gemm.cuh', 'tidarc_gemm_abi.h', 'tidarc_device.cuh'] as const;

/**
 * Plans one kernel per m (one shared reduction: sm_80's target, `splitK` forced) and writes the source and headers under dir/cuda;
 * `tiles`: per m, a tuned tile instead of the heuristic's (as `compile --tuned` plans it); `options`: renderGemmUnit's (e.g. the fold-norms code forced).
 */
export function writeGemmUnit(dir: string, shape: GemmShape, ms: readonly number[], splitK: number, roles: readonly string[] = ['test'], tiles: Readonly<Record<number, GemmTile>> = {}, options: GemmUnitOptions = {}): { source: string; cudaDir: string; plans: GemmPlan[] } {
  const target = gemmTarget(['sm_80']);
  const opts = { rowStats: gemmEpilogues(shape, roles).rowStats === true };  // lm_head: 128-column tiles
  const reduction = planReduction(shape, target, splitK, opts);
  const plans = ms.map((m) => planGemm(shape, m, target, reduction, tiles[m], opts));
  const cudaDir = join(dir, 'cuda');
  mkdirSync(cudaDir, { recursive: true });
  for (const h of GEMM_HEADERS) writeFileSync(join(cudaDir, h), readTemplateFile(`cuda/${h}`));
  const source = join(dir, gemmSource(shape));
  writeFileSync(source, renderGemmUnit(shape, plans, roles, 'test', options));
  return { source, cudaDir, plans };
}

export interface GemmProblem {
  /** The activations' and weights' 16-bit type: the kernels read x as these bits (gemmInputs encodes it). */
  readonly dtype: GemmShape['dtype'];
  readonly x: Float32Array;      // [xRows, k]
  readonly w: Uint16Array;       // [n, k]
  readonly bias: Float32Array;   // [n]
  readonly old: Float32Array;    // [xRows, n]: the accumulate target
}

export function randomGemmProblem(shape: GemmShape, xRows: number, seed: number): GemmProblem {
  const rng = seededRandom(seed);
  const { n, k } = shape;
  return {
    dtype: shape.dtype,
    x: Float32Array.from({ length: xRows * k }, () => rng.normal()),
    w: encode(shape.dtype, Float32Array.from({ length: n * k }, () => 0.5 * rng.normal())),
    bias: Float32Array.from({ length: n }, () => rng.normal()),
    old: Float32Array.from({ length: xRows * n }, () => rng.normal()),
  };
}

export function gemmInputs(p: GemmProblem, rows: number, opts: { bias?: boolean; accumulate?: boolean; rowIds?: Int32Array; segments?: readonly [number, number]; launches?: number } = {}): GemmInputs {
  const n = p.bias.length;
  return {
    rows, x: encode(p.dtype, p.x), w: p.w,
    ...(opts.bias ? { bias: p.bias } : {}),
    ...(opts.rowIds ? { rowIds: opts.rowIds } : {}),
    ...(opts.accumulate ? { accumulate: p.old.slice(0, rows * n) } : {}),
    ...(opts.segments ? { segments: opts.segments } : {}),
    ...(opts.launches ? { launches: opts.launches } : {}),
  };
}

/**
 * The float64 reference of the kernels' definition (tidarc_gemm_abi.h): x rounded to the
 * 16-bit type, then sum_k x16 w, + bias, + old. `bound` is a rigorous error bound for a float32
 * kernel that adds the K exact products one at a time, then the split-K parts, the bias and the
 * old out: (K + splitK + 2) roundings of at most 2^-24 of the running magnitude.
 */
export function referenceGemm(shape: GemmShape, p: GemmProblem, rows: number, splitK: number, opts: { bias?: boolean; accumulate?: boolean; rowIds?: Int32Array } = {}): { ref: Float64Array; bound: Float64Array } {
  const { n, k, dtype } = shape;
  const x16 = decode(dtype, encode(dtype, p.x));
  const w = decode(dtype, p.w);
  const ref = new Float64Array(rows * n), bound = new Float64Array(rows * n);
  const steps = k + splitK + 2;
  for (let r = 0; r < rows; r++) {
    const src = opts.rowIds ? opts.rowIds[r]! : r;
    for (let c = 0; c < n; c++) {
      let s = 0, mag = 0;
      for (let i = 0; i < k; i++) {
        const t = x16[src * k + i]! * w[c * k + i]!;
        s += t;
        mag += Math.abs(t);
      }
      if (opts.bias) s += p.bias[c]!, mag += Math.abs(p.bias[c]!);
      if (opts.accumulate) s += p.old[r * n + c]!, mag += Math.abs(p.old[r * n + c]!);
      ref[r * n + c] = s;
      bound[r * n + c] = 1.01 * steps * 2 ** -24 * mag + 1e-30;
    }
  }
  return { ref, bound };
}

/** Largest |out - ref| / bound (> 1 is a mismatch; NaN and infinity count as Infinity). */
export function worstRatio(out: Float32Array, ref: Float64Array, bound: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(out[i]! - ref[i]!) / bound[i]!;
    worst = Math.max(worst, Number.isFinite(e) ? e : Infinity);
  }
  return worst;
}
