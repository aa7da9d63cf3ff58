/**
 * `--tuned DB` (compile, run, bench-step): what a tuning database gives a model's variants, read
 * from the file and said line by line (`tuned <variant>: ...`). The I/O edge of tunedTiles.
 */
import { existsSync } from 'node:fs';
import { ARCHES, type ArchName } from '../codegen/arch.js';
import { cacheCompile } from '../build/kernel-cache.js';
import type { TileOverrides } from '../codegen/input-key.js';
import { variantsForModel } from '../codegen/variant.js';
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import { type TuneMeta, readTuneDb } from './db.js';
import { tunedGemms } from './gemm-tuned.js';
import { tunedTiles } from './report.js';
import type { GemmOverrides } from '../codegen/gemm-plan.js';

export interface TunedLoad {
  readonly path: string;
  /** How errors name the database (the CLI's flag, or the library's option). */
  readonly field: string;
  readonly spec: ModelSpec;
  readonly drafts: readonly number[];
  readonly arches: readonly ArchName[];
  /** Only entries measured under this meta (this machine); absent: every entry. */
  readonly meta?: TuneMeta;
  readonly log: (line: string) => void;
}

/**
 * The arches a cuda run's kernels are compiled for on a device of `arch` (kernel-cache.ts
 * cacheCompile: a 9.0 device's entry has sm_90a too), which `run --tuned` weighs the database's
 * tiles and kernels for: on an H200 the search's sm_90a timings decide the kernel (report.ts tunedTiles).
 */
export function runArches(arch: ArchName): ArchName[] {
  return cacheCompile(arch).targets.filter((t): t is ArchName => Object.hasOwn(ARCHES, t));
}

export function loadTunedTiles(o: TunedLoad): TileOverrides {
  if (!existsSync(o.path)) throw new TidarcError('invalid-argument', 'no such tuning database', { field: o.field, value: o.path });
  const names = variantsForModel(o.spec, o.drafts).map((v) => v.name);
  const t = tunedTiles(readTuneDb(o.path), o.spec, names, o.arches, o.meta);
  for (const [name, how] of Object.entries(t.used)) o.log(`tuned ${name}: ${how}`);
  for (const why of t.skipped) o.log(`tuned ${why}`);
  if (Object.keys(t.used).length === 0 && t.skipped.length === 0) o.log(`tuned: ${o.path} has no ${o.meta ? 'entry measured on this machine' : 'entry'} for this model's variants; defaults used`);
  return t.tiles;
}

/** The GEMM tunings the database gives this model's compile (`tuned gemm_...: ...` lines); {} when it has none. */
export function loadTunedGemms(o: TunedLoad): GemmOverrides {
  if (!existsSync(o.path)) throw new TidarcError('invalid-argument', 'no such tuning database', { field: o.field, value: o.path });
  const t = tunedGemms(readTuneDb(o.path), o.spec, o.arches, o.meta, o.path);
  for (const [unit, how] of Object.entries(t.used)) o.log(`tuned ${unit}: ${how}`);
  for (const why of t.skipped) o.log(`tuned ${why}`);
  return t.gemms;
}
