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
  /**
   * What mma.sync m16n8k16 reaches: shared-memory bandwidth for ldmatrix limits it, not the tensor
   * cores. The GEMM and attention cost models also count their kernels' shared-memory bytes
   * (sharedBytesPerS), so narrow warp tiles, which reload fragments more often, are slower than this rate.
   */
  readonly mmaSyncFlops: number;
  /** L2 -> SM bandwidth: an assumption, not measured here. */
  readonly l2BytesPerS: number;
  /** Its SMs' limits (occupancy.ts SM_LIMITS): registers, shared memory, threads, CTAs. */
  readonly arch: ArchName;
  /** Gap between two dependent launches on one stream (the reduce after the main kernel). */
  readonly launchGapS: number;
  /**
   * Time from a load's issue to its data in shared memory when it misses L2 (HBM under load):
   * Little's law turns the bytes a launch keeps in flight into the rate it can pull
   * (in-flight-rate.ts). An assumption, not measured here.
   */
  readonly hbmLatencyS: number;
  /** Shared-memory bandwidth of all SMs (bytes per clock an SM x SMs x clock): what cp.async writes and ldmatrix reads share. */
  readonly sharedBytesPerS: number;
  /**
   * The SM clock under tensor load (Hz), assumed: what sharedBytesPerS is counted at, and what turns
   * a warp-iteration's issue cycles into seconds (attention-cost-model.ts issueS).
   */
  readonly smClockHz: number;
}

/** GH100 under tensor load: below the SXM parts' 1.98 GHz maximum boost (power-limited matmuls do not hold it). */
const GH100_CLOCK_HZ = 1.755e9;

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
  // Unloaded, a global load that misses L2 takes ~400 cycles on H100 (PMC10448217, table 3: 0.23 us
  // at 1.755 GHz; TLB misses add more); under a saturating load requests queue behind each other,
  // so 700 ns is assumed, inside the 500-800 ns quoted for loaded Hopper HBM (H100 microbenchmark
  // studies: arXiv 2402.13499, chipsandcheese.com 2023). The device check should measure it.
  hbmLatencyS: 700e-9,
  // 128 B a clock an SM (32 banks x 4 B; PMC10448217's table: 32,348 GB/s = 128 B x 144 SMs x
  // 1.755 GHz for the full GH100) x 132 SMs x 1.755 GHz assumed under tensor load (below the
  // SXM parts' 1.98 GHz maximum boost: power-limited matmuls do not hold it) = 29.7 TB/s.
  sharedBytesPerS: 128 * 132 * GH100_CLOCK_HZ,
  smClockHz: GH100_CLOCK_HZ,
};

/**
 * The other GPU the device tool lends ("nvidia-h100-x1": NVIDIA H100 80GB HBM3, the SXM5 part),
 * the same GH100 chip with the same 132 SMs, clocks, L2 and shared memory, and HBM3 in place of
 * HBM3e. Only the device check prices for it (src/bench/predicted-machines.ts: its predictions
 * for the GPU it runs on); the planner plans for H200 alone. Figures:
 */
export const H100_SXM: Machine = {
  name: 'H100 SXM (sm_90, 132 SMs)',
  sms: 132,  // H100 SXM5 datasheet (the PCIe part has 114)
  // Assumed, not measured: the 3.35 TB/s HBM3 datasheet rate (H100 SXM5; stas00/ml-engineering's
  // accelerator memory table) at the efficiency of the H200's measured copy (4.3 of 4.8 TB/s, 90%).
  // No stored public measurement of an H100 SXM device-to-device copy was found (the only one,
  // chipsandcheese 2023, is of the PCIe part). The device check's facts part measures it.
  copyBytesPerS: 3.0e12,
  // Measured through torch: torch.mm bf16 squares up to 10240, best size, 789.2 and 783.7 TFLOP/s
  // on two "NVIDIA H100 80GB HBM3" and 790.3 on an "NVIDIA H200" in the same table
  // (zzc0721/torch-performance-test-data database.md, torch 2.8); stas00/ml-engineering's MAMF table:
  // H100 SXM 794.5, "H200 is the same". So within 1% of the H200's 790.
  matmulFlops: 785e12,
  mmaSyncFlops: 395e12,  // as the H200: shared-memory bandwidth for ldmatrix limits it, the same SMs at the same clocks
  l2BytesPerS: 10e12,    // assumed, as the H200 (the same L2)
  arch: 'sm_90',
  launchGapS: 2e-6,      // as the H200 (the same driver path)
  hbmLatencyS: 700e-9,   // as the H200: its source (PMC10448217) measured an H100
  sharedBytesPerS: 128 * 132 * GH100_CLOCK_HZ,  // as the H200: the same SMs and clock assumption
  smClockHz: GH100_CLOCK_HZ,
};
