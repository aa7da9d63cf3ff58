/**
 * The compiler as a list of named passes, pure from ModelSpec to files:
 *   selectVariants -> planVariants -> renderKernels -> renderLibrary -> describeManifest
 * Nothing here touches the file system; src/build/ writes, builds and reports.
 */
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import { TIDARC_VERSION } from '../version.js';
import { type ArchName, type ArchSpec, ARCHES, tileKey } from './arch.js';
import { banner, cpuSymbol, renderCpuVariant, renderCudaVariant } from './kernel-source.js';
import { renderTsLibrary } from './library-ts.js';
import { compileInputKey, type TileOverrides, type VariantTuning } from './input-key.js';
import { sha256 } from '../util/hash.js';
import { describeGemmRefusals, describeGemms, GEMM_STATIC_FILES, renderGemmSources } from './gemm-manifest.js';
import { type GemmRefusal, type GemmUnit, planModelGemms } from './gemm-model.js';
import type { GemmOverrides } from './gemm-plan.js';
import { type Manifest, type ManifestVariant, ABI_FIELDS } from './manifest.js';
import { type AttentionPlan, archProblems, planAttention } from './plan.js';
import { readTemplateFile, renderTemplate } from './templates.js';
import { type AttentionVariant, variantsForModel } from './variant.js';

export interface CompileOptions {
  /** Draft lengths to compile; defaults to the model's own. */
  readonly drafts?: readonly number[];
  readonly arches: readonly ArchName[];
  /** Tuned tiles per variant name (`tidarc compile --tuned`); the others use the arch's tile. */
  readonly tiles?: TileOverrides;
  /** Tuned split-K and tiles per GEMM unit name (`tidarc compile --tuned`); the others use the plan's heuristic. */
  readonly gemms?: GemmOverrides;
}

export interface GeneratedOutput {
  /** Relative path -> file content; sorted keys, LF line ends. */
  readonly files: ReadonlyMap<string, string>;
  readonly manifest: Manifest;
  readonly plans: readonly AttentionPlan[];
}

/** Static headers copied into every output: output dir -> template path. */
const STATIC_FILES: readonly (readonly [string, string])[] = [
  ['cuda/tidarc_abi.h', 'common/tidarc_abi.h'],
  ['cuda/tidarc_attention.cuh', 'cuda/tidarc_attention.cuh'],
  ['cuda/tidarc_device.cuh', 'cuda/tidarc_device.cuh'],
  ['cuda/tidarc_ops.cu', 'cuda/tidarc_ops.cu'],
  ['cuda/tidarc_ops_abi.h', 'cuda/tidarc_ops_abi.h'],
  ['cpu/tidarc_abi.h', 'common/tidarc_abi.h'],
  ['cpu/tidarc_cpu_attention.h', 'cpu/tidarc_cpu_attention.h'],
];

export const NVCC_BASE_FLAGS: readonly string[] = ['-fatbin', '-O3', '-std=c++17', '-Xptxas', '-v'];

export function nvccFlags(arches: readonly ArchSpec[]): string[] {
  return [...NVCC_BASE_FLAGS, ...arches.map((a) => a.gencode)];
}

/** Pass 1: which variants a compile produces. */
export function selectVariants(spec: ModelSpec, options: CompileOptions): AttentionVariant[] {
  if (options.arches.length === 0) {
    throw new TidarcError('invalid-argument', 'at least one GPU architecture is needed', { field: '--arch', allowed: Object.keys(ARCHES).join(', ') });
  }
  return variantsForModel(spec, options.drafts ?? spec.draftLengths);
}

/** Pass 2: one plan per variant (all arches share the tile config of the first; checked). */
export function planVariants(variants: readonly AttentionVariant[], arches: readonly ArchSpec[], tiles: TileOverrides = {}): AttentionPlan[] {
  const archTiles = new Set(arches.map((a) => tileKey(a.tile)));
  if (archTiles.size !== 1) {
    throw new TidarcError('unsupported', 'the requested arches use different tile configs; compile them separately', { field: '--arch', value: arches.map((a) => a.name).join(','), allowed: 'arches with one tile config' });
  }
  const unknown = Object.keys(tiles).filter((name) => !variants.some((v) => v.name === name));
  if (unknown.length > 0) throw new TidarcError('invalid-argument', 'tuned tiles name variants this compile does not make', { field: 'tiles', value: unknown.join(', '), allowed: variants.map((v) => v.name).join(', ') });
  const plans = variants.map((v) => planAttention(v, tiles[v.name] ? { ...arches[0]!.tile, warps: tiles[v.name]!.warps, tileN: tiles[v.name]!.tileN } : arches[0]!.tile));
  const problems = plans.flatMap((p) => arches.flatMap((a) => archProblems(p, a)));
  if (problems.length > 0) throw new TidarcError('unsupported', problems.join('; '));
  return plans;
}

/** Runs every pass; deterministic: the same inputs give byte-identical files. */
export function generateModel(spec: ModelSpec, options: CompileOptions): GeneratedOutput {
  const arches = [...new Set(options.arches)].map((a) => ARCHES[a]);
  const variants = selectVariants(spec, options);
  const plans = planVariants(variants, arches, options.tiles);
  // The linear layers' GEMMs: one source per weight shape, a kernel per step row count.
  const gemms = planModelGemms(spec, options.drafts ?? spec.draftLengths, arches.map((a) => a.name), options.gemms);
  const files = new Map<string, string>();
  for (const [out, src] of STATIC_FILES) files.set(out, readTemplateFile(src));
  for (const plan of plans) {
    files.set(`cuda/${plan.variant.name}.cu`, renderCudaVariant(plan, spec.name));
    files.set(`cpu/${plan.variant.name}.cpp`, renderCpuVariant(plan, spec.name));
  }
  if (gemms.units.length > 0) for (const [out, src] of GEMM_STATIC_FILES) files.set(out, readTemplateFile(src));
  for (const [path, text] of renderGemmSources(gemms.units, spec.name)) files.set(path, text);
  files.set('cpu/tidarc_cpu_library.cpp', renderTemplate('cpu/library.cpp.hbs', { banner: banner(spec.name), modelName: spec.name }));
  files.set('CMakeLists.txt', renderTemplate('build/CMakeLists.txt.hbs', {
    banner: `# generated by tidarc from model "${spec.name}"; do not edit`,
    modelName: spec.name,
    cmakeName: spec.name.replace(/[^A-Za-z0-9_]/g, '_'),
    variants: plans.map((p) => ({ name: p.variant.name })),
    nvccFlags: nvccFlags(arches).join(' '),
  }));
  files.set('model.json', `${JSON.stringify(spec, null, 2)}\n`);

  const inputKey = compileInputKey(spec, variants.flatMap((v) => (v.draft === undefined ? [] : [v.draft])), arches.map((a) => a.name), options.tiles, options.gemms);
  const described = describeManifest(spec, arches, plans, inputKey, options.tiles, gemms);
  for (const [path, text] of renderTsLibrary(described)) files.set(path, text);
  const sorted = new Map([...files.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  // Every other file's hash: a later compile checks them instead of regenerating.
  const manifest: Manifest = { ...described, files: Object.fromEntries([...sorted].map(([path, text]) => [path, sha256(text)])) };
  sorted.set('manifest.json', `${JSON.stringify(manifest, null, 2)}\n`);
  return { files: new Map([...sorted.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))), manifest, plans };
}

export function describeVariant(plan: AttentionPlan, arches: readonly ArchSpec[], tuning?: VariantTuning): ManifestVariant {
  const v = plan.variant;
  return {
    name: v.name,
    description: v.description,
    ...(v.draft === undefined ? {} : { draft: v.draft }),
    mask: { kind: v.mask.kind, params: v.mask.params },
    steps: plan.steps,
    rows: plan.rows,
    shape: v.shape,
    symbols: { cuda: v.symbol, cudaCombine: `${v.symbol}_combine`, cpu: cpuSymbol(plan) },
    sources: { cuda: `cuda/${v.name}.cu`, cpu: `cpu/${v.name}.cpp` },
    plan: {
      tileM: plan.tileM,
      tileN: plan.tile.tileN,
      warps: plan.tile.warps,
      stages: plan.tile.stages,
      rowTiles: plan.rowTiles,
      stepKeyTiles: plan.stepKeyTiles,
      stepTiles: plan.stepTileCounts,
    },
    launch: {
      grid: ['rowTiles', 'batch * kvHeads', 'splits'],
      rowTiles: plan.rowTiles,
      block: plan.threads,
      dynamicSharedBytes: plan.sharedBytes,
      combine: plan.combine,
    },
    arches: arches.map((a) => a.name),
    ...(tuning ? { tuned: { calls: tuning.calls ?? {}, ...tuning.measuredOn } } : {}),
  };
}

export function describeManifest(spec: ModelSpec, arches: readonly ArchSpec[], plans: readonly AttentionPlan[], inputKey: string, tiles: TileOverrides = {},
  gemms: { readonly units: readonly GemmUnit[]; readonly refusals: readonly GemmRefusal[] } = { units: [], refusals: [] }): Manifest {
  return {
    format: 1,
    generator: `tidarc ${TIDARC_VERSION}`,
    abiVersion: 1,
    model: spec,
    arches: arches.map((a) => a.name),
    nvccFlags: nvccFlags(arches),
    abi: { struct: 'TidarcAttentionArgs', header: 'cpu/tidarc_abi.h', fields: ABI_FIELDS },
    variants: plans.map((p) => describeVariant(p, arches, tiles[p.variant.name])),
    gemms: describeGemms(gemms.units),
    ...(gemms.refusals.length > 0 ? { gemmRefusals: describeGemmRefusals(gemms.refusals) } : {}),
    inputKey,
    files: {},
  };
}
