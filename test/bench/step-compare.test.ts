import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { H100_SXM, H200 } from '../../src/codegen/machine.js';
import { CONSTRUCTIONS, STEP_COMPARE_FIXTURE, buildStepCompareFixture } from '../../scripts/step-compare-fixture.js';
import { type CompareMode, type StepComparison, compareSteps, comparisonLines } from '../../src/bench/step-compare.js';
import { parseJsonFile } from '../../src/bench/step-overheads-file.js';

// The fixture's measured steps are made from the predictions computed now (the bundle's path for the bundled figure, a
// hand-built Machine with the file's ceilings and measuredStepOverheads for "both"), so the constructed shares hold
// whatever the cost model says; step-compare.ts must find the same specs, machine and constants to get them back.
const doc = buildStepCompareFixture();
const c: StepComparison = compareSteps(doc, 'fixture.json');
const rowOf = (step: string, prefix: number, model: number): StepComparison['rows'][number] =>
  c.rows.find((r) => r.step === step && r.prefix === prefix && r.model.startsWith(model === 0 ? 'qwen3-0.6b' : 'qwen3-8b'))!;

describe('bench:step --compare (step-compare.ts)', () => {
  it('gives back the share of each miss the measured constants were made to explain', () => {
    let checked = 0;
    for (const k of CONSTRUCTIONS) {
      const r = rowOf(k.step, k.prefix, k.model);
      for (const mode of ['graphs', 'launches', 'noPdl'] as CompareMode[]) {
        const how = k[mode];
        const m = r.modes.find((x) => x.mode === mode);
        if (!how) {
          expect(m).toBeUndefined();
          continue;
        }
        expect(m, `${r.model} ${r.step} ${mode}`).toBeDefined();
        expect(m!.pdl).toBe(mode !== 'noPdl' && k.pdl === true);
        if ('share' in how) {
          expect(m!.explained, `${r.model} ${r.step} ${mode}: a miss past 5%`).not.toBeNull();
          expect(m!.explained!.both).toBeCloseTo(how.share, 9);
          expect(m!.residualMs).toBeCloseTo(m!.measuredMs - m!.predictedMs.both, 12);
          // The constants move the prediction: the ceilings and the overheads each price something else than the assumed ones.
          expect(m!.predictedMs.ceilings).not.toBe(m!.predictedMs.assumed);
          expect(m!.predictedMs.overheads).not.toBe(m!.predictedMs.assumed);
          if (how.share === 1) expect(Math.abs(m!.residualMs)).toBeLessThan(1e-9);
        } else {
          expect(m!.explained).toBeNull();
          expect(m!.measuredOverBase).toBeCloseTo(1 + how.miss, 12);
        }
        checked++;
      }
    }
    expect(checked).toBe(9);
  });

  it('warns, by row, where the bundled prediction is not the model\'s, and takes the shares against the model\'s figure', () => {
    const off = rowOf('tidar_k8', 4096, 1);
    expect(off.modes[0]!.bundleMatches).toBe(false);
    expect(off.modes[0]!.base).toBe('assumed');
    expect(off.modes[0]!.bundledMs! / off.modes[0]!.predictedMs.assumed).toBeCloseTo(1.1, 9);
    expect(c.warnings).toHaveLength(1);
    expect(c.warnings[0]).toMatch(/^qwen3-8b-shape-4l L=4096 tidar_k8 \(graphs \+ PDL\): the bundled prediction .* the cost model changed since the bundle was made/);
    for (const r of c.rows.filter((x) => x !== off)) for (const m of r.modes) expect([m.bundleMatches, m.base]).toEqual([true, 'bundled']);
    const lines = comparisonLines(c);
    expect(lines.some((l) => l.startsWith('WARNING: qwen3-8b-shape-4l L=4096 tidar_k8'))).toBe(true);
    expect(lines.some((l) => l.startsWith('Not measured') && l.includes('qwen3-8b-shape-4l L=4096 tidar_k16'))).toBe(true);
    expect(lines.some((l) => l.includes('kernels or an unmodelled cost'))).toBe(true);
    expect(lines[1]).toMatch(/^Ceilings measured: copy 3\.60 TB\/s \(assumed 4\.3\), bf16 matmul 700 TFLOP\/s/);
    expect(c.notes).toEqual([]);
  });

  it('the committed fixture is made by scripts/step-compare-fixture.ts from the same constructions', () => {
    const file = JSON.parse(readFileSync(STEP_COMPARE_FIXTURE, 'utf8')) as { e2e: { rows: { constructed: unknown }[] } };
    expect(file.e2e.rows.map((r) => r.constructed)).toEqual(JSON.parse(JSON.stringify(CONSTRUCTIONS)));
  });

  it('without measured constants every column is the assumed prediction, and says so', () => {
    const e2e = doc.e2e as { rows: Record<string, unknown>[] };
    const bare = { format: 1, dryRun: false, device: { name: 'NVIDIA H200' }, e2e: { ...e2e, rows: [e2e.rows[0]] } };
    const b = compareSteps(bare, 'bare.json');
    const m = b.rows[0]!.modes.find((x) => x.mode === 'graphs')!;
    expect([m.predictedMs.ceilings, m.predictedMs.overheads, m.predictedMs.both]).toEqual([m.predictedMs.assumed, m.predictedMs.assumed, m.predictedMs.assumed]);
    expect(m.explained).toEqual({ ceilings: 0, overheads: 0, both: 0 });
    expect(b.notes.some((n) => n.startsWith('no measured ceilings'))).toBe(true);
    expect(b.notes.some((n) => n.startsWith('no measured overheads'))).toBe(true);
    const failed = compareSteps({ ...bare, overheads: { ok: false, error: 'no GPU' } }, 'failed.json');
    expect(failed.notes.some((n) => n.includes('overheads not used') && n.includes('no GPU'))).toBe(true);
    // A row of a model it has no spec of is measured, not predicted: a warning, not "not measured".
    const odd = compareSteps({ ...bare, e2e: { rows: [{ model: 'other', layers: 3, prefix: 16, step: 'ar', tidarcGraphsMs: 1 }] } }, 'odd.json');
    expect(odd.rows[0]!.unpriced).toBe(true);
    expect(odd.warnings).toEqual(['other L=16 ar: no spec of other with 3 layers (neither the e2e part\'s models, e2e-bundle.ts e2eModels, nor e2e.models): not predicted']);
    expect(comparisonLines(odd).some((l) => l.startsWith('Not measured'))).toBe(false);
  });

  it('prices for the machine the check took its predictions for (an H100 run: H100_SXM), the H200 for one it does not know', () => {
    const e2e = doc.e2e as { rows: Record<string, unknown>[] };
    // As e2e.py records it: the e2e section's predictedFor is the facts part's (device-check.json's own).
    const run = (predictedFor: Record<string, unknown>, file: string): StepComparison =>
      compareSteps({ format: 1, dryRun: false, device: { name: 'NVIDIA H100 80GB HBM3' }, predictedFor, e2e: { ...e2e, predictedFor, rows: [e2e.rows[0]] } }, file);
    const h100 = run({ machine: 'H100', label: 'H100' }, 'h100.json');
    expect([h100.machine, h100.machineLabel]).toEqual([H100_SXM.name, 'H100']);
    const h200 = run({ machine: 'H200', label: 'H200, not this GPU' }, 'h200.json');
    expect(h200.machine).toBe(H200.name);
    const graphs = (x: StepComparison): number => x.rows[0]!.modes.find((m) => m.mode === 'graphs')!.predictedMs.assumed;
    expect(graphs(h100)).toBeGreaterThan(graphs(h200));  // 3.0 TB/s of copy, not 4.3
    const unknown = run({ machine: 'B200' }, 'b200.json');
    expect(unknown.machine).toBe(H200.name);
    expect(unknown.notes.some((n) => n.includes('machine "B200"'))).toBe(true);
  });

  it('a file it cannot compare fails in one line', () => {
    const one = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        expect((e as Error).message).not.toContain('\n');
        return (e as Error).message;
      }
      throw new Error('did not throw');
    };
    expect(one(() => parseJsonFile('{"e2e": ', 'x.json'))).toMatch(/^x\.json: not JSON/);
    expect(one(() => parseJsonFile('# a README\n\nnot JSON', 'README.md'))).toMatch(/^README\.md: not JSON/);
    expect(one(() => compareSteps([], 'x.json'))).toMatch(/not a JSON object/);
    expect(one(() => compareSteps({ parts: [{ name: 'e2e', status: 'killed', why: 'past its window' }] }, 'x.json'))).toBe('x.json: no e2e section: nothing measured to compare (its e2e part: killed, past its window)');
    expect(one(() => compareSteps({ parts: [], e2e: { rows: [] } }, 'x.json'))).toMatch(/e2e\.rows is empty.*\(it ran no e2e part\)/);
    expect(one(() => compareSteps({ e2e: { rows: [{ model: 'm', layers: 1, prefix: 1, step: 'ar', tidarcGraphsMs: 'fast' }] } }, 'x.json'))).toMatch(/e2e\.rows\[0\]\.tidarcGraphsMs: "fast" is not a positive number/);
    expect(one(() => compareSteps({ e2e: { rows: [{ model: 'm' }] } }, 'x.json'))).toMatch(/e2e\.rows\[0\]: not a step row/);
  });
});
