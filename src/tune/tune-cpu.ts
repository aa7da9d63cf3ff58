/**
 * Tuning the CPU backend's attention kernels (`tidarc tune --backend cpu`): for each variant
 * (tidar_k<K> per draft length, and ar) and shape bucket (batch, prefix), every configuration
 * of the search space that static pruning keeps is checked against the float64 reference and,
 * when right, timed; the fastest and the heuristic default are recorded in the database.
 *
 * Protocol per configuration: the output on a fixed input set must be within the dtype's
 * tolerance of the reference (computed once per shape), else the configuration is rejected;
 * then a warm-up call, then calls over rotated input sets (together twice the last-level cache,
 * so each call reads its K/V from memory): MIN_REPS calls, or as many slow ones as fill
 * MIN_TIME_MS (at least MIN_CALLS); median with p20/p80. Then a
 * confirmation: the CONFIRM_TOP fastest and the heuristic default are timed again, interleaved
 * in CONFIRM_ROUNDS rounds, so that the recorded best and heuristic times (and their ratio) come
 * from the same moments of a noisy machine; the best is chosen on those times.
 *
 * Tiles (warps, tileN) are compile-time: one CPU library per tile, all compiled before any
 * timing (in parallel, one compiler process per core; none runs while something is timed) and
 * cached across runs; splits and threads are call parameters. The database is written after
 * every shape (incremental; an interrupted run keeps what it measured) and a rerun skips the
 * shapes it holds for this machine.
 */
import { performance } from 'node:perf_hooks';
import { cachedKernels, kernelCacheEntry } from '../build/kernel-cache.js';
import { runPool } from '../build/pool.js';
import { ARCHES } from '../codegen/arch.js';
import { heuristicCpuCall } from '../codegen/call-params.js';
import type { ManifestVariant } from '../codegen/manifest.js';
import { EMU_TOLERANCE } from '../emulate/emulate-variant.js';
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import { maskFromParams } from '../ir/mask-builders.js';
import { stepVisibility } from '../ir/mask.js';
import { decode } from '../util/dtype.js';
import { type KernelLibrary, openKernelLibrary } from '../runtime/kernel-library.js';
import { cpuThreadCount } from '../runtime/ops.js';
import { randomAttentionInputs, referenceAttention } from '../runtime/reference.js';
import { type TileBest, type Timing, type TuneDb, type TuneEntry, lookup, mergeDb, readTuneDb, shapeBucket, variantKey, withEntry, writeTuneDb } from './db.js';
import { cpuTuneMeta, lastLevelCacheBytes } from './meta.js';
import { type AttentionConfig, SPLITS, TILE_N, type TuneShape, WARPS, configKey, searchSpace } from './space.js';
import { AR_VARIANT, tidarVariantName } from '../codegen/variant-name.js';

/** Calls timed per configuration: MIN_REPS, or fewer slow ones filling MIN_TIME_MS (at least MIN_CALLS). */
export const MIN_REPS = 100;
export const MIN_TIME_MS = 100;
export const MIN_CALLS = 5;
/** The confirmation round: this many fastest configurations and the heuristic, interleaved over this many rounds. */
export const CONFIRM_TOP = 3;
export const CONFIRM_ROUNDS = 5;
/** Input rotation: at most this many sets, and this many bytes of K/V in all (one set at least). */
export const ROTATION_MAX_SETS = 256;
export const ROTATION_MAX_BYTES = 512 << 20;

export interface TuneRequest {
  readonly spec: ModelSpec;
  readonly drafts: readonly number[];
  readonly prefixes: readonly number[];
  readonly batches: readonly number[];
  readonly dbPath: string;
  /** Where the per-tile CPU libraries are compiled (cached across runs). */
  readonly cacheDir: string;
  /** How errors name cacheDir (default: the kernel cache's name for it). */
  readonly cacheField?: string;
  /** Stop starting new shapes after this many seconds (what was measured is kept). */
  readonly budgetSeconds?: number;
  /** Restrict the search space (tests, quick runs). */
  readonly space?: { readonly warps?: readonly number[]; readonly tileN?: readonly number[]; readonly splits?: readonly number[]; readonly threads?: readonly number[] };
  readonly log?: (line: string) => void;
  /** Aborting (Ctrl-C) ends the run after the configuration being timed; the database keeps every finished shape. */
  readonly signal?: AbortSignal;
  /** Wraps each tile's library (tests: a library that computes wrong results must be rejected). */
  readonly wrapLibrary?: (lib: KernelLibrary, tile: { warps: number; tileN: number }) => KernelLibrary;
}

export interface TuneRunResult {
  readonly db: TuneDb;
  readonly tuned: number;
  readonly cached: number;
  readonly skipped: readonly string[];
  readonly interrupted: boolean;
}

function timingOf(ms: number[]): Timing {
  const s = [...ms].sort((a, b) => a - b);
  const q = (f: number): number => s[Math.min(s.length - 1, Math.floor(f * s.length))]! * 1000;
  return { medianUs: q(0.5), p20Us: q(0.2), p80Us: q(0.8) };
}

export async function tuneCpu(req: TuneRequest): Promise<TuneRunResult> {
  const log = req.log ?? (() => undefined);
  const meta = await cpuTuneMeta();
  const names = [...req.drafts.map(tidarVariantName), AR_VARIANT];
  const libraries = new Map<string, KernelLibrary>();
  // One CPU library per tile, each an entry of the kernel cache (a rerun, or a run of the tuned model, reuses it).
  const tileEntry = (t: Tile) => ({ spec: req.spec, drafts: req.drafts, target: 'cpu' as const, cacheDir: req.cacheDir, tiles: Object.fromEntries(names.map((n) => [n, { warps: t.warps, tileN: t.tileN }])) });
  const tileDir = (t: Tile): string => kernelCacheEntry(tileEntry(t));
  const compileTile = (t: Tile, cores?: number) => cachedKernels({ ...tileEntry(t), ...(req.cacheField ? { field: req.cacheField } : {}), ...(cores ? { jobs: cores } : {}) });
  const library = (t: Tile): KernelLibrary => {
    let lib = libraries.get(tileKey(t));
    if (!lib) {
      lib = openKernelLibrary(tileDir(t), { backend: 'cpu' });
      if (req.wrapLibrary) lib = req.wrapLibrary(lib, { warps: t.warps, tileN: t.tileN });
      libraries.set(tileKey(t), lib);
    }
    return lib;
  };
  const started = performance.now();
  let db = readTuneDb(req.dbPath);
  let tuned = 0, cached = 0;
  const skipped: string[] = [];
  const all = cpuThreadCount();
  const restrict = <T>(xs: readonly T[], only?: readonly T[]): T[] => xs.filter((x) => !only || only.includes(x));
  // The default tile's compile describes the variants (rows, row tiles) for every shape.
  const defaults = (await compileTile(DEFAULT_TILE)).manifest;
  const jobs = names.flatMap((name) => req.batches.flatMap((batch) => req.prefixes.map((prefix) => {
    const v = defaults.variants.find((x) => x.name === name)!;
    const vkey = variantKey({ variant: v.name, dtype: req.spec.dtype, headDim: req.spec.headDim, qHeads: req.spec.queryHeads, kvHeads: req.spec.kvHeads });
    const shape: TuneShape = { headDim: req.spec.headDim, rows: v.rows, kvHeads: req.spec.kvHeads, batch, prefix };
    const call = heuristicCpuCall({ batch, kvHeads: req.spec.kvHeads, rows: v.rows, rowTiles: v.plan.rowTiles, prefix, steps: v.steps, headDim: req.spec.headDim, tileN: v.plan.tileN }, all);
    const heuristic: AttentionConfig = { warps: v.plan.warps, tileN: v.plan.tileN, ...call };
    const candidates = searchSpace(shape, 'cpu', { threads: req.space?.threads ?? [1, 0] }).candidates
      .filter((c) => restrict(WARPS, req.space?.warps).includes(c.warps) && restrict(TILE_N, req.space?.tileN).includes(c.tileN) && restrict(SPLITS, req.space?.splits).includes(c.splits));
    if (!candidates.some((c) => configKey(c) === configKey(heuristic))) candidates.push(heuristic);
    return { v, vkey, bucket: shapeBucket(batch, prefix), shape, heuristic, candidates };
  })));
  const todo = jobs.filter((j) => !lookup(db, j.vkey, j.bucket, meta));
  const tiles = [...new Map(todo.flatMap((j) => j.candidates).map((c) => [tileKey(c), { warps: c.warps, tileN: c.tileN }])).values()];
  if (tiles.length > 0) {
    const t0 = performance.now();
    let done = 0;
    log(`compiling the CPU kernels of ${tiles.length} tile${tiles.length === 1 ? '' : 's'}, ${Math.min(all, tiles.length)} at a time`);
    await runPool(tiles, all, async (t) => {
      if (req.signal?.aborted) return;
      await compileTile(t, 1);
      log(`  [${++done}/${tiles.length}] ${tileKey(t)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    });
  }
  // Timing work of a shape, for the ETA: its configurations' calls scale with keys x rows.
  const work = { done: 0, of: (x: (typeof jobs)[number]) => x.candidates.length * x.shape.batch * (x.shape.prefix + x.v.steps) * (x.v.rows + 8) };
  let spent = 0;
  try {
    for (const [j, job] of jobs.entries()) {
      const { v, vkey, bucket, shape, heuristic, candidates } = job;
      const what = `[${j + 1}/${jobs.length}] ${vkey} | ${bucket}`;
      if (lookup(db, vkey, bucket, meta)) {
        cached++;
        log(`${what}: in the database, skipped`);
        continue;
      }
      if (req.signal?.aborted || (req.budgetSeconds !== undefined && (performance.now() - started) / 1000 > req.budgetSeconds)) {
        skipped.push(`${vkey} | ${bucket}`);
        continue;
      }
      log(`${what}: ${candidates.length} configurations to check against the float64 reference and time`);
      const t0 = performance.now();
      let shown = t0;
      const entry = await tuneShape(v, shape, candidates, heuristic, library, req, (done, total) => {
        const now = performance.now();
        if (now - shown < 2000 && done < total) return;
        shown = now;
        // The rest of the run, at this run's measured seconds per unit of work (configurations x keys x rows).
        const rate = (spent + (now - t0)) / (work.done + (done / total) * work.of(job));
        const ahead = jobs.slice(j + 1).filter((x) => !lookup(db, x.vkey, x.bucket, meta)).reduce((sum, x) => sum + work.of(x), 0);
        const shapeLeft = (1 - done / total) * work.of(job);
        log(`${what}: ${done}/${total} configurations; eta ${((shapeLeft * rate) / 1000).toFixed(0)} s for this shape, about ${(((shapeLeft + ahead) * rate) / 1000).toFixed(0)} s for the run`);
      });
      spent += performance.now() - t0;
      work.done += work.of(job);
      if (!entry) {
        skipped.push(`${vkey} | ${bucket}`);
        break;  // interrupted inside the shape: nothing of it is recorded
      }
      db = withEntry(mergeDb(readTuneDb(req.dbPath), db), { ...entry, variant: vkey, bucket, meta, date: new Date().toISOString().slice(0, 10) });
      await writeTuneDb(req.dbPath, db);
      tuned++;
      const gain = entry.heuristicTiming.medianUs / entry.bestTiming.medianUs;
      log(`${what}: best ${configKey(entry.best)} ${entry.bestTiming.medianUs.toFixed(0)} us; heuristic ${configKey(entry.heuristic)} ${entry.heuristicTiming.medianUs.toFixed(0)} us (${gain.toFixed(2)}x); ${entry.timed} timed, ${entry.rejected.length} rejected`);
    }
  } finally {
    for (const lib of libraries.values()) lib.close();
  }
  return { db, tuned, cached, skipped, interrupted: req.signal?.aborted === true };
}

/** What one shape's run measured (the database entry without its key, machine and date). */
type ShapeResult = Pick<TuneEntry, 'best' | 'bestTiming' | 'heuristic' | 'heuristicTiming' | 'timed' | 'rejected' | 'byTile'>;

interface Tile {
  readonly warps: number;
  readonly tileN: number;
}
const DEFAULT_TILE: Tile = ARCHES.sm_80.tile;
const tileKey = (t: Tile): string => `w${t.warps}-n${t.tileN}`;

async function tuneShape(v: ManifestVariant, shape: TuneShape, candidates: readonly AttentionConfig[], heuristic: AttentionConfig,
  library: (t: Tile) => KernelLibrary, req: TuneRequest, progress: (done: number, total: number) => void): Promise<ShapeResult | undefined> {
  const { spec } = req;
  const mask = maskFromParams(v.mask.kind, v.mask.params);
  const n = mask.tokens.length;
  const table = stepVisibility(mask);
  const cacheCapacity = shape.prefix;
  const prefixLen = Array<number>(shape.batch).fill(shape.prefix);
  // Input sets rotated while timing, together twice the last-level cache (so each call finds its
  // K/V in memory, as a decode step does after the other layers ran), within ROTATION_MAX_BYTES;
  // set 0 is also the correctness check's.
  const bytes = 2 * shape.batch * spec.kvHeads * cacheCapacity * spec.headDim * 2;
  const sets = Math.max(1, Math.min(ROTATION_MAX_SETS, Math.ceil((2 * lastLevelCacheBytes()) / Math.max(1, bytes)), Math.floor(ROTATION_MAX_BYTES / Math.max(1, bytes))));
  const first = randomAttentionInputs({ ...v.shape, batch: shape.batch, n, cacheCapacity, prefixLen, seed: 100, poisonCacheTail: false });
  const inputs = [first, ...Array.from({ length: sets - 1 }, (_, s) => ({ bits: randomAttentionInputs({ ...v.shape, batch: shape.batch, n, cacheCapacity, prefixLen, seed: 101 + s, poisonCacheTail: false }).bits }))];
  const want = referenceAttention({ ...first.shape, prefixLen, ...first.values, prefixVisible: mask.prefix === 'all', visible: (tq, tk) => table[tq * n + tk] === 1 });
  const tolerance = EMU_TOLERANCE[spec.dtype];
  const rows = shape.batch * n * spec.queryHeads;
  const outputs = { o: new Uint16Array(rows * spec.headDim), lse: new Float32Array(rows) };
  const results: { config: AttentionConfig; timing: Timing }[] = [];
  const rejected: string[] = [];
  const caller = (c: AttentionConfig) => {
    const lib = library(c);
    return (s: number): void => void lib.run(v.name, { batch: shape.batch, cacheCapacity, prefixLen, ...inputs[s]!.bits, splits: c.splits, threads: c.threads ?? 0, outputs });
  };
  // Calls of `call` until `enough` says stop, milliseconds per call; the input set rotates across
  // all calls of the shape, so a set comes back only after every other one was read.
  let cursor = 0;
  const timeCalls = (call: (s: number) => void, into: number[], enough: (n: number, ms: number) => boolean): void => {
    const t0 = performance.now();
    for (let n = 0; !enough(n, performance.now() - t0); n++) {
      const a = performance.now();
      call(cursor++ % sets);
      into.push(performance.now() - a);
    }
  };
  for (const [i, c] of candidates.entries()) {
    if (req.signal?.aborted) return undefined;
    const call = caller(c);
    call(0);
    const o = decode(spec.dtype, outputs.o);
    let err = 0;
    for (let k = 0; k < o.length; k++) err = Math.max(err, Number.isNaN(o[k]!) ? Infinity : Math.abs(o[k]! - want.o[k]!));
    if (!(err <= tolerance)) {
      rejected.push(configKey(c));
    } else {
      call(1 % sets);
      const ms: number[] = [];
      timeCalls(call, ms, (n, elapsed) => n >= MIN_CALLS && (n >= MIN_REPS || elapsed >= MIN_TIME_MS));
      results.push({ config: c, timing: timingOf(ms) });
    }
    progress(i + 1, candidates.length);
    await new Promise((resolve) => setImmediate(resolve));  // lets a SIGINT handler run between configurations
  }
  if (!results.some((r) => configKey(r.config) === configKey(heuristic))) {
    throw new TidarcError('runtime', `the heuristic configuration ${configKey(heuristic)} of ${v.name} gave a wrong result or did not run`);
  }
  const byTile: Record<string, TileBest> = {};
  for (const r of results) {
    const k = tileKey(r.config), old = byTile[k];
    if (!old || r.timing.medianUs < old.medianUs) byTile[k] = { splits: r.config.splits, threads: r.config.threads ?? 0, medianUs: r.timing.medianUs };
  }
  // Confirmation: the fastest few and the heuristic again, interleaved, each round a tenth of a sweep's calls.
  const finalists = [...results].sort((a, b) => a.timing.medianUs - b.timing.medianUs).slice(0, CONFIRM_TOP).map((r) => r.config);
  if (!finalists.some((c) => configKey(c) === configKey(heuristic))) finalists.push(heuristic);
  const samples = finalists.map(() => [] as number[]);
  for (let round = 0; round < CONFIRM_ROUNDS; round++) {
    for (const [f, c] of finalists.entries()) {
      timeCalls(caller(c), samples[f]!, (n, elapsed) => n >= MIN_CALLS && (n >= MIN_REPS / CONFIRM_ROUNDS || elapsed >= MIN_TIME_MS / CONFIRM_ROUNDS));
    }
  }
  const confirmed = finalists.map((config, f) => ({ config, timing: timingOf(samples[f]!) }));
  const best = confirmed.reduce((a, b) => (b.timing.medianUs < a.timing.medianUs ? b : a));
  const h = confirmed.find((r) => configKey(r.config) === configKey(heuristic))!;
  return { best: best.config, bestTiming: best.timing, heuristic, heuristicTiming: h.timing, timed: results.length, rejected, byTile };
}
