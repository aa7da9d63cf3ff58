/**
 * The step kinds of a compiled model as step graphs (ir/step-graph.ts): each attention variant
 * the compile makes names a step (tidar_k<K>, ar, prefill_c<C>, block_k<K>), with its token
 * count and schedule, and a backend's graph is the base graph (cpu) or its fused rewrite
 * (cuda, with the SwiGLU epilogue when the gate_up GEMM offers it). Pure.
 */
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import { type StepGraph, type StepRequest, buildStepGraph } from '../ir/step-graph.js';
import { compactOp } from '../ir/step-render.js';
import { gpuRewriteOptions, rewriteForGpu, validateGraph } from '../ir/step-rewrite.js';
import { type NormFolding, normFolding } from '../ir/step-fold-norms.js';
import { gemmEpilogues } from './gemm-epilogue.js';
import { planModelGemms } from './gemm-model.js';
import { PREFILL_CHUNK } from './variant.js';
import { AR_VARIANT, blockVariantName, parseVariantName, prefillVariantName, tidarVariantName } from './variant-name.js';

export const GRAPH_BACKENDS = ['cpu', 'cuda'] as const;
export type GraphBackend = (typeof GRAPH_BACKENDS)[number];

const PREFILL = { size: PREFILL_CHUNK, variant: prefillVariantName(PREFILL_CHUNK) };

/** The step kinds a compile of `spec` runs: its decode steps, then its prefill's. */
export function stepKinds(spec: Pick<ModelSpec, 'draftLengths'>): string[] {
  return [...spec.draftLengths.map(tidarVariantName), AR_VARIANT, prefillVariantName(PREFILL_CHUNK), ...spec.draftLengths.map(blockVariantName)];
}

/**
 * A step kind's pass: a decode step is its variant's tokens in one launch; prefill_c<C> one
 * whole chunk of prompt; block_k<K> a one-chunk prompt and the trailing mask block.
 */
export function stepRequest(spec: ModelSpec, kind: string, field = 'step', known: readonly string[] = stepKinds(spec)): StepRequest {
  const key = parseVariantName(kind);
  if (!key || !known.includes(kind)) throw new TidarcError('invalid-argument', 'unknown step kind for this model', { field, value: kind, allowed: known.join(', ') });
  switch (key.kind) {
    case 'tidar': return { tokens: key.draft * (key.draft + 1), schedule: { kind: 'step', variant: kind }, prefillChunk: PREFILL };
    case 'ar': return { tokens: 1, schedule: { kind: 'step', variant: kind }, prefillChunk: PREFILL };
    case 'prefill': return { tokens: key.chunk, schedule: { kind: 'prefill', promptTokens: key.chunk }, prefillChunk: PREFILL };
    case 'block': return { tokens: PREFILL_CHUNK + key.draft, schedule: { kind: 'prefill', promptTokens: PREFILL_CHUNK, blockVariant: kind }, prefillChunk: PREFILL };
  }
}

/** The graph a backend runs for a step kind. */
/**
 * `foldNorms`: the cuda graph with its RMSNorms folded as a compile of this codegen has them
 * (compiledFolding; the runtime's default for bf16). Without it, the unfolded graph (the
 * manifest's description of the step graphs).
 */
export function stepGraph(spec: ModelSpec, kind: string, backend: GraphBackend, field = 'step', known?: readonly string[], o: { readonly foldNorms?: boolean } = {}): StepGraph {
  const base = buildStepGraph(spec, stepRequest(spec, kind, field, known));
  if (backend === 'cpu') return validateGraph(base, 'cpu');
  const I = spec.intermediateSize;
  const { swigluInterleave } = gemmEpilogues({ n: 2 * I, k: spec.hiddenSize, dtype: spec.dtype }, ['gate_up']);
  const folding = o.foldNorms ? compiledFolding(spec) : undefined;
  return rewriteForGpu(base, gpuRewriteOptions(swigluInterleave, folding));
}

/**
 * What a compile of `spec` by this codegen would fold, without compiling: the planned GEMM
 * units' flags (a role the GEMMs refuse runs on the SIMT fallback and never folds). The
 * preflight prices a load's folded norms and row sums by it (device-memory.ts); `tidarc graph`
 * draws the cuda graph folded by it.
 */
export function compiledFolding(spec: ModelSpec): NormFolding | undefined {
  if (spec.dtype !== 'bf16') return undefined;  // normFolding's first rule, before the planning
  // Planning a model's GEMMs takes 80-180 ms for Qwen3-8B here; a load's preflight asks per capacity it tries.
  if (compiledFoldings.has(spec)) return compiledFoldings.get(spec);
  const { units } = planModelGemms(spec, spec.draftLengths, ['sm_80']);
  const f = normFolding(spec, units.map((u) => ({ roles: u.roles, ...gemmEpilogues(u.shape, u.roles) })));
  const folding = 'folding' in f ? f.folding : undefined;
  compiledFoldings.set(spec, folding);
  return folding;
}
const compiledFoldings = new WeakMap<ModelSpec, NormFolding | undefined>();

/** One layer's ops on each backend, in brief (ir/step-render.ts compactOp). */
export interface ManifestLayerOps {
  readonly cpu: readonly string[];
  readonly cuda: readonly string[];
}

/**
 * The compiled step kinds' graphs in the manifest, compactly: a layer's ops on each backend
 * (the ops most layers of every step kind have; M = the step's tokens) and per step kind its
 * tokens, attention launches and, where some layer's ops differ from `layer`, those layers
 * alone (`otherLayers`, by layer index: with the norms folded, the cuda graph's layer 0 keeps
 * its input RMSNorm). The cuda graph is the runtime's default for the model (folded where a
 * bf16 compile folds: compiledFolding; `tidarc graph --no-fold-norms` draws the other).
 */
export interface ManifestStepGraphs {
  readonly layers: number;
  readonly layer: ManifestLayerOps;
  readonly steps: Readonly<Record<string, { readonly tokens: number; readonly launches: readonly string[]; readonly otherLayers?: Readonly<Record<string, ManifestLayerOps>> }>>;
}

export function describeStepGraphs(spec: ModelSpec, variants: readonly string[]): ManifestStepGraphs {
  const kinds = variants.filter((v) => parseVariantName(v) !== undefined);
  const key = (x: ManifestLayerOps): string => JSON.stringify(x);
  const perKind = kinds.map((kind) => {
    const graphs = GRAPH_BACKENDS.map((b) => stepGraph(spec, kind, b, 'step', kinds, { foldNorms: true }));
    const layers = Array.from({ length: spec.layers }, (_, l): ManifestLayerOps => {
      const [cpu, cuda] = graphs.map((g) => g.ops.filter((o) => o.layer === l).map((o) => compactOp(o, g)));
      return { cpu: cpu!, cuda: cuda! };
    });
    return { graphs, layers };
  });
  // The layer most layers of all step kinds are (the first such on a tie).
  const counts = new Map<string, { readonly ops: ManifestLayerOps; n: number }>();
  for (const l of perKind.flatMap((k) => k.layers)) {
    const c = counts.get(key(l));
    if (c) c.n++;
    else counts.set(key(l), { ops: l, n: 1 });
  }
  const layer = [...counts.values()].reduce<{ readonly ops: ManifestLayerOps; n: number } | undefined>((best, c) => (!best || c.n > best.n ? c : best), undefined)?.ops ?? { cpu: [], cuda: [] };
  const steps = perKind.map(({ graphs, layers }) => {
    const other = layers.flatMap((l, i) => (key(l) === key(layer) ? [] : [[String(i), l] as const]));
    return { tokens: graphs[0]!.tokens, launches: graphs[0]!.launches.map((l) => l.variant), ...(other.length > 0 ? { otherLayers: Object.fromEntries(other) } : {}) };
  });
  return { layers: spec.layers, layer, steps: Object.fromEntries(kinds.map((k, i) => [k, steps[i]!])) };
}
