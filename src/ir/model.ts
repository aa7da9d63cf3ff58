/**
 * ModelSpec: the shape of a decoder-only transformer of the Qwen2, Qwen3 or Llama family,
 * plus what TiDAR adds (mask token, draft lengths). Pure data; validateModelSpec checks it.
 */
import type { DType } from '../util/dtype.js';

export type { DType };
export type ModelFamily = 'qwen2' | 'qwen3' | 'llama';

export interface RopeScaling {
  /** 'linear' and 'llama3' are supported; anything else is refused by import-hf. */
  readonly type: 'linear' | 'llama3';
  readonly factor: number;
  readonly lowFreqFactor?: number;
  readonly highFreqFactor?: number;
  readonly originalMaxPositionEmbeddings?: number;
}

export interface ModelSpec {
  readonly name: string;
  readonly family: ModelFamily;
  readonly layers: number;
  readonly hiddenSize: number;
  readonly queryHeads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly intermediateSize: number;
  readonly vocabSize: number;
  readonly ropeTheta: number;
  readonly ropeScaling?: RopeScaling;
  readonly rmsNormEps: number;
  /** Per-head RMSNorm of q and k before RoPE (Qwen3). */
  readonly qkNorm: boolean;
  readonly tieEmbeddings: boolean;
  readonly dtype: DType;
  /** Vocabulary id of the diffusion mask token (151662 in the Qwen vocabulary). */
  readonly maskTokenId: number;
  /** Draft lengths k to compile kernels for. */
  readonly draftLengths: readonly number[];
  readonly maxPositionEmbeddings?: number;
}

/** Head dims our attention kernels are generated for. */
export const SUPPORTED_HEAD_DIMS: readonly number[] = [64, 128];
export const MAX_DRAFT_COMPILE = 32;
/**
 * Query (and KV) heads the attention kernels are generated for: validateModelSpec and the
 * code generator's shape check both read this one limit, so a spec that validates compiles.
 */
export const MAX_HEADS = 256;

/**
 * Positions a model without maxPositionEmbeddings may run, per family: the default
 * max_position_embeddings of transformers' config class (what transformers itself would
 * assume), so that a run is bounded even when the config is silent.
 */
export const DEFAULT_MAX_POSITIONS: Readonly<Record<ModelFamily, number>> = { llama: 2048, qwen2: 32768, qwen3: 32768 };

/** The context a spec runs in: its maxPositionEmbeddings, else its family's default. */
export function contextLength(spec: Pick<ModelSpec, 'family' | 'maxPositionEmbeddings'>): number {
  return spec.maxPositionEmbeddings ?? DEFAULT_MAX_POSITIONS[spec.family];
}
