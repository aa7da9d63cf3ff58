/**
 * The device check predicts for the GPU it runs on: the bundle carries every prediction per machine
 * (src/bench/predicted-machines.ts: H200, H100 SXM), and scripts/device-check/machines.py picks the
 * one whose name pattern the GPU's name (torch, or nvidia-smi when the facts part left none) matches,
 * or the H200's labelled "not this GPU". Python needs only its standard library here (the parts.py
 * case needs numpy, as parts.py imports it).
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { H100_SXM, H200 } from '../../src/codegen/machine.js';
import { PREDICTED_MACHINES, machineForGpu, writeMachinesFile } from '../../src/bench/predicted-machines.js';
import { E2E_PREDICTIONS, writeE2ePredictions } from '../../src/bench/e2e-bundle.js';

const exec = promisify(execFile);
const SCRIPTS = resolve('scripts/device-check');
const python = await exec('python3', ['--version']).then(() => true, () => false);
const numpy = python && await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-machines-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A folder with an nvidia-smi that prints `name` for --query-gpu=name (and a compute capability of 9.0). */
function fakeSmi(name: string): string {
  const dir = mkdtempSync(join(root, 'smi-'));
  const smi = join(dir, 'nvidia-smi');
  writeFileSync(smi, `#!/bin/sh\ncase "$*" in *name*) echo '${name}' ;; *compute_cap*) echo 9.0 ;; esac\n`);
  chmodSync(smi, 0o755);
  return dir;
}

async function py(script: string, path: string): Promise<string> {
  const { stdout } = await exec('python3', ['-c', script, SCRIPTS], { env: { ...process.env, PATH: `${path}:${process.env.PATH}` } });
  return stdout.trim().split('\n').pop()!;
}

describe('the machines the check predicts for', () => {
  test('GPU names: the SXM H100 is the H100 record; the H200 (not a GH200) the H200 one; others none (the H200\'s, labelled)', () => {
    const key = (name: string | undefined) => {
      const m = machineForGpu(name);
      return m.matched ? m.predicted.key : `none (${m.predicted.key})`;
    };
    expect(key('NVIDIA H100 80GB HBM3')).toBe('H100');
    expect(key('NVIDIA H100 SXM5 80GB')).toBe('H100');
    expect(key('NVIDIA H200')).toBe('H200');
    expect(key('NVIDIA H200 NVL')).toBe('H200');
    for (const other of ['NVIDIA GH200 480GB', 'NVIDIA H100 PCIe', 'NVIDIA H100 NVL', 'NVIDIA A100-SXM4-80GB', 'tidarc emulated GPU', undefined]) expect(key(other), String(other)).toBe('none (H200)');
  });

  test('the H100 SXM record: the H200\'s SMs, arch, L2, shared memory and latency; less copy bandwidth; the planner keeps the H200', () => {
    for (const k of ['sms', 'arch', 'l2BytesPerS', 'sharedBytesPerS', 'hbmLatencyS', 'launchGapS', 'mmaSyncFlops'] as const) expect(H100_SXM[k], k).toBe(H200[k]);
    expect(H100_SXM.copyBytesPerS).toBeLessThan(H200.copyBytesPerS);
    expect(H100_SXM.matmulFlops / H200.matmulFlops).toBeGreaterThan(0.95);
    expect(PREDICTED_MACHINES[0]!.machine).toBe(H200);
  });
});

describe.skipIf(!python)('machines.py picks the bundle\'s predictions by the GPU\'s name', () => {
  const bundle = join(root, 'bundle');
  mkdirSync(bundle, { recursive: true });

  test('e2e: a fake nvidia-smi naming an H100 SXM gets the H100 step predictions (slower than the H200\'s); an A100 the H200\'s, labelled not this GPU', async () => {
    await writeMachinesFile(bundle);
    const written = await writeE2ePredictions(bundle, true);
    const row = (key: string) => written.byMachine[key]!.models[0]!.rows[0]!;
    expect(row('H200').graphs.gpuMs).toBe(written.models[0]!.rows[0]!.graphs.gpuMs);
    expect(row('H100').graphs.gpuMs).toBeGreaterThan(row('H200').graphs.gpuMs);
    const script = `
import json, sys
sys.path.insert(0, sys.argv[1])
from gpu import gpu_name
from machines import load_machines, predicted_for
from e2e import load_predictions
p = predicted_for(load_machines(${JSON.stringify(bundle)}), gpu_name())
e = load_predictions(${JSON.stringify(bundle)}, p)
print(json.dumps({'p': p, 'machine': e['machine'], 'gpuMs': e['models'][0]['rows'][0]['graphs']['gpuMs'], 'byMachine': 'byMachine' in e}))
`;
    const h100 = JSON.parse(await py(script, fakeSmi('NVIDIA H100 80GB HBM3')));
    expect(h100).toEqual({ p: { machine: 'H100', name: H100_SXM.name, gpu: 'NVIDIA H100 80GB HBM3', thisGpu: true, label: 'H100', copyTBs: 3, matmulTflops: 785 }, machine: H100_SXM.name, gpuMs: row('H100').graphs.gpuMs, byMachine: false });
    const a100 = JSON.parse(await py(script, fakeSmi('NVIDIA A100-SXM4-80GB')));
    expect(a100).toEqual({ p: { machine: 'H200', name: H200.name, gpu: 'NVIDIA A100-SXM4-80GB', thisGpu: false, label: 'H200, not this GPU', copyTBs: 4.3, matmulTflops: 790 }, machine: H200.name, gpuMs: row('H200').graphs.gpuMs, byMachine: false });
    expect(readFileSync(join(bundle, E2E_PREDICTIONS), 'utf8')).toContain('"byMachine"');
  });

  test('predicted_for matches GPU names as machineForGpu does (the check picks in Python, from machines.json\'s patterns)', async () => {
    await writeMachinesFile(bundle);
    const names = ['NVIDIA H100 80GB HBM3', 'NVIDIA H100 SXM5 80GB', 'NVIDIA H200', 'NVIDIA H200 NVL', 'NVIDIA GH200 480GB', 'NVIDIA H100 PCIe', 'NVIDIA H100 NVL', 'NVIDIA A100-SXM4-80GB', 'tidarc emulated GPU'];
    const script = `
import json, sys
sys.path.insert(0, sys.argv[1])
from machines import load_machines, predicted_for
m = load_machines(${JSON.stringify(bundle)})
print(json.dumps([[p['machine'], p['thisGpu']] for p in (predicted_for(m, n) for n in json.loads(${JSON.stringify(JSON.stringify([...names, null]))}))]))
`;
    const ts = [...names, undefined].map((n) => { const r = machineForGpu(n); return [r.predicted.key, r.matched]; });
    expect(JSON.parse(await py(script, root))).toEqual(ts);
    expect(ts.filter(([, matched]) => matched).map(([key]) => key)).toEqual(['H100', 'H100', 'H200', 'H200']);
  });

  test.skipIf(!numpy)('parts.py: a part on a GPU whose facts part left no device reads grid.json\'s and gemm.json\'s predictions for nvidia-smi\'s GPU', async () => {
    await writeMachinesFile(bundle);
    const point = { variant: 'ar', prefix: 4096, batch: 1, splits: 1, predictedUs: 10, predictedBound: 'memory', rooflineUs: 9,
      byMachine: { H200: { predictedUs: 10, predictedBound: 'memory', rooflineUs: 9 }, H100: { predictedUs: 14, predictedBound: 'memory', rooflineUs: 13 } } };
    writeFileSync(join(bundle, 'grid.json'), JSON.stringify({ format: 1, models: [], attentionBench: { points: [point] } }));
    writeFileSync(join(bundle, 'gemm.json'), JSON.stringify({ format: 1, units: [{ kernels: [{ m: 1, predictedUs: 5, predictedBound: 'memory', byMachine: { H200: { predictedUs: 5, predictedBound: 'memory' }, H100: { predictedUs: 7, predictedBound: 'memory' } } }] }] }));
    const script = `
import json, sys, types
sys.path.insert(0, sys.argv[1])
from parts import Ctx
args = types.SimpleNamespace(bundle=${JSON.stringify(bundle)}, out=${JSON.stringify(root)}, scratch=${JSON.stringify(root)}, dry_run=False, until=0, part='gemm')
ctx = Ctx(args, {})
print(json.dumps([ctx.predicted['label'], ctx.grid['attentionBench']['points'][0], ctx.gem['units'][0]['kernels'][0]['predictedUs']]))
`;
    const [label, p, gemmUs] = JSON.parse(await py(script, fakeSmi('NVIDIA H100 80GB HBM3'))) as [string, Record<string, unknown>, number];
    expect([label, gemmUs]).toEqual(['H100', 7]);
    expect(p).toEqual({ variant: 'ar', prefix: 4096, batch: 1, splits: 1, predictedUs: 14, predictedBound: 'memory', rooflineUs: 13, predictedFor: 'H100' });
  });

  test('the report names the machine in the headers of its predicted columns, and says when it is not this GPU', async () => {
    const sample = JSON.parse(readFileSync(resolve('test/bench/fixtures/device-check-sample.json'), 'utf8')) as Record<string, unknown>;
    const data = { ...sample, predictedFor: { machine: 'H200', name: H200.name, gpu: 'NVIDIA A100-SXM4-80GB', thisGpu: false, label: 'H200, not this GPU', copyTBs: 4.3, matmulTflops: 790 } };
    const file = join(root, 'recorded.json');
    writeFileSync(file, JSON.stringify(data));
    const out = join(root, 'report');
    const script = `
import json, sys
sys.path.insert(0, sys.argv[1])
from report import write_reports
print(json.dumps(write_reports(json.load(open(${JSON.stringify(file)})), ${JSON.stringify(out)})))
`;
    mkdirSync(out, { recursive: true });
    const short = JSON.parse(await py(script, '')) as string;
    const md = readFileSync(join(out, 'device-check.md'), 'utf8');
    expect(md).toContain('| tidarc us (p20-p80) | predicted us (H200, not this GPU) | measured / predicted |');
    expect(md).toContain(`Predicted figures (cost models, src/bench via the bundle): for ${H200.name}, which is not this GPU (NVIDIA A100-SXM4-80GB)`);
    expect(md).toContain(`bf16 matmul 800 TFLOP/s (the cost models assume 4.30 TB/s and 790 TFLOP/s for ${H200.name}).`);
    expect(short).toContain(`predicted figures: for ${H200.name} (not this GPU: NVIDIA A100-SXM4-80GB)`);
  });
});
