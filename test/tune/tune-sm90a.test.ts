/**
 * `tidarc tune` compares the sm_90 and the sm_90a attention of a variant that has both (issue 18
 * item 3), and the runtime takes the winner:
 *   - pure: compile --tuned's choice (report.ts tunedTiles) weighs the database's sm_90a timing
 *     against the chosen tile's, per variant over its shapes; the winner's split counts become
 *     the calls; a compile without sm_90a ignores it; the manifest carries the kernel
 *     (tuned.kernel) and attentionKernelOf honours it (no record: sm_90a where compiled); run
 *     --tuned weighs them for the arches a 9.0 device's kernel cache compiles (runArches);
 *   - the device check's search in --dry-run on the emulated driver (a 9.0 device): a bundle whose
 *     tuned variant (the prefill chunk at G = 4, 256 rows a KV head) has an sm_90a kernel times it
 *     beside the tile, checked against float64, and tune-cuda.json records its fastest split count;
 *     compile --tuned then picks the kernel the timings say, and the launcher's rule follows.
 * Tagged: the second part needs a C++ compiler and numpy.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type BundleShape, H200_SMS, prepareDeviceBundle, sm90aSplits } from '../../src/bench/device-bundle.js';
import { findCxx } from '../../src/build/toolchain.js';
import { generateModel } from '../../src/codegen/generate.js';
import type { ManifestVariant } from '../../src/codegen/manifest.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { attentionKernelOf } from '../../src/runtime/cuda/attention-launch.js';
import { type TuneDb, type TuneEntry, entryKey, parseTuneDb, variantKey, writeTuneDb } from '../../src/tune/db.js';
import { tuneReport, tunedTiles } from '../../src/tune/report.js';
import { loadTunedTiles, runArches } from '../../src/tune/apply.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const numpy = await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-tune-sm90a-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SHAPE: BundleShape = { dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 1, drafts: [] };
const spec: ModelSpec = {
  name: 'tune-sm90a', family: 'qwen3', layers: 1, hiddenSize: 256, queryHeads: 4, kvHeads: 1, headDim: 64, intermediateSize: 128, vocabSize: 260,
  ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true, dtype: 'bf16', maskTokenId: 259, draftLengths: [],
};
const VARIANT = 'prefill_c64';
const KEY = variantKey({ variant: VARIANT, dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 1 });
const META = { tidarc: 'x', compiler: 'nvcc 13', backend: 'cuda' as const, device: 'H200 x 132 SMs', driver: '13.0' };
const TILE = { warps: 4, tileN: 64, warpRows: 16 as const, stages: 2 as const };
const timing = (us: number) => ({ medianUs: us, p20Us: us, p80Us: us });

/** A bucket's entry: the tile timed at `tileUs` (splits 2), the sm_90a kernel at `sm90aUs` (splits 4). */
function entry(bucket: string, tileUs: number, sm90aUs?: number): TuneEntry {
  const best = { ...TILE, splits: 2 };
  return {
    variant: KEY, bucket, best, bestTiming: timing(tileUs), heuristic: best, heuristicTiming: timing(tileUs), timed: 1, rejected: [],
    byTile: { 'w4r16-n64p2': { splits: 2, medianUs: tileUs } }, ...(sm90aUs === undefined ? {} : { sm90a: { splits: 4, medianUs: sm90aUs } }), meta: META, date: '2026-12-05',
  };
}
const db = (...entries: TuneEntry[]): TuneDb => ({ format: 1, entries: Object.fromEntries(entries.map((e) => [entryKey(e.variant, e.bucket), e])) });

describe('compile --tuned picks the kernel a 9.0 device runs from the search\'s timings (pure)', () => {
  test('sm_90a faster on geometric mean: kernel sm_90a with its split counts; slower: sm_90 with the tile\'s; a compile without sm_90a: no kernel', () => {
    const fast = tunedTiles(db(entry('b1 L1024', 100, 60), entry('b1 L4096', 300, 320)), spec, [VARIANT], ['sm_90', 'sm_90a']);
    expect(fast.tiles[VARIANT]).toMatchObject({ kernel: 'sm_90a', calls: { 'b1 L1024': { splits: 4 }, 'b1 L4096': { splits: 4 } } });
    expect(fast.used[VARIANT]).toMatch(/the sm_90a kernel on a 9\.0 device \(sm_90a \/ tile time 0\.80/);
    const slow = tunedTiles(db(entry('b1 L1024', 100, 130), entry('b1 L4096', 300, 290)), spec, [VARIANT], ['sm_90', 'sm_90a']);
    expect(slow.tiles[VARIANT]).toMatchObject({ kernel: 'sm_90', calls: { 'b1 L1024': { splits: 2 }, 'b1 L4096': { splits: 2 } } });
    const plain = tunedTiles(db(entry('b1 L1024', 100, 60)), spec, [VARIANT], ['sm_90']);
    expect(plain.tiles[VARIANT]!.kernel).toBeUndefined();
    expect(plain.tiles[VARIANT]!.calls).toEqual({ 'b1 L1024': { splits: 2 } });
    // Entries without an sm_90a timing (an older search, a variant without one): no choice recorded.
    expect(tunedTiles(db(entry('b1 L1024', 100)), spec, [VARIANT], ['sm_90', 'sm_90a']).tiles[VARIANT]!.kernel).toBeUndefined();
  });

  test('tune --report lists the sm_90a timings against each shape\'s tuned best', () => {
    const text = tuneReport(db(entry('b1 L1024', 100, 60), entry('b1 L4096', 300, 320), entry('b8 L1024', 50)));
    expect(text).toContain(`- ${KEY} | b1 L1024: 60.0 us at 4 splits vs 100.0 us: sm_90a is faster`);
    expect(text).toContain(`- ${KEY} | b1 L4096: 320.0 us at 4 splits vs 300.0 us: the tile is faster`);
    expect(text).not.toContain('b8 L1024: ');
  });

  test('the manifest records the kernel and attentionKernelOf honours it; with no kernel in the record the compile\'s cost-model choice decides', () => {
    const pickOf = (kernel?: 'sm_90' | 'sm_90a'): ManifestVariant => {
      const tiles = { [VARIANT]: { ...TILE, calls: { 'b1 L1024': { splits: 4 } }, measuredOn: { backend: 'cuda' as const, device: META.device }, ...(kernel ? { kernel } : {}) } };
      return generateModel(spec, { targets: ['sm_90', 'sm_90a'], tiles }).manifest.variants.find((v) => v.name === VARIANT)!;
    };
    const arches = ['sm_90', 'sm_90a'] as const;
    expect(pickOf('sm_90').tuned?.kernel).toBe('sm_90');
    expect(attentionKernelOf(pickOf('sm_90'), arches, [9, 0])).toBeUndefined();
    expect(attentionKernelOf(pickOf('sm_90a'), arches, [9, 0])?.symbol).toMatch(/_sm90a$/);
    // No kernel recorded: the compile's heuristic (attention-kernel-choice.ts), whichever it chose.
    const untuned = pickOf();
    expect(untuned.sm90a?.heuristic?.kernel).toMatch(/^sm_90a?$/);
    expect(attentionKernelOf(untuned, arches, [9, 0])?.symbol).toBe(untuned.sm90a!.heuristic!.kernel === 'sm_90a' ? untuned.sm90a!.symbol : undefined);
  });

  test('run --tuned on a 9.0 device weighs the kernels for the arches its kernel cache compiles (sm_90 and sm_90a)', async () => {
    expect(runArches('sm_90')).toEqual(['sm_90', 'sm_90a']);
    expect(runArches('sm_80')).toEqual(['sm_80']);
    const path = join(root, 'tune.json');
    await writeTuneDb(path, db(entry('b1 L1024', 100, 60)));
    const lines: string[] = [];
    const load = { path, field: 'tuned', spec, drafts: [], log: (l: string) => lines.push(l) };
    expect(loadTunedTiles({ ...load, arches: runArches('sm_90') })[VARIANT]).toMatchObject({ kernel: 'sm_90a', calls: { 'b1 L1024': { splits: 4 } } });
    expect(lines.join('\n')).toMatch(/tuned prefill_c64: w4r16-n64p2 .*the sm_90a kernel on a 9\.0 device/);
    expect(loadTunedTiles({ ...load, arches: runArches('sm_80') })[VARIANT]!.kernel).toBeUndefined();
  });

  test('a malformed sm_90a timing is refused in one line naming the entry', () => {
    const bad = { format: 1, entries: { [entryKey(KEY, 'b1 L64')]: { ...entry('b1 L64', 10), sm90a: { splits: 0, medianUs: 3 } } } };
    expect(() => parseTuneDb(JSON.stringify(bad), 'tune.json')).toThrow(expect.objectContaining({ message: expect.stringMatching(/sm_90a timing is malformed/), details: expect.objectContaining({ field: 'entries["prefill_c64 bf16 d64 q4/kv1 | b1 L64"].sm90a', source: 'tune.json' }) }));
  });
});

interface Sm90aRecord { symbol: string; timed: { splits: number; medianUs: number; maxError: number }[]; rejected: unknown[]; best?: number; bestUs?: number }
interface Bucket { bucket: string; bestUs: number; faster?: string; sm90a?: Sm90aRecord }

describe.skipIf(!cxx.found || !numpy)('the device check\'s search times the sm_90a kernel on the emulated driver', () => {
  let out: string, section: { buckets: Bucket[] }, tuned: TuneDb;
  beforeAll(async () => {
    const bundle = join(root, 'bundle');
    // The grid's model is another shape, so the tuned variant's planned tile (device-bundle.ts plannedTile) is compiled as a tile
    // of its own, whatever row tile the grid model's planner would pick (the two may differ: the heuristic must be a tile timed).
    await prepareDeviceBundle({
      outDir: bundle, grid: [{ dtype: 'fp16', headDim: 64, qHeads: 2, kvHeads: 2, drafts: [] }], emulated: true,
      tune: { shape: SHAPE, variants: [VARIANT], batches: [1], prefixes: [128], tiles: [], maxConfigs: 2, slots: H200_SMS },
    });
    out = join(root, 'out');
    await exec('python3', [resolve('scripts/device-check/device_check.py'), '--bundle', bundle, '--out', out, '--dry-run', '--parts', 'tune'],
      { env: { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver() }, maxBuffer: 64 << 20 });
    section = (JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { tune: { buckets: Bucket[] } }).tune;
    tuned = parseTuneDb(readFileSync(join(out, 'tune-cuda.json'), 'utf8'), 'tune-cuda.json');
  }, 300_000);

  test('both kernels checked against float64 and timed; the database holds the sm_90a kernel\'s fastest split count', () => {
    const [b] = section.buckets;
    expect(b!.sm90a!.symbol).toMatch(/^tidarc_attn_prefill_c64_bf16_d64_q4_kv1_sm90a$/);
    expect(b!.sm90a!.rejected).toEqual([]);
    expect(b!.sm90a!.timed.map((t) => t.splits)).toEqual(sm90aSplits(128, 64));
    const e = tuned.entries[entryKey(KEY, 'b1 L128')]!;
    expect(e.sm90a).toEqual({ splits: b!.sm90a!.best, medianUs: b!.sm90a!.bestUs });
    expect(b!.faster).toBe(b!.sm90a!.bestUs! < b!.bestUs ? 'sm_90a' : 'sm_90');
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(new RegExp(`The sm_90a kernel \\(TMA \\+ wgmma\\) at its fastest split count: ${KEY} \\| b1 L128: [0-9.]+ us at ${b!.sm90a!.best} splits vs the best tile's [0-9.]+ us: ${b!.faster} is faster`));
  });

  test('compile --tuned takes the faster kernel and the launcher\'s rule follows it', () => {
    const e = Object.values(tuned.entries)[0]!;
    const t = tunedTiles(tuned, spec, [VARIANT], ['sm_90', 'sm_90a']);
    const want = e.sm90a!.medianUs < e.byTile![Object.keys(e.byTile!)[0]!]!.medianUs ? 'sm_90a' : 'sm_90';
    expect(t.tiles[VARIANT]!.kernel).toBe(want);
    const v = generateModel(spec, { targets: ['sm_90', 'sm_90a'], tiles: t.tiles }).manifest.variants.find((x) => x.name === VARIANT)!;
    expect(attentionKernelOf(v, ['sm_90', 'sm_90a'], [9, 0]) !== undefined).toBe(want === 'sm_90a');
  });
});
