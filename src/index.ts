/** tidarc's public API: the IR, the compiler, and the runtime seam generated libraries use. */
export { TidarcError, type ErrorCode, type ErrorDetails } from './errors.js';
export { TIDARC_VERSION } from './version.js';
export * from './ir/mask.js';
export * from './ir/mask-builders.js';
export { renderStepPredicateCpp, renderOffsetCpp } from './ir/mask-cpp.js';
export type { ModelSpec, ModelFamily, DType, RopeScaling } from './ir/model.js';
export { ARCHES, ARCH_NAMES, parseArch, type ArchName, type ArchSpec } from './codegen/arch.js';
export { generateModel, type CompileOptions, type GeneratedOutput } from './codegen/generate.js';
export type { Manifest, ManifestVariant, BuildReport } from './codegen/manifest.js';
export { planAttention, type AttentionPlan } from './codegen/plan.js';
export { tidarDecodeVariant, arVariant, variantForMask, variantsForModel, type AttentionVariant, type AttentionShape } from './codegen/variant.js';
export { chooseSplits } from './codegen/splits.js';
// The kernel library's runtime: the same entry points a compiled directory loads from tidarc/kernels.
export * from './kernels.js';
// A compiled directory's variants for the emulated CUDA driver ($TIDARC_LIBCUDA): openKernelLibrary's cuda backend there needs them.
export { emulateCompiledDir, type EmulatedDirOptions } from './emulate/emulated-driver.js';
export {
  loadModel,
  type Model,
  type LoadOptions,
  type GenerateOptions,
  type GenerateResult,
  type StreamChunk,
  type BackendChoice,
} from './load/load-model.js';
export { loadCheckpoint, expectedTensors, parameterCount, type Checkpoint } from './model/checkpoint.js';
export { initModel } from './model/init-model.js';
export { KvCache, compareCaches, type CacheComparison } from './runtime/model/kv-cache.js';
export { readSafetensors, writeSafetensors, readShardedSafetensors } from './model/safetensors.js';
export { loadTokenizer, type Tokenizer } from './model/tokenizer.js';
