// The runtime part's random model (runtime_check.mjs runs it; precompile.mjs compiles its kernels
// ahead on a GPU run): one spec, so that both name the same kernel cache entry.
export function runtimeCheckSpec(drafts) {
  return {
    name: 'gpu-runtime-check', family: 'qwen3', layers: 2, hiddenSize: 256, queryHeads: 4, kvHeads: 2, headDim: 64,
    intermediateSize: 512, vocabSize: 260, ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true,
    dtype: 'bf16', maskTokenId: 259, draftLengths: drafts, maxPositionEmbeddings: 4096,
  };
}
