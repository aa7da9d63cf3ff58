import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { H100_SXM, H200 } from '../../src/codegen/machine.js';
import { CONSTRUCTIONS, STEP_COMPARE_FIXTURE, buildStepCompareFixture } from '../../scripts/step-compare-fixture.js';
import { type CompareMode, type StepComparison, compareSteps, comparisonLines } from '../../src/bench/step-compare.js';
import { parseJsonFile } from '../../src/bench/step-overheads-file.js';
import { type HostStepDerivation, deriveHostStep, hostStepLines, rowPredictor } from '../../src/bench/step-host.js';
import { measuredOverheadsOf } from '../../src/bench/step-overheads-file.js';
import { DOWNLOADS, SAMPLE_CALLS, UPLOADS, hostFixture } from '../helpers/step-host-fixture.js';

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

describe('bench:step --compare: the host time per step (step-host.ts)', () => {
  // Host times built from known constants (test/helpers/step-host-fixture.ts): the derivation must give them back.
  const built = hostFixture({ graphsS: 17e-6, launchesS: 17e-6 });
  const h = compareSteps(built, 'host.json');
  const runs = h.rows.flatMap((r) => r.modes.map((m) => ({ r, m })));
  // The derivation alone (what --compare and --overheads share), one compile per model for every variant of the file.
  const predictor = rowPredictor(built.e2e, false, H200);
  const derive = (d: Record<string, unknown>): HostStepDerivation => deriveHostStep(d, d.overheads === undefined ? null : measuredOverheadsOf(d, 'd.json'), predictor);

  it('gives back the decoder host time the rows were built with, each group alone; re-predicted = measured', () => {
    expect(h.host.hostStepS).toBeCloseTo(17e-6, 12);
    expect([h.host.from, h.host.graphs!.rows, h.host.launches!.rows]).toEqual(['graphs', 7, 2]);
    for (const g of [h.host.graphs!, h.host.launches!]) for (const x of [g.medianS, g.minS, g.maxS]) expect(x).toBeCloseTo(17e-6, 12);
    // The cost model's copies are the runtime's: one upload and one download a step.
    for (const x of h.host.rows) expect([x.uploads, x.downloads, x.launchesFrom]).toEqual([UPLOADS, DOWNLOADS, 'measured']);
    expect(runs).toHaveLength(9);
    for (const { r, m } of runs) {
      const x = m.host!;
      expect(x.decoderMs, `${r.model} ${r.step} ${m.mode}`).toBeCloseTo(0.017, 12);
      expect(x.callsMs + x.decoderMs).toBeCloseTo(x.measuredMs, 12);
      // The model prices what the rows were built with: no download call (bench-step counts the synchronous
      // download among its waits), and with graphs no upload call (the upload is a node of the graph).
      expect(x.predictedMs - x.measuredMs).toBeCloseTo(0, 12);
      expect(x.share).toBeCloseTo(x.measuredMs / m.measuredMs, 12);
      expect(x.met).toBe(x.share! <= 0.05);
    }
    const lines = comparisonLines(h);
    expect(lines).toContain('hostStepS: 17 us, derived from the e2e part\'s decoder steps (the graphs runs\' median of hostMs less the launches\' and uploads\' calls).');
    expect(lines.some((l) => l.startsWith('Issue 16, host time per step <= 5% of the step (qwen3-8b-shape-4l L=4096, ar graphs + PDL, tidar_k8 graphs + PDL): met, '))).toBe(true);
    expect(lines.some((l) => l.includes('qwen3-8b-shape-4l: 4 of 36'))).toBe(true);
    expect(lines.join('\n')).not.toMatch(/NaN|undefined|Infinity/);
  });

  it('the GPU columns with the overheads part\'s constants take the derived hostStepS too (the decoder\'s work comes before the first kernel), as bench:step --overheads does', () => {
    // The same rows without host times: hostStepS stays the assumed 20 us; with them it is 17 us, 3 us less before every step's kernels.
    const bare = structuredClone(built);
    for (const r of bare.e2e.rows) for (const f of Object.values(r.tidarc as Record<string, Record<string, unknown> | null>)) if (f) delete f.hostMs;
    const was = compareSteps(bare, 'bare.json');
    expect(was.host.hostStepS).toBeNull();
    for (const [i, r] of h.rows.entries()) {
      for (const [j, m] of r.modes.entries()) {
        const before = was.rows[i]!.modes[j]!.predictedMs;
        expect(m.predictedMs.overheads - before.overheads, `${r.model} ${r.step} ${m.mode}`).toBeCloseTo(-0.003, 9);
        expect(m.predictedMs.both - before.both).toBeCloseTo(-0.003, 9);
        expect(m.predictedMs.assumed).toBe(before.assumed);
      }
    }
    expect(h.overheads!.overheads.hostStepS).toBeCloseTo(17e-6, 12);
    expect(comparisonLines(h)).toContain('  hostStepS: assumed 20 us -> derived 17 us (from the e2e part\'s decoder steps: the median over 7 graphs runs of hostMs less the launches\' and uploads\' calls)');
  });

  it('a different constant in the rows or in the overheads part moves the derived figure by exactly that', () => {
    // Graphs runs built with 25 us: the constant (the graphs' median) follows, the launch-by-launch runs keep 17.
    const g = derive(hostFixture({ graphsS: 25e-6, launchesS: 17e-6 }));
    expect([g.hostStepS, g.graphs!.medianS, g.launches!.medianS].map((x) => x! * 1e6)).toEqual([25, 25, 17].map((x) => expect.closeTo(x, 6)));
    // The overheads part measured a graph launch 2 us slower than the rows were built with: 2 us less is the decoder's.
    const slower = hostFixture({ graphsS: 17e-6, launchesS: 17e-6 });
    slower.overheads = { ...slower.overheads, measured: { ...slower.overheads.measured, hostGraphLaunchS: { value: 5e-6, identifiable: true, from: 'x' } } };
    const s = derive(slower);
    expect(s.graphs!.medianS).toBeCloseTo(15e-6, 12);
    expect(s.launches!.medianS).toBeCloseTo(17e-6, 12);
    // One graphs run far from the rest: the median holds, the spread shows it.
    const odd = derive(hostFixture({ graphsS: 17e-6, launchesS: 17e-6, share: { 'qwen3-0.6b-shape/1024/tidar_k8/graphs': 0.2 } }));
    expect(odd.hostStepS).toBeCloseTo(17e-6, 12);
    expect(odd.graphs!.maxS).toBeGreaterThan(100e-6);
    expect(odd.rows.find((r) => r.step === 'tidar_k8' && r.prefix === 1024)!.share).toBeCloseTo(0.2, 12);
  });

  it('a graphs run that counted other than one launch a step (a warm-up or recapture in the timed window) is left out of the median, named', () => {
    // Four of the seven graphs runs also launched 36 kernels a step (6 us each, the sample's 4.2 us calls aside): priced as 37 graph
    // launches they would leave 125 us each and carry the median; left out, the other three give 17 us back.
    const odd = hostFixture({ graphsS: 17e-6, launchesS: 17e-6 });
    const graphsRun = (step: string, prefix: number): Record<string, number> => (odd.e2e.rows.find((r) => r.step === step && r.prefix === prefix)!.tidarc as Record<string, Record<string, number>>).graphs!;
    const names = [['ar', 4096], ['tidar_k8', 4096], ['tidar_k8', 1024], ['tidar_k4', 1024]] as const;
    for (const [step, prefix] of names) {
      const f = graphsRun(step, prefix);
      f.launchesPerStep = 37;
      f.hostMs = f.hostMs! + 36 * 6e-3;
    }
    const d = derive(odd);
    expect(d.hostStepS).toBeCloseTo(17e-6, 12);
    expect([d.from, d.graphs!.rows, d.graphs!.maxS]).toEqual(['graphs', 3, expect.closeTo(17e-6, 12)]);
    // The runs stay rows (the host table shows them), marked.
    const excluded = d.rows.filter((x) => x.excluded !== undefined);
    expect(excluded.map((x) => `${x.step} ${x.prefix} ${x.run}`).sort()).toEqual(names.map(([step, prefix]) => `${step} ${prefix} graphs`).sort());
    for (const x of excluded) expect(x.excluded).toBe('bench-step counted 37 launches a step, not the one graph launch');
    const note = d.notes.find((n) => n.startsWith('left out (graphs runs that counted other than one launch a step'))!;
    expect(note).toContain('qwen3-8b-shape-4l L=4096 ar graphs (37 launches)');
    expect(note.match(/\(37 launches\)/g)).toHaveLength(4);
    expect(d.notes.some((n) => n.includes('priced with the counted ones'))).toBe(false);
    expect(hostStepLines(d).some((l) => l.includes(note))).toBe(true);
    // Every graphs run so: the launch-by-launch runs' median, said.
    const all = hostFixture({ graphsS: 17e-6, launchesS: 19e-6 });
    for (const r of all.e2e.rows) for (const run of ['graphs', 'noPdl'] as const) {
      const f = (r.tidarc as Record<string, Record<string, number> | null>)[run];
      if (f) f.launchesPerStep = 2;
    }
    const l = derive(all);
    expect([l.from, l.graphs, l.hostStepS]).toEqual(['launches', null, expect.closeTo(19e-6, 12)]);
    expect(l.rows.filter((x) => x.excluded !== undefined)).toHaveLength(7);
    // A launch-by-launch run's count off the model's stays in, priced with the counted launches (a note, as before).
    const counted = hostFixture({ graphsS: 17e-6, launchesS: 17e-6 });
    const lr = (counted.e2e.rows.find((r) => r.step === 'ar' && r.prefix === 1024)!.tidarc as Record<string, Record<string, number>>).launches!;
    lr.launchesPerStep = lr.launchesPerStep! + 2;
    lr.hostMs = lr.hostMs! + 2 * 4.2e-3;
    const c2 = derive(counted);
    expect(c2.launches!.rows).toBe(2);
    expect(c2.launches!.maxS).toBeCloseTo(17e-6, 12);
    expect(c2.notes.some((n) => /^qwen3-0\.6b-shape L=1024 ar launches: bench-step counted \d+ launches a step, the cost model's step has \d+: priced with the counted ones$/.test(n))).toBe(true);
  });

  it('issue 16\'s target: the 8B shape\'s worst of AR and k = 8, with the decoder\'s and the calls\' parts', () => {
    const miss = compareSteps(hostFixture({ graphsS: 17e-6, launchesS: 17e-6, share: { 'qwen3-8b-shape-4l/4096/tidar_k8/graphs': 0.08 } }), 'm.json');
    const k8 = miss.rows.find((r) => r.step === 'tidar_k8' && r.prefix === 4096)!.modes[0]!.host!;
    const line = comparisonLines(miss).find((l) => l.startsWith('Issue 16'))!;
    expect(line).toContain('MISSED, 8.0% (worst: tidar_k8, MEASURED)');
    const calls = SAMPLE_CALLS.hostGraphLaunchS * 1e3;  // with graphs the upload is a node of the graph: no call
    expect(k8.callsMs).toBeCloseTo(calls, 12);
    expect(line).toContain(`of its ${k8.measuredMs.toFixed(4)} ms host time ${(k8.measuredMs - calls).toFixed(4)} ms (${(100 * (1 - calls / k8.measuredMs)).toFixed(0)}%) is the decoder's own, ${calls.toFixed(4)} ms`);
  });

  it('partial files: no overheads part (assumed calls, said), failed or malformed runs (left out, said), no host times, the cpu backend, another device', () => {
    const bare: Record<string, unknown> = hostFixture({ graphsS: 17e-6, launchesS: 17e-6 });
    delete bare.overheads;
    const a = derive(bare);
    // Built with the measured calls, priced with the assumed ones (5 us a graph launch and a copy, 6 a kernel launch).
    expect(a.graphs!.medianS).toBeCloseTo(17e-6 + 3e-6 - 5e-6, 12);
    // 175.5: the median of the launch-by-launch rows' launches, 0.6B AR and k = 4 with the norms folded (175, 176; 231, 232 unfolded).
    expect(a.launches!.medianS).toBeCloseTo(17e-6 + 3.5e-6 - 5e-6 - 1.8e-6 * 175.5, 9);
    expect(a.notes[0]).toMatch(/^no overheads part's constants: the calls are priced with the assumed hostLaunchS 6 us, hostGraphLaunchS 5 us, hostCopyS 5 us/);
    const broken = hostFixture({ graphsS: 17e-6, launchesS: 17e-6 });
    const t = (i: number): Record<string, unknown> => broken.e2e.rows[i]!.tidarc as Record<string, unknown>;
    t(0).graphs = { medianMs: 0.7, hostMs: 'fast' };
    t(0).launches = null;
    (t(1).graphs as Record<string, unknown>).launchesPerStep = undefined;
    const b = derive(broken);
    expect(b.notes).toContain('left out (no host time (bench-step\'s hostMs missing or not a number of ms)): qwen3-0.6b-shape L=1024 ar graphs');
    expect(b.rows.find((x) => x.step === 'tidar_k8' && x.prefix === 1024)!.launchesFrom).toBe('model');
    expect(b.rows).toHaveLength(7);
    expect(b.hostStepS).toBeCloseTo(17e-6, 12);
    expect(hostStepLines(b).join('\n')).not.toMatch(/NaN|undefined|Infinity/);
    // No run with a host time (an e2e part older than hostMs): the GPU comparison stands, the host part says why.
    const old = c;
    expect(old.host.hostStepS).toBeNull();
    expect(old.rows.every((r) => r.modes.every((m) => m.host === null))).toBe(true);
    const lines = comparisonLines(old);
    expect(lines).toContain('No run recorded a host time (bench-step\'s hostMs): nothing to compare.');
    expect(lines).toContain('hostStepS: kept as assumed (20 us): not derived: no e2e row has a host time (6 rows; its e2e part: ok)');
    expect(lines.join('\n')).not.toMatch(/NaN|undefined|Infinity/);
    expect(deriveHostStep({ parts: [{ name: 'e2e', status: 'failed', why: 'x' }] }, null).why).toBe('no e2e section: no decoder steps to derive it from (its e2e part: failed, x)');
    expect(deriveHostStep({ ...built, e2e: { ...built.e2e, backend: 'cpu' } }, null).why).toMatch(/^the e2e part ran the cpu backend/);
    // The overheads part on another device than the rows (the machine each names).
    const other = hostFixture({ graphsS: 17e-6, launchesS: 17e-6 });
    other.overheads = { ...other.overheads, device: { name: 'NVIDIA H100 80GB HBM3', computeCapability: [9, 0] } };
    const o = derive(other);
    expect(o.notes).toContain('the overheads part measured NVIDIA H100 80GB HBM3 (9.0), the e2e rows ran on NVIDIA H200: the call constants are another device\'s');
    expect(hostStepLines(o).some((l) => l.includes('another device'))).toBe(true);
  });
});

