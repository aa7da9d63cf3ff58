/** Small ModelSpecs for tests: one per attention shape, any draft lengths. */
import type { DType, ModelSpec } from '../../src/ir/model.js';

export interface TestShape {
  readonly dtype: DType;
  readonly headDim: number;
  readonly qHeads: number;
  readonly kvHeads: number;
}

export function modelForShape(shape: TestShape, draftLengths: readonly number[], name = `t-${shape.dtype}-d${shape.headDim}-q${shape.qHeads}-kv${shape.kvHeads}`): ModelSpec {
  return {
    name,
    family: 'qwen3',
    layers: 1,
    hiddenSize: shape.qHeads * shape.headDim,
    queryHeads: shape.qHeads,
    kvHeads: shape.kvHeads,
    headDim: shape.headDim,
    intermediateSize: 128,
    vocabSize: 260,
    ropeTheta: 10000,
    rmsNormEps: 1e-6,
    qkNorm: true,
    tieEmbeddings: true,
    dtype: shape.dtype,
    maskTokenId: 259,
    draftLengths,
  };
}
