/**
 * The GEMM kernels a filtered compile (`tidarc compile --variant`) leaves out: those only its
 * omitted step kinds launch. A unit (one weight shape) keeps its reduction, split-K and tiles as a
 * full compile plans them (the filter runs after planning, never feeds it), and keeps every kernel
 * some kept step kind's launch picks in the full compile, so each launch of a kept step kind runs
 * the same kernel as it would there. Which row counts a step kind launches a unit with:
 *   a decode step (ar, tidar_k<K>) of T tokens: the layer GEMMs T rows; lm_head 1..T rows (the
 *     verify rows, the next drafts, a mix, or one pass over verify and candidate rows: all <= T);
 *   a prompt pass (prefill_c<C>, block_k<K>): any row count (a whole prompt is one pass), so
 *     every kernel of every unit.
 * Pure; the kernel a launch picks is gemm-kernel-pick.ts's, the rule gpu-gemm.ts and
 * gpu-gemm-sm90a.ts launch by (test/codegen/gemm-omission.test.ts records real steps to hold them to it).
 */
import type { GemmUnit } from './gemm-model.js';
import { gemmSymbol } from './gemm-plan.js';
import { pickMmaKernel, pickSm90aKernel } from './gemm-kernel-pick.js';
import { type ManifestGemmSm90a, type Sm90aGemms, describeSm90aUnit, planSm90aKernels, renderSm90aUnit, sm90aUnitName } from './gemm-sm90a.js';
import type { ManifestGemm } from './manifest.js';
import { parseVariantName, variantSteps } from './variant-name.js';

/** A kernel a filtered compile left out: an mma.sync kernel (m) or an sm_90a one (tileT) of `unit`. */
export interface OmittedGemm {
  readonly unit: string;
  readonly kernel: string;
  readonly m?: number;
  readonly tileT?: number;
}

/** Row counts a step kind launches a unit's GEMMs with, inclusive; max Infinity: any. */
interface RowRange {
  readonly min: number;
  readonly max: number;
}

/** The rows `kind` launches a unit of these roles with (undefined for a name that is no step kind). */
export function stepGemmRows(kind: string, roles: readonly string[]): RowRange | undefined {
  const key = parseVariantName(kind);
  if (!key) return undefined;
  if (key.kind === 'prefill' || key.kind === 'block') return { min: 1, max: Infinity };
  const tokens = variantSteps(kind);  // AR 1, tidar_k<K> K(K + 1)
  return { min: roles.includes('lm_head') ? 1 : tokens, max: tokens };
}

/** The mma.sync kernel (its m) a launch over `rows` takes (gemm-kernel-pick.ts, as gpu-gemm.ts launches). */
export function mmaKernelFor(ms: readonly number[], rows: number): number {
  return pickMmaKernel(ms, rows, (m) => m);
}

/** The sm_90a kernel (its token tile) a launch over `rows` takes (gemm-kernel-pick.ts, as gpu-gemm-sm90a.ts launches). */
export function sm90aKernelFor(tiles: readonly number[], rows: number): number {
  return pickSm90aKernel(tiles, rows, (t) => t);
}

/** The kernels (keys) that launches over any row count of `range` pick by `pick`. */
function picked(keys: readonly number[], range: RowRange, pick: (keys: readonly number[], rows: number) => number): Set<number> {
  if (range.max === Infinity) return new Set(keys);
  const out = new Set<number>();
  for (let rows = range.min; rows <= range.max; rows++) out.add(pick(keys, rows));
  return out;
}

/** The kernels of a unit (keys: m or token tiles) that the step kinds `kinds` launch. */
export function keptKernels(keys: readonly number[], roles: readonly string[], kinds: readonly string[], pick: (keys: readonly number[], rows: number) => number): Set<number> {
  const kept = new Set<number>();
  for (const kind of kinds) {
    const range = stepGemmRows(kind, roles);
    if (range) for (const k of picked(keys, range, pick)) kept.add(k);
  }
  return kept;
}

/**
 * The step kinds of `kinds` that would launch a kernel the manifest names as omitted: per unit,
 * its kernels are the kept and the omitted ones together (the full compile's), and a kind needs
 * those its launches pick among them.
 */
export function kindsLackingGemms(manifest: { readonly gemms?: readonly ManifestGemm[]; readonly gemmsSm90a?: readonly ManifestGemmSm90a[]; readonly omittedGemms?: readonly OmittedGemm[] }, kinds: readonly string[]): string[] {
  const omitted = manifest.omittedGemms ?? [];
  if (omitted.length === 0) return [];
  const units = new Map<string, { roles: readonly string[]; keys: number[]; missing: Set<number>; pick: (keys: readonly number[], rows: number) => number }>();
  const unit = (name: string, roles: readonly string[], pick: (keys: readonly number[], rows: number) => number) => {
    let u = units.get(name);
    if (!u) units.set(name, (u = { roles, keys: [], missing: new Set(), pick }));
    return u;
  };
  for (const g of manifest.gemms ?? []) unit(g.unit, g.roles, mmaKernelFor).keys.push(g.m);
  for (const g of manifest.gemmsSm90a ?? []) unit(g.unit, g.roles, sm90aKernelFor).keys.push(...g.kernels.map((k) => k.tileT));
  for (const o of omitted) {
    const u = units.get(o.unit) ?? unit(o.unit, [], o.tileT === undefined ? mmaKernelFor : sm90aKernelFor);
    const key = o.m ?? o.tileT!;
    u.keys.push(key), u.missing.add(key);
  }
  return kinds.filter((kind) => [...units.values()].some((u) => [...keptKernels(u.keys, u.roles, [kind], u.pick)].some((k) => u.missing.has(k))));
}

/** The mma.sync GEMMs of a filtered compile: each unit with the kernels the kept step kinds launch, and what that leaves out. */
export function keepGemmUnits(units: readonly GemmUnit[], kinds: readonly string[]): { units: GemmUnit[]; omitted: OmittedGemm[] } {
  const omitted: OmittedGemm[] = [];
  const kept = units.flatMap((u) => {
    const ms = keptKernels(u.plans.map((p) => p.m), u.roles, kinds, mmaKernelFor);
    omitted.push(...u.plans.filter((p) => !ms.has(p.m)).map((p) => ({ unit: u.name, kernel: gemmSymbol(u.shape, p.m), m: p.m })));
    const plans = u.plans.filter((p) => ms.has(p.m));
    return plans.length > 0 ? [{ ...u, plans }] : [];
  });
  return { units: kept, omitted };
}

/**
 * The sm_90a units of a filtered compile: a full compile's (planSm90aGemms over every planned
 * row count, so its token tiles are the full compile's), each with the kernels the kept step
 * kinds launch, re-rendered; and what that leaves out. `units`: the full compile's GEMM units.
 */
export function keepSm90aGemms(full: Sm90aGemms, units: readonly GemmUnit[], kinds: readonly string[], modelName: string): { sm90a: Sm90aGemms; omitted: OmittedGemm[] } {
  const omitted: OmittedGemm[] = [];
  const sources = new Map<string, string>();
  const gemms = full.gemms.flatMap((g) => {
    const u = units.find((x) => sm90aUnitName(x.shape) === g.unit)!;
    const kernels = planSm90aKernels(u.shape, u.plans.map((p) => p.m), u.reduction);
    const tiles = keptKernels(kernels.map((k) => k.tileT), g.roles, kinds, sm90aKernelFor);
    omitted.push(...kernels.filter((k) => !tiles.has(k.tileT)).map((k) => ({ unit: g.unit, kernel: k.symbol, tileT: k.tileT })));
    const kept = kernels.filter((k) => tiles.has(k.tileT));
    if (kept.length === 0) return [];
    sources.set(g.source, renderSm90aUnit(u.shape, u.reduction, kept, u.roles, modelName));
    return [describeSm90aUnit(u.shape, u.roles, u.reduction, kept)];
  });
  return { sm90a: { sources, gemms, refusals: full.refusals }, omitted };
}
