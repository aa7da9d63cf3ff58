/**
 * Token rows of a model's step kinds: what its GEMMs are planned for (gemm-model.ts, a kernel
 * per row count) and what each weight shape's split-K is chosen over (gemm-plan.ts
 * planReduction: one count for every M, the cost model's least relative regret over these).
 */
import { PREFILL_CHUNK } from './variant.js';

/**
 * The AR step (1), the TiDAR step of each draft length k (k(k+1)) and a prefill chunk; sorted,
 * unique.
 */
export function stepRows(drafts: readonly number[]): number[] {
  return [...new Set([1, ...drafts.map((k) => k * (k + 1)), PREFILL_CHUNK])].sort((a, b) => a - b);
}

/**
 * The rows a split is chosen over where the caller names no model (tests, the tune space's
 * defaults, benches): Qwen3-8B's, the (draft lengths 4, 8, 16: 1, 20, 64, 72, 272).
 * A compile passes its own model's (planModelGemms).
 */
export const DEFAULT_STEP_ROWS: readonly number[] = stepRows([4, 8, 16]);
