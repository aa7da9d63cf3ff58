/**
 * The device check's overheads part in its report (scripts/device-check/report_parts.py
 * overheads_lines / overheads_short, report.py, results.py): each StepOverheads / PdlOverheads
 * constant measured by overheads.mjs against the value the bundle's predictions assume, the fitted
 * series, and one line when the part failed or measured nothing; gpu.py's runner when the script
 * fails. The fixture's figures are made up in overheads.mjs's shape, not measured. The part itself
 * runs on the emulated driver in device-check.test.ts's dry run. Needs python3.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { PDL_OVERHEADS, STEP_OVERHEADS } from '../../src/bench/step-cost-model.js';
import { findCxx } from '../../src/build/toolchain.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';

const exec = promisify(execFile);
const DIR = resolve('scripts/device-check');
const python = await exec('python3', ['--version']).then(() => true, () => false);
const cxx = await findCxx();
const sample = JSON.parse(readFileSync(resolve('test/bench/fixtures/overheads-sample.json'), 'utf8')) as Record<string, unknown>;
const root = mkdtempSync(join(tmpdir(), 'tidarc-overheads-report-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
/** What parts.py assumed_overheads records: the bundle's e2e_predictions.json constants (bench:step's). */
const ASSUMED = { overheads: STEP_OVERHEADS, pdlOverheads: PDL_OVERHEADS, machine: 'H200 (sm_90, 132 SMs)', file: 'e2e_predictions.json' };

/** write_reports on `data` (report-only, as device_check.py --report-only): the markdown and the summary it prints. */
async function report(name: string, data: Record<string, unknown>): Promise<{ md: string; short: string }> {
  const out = join(root, name);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'in.json'), JSON.stringify({ format: 1, date: '2026-12-05', device: { name: 'NVIDIA H200' }, ...data }));
  const r = await exec('python3', [join(DIR, 'device_check.py'), '--report-only', join(out, 'in.json'), '--out', out]);
  return { md: readFileSync(join(out, 'device-check.md'), 'utf8'), short: r.stdout };
}

describe.skipIf(!python)('the overheads part in the device check report', () => {
  test('measured vs assumed: a row per constant (ratio, identifiable, from), the fitted series, the summary line', async () => {
    const { md, short } = await report('ok', { parts: [{ name: 'facts', status: 'ok' }, { name: 'overheads', status: 'ok', seconds: 7 }], overheads: { ...sample, assumed: ASSUMED } });
    expect(md).toContain('## Launch and host overheads: measured vs assumed (src/bench/step-cost-model.ts)');
    expect(md).toMatch(/^Measured with overheads\.mjs on NVIDIA H200 \(compute capability 9\.0\); PDL on \(.*cuLaunchKernelEx\); in 6 s\. Kernels: E \(empty\) = .*; S \(small\) = .*\.$/m);
    expect(md).toContain('Assumed: the bundle\'s e2e_predictions.json (H200 (sm_90, 132 SMs))');
    expect(md).toContain('| constant | assumed us | measured us | measured / assumed | identifiable | from |');
    expect(md).toContain('| hostLaunchS | 6 | 4.2 | 0.70x | yes | host.launchS: wall clock per device.launch |');
    expect(md).toContain('| graphNodeGapS | 0.58 | 0.45 | 0.78x | no | s(graph-E) - rampS (assumed 0.8 us) |');
    expect(md).toContain('| smallKernelS | 1.5 | 2.75 | 1.83x | no | s(graph-S) - s(graph-E) + rampS (assumed 0.8 us) |');
    expect(md).toContain('| waitReleaseS | 0.3 | 0.5 | 1.67x | yes | s(graph-E-pdl) |');
    expect(md).toContain('| hostStepS | 20 | not measured | - | no | not measured here (the decoder\'s own host work) |');
    // Every constant of both sets, in the model's order.
    const rows = md.split('\n').filter((l) => /^\| [a-zA-Z]+S \| /.test(l)).map((l) => l.split(' | ')[0]!.slice(2));
    expect(rows).toEqual([...Object.keys(STEP_OVERHEADS), ...Object.keys(PDL_OVERHEADS)]);
    expect(md).toContain('| series | N | GPU ms | slope us | intercept us | r^2 |');
    expect(md).toContain('| graph-E | 16, 64, 256 | 0.0271, 0.0871, 0.3271 | 1.25 | 7.1 | 0.9998 |');
    expect(md).toContain('| stream-E | 16, 64, 256 | 0.0414, 0.1566, 0.6174 | 2.4 | 3 | 0.9999 |');
    expect(md).toContain('| graph-E-copy | 16, 64, 256 | 0.03, 0.09, 0.33 | 1.25 | 10 | 0.9998 |');
    // The step's upload as a graph node, right after copyLatencyS: measured against the model's price copyLatencyS + graphNodeGapS (3 + 0.58 assumed).
    const copy = md.split('\n').findIndex((l) => l.startsWith('| copyLatencyS |'));
    expect(md.split('\n')[copy + 1]).toBe('| graphCopyNodeS (the step\'s upload as a graph node; bench:step --overheads prices it with this) | 3.58 | 2.9 | 0.81x | yes | '
      + 'median over N = 16, 64, 256 of T(graph-E-copy, N) - T(graph-E, N); the model prices it copyLatencyS + graphNodeGapS = 2.65 us with the measured constants, 3.58 us assumed |');
    expect(short).toMatch(/^overheads \(us measured\/assumed; \* not identifiable alone\): hostLaunchS 4\.2\/6, streamGapS 1\.6\/2\*, graphNodeGapS 0\.45\/0\.58\*, .*waitReleaseS 0\.5\/0\.3$/m);
    expect(short).toMatch(/, copyLatencyS 2\.2\/3, graphCopyNodeS 2\.9\/3\.58, hostCopyS /);
  });

  test('without the part\'s copy the e2e part\'s predictions give the assumed values; a GPU without PDL: its series not measured, and why', async () => {
    const noPdl = { ...sample, pdl: { on: false, why: 'device 8.0' }, series: { ...(sample.series as object), 'graph-E-pdl': null, 'graph-S-pdl': null },
      measured: { ...(sample.measured as object), waitReleaseS: { value: null, identifiable: false, from: 'no PDL here: device 8.0' } } };
    const { md } = await report('e2e-assumed', { parts: [{ name: 'overheads', status: 'ok' }], overheads: noPdl, e2e: { predictions: { machine: 'H100 SXM', overheads: STEP_OVERHEADS, pdlOverheads: PDL_OVERHEADS } } });
    expect(md).toContain('Assumed: the e2e part\'s predictions (H100 SXM)');
    expect(md).toContain('| waitReleaseS | 0.3 | not measured | - | no | no PDL here: device 8.0 |');
    expect(md).toContain('| graph-E-pdl | not measured (device 8.0) | | | | |');
  });

  test('a failed, killed or absent part: one line each, never a crashed report', async () => {
    const failed = await report('failed', { parts: [{ name: 'overheads', status: 'failed', why: 'RuntimeError: boom' }] });
    expect(failed.md).toMatch(/## Launch and host overheads: measured vs assumed \(src\/bench\/step-cost-model\.ts\)\n\nNot measured: the overheads part failed \(RuntimeError: boom\)\.\n/);
    expect(failed.short).toMatch(/^overheads: not measured \(the overheads part failed \(RuntimeError: boom\)\)$/m);
    const error = await report('error', { parts: [{ name: 'overheads', status: 'failed' }], overheads: { ok: false, error: 'out of time: the budget of 3 s ended while measuring', seconds: 3 } });
    expect(error.md).toContain('The measurement failed: out of time: the budget of 3 s ended while measuring.');
    expect(error.short).toMatch(/^overheads: FAILED out of time: the budget of 3 s ended while measuring$/m);
    const malformed = await report('malformed', { parts: [{ name: 'overheads', status: 'ok' }], overheads: { ok: true, measured: { hostLaunchS: { value: 'x' } }, series: { 'graph-E': { n: 'x' } } } });
    expect(malformed.md).toContain('| hostLaunchS | - | not measured | - | no |  |');
    // An overheads.mjs older than graph-E-copy: no copy node row.
    expect(malformed.md).not.toContain('graphCopyNodeS');
    // A check without the part in its plan (an older record): no section at all.
    const older = await report('older', { parts: [{ name: 'facts', status: 'ok' }] });
    expect(older.md).not.toContain('Launch and host overheads');
    expect(older.short).not.toMatch(/^overheads/m);
  });

  test('results.py puts the table in the README committed under bench/results/', async () => {
    const out = join(root, 'results-out');
    mkdirSync(out);
    writeFileSync(join(out, 'device-check.json'), JSON.stringify({ format: 1, date: '2026-12-05', device: { name: 'NVIDIA H200' }, parts: [{ name: 'overheads', status: 'ok' }], overheads: { ...sample, assumed: ASSUMED } }));
    const r = await exec('python3', [join(DIR, 'results.py'), out, '--into', join(root, 'results')]);
    const readme = readFileSync(join(r.stdout.trim(), 'README.md'), 'utf8');
    expect(readme).toMatch(/## Launch and host overheads: measured vs assumed\n\nMeasured with overheads\.mjs on NVIDIA H200/);
    expect(readme).toContain('| graphStartS | 8.6 | 7.1 | 0.83x | yes | a(graph-E) |');
  });

  test('gpu.py overheads_check: a script that fails or prints no JSON is {ok: false, error}, not an exception', async () => {
    const script = `
import json, sys, tempfile
sys.path.insert(0, sys.argv[1])
from gpu import overheads_check
d = tempfile.mkdtemp()
print(json.dumps([overheads_check('false', d, d), overheads_check('echo', d, d, budget=5)]))
`;
    const { stdout } = await exec('python3', ['-c', script, DIR]);
    expect(JSON.parse(stdout)).toEqual([{ ok: false, error: 'exit code 1' }, { ok: false, error: 'no JSON line on its output' }]);
  });

  test('parts.py part_overheads: of a 12.6 s window (3% of the GPU budget) overheads.mjs gets all but a few seconds, not 2.6 s', async () => {
    // overheads.mjs ends itself at its budget; the part's share is small, so the reserve must be too (it waits for the background compile first).
    const script = `
import json, sys, tempfile, types
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import parts
seen = {}
parts.overheads_check = lambda node, root, work, env=None, timeout=None, budget=None: seen.update(timeout=timeout, budget=budget) or {'ok': False, 'error': 'stub'}
d = Path(tempfile.mkdtemp())
ctx = types.SimpleNamespace(runtime=lambda: ('node', 'root'), scratch=d, bundle=d, dry=False, predicted=None, left=lambda: 0.03 * 420)
r = parts.part_overheads(ctx)
print(json.dumps({**seen, 'section': r}))
`;
    const { stdout } = await exec('python3', ['-c', script, DIR]);
    const seen = JSON.parse(stdout.trim().split('\n').pop()!) as { timeout: number; budget: number; section: unknown };
    expect(seen.timeout).toBeCloseTo(12.6, 9);
    expect(seen.budget).toBeGreaterThanOrEqual(9);  // was 12.6 - 10
    expect(seen.timeout - seen.budget).toBeGreaterThanOrEqual(1);  // its own end (the budget's timer) comes before the kill
    expect(seen.section).toEqual({ overheads: { ok: false, error: 'stub' } });
  });
});

describe.skipIf(!cxx.found)('overheads.mjs and the background compile', () => {
  test('on a GPU run precompile.mjs compiles the entry overheads.mjs takes its operators from (the runtime model at k = 1, 2, 4, 8): it adds none', async () => {
    // The emulator target: the same keys as sm_90's (codegen only; the operators' .emu.so builds beside the entries).
    const cache = join(root, 'precompiled');
    const configs = join(root, 'no-e2e-configs.json');
    writeFileSync(configs, '[]');
    const pre = await exec(process.execPath, [join(DIR, 'precompile.mjs'), resolve('.'), cache, 'emulator', configs, '1,2,4,8']);
    const entry = (JSON.parse(pre.stdout.trim()) as { entry: string; error?: string });
    expect(entry.error).toBeUndefined();
    const before = readdirSync(join(cache, 'kernels')).sort();
    expect(before).toContain(entry.entry.split('/').pop());
    const env = { ...process.env, TIDARC_CACHE: cache, TIDARC_LIBCUDA: await sharedEmulatedDriver() };
    const r = await exec(process.execPath, [join(DIR, 'overheads.mjs'), resolve('.'), join(root, 'overheads-work'), '120'], { env, maxBuffer: 16 << 20 });
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ok: boolean; emulated: boolean; error?: string };
    expect([out.ok, out.emulated, out.error]).toEqual([true, true, undefined]);
    expect(readdirSync(join(cache, 'kernels')).sort()).toEqual(before);
  }, 120_000);
});
