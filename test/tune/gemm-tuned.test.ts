/**
 * `tidarc compile --tuned` on the GEMM entries of a tuning database (src/tune/gemm-tuned.ts,
 * db.ts `gemms`, gemm-plan's checkGemmTuning): a record changes the unit's split-K for every M
 * and the tiles of the row counts it names, in the plan, the emitted source and the manifest
 * (which says what is tuned); the others stay as they were. A record the kernels cannot run
 * (a tile, a split-K) is refused with one line naming it; records of other arches, other models
 * or other machines are not used; the entries survive a merge. Needs: nothing.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { generateModel } from '../../src/codegen/generate.js';
import { type GemmTile, gemmTarget, gemmUnitName, planReduction } from '../../src/codegen/gemm-plan.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { EMPTY_DB, type GemmTuneEntry, type TuneDb, type TuneMeta, gemmEntryKey, mergeDb, parseTuneDb } from '../../src/tune/db.js';
import { tunedGemms } from '../../src/tune/gemm-tuned.js';
import { GEMM_SEARCH_SPACE } from '../../src/tune/gemm-space.js';
import { tuneReport } from '../../src/tune/report.js';
import { packageRoot } from '../../src/util/paths.js';
import { expectOneErrorLine, runTidarc } from '../helpers/cli.js';

const TINY = join(packageRoot(), 'examples', 'tiny.json');
const spec = await loadModelSpecFile(TINY);
const root = mkdtempSync(join(tmpdir(), 'tidarc-gemm-tuned-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const META: TuneMeta = { tidarc: 'x', compiler: 'nvcc 13', backend: 'cuda', device: 'NVIDIA H200 x 132 SMs', driver: '13.0' };
const timing = (us: number) => ({ medianUs: us, p20Us: us, p80Us: us });
/** tiny's gate_up: 1024 x 256 (4 k tiles: split-K 1, 2 or 4). */
const GATE_UP = gemmUnitName({ n: 1024, k: 256, dtype: 'bf16' });

function entry(unit: string, splitK: number, rows: Record<string, GemmTile>, over: Partial<GemmTuneEntry> = {}): GemmTuneEntry {
  const [, n, k] = /_n(\d+)_k(\d+)$/.exec(unit)!;
  return {
    unit, n: Number(n), k: Number(k), dtype: 'bf16', arch: 'sm_90', space: GEMM_SEARCH_SPACE, splitK, heuristicSplitK: 1, splitTotalsUs: { 1: 30, [splitK]: 20 },
    rows: Object.fromEntries(Object.entries(rows).map(([m, best]) => [m, { best, bestTiming: timing(5), heuristic: { blockM: 16, warpsM: 1, stages: 6 }, heuristicTiming: timing(6) }])),
    timed: 12, rejected: [], meta: META, date: '2026-12-04', ...over,
  };
}
const dbOf = (...entries: GemmTuneEntry[]): TuneDb => ({ format: 1, entries: {}, gemms: Object.fromEntries(entries.map((e) => [gemmEntryKey(e.unit, e.arch), e])) });

describe('a GEMM tuning record in the compile', () => {
  // M = 20: 16-row CTAs (two along M), 1 warp row, 5 stages; M = 64: 32 rows a CTA (two), 2 warp rows, 4 stages.
  const tiles = { 20: { blockM: 16, warpsM: 1, stages: 5 }, 64: { blockM: 32, warpsM: 2, stages: 4 } };
  const picked = tunedGemms(dbOf(entry(GATE_UP, 2, tiles)), spec, ['sm_90']);
  const plain = generateModel(spec, { arches: ['sm_90'] });
  const tuned = generateModel(spec, { arches: ['sm_90'], gemms: picked.gemms });

  test('is picked for its unit, with what it sets', () => {
    expect(Object.keys(picked.gemms)).toEqual([GATE_UP]);
    expect(picked.used[GATE_UP]).toBe('split-K 2; M=20 b16w1s5, M=64 b32w2s4 (sm_90, NVIDIA H200 x 132 SMs)');
    // The heuristic would not have chosen these: the test would prove nothing otherwise.
    expect(planReduction({ n: 1024, k: 256, dtype: 'bf16' }, gemmTarget(['sm_90'])).splitK).toBe(1);
  });

  test('changes the split-K of every kernel of the unit and the tiles of the row counts it names; the manifest says so', () => {
    const before = plain.manifest.gemms!.filter((g) => g.unit === GATE_UP);
    const after = tuned.manifest.gemms!.filter((g) => g.unit === GATE_UP);
    expect(after.map((g) => g.m)).toEqual(before.map((g) => g.m));
    expect(before.every((g) => g.splitK === 1 && g.tuned === undefined)).toBe(true);
    expect(after.every((g) => g.splitK === 2 && g.launch.splitCounters !== undefined)).toBe(true);
    const tileOf = (g: (typeof after)[number]) => ({ blockM: g.plan.blockM, warpsM: g.plan.warpsM, stages: g.plan.stages });
    for (const g of after) {
      const want = tiles[g.m as 20 | 64];
      expect(g.tuned).toEqual({ arch: 'sm_90', device: 'NVIDIA H200 x 132 SMs', tile: want !== undefined });
      if (want) expect([tileOf(g), g.launch.blockM, g.launch.dynamicSharedBytes]).toEqual([want, want.blockM, want.stages * (128 + want.blockM) * 128]);
      else expect(tileOf(g)).toEqual(tileOf(before.find((b) => b.m === g.m)!));
    }
    // Other units: untouched.
    expect(tuned.manifest.gemms!.filter((g) => g.unit !== GATE_UP)).toEqual(plain.manifest.gemms!.filter((g) => g.unit !== GATE_UP));
    expect(tuned.manifest.inputKey).not.toBe(plain.manifest.inputKey);
  });

  test('changes the emitted source: the reduction, the tiles, a note of where it was measured', () => {
    const path = `cuda/${GATE_UP}.cu`;
    const src = tuned.files.get(path)!;
    expect(src).not.toBe(plain.files.get(path));
    expect(src).toContain('static constexpr int kSplitK = 2;');
    expect(src).toContain('summed in increasing order by\n// each output tile\'s last CTA in the same launch');
    expect(src).toMatch(/struct ConfigM20 : Reduction \{\n {2}static constexpr int kBlockM = 16;\n.*\n {2}static constexpr int kWarpsM = 1;\n.*\n {2}static constexpr int kStages = 5;/);
    expect(src).toMatch(/struct ConfigM64 : Reduction \{\n {2}static constexpr int kBlockM = 32;\n.*\n {2}static constexpr int kWarpsM = 2;\n.*\n {2}static constexpr int kStages = 4;/);
    expect(src).toContain('// Tuned (split-K 2 and the tiles of M = 20, 64 measured on NVIDIA H200 x 132 SMs, sm_90).');
    for (const [p, text] of plain.files) if (p.startsWith('cuda/gemm_') && p !== path) expect(tuned.files.get(p), p).toBe(text);
  });
});

describe('which records apply', () => {
  const rec = entry(GATE_UP, 2, { 1: { blockM: 16, warpsM: 1, stages: 6 } });
  test('another arch, another model\'s shape, another machine: not used; two arches of one compile: kept the default, said why', () => {
    expect(tunedGemms(dbOf(rec), spec, ['sm_80']).gemms).toEqual({});
    expect(tunedGemms(dbOf({ ...rec, unit: 'gemm_bf16_n4096_k4096', n: 4096, k: 4096 }), spec, ['sm_90']).gemms).toEqual({});
    expect(tunedGemms(dbOf(rec), spec, ['sm_90'], { ...META, driver: '12.8' }).gemms).toEqual({});
    expect(Object.keys(tunedGemms(dbOf(rec), spec, ['sm_90'], META).gemms)).toEqual([GATE_UP]);
    const both = tunedGemms(dbOf(rec, { ...rec, arch: 'sm_80' }), spec, ['sm_80', 'sm_90']);
    expect(both.gemms).toEqual({});
    expect(both.skipped).toEqual([`${GATE_UP}: measured on sm_80 (split-K 2) and sm_90 (split-K 2), one plan serves this compile's arches; kept the default (compile the arches separately)`]);
    // One arch of a two-arch compile: held to the tightest limits (6 stages of 16 rows fit sm_80 too).
    expect(Object.keys(tunedGemms(dbOf(rec), spec, ['sm_80', 'sm_90']).gemms)).toEqual([GATE_UP]);
  });

  test('a record of an older GEMM search space (none named: before the 64-column tiles) is ignored, in one line that names it', () => {
    // Split-K 4: what the 128-column search chose for o and down; it would override today's rule.
    const old = entry(GATE_UP, 4, { 1: { blockM: 16, warpsM: 1, stages: 6 } }, { space: undefined });
    const older = { ...entry(GATE_UP, 4, {}, { space: 1 }), arch: 'sm_80' as const };
    for (const [db, arches, names] of [[dbOf(old), ['sm_90'], `${GATE_UP} (sm_90, split-K 4)`], [dbOf(old, older), ['sm_80', 'sm_90'], `${GATE_UP} (sm_80, split-K 4), ${GATE_UP} (sm_90, split-K 4)`]] as const) {
      const t = tunedGemms(db, spec, arches);
      expect(t.gemms).toEqual({});
      expect(t.skipped).toEqual([`${names}: made by GEMM search space 1, this tidarc's is ${GEMM_SEARCH_SPACE}; ignored, kept the default (retune with the device check's GEMM search)`]);
    }
    // Beside a current record of the same unit, the current one is used.
    const both = tunedGemms(dbOf(old, { ...rec, arch: 'sm_80' }), spec, ['sm_80', 'sm_90']);
    expect([Object.keys(both.gemms), both.skipped.length]).toEqual([[GATE_UP], 1]);
    expect(parseTuneDb(JSON.stringify(dbOf(old)), 'db.json').gemms).toEqual(dbOf(old).gemms);  // kept in the file, as stale entries are
  });

  test('GEMM entries survive a merge with attention entries and parse back; a malformed one is refused', () => {
    const db = mergeDb(EMPTY_DB, dbOf(rec));
    expect(db.gemms).toEqual({ [gemmEntryKey(GATE_UP, 'sm_90')]: rec });
    const newer = { ...rec, splitK: 4, date: '2026-12-05' };
    expect(mergeDb(db, dbOf(newer)).gemms![gemmEntryKey(GATE_UP, 'sm_90')]!.splitK).toBe(4);
    expect(parseTuneDb(JSON.stringify(db), 'db.json')).toEqual(db);
    const broken = { format: 1, entries: {}, gemms: { [gemmEntryKey(GATE_UP, 'sm_90')]: { ...rec, rows: { 1: { best: { blockM: 16 } } } } } };
    expect(() => parseTuneDb(JSON.stringify(broken), 'db.json')).toThrow(/a tuning database GEMM entry is malformed \(gemms\["gemm_bf16_n1024_k256 \| sm_90"\]\)/);
  });
});

describe('tuneReport with GEMM records', () => {
  test('a table per unit and M: the heuristic\'s split-K and tile against the tuned ones, with their times; not "empty"', () => {
    const text = tuneReport(dbOf(entry(GATE_UP, 2, { 20: { blockM: 16, warpsM: 1, stages: 5 } })));
    expect(text).not.toContain('empty');
    expect(text).toContain('| GEMM | arch | M | heuristic | us | tuned | us | heuristic / tuned |');
    expect(text).toContain(`| ${GATE_UP} | sm_90 | 20 | split-K 1 b16w1s6 | 6.0 | split-K 2 b16w1s5 | 5.0 | 1.20x |`);
    expect(tuneReport(dbOf(entry(GATE_UP, 2, { 20: { blockM: 16, warpsM: 1, stages: 5 } })), { cuda: { ...META, driver: '12.8' } })).toContain('1.20x (stale: driver was 13.0, is 12.8) |');
  });
  test('records of an older search space: one line naming them, no rows', () => {
    const old = entry(GATE_UP, 4, { 20: { blockM: 16, warpsM: 1, stages: 5 } }, { space: undefined });
    expect(tuneReport(dbOf(old))).toBe(`1 GEMM record made by GEMM search space 1, this tidarc's is ${GEMM_SEARCH_SPACE}, ignored by compile --tuned: ${GATE_UP} (sm_90, split-K 4)\n`);
    const text = tuneReport(dbOf(entry(GATE_UP, 2, { 20: { blockM: 16, warpsM: 1, stages: 5 } }), { ...old, arch: 'sm_80' }));
    expect(text).toContain(`| ${GATE_UP} | sm_90 | 20 |`);
    expect(text).not.toContain(`| ${GATE_UP} | sm_80 |`);
    expect(text.trimEnd().split('\n').pop()).toBe(`1 GEMM record made by GEMM search space 1, this tidarc's is ${GEMM_SEARCH_SPACE}, ignored by compile --tuned: ${GATE_UP} (sm_80, split-K 4)`);
  });
});

describe('tidarc compile --tuned with GEMM records', () => {
  const write = (name: string, db: TuneDb): string => {
    const path = join(root, name);
    writeFileSync(path, JSON.stringify(db));
    return path;
  };
  test('a tile the kernel cannot run is refused with one line naming the record, the row count and the tile', async () => {
    const db = write('bad-tile.json', dbOf(entry(GATE_UP, 2, { 20: { blockM: 24, warpsM: 1, stages: 4 } })));
    expectOneErrorLine(await runTidarc('compile', TINY, '--arch', 'sm_90', '--tuned', db, '--no-build', '--json', '--out', join(root, 'o1')),
      `${db}: tuned GEMM ${GATE_UP} (sm_90) at M = 20 names a tile the kernel cannot run: blockM 24 is not a multiple of 16 from 16 to 128`, 'tiles.20 = blockM 24, warpsM 1, stages 4');
  });
  test('too much shared memory for the arch, and a split-K that leaves a part empty, likewise', async () => {
    const smem = write('bad-smem.json', dbOf(entry(GATE_UP, 2, { 64: { blockM: 128, warpsM: 2, stages: 6 } }, { arch: 'sm_86' })));
    expectOneErrorLine(await runTidarc('compile', TINY, '--arch', 'sm_86', '--tuned', smem, '--no-build', '--json', '--out', join(root, 'o2')),
      `tuned GEMM ${GATE_UP} (sm_86) at M = 64`, '6 stages of 128 rows need 196608 bytes of shared memory; sm_86 allow 101376');
    const split = write('bad-split.json', dbOf(entry(GATE_UP, 3, {})));
    expectOneErrorLine(await runTidarc('compile', TINY, '--arch', 'sm_90', '--tuned', split, '--no-build', '--json', '--out', join(root, 'o3')),
      `tuned GEMM ${GATE_UP} (sm_90) names a split-K this shape cannot use (splitK = 3); allowed: 1, 2, 4`);
  });
  test('a record of an older search space: compile --tuned and tune --report say so in one line; the compile plans the default', async () => {
    const db = write('old-space.json', dbOf(entry(GATE_UP, 4, { 6: { blockM: 16, warpsM: 1, stages: 3 } }, { space: undefined })));
    const out = join(root, 'old-space');
    const r = await runTidarc('compile', TINY, '--arch', 'sm_90', '--tuned', db, '--no-build', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n').filter((l) => l.includes(GATE_UP))).toEqual([`tuned ${GATE_UP} (sm_90, split-K 4): made by GEMM search space 1, this tidarc's is ${GEMM_SEARCH_SPACE}; ignored, kept the default (retune with the device check's GEMM search)`]);
    expect(readFileSync(join(out, 'cuda', `${GATE_UP}.cu`), 'utf8')).toContain('static constexpr int kSplitK = 1;');
    const report = await runTidarc('tune', '--report', '--db', db);
    expect([report.code, report.stdout.split('\n')[0]]).toEqual([0, `1 GEMM record made by GEMM search space 1, this tidarc's is ${GEMM_SEARCH_SPACE}, ignored by compile --tuned: ${GATE_UP} (sm_90, split-K 4)`]);
  });
  test('a good record: the compile\'s manifest and source carry it', async () => {
    const db = write('good.json', dbOf(entry(GATE_UP, 4, { 6: { blockM: 16, warpsM: 1, stages: 3 } })));
    const out = join(root, 'good');
    const r = await runTidarc('compile', TINY, '--arch', 'sm_90', '--tuned', db, '--no-build', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`tuned ${GATE_UP}: split-K 4; M=6 b16w1s3 (sm_90, NVIDIA H200 x 132 SMs)`);
    expect(r.stdout).toMatch(/gemm gate_up\s+1024 x 256\s+bf16, split-K 4 \(tuned on NVIDIA H200 x 132 SMs, tiles of M = 6\), M = 1, 6, 20, 64;/);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { gemms: { unit: string; m: number; splitK: number; tuned?: { tile: boolean } }[] };
    expect(manifest.gemms.filter((g) => g.unit === GATE_UP).map((g) => [g.m, g.splitK, g.tuned?.tile])).toEqual([[1, 4, false], [6, 4, true], [20, 4, false], [64, 4, false]]);
    expect(readFileSync(join(out, 'cuda', `${GATE_UP}.cu`), 'utf8')).toContain('static constexpr int kSplitK = 4;');
  });
});
