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
 * Tiles (warps, tileN) are compile-time: one CPU library per tile, compiled in parallel (one
 * compiler process per core; none runs while something is timed) and cached across runs;
 * splits and threads are call parameters. Without a budget every tile is compiled before any
 * timing. A budget (budgetSeconds) covers the compiles too: before each shape, the tiles it
 * needs are compiled in the order of run-plan.ts (the default tile first), one batch (a tile a
 * core) at a time, each only where the budget then left can also time the search after it
 * (run-plan.ts's cost model, from the shape's measured call time and the last batch's compile);
 * the first shape is always tuned, on the default tile at least, and no shape starts that the
 * budget cannot finish. The ETA comes from the same model, calibrated on the shapes done; under a
 * budget it counts the shapes (and compiles) the loop will start by those rules. Every time is
 * read off TuneRequest.clock (a test drives a fake one).
 * The database is written after every shape (incremental; an interrupted run keeps what it
 * measured) and a rerun skips the shapes it holds for this machine.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { cachedKernels, kernelCacheEntry } from '../build/kernel-cache.js';
import { runPool } from '../build/pool.js';
import { TARGETS } from '../codegen/targets.js';
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
import { type RandomAttentionInputs, randomAttentionInputs, referenceAttention } from '../runtime/reference.js';
import { type TileBest, type Timing, type TuneDb, type TuneEntry, lookup, mergeDb, readTuneDb, shapeBucket, variantKey, withEntry, writeTuneDb } from './db.js';
import { cpuTuneMeta, lastLevelCacheBytes } from './meta.js';
import { type Protocol, type Tile, affordableTiles, shapeMs, tileKey, tileOrder } from './run-plan.js';
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
  /** About how long the run may take, compiles included (the first shape is tuned whatever it takes). */
  readonly budgetSeconds?: number;
  /** Restrict the search space (tests, quick runs). */
  readonly space?: { readonly warps?: readonly number[]; readonly tileN?: readonly number[]; readonly splits?: readonly number[]; readonly threads?: readonly number[] };
  readonly log?: (line: string) => void;
  /** Aborting (Ctrl-C) ends the run after the configuration being timed; the database keeps every finished shape. */
  readonly signal?: AbortSignal;
  /** Wraps each tile's library (tests: a library that computes wrong results must be rejected). */
  readonly wrapLibrary?: (lib: KernelLibrary, tile: { warps: number; tileN: number }) => KernelLibrary;
  /**
   * Milliseconds now (default performance.now). Every time the run measures or spends reads it:
   * the calls timed, the compiles, the budget's deadline, the ETA (tests: a fake clock that only
   * kernel calls advance, by known amounts, so the ETA's arithmetic is checked exactly).
   */
  readonly clock?: () => number;
  /** Tiles compiled at once, one compiler process each (default: the CPU's threads; tests: 1, so a batch is one tile on any machine). */
  readonly compileCores?: number;
  /** Called as each tile's compile ends, before its time is read (tests: a fake clock charges the compile its time). */
  readonly onTileCompiled?: (tile: Tile) => void;
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

/** `12 s`, `3.4 s`: tenths where whole seconds would say too little. */
const seconds = (ms: number): string => `${(Math.max(0, ms) / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;

const PROTOCOL: Protocol = { minReps: MIN_REPS, minTimeMs: MIN_TIME_MS, minCalls: MIN_CALLS, confirmTop: CONFIRM_TOP, confirmRounds: CONFIRM_ROUNDS };
/** Before any tile compiled in this run: what a batch of tile compiles is assumed to take. */
const PRIOR_BATCH_MS = 15_000;

export async function tuneCpu(req: TuneRequest): Promise<TuneRunResult> {
  const log = req.log ?? (() => undefined);
  const now = req.clock ?? (() => performance.now());
  const meta = await cpuTuneMeta();
  const names = [...req.drafts.map(tidarVariantName), AR_VARIANT];
  const libraries = new Map<string, KernelLibrary>();
  // One CPU library per tile, each an entry of the kernel cache (a rerun reuses it), of the variants timed only: the prefill
  // chunk and mask blocks are never timed here, and were about half of each tile's C++. (A tuned model's own compile
  // carries the recorded call parameters in its tiles, so it never was one of these entries.)
  // A tile other than the default is built only for the variants whose search has it (variantsOf, from the jobs): a tile
  // valid for one variant may be invalid for another (4 warps split 16 or 32 keys of tidar_k8's rows but not of ar's <= 16:
  // plan.ts checkPlan refused the whole library, and the README's own tune example exited 1 on it).
  const variantsOf = new Map<string, string[]>();
  const variantsFor = (t: Tile): string[] => (tileKey(t) === tileKey(DEFAULT_TILE) ? names : variantsOf.get(tileKey(t)) ?? []);
  const tileEntry = (t: Tile) => {
    const vs = variantsFor(t);
    return { spec: req.spec, drafts: req.drafts, target: 'cpu' as const, cacheDir: req.cacheDir, variants: vs, tiles: Object.fromEntries(vs.map((n) => [n, { warps: t.warps, tileN: t.tileN }])) };
  };
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
  const started = now();
  // The budget covers everything from here: compiles, input sets, references, timing.
  const deadline = req.budgetSeconds === undefined ? Infinity : started + req.budgetSeconds * 1000;
  let db = readTuneDb(req.dbPath);
  let tuned = 0, cached = 0;
  const skipped: string[] = [];
  const all = cpuThreadCount();
  const cores = Math.max(1, req.compileCores ?? all);
  const restrict = <T>(xs: readonly T[], only?: readonly T[]): T[] => xs.filter((x) => !only || only.includes(x));
  // The default tile's compile describes the variants (rows, row tiles) for every shape.
  const compiled = new Set<string>();
  let batchMs = PRIOR_BATCH_MS;
  const wasCached = existsSync(join(tileDir(DEFAULT_TILE), 'manifest.json'));
  const t00 = now();
  const defaults = (await compileTile(DEFAULT_TILE)).manifest;
  if (!wasCached) {
    req.onTileCompiled?.(DEFAULT_TILE);
    // That compile ran the library's sources (one a variant, and the library's own) on all cores; a batch compiles each
    // tile on one core: about as long as the sources one after the other. The first batch's own time replaces it.
    batchMs = (now() - t00) * Math.min(availableParallelism(), names.length + 1);
  }
  compiled.add(tileKey(DEFAULT_TILE));
  const jobs = names.flatMap((name) => req.batches.flatMap((batch) => req.prefixes.map((prefix) => {
    const v = defaults.variants.find((x) => x.name === name)!;
    const vkey = variantKey({ variant: v.name, dtype: req.spec.dtype, headDim: req.spec.headDim, qHeads: req.spec.queryHeads, kvHeads: req.spec.kvHeads });
    const shape: TuneShape = { headDim: req.spec.headDim, rows: v.rows, kvHeads: req.spec.kvHeads, batch, prefix };
    const call = heuristicCpuCall({ batch, kvHeads: req.spec.kvHeads, rows: v.rows, rowTiles: v.plan.rowTiles, prefix, steps: v.steps, headDim: req.spec.headDim, tileN: v.plan.tileN }, all);
    const heuristic: AttentionConfig = { warps: v.plan.warps, tileN: v.plan.tileN, ...call };
    const candidates = searchSpace(shape, 'cpu', { threads: req.space?.threads ?? [1, 0] }).candidates
      .filter((c) => restrict(WARPS, req.space?.warps).includes(c.warps) && restrict(TILE_N, req.space?.tileN).includes(c.tileN) && restrict(SPLITS, req.space?.splits).includes(c.splits));
    if (!candidates.some((c) => configKey(c) === configKey(heuristic))) candidates.push(heuristic);
    // Calls scale with keys x rows: what the ETA scales a measured call time by.
    const work = batch * (prefix + v.steps) * (v.rows + 8);
    return { v, vkey, bucket: shapeBucket(batch, prefix), shape, heuristic, candidates, work };
  })));
  type Job = (typeof jobs)[number];
  for (const name of names) {
    for (const key of new Set(jobs.filter((j) => j.v.name === name).flatMap((j) => j.candidates.map(tileKey)))) variantsOf.set(key, [...(variantsOf.get(key) ?? []), name]);
  }
  const todo = jobs.filter((j) => !lookup(db, j.vkey, j.bucket, meta));
  const order = tileOrder(todo.map((j) => j.candidates), DEFAULT_TILE);
  for (const t of order) if (!compiled.has(tileKey(t)) && existsSync(join(tileDir(t), 'manifest.json'))) compiled.add(tileKey(t));
  const compileTiles = async (tiles: readonly Tile[]): Promise<void> => {
    if (tiles.length === 0) return;
    const t0 = now();
    let done = 0;
    log(`compiling the CPU kernels of ${tiles.length} tile${tiles.length === 1 ? '' : 's'}, ${Math.min(cores, tiles.length)} at a time`);
    await runPool(tiles, cores, async (t) => {
      if (req.signal?.aborted) return;
      await compileTile(t, 1);
      req.onTileCompiled?.(t);
      compiled.add(tileKey(t));
      log(`  [${++done}/${tiles.length}] ${tileKey(t)} (${((now() - t0) / 1000).toFixed(0)} s)`);
    });
    if (!req.signal?.aborted) batchMs = (now() - t0) / Math.ceil(tiles.length / cores);
  };
  const uncompiled = (candidates: readonly AttentionConfig[]): Tile[] => order.filter((t) => !compiled.has(tileKey(t)) && candidates.some((c) => tileKey(c) === tileKey(t)));
  const onTiles = (candidates: readonly AttentionConfig[], tiles: readonly Tile[]): AttentionConfig[] => candidates.filter((c) => tiles.some((t) => tileKey(t) === tileKey(c)));
  /** A shape's configurations on some tiles, and its heuristic (always timed: the entry's baseline). */
  const withHeuristic = (x: Job, configs: AttentionConfig[]): AttentionConfig[] => (configs.some((c) => configKey(c) === configKey(x.heuristic)) ? configs : [...configs, x.heuristic]);
  // Without a budget every tile is compiled first, as before: nothing compiles between shapes.
  if (req.budgetSeconds === undefined) await compileTiles(uncompiled(todo.flatMap((j) => j.candidates)));

  // What the shapes measured (call time of the heuristic, fixed part), and how the model did on finished shapes.
  const probes: { work: number; callMs: number; fixedMs: number }[] = [];
  // The model's search time against the measured one over the shapes done (per-call overheads it leaves out, other threads' calls).
  let predictedDone = 0, actualDone = 0;
  const calibration = (): number => (predictedDone > 0 ? Math.min(8, Math.max(0.25, actualDone / predictedDone)) : 1);
  /** The measured shape nearest `x` in work. */
  const nearest = (x: Job): (typeof probes)[number] => probes.reduce((a, b) => (Math.abs(Math.log(b.work / x.work)) < Math.abs(Math.log(a.work / x.work)) ? b : a));
  /** A shape's search over `configs` configurations, from the nearest measured shape's call time scaled by the work ratio. */
  const predictSearch = (x: Job, configs: number): number => {
    const near = nearest(x);
    return calibration() * shapeMs({ callMs: near.callMs * (x.work / near.work), fixedMs: 0, configs }, PROTOCOL);
  };
  /** A shape's time: the nearest measured shape's fixed part, then its search. */
  const predict = (x: Job, configs: number): number => nearest(x).fixedMs + predictSearch(x, configs);
  /**
   * The rest of the run: what is left of shape `j` (currentLeftMs), then the shapes after it still
   * to tune. Under a budget, as the loop below will run them: a shape starts only before the
   * deadline and where its time on the tiles compiled by then fits; it first compiles the tiles
   * the budget then affords it (affordableTiles, whole batches of batchMs). So only the shape now
   * running can take the ETA past the budget (issue 17: an ETA blind to the budget printed 8199 s
   * under --budget 20; one that summed every shape and capped the sum at the deadline was a shape
   * or more too long where the budget skips a shape that does not fit and runs a later one).
   */
  const eta = (j: number, currentLeftMs: number): number => {
    const start = now();
    let ms = currentLeftMs;
    const have = new Set(compiled);
    for (const x of jobs.slice(j + 1)) {
      if (lookup(db, x.vkey, x.bucket, meta)) continue;
      if (req.budgetSeconds === undefined) {
        ms += predict(x, x.candidates.length);  // every tile was compiled before the first shape
        continue;
      }
      if (start + ms >= deadline) break;
      const at = order.filter((t) => have.has(tileKey(t)));
      if (start + ms + predict(x, onTiles(x.candidates, at).length) > deadline) continue;
      const fixedMs = nearest(x).fixedMs;
      const more = affordableTiles({
        needed: order.filter((t) => !have.has(tileKey(t)) && x.candidates.some((c) => tileKey(c) === tileKey(t))),
        configsOn: (tiles) => onTiles(x.candidates, tiles).length, compiledTiles: at, cores, batchMs,
        searchMs: (configs) => predictSearch(x, configs), leftMs: deadline - (start + ms + fixedMs),
      });
      for (const t of more) have.add(tileKey(t));
      ms += fixedMs + Math.ceil(more.length / cores) * batchMs + predictSearch(x, withHeuristic(x, onTiles(x.candidates, [...at, ...more])).length);
    }
    return ms;
  };

  try {
    for (const [j, job] of jobs.entries()) {
      const { v, vkey, bucket, shape, heuristic } = job;
      const what = `[${j + 1}/${jobs.length}] ${vkey} | ${bucket}`;
      if (lookup(db, vkey, bucket, meta)) {
        cached++;
        log(`${what}: in the database, skipped`);
        continue;
      }
      // The first shape is always tuned; after it, none starts past the budget.
      if (req.signal?.aborted || (tuned > 0 && now() >= deadline)) {
        skipped.push(`${vkey} | ${bucket}`);
        continue;
      }
      // Nor one the budget cannot finish, judged before its inputs are made (from the shapes measured).
      if (tuned > 0 && req.budgetSeconds !== undefined && now() + predict(job, onTiles(job.candidates, order.filter((t) => compiled.has(tileKey(t)))).length) > deadline) {
        skipped.push(`${vkey} | ${bucket}`);
        continue;
      }
      const t0 = now();
      const prepared = prepareShape(v, shape, req.spec);
      const callMs = probeCall(prepared, heuristic, library, now);
      probes.push({ work: job.work, callMs, fixedMs: now() - t0 });
      let candidates = job.candidates;
      if (req.budgetSeconds !== undefined) {
        // This shape's search (its fixed part is spent) over the configurations of some tiles.
        const searchMs = (configs: number): number => calibration() * shapeMs({ callMs, fixedMs: 0, configs }, PROTOCOL);
        const at = order.filter((t) => compiled.has(tileKey(t)));
        const leftMs = deadline - now();
        if (tuned > 0 && searchMs(onTiles(job.candidates, at).length) > leftMs) {
          skipped.push(`${vkey} | ${bucket}`);
          continue;
        }
        // One batch at a time, each only where the budget then left affords it and the search after it, at the batch time
        // last measured (the first batch's own, not an assumed one: under load 10 tiles took 95 s against an assumed 15 s
        // a batch of 2, and --budget 90 ran 115 s).
        const more: Tile[] = [];
        for (;;) {
          const next = affordableTiles({
            needed: uncompiled(job.candidates), configsOn: (tiles) => onTiles(job.candidates, tiles).length, compiledTiles: [...at, ...more], cores, batchMs, searchMs, leftMs: deadline - now(),
          }).slice(0, cores);
          if (next.length === 0 || req.signal?.aborted) break;
          await compileTiles(next);
          more.push(...next.filter((t) => compiled.has(tileKey(t))));
        }
        candidates = withHeuristic(job, onTiles(job.candidates, [...at, ...more]));
        const left = job.candidates.length - candidates.length;
        if (left > 0) log(`${what}: within the budget, ${candidates.length} of ${job.candidates.length} configurations (the other tiles are not compiled)`);
      }
      const searchPredicted = shapeMs({ callMs, fixedMs: 0, configs: candidates.length }, PROTOCOL);
      // What is left of this shape is its search (its fixed part and any compiles are spent: subtracting the time since
      // t0 from the whole shape's prediction printed "eta about -20.4 s" after 20 s of compiles under --budget).
      log(`${what}: ${candidates.length} configurations to check against the float64 reference and time; eta about ${seconds(eta(j, calibration() * searchPredicted))} for the run`);
      let shown = now();
      const loop0 = now();
      const entry = await searchShape(prepared, candidates, heuristic, library, req, now, (done, total) => {
        const at = now();
        if (at - shown < 2000 && done < total) return;
        shown = at;
        // This shape's rest at its own measured rate, then the shapes after it.
        const shapeLeft = ((at - loop0) / done) * (total - done) + shapeMs({ callMs, fixedMs: 0, configs: 0 }, PROTOCOL);
        log(`${what}: ${done}/${total} configurations; eta ${seconds(shapeLeft)} for this shape, about ${seconds(eta(j, shapeLeft))} for the run`);
      });
      if (!entry) {
        skipped.push(`${vkey} | ${bucket}`);
        break;  // interrupted inside the shape: nothing of it is recorded
      }
      predictedDone += searchPredicted;
      actualDone += now() - loop0;
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

/**
 * The CPU tuner's reference tile (the CPU is not an sm_80): 4 warps' worth of rows (64, or 16
 * for a variant of <= 16 rows: plan.ts rowTileOf) and the CPU target's keys per tile.
 */
const DEFAULT_TILE: Tile = { warps: 4, tileN: TARGETS.cpu.tile.tileN };

/** A shape's inputs and reference: the fixed part of its search. */
interface PreparedShape {
  readonly v: ManifestVariant;
  readonly shape: TuneShape;
  readonly spec: ModelSpec;
  readonly sets: number;
  readonly inputs: readonly { readonly bits: RandomAttentionInputs['bits'] }[];
  readonly want: { readonly o: Float64Array | number[] };
  readonly outputs: { o: Uint16Array; lse: Float32Array };
  readonly cacheCapacity: number;
  readonly prefixLen: number[];
}

function prepareShape(v: ManifestVariant, shape: TuneShape, spec: ModelSpec): PreparedShape {
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
  const rows = shape.batch * n * spec.queryHeads;
  return { v, shape, spec, sets, inputs, want, outputs: { o: new Uint16Array(rows * spec.headDim), lse: new Float32Array(rows) }, cacheCapacity, prefixLen };
}

function caller(p: PreparedShape, c: AttentionConfig, library: (t: Tile) => KernelLibrary): (s: number) => void {
  const lib = library(c);
  return (s) => void lib.run(p.v.name, { batch: p.shape.batch, cacheCapacity: p.cacheCapacity, prefixLen: p.prefixLen, ...p.inputs[s]!.bits, splits: c.splits, threads: c.threads ?? 0, outputs: p.outputs });
}

/** Milliseconds of one call of the heuristic configuration (after one that warms it up): what the cost model scales. */
function probeCall(p: PreparedShape, heuristic: AttentionConfig, library: (t: Tile) => KernelLibrary, now: () => number): number {
  const call = caller(p, heuristic, library);
  call(0);
  const t = now();
  call(1 % p.sets);
  return now() - t;
}

async function searchShape(p: PreparedShape, candidates: readonly AttentionConfig[], heuristic: AttentionConfig,
  library: (t: Tile) => KernelLibrary, req: TuneRequest, now: () => number, progress: (done: number, total: number) => void): Promise<ShapeResult | undefined> {
  const { spec, v, sets, want, outputs } = p;
  const tolerance = EMU_TOLERANCE[spec.dtype];
  const results: { config: AttentionConfig; timing: Timing }[] = [];
  const rejected: string[] = [];
  // Calls of `call` until `enough` says stop, milliseconds per call; the input set rotates across
  // all calls of the shape, so a set comes back only after every other one was read.
  let cursor = 0;
  const timeCalls = (call: (s: number) => void, into: number[], enough: (n: number, ms: number) => boolean): void => {
    const t0 = now();
    for (let n = 0; !enough(n, now() - t0); n++) {
      const a = now();
      call(cursor++ % sets);
      into.push(now() - a);
    }
  };
  for (const [i, c] of candidates.entries()) {
    if (req.signal?.aborted) return undefined;
    const call = caller(p, c, library);
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
      timeCalls(caller(p, c, library), samples[f]!, (n, elapsed) => n >= MIN_CALLS && (n >= MIN_REPS / CONFIRM_ROUNDS || elapsed >= MIN_TIME_MS / CONFIRM_ROUNDS));
    }
  }
  const confirmed = finalists.map((config, f) => ({ config, timing: timingOf(samples[f]!) }));
  const best = confirmed.reduce((a, b) => (b.timing.medianUs < a.timing.medianUs ? b : a));
  const h = confirmed.find((r) => configKey(r.config) === configKey(heuristic))!;
  return { best: best.config, bestTiming: best.timing, heuristic, heuristicTiming: h.timing, timed: results.length, rejected, byTile };
}
