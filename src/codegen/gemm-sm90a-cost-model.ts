/**
 * Cost model of one sm_90a GEMM launch (src/codegen/gemm-sm90a.ts), beside the mma.sync one of
 * gemm-cost-model.ts and with the same machine, to predict before a GPU measures. Pure.
 *
 *   HBM bytes   weights once (N K 2: the token tiles of one weight tile run side by side and
 *               share it through L2), activations once (M K 2, 16-bit), then the output
 *               (M N 4, read too when accumulating; SwiGLU: M N/2 2) or, with split-K S > 1,
 *               the partials (S M N 4), which each output tile's last CTA sums (below). A
 *               folded norm's bytes where the output is written (gemm-cost-model.ts normFoldBytes).
 *   L2 bytes    the activations as every weight tile's CTAs load them (W tiles x M K 2) and the
 *               weight tile once per token tile.
 *   FLOPs       2 M N K useful; executed: every CTA's weight rows (128, or 64 with one consumer) x its whole token tile x
 *               the k tiles of its part (TMA zero-fills what lies past N, M and K).
 *   HBM rate    the copy rate, unless the CTAs keep too few bytes in flight to reach it
 *               (in-flight-rate.ts, Little's law): the TMA ring's stages - 1 weight tiles
 *               (blockW x 64 x 2 bytes each) loading at a time per CTA (the activations come
 *               from L2 after the first weight tile's CTAs read them).
 *   time        max(HBM / HBM rate, L2 / L2 rate, executed / wgmma rate + wave term) + the
 *               split-K sum in the launch (gemm-cost-model.ts splitSumS: the last CTAs read the
 *               other parts' partials at the per-SM L2 rate; `splitSum: 'kernel'` the old
 *               separate reduce kernel, for before / after).
 *   wgmma rate  the measured bf16 matmul rate (torch's cuBLAS runs wgmma), not mma.sync's:
 *               operands come straight from shared memory, so ldmatrix does not bound it.
 *               Its shared-memory reads are not modelled: a consumer's m64nNk16 reads (64 + N)
 *               x 32 bytes for 2 x 64 x N x 16 FLOPs, 43 FLOPs a byte at N = 136, above the
 *               790 / 29.7 = 27 at which 128 B a clock an SM would bind.
 */
import { type GemmReduction, type GemmShape } from './gemm-plan.js';
import { SM90A_BLOCK_W, SM90A_STAGES, sm90aSharedBytes, sm90aThreads } from './gemm-sm90a.js';
import { fillRate, pipelineBytesInFlight } from './in-flight-rate.js';
import type { Machine } from './machine.js';
import { occupancy } from './occupancy.js';
import { type GemmLaunchPrediction, type GemmNormFold, type GemmSplitSum, gemmShares, normFoldBytes, splitSumS } from './gemm-cost-model.js';

export interface Sm90aPrediction extends GemmLaunchPrediction {
  readonly tileT: number;
  /** Weight rows per CTA (SM90A_BLOCK_W: two consumer warpgroups; 64: one). */
  readonly blockW: number;
  readonly wgmmaS: number;
  readonly bound: 'HBM' | 'L2' | 'wgmma';
}

export function predictSm90aGemm(shape: GemmShape, r: GemmReduction, tileT: number, rows: number, machine: Machine, registers: number,
  opts: { accumulate?: boolean; epilogue?: 'none' | 'swiglu'; splitSum?: GemmSplitSum; blockW?: number; stages?: number; fold?: GemmNormFold } = {}): Sm90aPrediction {
  const { n, k } = shape, s = r.splitK, blockW = opts.blockW ?? SM90A_BLOCK_W, stages = opts.stages ?? SM90A_STAGES;  // the kernel's ring (gemm-sm90a.ts sm90aStages)
  const wTiles = Math.ceil(n / blockW), tTiles = Math.ceil(rows / tileT);
  const ctas = wTiles * tTiles * s;
  const perSm = occupancy(machine.arch, { registers, sharedBytes: sm90aSharedBytes(tileT, stages, blockW), threads: sm90aThreads(blockW) }).ctasPerSm;
  const weights = n * k * 2, acts = rows * k * 2;
  const output = (opts.epilogue === 'swiglu' ? rows * (n / 2) * 2 : rows * n * 4) * (opts.accumulate ? 2 : 1) + normFoldBytes(n, rows, opts.fold);
  const partials = s * rows * n * 4;
  const mainBytes = weights + acts + (s > 1 ? partials : output);
  const reduceBytes = s > 1 ? (opts.splitSum === 'kernel' ? partials : 0) + output : 0;  // in the launch the other parts' partials come from L2
  const l2Bytes = wTiles * acts + tTiles * weights;
  const usefulFlops = 2 * rows * n * k;
  const executedFlops = 2 * wTiles * blockW * tTiles * tileT * r.kTiles * r.blockK;
  const hbm = fillRate(machine, { bytesPerCta: pipelineBytesInFlight(stages, blockW * r.blockK * 2), ctas, ctasPerSm: perSm });
  const hbmS = mainBytes / hbm.bytesPerS;
  const l2S = l2Bytes / machine.l2BytesPerS;
  const wgmmaS = executedFlops / machine.matmulFlops;
  const smWaves = ctas / machine.sms;
  const waveS = wgmmaS * (Math.ceil(smWaves) - smWaves) / smWaves;
  const reduceS = splitSumS(s, rows, n, output, wTiles * tTiles, machine, opts.splitSum ?? 'launch');
  const main = Math.max(hbmS, l2S, wgmmaS + waveS);
  const predictedS = main + reduceS;
  return {
    tileT, blockW, ctas, ctasPerSm: perSm, hbmBytes: mainBytes + reduceBytes, l2Bytes, usefulFlops, executedFlops, hbmS, hbm, l2S, wgmmaS, waveS, reduceS, predictedS,
    bound: main === hbmS ? 'HBM' : main === l2S ? 'L2' : 'wgmma',
    ...gemmShares(weights + acts + output, usefulFlops, predictedS, machine),
  };
}
