/**
 * Registers a thread of the mma.sync GEMM (tidarc_gemm.cuh) uses, per tile, as ptxas reported
 * them: what the plan's stage rule (gemm-plan.ts, CTAs per SM through occupancy.ts) and the
 * search's static pruning (src/tune/gemm-space.ts) read before anything is compiled.
 *
 * Measured by `npm run bench:gemm-registers` (bench/gemm-registers.ts): every tile of the search
 * space, 3 stages, Qwen3-8B o (4096 x 4096 bf16), nvcc 13.0 (V13.0.88) for sm_90, at split-K 1
 * and at split-K 2 (every count above 1 runs the same in-launch sum). A thread holds
 * blockM x blockN / 256 float32 accumulators, but the warp layout and the split sum move the
 * count: 64-column tiles use 48-90 (their 128-column twins of the same rows 48-147), so the
 * 128-column figures over-estimated them.
 * What the table does not see: N and K move a figure by up to about 20 (the lm_head, 151936 x
 * 4096, used 80 at 80 rows in 1 warp row where o used 98 before the PDL prologue: bounds checks fold differently), and
 * stages were not varied (the k loop is not unrolled over them). That matters only near 128
 * registers, the line between two CTAs an SM and one; gemm-nvcc.test.ts holds Qwen3-8B's plans
 * to ptxas's answer. sm_80 (`-- --arch sm_80`) is within 5 registers but for 128 x 64 rows in
 * 2 warp rows at split-K > 1 (94) and 128 x 128 in 2 (151): the same tiles pass 128, and the
 * same one spills. Rerun the bench and paste its table when the kernel changes. Remeasured
 * 2026-12-05 with the PDL prologue (the weight L2 prefetch before the grid dependency wait):
 * 25 of 48 rows moved, most down by 1-8 (o at 80 rows in 1 warp row: 98 to 80), up by at
 * most 2; the spills are those of before. Remeasured again the same day when that prefetch
 * became per-thread line prefetches (prefetch.global.L2 over all threads, no lane-serialising
 * R2UR loop): 26 of 48 rows moved, most back to or within 3 of their figures before the PDL
 * prologue (64 x 32 rows in 2 warp rows: 40 to 48; 4 warps, 64 x 128 in 2 at split-K > 1: 128
 * to 142, its figure before the prologue), o at 80 rows in 1 warp row stays 80; the same spills.
 * Fold-norms (2026-12-06): the tables stay the kernel without Reduction::kNormOut / kRowScale,
 * whose code is byte-identical to before (the bench compiles it so; sm_90 cubin compared). With
 * the producer code compiled in (`-- --fold`, as a bf16 o or down unit now is) 40 of 48 rows
 * moved, from 29 down to 27 up; past 128 (8 warps: one CTA an SM instead of two) only where
 * ptxas now caps at 128 and spills at split-K > 1: 128 x 112 rows in 1 warp row (8 bytes) and
 * 128 x 128 in 2 (12; 147 before); 4 warps: 64 x 112 in 1 (12 bytes) and 64 x 128 in 2 (4) now
 * spill at split-K > 1 (128 x 64 in 1 no longer does: 143), 128 x 64 in 4 168 to 191 at split-K > 1.
 * No bundled example plans one of those: gemm-nvcc.test.ts (Qwen3-8B, three arches) finds no
 * spills and the table's CTAs an SM (o at 72 rows: 102 registers where the table says 80).
 */
/** [blockN, blockM, warpsM, registers at split-K 1, at split-K > 1, ptxas spilled (either)]. */
type Measured = readonly [number, number, number, number, number, boolean?];
const MEASURED: readonly Measured[] = [
  [128, 16, 1, 48, 48],
  [128, 32, 1, 64, 80],
  [128, 32, 2, 64, 80],
  [128, 48, 1, 64, 80],
  [128, 64, 1, 76, 74],
  [128, 64, 2, 72, 78],
  [128, 64, 4, 79, 112],
  [128, 80, 1, 80, 80],
  [128, 96, 1, 124, 128],
  [128, 96, 2, 119, 128],
  [128, 112, 1, 126, 126],
  [128, 128, 1, 128, 139],
  [128, 128, 2, 127, 147],
  [128, 128, 4, 120, 128, true],  // split-K > 1 spills 4 bytes
  [64, 32, 2, 48, 48],
  [64, 64, 2, 63, 80],
  [64, 64, 4, 48, 80],
  [64, 96, 2, 64, 80],
  [64, 128, 2, 72, 90],
  [64, 128, 4, 78, 96],
];

/**
 * The same for 4-warp CTAs (128 threads, gemm-plan.ts GEMM_WARPS): a thread holds twice the
 * accumulators of its 8-warp twin. Measured like MEASURED (bench:gemm-registers, nvcc 13.0, sm_90).
 * sm_80 spills the same two tiles at split-K > 1 (128 x 64 rows in 2 warp rows, 128 x 96 in 1)
 * and no other; its figures are within 10 registers but 128 x 112 and 128 x 128 rows in 1 warp
 * row (247 and 255, no spill), 128 x 64 in 1 (149 at split-K > 1) and 64 x 96 in 2 (112, 126).
 */
const MEASURED_4_WARPS: readonly Measured[] = [
  [128, 16, 1, 72, 90],
  [128, 32, 1, 92, 111],
  [128, 32, 2, 92, 112],
  [128, 48, 1, 124, 128],
  [128, 64, 1, 128, 128, true],  // split-K > 1 spills 4 bytes
  [128, 64, 2, 126, 128, true],  // split-K > 1 spills 4 bytes
  [128, 64, 4, 138, 168],
  [128, 80, 1, 165, 166],
  [128, 96, 1, 168, 168, true],  // split-K > 1 spills 8 bytes
  [128, 96, 2, 162, 168],
  [128, 112, 1, 229, 239],
  [128, 128, 1, 241, 243],
  [128, 128, 2, 219, 224],
  [128, 128, 4, 213, 249],
  [64, 16, 1, 56, 52],
  [64, 32, 1, 64, 80],
  [64, 32, 2, 63, 80],
  [64, 48, 1, 80, 95],
  [64, 64, 1, 80, 96],
  [64, 64, 2, 80, 96],
  [64, 64, 4, 87, 113],
  [64, 80, 1, 94, 128],
  [64, 96, 1, 125, 128],
  [64, 96, 2, 126, 122],
  [64, 112, 1, 128, 126],
  [64, 128, 1, 128, 133],
  [64, 128, 2, 128, 142],
  [64, 128, 4, 146, 156],
];

/** Static shared memory of a split-K kernel (ptxas: the last CTA's ticket), counted with the launch's dynamic bytes. */
export const GEMM_SPLIT_STATIC_SHARED_BYTES = 128;

export interface GemmTileShape {
  readonly blockM: number;
  readonly warpsM: number;
  /** Weight rows of the CTA: 128 or 64 (gemm-plan.ts GEMM_BLOCK_N, GEMM_NARROW_BLOCK_N). */
  readonly blockN: number;
  /** Threads of the CTA: 256 (absent) or 128 (4 warps: MEASURED_4_WARPS). */
  readonly threads?: number;
}

export interface GemmTileRegisters {
  readonly registers: number;
  /** ptxas spilled this tile (measured), or the estimate passes what a thread may hold. */
  readonly spills: boolean;
  /** false: no measurement of this tile; the estimate is the widest measured tile of its width plus 2 a float32 accumulator. */
  readonly measured: boolean;
}

/** The most registers a thread may use; past it ptxas spills. */
export const MAX_REGISTERS = 255;

export function gemmRegisters(t: GemmTileShape, splitK: number): GemmTileRegisters {
  const { blockN } = t;
  const pick = (m: Measured): number => (splitK > 1 ? m[4] : m[3]);
  const table = t.threads === 128 ? MEASURED_4_WARPS : MEASURED;
  const known = table.find(([n, rows, warps]) => n === blockN && rows === t.blockM && warps === t.warpsM);
  if (known) return { registers: pick(known), spills: known[5] === true && splitK > 1, measured: true };
  const sameWidth = table.filter(([n]) => n === blockN);
  const widest = sameWidth.length > 0 ? sameWidth.reduce((a, b) => (pick(b) > pick(a) ? b : a)) : ([blockN, 0, 1, 0, 0] as Measured);
  const registers = pick(widest) + 2 * Math.max(0, (t.blockM * blockN - widest[1] * blockN) / (t.threads ?? 256));
  return { registers, spills: registers > MAX_REGISTERS, measured: false };
}
