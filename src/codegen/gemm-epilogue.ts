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
}

export function gemmEpilogues(shape: GemmShape, roles: readonly string[]): GemmEpilogues {
  // Every block pair must be whole: I (= N / 2) a multiple of the interleave.
  const swiglu = roles.includes('gate_up') && shape.n % (2 * GEMM_SWIGLU_INTERLEAVE) === 0;
  return { ...(swiglu ? { swigluInterleave: GEMM_SWIGLU_INTERLEAVE } : {}), ...(roles.includes('lm_head') ? { rowStats: true } : {}) };
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
