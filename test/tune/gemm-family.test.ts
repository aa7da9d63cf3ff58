/**
 * `tidarc tune` races the two GEMM kernel families of a weight shape on a 9.0 device (issues 14
 * and 18 item 3: mma.sync against TMA + wgmma) and the compile honours the winner (pure):
 *   - the space: the sm_90a candidates are every split-K of the shape at the planner's token
 *     tile per M; a shape the sm_90a kernel refuses (lm_head's row statistics) has none;
 *   - the choice (chooseGemmKernel): one family and one split-K per weight shape over every M by
 *     the rule of a compile for sm_90a (per count the family of least summed time, ties to
 *     mma.sync; then the count of least summed relative regret, ties to fewer parts; fed the cost
 *     models' times it picks what planUnitReduction and sm90aGemmHeuristic plan), a pair cut
 *     short never weighed against complete ones;
 *   - batch invariance in the database: a row count that names its own split-K or kernel is
 *     refused, and so is an sm_90a winner timed at another split-K than the entry's; two records
 *     of one unit are never mixed;
 *   - the apply step: the family reaches the compile's plan and manifest (an sm_90 winner drops
 *     the shape's sm_90a unit), and a record that chose sm_90a for a compile that does not build
 *     it (no sm_90a arch, or a refused shape) is one error line; run --tuned on a 9.0 device
 *     weighs the records for the arches its kernel cache compiles (sm_90 and sm_90a);
 *   - the report prints both families per shape with the winner.
 * Needs: nothing.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { generateModel } from '../../src/codegen/generate.js';
import { type GemmTile, gemmSplitCandidates, gemmTarget, gemmUnitName, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';
import { sm90aRefusal, sm90aTokenTile, sm90aUnitName } from '../../src/codegen/gemm-sm90a.js';
import { sm90aGemmHeuristic, sm90aGemmTimes } from '../../src/codegen/gemm-kernel-choice.js';
import { planUnitReduction } from '../../src/codegen/gemm-unit-split.js';
import { gemmShapeOf } from '../../src/codegen/gemm-model.js';
import { stepRows } from '../../src/codegen/step-rows.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { type GemmFamily, type GemmTuneEntry, type TuneDb, type TuneMeta, gemmEntryKey, parseTuneDb } from '../../src/tune/db.js';
import { GEMM_SEARCH_SPACE, chooseGemmKernel, gemmReductionSpace, gemmSm90aSpace } from '../../src/tune/gemm-space.js';
import { tunedGemms } from '../../src/tune/gemm-tuned.js';
import { loadTunedGemms, runArches } from '../../src/tune/apply.js';
import { tuneReport } from '../../src/tune/report.js';
import { packageRoot } from '../../src/util/paths.js';
import { expectOneErrorLine, runTidarc } from '../helpers/cli.js';

const TINY = join(packageRoot(), 'examples', 'tiny.json');
const spec = await loadModelSpecFile(TINY);
const root = mkdtempSync(join(tmpdir(), 'tidarc-gemm-family-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const META: TuneMeta = { tidarc: 'x', compiler: 'nvcc 13', backend: 'cuda', device: 'NVIDIA H200 x 132 SMs', driver: '13.0' };
const timing = (us: number) => ({ medianUs: us, p20Us: us, p80Us: us });
/** tiny's gate_up (1024 x 256: split-K 1, 2 or 4) and its lm_head (260 x 256, row statistics: no sm_90a kernel). */
const GATE_UP = gemmUnitName({ n: 1024, k: 256, dtype: 'bf16' });
const LM_HEAD = gemmUnitName({ n: 260, k: 256, dtype: 'bf16' });
const TILE: GemmTile = { blockM: 16, warpsM: 1, stages: 4 };

/** A raced entry: mma.sync at `splitK` 10 us a row count, sm_90a at `sm90aSplit` 6 us; the winner `kernel`. */
function raced(unit: string, kernel: GemmFamily, splitK: number, sm90aSplit = splitK, over: Partial<GemmTuneEntry> = {}): GemmTuneEntry {
  const [, n, k] = /_n(\d+)_k(\d+)$/.exec(unit)!;
  const ms = ['1', '20'];
  return {
    unit, n: Number(n), k: Number(k), dtype: 'bf16', arch: 'sm_90', space: GEMM_SEARCH_SPACE, splitK, heuristicSplitK: 1, splitTotalsUs: { 1: 24, [splitK]: 20 }, kernel,
    sm90a: { splitK: sm90aSplit, splitTotalsUs: { 1: 14, [sm90aSplit]: 12 }, rows: Object.fromEntries(ms.map((m) => [m, { tileT: sm90aTokenTile(Number(m)), timing: timing(6) }])) },
    rows: Object.fromEntries(ms.map((m) => [m, { best: TILE, bestTiming: timing(10), heuristic: TILE, heuristicTiming: timing(12) }])),
    timed: 12, rejected: [], meta: META, date: '2026-12-05', ...over,
  };
}
const dbOf = (...entries: GemmTuneEntry[]): TuneDb => ({ format: 1, entries: {}, gemms: Object.fromEntries(entries.map((e) => [gemmEntryKey(e.unit, e.arch), e])) });
const write = (name: string, db: TuneDb): string => {
  const path = join(root, name);
  writeFileSync(path, JSON.stringify(db));
  return path;
};

describe('the sm_90a candidates of a weight shape', () => {
  test('every split-K of the shape x the planner\'s token tile of each M; lm_head\'s row statistics: none, with why', () => {
    const target = gemmTarget(['sm_90', 'sm_90a']);
    const shape = { n: 1024, k: 256, dtype: 'bf16' as const };
    const space = gemmSm90aSpace(shape, ['gate_up'], [1, 20, 72, 272], target);
    expect(space.refused).toBeUndefined();
    expect(space.configs.map((c) => `s${c.splitK} M=${c.m} t${c.tileT}`)).toEqual(gemmReductionSpace(shape, target).configs.flatMap((r) => [`s${r.splitK} M=1 t8`, `s${r.splitK} M=20 t32`, `s${r.splitK} M=72 t128`, `s${r.splitK} M=272 t136`]));
    const head = gemmSm90aSpace({ n: 260, k: 256, dtype: 'bf16' }, ['lm_head'], [1, 20], target);
    expect(head.configs).toEqual([]);
    expect(head.refused).toMatch(/row statistics/);
  });
});

describe('one family and one split-K per weight shape (chooseGemmKernel)', () => {
  const times = (t: Record<string, Record<number, Record<number, number>>>) =>
    new Map(Object.entries(t).map(([f, s]) => [f as GemmFamily, new Map(Object.entries(s).map(([k, ms]) => [Number(k), new Map(Object.entries(ms).map(([m, us]) => [Number(m), us]))]))]));

  test('per count the family of least total, then the count of least relative regret, though the other family wins some M', () => {
    // Split-K 1: sm_90a (92 us against 102); split-K 2: mma.sync alone. Regrets 4.06 and 3.06: mma.sync split-K 2.
    expect(chooseGemmKernel(times({ sm_90: { 1: { 1: 10, 20: 12, 272: 80 }, 2: { 1: 8, 20: 9, 272: 70 } }, sm_90a: { 1: { 1: 12, 20: 14, 272: 66 } } }))).toEqual({ kernel: 'sm_90', splitK: 2 });
    // Regrets: sm_90a split-K 4 3.125, split-K 1 3.143, mma.sync 2 3.89: split-K 4, where the least total (57 us) would take split-K 1.
    expect(chooseGemmKernel(times({ sm_90: { 2: { 1: 8, 20: 9, 272: 70 } }, sm_90a: { 1: { 1: 8, 20: 9, 272: 40 }, 4: { 1: 7, 20: 9, 272: 45 } } }))).toEqual({ kernel: 'sm_90a', splitK: 4 });
  });

  test('ties go to mma.sync within a count, then to fewer parts; a pair that missed an M is not weighed against complete ones', () => {
    expect(chooseGemmKernel(times({ sm_90: { 1: { 1: 5, 20: 5 } }, sm_90a: { 1: { 1: 5, 20: 5 } } }))).toEqual({ kernel: 'sm_90', splitK: 1 });
    // Across counts the tie is the split rule's: fewer parts, whichever family runs them.
    expect(chooseGemmKernel(times({ sm_90: { 2: { 1: 5, 20: 5 } }, sm_90a: { 1: { 1: 5, 20: 5 } } }))).toEqual({ kernel: 'sm_90a', splitK: 1 });
    expect(chooseGemmKernel(times({ sm_90a: { 1: { 1: 5 }, 2: { 1: 5 } } }))).toEqual({ kernel: 'sm_90a', splitK: 1 });
    // sm_90a split-K 1 is fastest on M = 1 but never reached M = 272 (rejected or cut by the budget).
    expect(chooseGemmKernel(times({ sm_90: { 1: { 1: 10, 272: 90 } }, sm_90a: { 1: { 1: 1 } } }))).toEqual({ kernel: 'sm_90', splitK: 1 });
    expect(chooseGemmKernel(new Map())).toBeUndefined();
  });
});

describe('one rule with the planner: fed the cost models\' times, the tuner picks what a compile for sm_90a plans', () => {
  test('Qwen3-8B, Qwen2.5-1.5B and tiny: every shape\'s family and split-K (planUnitReduction, sm90aGemmHeuristic)', async () => {
    const target = gemmTarget(['sm_90', 'sm_90a']);
    for (const file of ['qwen3-8b.json', 'qwen2.5-1.5b.json', 'tiny.json']) {
      const model = await loadModelSpecFile(join(packageRoot(), 'examples', file));
      const rows = stepRows(model.draftLengths);
      for (const role of ['qkv', 'o', 'gate_up', 'down'] as const) {
        const shape = gemmShapeOf(model, role);
        const candidates = gemmSplitCandidates(shape, target, rows).filter((c) => sm90aRefusal(shape, [role], c.reduction) === null);
        const us = new Map<GemmFamily, Map<number, Map<number, number>>>([['sm_90', new Map()], ['sm_90a', new Map()]]);
        for (const c of candidates) {
          const t = sm90aGemmTimes({ shape, roles: [role], reduction: c.reduction, plans: c.plans });
          us.get('sm_90')!.set(c.reduction.splitK, new Map(t.map((x) => [x.m, x.sm90S])));
          us.get('sm_90a')!.set(c.reduction.splitK, new Map(t.map((x) => [x.m, x.sm90aS])));
        }
        const reduction = planUnitReduction(shape, [role], target, rows);
        const kernel = sm90aGemmHeuristic({ shape, roles: [role], reduction, plans: rows.map((m) => planGemm(shape, m, target, reduction)) }).kernel;
        expect(chooseGemmKernel(us), `${file} ${role}`).toEqual({ kernel, splitK: reduction.splitK });
      }
    }
  });
});

describe('the database holds one reduction and one family per weight shape', () => {
  const parse = (db: unknown) => () => parseTuneDb(JSON.stringify(db), 'tune.json');
  const key = gemmEntryKey(GATE_UP, 'sm_90');

  test('a raced entry round-trips', () => {
    expect(parseTuneDb(JSON.stringify(dbOf(raced(GATE_UP, 'sm_90a', 2))), 'tune.json').gemms![key]!.kernel).toBe('sm_90a');
  });

  test('a row count naming its own split-K or kernel, an unknown family, an sm_90a winner timed at another split-K: one error naming the field', () => {
    const e = raced(GATE_UP, 'sm_90', 2);
    const perM = { ...e, rows: { ...e.rows, 20: { ...e.rows['20']!, splitK: 4 } } };
    expect(parse(dbOf(perM))).toThrow(expect.objectContaining({ message: expect.stringMatching(/sets a split-K or kernel per row count; one serves every M of a weight shape \(batch invariance\)/), details: expect.objectContaining({ field: `gemms["${key}"].rows["20"].splitK`, source: 'tune.json' }) }));
    const perM90a = { ...e, sm90a: { ...e.sm90a!, rows: { 1: { ...e.sm90a!.rows['1']!, kernel: 'sm_90' } } } };
    expect(parse(dbOf(perM90a))).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: `gemms["${key}"].sm90a.rows["1"].kernel` }) }));
    expect(parse(dbOf({ ...e, kernel: 'sm_100a' as GemmFamily }))).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: `gemms["${key}"].kernel`, value: 'sm_100a', allowed: 'sm_90, sm_90a' }) }));
    expect(parse(dbOf(raced(GATE_UP, 'sm_90a', 2, 4)))).toThrow(expect.objectContaining({ message: expect.stringMatching(/chose the sm_90a kernel at another split-K than its own/), details: expect.objectContaining({ value: '4', allowed: '2' }) }));
  });

  test('two records of one unit (per arch) are never mixed: the default is kept, and why is said', () => {
    const two = tunedGemms(dbOf(raced(GATE_UP, 'sm_90', 2), raced(GATE_UP, 'sm_90a', 4, 4, { arch: 'sm_90a' })), spec, ['sm_90', 'sm_90a']);
    expect(two.gemms).toEqual({});
    expect(two.skipped).toEqual([`${GATE_UP}: measured on sm_90 (split-K 2, sm_90) and sm_90a (split-K 4, sm_90a), one plan serves this compile's arches; kept the default (compile the arches separately)`]);
  });
});

describe('the apply step: the family reaches the plan, the manifest and the runtime\'s data', () => {
  test('an sm_90 winner keeps the shape off the sm_90a units; an sm_90a winner keeps it there; both recorded per kernel', () => {
    const arches = ['sm_90', 'sm_90a'] as const;
    const plain = generateModel(spec, { arches: [...arches] }).manifest;
    expect(plain.gemmsSm90a!.map((u) => u.unit)).toContain(sm90aUnitName({ n: 1024, k: 256, dtype: 'bf16' }));
    for (const kernel of ['sm_90', 'sm_90a'] as const) {
      const picked = tunedGemms(dbOf(raced(GATE_UP, kernel, 2)), spec, [...arches]);
      expect(picked.gemms[GATE_UP]).toMatchObject({ kernel, splitK: 2 });
      expect(picked.used[GATE_UP]).toBe(`split-K 2; the ${kernel === 'sm_90a' ? 'sm_90a' : 'mma.sync'} kernel on a 9.0 device; M=1 b16w1s4, M=20 b16w1s4 (sm_90, NVIDIA H200 x 132 SMs)`);
      const m = generateModel(spec, { arches: [...arches], gemms: picked.gemms }).manifest;
      expect(m.gemms!.filter((g) => g.unit === GATE_UP).every((g) => g.tuned?.kernel === kernel && g.splitK === 2)).toBe(true);
      const unit = m.gemmsSm90a!.find((u) => u.unit === sm90aUnitName({ n: 1024, k: 256, dtype: 'bf16' }));
      expect(unit === undefined).toBe(kernel === 'sm_90');
      if (unit) expect(unit.splitK).toBe(2);
      // The other shapes keep the selection rule: their sm_90a units stay.
      expect(m.gemmsSm90a!.length).toBe(plain.gemmsSm90a!.length - (kernel === 'sm_90' ? 1 : 0));
    }
  });

  test('an sm_90a winner for a compile without sm_90a, or for lm_head: one error line naming the database and the kernel', async () => {
    const db = write('sm90a.json', dbOf(raced(GATE_UP, 'sm_90a', 2)));
    expectOneErrorLine(await runTidarc('compile', TINY, '--arch', 'sm_90', '--tuned', db, '--no-build', '--json', '--out', join(root, 'o1')),
      `${db}: tuned GEMM ${GATE_UP} (sm_90) chose the sm_90a kernel, which this compile does not build for it: this compile's arches (sm_90) do not include sm_90a`, 'kernel = sm_90a', 'allowed: sm_90 here; sm_90a in a compile with --arch sm_90a');
    const head = write('head.json', dbOf(raced(LM_HEAD, 'sm_90a', 1)));
    expectOneErrorLine(await runTidarc('compile', TINY, '--arch', 'sm_90,sm_90a', '--tuned', head, '--no-build', '--json', '--out', join(root, 'o2')),
      `tuned GEMM ${LM_HEAD} (sm_90) chose the sm_90a kernel, which this compile does not build for it: lm_head row statistics are not in the sm_90a epilogue`);
  });

  test('run --tuned on a 9.0 device takes an sm_90a winner (its kernel cache builds sm_90a); an sm_80 one refuses it', () => {
    const path = write('run.json', dbOf(raced(GATE_UP, 'sm_90a', 2, 2, { arch: 'sm_90' })));
    const load = { path, field: 'tuned', spec, drafts: spec.draftLengths, log: () => undefined };
    expect(loadTunedGemms({ ...load, arches: runArches('sm_90') })[GATE_UP]).toMatchObject({ kernel: 'sm_90a', splitK: 2 });
    expect(() => loadTunedGemms({ ...load, arches: ['sm_90'] })).toThrow(/chose the sm_90a kernel, which this compile does not build for it/);
    // The record's reduction is the sm_90a unit's too: the two families share it.
    expect(planReduction({ n: 1024, k: 256, dtype: 'bf16' }, gemmTarget(runArches('sm_90')), 2).splitK).toBe(2);
  });
});

describe('tune --report', () => {
  test('prints both families per weight shape, each at the split-K the rule picks for it, and the winner every M runs', () => {
    const text = tuneReport(dbOf(raced(GATE_UP, 'sm_90a', 2), { ...raced(LM_HEAD, 'sm_90', 1), sm90a: undefined }));
    expect(text).toContain('The kernel families on a 9.0 device (mma.sync against TMA + wgmma), each at the split-K the rule picks for it; one family and split-K run every M of a weight shape:');
    expect(text).toContain(`- ${GATE_UP} (sm_90): mma.sync 20.0 us at split-K 2, sm_90a 12.0 us at split-K 2 (summed over M); winner: sm_90a at split-K 2`);
    expect(text).toContain('  M=1 mma.sync 10.0 us (b16w1s4, split-K 2) / sm_90a 6.0 us (t8, split-K 2); M=20 mma.sync 10.0 us (b16w1s4, split-K 2) / sm_90a 6.0 us (t32, split-K 2)');
    expect(text).toContain(`- ${LM_HEAD} (sm_90): mma.sync 20.0 us at split-K 1, sm_90a not raced (the shape has no sm_90a kernel) (summed over M); winner: mma.sync at split-K 1`);
    // The loser's split-K is the rule's over its own per-M times, not its least total: mma.sync split-K 4 (regret 3.0 against 3.2; totals 25 against 21).
    const rowsUs = { 1: { 1: 11, 20: 10 }, 4: { 1: 5, 20: 20 } };
    const loser = tuneReport(dbOf({ ...raced(GATE_UP, 'sm_90a', 2), splitRowsUs: rowsUs, splitTotalsUs: { 1: 21, 4: 25 } }));
    expect(loser).toContain(`- ${GATE_UP} (sm_90): mma.sync 25.0 us at split-K 4, sm_90a 12.0 us at split-K 2 (summed over M); winner: sm_90a at split-K 2`);
  });

  test('heuristic against tuned is what a 9.0 device runs: without the record the sm_90a compile\'s family and split-K, with it the winner\'s kernel', () => {
    const heuristicSm90a = { kernel: 'sm_90a' as const, splitK: 1, arches: ['sm_90', 'sm_90a'] as const, rows: { 1: { tileT: 8, timing: timing(9) }, 20: { tileT: 32, timing: timing(7.5) } } };
    // The sm_90a kernel won at split-K 2 (6 us); the device's untuned run is sm_90a unsplit, not the sm_90 compile's mma.sync at heuristicSplitK.
    const won = tuneReport(dbOf({ ...raced(GATE_UP, 'sm_90a', 2), heuristicSm90a: { ...heuristicSm90a, arches: [...heuristicSm90a.arches] } }));
    expect(won).toContain(`| ${GATE_UP} | sm_90 | 1 | split-K 1 sm_90a t8 (sm_90+sm_90a) | 9.0 | split-K 2 sm_90a t8 | 6.0 | 1.50x |`);
    expect(won).toContain(`| ${GATE_UP} | sm_90 | 20 | split-K 1 sm_90a t32 (sm_90+sm_90a) | 7.5 | split-K 2 sm_90a t32 | 6.0 | 1.25x |`);
    // mma.sync won: its tile's time; an M the heuristic's kernel was not timed at says so.
    const kept = tuneReport(dbOf({ ...raced(GATE_UP, 'sm_90', 2), heuristicSm90a: { ...heuristicSm90a, arches: [...heuristicSm90a.arches], rows: { 1: heuristicSm90a.rows[1] } } }));
    expect(kept).toContain(`| ${GATE_UP} | sm_90 | 1 | split-K 1 sm_90a t8 (sm_90+sm_90a) | 9.0 | split-K 2 b16w1s4 | 10.0 | 0.90x |`);
    expect(kept).toContain(`| ${GATE_UP} | sm_90 | 20 | split-K 1 sm_90a (sm_90+sm_90a): not timed | - | split-K 2 b16w1s4 | 10.0 | - |`);
    // A raced record without it (an older bundle): the sm_90 compile's heuristic, named so; the winner's kernel on the tuned side.
    expect(tuneReport(dbOf(raced(GATE_UP, 'sm_90a', 2)))).toContain(`| ${GATE_UP} | sm_90 | 1 | split-K 1 b16w1s4 (sm_90) | 12.0 | split-K 2 sm_90a t8 | 6.0 | 2.00x |`);
    // The parser takes it, and refuses a malformed one.
    const db = dbOf({ ...raced(GATE_UP, 'sm_90a', 2), heuristicSm90a: { ...heuristicSm90a, arches: [...heuristicSm90a.arches] } });
    expect(parseTuneDb(JSON.stringify(db), 'tune.json').gemms![gemmEntryKey(GATE_UP, 'sm_90')]!.heuristicSm90a!.splitK).toBe(1);
    const bad = dbOf({ ...raced(GATE_UP, 'sm_90a', 2), heuristicSm90a: { ...heuristicSm90a, arches: [...heuristicSm90a.arches], kernel: 'sm_90' } });
    expect(() => parseTuneDb(JSON.stringify(bad), 'tune.json')).toThrow(/heuristicSm90a is malformed/);
  });
});
