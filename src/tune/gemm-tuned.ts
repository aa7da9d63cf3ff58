/**
 * What a tuning database's GEMM entries (db.ts `gemms`, written by the device check's GEMM
 * search) give a model's compile: per GEMM unit, the split-K and per step row count the tile
 * measured fastest. Pure. An entry applies when it is fresh (its meta is this machine's, when
 * one is given), names a weight shape of this model and an arch of this compile; a compile for
 * several arches takes a unit's entry only when just one of its arches has one (the plan is
 * shared; checkGemmTuning then holds it to the tightest arch's limits).
 */
import type { ArchName } from '../codegen/arch.js';
import { GEMM_ROLES, gemmShapeOf } from '../codegen/gemm-model.js';
import { type GemmOverrides, type GemmTuning, checkGemmTuning, gemmTarget, gemmTileName, gemmUnitName } from '../codegen/gemm-plan.js';
import type { ModelSpec } from '../ir/model.js';
import { type GemmTuneEntry, type TuneDb, type TuneMeta, staleness } from './db.js';

export function tuningOfEntry(e: GemmTuneEntry): GemmTuning {
  const tiles = Object.fromEntries(Object.entries(e.rows).map(([m, r]) => [m, { blockM: r.best.blockM, warpsM: r.best.warpsM, stages: r.best.stages }]));
  return { arch: e.arch, splitK: e.splitK, tiles, measuredOn: e.meta.device };
}

/** `source`: the database's path, which a refused entry's error names. */
export function tunedGemms(db: TuneDb, spec: ModelSpec, arches: readonly ArchName[], meta?: TuneMeta, source?: string): { gemms: GemmOverrides; used: Record<string, string>; skipped: string[] } {
  const shapes = new Map(GEMM_ROLES.map((role) => gemmShapeOf(spec, role)).map((shape) => [gemmUnitName(shape), shape]));
  const units = new Set(shapes.keys());
  const gemms: Record<string, GemmTuning> = {};
  const used: Record<string, string> = {};
  const skipped: string[] = [];
  const fresh = Object.values(db.gemms ?? {}).filter((e) => units.has(e.unit) && arches.includes(e.arch) && (!meta || staleness(e.meta, meta) === null));
  for (const unit of [...units].sort()) {
    const mine = fresh.filter((e) => e.unit === unit);
    if (mine.length === 0) continue;
    if (mine.length > 1) {
      skipped.push(`${unit}: measured on ${mine.map((e) => e.arch).sort().join(' and ')}, one plan serves this compile's arches; kept the default (compile the arches separately)`);
      continue;
    }
    const e = mine[0]!;
    // A record the kernels cannot run is refused here, before the compile plans anything.
    gemms[unit] = checkGemmTuning(shapes.get(unit)!, tuningOfEntry(e), gemmTarget(arches), source);
    const tiles = Object.entries(e.rows).map(([m, r]) => `M=${m} ${gemmTileName(r.best)}`).join(', ');
    used[unit] = `split-K ${e.splitK}${tiles ? `; ${tiles}` : ''} (${e.arch}, ${e.meta.device})`;
  }
  return { gemms, used, skipped };
}
