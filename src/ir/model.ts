/**
 * ModelSpec: the shape of a decoder-only transformer of the Qwen2, Qwen3 or Llama family,
 * plus what TiDAR adds (mask token, draft lengths). Pure data; validateModelSpec checks it.
 */
export type ModelFamily = 'qwen2' | 'qwen3' | 'llama';
export type DType = 'bf16' | 'fp16';

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
