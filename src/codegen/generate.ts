/**
 * The compiler as a list of named passes, pure from ModelSpec to files:
 *   selectVariants -> planVariants -> renderKernels -> renderLibrary -> describeManifest -> planBuild
 * What each target emits, how it spells C++ and how it builds is its Target record (targets.ts).
 * Nothing here touches the file system; src/build/ writes, builds and reports.
 */
import { ATTENTION_GRID_TEXT } from './attention-grid.js';
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import { TIDARC_VERSION } from '../version.js';
import { type ArchName, type ArchSpec, ARCHES, type TileConfig, tileKey } from './arch.js';
import { planBuild } from './build-steps.js';
import { renderCmakeLists } from './cmake-lists.js';
import { banner, cpuSymbol, renderVariant } from './kernel-source.js';
import { renderTsLibrary } from './library-ts.js';
import { compileInputKey, type TileOverrides, type VariantTuning } from './input-key.js';
import { sha256 } from '../util/hash.js';
import { SM90A_STATIC_FILES, planSm90aGemms, sm90aUnitName } from './gemm-sm90a.js';
import { SM90A_ATTENTION_STATIC_FILES, planSm90aAttentions, withSm90aAttention } from './attention-sm90a.js';
import { sm90aAttentionHeuristic } from './attention-kernel-choice.js';
import { sm90aGemmHeuristic } from './gemm-kernel-choice.js';
import { describeGemmRefusals, describeGemms, GEMM_STATIC_FILES, renderGemmSources } from './gemm-manifest.js';
import { keepGemmUnits, keepSm90aGemms } from './gemm-omission.js';
import { type Target, type TargetName, compileTargets, deviceArches, dialectsOf, nvccFlags, staticFilesOf } from './targets.js';
import { type GemmRefusal, type GemmUnit, planModelGemms } from './gemm-model.js';
import type { GemmOverrides } from './gemm-plan.js';
import { type Manifest, type ManifestVariant, ABI_FIELDS, PROGRAMMATIC_LAUNCH_MIN_CC } from './manifest.js';
import { describeStepGraphs } from './step-kinds.js';
import { type AttentionPlan, archProblems, planAttention } from './plan.js';
import { readTemplateFile, renderTemplate } from './templates.js';
import { type AttentionVariant, pickVariants, variantsForModel } from './variant.js';

export interface CompileOptions {
  /** Draft lengths to compile; defaults to the model's own. */
  readonly drafts?: readonly number[];
  /** The CUDA arches of a compile for the CPU and those arches (what `tidarc compile --arch` means). */
  readonly arches?: readonly ArchName[];
  /** Exactly these targets instead (the kernel cache's 'cpu', 'emulator' or one arch). */
  readonly targets?: readonly TargetName[];
  /** Tuned tiles per variant name (`tidarc compile --tuned`); the others use the arch's tile. */
  readonly tiles?: TileOverrides;
  /** Tuned split-K and tiles per GEMM unit name (`tidarc compile --tuned`); the others use the plan's heuristic. */
  readonly gemms?: GemmOverrides;
  /** Only these attention variants (`tidarc compile --variant`; pickVariants); the manifest names the others in omittedVariants. */
  readonly variants?: readonly string[];
}

export interface GeneratedOutput {
  /** Relative path -> file content; sorted keys, LF line ends. */
  readonly files: ReadonlyMap<string, string>;
  readonly manifest: Manifest;
  readonly plans: readonly AttentionPlan[];
}

export { NVCC_BASE_FLAGS, nvccFlags } from './targets.js';

/** Pass 1: which variants a compile produces (compileTargets refuses a compile with no target). */
export function selectVariants(spec: ModelSpec, options: CompileOptions): AttentionVariant[] {
  compileTargets(options);
  const all = variantsForModel(spec, options.drafts ?? spec.draftLengths);
  return options.variants === undefined ? all : pickVariants(all, options.variants);
}

/**
 * Pass 2: one plan per variant. Every target shares one default tile (checked); plans are checked
 * against the limits of each target's device (none on the CPU).
 */
export function planVariants(variants: readonly AttentionVariant[], targets: readonly (Target | ArchSpec)[], tiles: TileOverrides = {}): AttentionPlan[] {
  const archTiles = new Set(targets.map((a) => tileKey(a.tile)));
  if (archTiles.size !== 1) {
    throw new TidarcError('unsupported', 'the requested arches use different tile configs; compile them separately', { field: '--arch', value: targets.map((a) => a.name).join(','), allowed: 'arches with one tile config' });
  }
  const arches = targets.flatMap((t) => ('device' in t ? (t.device ? [t.device] : []) : [t as ArchSpec]));
  const tile = targets[0]!.tile;
  const unknown = Object.keys(tiles).filter((name) => !variants.some((v) => v.name === name));
  if (unknown.length > 0) throw new TidarcError('invalid-argument', 'tuned tiles name variants this compile does not make', { field: 'tiles', value: unknown.join(', '), allowed: variants.map((v) => v.name).join(', ') });
  const tuned = (t: VariantTuning): TileConfig => ({ ...tile, warps: t.warps, tileN: t.tileN, ...(t.warpRows === undefined ? {} : { warpRows: t.warpRows }), ...(t.stages === undefined ? {} : { stages: t.stages }) });
  // The default stages are sized for every device of the compile (plan.ts defaultStages; a CPU target is no device).
  const devices = arches.filter((a) => Object.hasOwn(ARCHES, a.name));
  const plans = variants.map((v) => planAttention(v, tiles[v.name] ? tuned(tiles[v.name]!) : tile, devices));
  const problems = plans.flatMap((p) => arches.flatMap((a) => archProblems(p, a)));
  if (problems.length > 0) throw new TidarcError('unsupported', problems.join('; '));
  return plans;
}

/** Runs every pass; deterministic: the same inputs give byte-identical files. */
export function generateModel(spec: ModelSpec, options: CompileOptions): GeneratedOutput {
  const targets = compileTargets(options);
  const arches = deviceArches(targets);
  const variants = selectVariants(spec, options);
  // What a filtered compile (options.variants) leaves out: its tuned tiles are not applied (those of no variant still fail).
  const omitted = options.variants === undefined ? [] : variantsForModel(spec, options.drafts ?? spec.draftLengths).map((v) => v.name).filter((n) => !variants.some((v) => v.name === n));
  const tiles = options.tiles && Object.fromEntries(Object.entries(options.tiles).filter(([name]) => !omitted.includes(name)));
  const plans = planVariants(variants, targets, tiles);
  const dialects = dialectsOf(targets);
  // The linear layers' GEMMs: one source per weight shape, a kernel per step row count.
  const gemmsAll = targets.some((t) => t.gemms) ? planModelGemms(spec, options.drafts ?? spec.draftLengths, arches.map((a) => a.name), options.gemms) : { units: [], refusals: [] };
  // A filtered compile keeps the kernels its step kinds launch, planned as in a full compile (gemm-omission.ts).
  const kinds = variants.map((v) => v.name);
  const kept = options.variants === undefined ? undefined : keepGemmUnits(gemmsAll.units, kinds);
  const gemms = kept ? { ...gemmsAll, units: kept.units } : gemmsAll;
  const files = new Map<string, string>();
  for (const [out, src] of staticFilesOf(targets)) files.set(out, readTemplateFile(src));
  for (const plan of plans) {
    for (const d of dialects) files.set(`${d.dir}/${plan.variant.name}${d.sourceExt}`, renderVariant(plan, spec.name, d));
  }
  if (gemms.units.length > 0) for (const [out, src] of GEMM_STATIC_FILES) files.set(out, readTemplateFile(src));
  for (const [path, text] of renderGemmSources(gemms.units, spec.name)) files.set(path, text);
  // --arch sm_90a: the same GEMMs as sm_90a units (wgmma + TMA, gemm-sm90a.ts), compiled for sm_90a alone; not those
  // a tuning record keeps on the mma.sync kernel (tuned.kernel 'sm_90': the search measured it faster on a 9.0 device).
  const sm90aAll = arches.some((x) => x.name === 'sm_90a') && gemms.units.length > 0 ? planSm90aGemms(gemmsAll.units.filter((u) => u.tuned?.kernel !== 'sm_90'), spec.name) : undefined;
  const sm90aKept = sm90aAll && kept ? keepSm90aGemms(sm90aAll, gemmsAll.units, kinds, spec.name) : undefined;
  const sm90a = sm90aKept?.sm90a ?? sm90aAll;
  if (sm90a && sm90a.gemms.length > 0) {
    for (const [out, src] of SM90A_STATIC_FILES) files.set(out, readTemplateFile(src));
    for (const [path, text] of sm90a.sources) files.set(path, text);
  }
  // --arch sm_90a: the compute-bound variants' attention as sm_90a units too (TMA + wgmma, attention-sm90a.ts), compiled for sm_90a alone.
  // The emulator target makes them too (targets.ts sm90aAttention).
  const emulatedSm90a = !arches.some((x) => x.name === 'sm_90a') && targets.some((t) => t.sm90aAttention === true);
  const sm90aAttention = arches.some((x) => x.name === 'sm_90a') || emulatedSm90a ? planSm90aAttentions(plans.map((p) => p.variant), spec.name) : undefined;
  if (sm90aAttention && sm90aAttention.sources.size > 0) {
    for (const [out, src] of SM90A_ATTENTION_STATIC_FILES) files.set(out, readTemplateFile(src));
    for (const [path, text] of sm90aAttention.sources) files.set(path, text);
  }
  if (dialects.some((d) => d.dir === 'cpu')) files.set('cpu/tidarc_cpu_library.cpp', renderTemplate('cpu/library.cpp.hbs', { banner: banner(spec.name), modelName: spec.name }));
  files.set('model.json', `${JSON.stringify(spec, null, 2)}\n`);

  const inputKey = compileInputKey(spec, options.drafts ?? spec.draftLengths, targets.map((t) => t.name), options.tiles, options.gemms, options.variants);
  const omittedGemms = [...(kept?.omitted ?? []), ...(sm90aKept?.omitted ?? [])];
  const manifestBase = { ...describeManifest(spec, arches, plans, inputKey, options.tiles, gemms), ...(omitted.length > 0 ? { omittedVariants: omitted } : {}), ...(omittedGemms.length > 0 ? { omittedGemms } : {}) };
  // The emulator's compile names sm_90a among its arches once it made an sm_90a attention unit: the launcher's selection rule (arch.ts selectArch) reads them.
  const compiled = emulatedSm90a && (sm90aAttention?.byVariant.size ?? 0) > 0 ? { ...manifestBase, arches: [...manifestBase.arches, 'sm_90a' as const] } : manifestBase;
  // A compile for sm_90a records the cost models' kernel choice (attention-kernel-choice.ts), which the runtime follows without a
  // tune record; the emulator's compile does not: it exists to run the sm_90a kernels, and its device has no H200 rates.
  const sm90aChosen = sm90aAttention && arches.some((x) => x.name === 'sm_90a')
    ? new Map([...sm90aAttention.byVariant].map(([name, k]) => [name, { ...k, heuristic: sm90aAttentionHeuristic(plans.find((p) => p.variant.name === name)!) }]))
    : sm90aAttention?.byVariant;
  // The same for the GEMMs: each sm_90a unit records the family the models predict faster over its row counts (gemm-kernel-choice.ts),
  // a filtered compile's over every row count too (its units are the full compile's), so it chooses as the full compile does.
  const gemmsSm90a = sm90a?.gemms.map((g) => ({ ...g, heuristic: sm90aGemmHeuristic(gemmsAll.units.find((u) => sm90aUnitName(u.shape) === g.unit)!) }));
  const described: Manifest = withSm90aAttention({ ...compiled, ...(gemmsSm90a && gemmsSm90a.length > 0 ? { gemmsSm90a } : {}) }, sm90aChosen ?? new Map());
  // The build `tidarc compile` runs, as CMake: the same steps over the same files.
  files.set('CMakeLists.txt', renderCmakeLists(spec.name, targets, planBuild(targets, described, [...files.keys()])));
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
    symbols: { cuda: v.symbol, cpu: cpuSymbol(plan) },
    sources: { cuda: `cuda/${v.name}.cu`, cpu: `cpu/${v.name}.cpp` },
    plan: {
      tileM: plan.tileM,
      tileN: plan.tile.tileN,
      warps: plan.tile.warps,
      layout: plan.rowTile.layout,
      rowWarps: plan.rowTile.rowWarps,
      warpRows: plan.rowTile.warpRows,
      keyWarps: plan.rowTile.keyWarps,
      stages: plan.tile.stages,
      rowTiles: plan.rowTiles,
      stepKeyTiles: plan.stepKeyTiles,
      stepTiles: plan.stepTileCounts,
    },
    launch: {
      grid: ATTENTION_GRID_TEXT,
      rowTiles: plan.rowTiles,
      block: plan.threads,
      dynamicSharedBytes: plan.sharedBytes,
    },
    arches: arches.map((a) => a.name),
    ...(tuning ? { tuned: { calls: tuning.calls ?? {}, ...tuning.measuredOn, ...(tuning.kernel ? { kernel: tuning.kernel } : {}) } } : {}),
  };
}

export function describeManifest(spec: ModelSpec, arches: readonly ArchSpec[], plans: readonly AttentionPlan[], inputKey: string, tiles: TileOverrides = {},
  gemms: { readonly units: readonly GemmUnit[]; readonly refusals: readonly GemmRefusal[] } = { units: [], refusals: [] }): Manifest {
  return {
    format: 1,
    generator: `tidarc ${TIDARC_VERSION}`,
    abiVersion: 2,  // op-abi.ts ABI_VERSION (test/runtime/cuda/abi-render.test.ts keeps them equal)
    model: spec,
    arches: arches.map((a) => a.name),
    // A compile without CUDA sources (the CPU target's) has nothing for nvcc.
    nvccFlags: arches.length > 0 ? nvccFlags(arches) : [],
    ...(arches.length > 0 ? { programmaticLaunch: { minComputeCapability: PROGRAMMATIC_LAUNCH_MIN_CC } } : {}),
    abi: { struct: 'TidarcAttentionArgs', header: 'cpu/tidarc_abi.h', fields: ABI_FIELDS },
    variants: plans.map((p) => describeVariant(p, arches, tiles[p.variant.name])),
    gemms: describeGemms(gemms.units),
    ...(gemms.refusals.length > 0 ? { gemmRefusals: describeGemmRefusals(gemms.refusals) } : {}),
    stepGraphs: describeStepGraphs(spec, plans.map((p) => p.variant.name)),
    inputKey,
    files: {},
  };
}
