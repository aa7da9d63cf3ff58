/**
 * The physical limit of one decode step (issue 16 item 4), as arithmetic on the spec: the bytes
 * the step must move from memory (every weight it multiplies by, once, and the committed K/V it
 * attends to) over the machine's measured copy bandwidth, against the FLOPs of its matrix
 * products over the machine's measured matmul rate; the step cannot beat the larger of the two.
 * Pure: the measurements come in (machine-peaks.ts measures them).
 */
import type { ModelSpec } from '../ir/model.js';

/** Bytes of a weight or cache element: every DType tidarc runs (bf16, fp16) is 16-bit. */
export const ELEMENT_BYTES = 2;

export interface StepShape {
  /** Tokens through the forward: 1 for AR, K(K+1) for tidar_k<K>. */
  readonly tokens: number;
  /** Rows lm_head computes: 1 for AR, 2K - 1 for TiDAR (K verify rows and K - 1 next drafts). */
  readonly lmHeadRows: number;
  /** Committed prefix L the step attends to. */
  readonly prefix: number;
}

export interface StepCost {
  /** Weights read once: every linear layer, the norms, lm_head, and the step's embedding rows. */
  readonly weightBytes: number;
  /** The committed K and V of every layer read once, and the step's new rows written. */
  readonly kvBytes: number;
  /** 2 multiply-adds per weight per token (lm_head per lm_head row) plus attention's QK^T and PV. */
  readonly flops: number;
}

/** The measured rates the roofline divides by. */
export interface MachinePeaks {
  /** Bytes a millisecond a large copy moves (what it reads plus what it writes). */
  readonly copyBytesPerMs: number;
  /** FLOPs a millisecond of the best measured matrix product. */
  readonly matmulFlopsPerMs: number;
  /** How each was measured (one line). */
  readonly how: string;
}

export interface Roofline {
  readonly memoryMs: number;
  readonly computeMs: number;
  /** max(memoryMs, computeMs). */
  readonly rooflineMs: number;
  readonly bound: 'memory' | 'compute';
}

export function stepCost(spec: ModelSpec, step: StepShape): StepCost {
  const H = spec.hiddenSize, D = spec.headDim, I = spec.intermediateSize, V = spec.vocabSize;
  const q = spec.queryHeads * D, kv = spec.kvHeads * D;
  const layerLinear = q * H + 2 * kv * H + H * q + 3 * I * H;  // q, k, v, o, gate, up, down
  const layerOther = 2 * H + (spec.qkNorm ? 2 * D : 0) + (spec.family === 'qwen2' ? q + 2 * kv : 0);
  const lmHead = V * H;
  const weightElements = spec.layers * (layerLinear + layerOther) + H + lmHead + step.tokens * H;
  const kvElements = spec.layers * 2 * kv * (step.prefix + step.tokens);
  // Each in-step token sees at most the prefix and the step's tokens.
  const attention = spec.layers * 2 * 2 * step.tokens * (step.prefix + step.tokens) * q;
  const flops = 2 * step.tokens * spec.layers * layerLinear + 2 * step.lmHeadRows * lmHead + attention;
  return { weightBytes: weightElements * ELEMENT_BYTES, kvBytes: kvElements * ELEMENT_BYTES, flops };
}

export function roofline(cost: StepCost, peaks: MachinePeaks): Roofline {
  const memoryMs = (cost.weightBytes + cost.kvBytes) / peaks.copyBytesPerMs;
  const computeMs = cost.flops / peaks.matmulFlopsPerMs;
  return { memoryMs, computeMs, rooflineMs: Math.max(memoryMs, computeMs), bound: memoryMs >= computeMs ? 'memory' : 'compute' };
}
