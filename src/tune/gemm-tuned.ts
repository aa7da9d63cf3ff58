/**
 * What a tuning database's GEMM entries (db.ts `gemms`, written by the device check's GEMM
 * search) give a model's compile: per GEMM unit, the split-K, the kernel family a 9.0 device
 * runs (where the search raced mma.sync against sm_90a) and per step row count the tile
 * measured fastest. Pure. An entry applies when it is fresh (its meta is this machine's, when
 * one is given), names a weight shape of this model and an arch of this compile; a compile for
 * several arches takes a unit's entry only when just one of its arches has one (the plan is
 * shared; checkGemmTuning then holds it to the tightest arch's limits). An entry that chose the
 * sm_90a kernel for a compile that does not build it for that unit is refused in one line.
 */
import type { ArchName } from '../codegen/arch.js';
import { GEMM_ROLES, type GemmRole, gemmShapeOf } from '../codegen/gemm-model.js';
import { type GemmOverrides, type GemmShape, type GemmTuning, checkGemmTuning, gemmTarget, gemmTileName, gemmUnitName, planReduction } from '../codegen/gemm-plan.js';
import { sm90aRefusal } from '../codegen/gemm-sm90a.js';
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import { type GemmTuneEntry, type TuneDb, type TuneMeta, gemmEntryKey, staleness } from './db.js';
import { gemmSpaceProblem } from './gemm-space.js';

export function tuningOfEntry(e: GemmTuneEntry): GemmTuning {
  const tiles = Object.fromEntries(Object.entries(e.rows).map(([m, r]) => [m, { ...r.best }]));
  return { arch: e.arch, splitK: e.splitK, tiles, measuredOn: e.meta.device, ...(e.kernel ? { kernel: e.kernel } : {}) };
}

/** `source`: the database's path, which a refused entry's error names. */
export function tunedGemms(db: TuneDb, spec: ModelSpec, arches: readonly ArchName[], meta?: TuneMeta, source?: string): { gemms: GemmOverrides; used: Record<string, string>; skipped: string[] } {
  const units = new Map<string, { shape: GemmShape; roles: GemmRole[] }>();
  for (const role of GEMM_ROLES) {
    const shape = gemmShapeOf(spec, role);
    const u = units.get(gemmUnitName(shape)) ?? { shape, roles: [] };
    units.set(gemmUnitName(shape), { ...u, roles: [...u.roles, role] });
  }
  const gemms: Record<string, GemmTuning> = {};
  const used: Record<string, string> = {};
  const skipped: string[] = [];
  const mineAll = Object.values(db.gemms ?? {}).filter((e) => units.has(e.unit) && arches.includes(e.arch) && (!meta || staleness(e.meta, meta) === null));
  // A record of an older search space (another split rule, other tiles) would override today's rule: named, never used.
  const old = mineAll.filter((e) => gemmSpaceProblem(e) !== null).sort((a, b) => gemmEntryKey(a.unit, a.arch).localeCompare(gemmEntryKey(b.unit, b.arch)));
  if (old.length > 0) skipped.push(`${old.map((e) => `${e.unit} (${e.arch}, split-K ${e.splitK})`).join(', ')}: ${gemmSpaceProblem(old[0]!)}; ignored, kept the default (retune with the device check's GEMM search)`);
  const fresh = mineAll.filter((e) => gemmSpaceProblem(e) === null);
  for (const unit of [...units.keys()].sort()) {
    const mine = fresh.filter((e) => e.unit === unit);
    if (mine.length === 0) continue;
    if (mine.length > 1) {
      // One reduction and one family serve every M of a shape: two records (per arch) are never mixed.
      skipped.push(`${unit}: measured on ${mine.map((e) => `${e.arch} (split-K ${e.splitK}${e.kernel ? `, ${e.kernel}` : ''})`).sort().join(' and ')}, one plan serves this compile's arches; kept the default (compile the arches separately)`);
      continue;
    }
    const e = mine[0]!;
    const { shape, roles } = units.get(unit)!;
    const target = gemmTarget(arches);
    // A record the kernels cannot run is refused here, before the compile plans anything.
    const tuning = checkGemmTuning(shape, tuningOfEntry(e), target, source);
    if (tuning.kernel === 'sm_90a') {
      const why = !arches.includes('sm_90a') ? `this compile's arches (${arches.join(', ')}) do not include sm_90a`
        : sm90aRefusal(shape, roles, planReduction(shape, target, tuning.splitK));
      if (why) {
        throw new TidarcError('invalid-argument', `tuned GEMM ${unit} (${e.arch}) chose the sm_90a kernel, which this compile does not build for it: ${why}`, { field: 'kernel', value: 'sm_90a', allowed: 'sm_90 here; sm_90a in a compile with --arch sm_90a', ...(source === undefined ? {} : { source }) });
      }
    }
    gemms[unit] = tuning;
    const tiles = Object.entries(e.rows).map(([m, r]) => `M=${m} ${gemmTileName(r.best)}`).join(', ');
    const family = e.kernel === undefined ? '' : e.kernel === 'sm_90a' ? '; the sm_90a kernel on a 9.0 device' : '; the mma.sync kernel on a 9.0 device';
    used[unit] = `split-K ${e.splitK}${family}${tiles ? `; ${tiles}` : ''} (${e.arch}, ${e.meta.device})`;
  }
  return { gemms, used, skipped };
}
