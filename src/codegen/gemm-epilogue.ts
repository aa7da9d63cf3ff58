/**
 * The fused epilogues of the generated GEMMs (tidarc_gemm_abi.h), as data the compile and the
 * runner share: which a unit offers follows from its roles and shape. SwiGLU needs gate | up
 * interleaved in blocks of GEMM_SWIGLU_INTERLEAVE rows, so that the two output columns one
 * thread holds (fragments j and j + 1 of the mma tile) are a gate column and its up column;
 * the runner interleaves at upload with `interleaveGateUp`. Pure.
 */
import type { GemmShape } from './gemm-plan.js';

/** TIDARC_GEMM_EPILOGUE_* of tidarc_gemm_abi.h. */
export const GEMM_EPILOGUE = { none: 0, swiglu: 1, rowStats: 2 } as const;
/** TIDARC_GEMM_SWIGLU_INTERLEAVE: one n8 mma fragment of gate rows, then one of up rows. */
export const GEMM_SWIGLU_INTERLEAVE = 8;

export interface GemmEpilogues {
  /** gate | up rows interleaved in blocks of this many (the unit can fuse silu(gate) * up). */
  readonly swigluInterleave?: number;
  /** The unit has <unit>_row_stats: greedy lm_head without logits in memory. */
  readonly rowStats?: boolean;
  /**
   * Fold-norms producer (Reduction::kNormOut, tidarc_gemm_abi.h): the kernels can also write
   * round16(gamma * out) and the rows' float64 chunk sums of out^2 for the RMSNorm after them.
   */
  readonly normOut?: boolean;
  /** Fold-norms consumer (Reduction::kRowScale): the kernels can scale each output row by the 1 / rms a producer's chunk sums give. */
  readonly rowScale?: boolean;
}

/** Roles whose output (the residual stream) an RMSNorm reads next: the producers of a folded norm. */
export const NORM_OUT_ROLES: readonly string[] = ['o', 'down'];
/** Roles that read an RMSNorm's output (fused or, where a model does not fuse, their parts): the consumers. */
export const ROW_SCALE_ROLES: readonly string[] = ['qkv', 'gate_up', 'lm_head', 'q', 'k', 'v', 'gate', 'up'];

/**
 * What the kernels of a unit of `roles` can fuse. The fold-norms code (normOut, rowScale) is
 * compiled into bf16 units only: the runtime folds bf16 models only (an fp16 gamma * x of a large
 * residual can overflow), and a unit that never folds carries no extra code or registers.
 */
export function gemmEpilogues(shape: GemmShape, roles: readonly string[]): GemmEpilogues {
  // Every block pair must be whole: I (= N / 2) a multiple of the interleave.
  const swiglu = roles.includes('gate_up') && shape.n % (2 * GEMM_SWIGLU_INTERLEAVE) === 0;
  const fold = shape.dtype === 'bf16';
  return {
    ...(swiglu ? { swigluInterleave: GEMM_SWIGLU_INTERLEAVE } : {}),
    ...(roles.includes('lm_head') ? { rowStats: true } : {}),
    ...(fold && roles.some((r) => NORM_OUT_ROLES.includes(r)) ? { normOut: true } : {}),
    ...(fold && roles.some((r) => ROW_SCALE_ROLES.includes(r)) ? { rowScale: true } : {}),
  };
}

/**
 * gate [I, cols] | up [I, cols] (row-concatenated in `gateUp`) -> gate rows 0..b-1, up rows
 * 0..b-1, gate rows b..2b-1, ... (b = `block`, I a multiple of b).
 */
export function interleaveGateUp<T extends Uint16Array | Float32Array>(gateUp: T, cols: number, block: number): T {
  const rows = gateUp.length / cols, half = rows / 2;
  if (!Number.isInteger(half) || half % block !== 0) throw new Error(`gate | up of ${rows} rows cannot interleave in blocks of ${block}`);
  const out = new (gateUp.constructor as new (n: number) => T)(gateUp.length);
  for (let b = 0; b < half / block; b++) {
    const from = b * block * cols, len = block * cols;
    out.set(gateUp.subarray(from, from + len), 2 * b * len);
    out.set(gateUp.subarray(half * cols + from, half * cols + from + len), (2 * b + 1) * len);
  }
  return out;
}
