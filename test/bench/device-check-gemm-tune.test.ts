/**
 * The device check's GEMM search races the two kernel families on a 9.0 device (issues 14 and
 * 18 item 3; scripts/device-check/gemm_tune.py), in --dry-run on the emulated driver (a 9.0
 * device), on one small shape (N = 197 over two 128-row weight tiles, K = 520 with a partial k
 * tile) at M = 1 and 20 and split-K 1 and 3:
 *   - the bundle (src/bench/sm90a-gemm-search.ts) holds the sm_90a GEMM's candidates at the same
 *     split-K counts, the planner's token tile per M; lm_head's shape has none, and says why;
 *   - the search checks every sm_90a candidate against float64 and in bits across M, times it,
 *     and tune-cuda.json records one family and one split-K for the shape with both families'
 *     timings (db.ts parses it), chosen as chooseGemmKernel chooses from them; the log prints
 *     both families and the winner (the log, the summary, device-check.md); compile --tuned's
 *     apply step takes the record;
 *   - gemm_tune.py's choose_kernel and chooseGemmKernel agree (the two are one rule).
 * Tagged: the dry run needs a C++ compiler and numpy.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type BundleGemm, type GemmGrid, prepareGemmBundle } from '../../src/bench/gemm-bundle.js';
import { findCxx } from '../../src/build/toolchain.js';
import { checkGemmTuning, gemmTarget } from '../../src/codegen/gemm-plan.js';
import { prepareSm90aSearch } from '../../src/bench/sm90a-gemm-search.js';
import { tuningOfEntry } from '../../src/tune/gemm-tuned.js';
import { sm90aTokenTile } from '../../src/codegen/gemm-sm90a.js';
import { type GemmFamily, type GemmTuneEntry, gemmEntryKey, parseTuneDb } from '../../src/tune/db.js';
import { tuneReport } from '../../src/tune/report.js';
import { GEMM_SEARCH_SPACE, chooseGemmKernel } from '../../src/tune/gemm-space.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';

const exec = promisify(execFile);
const SCRIPTS = resolve('scripts/device-check');
const cxx = await findCxx();
const numpy = await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-gemm-race-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SHAPE = { n: 197, k: 520, dtype: 'bf16' as const };
const GRID: GemmGrid = {
  shapes: [{ role: 'odd', shape: SHAPE, splitK: 3 }],
  rows: [1, 20],
  tune: { roles: ['odd'], maxTiles: 1, splits: [1, 3], sm90a: true },
};

type Times = Record<string, Record<string, Record<string, number>>>;
const asMaps = (t: Times) => new Map(Object.entries(t).map(([f, s]) => [f as GemmFamily, new Map(Object.entries(s).map(([k, ms]) => [Number(k), new Map(Object.entries(ms).map(([m, us]) => [Number(m), us]))]))]));

describe.skipIf(!numpy)('gemm_tune.py\'s family rule is chooseGemmKernel', () => {
  test('the same pick on cases that exercise each clause', async () => {
    const cases: Times[] = [
      { sm_90: { 1: { 1: 10, 20: 12, 272: 80 }, 2: { 1: 8, 20: 9, 272: 70 } }, sm_90a: { 1: { 1: 12, 20: 14, 272: 66 } } },
      { sm_90: { 2: { 1: 8, 20: 9, 272: 70 } }, sm_90a: { 1: { 1: 8, 20: 9, 272: 40 }, 4: { 1: 7, 20: 9, 272: 45 } } },
      { sm_90: { 2: { 1: 5, 20: 5 } }, sm_90a: { 1: { 1: 5, 20: 5 } } },
      { sm_90: { 1: { 1: 10, 272: 90 } }, sm_90a: { 1: { 1: 1 } } },
      { sm_90a: { 3: { 1: 2 }, 1: { 1: 2 } } },
      { sm_90: { 1: { 1: 3 } }, sm_90a: { 1: { 20: 1 } } },
    ];
    const script = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nfrom gemm_tune import choose_kernel
cases = json.loads(sys.argv[1])
print(json.dumps([list(choose_kernel({f: {int(s): {int(m): v for m, v in ms.items()} for s, ms in sp.items()} for f, sp in c.items()}) or [None]) for c in cases]))`;
    const { stdout } = await exec('python3', ['-c', script, JSON.stringify(cases)]);
    const py = JSON.parse(stdout) as (string | number | null)[][];
    expect(py).toEqual(cases.map((c) => {
      const pick = chooseGemmKernel(asMaps(c));
      return pick ? [pick.kernel, pick.splitK] : [null];
    }));
    expect(py.slice(0, 3)).toEqual([['sm_90', 2], ['sm_90a', 1], ['sm_90', 2]]);
  });

  test('the heuristic\'s split-K is searched first, both families, so a budget cut mid-shape leaves the pair the compile plans', async () => {
    const script = `import json, sys, time\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nimport numpy as np\nfrom gemm_tune import tune_shape
class Shape:
    mag, bias_host = np.ones((20, 197)), np.zeros(197)
    def close(self): pass
tile = {'blockM': 16, 'warpsM': 1, 'stages': 4}
t = {'k': 520, 'heuristicSplitK': 3, 'sources': [{'splitK': s} for s in (1, 3, 4)],
     'candidates': [{'m': m, 'splitK': s, 'tile': tile, 'heuristic': True} for s in (1, 3, 4) for m in (1, 20)]}
race = {'sources': [{'splitK': s} for s in (1, 3, 4)], 'candidates': [{'m': 20, 'splitK': s, 'tileT': 32} for s in (1, 3, 4)]}
timed, rejected, skipped = tune_shape(None, None, t, lambda t, rows: Shape(), None, time.time() - 60, 0, 1.0, race)
print(json.dumps(skipped))`;
    expect(JSON.parse((await exec('python3', ['-c', script])).stdout)).toEqual([
      's3 M=20 b16w1s4', 's3 M=1 b16w1s4', 's3 M=20 sm_90a t32', 's1 M=20 b16w1s4', 's1 M=1 b16w1s4', 's1 M=20 sm_90a t32', 's4 M=20 b16w1s4', 's4 M=1 b16w1s4', 's4 M=20 sm_90a t32',
    ]);
  });

  test('every sm_90a candidate rejected: the entry keeps mma.sync, says the sm_90a kernel was not timed, and tidarc reads it', async () => {
    const script = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nfrom gemm_tune import gemm_entry
tm = lambda us: {'medianUs': us, 'p20Us': us, 'p80Us': us}
tile = {'blockM': 16, 'warpsM': 1, 'stages': 4}
t = {'unit': 'gemm_bf16_n197_k520', 'n': 197, 'k': 520, 'dtype': 'bf16', 'space': ${GEMM_SEARCH_SPACE}, 'heuristicSplitK': 1, 'sm90a': {'candidates': [{'m': 1, 'splitK': 1, 'tileT': 8}]}}
timed = {('sm_90', s, 1, 'b16w1s4'): ({'tile': tile, 'heuristic': True}, tm(6 - s)) for s in (1, 2)}
meta = {'tidarc': 'x', 'compiler': 'nvcc', 'backend': 'cuda', 'device': 'H200', 'driver': '13.0'}
print(json.dumps(gemm_entry(t, 'sm_90', timed, ['s1 M=1 sm_90a t8: unwritten or non-finite output'], meta, '2026-12-05', raced=True)))`;
    const e = JSON.parse((await exec('python3', ['-c', script])).stdout) as GemmTuneEntry;
    const db = parseTuneDb(JSON.stringify({ format: 1, entries: {}, gemms: { [gemmEntryKey(e.unit, e.arch)]: e } }), 'tune-cuda.json');
    expect(db.gemms![gemmEntryKey(e.unit, 'sm_90')]).toMatchObject({ kernel: 'sm_90', space: GEMM_SEARCH_SPACE, splitK: 2, sm90a: { splitTotalsUs: {}, rows: {} } });
    expect(tuneReport(db)).toContain('- gemm_bf16_n197_k520 (sm_90): mma.sync 4.0 us at split-K 2, sm_90a not timed (summed over M); winner: mma.sync at split-K 2');
  });
});

describe.skipIf(!cxx.found || !numpy)('the GEMM search on the emulated 9.0 device races mma.sync and sm_90a', () => {
  const bundle = join(root, 'bundle');
  const out = join(root, 'out');
  let gem: BundleGemm;
  let stdout = '', stderr = '';
  beforeAll(async () => {
    gem = await prepareGemmBundle(bundle, GRID, true);
    const r = await exec('python3', [join(SCRIPTS, 'device_check.py'), '--dry-run', '--bundle', bundle, '--out', out, '--parts', 'tune'],
      { env: { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver() }, maxBuffer: 64 << 20 });
    ({ stdout, stderr } = r);
  }, 600_000);

  test('the bundle: the sm_90a GEMM at the searched split-K counts, the planner\'s token tile per M', () => {
    const t = gem.tune![0]!;
    expect(t.sources.map((s) => s.splitK)).toEqual([1, 3]);
    const race = t.sm90a!;
    expect('refused' in race).toBe(false);
    if ('refused' in race) return;
    expect(race.sources.map((s) => s.splitK)).toEqual([1, 3]);
    expect(race.candidates.map((c) => [c.splitK, c.m, c.tileT])).toEqual([[1, 1, sm90aTokenTile(1)], [1, 20, sm90aTokenTile(20)], [3, 1, 8], [3, 20, 32]]);
    expect(race.nvccFlags).toContain('-gencode=arch=compute_90a,code=sm_90a');
    // lm_head's row statistics are not in the sm_90a epilogue: no candidates, and why.
    return prepareSm90aSearch(join(root, 'none'), { n: 300, k: 264, dtype: 'bf16' }, 'lm_head', [1, 20], [1], gemmTarget(['sm_90']), false)
      .then((r) => expect(r).toEqual({ refused: expect.stringMatching(/lm_head row statistics are not in the sm_90a epilogue/) }));
  });

  test('every candidate of both families checked and timed; one family and one split-K recorded, as chooseGemmKernel picks them', () => {
    const section = (JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { gemm: { tune: { shapes: { unit: string; timed: number; rejected: string[]; kernel?: string; splitK: number }[] } } }).gemm.tune.shapes[0]!;
    expect(section.rejected).toEqual([]);
    expect(section.timed).toBe(8);  // 2 splits x 2 M x (1 mma.sync tile + the sm_90a kernel)
    const db = parseTuneDb(readFileSync(join(out, 'tune-cuda.json'), 'utf8'), 'tune-cuda.json');
    const e = db.gemms![gemmEntryKey('gemm_bf16_n197_k520', 'sm_90')]!;
    expect(e.kernel).toBe(section.kernel);
    expect(e.splitK).toBe(section.splitK);
    expect(Object.keys(e.sm90a!.splitTotalsUs).sort()).toEqual(['1', '3']);
    expect(Object.values(e.sm90a!.rows).map((r) => r.tileT)).toEqual([8, 32]);
    if (e.kernel === 'sm_90a') expect(e.sm90a!.splitK).toBe(e.splitK);
    // The winner is the least total over M = 1 and 20 of the four (family, split-K) pairs: rebuild them from the totals.
    const totals: Times = { sm_90: Object.fromEntries(Object.entries(e.splitTotalsUs).map(([s, us]) => [s, { 1: us }])), sm_90a: Object.fromEntries(Object.entries(e.sm90a!.splitTotalsUs).map(([s, us]) => [s, { 1: us }])) };
    expect(chooseGemmKernel(asMaps(totals))).toEqual({ kernel: e.kernel, splitK: e.splitK });
    const family = e.kernel === 'sm_90a' ? 'sm_90a' : 'mma.sync';
    expect(stderr).toMatch(new RegExp(`gemm tune odd 197x520: mma.sync [0-9.]+ us at split-K \\d, sm_90a [0-9.]+ us at split-K \\d \\(summed over M\\); winner: ${family} at split-K ${e.splitK}`));
    expect(stdout).toMatch(new RegExp(`gemm tune: 1 of 1 shapes tuned \\(8 candidates timed, 0 rejected\\); tune-cuda\\.json; odd: split-K ${e.splitK} M=1 \\S+, M=20 \\S+ \\(the ${family} kernel at every M\\)`));
    const md = readFileSync(join(out, 'device-check.md'), 'utf8');
    expect(md).toContain('### The GEMM search (tune-cuda.json `gemms`)');
    expect(md).toMatch(new RegExp(`Kernel families on this 9\\.0 device \\(one family and split-K run every M of a weight shape\\):\\n- odd: mma\\.sync .* winner: ${family} at split-K ${e.splitK}`));
    // What compile --tuned takes on a 9.0 device's arches: the family with the split-K, runnable for the shape.
    expect(checkGemmTuning(SHAPE, tuningOfEntry(e), gemmTarget(['sm_90', 'sm_90a']))).toMatchObject({ kernel: e.kernel, splitK: e.splitK });
  });
});
