/**
 * The bundle the GPU device check runs from (scripts/device-check/device_check.py): the
 * generated CUDA sources of a grid of attention shapes, and grid.json describing every variant
 * the check launches: its kernels, launch geometry, and its mask as the in-step visibility
 * rows (from the IR, so the check's references and its FlexAttention / SDPA baselines use the
 * very mask the kernels were generated from). The check builds the fatbins there with nvcc;
 * `emulated: true` also builds each variant's .emu.so here, for the dry run on the emulated
 * CUDA driver.
 *
 * With `tune`, the bundle also holds the CUDA search of `tidarc tune` (issue 6): the tuned
 * variants of one shape compiled once per candidate tile (warps, tileN, rows a warp, stages), and per variant and
 * shape bucket the configurations the check times (tile x split-KV, capped), with the
 * heuristic default among them. The check writes the winners as a tuning database.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { compileModel } from '../build/compile-model.js';
import { makeDirs } from '../fs/make-dirs.js';
import type { Manifest } from '../codegen/manifest.js';
import { TIDARC_VERSION } from '../version.js';
import type { ModelSpec } from '../ir/model.js';
import { maskFromParams } from '../ir/mask-builders.js';
import { stepVisibility } from '../ir/mask.js';
import { emulateCompiledDir } from '../emulate/emulated-driver.js';
import { TidarcError } from '../errors.js';
import { ARCHES, type ArchName, tileKey } from '../codegen/arch.js';
import { shapeBucket, variantKey } from '../tune/db.js';
import { type AttentionConfig, SPLITS, STAGES, TILE_N, type TuneShape, WARP_ROWS, WARPS, configKey, heuristicConfig, infeasible } from '../tune/space.js';
import { planAttention, type Stages, type WarpRows } from '../codegen/plan.js';
import { AR_VARIANT, parseVariantName, tidarVariantName, variantSteps } from '../codegen/variant-name.js';
import { type BenchGrid, type BenchSection, benchPoints } from './attention-points.js';
import { type AttentionSm90aKernelEntry, SM90A_UNIT_FLAGS, writeSm90aUnit, writeSm90aUnitHeaders } from './attention-sm90a-bundle.js';
import { sm90aAttentionRefusal } from '../codegen/attention-sm90a.js';
import { variantsForModel } from '../codegen/variant.js';
import { writeMachinesFile } from './predicted-machines.js';

export interface BundleShape {
  readonly dtype: 'bf16' | 'fp16';
  readonly headDim: 64 | 128;
  readonly qHeads: number;
  readonly kvHeads: number;
  readonly drafts: readonly number[];
}

/** What issue 5 asks for: bf16 and fp16, head dim 64/128, GQA 1/4/6/8, k in {1, 2, 4, 8, 16}. */
export const FULL_GRID: readonly BundleShape[] = (['bf16', 'fp16'] as const).flatMap((dtype) => [
  { dtype, headDim: 64, qHeads: 8, kvHeads: 8, drafts: [1, 2, 4, 8, 16] },
  { dtype, headDim: 128, qHeads: 32, kvHeads: 8, drafts: [1, 2, 4, 8, 16] },  // Qwen3-8B
  { dtype, headDim: 128, qHeads: 12, kvHeads: 2, drafts: [1, 2, 4, 8, 16] },  // Qwen2.5-1.5B
  { dtype, headDim: 64, qHeads: 16, kvHeads: 2, drafts: [1, 2, 4, 8, 16] },
] as const);

/** Small enough for the emulator in CI: the dry run's grid. */
export const DRY_RUN_GRID: readonly BundleShape[] = [
  { dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 1, drafts: [2] },
  { dtype: 'fp16', headDim: 64, qHeads: 2, kvHeads: 2, drafts: [1] },
];

/** The benchmark's model: Qwen3-8B attention (32 query heads, 8 KV heads, head dim 128, bf16). */
export const BENCH_SHAPE = FULL_GRID[1]!;

export interface BundleVariant {
  readonly name: string;
  readonly draft?: number;
  readonly steps: number;
  /** GQA-packed rows: steps * query heads per KV head. */
  readonly rows: number;
  readonly rowTiles: number;
  readonly block: number;
  /** The kernel's rows a row warp and cp.async stages (its plan): which tile it is. */
  readonly warpRows: number;
  readonly stages: number;
  readonly sharedBytes: number;
  /** The variant's one kernel (split-KV merged in the same launch, a slice per CTA). */
  readonly symbol: string;
  /** Relative to the bundle. */
  readonly cu: string;
  readonly fatbin: string;
  readonly prefixVisible: boolean;
  /** In-step visibility, one string of '0'/'1' per query row (key columns in order). */
  readonly visible: readonly string[];
  /** Position offsets of the in-step tokens (position = prefix length + offset). */
  readonly offsets: readonly number[];
}

export interface BundleModel {
  readonly name: string;
  readonly dir: string;
  readonly dtype: 'bf16' | 'fp16';
  readonly headDim: number;
  readonly qHeads: number;
  readonly kvHeads: number;
  readonly nvccFlags: readonly string[];
  readonly variants: readonly BundleVariant[];
}

export interface BundleGrid {
  readonly format: 1;
  readonly generator: string;
  readonly arch: string;
  readonly models: readonly BundleModel[];
  /** The model the benchmark grid uses. */
  readonly bench: string;
  /** The CUDA search (issue 6), when the bundle was prepared with one. */
  readonly tune?: BundleTune;
  /** The benchmark's points on the bench model: the runtime's split-KV count, workspace and the cost model's prediction (issue 15). */
  readonly attentionBench?: BenchSection;
}

/** SMs of an H200, the GPU the bundle is prepared for: the slots of the heuristic's split rule. */
export const H200_SMS = 132;

/** A candidate kernel of the search: its CTA's warps, keys per KV tile, rows a row warp, cp.async stages (named by arch.ts tileKey). */
export interface Tile {
  readonly warps: number;
  readonly tileN: number;
  readonly warpRows: WarpRows;
  readonly stages: Stages;
}

/** What the device check's CUDA search covers. */
export interface TuneGrid {
  readonly shape: BundleShape;
  /** Variant names as in the manifest. */
  readonly variants: readonly string[];
  readonly batches: readonly number[];
  readonly prefixes: readonly number[];
  /** Candidate tiles (default: every tile of the search space that static pruning keeps for the shape). */
  readonly tiles?: readonly Tile[];
  /** At most this many configurations are timed per bucket. */
  readonly maxConfigs: number;
  /** SMs the heuristic's split rule fills. */
  readonly slots: number;
}

/**
 * Issue 6: the benchmark's shape, k = 4, 8 and AR, batch 1 and 8, L = 1k, 4k, 16k; at most 40
 * timed configurations per bucket, so each of the shape's 36 tiles (and the planned one) is timed at least once.
 */
export const FULL_TUNE: TuneGrid = {
  shape: BENCH_SHAPE, variants: [tidarVariantName(4), tidarVariantName(8), AR_VARIANT], batches: [1, 8], prefixes: [1024, 4096, 16384], maxConfigs: 40, slots: H200_SMS,
};

/**
 * Small enough for the emulator: one variant, three tiles (a 16-row warp at 2 stages, a 32-row
 * warp at 3, and the planned tile prepareTune adds), two short prefixes, and a cap that cuts (6 candidates at L = 64).
 */
export const DRY_RUN_TUNE: TuneGrid = {
  shape: DRY_RUN_GRID[0]!, variants: [tidarVariantName(2)], batches: [1], prefixes: [64, 128],
  tiles: [{ warps: 1, tileN: 16, warpRows: 16, stages: 2 }, { warps: 1, tileN: 32, warpRows: 32, stages: 3 }], maxConfigs: 4, slots: H200_SMS,
};

export interface BundleTuneTile extends Tile {
  /** The tuned variants compiled with this tile (for the arch's own tile: the grid's model itself). */
  readonly model: BundleModel;
}

export interface BundleTuneBucket {
  /** shapeBucket of src/tune/db.ts. */
  readonly bucket: string;
  readonly batch: number;
  readonly prefix: number;
  readonly heuristic: AttentionConfig;
  /** Checked, then timed, in this order: the heuristic first. */
  readonly configs: readonly AttentionConfig[];
  /** Configurations static pruning keeps before the cap. */
  readonly feasible: number;
  /** With the variant's sm_90a kernel: the split counts it is timed at (sm90aSplits). */
  readonly sm90aSplits?: readonly number[];
}

export interface BundleTuneVariant {
  readonly name: string;
  /** variantKey of src/tune/db.ts: the database's key. */
  readonly key: string;
  readonly rows: number;
  readonly buckets: readonly BundleTuneBucket[];
  /**
   * The variant's sm_90a kernel where it has one (attention-sm90a.ts): the search times it beside
   * the tiles on a 9.0 device (issue 18, `tidarc tune` compares both) and records its best.
   */
  readonly sm90a?: AttentionSm90aKernelEntry & { readonly tileN: number; readonly nvccFlags: readonly string[] };
}

export interface BundleTune {
  /** The tidarc version of the database's meta. */
  readonly tidarc: string;
  readonly arch: ArchName;
  readonly slots: number;
  readonly maxConfigs: number;
  /** The shape's model name (shapeName). */
  readonly model: string;
  /** A configuration's kernel: the tile with its warps, tileN, rows a warp and stages. */
  readonly tiles: readonly BundleTuneTile[];
  readonly variants: readonly BundleTuneVariant[];
}

export function shapeName(s: BundleShape): string {
  return `${s.dtype}-d${s.headDim}-q${s.qHeads}-kv${s.kvHeads}`;
}

function specOf(s: BundleShape): ModelSpec {
  return {
    name: shapeName(s), family: 'qwen3', layers: 1, hiddenSize: s.qHeads * s.headDim, queryHeads: s.qHeads, kvHeads: s.kvHeads,
    headDim: s.headDim, intermediateSize: 128, vocabSize: 260, ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true,
    tieEmbeddings: true, dtype: s.dtype, maskTokenId: 259, draftLengths: [...s.drafts],
  };
}

function describe(m: Manifest, dir: string): BundleModel {
  const variants = m.variants.map((v): BundleVariant => {
    const mask = maskFromParams(v.mask.kind, v.mask.params);
    const n = mask.tokens.length;
    const vis = stepVisibility(mask);
    return {
      name: v.name, ...(v.draft === undefined ? {} : { draft: v.draft }), steps: v.steps, rows: v.rows,
      rowTiles: v.launch.rowTiles, block: v.launch.block, warpRows: v.plan.warpRows ?? 16, stages: v.plan.stages, sharedBytes: v.launch.dynamicSharedBytes,
      symbol: v.symbols.cuda,
      cu: `${dir}/${v.sources.cuda}`, fatbin: `${dir}/${v.sources.cuda.replace(/\.cu$/, '.fatbin')}`,
      prefixVisible: mask.prefix === 'all',
      visible: Array.from({ length: n }, (_, q) => Array.from(vis.subarray(q * n, (q + 1) * n)).join('')),
      offsets: mask.tokens.map((t) => t.offset),
    };
  });
  const s = m.model;
  return { name: s.name, dir, dtype: s.dtype, headDim: s.headDim, qHeads: s.queryHeads, kvHeads: s.kvHeads, nvccFlags: m.nvccFlags, variants };
}

/**
 * Every tile (warps, tileN, rows a warp, stages) of the search space that static pruning keeps
 * for the shape on sm_90 with row-stacked warps; prepareTune adds each tuned variant's planned
 * tile and drops, per variant, the tiles its rows cannot use and the 32-row tiles ptxas spilled
 * on sm_90 for its mask kind (space.ts infeasible with TuneShape.maskKind).
 */
export function candidateTiles(shape: Pick<BundleShape, 'headDim' | 'kvHeads'>): Tile[] {
  const probe: TuneShape = { headDim: shape.headDim, rows: 17, kvHeads: shape.kvHeads, batch: 1, prefix: 1 };
  return WARP_ROWS.flatMap((warpRows) => STAGES.flatMap((stages) => WARPS.flatMap((warps) => TILE_N.map((tileN): Tile => ({ warps, tileN, warpRows, stages })))))
    .filter((t) => infeasible({ ...t, splits: 1 }, probe, 'cuda', 'sm_90') === null);
}

/**
 * The tile the compiler builds for `variant` of the shape with nothing tuned, on the bundle's
 * sm_90: the planner's row tile (plan.ts plannedRowTile: the cost model's fastest candidate, so
 * the variant's mask and KV heads matter, not only its rows), keys and stages, as the compile
 * plans them. The heuristic's tile.
 */
export function plannedTile(shape: Pick<BundleShape, 'dtype' | 'headDim' | 'qHeads' | 'kvHeads'>, variant: string): Tile {
  const key = parseVariantName(variant);
  const v = variantsForModel(specOf({ ...shape, drafts: key?.kind === 'tidar' ? [key.draft] : [] })).find((x) => x.name === variant);
  if (!v) throw new TidarcError('invalid-argument', 'no such variant to plan', { field: 'variants', value: variant, allowed: 'ar, tidar_k<draft>, prefill_c<chunk>' });
  const plan = planAttention(v, ARCHES.sm_90.tile, [ARCHES.sm_90]);
  return { warps: plan.rowTile.warps, tileN: plan.tile.tileN, warpRows: plan.rowTile.warpRows, stages: plan.tile.stages };
}

/**
 * The configurations the check times for one bucket, at most `max`, the heuristic first.
 * Every tile is a candidate; its split-KV counts go by rank: first the tile's own rule's split
 * (heuristicConfig with that tile), then the SPLITS values nearest to it in log2 (ties: fewer
 * splits), one rank over all tiles at a time until `max` are taken. So every tile is timed
 * while the tiles are at most `max` (FULL_TUNE: 37 of 40 for k = 4 and 8, rank 1 for the first
 * 3), and the cap drops the split counts farthest from the wave arithmetic, the least likely
 * winners. The heuristic is the variant's planned tile (plannedTile), which `tiles` must hold.
 */
export function tuneConfigs(shape: TuneShape, planned: Tile, tiles: readonly Tile[], slots: number, max: number, ctasPerSm = 1): { heuristic: AttentionConfig; configs: AttentionConfig[]; feasible: number } {
  const heuristic: AttentionConfig = { ...heuristicConfig(shape, slots, planned, ctasPerSm), warpRows: planned.warpRows, stages: planned.stages };
  const first = tiles.find((t) => tileKey(t) === tileKey(planned));
  if (!first) throw new TidarcError('invalid-argument', 'the tuning tiles must include the heuristic\'s', { field: 'tiles', value: tiles.map(tileKey).join(','), allowed: `a list with ${tileKey(planned)}` });
  const ranked = [first, ...tiles.filter((t) => t !== first)].map((t) => {
    // The heuristic's own tile splits as the runtime does (its occupancy); other tiles' occupancy is unknown here: 1 CTA/SM.
    const own = t === first ? heuristic.splits : heuristicConfig(shape, slots, t).splits;
    const distance = (s: number): number => Math.abs(Math.log2(s / own));
    return [...new Set([own, ...SPLITS])]
      .filter((s) => infeasible({ ...t, splits: s }, shape, 'cuda', 'sm_90') === null)
      .sort((a, b) => distance(a) - distance(b) || a - b)
      .map((splits): AttentionConfig => ({ warps: t.warps, tileN: t.tileN, warpRows: t.warpRows, stages: t.stages, splits }));
  });
  const configs: AttentionConfig[] = [];
  for (let rank = 0; configs.length < max && ranked.some((list) => list.length > rank); rank++) {
    for (const list of ranked) if (list[rank] && configs.length < max) configs.push(list[rank]!);
  }
  if (configs[0] === undefined || configKey(configs[0]) !== configKey(heuristic)) throw new TidarcError('runtime', `the heuristic ${configKey(heuristic)} is not among the configurations to time`);
  return { heuristic, configs, feasible: ranked.reduce((n, list) => n + list.length, 0) };
}

function onlyVariants(m: BundleModel, names: readonly string[]): BundleModel {
  const missing = names.filter((n) => !m.variants.some((v) => v.name === n));
  if (missing.length > 0) throw new TidarcError('invalid-argument', 'no such variant to tune', { field: 'variants', value: missing.join(','), allowed: m.variants.map((v) => v.name).join(', ') });
  return { ...m, variants: m.variants.filter((v) => names.includes(v.name)) };
}

/** The tuned variants once per tile (the grid's own model serves the arch's tile), then the buckets' configurations. */
async function prepareTune(t: TuneGrid, o: PrepareOptions, models: readonly BundleModel[], log: (line: string) => void, bench?: BenchSection): Promise<BundleTune> {
  const name = shapeName(t.shape);
  const spec = specOf(t.shape);
  const drafts = t.variants.flatMap((v) => {
    const key = parseVariantName(v);
    return key?.kind === 'tidar' ? [key.draft] : [];
  });
  const base = models.find((m) => m.name === name);
  const tiles: BundleTuneTile[] = [];
  // Each variant's rows (and so its planned row tile and the tiles it can use) from the grid's model.
  const variantRows = new Map(t.variants.map((v) => [v, variantSteps(v) * (t.shape.qHeads / t.shape.kvHeads)] as const));
  const plannedTiles = new Map(t.variants.map((v) => [v, plannedTile(t.shape, v)] as const));
  // Each variant's mask kind: its 32-row tiles that ptxas spilled on sm_90 are pruned (space.ts infeasible, attention-registers.ts).
  const kinds = new Map(variantsForModel(spec, drafts.length ? drafts : spec.draftLengths).map((v) => [v.name, v.mask.kind] as const));
  const fits = (tile: Tile, v: string): boolean =>
    infeasible({ ...tile, splits: 1 }, { headDim: t.shape.headDim, rows: variantRows.get(v)!, kvHeads: t.shape.kvHeads, batch: 1, prefix: 1, maskKind: kinds.get(v)! }, 'cuda', 'sm_90') === null;
  const planned = (tile: Tile, v: string): boolean => tileKey(tile) === tileKey(plannedTiles.get(v)!);
  const listed = [...(t.tiles ?? candidateTiles(t.shape))];
  for (const v of t.variants) {
    const tile = plannedTiles.get(v)!;
    if (!listed.some((x) => tileKey(x) === tileKey(tile))) listed.push(tile);
  }
  for (const tile of listed) {
    // The grid's model is every variant's planned tile: it serves a tile each variant either plans or cannot use.
    if (base && t.variants.every((v) => planned(tile, v) || !fits(tile, v))) {
      tiles.push({ ...tile, model: onlyVariants(base, t.variants) });
      continue;
    }
    const dir = `tune/${name}/${tileKey(tile)}`;
    const out = join(o.outDir, dir);
    const r = await compileModel({
      spec, ...(drafts.length ? { drafts } : {}), arches: ['sm_90'], outDir: out, build: 'none',
      tiles: Object.fromEntries(t.variants.filter((v) => fits(tile, v)).map((v) => [v, tile])), log: () => undefined,
    });
    if (o.emulated) await emulateCompiledDir(out, { variants: [...t.variants] });
    tiles.push({ ...tile, model: onlyVariants(describe(r.manifest, dir), t.variants) });
    log(`tune: ${name} ${tileKey(tile)}: ${t.variants.join(', ')}${o.emulated ? ' (+ .emu.so)' : ''}`);
  }
  const variants = t.variants.map((v): BundleTuneVariant => {
    const described = tiles[0]!.model.variants.find((x) => x.name === v)!;
    const rows = described.steps * (t.shape.qHeads / t.shape.kvHeads);
    if (described.rows !== rows) throw new TidarcError('runtime', `${v} has ${described.rows} packed rows in its manifest, expected ${rows}`);
    const buckets = t.batches.flatMap((batch) => t.prefixes.map((prefix): BundleTuneBucket => {
      const shape: TuneShape = { headDim: t.shape.headDim, rows, kvHeads: t.shape.kvHeads, batch, prefix, maskKind: kinds.get(v)! };
      // The heuristic is the runtime's choice: the arch tile's occupancy when the bench section measured it.
      const ctasPerSm = bench?.model === name ? bench.occupancy[v]?.ctasPerSm ?? 1 : 1;
      // Only the tiles whose kernel for this variant really is the tile (a tile its rows cannot use keeps the planned one).
      const usable = tiles.filter((x) => {
        const k = x.model.variants.find((y) => y.name === v)!;
        return k.block === x.warps * 32 && k.warpRows === x.warpRows && k.stages === x.stages && fits(x, v);
      });
      return { bucket: shapeBucket(batch, prefix), batch, prefix, ...tuneConfigs(shape, plannedTiles.get(v)!, usable, t.slots, t.maxConfigs, ctasPerSm) };
    }));
    return { name: v, key: variantKey({ variant: v, dtype: t.shape.dtype, headDim: t.shape.headDim, qHeads: t.shape.qHeads, kvHeads: t.shape.kvHeads }), rows, buckets };
  });
  const withSm90a = await addSm90aKernels(variants, spec, drafts, o, name);
  const configs = withSm90a.reduce((n, v) => n + v.buckets.reduce((m, b) => m + b.configs.length + (b.sm90aSplits?.length ?? 0), 0), 0);
  log(`tune: ${tiles.length} tiles, ${variants.length * t.batches.length * t.prefixes.length} buckets, ${configs} configurations to time (${withSm90a.filter((v) => v.sm90a).length} variants with an sm_90a kernel)`);
  return { tidarc: TIDARC_VERSION, arch: 'sm_90', slots: t.slots, maxConfigs: t.maxConfigs, model: name, tiles, variants: withSm90a };
}

/**
 * The split counts an sm_90a kernel is timed at in a bucket: SPLITS up to the prefix's key tiles
 * (a split past them would be empty), at most SM90A_TUNE_SPLITS of them, fewest first.
 */
export function sm90aSplits(prefix: number, tileN: number): number[] {
  const tiles = Math.max(1, Math.ceil(prefix / tileN));
  return SPLITS.filter((s) => s <= tiles).slice(0, SM90A_TUNE_SPLITS);
}

/** Split counts an sm_90a kernel is timed at per bucket: 1 to 16 (a 16k prefix at batch 1 fills 132 SMs at about 16). */
export const SM90A_TUNE_SPLITS = 5;

/** Each tuned variant's sm_90a unit where it has one (under tune/<shape>/sm90a/), and its buckets' split counts. */
async function addSm90aKernels(variants: readonly BundleTuneVariant[], spec: ModelSpec, drafts: readonly number[], o: PrepareOptions, name: string): Promise<BundleTuneVariant[]> {
  const all = variantsForModel(spec, drafts.length ? drafts : spec.draftLengths);
  const eligible = variants.filter((v) => sm90aAttentionRefusal(all.find((x) => x.name === v.name)!) === null);
  if (eligible.length === 0) return [...variants];
  const dir = `tune/${name}/sm90a`;
  await writeSm90aUnitHeaders(o.outDir, dir);
  const out: BundleTuneVariant[] = [];
  for (const v of variants) {
    if (!eligible.includes(v)) {
      out.push(v);
      continue;
    }
    const unit = await writeSm90aUnit(o.outDir, dir, all.find((x) => x.name === v.name)!, o.emulated === true);
    out.push({ ...v, sm90a: { ...unit, nvccFlags: SM90A_UNIT_FLAGS }, buckets: v.buckets.map((b) => ({ ...b, sm90aSplits: sm90aSplits(b.prefix, unit.tileN) })) });
  }
  return out;
}

export interface PrepareOptions {
  readonly outDir: string;
  readonly grid: readonly BundleShape[];
  /** Also build .emu.so modules (dry run on the emulated driver). */
  readonly emulated?: boolean;
  /** Also the CUDA search's candidates (FULL_TUNE, DRY_RUN_TUNE). */
  readonly tune?: TuneGrid;
  /** Also the benchmark's points on the bench model (FULL_BENCH, DRY_RUN_BENCH). */
  readonly bench?: BenchGrid;
  readonly log?: (line: string) => void;
}

export async function prepareDeviceBundle(o: PrepareOptions): Promise<BundleGrid> {
  const log = o.log ?? (() => undefined);
  makeDirs(o.outDir, { field: 'device bundle directory', value: o.outDir });
  const models: BundleModel[] = [];
  const manifests = new Map<string, { manifest: Manifest; dir: string }>();
  for (const [i, shape] of o.grid.entries()) {
    const dir = `models/${shapeName(shape)}`;
    const out = join(o.outDir, dir);
    const r = await compileModel({ spec: specOf(shape), arches: ['sm_90'], outDir: out, build: 'none', log: () => undefined });
    if (o.emulated) await emulateCompiledDir(out);
    models.push(describe(r.manifest, dir));
    manifests.set(shapeName(shape), { manifest: r.manifest, dir: out });
    log(`[${i + 1}/${o.grid.length}] ${shapeName(shape)}: ${r.manifest.variants.length} variants${o.emulated ? ' (+ .emu.so)' : ''}`);
  }
  const bench = models.find((m) => m.name === shapeName(BENCH_SHAPE))?.name ?? models[0]!.name;
  const benched = manifests.get(bench)!;
  const attentionBench = o.bench ? await benchPoints(benched.manifest, benched.dir, o.bench, H200_SMS) : undefined;
  if (attentionBench) log(`bench: ${attentionBench.points.length} points of ${bench}; occupancy ${Object.entries(attentionBench.occupancy).map(([v, x]) => `${v} ${x.ctasPerSm}/SM`).join(', ')}`);
  const tune = o.tune ? await prepareTune(o.tune, o, models, log, attentionBench) : undefined;
  const grid: BundleGrid = {
    format: 1, generator: `tidarc ${TIDARC_VERSION}`, arch: 'sm_90', models, bench,
    ...(tune ? { tune } : {}),
    ...(attentionBench ? { attentionBench } : {}),
  };
  await writeFile(join(o.outDir, 'grid.json'), `${JSON.stringify(grid, null, 1)}\n`);
  // Which GPU names each key of the bundle's `byMachine` predictions is for (scripts/device-check/machines.py reads it).
  await writeMachinesFile(o.outDir);
  return grid;
}
