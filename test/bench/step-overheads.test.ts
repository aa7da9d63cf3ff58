/**
 * `npm run bench:step -- --overheads FILE` (src/bench/step-overheads-file.ts): the launch and host
 * constants a device measured (scripts/device-check/overheads.mjs's JSON, alone or as a
 * device-check.json's `overheads` section) replace the assumed ones, each replacement printed, and
 * the steps are priced with them; a bad file is refused in one line naming it. The fixture's figures
 * are made up in overheads.mjs's shape, not measured.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { H200 } from '../../src/codegen/machine.js';
import { PDL_OVERHEADS, STEP_OVERHEADS, type StepRegisters } from '../../src/bench/step-cost-model.js';
import { QWEN3_0_6B, predictSteps } from '../../src/bench/step-report.js';
import { graphCopyNodeLine, measuredOverheadLines, overheadsLine, pdlLine, readMeasuredOverheads } from '../../src/bench/step-overheads-file.js';
import { hostStepLines, readOverheadsWithHostStep } from '../../src/bench/step-host.js';
import { UPLOADS, hostFixture } from '../helpers/step-host-fixture.js';
import { type GraphCopyNode, copyNodeWarnings } from '../../src/bench/launch-overhead-constants.js';
import type { OverheadSeriesSet } from '../../src/bench/launch-overhead-series.js';

const exec = promisify(execFile);
const FIXTURE = resolve('test/bench/fixtures/overheads-sample.json');
const text = readFileSync(FIXTURE, 'utf8');
const sample = JSON.parse(text) as { measured: Record<string, { value: number | null; identifiable: boolean; from: string }> } & Record<string, unknown>;
const root = mkdtempSync(join(tmpdir(), 'tidarc-step-overheads-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const REGISTERS: StepRegisters = { gemm: () => 128, attention: () => 255, sm90a: () => 137, source: 'assumed (test)' };

/** The fixture with its measured entries replaced (the rest kept). */
const withMeasured = (measured: Record<string, unknown>): string => JSON.stringify({ ...sample, measured: { ...sample.measured, ...measured } });

describe('bench:step --overheads', () => {
  test('each measured constant replaces the assumed one, a line each with identifiable or not; null ones stay assumed', () => {
    const m = readMeasuredOverheads(text, 'o.json');
    expect(m.overheads).toEqual({ ...STEP_OVERHEADS, hostLaunchS: 4.2e-6, streamGapS: 1.6e-6, graphNodeGapS: 0.45e-6, graphStartS: 7.1e-6, hostGraphLaunchS: 3e-6,
      copyLatencyS: 2.2e-6, hostCopyS: 3.5e-6, smallKernelS: 2.75e-6, graphCopyNodeS: 2.9e-6 });
    expect(m.pdlOverheads).toEqual({ ...PDL_OVERHEADS, waitReleaseS: 0.5e-6 });
    const lines = measuredOverheadLines(m);
    expect(lines[0]).toBe('Overheads measured on NVIDIA H200 (9.0) (o.json): 9 of 11 constants replaced.');
    expect(lines).toContain('  hostLaunchS: assumed 6 us -> measured 4.2 us (identifiable)');
    expect(lines).toContain('  graphNodeGapS: assumed 0.58 us -> measured 0.45 us (not identifiable alone: split with an assumed term)');
    expect(lines).toContain('  kept as assumed: hostStepS 20 us (not measured), rampS 0.8 us (not measured)');
    expect(lines).toContain('  identifiable: hostLaunchS, graphStartS, hostGraphLaunchS, copyLatencyS, hostCopyS, waitReleaseS; not identifiable alone: streamGapS, graphNodeGapS, smallKernelS');
    // The overhead line bench:step prints: the default one unchanged, the measured figures in the other.
    expect(overheadsLine(STEP_OVERHEADS, false)).toBe('Overheads (us; sources in step-overheads.ts): host per launch 6, stream gap 2, graph node gap 0.58, graph start 8.6, host graph launch 5, copy latency 3, host per copy 5, decoder host per step 20, kernel floor 1.5.');
    expect(overheadsLine(m.overheads, true)).toBe('Overheads (us; measured where replaced above, else as assumed in step-overheads.ts): host per launch 4.2, stream gap 1.6, graph node gap 0.45, graph start 7.1, host graph launch 3, copy latency 2.2, host per copy 3.5, decoder host per step 20, kernel floor 2.75, graph upload node 2.9 (measured graphCopyNodeS, not copy latency + graph node gap).');
    expect(pdlLine(m.pdlOverheads, true)).toMatch(/^PDL \(us; measured where replaced above, else assumed, .*\): wait release 0\.5, launch ramp 0\.8 /);
    expect(pdlLine(PDL_OVERHEADS, false)).toMatch(/wait release 0\.3, launch ramp 0\.8 .*nothing here was measured on an H200\.$/);
  });

  test('a device-check.json holding the section reads the same; the steps are priced with the measured constants', () => {
    const fromCheck = readMeasuredOverheads(JSON.stringify({ format: 1, parts: [{ name: 'overheads', status: 'ok' }], overheads: sample }), 'device-check.json');
    expect(fromCheck.overheads).toEqual(readMeasuredOverheads(text, 'o.json').overheads);
    // Only hostGraphLaunchS measured (2 us less): the graphs' host time per step drops by exactly that, launch by launch's does not move.
    const only = readMeasuredOverheads(JSON.stringify({ ...sample, measured: { hostGraphLaunchS: { value: 3e-6, identifiable: true, from: 'wall clock' } } }), 'one.json');
    expect(measuredOverheadLines(only).slice(0, 2)).toEqual(['Overheads measured on NVIDIA H200 (9.0) (one.json): 1 of 11 constants replaced.', '  hostGraphLaunchS: assumed 5 us -> measured 3 us (identifiable)']);
    // Another GPU's constants (the device tool also lends H100s): said, since the tables price an H200.
    const h100 = readMeasuredOverheads(JSON.stringify({ ...sample, device: { name: 'NVIDIA H100 80GB HBM3', computeCapability: [9, 0] } }), 'h100.json');
    expect(measuredOverheadLines(h100)[0]).toBe('Overheads measured on NVIDIA H100 80GB HBM3 (9.0), not the H200 these tables price (h100.json): 9 of 11 constants replaced.');
    // The device check's machine names (predicted-machines.ts), not a substring: a GH200 is not the H200.
    const gh200 = readMeasuredOverheads(JSON.stringify({ ...sample, device: { name: 'NVIDIA GH200 480GB', computeCapability: [9, 0] } }), 'gh200.json');
    expect(measuredOverheadLines(gh200)[0]).toBe('Overheads measured on NVIDIA GH200 480GB (9.0), not the H200 these tables price (gh200.json): 9 of 11 constants replaced.');
    const [base] = predictSteps(QWEN3_0_6B, [1024], H200, REGISTERS, 'sm_90');
    const [one] = predictSteps(QWEN3_0_6B, [1024], H200, REGISTERS, 'sm_90', only.overheads, only.pdlOverheads);
    expect(base!.graphs.hostMs - one!.graphs.hostMs).toBeCloseTo(0.002, 9);
    expect(one!.launchByLaunch.hostMs).toBe(base!.launchByLaunch.hostMs);
    // The whole fixture moves the predicted step (graphs with PDL: a smaller graph start and node gaps, a higher kernel floor).
    const [all] = predictSteps(QWEN3_0_6B, [1024], H200, REGISTERS, 'sm_90', fromCheck.overheads, fromCheck.pdlOverheads);
    expect(all!.pdl.graphs.gpuMs).not.toBeCloseTo(base!.pdl.graphs.gpuMs, 4);
    expect(all!.launchByLaunch.hostMs).toBeLessThan(base!.launchByLaunch.hostMs);  // 4.2 us a launch, not 6
  });

  test('a value below 0 (noise, or a ramp shorter than the assumed one) is priced as 0 and says so; unknown names are listed as ignored', () => {
    const m = readMeasuredOverheads(withMeasured({ graphNodeGapS: { value: -0.1e-6, identifiable: false, from: 's(graph-E) - rampS' }, someSumS: { value: 1e-6, identifiable: true, from: 'x' } }), 'n.json');
    expect(m.overheads.graphNodeGapS).toBe(0);
    const lines = measuredOverheadLines(m);
    expect(lines).toContain('  graphNodeGapS: assumed 0.58 us -> measured 0 us (-0.1 us measured, below 0: priced as 0) (not identifiable alone: split with an assumed term)');
    expect(lines).toContain('  kept as assumed: hostStepS 20 us (not measured), rampS 0.8 us (not measured)');
    expect(lines).toContain('  ignored (no such constant in step-overheads.ts): someSumS');
  });

  test('a device-check.json with e2e rows: hostStepS derived from its decoder steps, marked so; overheads.mjs\'s JSON alone keeps the assumed one and says so', () => {
    // The rows' host times built with 17 us of decoder work a step (test/helpers/step-host-fixture.ts), the calls with the sample's constants.
    const check = hostFixture({ graphsS: 17e-6, launchesS: 17e-6 });
    const r = readOverheadsWithHostStep(JSON.stringify(check), 'device-check.json');
    expect(r.measured.overheads).toEqual({ ...readMeasuredOverheads(text, 'o.json').overheads, hostStepS: expect.closeTo(17e-6, 12) });
    const lines = measuredOverheadLines(r.measured);
    expect(lines[0]).toBe('Overheads measured on NVIDIA H200 (9.0) (device-check.json): 10 of 11 constants replaced (hostStepS derived from the e2e part\'s decoder steps).');
    expect(lines).toContain('  hostStepS: assumed 20 us -> derived 17 us (from the e2e part\'s decoder steps: the median over 7 graphs runs of hostMs less the launches\' and uploads\' calls)');
    expect(lines).toContain('  kept as assumed: rampS 0.8 us (not measured)');
    expect(lines.at(-1)).toBe('  identifiable: hostLaunchS, graphStartS, hostGraphLaunchS, copyLatencyS, hostCopyS, waitReleaseS; not identifiable alone: streamGapS, graphNodeGapS, smallKernelS');
    expect(overheadsLine(r.measured.overheads, true)).toContain('decoder host per step 17,');
    expect(r.note).toBeUndefined();
    // The steps are priced with it: the host time a step moves by exactly 20 - 17 us.
    const [base] = predictSteps(QWEN3_0_6B, [1024], H200, REGISTERS, 'sm_90', readMeasuredOverheads(text, 'o.json').overheads);
    const [derived] = predictSteps(QWEN3_0_6B, [1024], H200, REGISTERS, 'sm_90', r.measured.overheads);
    expect(base!.graphs.hostMs - derived!.graphs.hostMs).toBeCloseTo(0.003, 9);
    // overheads.mjs's JSON alone: no decoder steps, the assumed 20 us, said.
    const alone = readOverheadsWithHostStep(text, 'o.json');
    expect(alone.measured.overheads.hostStepS).toBe(STEP_OVERHEADS.hostStepS);
    expect(hostStepLines(alone.host)[0]).toBe('hostStepS: kept as assumed (20 us): not derived: overheads.mjs\'s JSON alone: it holds no decoder steps (a device-check.json with e2e rows does)');
    // A device check whose overheads part failed but whose e2e part ran: the assumed calls and constants, hostStepS derived with them, said.
    const failed = readOverheadsWithHostStep(JSON.stringify({ ...check, overheads: { ok: false, error: 'cuInit: 100' } }), 'f.json');
    expect(failed.note).toBe('no overheads part\'s constants (f.json: the measurement failed (overheads.ok: false: cuInit: 100)): every other constant stays assumed');
    expect(failed.measured.overheads).toEqual({ ...STEP_OVERHEADS, hostStepS: expect.closeTo(17e-6 + 3e-6 - 5e-6, 12) });
    expect(measuredOverheadLines(failed.measured)[0]).toBe('Overheads measured on NVIDIA H200 (f.json): 1 of 11 constants replaced (hostStepS derived from the e2e part\'s decoder steps).');
    // Neither constants nor decoder steps: the reader's one line, as before.
    expect(() => readOverheadsWithHostStep('{"format": 1, "parts": [{"name": "overheads", "status": "failed", "why": "x"}]}', 'n.json')).toThrow(/^n\.json: a device check's results without an overheads section \(its overheads part: failed, x\)$/);
  });

  test('the step\'s upload as a graph node (graphCopyNodeS): the measured node prices it with graphs, in place of copyLatencyS + graphNodeGapS; a null or doubted one does not', () => {
    const m = readMeasuredOverheads(text, 'o.json');
    expect(m.graphCopyNode).toEqual({ measuredS: 2.9e-6, from: 'median over N = 16, 64, 256 of T(graph-E-copy, N) - T(graph-E, N)', used: true });
    expect([m.overheads.graphCopyNodeS, m.overheads.copyLatencyS, m.overheads.graphNodeGapS]).toEqual([2.9e-6, 2.2e-6, 0.45e-6]);
    const line = '  graphCopyNodeS (the step\'s upload as a graph node, with graphs): copyLatencyS + graphNodeGapS = 2.2 (measured) + 0.45 (measured) = 2.65 us -> measured 2.9 us, priced as measured (the sum: 0.25 us less than measured, measured / sum 1.09x)';
    const lines = measuredOverheadLines(m);
    expect(lines).toContain(line);
    expect(lines.indexOf(line)).toBe(lines.findIndex((l) => l.startsWith('  kept as assumed:')) - 1);
    // Only the node measured: the sum it replaces is the assumed 3 + 0.58 us.
    const alone = readMeasuredOverheads(JSON.stringify({ ...sample, measured: {} }), 'a.json');
    expect(graphCopyNodeLine(alone)).toBe('  graphCopyNodeS (the step\'s upload as a graph node, with graphs): copyLatencyS + graphNodeGapS = 3 (assumed) + 0.58 (assumed) = 3.58 us -> measured 2.9 us, priced as measured (the sum: 0.68 us more than measured, measured / sum 0.81x)');
    expect(alone.overheads).toEqual({ ...STEP_OVERHEADS, graphCopyNodeS: 2.9e-6 });

    // The graphs columns move by UPLOADS x (2.9 - (2.2 + 0.45)) us a step, with PDL and without; launch by launch (a stream
    // copy, copyLatencyS) and the host times do not. Against the same file without the node.
    const { graphCopyNodeS: _, ...older } = sample;
    const o = readMeasuredOverheads(JSON.stringify(older), 'old.json');
    expect(o.graphCopyNode).toBeUndefined();
    expect(o.overheads).toEqual({ ...m.overheads, graphCopyNodeS: undefined });
    const byHandMs = UPLOADS * (2.9 - (2.2 + 0.45)) * 1e-3;
    const [node] = predictSteps(QWEN3_0_6B, [1024], H200, REGISTERS, 'sm_90', m.overheads, m.pdlOverheads);
    const [sum] = predictSteps(QWEN3_0_6B, [1024], H200, REGISTERS, 'sm_90', o.overheads, o.pdlOverheads);
    expect(node!.graphs.gpuMs - sum!.graphs.gpuMs).toBeCloseTo(byHandMs, 12);
    expect(node!.pdl.graphs.gpuMs - sum!.pdl.graphs.gpuMs).toBeCloseTo(byHandMs, 12);
    expect([node!.launchByLaunch.gpuMs, node!.pdl.launchByLaunch.gpuMs, node!.graphs.hostMs]).toEqual([sum!.launchByLaunch.gpuMs, sum!.pdl.launchByLaunch.gpuMs, sum!.graphs.hostMs]);

    // No node from: a file from before graph-E-copy, a series that did not run (value null: overheads.mjs's JSON of a NaN), a
    // node the part's own warning doubted (copyNodeWarnings' line among its warnings). Each prices copyLatencyS + graphNodeGapS.
    const unrun = readMeasuredOverheads(JSON.stringify({ ...sample, graphCopyNodeS: { value: null, identifiable: true, from: 'not run' } }), 'unrun.json');
    expect(unrun.graphCopyNode).toBeUndefined();
    expect(unrun.readings).toEqual(readMeasuredOverheads(JSON.stringify(sample), 's.json').readings);
    // The warning as the part writes it: graph-E-copy's slope 0.3 us a node off graph-E's 1.25 us.
    const [doubt] = copyNodeWarnings({ value: 2.9e-6, slopeDiffS: 0.3e-6 } as GraphCopyNode, { 'graph-E': { slopeS: 1.25e-6 } } as unknown as OverheadSeriesSet);
    expect(doubt).toMatch(/graphCopyNodeS \(2\.900 us\) is doubtful$/);
    const doubted = readMeasuredOverheads(JSON.stringify({ ...sample, warnings: ['graph-S: r2 0.9000 below 0.99: its slope is doubtful', doubt] }), 'doubt.json');
    expect(doubted.graphCopyNode).toEqual({ measuredS: 2.9e-6, from: m.graphCopyNode!.from, used: false, doubt });
    const price = 'priced copyLatencyS + graphNodeGapS = 2.2 (measured) + 0.45 (measured) = 2.65 us';
    expect(graphCopyNodeLine(o)).toBe(`  graphCopyNodeS (the step's upload as a graph node, with graphs): none in the file (from before graph-E-copy, or its series did not run): ${price}`);
    expect(graphCopyNodeLine(doubted)).toBe(`  graphCopyNodeS (the step's upload as a graph node, with graphs): measured 2.9 us, NOT used: the overheads part flagged it doubtful (${doubt}); ${price}`);
    for (const x of [unrun, doubted]) {
      expect(x.overheads).toEqual(o.overheads);
      const [p] = predictSteps(QWEN3_0_6B, [1024], H200, REGISTERS, 'sm_90', x.overheads, x.pdlOverheads);
      expect([p!.graphs.gpuMs, p!.pdl.graphs.gpuMs]).toEqual([sum!.graphs.gpuMs, sum!.pdl.graphs.gpuMs]);
    }
    expect(overheadsLine(doubted.overheads, true)).not.toContain('graph upload node');
    // Another series' warning (a fit's, even graph-E-copy's own r2) is not a doubt on the node: the paired differences are its value, not the slope.
    const fit = readMeasuredOverheads(JSON.stringify({ ...sample, warnings: ['graph-E-copy: r2 0.9800 below 0.99 (times 1, 2, 4 ms at N = 16, 64, 256): its slope is doubtful'] }), 'fit.json');
    expect(fit.overheads.graphCopyNodeS).toBe(2.9e-6);
    // A measured node below 0 (noise) is priced as 0, and said.
    const negative = readMeasuredOverheads(JSON.stringify({ ...sample, graphCopyNodeS: { ...(sample.graphCopyNodeS as object), value: -0.1e-6 } }), 'neg.json');
    expect(negative.overheads.graphCopyNodeS).toBe(0);
    expect(graphCopyNodeLine(negative)).toContain('-> measured 0 us (-0.1 us measured, below 0: priced as 0), priced as measured');
  });

  test('a bad file: one line naming the file and what is wrong', () => {
    const err = (t: string): string => { try { readMeasuredOverheads(t, 'bad.json'); } catch (e) { return (e as Error).message; } return 'no error'; };
    expect(err('{"measured": ')).toMatch(/^bad\.json: not JSON \(/);
    expect(err('[1]')).toBe('bad.json: not a JSON object');
    expect(err('{"format": 1}')).toBe('bad.json: neither overheads.mjs\'s JSON (no "measured") nor a device-check.json with an overheads section');
    expect(err('{"format": 1, "parts": [{"name": "overheads", "status": "failed", "why": "RuntimeError: x"}]}')).toBe('bad.json: a device check\'s results without an overheads section (its overheads part: failed, RuntimeError: x)');
    expect(err('{"ok": false, "error": "cuInit: 100"}')).toBe('bad.json: the measurement failed (ok: false: cuInit: 100)');
    expect(err('{"overheads": {"ok": false, "error": "no ops module"}}')).toBe('bad.json: the measurement failed (overheads.ok: false: no ops module)');
    expect(err(withMeasured({ hostLaunchS: { value: '4.2', identifiable: true, from: '' } }))).toBe('bad.json: measured.hostLaunchS.value: "4.2" is neither a number of seconds nor null');
    expect(err(withMeasured({ hostLaunchS: { value: 4.2, identifiable: true, from: 'in us?' } }))).toBe('bad.json: measured.hostLaunchS.value: 4.2 s is not a launch or host overhead (seconds expected)');
    expect(err(withMeasured({ rampS: 0.8e-6 }))).toBe('bad.json: measured.rampS: not an object ({value, identifiable, from})');
    expect(err(JSON.stringify({ ...sample, graphCopyNodeS: { value: '2.9' } }))).toBe('bad.json: graphCopyNodeS.value: "2.9" is not a number of seconds');
    expect(err(JSON.stringify({ overheads: { ...sample, graphCopyNodeS: { value: 2.9 } } }))).toBe('bad.json: overheads.graphCopyNodeS.value: 2.9 s is not a copy node\'s time (seconds expected)');
  });

  test('the command: a malformed file exits 1 with its one line, before anything is priced', async () => {
    const bad = join(root, 'bad.json');
    writeFileSync(bad, '{"measured": {"hostLaunchS": {"value": "x"}}}');
    const r = await exec('npx', ['tsx', 'bench/step.ts', '--overheads', bad]).then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
    expect([r.code, r.stderr]).toEqual([1, `bench:step: ${bad}: measured.hostLaunchS.value: "x" is neither a number of seconds nor null\n`]);
  }, 60_000);
});
