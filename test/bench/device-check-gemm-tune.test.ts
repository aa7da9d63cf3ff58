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
import { gemmRunRows, tuneReport } from '../../src/tune/report.js';
import { GEMM_SEARCH_SPACE, chooseGemmKernel } from '../../src/tune/gemm-space.js';
import { leastRegretSplit } from '../../src/codegen/gemm-tile-choice.js';
import { gemmSplitCandidates } from '../../src/codegen/gemm-plan.js';
import { sm90aGemmTimes } from '../../src/codegen/gemm-kernel-choice.js';
import { DEFAULT_STEP_ROWS } from '../../src/codegen/step-rows.js';
import { FULL_GEMM } from '../../src/bench/gemm-bundle.js';
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
  test('least_regret_split is leastRegretSplit (the planner\'s split rule), float noise and ties included', async () => {
    const cases: Record<string, number[]>[] = [
      { 1: [1, 1, 10], 2: [1.2, 1.2, 8] }, { 1: [1, 1, 10], 2: [1.05, 1.05, 8] }, { 4: [2, 1], 2: [1, 2] }, { 3: [5] },
      { 1: [0.1 + 0.2, 0.3], 2: [0.3, 0.1 + 0.2] }, { 1: [3, 7.000000001], 4: [3.000000001, 7] }, { 2: [1e-6, 3e-6], 1: [1.1e-6, 2.9e-6], 3: [0.9e-6, 3.3e-6] },
    ];
    const script = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nfrom gemm_tune import least_regret_split
print(json.dumps([least_regret_split({int(s): v for s, v in c.items()}) for c in json.loads(sys.argv[1])]))`;
    const py = JSON.parse((await exec('python3', ['-c', script, JSON.stringify(cases)])).stdout) as number[];
    const ts = cases.map((c) => leastRegretSplit(new Map(Object.entries(c).map(([s, v]) => [Number(s), v]))));
    expect(py).toEqual(ts);
    expect(ts.slice(0, 6)).toEqual([1, 2, 2, 3, 1, 1]);
  });

  test('the same pick on cases that exercise each clause', async () => {
    // And the cost models' times of every Qwen3-8B shape a compile for sm_90a weighs (realistic floats: sums and ratios must round alike).
    const target = gemmTarget(['sm_90', 'sm_90a']);
    const predicted: Times[] = (['qkv', 'o', 'gate_up', 'down'] as const).map((role) => {
      const shape = FULL_GEMM.shapes.find((x) => x.role === role)!.shape;
      const t: Times = { sm_90: {}, sm_90a: {} };
      for (const c of gemmSplitCandidates(shape, target, DEFAULT_STEP_ROWS)) {
        const times = sm90aGemmTimes({ shape, roles: [role], reduction: c.reduction, plans: c.plans });
        t['sm_90']![c.reduction.splitK] = Object.fromEntries(times.map((x) => [x.m, x.sm90S * 1e6]));
        t['sm_90a']![c.reduction.splitK] = Object.fromEntries(times.map((x) => [x.m, x.sm90aS * 1e6]));
      }
      return t;
    });
    const cases: Times[] = [
      { sm_90: { 1: { 1: 10, 20: 12, 272: 80 }, 2: { 1: 8, 20: 9, 272: 70 } }, sm_90a: { 1: { 1: 12, 20: 14, 272: 66 } } },
      { sm_90: { 2: { 1: 8, 20: 9, 272: 70 } }, sm_90a: { 1: { 1: 8, 20: 9, 272: 40 }, 4: { 1: 7, 20: 9, 272: 45 } } },
      { sm_90: { 2: { 1: 5, 20: 5 } }, sm_90a: { 1: { 1: 5, 20: 5 } } },
      { sm_90: { 1: { 1: 10, 272: 90 } }, sm_90a: { 1: { 1: 1 } } },
      { sm_90a: { 3: { 1: 2 }, 1: { 1: 2 } } },
      { sm_90: { 1: { 1: 3 } }, sm_90a: { 1: { 20: 1 } } },
      { sm_90: { 1: { 1: 5, 20: 5 } }, sm_90a: { 1: { 1: 5, 20: 5 } } },
      ...predicted,
      // One family (a search that does not race, or the loser's own split-K): regret, not the least total; a count that missed an M; none complete.
      { sm_90: { 1: { 1: 10, 20: 12 }, 2: { 1: 6, 20: 15 }, 4: { 1: 5, 20: 18 } } },
      { sm_90: { 1: { 1: 10, 20: 10 }, 3: { 1: 8, 20: 12 } } },
      { sm_90: { 1: { 1: 10, 72: 1 }, 2: { 1: 9 } } },
      { sm_90: { 2: { 20: 5 }, 1: { 1: 3 } } },
      { sm_90: { 1: { 1: 20, 20: 21, 72: 30, 272: 90 }, 4: { 1: 12, 20: 13, 72: 28, 272: 110 }, 2: { 1: 15, 20: 16, 72: 27, 272: 95 } } },
      { sm_90: { 1: { 1: 0.1 + 0.2, 20: 0.3 }, 2: { 1: 0.3, 20: 0.1 + 0.2 } } },
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
    expect(py.slice(0, 3)).toEqual([['sm_90', 2], ['sm_90a', 4], ['sm_90a', 1]]);
    expect(py[6]).toEqual(['sm_90', 1]);
    expect(py.slice(7, 11)).toEqual([['sm_90a', 1], ['sm_90a', 2], ['sm_90a', 1], ['sm_90a', 2]]);  // Qwen3-8B qkv, o, gate_up, down on the models
    // Case 12: 3 parts by regret (2.20 against 2.25) where the totals tie at 20 (fewer parts: 1); 13: 2 parts missed M = 72;
    // 14: no M every count reached; 15: 4 where the least total takes 2; 16: float noise is a tie.
    expect(py.slice(11)).toEqual([['sm_90', 2], ['sm_90', 3], ['sm_90', 1], [null], ['sm_90', 4], ['sm_90', 1]]);
  });

  test('the split-K workspace holds the largest split count the candidates run (not 4), and one past the device\'s free memory is one clear error', async () => {
    // Split-K 6 is past today's GEMM_MAX_SPLIT_K (4): the search must size for whatever its bundle holds. An sm_90a candidate at 8 parts too.
    const script = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nfrom gemm_tune import NumpyShape, workspace_floats
class Drv:
    def __init__(self, free=None):
        self.allocs, self.fills, self.next, self.free = [], [], 1, free
        if free is not None:
            self.mem_free = lambda: self.free
    def alloc(self, n):
        self.allocs.append(n); self.next += 1; return self.next
    def upload(self, p, a): pass
    def fill(self, p, b, n): self.fills.append((p, n))
cands = lambda splits: [{'m': m, 'splitK': s} for s in splits for m in (1, 20)]
t = {'unit': 'gemm_bf16_n24_k64', 'n': 24, 'k': 64, 'dtype': 'bf16', 'candidates': cands((1, 2, 6))}
d = Drv(); sh = NumpyShape(d, t, 20, 1); sh.poison(20)
out = {'ws': sh.ws_floats, 'alloc': d.allocs[-1], 'poisoned': d.fills[-1][1]}
t2 = dict(t, sm90a={'candidates': cands((1, 8))})
out['sm90a'] = workspace_floats(t2, 20)
out['sm90aRefused'] = workspace_floats(dict(t, sm90a={'refused': 'row statistics'}), 20)
try:
    NumpyShape(Drv(free=4 * 6 * 20 * 24 - 1), t, 20, 1)
    out['error'] = None
except RuntimeError as e:
    out['error'] = str(e)
out['fits'] = workspace_floats(t, 20, 4 * 6 * 20 * 24)
print(json.dumps(out))`;
    const r = JSON.parse((await exec('python3', ['-c', script])).stdout) as { ws: number; alloc: number; poisoned: number; sm90a: number; sm90aRefused: number; error: string | null; fits: number };
    expect([r.ws, r.alloc, r.poisoned]).toEqual([6 * 20 * 24, 4 * 6 * 20 * 24, 4 * 6 * 20 * 24]);  // [parts, rows, N] float32 (4 parts: 4 * 20 * 24)
    expect([r.sm90a, r.sm90aRefused]).toEqual([8 * 20 * 24, 6 * 20 * 24]);
    expect(r.error).toBe('gemm_bf16_n24_k64: the split-K workspace of 6 parts x 20 rows x 24 columns needs 0.00 GiB of float32 beside 0.00 GiB of inputs and output, and the device has 0.00 GiB free');
    expect(r.fits).toBe(6 * 20 * 24);
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
print(json.dumps(skipped))
# With the bundle's heuristic per compile, a raced search starts at the split-K a 9.0 device runs untuned (its compile has sm_90a).
t['heuristicByArch'] = {'sm_90': {'splitK': 3}, 'sm_90a': {'splitK': 4, 'kernel': 'sm_90a'}}
print(json.dumps(tune_shape(None, None, t, lambda t, rows: Shape(), None, time.time() - 60, 0, 1.0, race)[2][:3]))
print(json.dumps(tune_shape(None, None, t, lambda t, rows: Shape(), None, time.time() - 60, 0, 1.0, None)[2][:2]))`;
    const [raced, onNinety, plain] = (await exec('python3', ['-c', script])).stdout.trim().split('\n').map((l) => JSON.parse(l) as string[]);
    expect(raced).toEqual([
      's3 M=20 b16w1s4', 's3 M=1 b16w1s4', 's3 M=20 sm_90a t32', 's1 M=20 b16w1s4', 's1 M=1 b16w1s4', 's1 M=20 sm_90a t32', 's4 M=20 b16w1s4', 's4 M=1 b16w1s4', 's4 M=20 sm_90a t32',
    ]);
    expect(onNinety).toEqual(['s4 M=20 b16w1s4', 's4 M=1 b16w1s4', 's4 M=20 sm_90a t32']);
    expect(plain).toEqual(['s3 M=20 b16w1s4', 's3 M=1 b16w1s4']);  // not raced: the sm_90 compile's
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

  test('a heuristic the search fell back from (its own split-K not timed at an M) is labelled with the split-K it was timed at', async () => {
    // Heuristic split-K 3 reached M = 1 only (M = 20 rejected): split-K 1 wins; at M = 20 the row's heuristic is split-K 1's planned tile.
    const script = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nfrom gemm_tune import gemm_entry
tm = lambda us: {'medianUs': us, 'p20Us': us, 'p80Us': us}
planned, other = {'blockM': 16, 'warpsM': 1, 'stages': 4}, {'blockM': 32, 'warpsM': 2, 'stages': 3}
t = {'unit': 'gemm_bf16_n197_k520', 'n': 197, 'k': 520, 'dtype': 'bf16', 'space': ${GEMM_SEARCH_SPACE}, 'heuristicSplitK': 3}
timed = {('sm_90', 3, 1, 'b16w1s4'): ({'tile': planned, 'heuristic': True}, tm(7)),
         ('sm_90', 1, 1, 'b16w1s4'): ({'tile': planned, 'heuristic': True}, tm(6)), ('sm_90', 1, 20, 'b16w1s4'): ({'tile': planned, 'heuristic': True}, tm(9)),
         ('sm_90', 1, 20, 'b32w2s3'): ({'tile': other, 'heuristic': False}, tm(8))}
meta = {'tidarc': 'x', 'compiler': 'nvcc', 'backend': 'cuda', 'device': 'H200', 'driver': '13.0'}
print(json.dumps(gemm_entry(t, 'sm_90', timed, ['s3 M=20 b16w1s4: 2.00x the float64 bound'], meta, '2026-12-05')))`;
    const e = JSON.parse((await exec('python3', ['-c', script])).stdout) as GemmTuneEntry;
    expect([e.splitK, e.heuristicSplitK, e.rows['1']!.heuristicSplitK, e.rows['20']!.heuristicSplitK]).toEqual([1, 3, undefined, 1]);
    const db = parseTuneDb(JSON.stringify({ format: 1, entries: {}, gemms: { [gemmEntryKey(e.unit, e.arch)]: e } }), 'tune-cuda.json');
    const report = tuneReport(db);
    expect(report).toContain('| gemm_bf16_n197_k520 | sm_90 | 1 | split-K 3 b16w1s4 | 7.0 | split-K 1 b16w1s4 | 6.0 | 1.17x |');
    expect(report).toContain('| gemm_bf16_n197_k520 | sm_90 | 20 | split-K 1 b16w1s4 | 9.0 | split-K 1 b32w2s3 | 8.0 | 1.13x |');
  });

  test('familyLines\' per-M line gives each family at its heading\'s split-K (mma.sync\'s own where sm_90a won), so the per-M times add up to the heading', () => {
    const tm = (us: number) => ({ medianUs: us, p20Us: us, p80Us: us });
    const tile = { blockM: 16, warpsM: 1, stages: 4 };
    const e = {
      unit: 'gemm_bf16_n197_k520', arch: 'sm_90', n: 197, k: 520, dtype: 'bf16', space: GEMM_SEARCH_SPACE, kernel: 'sm_90a', splitK: 2, heuristicSplitK: 1,
      // mma.sync alone by the rule: split-K 4 (regret 2.43 against 3.40), not the winner's 2.
      splitTotalsUs: { 2: 26, 4: 25 }, splitRowsUs: { 2: { 1: 12, 20: 14 }, 4: { 1: 5, 20: 20 } },
      rows: { 1: { best: tile, bestTiming: tm(12), heuristic: tile, heuristicTiming: tm(13) }, 20: { best: tile, bestTiming: tm(14), heuristic: tile, heuristicTiming: tm(15) } },
      sm90a: { splitK: 2, splitTotalsUs: { 2: 12 }, splitRowsUs: { 2: { 1: 4, 20: 8 } }, rows: { 1: { tileT: 8, timing: tm(4) }, 20: { tileT: 32, timing: tm(8) } } },
      timed: 6, rejected: [], meta: { tidarc: 'x', compiler: 'nvcc', backend: 'cuda', device: 'H200' }, date: '2026-12-05',
    };
    const report = tuneReport(parseTuneDb(JSON.stringify({ format: 1, entries: {}, gemms: { [gemmEntryKey(e.unit, e.arch)]: e } }), 'tune.json'));
    expect(report).toContain('- gemm_bf16_n197_k520 (sm_90): mma.sync 25.0 us at split-K 4, sm_90a 12.0 us at split-K 2 (summed over M); winner: sm_90a at split-K 2\n'
      + '  M=1 mma.sync 5.0 us (split-K 4) / sm_90a 4.0 us (t8, split-K 2); M=20 mma.sync 20.0 us (split-K 4) / sm_90a 8.0 us (t32, split-K 2)\n');
    // mma.sync winning: its recorded tiles, at the entry's split-K.
    const won = { ...e, kernel: 'sm_90', splitK: 4, sm90a: { ...e.sm90a } };
    expect(tuneReport(parseTuneDb(JSON.stringify({ format: 1, entries: {}, gemms: { [gemmEntryKey(e.unit, e.arch)]: won } }), 'tune.json')))
      .toContain('  M=1 mma.sync 12.0 us (b16w1s4, split-K 4) / sm_90a 4.0 us (t8, split-K 2)');
  });

  test('a shape that fails (its split-K workspace past the free memory) is a result: the others still run, and each winner is in tune-cuda.json as its shape ends', async () => {
    const dir = mkdtempSync(join(root, 'shape-fails-'));
    const script = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nfrom pathlib import Path
import gemm_tune, report
out = Path(${JSON.stringify(dir)})
tm = lambda us: {'medianUs': us, 'p20Us': us, 'p80Us': us}
tile = {'blockM': 16, 'warpsM': 1, 'stages': 4}
shape = lambda role, n: {'unit': f'gemm_bf16_n{n}_k64', 'role': role, 'n': n, 'k': 64, 'dtype': 'bf16', 'space': ${GEMM_SEARCH_SPACE}, 'heuristicSplitK': 1,
                         'candidates': [{'m': 1, 'splitK': 1, 'tile': tile, 'heuristic': True}]}
seen = []
def fake_tune_shape(drv, bundle, t, make_shape, measure, started, budget_s, slack, race):
    seen.append(sorted(json.loads((out / gemm_tune.DB_FILE).read_text())['gemms']) if (out / gemm_tune.DB_FILE).exists() else [])
    if t['role'] == 'big':
        gemm_tune.workspace_floats(t, 272, free_bytes=1000)
    return {('sm_90', 1, 1, 'b16w1s4'): ({'tile': tile, 'heuristic': True}, tm(5))}, [], []
gemm_tune.tune_shape = fake_tune_shape
gem = {'tidarc': 'x', 'arch': 'sm_90', 'tune': [shape('a', 24), shape('big', 4096), shape('c', 40)]}
machine = {'driverVersion': 13000, 'compiler': 'nvcc', 'name': 'H200', 'sms': 132}
section = gemm_tune.gemm_tune(None, None, gem, out, None, None, machine, 600, lambda line: None)
print(json.dumps({'shapes': [[r['role'], r.get('splitK'), r.get('error')] for r in section['shapes']], 'seen': seen,
                  'db': sorted(json.loads((out / gemm_tune.DB_FILE).read_text())['gemms']), 'md': report.gemm_tune_lines(section)}))`;
    const r = JSON.parse((await exec('python3', ['-c', script])).stdout) as { shapes: [string, number | null, string | null][]; seen: string[][]; db: string[]; md: string[] };
    const refusal = 'gemm_bf16_n4096_k64: the split-K workspace of 1 parts x 272 rows x 4096 columns needs 0.00 GiB of float32 beside 0.00 GiB of inputs and output, and the device has 0.00 GiB free';
    expect(r.shapes).toEqual([['a', 1, null], ['big', null, refusal], ['c', 1, null]]);
    // Written as each shape ends: the third shape started with the first's winner on disk.
    expect(r.seen).toEqual([[], ['gemm_bf16_n24_k64 | sm_90'], ['gemm_bf16_n24_k64 | sm_90']]);
    expect(r.db).toEqual(['gemm_bf16_n24_k64 | sm_90', 'gemm_bf16_n40_k64 | sm_90']);
    expect(r.md).toContain(`| big | - | FAILED: ${refusal} | | | | |`);
  });

  test('family_line says what report.ts familyLines says: each family at the split-K the rule picks for it', async () => {
    const base = { unit: 'gemm_bf16_n197_k520', arch: 'sm_90', kernel: 'sm_90a', splitK: 2, sm90a: { splitK: 2, splitTotalsUs: { 1: 14, 2: 12 }, rows: {} }, rows: {} };
    const cases = [
      // The loser's split-K by the rule over its per-M times (regret 3.0 against 3.2), not its least total (21 against 25).
      { ...base, splitTotalsUs: { 1: 21, 4: 25 }, splitRowsUs: { 1: { 1: 11, 20: 10 }, 4: { 1: 5, 20: 20 } } },
      // Split-K 4 cut short after M = 1 (budget or a rejected M): not named against the complete split-K 1 (its 5 us is one M).
      { ...base, splitTotalsUs: { 1: 21, 4: 5 }, splitRowsUs: { 1: { 1: 11, 20: 10 }, 4: { 1: 5 } } },
      // No M that every split-K reached: no pick, in both languages.
      { ...base, splitTotalsUs: { 1: 11, 4: 5 }, splitRowsUs: { 1: { 1: 11 }, 4: { 20: 5 } } },
    ];
    const script = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nfrom gemm_tune import family_line
for e in json.loads(sys.argv[1]):
    print(family_line(e, {'candidates': [1]}))`;
    const py = (await exec('python3', ['-c', script, JSON.stringify(cases)])).stdout.trim().split('\n');
    expect(py).toEqual([
      'mma.sync 25.0 us at split-K 4, sm_90a 12.0 us at split-K 2 (summed over M); winner: sm_90a at split-K 2',
      'mma.sync 21.0 us at split-K 1, sm_90a 12.0 us at split-K 2 (summed over M); winner: sm_90a at split-K 2',
      'mma.sync not timed, sm_90a 12.0 us at split-K 2 (summed over M); winner: sm_90a at split-K 2',
    ]);
    for (const [i, e] of cases.entries()) {
      const db = parseTuneDb(JSON.stringify({ format: 1, entries: {}, gemms: { [gemmEntryKey(e.unit, e.arch)]: { ...e, dtype: 'bf16', n: 197, k: 520, space: GEMM_SEARCH_SPACE, heuristicSplitK: 1, timed: 4, rejected: [], meta: { tidarc: 'x', compiler: 'nvcc', backend: 'cuda', device: 'H200' }, date: '2026-12-05' } } }), 'tune.json');
      expect(tuneReport(db)).toContain(`- ${e.unit} (${e.arch}): ${py[i]}`);
    }
  });

  test('no heuristic tile timed at an M, at the heuristic\'s split-K nor the winner\'s: the row has no heuristic and tune --report says not timed (not the best tile at 1.00x)', async () => {
    // Heuristic split-K 3 reached M = 1 only; split-K 1 wins, and at M = 20 only a non-heuristic tile ran under it.
    const script = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nfrom gemm_tune import gemm_entry
tm = lambda us: {'medianUs': us, 'p20Us': us, 'p80Us': us}
planned, other = {'blockM': 16, 'warpsM': 1, 'stages': 4}, {'blockM': 32, 'warpsM': 2, 'stages': 3}
t = {'unit': 'gemm_bf16_n197_k520', 'n': 197, 'k': 520, 'dtype': 'bf16', 'space': ${GEMM_SEARCH_SPACE}, 'heuristicSplitK': 3}
timed = {('sm_90', 3, 1, 'b16w1s4'): ({'tile': planned, 'heuristic': True}, tm(7)),
         ('sm_90', 1, 1, 'b16w1s4'): ({'tile': planned, 'heuristic': True}, tm(6)), ('sm_90', 1, 20, 'b32w2s3'): ({'tile': other, 'heuristic': False}, tm(8))}
meta = {'tidarc': 'x', 'compiler': 'nvcc', 'backend': 'cuda', 'device': 'H200', 'driver': '13.0'}
print(json.dumps(gemm_entry(t, 'sm_90', timed, ['s3 M=20 b16w1s4: 2.00x the float64 bound', 's1 M=20 b16w1s4: 2.00x the float64 bound'], meta, '2026-12-05')))`;
    const e = JSON.parse((await exec('python3', ['-c', script])).stdout) as GemmTuneEntry;
    expect(e.splitK).toBe(1);
    expect(e.rows['20']).toEqual({ best: { blockM: 32, warpsM: 2, stages: 3 }, bestTiming: { medianUs: 8, p20Us: 8, p80Us: 8 } });
    const db = parseTuneDb(JSON.stringify({ format: 1, entries: {}, gemms: { [gemmEntryKey(e.unit, e.arch)]: e } }), 'tune-cuda.json');
    const report = tuneReport(db);
    expect(report).toContain('| gemm_bf16_n197_k520 | sm_90 | 1 | split-K 3 b16w1s4 | 7.0 | split-K 1 b16w1s4 | 6.0 | 1.17x |');
    expect(report).toContain('| gemm_bf16_n197_k520 | sm_90 | 20 | split-K 3: not timed | - | split-K 1 b32w2s3 | 8.0 | - |');
  });

  test('run_rows says what report.ts gemmRunRows says (arches joined with +, an M either side missed kept as not timed), and device-check.md\'s cells are tune --report\'s', async () => {
    const tm = (us: number) => ({ medianUs: us, p20Us: us, p80Us: us });
    const a = { blockM: 16, warpsM: 1, stages: 4 }, b = { blockM: 32, warpsM: 2, stages: 3, blockN: 64, warps: 4 };
    const row = (best: number, heuristic: number, extra: object = {}) => ({ best: b, bestTiming: tm(best), heuristic: a, heuristicTiming: tm(heuristic), ...extra });
    const base = { unit: 'gemm_bf16_n197_k520', arch: 'sm_90', n: 197, k: 520, dtype: 'bf16', space: GEMM_SEARCH_SPACE, splitTotalsUs: {}, timed: 4, rejected: [],
      meta: { tidarc: 'x', compiler: 'nvcc', backend: 'cuda', device: 'H200' }, date: '2026-12-05' };
    const cases = [
      // Not raced; at M = 20 the heuristic was timed at the winner's split-K (the row says so).
      { ...base, splitK: 1, heuristicSplitK: 3, rows: { 1: row(5, 6), 20: row(8, 9, { heuristicSplitK: 1 }) } },
      // sm_90a won; the 9.0 device's untuned sm_90a at split-K 2 timed at M = 1 only; the winner at M = 1 and 20.
      { ...base, splitK: 1, heuristicSplitK: 3, kernel: 'sm_90a', rows: { 1: row(5, 6) },
        sm90a: { splitK: 1, splitTotalsUs: { 1: 9 }, rows: { 1: { tileT: 8, timing: tm(4) }, 20: { tileT: 32, timing: tm(5) } } },
        heuristicSm90a: { kernel: 'sm_90a', splitK: 2, arches: ['sm_90', 'sm_90a'], rows: { 1: { tileT: 8, timing: tm(7) } } } },
      // mma.sync won; the untuned mma.sync timed at M = 272 too, the winner not (a budget cut): kept, 'not timed'.
      { ...base, splitK: 2, heuristicSplitK: 3, kernel: 'sm_90', rows: { 1: row(5, 6), 20: row(8, 9) },
        heuristicSm90a: { kernel: 'sm_90', splitK: 3, arches: ['sm_80', 'sm_90', 'sm_90a'], rows: { 1: { tile: a, timing: tm(6) }, 272: { tile: a, timing: tm(40) } } } },
      // Raced without heuristicSm90a (an older bundle): the sm_90 compile's heuristic, said so.
      { ...base, splitK: 2, heuristicSplitK: 3, kernel: 'sm_90', rows: { 1: row(5, 6) } },
      // Not raced; no heuristic tile timed at M = 20: the row has no heuristic, 'not timed'.
      { ...base, splitK: 1, heuristicSplitK: 3, rows: { 1: row(5, 6), 20: { best: b, bestTiming: tm(8) } } },
    ] as unknown as GemmTuneEntry[];
    const script = `import json, sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, ${JSON.stringify(SCRIPTS)})\nfrom gemm_tune import run_rows
from report import gemm_tune_lines
cases = json.loads(sys.argv[1])
print(json.dumps({'rows': [run_rows(e) for e in cases], 'md': [gemm_tune_lines({'shapes': [{'role': 'odd', 'splitK': e['splitK'], 'rows': run_rows(e)}]}) for e in cases]}))`;
    const py = JSON.parse((await exec('python3', ['-c', script, JSON.stringify(cases)])).stdout) as { rows: unknown[]; md: string[][] };
    expect(py.rows).toEqual(cases.map((e) => gemmRunRows(e)));
    for (const [i, e] of cases.entries()) {
      const db = parseTuneDb(JSON.stringify({ format: 1, entries: {}, gemms: { [gemmEntryKey(e.unit, e.arch)]: e } }), 'tune.json');
      const ts = tuneReport(db).split('\n').filter((l) => l.startsWith('| gemm_bf16_n197_k520 | sm_90 | ')).map((l) => l.replace('| gemm_bf16_n197_k520 | sm_90 | ', '| odd | '));
      expect(py.md[i]!.slice(2)).toEqual(ts);
    }
    expect(py.md[0]).toContain('| odd | 20 | split-K 1 b16w1s4 | 9.0 | split-K 1 b32w2s3n64t128 | 8.0 | 1.13x |');
    expect(py.md[1]).toContain('| odd | 20 | split-K 2 sm_90a (sm_90+sm_90a): not timed | - | split-K 1 sm_90a t32 | 5.0 | - |');
    expect(py.md[2]).toContain('| odd | 272 | split-K 3 b16w1s4 (sm_80+sm_90+sm_90a) | 40.0 | not timed | - | - |');
    expect(py.md[3]).toContain('| odd | 1 | split-K 3 b16w1s4 (sm_90) | 6.0 | split-K 2 b32w2s3n64t128 | 5.0 | 1.20x |');
    expect(py.md[4]).toContain('| odd | 20 | split-K 3: not timed | - | split-K 1 b32w2s3n64t128 | 8.0 | - |');
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
    // The winner is chooseGemmKernel's over M = 1 and 20 of the four (family, split-K) pairs: rebuilt from the times the record says it weighed.
    expect(Object.keys(e.splitRowsUs!).sort()).toEqual(['1', '3']);
    expect(Object.keys(e.splitRowsUs!['1']!)).toEqual(['1', '20']);
    expect(chooseGemmKernel(asMaps({ sm_90: e.splitRowsUs!, sm_90a: e.sm90a!.splitRowsUs! }))).toEqual({ kernel: e.kernel, splitK: e.splitK });
    // What the 9.0 device runs untuned (the bundle's heuristicByArch.sm_90a, gemm_tune.py heuristic_on_90), timed by this
    // search: its family at its split-K, at every M, each time the one the choice weighed for that pair (one tile an M here).
    const h = gem.tune![0]!.heuristicByArch.sm_90a;
    expect(e.heuristicSm90a).toEqual({ kernel: h.kernel, splitK: h.splitK, arches: [...h.arches], rows: expect.any(Object) });
    const weighed = (h.kernel === 'sm_90a' ? e.sm90a!.splitRowsUs! : e.splitRowsUs!)[String(h.splitK)]!;
    expect(Object.fromEntries(Object.entries(e.heuristicSm90a!.rows).map(([m, r]) => [m, r.timing.medianUs]))).toEqual(weighed);
    const family = e.kernel === 'sm_90a' ? 'sm_90a' : 'mma.sync';
    const md = readFileSync(join(out, 'device-check.md'), 'utf8');
    expect(stderr).toMatch(new RegExp(`gemm tune odd 197x520: mma.sync [0-9.]+ us at split-K \\d, sm_90a [0-9.]+ us at split-K \\d \\(summed over M\\); winner: ${family} at split-K ${e.splitK}`));
    expect(stdout).toMatch(new RegExp(`gemm tune: 1 of 1 shapes tuned \\(8 candidates timed, 0 rejected\\); tune-cuda\\.json; odd: split-K ${e.splitK} M=1 (b\\w+|sm_90a t\\d+), M=20 (b\\w+|sm_90a t\\d+) \\(the ${family} kernel at every M\\)`));
    // The search's per-M lines are tune --report's (gemm_tune.run_rows is gemmRunRows): the same cells in device-check.md.
    const reportRows = tuneReport(db).split('\n').filter((l) => l.startsWith('| gemm_bf16_n197_k520 | sm_90 | ')).map((l) => l.replace('| gemm_bf16_n197_k520 | sm_90 | ', ''));
    expect(reportRows).toHaveLength(2);
    for (const row of reportRows) expect(md).toContain(`| odd | ${row}`);
    expect(md).toContain('### The GEMM search (tune-cuda.json `gemms`)');
    expect(md).toMatch(new RegExp(`Kernel families on this 9\\.0 device \\(one family and split-K run every M of a weight shape\\):\\n- odd: mma\\.sync .* winner: ${family} at split-K ${e.splitK}`));
    // What compile --tuned takes on a 9.0 device's arches: the family with the split-K, runnable for the shape.
    expect(checkGemmTuning(SHAPE, tuningOfEntry(e), gemmTarget(['sm_90', 'sm_90a']))).toMatchObject({ kernel: e.kernel, splitK: e.splitK });
  });
});

describe.skipIf(!numpy)('a sticky CUDA error stops the GEMM search (gemm_tune.tune_shape on a fake driver)', () => {
  // The fake driver: a 'refuse' kernel's launch is refused (CUDA_ERROR_INVALID_VALUE: the context stays usable); a 'fault'
  // kernel launches, and the next synchronize reports CUDA_ERROR_ILLEGAL_ADDRESS, as does every call after it (sticky);
  // a 'late' kernel faults on its second launch (the timing, after its check passed).
  const script = `import json, sys, time
sys.dont_write_bytecode = True
sys.path.insert(0, ${JSON.stringify(SCRIPTS)})
from pathlib import Path
import numpy as np
import device_check, gemm_tune, parts, report
from tune import wall_timer

class Drv:
    def __init__(self):
        self.poisoned, self.pending, self.launches = False, False, {}
    def fail(self, what, name, code):
        raise RuntimeError(f'{what} failed: {name} ({code})')
    def function(self, module, symbol, shared):
        return symbol
    def launch(self, fn, grid, block, shared, args):
        if self.poisoned:
            self.fail('cuLaunchKernel', 'CUDA_ERROR_ILLEGAL_ADDRESS', 700)
        if fn.startswith('refuse'):
            self.fail('cuLaunchKernel', 'CUDA_ERROR_INVALID_VALUE', 1)
        self.launches[fn] = self.launches.get(fn, 0) + 1
        self.pending |= fn.startswith('fault') or (fn.startswith('late') and self.launches[fn] == 2)
    def synchronize(self):
        self.poisoned |= self.pending
        if self.poisoned:
            self.fail('cuCtxSynchronize', 'CUDA_ERROR_ILLEGAL_ADDRESS', 700)

class Shape:  # right outputs (the reference itself); freeing on a lost context fails, as cuMemFree does
    def __init__(self, drv, t, rows):
        self.drv, self.sets, self.ptr = drv, 2, {'x': 1, 'bias': 2, 'out': 3, 'ws': 4}
        self.ref = (np.arange(rows * t['n']) % 7).reshape(rows, t['n']).astype(np.float64)
        self.mag, self.bias_host = self.ref + 1, np.zeros(t['n'])
    def weights(self, i): return 5
    def poison(self, rows): pass
    def output(self, rows):
        self.drv.synchronize()
        return self.ref[:rows].astype(np.float32)
    def close(self):
        self.drv.synchronize()

tiles = [{'blockM': 16, 'warpsM': 1, 'stages': 4}, {'blockM': 32, 'warpsM': 2, 'stages': 3}, {'blockM': 64, 'warpsM': 4, 'stages': 2}]
def shape(role, symbols):  # candidates in the search's order: M = 20 then M = 1, the heuristic's tile first
    cands = [{'m': m, 'splitK': 1, 'symbol': s, 'tile': tiles[i % 3], 'heuristic': i % 3 == 0, 'blockM': 16, 'nTiles': 1, 'threads': 256, 'sharedBytes': 0}
             for i, (m, s) in enumerate(symbols)]
    return {'unit': f'gemm_bf16_n8_k64_{role}', 'role': role, 'n': 8, 'k': 64, 'dtype': 'bf16', 'space': ${GEMM_SEARCH_SPACE}, 'heuristicSplitK': 1,
            'sources': [{'splitK': 1, 'fatbin': 'gemm.fatbin'}], 'candidates': cands}
good = shape('good', [(20, 'good0'), (20, 'refuse1'), (20, 'good2'), (1, 'good3'), (1, 'good4')])
bad = shape('bad', [(20, 'good0'), (20, 'refuse1'), (20, 'good2'), (1, 'fault3'), (1, 'good4')])
late = shape('late', [(20, 'late0'), (20, 'good1'), (1, 'good2')])
out = {}
for t in (good, bad, late):
    drv = Drv()
    try:
        timed, rejected, skipped = gemm_tune.tune_shape(drv, Path('/nowhere'), t, lambda t, rows: Shape(drv, t, rows), wall_timer(drv), time.time(), 600, 1.0)
        out[t['role']] = {'timed': sorted(k[3] + ' M=' + str(k[2]) for k in timed), 'rejected': rejected, 'launches': drv.launches}
    except gemm_tune.ContextLost as e:
        out[t['role']] = {'lost': str(e), 'timed': sorted(k[3] + ' M=' + str(k[2]) for k in e.timed), 'rejected': e.rejected, 'notRun': e.not_run, 'launches': drv.launches}

# The part: the GEMM search stops at the lost context (no entry for the shape, the next one not reached), the attention search
# after it is not started but says why, the part fails.
root = Path(sys.argv[1])
drv = Drv()
class Args: part, bucket_seconds = 'tune', 10
class Ctx:
    dry, bundle, out, args, grid = True, Path('/nowhere'), root, Args(), {'tune': {}}
    gem = {'tidarc': 'x', 'arch': 'sm_90', 'tune': [good, bad, late]}
    def left(self): return 600
    def save(self, sections): pass
    def driver(self): return drv
    def machine(self, drv): return {'driverVersion': 13000, 'compiler': 'nvcc', 'name': 'H100', 'sms': 132}
gemm_tune.NumpyShape = lambda drv, t, rows, seed: Shape(drv, t, rows)
parts.tune = lambda *a: sys.exit('the attention search started on a lost context')
logged = []
parts.log = logged.append
sections = parts.part_tune(Ctx())
section = sections['gemm']['tune']
out['part'] = {'shapes': [[r['role'], r.get('splitK'), r.get('contextLost', False)] for r in section['shapes']], 'notReached': section['notReached'],
               'contextLost': section['contextLost'], 'db': sorted(json.loads((root / gemm_tune.DB_FILE).read_text())['gemms']), 'tune': sections['tune'],
               'ok': device_check.part_ok('tune', sections, True), 'md': report.gemm_tune_lines(section), 'tuneMd': report.tune_lines(sections['tune'])[0]}
print(json.dumps(out))`;

  test('a refused launch rejects its candidate and the search goes on; a fault (at the check or in the timing) stops the shape, the search and the tune part, each saying why', async () => {
    const dir = mkdtempSync(join(root, 'sticky-'));
    type Run = { timed: string[]; rejected: string[]; launches: Record<string, number>; lost?: string; notRun?: number };
    type Part = { shapes: [string, number | null, boolean][]; notReached: string[]; contextLost: string; db: string[]; tune: { contextLost: string }; ok: boolean; md: string[]; tuneMd: string[] };
    const r = JSON.parse((await exec('python3', ['-c', script, dir])).stdout) as Record<'good' | 'bad' | 'late', Run> & { part: Part };
    // Non-sticky only: every candidate but the refused one checked and timed.
    expect(r.good.timed).toEqual(['b16w1s4 M=1', 'b16w1s4 M=20', 'b32w2s3 M=1', 'b64w4s2 M=20']);
    expect(r.good.rejected).toEqual(['s1 M=20 b32w2s3: cuLaunchKernel failed: CUDA_ERROR_INVALID_VALUE (1)']);
    // Sticky at the check: the fault is the last candidate run; the one after it is never launched (before: rejected with the same error).
    expect(r.bad.rejected).toEqual(['s1 M=20 b32w2s3: cuLaunchKernel failed: CUDA_ERROR_INVALID_VALUE (1)', 's1 M=1 b16w1s4: cuCtxSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS (700)']);
    expect(r.bad.timed).toEqual(['b16w1s4 M=20', 'b64w4s2 M=20']);
    expect([r.bad.notRun, r.bad.launches['good4']]).toEqual([1, undefined]);
    expect(r.bad.lost).toBe('the CUDA context was lost at s1 M=1 b16w1s4: cuCtxSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS (700); the context now reports '
      + 'cuCtxSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS (700): 1 candidates of the shape not run, and the search stops');
    // Sticky in the timing: the candidate whose check passed is rejected, and the shape stops there too.
    expect(r.late.rejected).toEqual(['s1 M=20 b16w1s4: timing failed: cuCtxSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS (700)']);
    expect([r.late.timed, r.late.notRun]).toEqual([[], 2]);
    // The part: the faulted shape has no entry, the next is not reached, the attention search is not started and says so, the part fails.
    expect(r.part.shapes).toEqual([['good', 1, false], ['bad', null, true]]);
    expect(r.part.notReached).toEqual(['gemm_bf16_n8_k64_late']);
    expect(r.part.db).toEqual(['gemm_bf16_n8_k64_good | sm_90']);
    expect(r.part.contextLost).toMatch(/^bad 8x64: the CUDA context was lost at s1 M=1 b16w1s4: cuCtxSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS/);
    expect(r.part.tune).toEqual({ contextLost: `the GEMM search lost the CUDA context (${r.part.contextLost}); the attention search needs a fresh process`, buckets: [] });
    expect(r.part.ok).toBe(false);
    expect(r.part.md.join('\n')).toContain(`The search stopped: ${r.part.contextLost}. Not searched: gemm_bf16_n8_k64_late.`);
    expect(r.part.md.join('\n')).toContain('| bad | - | FAILED: the CUDA context was lost at s1 M=1 b16w1s4');
    expect(r.part.tuneMd).toEqual([`Not run: ${r.part.tune.contextLost}.`]);
  });
});

describe.skipIf(!numpy)('the GEMM search\'s memory check counts the float64 reference (gemm_tune.TorchShape, float64_reference)', () => {
  test('the reference in chunks of output columns: the float64 bytes alive at its peak (numpy arrays as tensors) are within reference_bytes, far under the whole weights\' in float64; its values are the whole product\'s', async () => {
    const script = `import json, sys, weakref
sys.dont_write_bytecode = True
sys.path.insert(0, ${JSON.stringify(SCRIPTS)})
import numpy as np
import gemm_tune
live = {'now': 0, 'peak': 0, 'owners': set()}
def gone(owner, n):
    live['now'] -= n
    live['owners'].discard(owner)
class T(np.ndarray):  # a tensor's methods on numpy; every float64 buffer behind one is counted while it lives
    def __array_finalize__(self, obj):
        root = self
        while isinstance(root.base, np.ndarray):  # a ufunc's result is a view of the plain array that owns the memory
            root = root.base
        if root.dtype == np.float64 and id(root) not in live['owners']:
            live['owners'].add(id(root))
            live['now'] += root.nbytes
            live['peak'] = max(live['peak'], live['now'])
            weakref.finalize(root, gone, id(root), root.nbytes)
    def double(self): return self.astype(np.float64)
    def abs(self): return np.abs(self)
    def cpu(self): return self
    def numpy(self): return np.asarray(self)
rng = np.random.default_rng(3)
rows, n, k = 5, 10, 12
x, w, bias = (rng.standard_normal(s).astype(np.float32).view(T) for s in ((rows, k), (n, k), (n,)))
out = {}
for name, chunk in (('chunked', 8 * k * 3), ('whole', 1 << 30)):
    gemm_tune.REFERENCE_CHUNK_BYTES = chunk
    out[name + 'Formula'] = gemm_tune.reference_bytes(rows, n, k)
    live['peak'] = live['now']
    ref, mag = gemm_tune.float64_reference(x, w, bias)
    x64, w64 = np.asarray(x, np.float64), np.asarray(w, np.float64)
    out[name] = {'peak': live['peak'], 'chunk': gemm_tune.reference_chunk(n, k), 'ref': float(np.abs(ref - (x64 @ w64.T + np.asarray(bias, np.float64))).max()),
                 'mag': float(np.abs(mag - np.abs(x64) @ np.abs(w64).T).max())}
gemm_tune.REFERENCE_CHUNK_BYTES = 256 << 20
out['lmHeadGiB'] = gemm_tune.reference_bytes(272, 151936, 4096) / 2**30
print(json.dumps(out))`;
    const r = JSON.parse((await exec('python3', ['-c', script])).stdout) as { chunkedFormula: number; wholeFormula: number; lmHeadGiB: number }
      & Record<'chunked' | 'whole', { peak: number; chunk: number; ref: number; mag: number }>;
    expect([r.chunked.chunk, r.whole.chunk]).toEqual([3, 10]);  // 3, 3, 3 and 1 columns; all 10 at once
    for (const [c, formula] of [[r.chunked, r.chunkedFormula], [r.whole, r.wholeFormula]] as const) {
      expect(c.peak).toBeLessThanOrEqual(formula);
      expect(c.peak).toBeGreaterThan(0.85 * formula);  // the formula is the peak, not a loose bound
    }
    expect(r.whole.peak).toBeGreaterThan(1.5 * r.chunkedFormula);  // all N at once (as before): past what the chunks need
    for (const c of [r.chunked, r.whole]) {
      expect(c.ref).toBeLessThan(1e-12);
      expect(c.mag).toBeLessThan(1e-12);
    }
    // Qwen3-8B's lm_head (151936 x 4096, 272 rows): about half a GiB, where the whole weights in float64 with their absolute values were 9.3.
    expect(r.lmHeadGiB).toBeGreaterThan(0.5);
    expect(r.lmHeadGiB).toBeLessThan(0.6);
  });

  test('TorchShape refuses a shape whose workspace, inputs, output and reference do not fit the free memory, naming the reference, before allocating', async () => {
    const script = `import json, sys, types
sys.dont_write_bytecode = True
sys.path.insert(0, ${JSON.stringify(SCRIPTS)})
import gemm_tune
class Gen:
    def __init__(self, device): pass
    def manual_seed(self, seed): return self
def fake_torch(free):  # no tensors: an allocation after the check fails with AttributeError
    return types.SimpleNamespace(Generator=Gen, bfloat16='bf16', float16='fp16', cuda=types.SimpleNamespace(mem_get_info=lambda: (free, 80 << 30)))
n, k, rows = 151936, 4096, 272
t = {'unit': 'gemm_bf16_n151936_k4096', 'n': n, 'k': k, 'dtype': 'bf16', 'candidates': [{'m': m, 'splitK': 1} for m in (1, rows)]}
need = 4 * rows * n + (rows * k * 2 + n * k * 2 + n * 4 + rows * n * 4) + gemm_tune.reference_bytes(rows, n, k)
out = {}
for name, free in (('short', need - 1), ('fits', need)):
    try:
        gemm_tune.TorchShape(fake_torch(free), t, rows, 5)
    except RuntimeError as e:
        out[name] = str(e)
    except AttributeError:
        out[name] = 'allocating'
print(json.dumps(out))`;
    const r = JSON.parse((await exec('python3', ['-c', script])).stdout) as { short: string; fits: string };
    expect(r.short).toMatch(/^gemm_bf16_n151936_k4096: the split-K workspace of 1 parts x 272 rows x 151936 columns needs 0\.15 GiB of float32 beside 1\.32 GiB of inputs and output and 0\.5\d GiB of the float64 reference's temporaries, and the device has 2\.0\d GiB free$/);
    expect(r.fits).toBe('allocating');
  });
});

describe.skipIf(!numpy)('a sticky CUDA error stops the attention search (tune.tune on a fake driver)', () => {
  // Configurations by split count: s2 is refused at launch (the context stays usable), s3 faults (the launch returns, the
  // check's synchronize and every call after it report CUDA_ERROR_ILLEGAL_ADDRESS), s4 faults in its timing.
  const script = `import json, sys
sys.dont_write_bytecode = True
sys.path.insert(0, ${JSON.stringify(SCRIPTS)})
from pathlib import Path
import report, tune

class Drv:
    poisoned = False
    def fail(self, what):
        raise RuntimeError(f'{what} failed: CUDA_ERROR_ILLEGAL_ADDRESS (700)')
    def synchronize(self):
        if self.poisoned:
            self.fail('cuCtxSynchronize')

launched = []
def launch_attention(drv, bundle, model, v, ptrs, batch, prefix, splits):
    if drv.poisoned:
        drv.fail('cuLaunchKernel')
    if splits == 2:
        raise RuntimeError('cuLaunchKernel failed: CUDA_ERROR_INVALID_VALUE (1)')
    launched.append((v['name'], prefix, splits))
    if splits == 3:
        drv.poisoned = True
        drv.fail('cuCtxSynchronize')
tune.launch_attention = launch_attention

class Sets:
    inputs = [0]
    def __init__(self, drv): self.drv = drv
    def judge(self): return 0, 0, 1e-3, 'fake'
    def check(self, call, ref_o, ref_lse):
        call(0)
        return 0.0, 0.0
    def ptrs(self, i): return 0
    def free(self):
        self.drv.synchronize()

def measure(call, n):
    call(0)
    if launched[-1][2] == 4:
        drv.poisoned = True
        drv.fail('cuEventSynchronize')
    return {'medianUs': 10.0 / launched[-1][2], 'p20Us': 1.0, 'p80Us': 1.0}

def bucket(prefix, splits):
    configs = [{'warps': 4, 'tileN': 64, 'splits': s} for s in splits]
    return {'bucket': f'b1-p{prefix}', 'batch': 1, 'prefix': prefix, 'feasible': len(configs), 'configs': configs, 'heuristic': configs[0]}
model = {'variants': [{'name': 'ar'}], 'kvHeads': 1, 'headDim': 64}
def grid(buckets):
    return {'tune': {'tidarc': 'x', 'slots': 132, 'maxConfigs': 8, 'tiles': [{'warps': 4, 'tileN': 64, 'model': model}],
                     'variants': [{'key': 'ar|bf16', 'name': 'ar', 'buckets': buckets}]}}
machine = {'driverVersion': 13000, 'compiler': 'nvcc', 'name': 'H100', 'sms': 132}
out = {}
for name, buckets in {'refused': [bucket(64, [1, 2, 8])], 'fault': [bucket(64, [1, 2, 3, 8]), bucket(128, [1, 8])], 'timing': [bucket(64, [1, 4, 8]), bucket(128, [1])]}.items():
    drv, launched[:] = Drv(), []
    section = tune.tune(drv, Path('/nowhere'), grid(buckets), Path(sys.argv[1]), lambda *a: Sets(drv), measure, machine, 600, 60, lambda line: None)
    out[name] = {'buckets': [{k: r.get(k) for k in ('bucket', 'best', 'error')} | {'rejected': [x['why'] for x in r['rejected']]} for r in section['buckets']],
                 'skipped': section['skipped'], 'contextLost': section.get('contextLost'), 'launched': list(launched), 'md': report.tune_lines(section)[0]}
print(json.dumps(out))`;

  test('a refused launch rejects its configuration and the bucket goes on; a fault at the check or in the timing fails its bucket and skips the rest, saying why', async () => {
    const dir = mkdtempSync(join(root, 'sticky-attention-'));
    type Run = { buckets: { bucket: string; best: string | null; error: string | null; rejected: string[] }[]; skipped: string[]; contextLost: string | null; launched: [string, number, number][]; md: string[] };
    const r = JSON.parse((await exec('python3', ['-c', script, dir])).stdout) as Record<'refused' | 'fault' | 'timing', Run>;
    // Non-sticky: the refused configuration is rejected, the others timed, the best chosen.
    expect(r.refused.buckets).toEqual([{ bucket: 'b1-p64', best: 'w4r16-n64p2-s8', error: null, rejected: ['cuLaunchKernel failed: CUDA_ERROR_INVALID_VALUE (1)'] }]);
    expect(r.refused.contextLost).toBeNull();
    // Sticky at the check: s1 checked and timed, s2 refused, s3 faults; s8 after it is never launched, and the next bucket is skipped, not failed.
    expect(r.fault.launched).toEqual([['ar', 64, 1], ['ar', 64, 1], ['ar', 64, 3]]);
    expect(r.fault.buckets).toHaveLength(1);
    expect(r.fault.buckets[0]!.error).toMatch(/^the CUDA context was lost at \{'config': 'w4r16-n64p2-s3'\} \(cuCtxSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS \(700\)\); it now reports cuCtxSynchronize failed/);
    expect(r.fault.skipped).toEqual(['ar|bf16 | b1-p128']);
    expect(r.fault.contextLost).toBe(r.fault.buckets[0]!.error);
    expect(r.fault.md.join('\n')).toContain(`The search stopped, the CUDA context lost: ${r.fault.contextLost}. Not searched: ar|bf16 | b1-p128.`);
    expect(r.fault.md.join('\n')).not.toContain('skipped for the search\'s budget');
    // Sticky in the timing: the bucket fails with the timing's error, and the context check stops the search there too.
    expect(r.timing.buckets.map((b) => b.error)).toEqual(['cuEventSynchronize failed: CUDA_ERROR_ILLEGAL_ADDRESS (700)']);
    expect(r.timing.skipped).toEqual(['ar|bf16 | b1-p128']);
    expect(r.timing.contextLost).toMatch(/^cuEventSynchronize failed: .*; the CUDA context now reports cuCtxSynchronize failed/);
  });
});
