/**
 * Cost model of one sm_90a attention launch (templates/cuda/tidarc_attention_sm90a.cuh, planned
 * by src/codegen/attention-sm90a.ts), beside the mma.sync one of attention-cost-model.ts and with
 * the same machine, to predict before a GPU measures (issue 18). Pure.
 *
 *   CTAs        batch x KV heads x row tiles (64 rows a consumer warpgroup) x splits; CTAs per SM
 *               from registers, threads and shared memory (occupancy.ts, CUDA's occupancy rule: 1 at
 *               head dim 128, whose 132 KB ring fills the SM's shared memory).
 *   splits      the count of least predicted time by this model (1 to 32, at most one per prefix
 *               tile), as the runtime's rule picks the count of least estimated time (splits.ts).
 *   HBM bytes   each KV head's prefix K and V once per sequence (its row tiles re-read it from
 *               L2), Q, the step's K and V, O and lse; with splits > 1 the partials (written by
 *               every split, read by the merging CTA).
 *   L2 bytes    the prefix once per row tile (TMA reads all of it for every tile).
 *   FLOPs       useful: 4 D per (query row, visible key); executed: every row tile's 64 x
 *               consumers rows against every key tile it visits (prefix tiles rounded up to 64
 *               keys, the in-step tiles of its schedule), padding rows included.
 *   time        max(HBM / copy rate, L2 / L2 rate, executed / wgmma rate + the softmax not hidden)
 *               / balance + the fill (a CTA's Q and first tile, once per wave, 1 us) + the merge
 *               when splits > 1 (the partials at the L2 rate, O at the copy rate, spread over the
 *               SMs of every CTA: each merges 1 / splits of a row group, tidarc_attention.cuh
 *               split_work) + the schedule's latencies (splits.ts SPLIT_RATES.scheduleS).
 *   wgmma rate  the measured bf16 matmul rate (torch's cuBLAS runs wgmma; operands straight from
 *               shared memory, so no ldmatrix bound).
 *   softmax     measured SASS (sass-counts-sm90a.ts: one consumer warp's key-tile iteration, by
 *               class): a warpgroup's 64 x 64 tile holds each of the 4 sub-partitions for the
 *               iteration's non-tensor cycles (sass-mix.ts iterationCycles without the tensor pipe:
 *               the larger of its issue slots and each CUDA-core pipe, MUFU included), so the
 *               softmax of all tiles takes cycles x warpgroup tiles / (Machine.smClockHz x SMs).
 *               A plan with no measured row keeps the old assumption (softmaxSource 'assumed'):
 *               one exp2 per executed score on the SFU (16 a clock an SM) plus the arithmetic
 *               around it taken as SOFTMAX_PER_EXP x the exp time, at the same clock. How much of
 *               it shows depends on the plan's schedule (assumptions, not measured):
 *               - without ping-pong, the kernel runs the softmax of tile i while the tensor
 *                 cores run P V of tile i - 1 (FA3's intra-warpgroup overlap), so only the
 *                 softmax time past the P V time (half the wgmma time) shows; with two consumers
 *                 (the hardware interleaves their warps) half of that;
 *               - with ping-pong (plan.pingPong: the two consumers take turns issuing their
 *                 wgmmas, FA3's inter-warpgroup overlap on top of the intra-warpgroup one), one
 *                 warpgroup's softmax runs while the other's S and P V keep the tensor cores
 *                 busy: in steady state a pair of tiles takes the longer of the two warpgroups'
 *                 GEMMs and their two softmaxes (both share the SM's CUDA cores and SFU), so only
 *                 the softmax time past the wgmma time shows; plus the ends of a CTA's key loop,
 *                 where nothing of the other warpgroup is left to hide under: taken as one tile's
 *                 softmax of each warpgroup, i.e. the softmax time / the key tiles a CTA visits.
 */
import type { AttentionSm90aPlan } from './attention-sm90a.js';
import { stepVisibility } from '../ir/mask.js';
import type { Machine } from './machine.js';
import { occupancy } from './occupancy.js';
import { SPLIT_RATES } from './splits.js';
import { sm90aLoopCounts } from './sass-counts-sm90a.js';
import { type ClassCounts, type IterationCycles, iterationCycles, PIPE_RESULTS_PER_SM } from './sass-mix.js';

/** MUFU.EX2 results a clock an SM (the throughput table's 9.0 column, sass-mix.ts PIPE_RESULTS_PER_SM): the assumption's SFU rate. */
const EXP2_PER_SM_CLOCK = PIPE_RESULTS_PER_SM.sm_90.mufu;
/** The softmax's arithmetic beside its exp2 (max, scale, rescale, sum, pack), as a multiple of the exp time: assumed, for a plan with no measured SASS row. */
export const SOFTMAX_PER_EXP = 2;

/** One consumer warp's non-tensor cycles of a key-tile iteration of `counts` on a sub-partition: iterationCycles without the tensor pipe (issue slots, each CUDA-core pipe). */
export function sm90aSoftmaxCycles(counts: ClassCounts): IterationCycles {
  return iterationCycles(counts, 'sm_90', 0);
}

/**
 * The softmax's seconds over `warpgroupTiles` (a consumer warpgroup's 64-row x tileN-key tiles,
 * every CTA's) with nothing hidden, and where it came from: the plan's measured SASS row, or the
 * old assumption where the table has none.
 */
export function sm90aSoftmaxRaw(plan: Pick<AttentionSm90aPlan, 'variant' | 'consumers' | 'pingPong' | 'tileN'>, warpgroupTiles: number, machine: Machine): { readonly seconds: number; readonly source: 'measured' | 'assumed' } {
  const counts = sm90aLoopCounts(plan);
  if (counts) return { seconds: (sm90aSoftmaxCycles(counts).cycles * warpgroupTiles) / (machine.smClockHz * machine.sms), source: 'measured' };
  const exps = warpgroupTiles * 64 * plan.tileN;
  return { seconds: ((1 + SOFTMAX_PER_EXP) * exps) / (EXP2_PER_SM_CLOCK * machine.sms * machine.smClockHz), source: 'assumed' };
}
/** The latency before a CTA's first tile (its Q, then the first K/V tile), once per wave: as splits.ts assumes. */
const FILL_S = 1e-6;

export interface AttentionSm90aPrediction {
  readonly splits: number;
  readonly ctas: number;
  readonly ctasPerSm: number;
  readonly balance: number;
  readonly hbmBytes: number;
  readonly l2Bytes: number;
  readonly usefulFlops: number;
  readonly executedFlops: number;
  readonly hbmS: number;
  readonly l2S: number;
  readonly wgmmaS: number;
  /** The softmax time with nothing hidden (sm90aSoftmaxRaw). */
  readonly softmaxRawS: number;
  /** Whether softmaxRawS is from the plan's measured SASS or the old assumption (no row for the plan). */
  readonly softmaxSource: 'measured' | 'assumed';
  /** The softmax time not hidden behind the tensor cores. */
  readonly softmaxS: number;
  readonly mergeS: number;
  readonly fillS: number;
  readonly predictedS: number;
  readonly bound: 'HBM' | 'L2' | 'wgmma';
  /** Useful FLOP/s as a share of the measured bf16 matmul rate. */
  readonly matmulShare: number;
  readonly usefulTflops: number;
}

export function predictAttentionSm90a(plan: AttentionSm90aPlan, call: { readonly batch: number; readonly prefix: number }, machine: Machine, registers: number, splitsOverride?: number): AttentionSm90aPrediction {
  if (splitsOverride !== undefined) return predictAt(plan, call, machine, registers, splitsOverride);
  const most = Math.max(1, Math.min(32, Math.ceil(call.prefix / plan.tileN)));
  let best = predictAt(plan, call, machine, registers, 1);
  for (let s = 2; s <= most; s++) {
    const p = predictAt(plan, call, machine, registers, s);
    if (p.predictedS < best.predictedS) best = p;
  }
  return best;
}

function predictAt(plan: AttentionSm90aPlan, call: { readonly batch: number; readonly prefix: number }, machine: Machine, registers: number, splits: number): AttentionSm90aPrediction {
  const { variant } = plan;
  const { headDim: d, kvHeads, qHeads } = variant.shape;
  const { batch, prefix } = call;
  const n = plan.steps;
  const perSm = Math.max(1, occupancy(machine.arch, { registers, sharedBytes: plan.sharedBytes, threads: plan.threads }).ctasPerSm);
  const prefixTiles = Math.ceil(prefix / plan.tileN);
  const groups = batch * kvHeads * plan.rowTiles;
  const ctas = groups * splits;
  const prefixBytes = batch * kvHeads * prefix * d * 2 * 2;
  const rowsTotal = batch * n * qHeads;
  const partials = splits > 1 ? 2 * splits * rowsTotal * (d + 1) * 4 : 0;
  const hbmBytes = prefixBytes + rowsTotal * d * 2 * 2 + batch * n * kvHeads * d * 2 * 2 + rowsTotal * 4 + partials;
  const l2Bytes = prefixBytes * plan.rowTiles;
  const visible = stepVisibility(variant.mask);
  let stepPairs = 0;
  for (let i = 0; i < visible.length; i++) stepPairs += visible[i]!;
  const prefixSeen = variant.mask.prefix === 'all' ? prefix : 0;
  const usefulFlops = 4 * d * batch * qHeads * (n * prefixSeen + stepPairs);
  const stepKeyVisits = plan.stepTileKey.length * plan.tileN;  // summed over row tiles
  const executedFlops = 4 * d * batch * kvHeads * plan.tileM * (plan.rowTiles * (variant.mask.prefix === 'all' ? prefixTiles * plan.tileN : 0) + stepKeyVisits);
  const wgmmaS = executedFlops / machine.matmulFlops;
  const warpgroupTiles = executedFlops / (4 * d * 64 * plan.tileN);
  const { seconds: softmaxRaw, source: softmaxSource } = sm90aSoftmaxRaw(plan, warpgroupTiles, machine);
  const tilesPerCta = executedFlops / (4 * d * plan.tileM * plan.tileN) / ctas;
  const softmaxS = plan.pingPong
    ? Math.max(0, softmaxRaw - wgmmaS) + softmaxRaw / Math.max(1, tilesPerCta)
    : Math.max(0, softmaxRaw - wgmmaS / 2) * (plan.consumers === 2 ? 0.5 : 1);
  const hbmS = hbmBytes / machine.copyBytesPerS;
  const l2S = l2Bytes / machine.l2BytesPerS;
  const w = ctas / (machine.sms * perSm);
  const balance = w >= 1 ? w / Math.ceil(w) : Math.min(1, ctas / machine.sms);
  const main = Math.max(hbmS, l2S, wgmmaS + softmaxS);
  const mergeBalance = Math.min(1, (ctas + splits) / machine.sms);
  const mergeS = splits > 1 ? ((splits * rowsTotal * (d + 1) * 4) / machine.l2BytesPerS + (rowsTotal * d * 2) / machine.copyBytesPerS) / mergeBalance + SPLIT_RATES.scheduleS : 0;
  const fillS = FILL_S * Math.ceil(Math.ceil(ctas / machine.sms) / perSm);
  const predictedS = main / balance + fillS + mergeS;
  return {
    splits, ctas, ctasPerSm: perSm, balance, hbmBytes, l2Bytes, usefulFlops, executedFlops, hbmS, l2S, wgmmaS, softmaxRawS: softmaxRaw, softmaxSource, softmaxS, mergeS, fillS, predictedS,
    bound: main === hbmS ? 'HBM' : main === l2S ? 'L2' : 'wgmma',
    matmulShare: usefulFlops / predictedS / machine.matmulFlops,
    usefulTflops: usefulFlops / predictedS / 1e12,
  };
}
