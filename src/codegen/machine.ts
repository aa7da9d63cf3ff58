/**
 * The GPU the cost models predict for (src/codegen/attention-cost-model.ts, which the planner's
 * row-tile choice consults; src/bench/gemm-cost-model.ts and the sm_90a models): its rates and
 * per-SM limits, and how many CTAs an SM holds. Pure data and arithmetic.
 */

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
  readonly registersPerSm: number;
  readonly sharedPerSm: number;
  readonly maxThreadsPerSm: number;
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
  registersPerSm: 65_536,
  sharedPerSm: 233_472,
  maxThreadsPerSm: 2048,
  launchGapS: 2e-6,
};

/** CTAs one SM holds: registers (allocated per warp in units of 256), shared memory (+1 KB reserved a CTA), threads. */
export function ctasPerSm(m: Machine, threads: number, registers: number, sharedBytes: number): number {
  const regsPerWarp = Math.ceil((registers * 32) / 256) * 256;
  const byRegs = Math.floor(m.registersPerSm / (regsPerWarp * (threads / 32)));
  const byShared = Math.floor(m.sharedPerSm / (sharedBytes + 1024));
  return Math.max(0, Math.min(byRegs, byShared, Math.floor(m.maxThreadsPerSm / threads), 32));
}
