/**
 * The GPU the cost models predict for (src/codegen/attention-cost-model.ts, which the planner's
 * row-tile choice consults; src/bench/gemm-cost-model.ts and the sm_90a models): its rates, and
 * the arch whose per-SM limits say how many CTAs an SM holds (occupancy.ts, the one rule the
 * manifest, the runtime's split rule and the cost models share). Pure data.
 */
import type { ArchName } from './arch.js';

export interface Machine {
  readonly name: string;
  readonly sms: number;
  /** Device-to-device copy, bytes read + written per second (measured). */
  readonly copyBytesPerS: number;
  /** bf16 dense matmul FLOP/s (measured through torch, 8192^3). */
  readonly matmulFlops: number;
  /** What mma.sync m16n8k16 reaches: shared-memory bandwidth for ldmatrix limits it, not the tensor cores. */
  readonly mmaSyncFlops: number;
  /** L2 -> SM bandwidth: an assumption, not measured here. */
  readonly l2BytesPerS: number;
  /** Its SMs' limits (occupancy.ts SM_LIMITS): registers, shared memory, threads, CTAs. */
  readonly arch: ArchName;
  /** Gap between two dependent launches on one stream (the reduce after the main kernel). */
  readonly launchGapS: number;
}

/** The lent GPU (performance-model.md: measured through PyTorch, Oct-Nov 2026). */
export const H200: Machine = {
  name: 'H200 (sm_90, 132 SMs)',
  sms: 132,
  copyBytesPerS: 4.3e12,
  matmulFlops: 790e12,
  mmaSyncFlops: 395e12,  // ~half of the measured wgmma-path rate (performance-model.md)
  l2BytesPerS: 10e12,    // assumed: ~2.3x the copy rate; the device check should measure it
  arch: 'sm_90',
  launchGapS: 2e-6,
};
