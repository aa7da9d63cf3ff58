/**
 * The tuning database: human-readable JSON of the winners, keyed by (variant key, shape bucket),
 * with the metadata that decides when an entry no longer applies. Pure functions, plus
 * readTuneDb / writeTuneDb at the edge (atomic write: an interrupted run never leaves half a
 * file).
 *
 *   variant key: what the kernel computes: mask kind and parameters, dtype, head dim, query and
 *                KV heads (`tidar_k8 bf16 d128 q32/kv8`), not the model's name;
 *   shape bucket: batch and the prefix rounded up to a power of two (`b1 L4096`): one tuning
 *                serves every prefix of the bucket, so shapes are not retuned one by one;
 *   meta:        tidarc version, compiler version, backend, device (GPU name and SM count, or CPU
 *                model and thread count), driver version. An entry whose meta differs from the
 *                machine's is stale: kept in the file, never used (invalidate() lists why).
 * `gemms` (the device check's GEMM search, issue 14) holds the linear layers' winners keyed by
 * (GEMM unit, arch): one split-K and, where a 9.0 device raced them, one kernel family (mma.sync
 * or sm_90a) for the weight shape, and per step row count the fastest tile under it (gemm-tuned.ts
 * gives them to `compile --tuned`). Never a split-K or a family per row count: both set the order
 * (and rounding) of a row's sum, which must not depend on M (batch invariance); the parser refuses
 * a row count that names its own.
 */
import { existsSync } from 'node:fs';
import { TidarcError } from '../errors.js';
import { writeTextFileAtomic } from '../fs/atomic-write.js';
import { readJsonFileSync } from '../fs/read-json.js';
import { parseJsonFileText } from '../util/json.js';
import { type ArchName, parseTileKey } from '../codegen/arch.js';
import type { CallParams } from '../codegen/call-params.js';
import type { GemmTile } from '../codegen/gemm-plan.js';
import type { Backend } from '../codegen/target.js';
import { type AttentionConfig, STAGES, WARP_ROWS } from './space.js';

export interface TuneMeta {
  readonly tidarc: string;
  readonly compiler: string;
  readonly backend: Backend;
  readonly device: string;
  readonly driver?: string;
}

export interface Timing {
  readonly medianUs: number;
  readonly p20Us: number;
  readonly p80Us: number;
}

export interface TileBest extends CallParams {
  readonly medianUs: number;
}

export interface TuneEntry {
  readonly variant: string;
  readonly bucket: string;
  readonly best: AttentionConfig;
  readonly bestTiming: Timing;
  readonly heuristic: AttentionConfig;
  readonly heuristicTiming: Timing;
  /** Configurations timed (after pruning and the correctness check). */
  readonly timed: number;
  /** Configurations whose output was wrong, by config key (never chosen). */
  readonly rejected: readonly string[];
  /**
   * Per tile (arch.ts tileKey: `w4-n64`; CUDA: `w2r32-n32p3`), its fastest call parameters and time: what `compile --tuned` uses to
   * pick one tile for all of a variant's shapes and the best splits and threads for that tile.
   */
  readonly byTile?: Readonly<Record<string, TileBest>>;
  /**
   * The variant's sm_90a kernel (TMA + wgmma, attention-sm90a.ts) in the same bucket, at its
   * fastest split count: timed by the device check's search on a 9.0 device for a variant that
   * has one. `compile --tuned` weighs it against the chosen tile (report.ts tunedTiles).
   */
  readonly sm90a?: TileBest;
  readonly meta: TuneMeta;
  readonly date: string;
}

/**
 * One step row count of a GEMM entry: the fastest tile under the entry's split-K, and the
 * heuristic's. No heuristic (neither tile nor timing) where the search timed no heuristic tile at
 * this M, at the heuristic's split-K nor the entry's (past the budget, rejected): tune --report
 * says 'not timed' (gemm_tune.py gemm_entry).
 */
export interface GemmRowTiming {
  readonly best: GemmTile;
  readonly bestTiming: Timing;
  readonly heuristic?: GemmTile;
  readonly heuristicTiming?: Timing;
  /**
   * The split-K `heuristic` was timed at where it is not the entry's heuristicSplitK: the heuristic's
   * own pair was not timed at this M (past the budget, or rejected), and the search fell back to the
   * planned tile under the entry's splitK (gemm_tune.py gemm_entry).
   */
  readonly heuristicSplitK?: number;
}

/** The kernel families of a GEMM: the mma.sync kernel (tidarc_gemm.cuh), the TMA + wgmma one (tidarc_gemm_sm90a.cuh). */
export const GEMM_FAMILIES = ['sm_90', 'sm_90a'] as const;
export type GemmFamily = (typeof GEMM_FAMILIES)[number];

/**
 * The sm_90a GEMM where the search raced it (a 9.0 device): the planner's token tile per row count
 * (gemm-sm90a.ts sm90aTokenTile) under each split-K count of the weight shape.
 */
export interface GemmSm90aTiming {
  /** Per split-K count, its times summed over the row counts it reached. */
  readonly splitTotalsUs: Readonly<Record<string, number>>;
  /** Per split-K count, per step row count (decimal), the time the choice weighed (absent in records before GEMM search space 4). */
  readonly splitRowsUs?: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** The split-K count of `rows`: the entry's when sm_90a won, else its own fastest by the same rule. */
  readonly splitK: number;
  /** Per step row count (decimal), at `splitK`. */
  readonly rows: Readonly<Record<string, { readonly tileT: number; readonly timing: Timing }>>;
}

/** A heuristic as a device ran it: one family and split-K for every M, and per M the kernel it launched with its time. */
export interface GemmHeuristicTiming {
  readonly kernel: GemmFamily;
  readonly splitK: number;
  /** The compile whose heuristic it is. */
  readonly arches: readonly ArchName[];
  /** Per step row count (decimal): the mma.sync tile (kernel sm_90) or the sm_90a token tile, and the time. */
  readonly rows: Readonly<Record<string, { readonly tile?: GemmTile; readonly tileT?: number; readonly timing: Timing }>>;
}

export interface GemmTuneEntry {
  /** gemmUnitName: dtype, N and K. */
  readonly unit: string;
  readonly n: number;
  readonly k: number;
  readonly dtype: string;
  readonly arch: ArchName;
  /**
   * The GEMM search space and kernel generation that made the entry (gemm-space.ts GEMM_SEARCH_SPACE);
   * absent: one from before the field (the first space). Only the current one's entries are used.
   */
  readonly space?: number;
  /** Chosen over every row count together (gemm-space.ts chooseGemmKernel): a row's sum order never depends on M. */
  readonly splitK: number;
  /** The family every row count runs on a 9.0 device, chosen with splitK; absent: an entry of a search that did not race sm_90a. */
  readonly kernel?: GemmFamily;
  readonly sm90a?: GemmSm90aTiming;
  /** The split-K of a compile for the search's arch alone (mma.sync): what `rows[].heuristic` timed. */
  readonly heuristicSplitK: number;
  /**
   * Where the search raced the families on a 9.0 device: what that device runs with no record
   * (the heuristic of a compile that builds sm_90a, as the kernel cache does there: gemm-bundle.ts
   * heuristicByArch.sm_90a), timed per M: its family, split-K, and the mma.sync tile or sm_90a
   * token tile of each M. tune --report compares the record's winner with it.
   */
  readonly heuristicSm90a?: GemmHeuristicTiming;
  /** Per split-K count, its best tiles' times summed over the row counts. */
  readonly splitTotalsUs: Readonly<Record<string, number>>;
  /**
   * Per split-K count, per step row count (decimal), its best tile's time: what the choice weighed
   * (least summed relative regret, gemm-space.ts chooseGemmKernel). Absent before search space 4.
   */
  readonly splitRowsUs?: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** Per step row count (decimal). */
  readonly rows: Readonly<Record<string, GemmRowTiming>>;
  readonly timed: number;
  /** Candidates whose output was wrong or not bitwise the same across M, with why (never chosen). */
  readonly rejected: readonly string[];
  readonly meta: TuneMeta;
  readonly date: string;
}

export interface TuneDb {
  readonly format: 1;
  readonly entries: Readonly<Record<string, TuneEntry>>;
  readonly gemms?: Readonly<Record<string, GemmTuneEntry>>;
}

export function gemmEntryKey(unit: string, arch: string): string {
  return `${unit} | ${arch}`;
}

export const EMPTY_DB: TuneDb = { format: 1, entries: {} };

export interface VariantShape {
  readonly variant: string;
  readonly dtype: string;
  readonly headDim: number;
  readonly qHeads: number;
  readonly kvHeads: number;
}

export function variantKey(v: VariantShape): string {
  return `${v.variant} ${v.dtype} d${v.headDim} q${v.qHeads}/kv${v.kvHeads}`;
}

export { shapeBucket } from '../codegen/call-params.js';

export function entryKey(variant: string, bucket: string): string {
  return `${variant} | ${bucket}`;
}

/** The entry for a variant and shape, when there is one made on a machine like this. */
export function lookup(db: TuneDb, variant: string, bucket: string, meta: TuneMeta): TuneEntry | undefined {
  const e = db.entries[entryKey(variant, bucket)];
  return e && staleness(e.meta, meta) === null ? e : undefined;
}

/** Why an entry made under `was` does not apply under `now` (null when it does). */
export function staleness(was: TuneMeta, now: TuneMeta): string | null {
  for (const k of ['tidarc', 'compiler', 'backend', 'device', 'driver'] as const) {
    if ((was[k] ?? '') !== (now[k] ?? '')) return `${k} was ${was[k] ?? '(none)'}, is ${now[k] ?? '(none)'}`;
  }
  return null;
}

/** The entries that do not apply on this machine, with why. */
export function invalidate(db: TuneDb, meta: TuneMeta): { key: string; why: string }[] {
  return Object.entries(db.entries).flatMap(([key, e]) => {
    const why = staleness(e.meta, meta);
    return why ? [{ key, why }] : [];
  });
}

/**
 * `b` over `a`, entry by entry: a newer entry replaces an older one for the same key; entries
 * of other machines are kept (a file may serve several). Keys sorted, for stable diffs.
 */
export function mergeDb(a: TuneDb, b: TuneDb): TuneDb {
  const gemms = mergeEntries(a.gemms ?? {}, b.gemms ?? {});
  return { format: 1, entries: mergeEntries(a.entries, b.entries), ...(Object.keys(gemms).length > 0 ? { gemms } : {}) };
}

function mergeEntries<E extends { readonly meta: TuneMeta; readonly date: string }>(a: Readonly<Record<string, E>>, b: Readonly<Record<string, E>>): Record<string, E> {
  const merged: Record<string, E> = { ...a };
  for (const [key, e] of Object.entries(b)) {
    const old = merged[key];
    if (!old || staleness(old.meta, e.meta) !== null || old.date <= e.date) merged[key] = e;
  }
  return Object.fromEntries(Object.entries(merged).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
}

export function withEntry(db: TuneDb, e: TuneEntry): TuneDb {
  return mergeDb(db, { format: 1, entries: { [entryKey(e.variant, e.bucket)]: e } });
}

export function parseTuneDb(text: string, source: string): TuneDb {
  let raw: unknown;
  try {
    raw = parseJsonFileText(text, source);
  } catch (e) {
    throw new TidarcError('invalid-argument', `the tuning database is not JSON (${(e as Error).message.replace(`${source}: `, '')})`, { source });
  }
  return tuneDbOf(raw, source);
}

function tuneDbOf(raw: unknown, source: string): TuneDb {
  const db = raw as Partial<TuneDb>;
  if (typeof raw !== 'object' || raw === null || db.format !== 1 || typeof db.entries !== 'object' || db.entries === null) {
    throw new TidarcError('invalid-argument', 'not a tidarc tuning database (expected {"format": 1, "entries": {...}})', { source });
  }
  for (const [key, e] of Object.entries(db.entries)) {
    const ok = e && typeof e === 'object' && typeof e.variant === 'string' && typeof e.bucket === 'string' && key === entryKey(e.variant, e.bucket)
      && e.best && Number.isInteger(e.best.warps) && Number.isInteger(e.best.tileN) && Number.isInteger(e.best.splits) && e.meta && typeof e.meta.device === 'string';
    if (!ok) throw new TidarcError('invalid-argument', 'a tuning database entry is malformed', { field: `entries["${key}"]`, source });
    checkPipeline(e.best, `entries["${key}"].best`, source);
    checkPipeline(e.heuristic, `entries["${key}"].heuristic`, source);
    if (e.sm90a !== undefined && !(Number.isInteger(e.sm90a.splits) && e.sm90a.splits >= 1 && Number.isFinite(e.sm90a.medianUs) && e.sm90a.medianUs > 0)) {
      throw new TidarcError('invalid-argument', 'a tuning database entry\'s sm_90a timing is malformed', { field: `entries["${key}"].sm90a`, value: JSON.stringify(e.sm90a), allowed: '{"splits": <integer >= 1>, "medianUs": <positive number>}', source });
    }
    for (const tile of Object.keys(e.byTile ?? {})) {
      if (parseTileKey(tile) === undefined) throw new TidarcError('invalid-argument', 'a tuning database entry times a tile it does not name', { field: `entries["${key}"].byTile`, value: tile, allowed: 'w<warps>[r16|r32]-n<keys>[p2|p3], e.g. w4-n64, w2r32-n32p3' });
    }
  }
  if (db.gemms !== undefined && (typeof db.gemms !== 'object' || db.gemms === null)) throw new TidarcError('invalid-argument', 'a tuning database\'s gemms must be an object', { field: 'gemms', source });
  for (const [key, e] of Object.entries(db.gemms ?? {})) {
    const tile = (t: unknown): boolean => typeof t === 'object' && t !== null && ['blockM', 'warpsM', 'stages'].every((f) => Number.isInteger((t as Record<string, unknown>)[f]));
    const ok = e && typeof e === 'object' && typeof e.unit === 'string' && typeof e.arch === 'string' && key === gemmEntryKey(e.unit, e.arch) && Number.isInteger(e.splitK)
      && e.rows && typeof e.rows === 'object' && Object.values(e.rows).every((r) => r && tile(r.best) && gemmRowHeuristicOk(r, tile)) && e.meta && typeof e.meta.device === 'string';
    if (!ok) throw new TidarcError('invalid-argument', 'a tuning database GEMM entry is malformed', { field: `gemms["${key}"]`, source });
    checkGemmFamily(e, `gemms["${key}"]`, source);
  }
  return db as TuneDb;
}

/** A GEMM row's heuristic: a tile with its timing (and optionally the split-K it was timed at), or none of the three (not timed). */
function gemmRowHeuristicOk(r: GemmRowTiming, tile: (t: unknown) => boolean): boolean {
  if (r.heuristic === undefined) return r.heuristicTiming === undefined && r.heuristicSplitK === undefined;
  return tile(r.heuristic) && typeof r.heuristicTiming === 'object' && r.heuristicTiming !== null && Number.isFinite(r.heuristicTiming.medianUs)
    && (r.heuristicSplitK === undefined || Number.isInteger(r.heuristicSplitK));
}

/**
 * One reduction and one family for every row count of a GEMM entry: a row count that names its own
 * split-K or kernel is refused (it would make a row's result depend on the step it is in), and so is
 * an sm_90a winner whose timings are of another split-K than the entry's.
 */
function checkGemmFamily(e: GemmTuneEntry, field: string, source: string): void {
  if (e.kernel !== undefined && !(GEMM_FAMILIES as readonly unknown[]).includes(e.kernel)) {
    throw new TidarcError('invalid-argument', 'a tuning database GEMM entry names a kernel family tidarc does not have', { field: `${field}.kernel`, value: String(e.kernel), allowed: GEMM_FAMILIES.join(', '), source });
  }
  const perRow = [...Object.entries(e.rows).map(([m, r]) => [`rows["${m}"]`, r] as const), ...Object.entries(e.sm90a?.rows ?? {}).map(([m, r]) => [`sm90a.rows["${m}"]`, r] as const)]
    .flatMap(([at, r]) => (['splitK', 'kernel'] as const).filter((f) => Object.hasOwn(r, f)).map((f) => `${at}.${f}`));
  if (perRow.length > 0) {
    throw new TidarcError('invalid-argument', 'a tuning database GEMM entry sets a split-K or kernel per row count; one serves every M of a weight shape (batch invariance)', { field: `${field}.${perRow[0]}`, allowed: `splitK and kernel of ${field} only`, source });
  }
  if (e.sm90a !== undefined && !(Number.isInteger(e.sm90a.splitK) && e.sm90a.rows && typeof e.sm90a.rows === 'object' && Object.values(e.sm90a.rows).every((r) => r && Number.isInteger(r.tileT) && r.timing && Number.isFinite(r.timing.medianUs)))) {
    throw new TidarcError('invalid-argument', 'a tuning database GEMM entry\'s sm_90a timings are malformed', { field: `${field}.sm90a`, allowed: '{"splitK": <integer>, "splitTotalsUs": {...}, "rows": {"<M>": {"tileT": <integer>, "timing": {...}}}}', source });
  }
  const h = e.heuristicSm90a;
  if (h !== undefined && !(h && (GEMM_FAMILIES as readonly unknown[]).includes(h.kernel) && Number.isInteger(h.splitK) && Array.isArray(h.arches) && h.rows && typeof h.rows === 'object'
    && Object.values(h.rows).every((r) => r && r.timing && Number.isFinite(r.timing.medianUs) && (h.kernel === 'sm_90a' ? Number.isInteger(r.tileT) : r.tile && Number.isInteger(r.tile.blockM))))) {
    throw new TidarcError('invalid-argument', 'a tuning database GEMM entry\'s heuristicSm90a is malformed', { field: `${field}.heuristicSm90a`, allowed: '{"kernel": "sm_90" | "sm_90a", "splitK": <integer>, "arches": [...], "rows": {"<M>": {"tile" | "tileT": ..., "timing": {...}}}}', source });
  }
  if (e.kernel === 'sm_90a' && e.sm90a?.splitK !== e.splitK) {
    throw new TidarcError('invalid-argument', 'a tuning database GEMM entry chose the sm_90a kernel at another split-K than its own', { field: `${field}.sm90a.splitK`, value: String(e.sm90a?.splitK), allowed: String(e.splitK), source });
  }
}

/** Rows a warp and stages, where a configuration has them, are values the kernel has (absent: an entry from before them). */
function checkPipeline(c: AttentionConfig | undefined, field: string, source: string): void {
  if (c?.warpRows !== undefined && !(WARP_ROWS as readonly unknown[]).includes(c.warpRows)) throw new TidarcError('invalid-argument', 'a tuned configuration has rows a warp the kernel does not', { field: `${field}.warpRows`, value: String(c.warpRows), allowed: WARP_ROWS.join(', '), source });
  if (c?.stages !== undefined && !(STAGES as readonly unknown[]).includes(c.stages)) throw new TidarcError('invalid-argument', 'a tuned configuration has a cp.async stage count the kernel does not', { field: `${field}.stages`, value: String(c.stages), allowed: STAGES.join(', '), source });
}

/** The database at `path`, or an empty one when the file does not exist. */
export function readTuneDb(path: string): TuneDb {
  return existsSync(path) ? tuneDbOf(readJsonFileSync(path, 'tuneDb'), path) : EMPTY_DB;
}

export async function writeTuneDb(path: string, db: TuneDb): Promise<void> {
  await writeTextFileAtomic(path, `${JSON.stringify(db, null, 1)}\n`);
}
