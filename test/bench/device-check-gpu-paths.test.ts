/**
 * The device check's code that only a GPU run reaches, run here on what the CPU can run: the
 * 16-bit rounding every part's inputs go through (numpy: CI too), and the FlexAttention / SDPA
 * baselines of the attention benchmarks (scripts/device-check/flex.py) on torch's CPU build
 * against the float64 reference our kernels are judged by, over the IR's masks (skipped without
 * torch, and in CI, which installs none, like device-check-e2e's torch tests).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { kernelCacheEntry } from '../../src/build/kernel-cache.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { initModel } from '../../src/model/init-model.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';
import { blockDiffusion, causal, tidarDecode, tidarTrain, tree } from '../../src/ir/mask-builders.js';
import { type MaskSpec, stepVisibility } from '../../src/ir/mask.js';

const exec = promisify(execFile);
const DIR = resolve('scripts/device-check');
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-device-paths-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const numpy = await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const torch = numpy && (!process.env['CI'] || process.env['TIDARC_E2E_TORCH'] === '1')
  && await exec('python3', ['-c', 'import torch']).then(() => true, () => false);

async function py(script: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec('python3', ['-c', script, ...args], { cwd: DIR, maxBuffer: 16 << 20, env: { ...process.env, PATH: `${join(root, 'fake-bin')}:${process.env['PATH'] ?? ''}` } });
  return stdout.trim().split('\n').pop()!;
}

/** A mask as grid.json describes a variant's (src/bench/device-bundle.ts describe). */
function gridMask(name: string, m: MaskSpec): { name: string; prefixVisible: boolean; visible: string[] } {
  const n = m.tokens.length;
  const vis = stepVisibility(m);
  return { name, prefixVisible: m.prefix === 'all', visible: Array.from({ length: n }, (_, q) => Array.from(vis.subarray(q * n, (q + 1) * n)).join('')) };
}

describe.skipIf(!numpy)('kernels.to_bits (numpy)', () => {
  test('bf16 rounding in uint32 gives the bits of the uint64 formula it replaced, for every class of float32 (NaNs that wrap included), and fp16 is numpy\'s', async () => {
    const script = `
import json
import numpy as np
from kernels import to_bits
def old(x):
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
# Every 4099th bit pattern (all signs, exponents, NaN payloads), the ties and the patterns whose sum wraps past 2^32.
edge = np.array([0, 0x8000, 0x18000, 0x17FFF, 0x7F7F8000, 0x7F7FFFFF, 0x7F800000, 0x7FC00000, 0x7FFF8000, 0x7FFFFFFF,
                 0x80000000, 0xFF7FFFFF, 0xFFFF7FFF, 0xFFFF8000, 0xFFFFFFFF], np.uint32)
bits = np.concatenate([np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32), edge])
x = bits.view(np.float32)
strided = x.reshape(-1, 1)[::3, 0]  # not contiguous
same = [bool(np.array_equal(to_bits(a, 'bf16'), old(a))) for a in (x, strided, [1.00390625, -2.5, 3.0e38])]
fp16 = bool(np.array_equal(to_bits(x[np.isfinite(x)], 'fp16'), x[np.isfinite(x)].astype(np.float16).view(np.uint16)))
print(json.dumps({'same': same, 'fp16': fp16, 'wrapped': int(to_bits(np.array([0xFFFFFFFF], np.uint32).view(np.float32), 'bf16')[0]), 'count': int(x.size)}))
`;
    const r = JSON.parse(await py(script)) as { same: boolean[]; fp16: boolean; wrapped: number; count: number };
    expect(r.same).toEqual([true, true, true]);
    expect(r.fp16).toBe(true);
    expect(r.wrapped).toBe(0);  // 0xFFFFFFFF + 0x8000 wraps; bits 16..31 of the true sum are 0x0000 too
    expect(r.count).toBeGreaterThan(1_000_000);
  });
});

describe.skipIf(!numpy)('the sm90a part\'s attention in device-check.md and the summary (report.py, report_parts.py)', () => {
  test('its checks and a GPU run\'s race rows (attention_sm90a.py race: a Flex that ran, one that failed) are tabled, a failed check named', async () => {
    const timing = (us: number, splits: number, tflops: number) => ({ medianUs: us, p20Us: us - 1, p80Us: us + 1, reps: 50, hostUs: 31, leadCycles: 200000, splits, tflops });
    const attention = {
      correctness: [
        { case: 'tidar_k16', kernel: 'sm90a', symbol: 'a', prefix: [4100, 3987], splits: 1, maxError: 3.1e-3, lseMaxError: 2e-7, ok: true },
        { case: 'tidar_k16', kernel: 'sm90', symbol: 'b', prefix: [4100, 3987], splits: 3, maxError: null, lseMaxError: 1e-3, ok: false },
      ],
      bench: [
        { case: 'tidar_k16', prefix: 4096, batch: 1, usefulGflop: 2.5, sm90a: timing(40, 4, 62.5), sm90: timing(55, 8, 45.5), sm90aVsSm90MaxDiff: 0.0078125,
          flex: { medianUs: 80, p20Us: 79, p80Us: 81, reps: 50, tflops: 31.3 }, sm90aVsFlex: 2, sm90aVsSm90: 1.375 },
        { case: 'prefill_c64', prefix: 16384, batch: 8, usefulGflop: 9, sm90a: timing(300, 1, 30), sm90: timing(270, 2, 33.3), sm90aVsSm90MaxDiff: 0,
          flexError: 'BackendCompilerFailed: no', sm90aVsSm90: 0.9 },
      ],
      skipped: ['prefill_c64 L=16384 B=1'], ok: false,
    };
    const data = { format: 1, date: '2026-12-05', dryRun: false, device: { name: 'NVIDIA H200' }, parts: [], correctness: [], bench: [],
      sm90a: { units: [], ok: false, attention } };
    const script = `
import json, sys, tempfile
from report import write_reports
out = tempfile.mkdtemp()
short = write_reports(json.loads(sys.argv[1]), out)
print(json.dumps({'md': open(out + '/device-check.md').read(), 'short': short}))
`;
    const r = JSON.parse(await py(script, JSON.stringify(data))) as { md: string; short: string };
    const md = r.md.slice(r.md.indexOf('## sm_90a attention'));
    expect(md).toContain('Correctness: 1 of 2 launches');
    expect(md).toContain('| tidar_k16 | sm_90a | 4100, 3987 | 1 | 3.10e-03 | 2.00e-07 | ok |');
    expect(md).toContain('| tidar_k16 | mma.sync | 4100, 3987 | 3 | not finite | 1.00e-03 | FAIL |');
    expect(md).toContain('| tidar_k16 | 4096 | 1 | 40.0 (39.0-41.0) | 4 | 62.5 | 55.0 | 8 | 80.0 | 1.38x | 2.00x | 7.81e-03 |');
    expect(md).toContain('| prefill_c64 | 16384 | 8 | 300.0 (299.0-301.0) | 1 | 30.0 | 270.0 | 2 | error: BackendCompilerFailed: no | 0.90x | - | 0.00e+00 |');
    expect(md).toContain('Skipped for the time budget: prefill_c64 L=16384 B=1.');
    expect(r.short).toContain('sm_90a attention: 1/2 checks ok (float64, sm_90a and mma.sync); FAILED: tidar_k16 sm90 splits 3');
    expect(r.short).toMatch(/sm_90a attention +tidar_k16 L=4096 +B=1: sm_90a +40\.0 us +mma\.sync +55\.0 +flex +80\.0/);
  });
});

describe.skipIf(!numpy)('gpu.time_events (the benchmarks\' CUDA-event timing) on a simulated GPU', () => {
  // A stream in simulation: the host's clock advances by what each call costs it to queue, the GPU runs what was
  // queued in order, each item no earlier than it was queued; an event's time is when the GPU reaches it.
  test('a kernel shorter than its launch is timed as the kernel, not the launch: each call waits behind a spin longer than the host takes to queue it (a compiled Flex\'s 400 us too)', async () => {
    const script = `
import json
import gpu

class Sim:
    def __init__(self, host_us, kernel_us, sleep=True):
        self.host, self.gpu, self.host_s, self.kernel_s = 0.0, 0.0, host_us * 1e-6, kernel_us * 1e-6
        self.spins = []
        sim = self
        class Event:
            def __init__(self, enable_timing=False):
                self.t = None
            def record(self):
                sim.gpu = max(sim.gpu, sim.host)
                self.t = sim.gpu
            def elapsed_time(self, end):
                return (end.t - self.t) * 1e3
        def synchronize():
            sim.host = max(sim.host, sim.gpu)
        def spin(cycles):
            sim.spins.append(cycles)
            sim.gpu = max(sim.gpu, sim.host) + cycles / 1.98e9  # the H200's SM clock
        cuda = type('cuda', (), {})()
        cuda.Event, cuda.synchronize = Event, synchronize
        if sleep:
            cuda._sleep = spin
        self.torch = type('torch', (), {'cuda': cuda})()
        gpu.time.perf_counter = lambda: sim.host
    def call(self, i):
        self.host += self.host_s                          # ctypes packing and the launch
        self.gpu = max(self.gpu, self.host) + self.kernel_s

out = {}
for name, host_us, kernel_us, sleep in (('ctypes', 30, 5, True), ('flex', 400, 20, True), ('gpuBound', 2, 1500, True), ('noSleep', 30, 5, False)):
    s = Sim(host_us, kernel_us, sleep)
    t = gpu.time_events(s.torch, s.call, 20, 3)
    out[name] = {**t, 'spins': sorted(set(s.spins))}
print(json.dumps(out))
`;
    type Timing = { medianUs: number; p20Us: number; p80Us: number; hostUs: number; leadCycles?: number; spins: number[] };
    const r = JSON.parse(await py(script)) as Record<'ctypes' | 'flex' | 'gpuBound' | 'noSleep', Timing>;
    // The kernel's 5 us, not the launch's 30 (what the events gave before the spin); the spin is tune.py's 200k cycles.
    expect(r.ctypes.medianUs).toBeCloseTo(5, 6);
    expect(r.ctypes.p80Us).toBeCloseTo(5, 6);
    expect(r.ctypes.hostUs).toBeCloseTo(30, 6);
    expect([r.ctypes.leadCycles, r.ctypes.spins]).toEqual([200_000, [200_000]]);
    // A call the host takes 400 us to queue: the spin grows to twice that at 2 GHz, and the kernel's 20 us is what is timed.
    expect(r.flex.medianUs).toBeCloseTo(20, 6);
    expect(r.flex.leadCycles).toBeGreaterThanOrEqual(1_600_000);
    expect(r.flex.leadCycles).toBeLessThanOrEqual(1_600_001);  // ceil of 2 x 400e-6 x 2e9 in floating point
    // A GPU-bound call (the ceilings' matmul) is timed as itself with the least spin.
    expect(r.gpuBound.medianUs).toBeCloseTo(1500, 6);
    expect(r.gpuBound.leadCycles).toBe(200_000);
    // A torch without _sleep: no spin, and the launch-bound time it then measures.
    expect(r.noSleep.leadCycles).toBeUndefined();
    expect(r.noSleep.medianUs).toBeCloseTo(30, 6);
  });
});

describe.skipIf(!numpy)('which SDPA backend runs, and the fastest timed (kernels.sdpa_runs, attention.time_sdpa) on a simulated torch', () => {
  // A torch in simulation: sdpa_kernel limits the backends; the call takes the first allowed one (flash, memory-efficient,
  // cuDNN, math, torch's order) that accepts the inputs, warning why each other refused, and queues its time on a simulated
  // GPU (gpu.time_events' clocks). CUDA's rules: flash refuses a mask, memory-efficient refuses head groups (enable_gqa).
  test('with a boolean mask and head groups, CUDA\'s SDPA runs math: that is timed and named; a faster fused backend that accepts is timed instead, even behind a slower one; none: said', async () => {
    const script = `
import contextlib, enum, json, sys, types, warnings
sys.modules['torch'] = torch = types.ModuleType('torch')
sys.modules['torch.nn'] = torch.nn = types.ModuleType('torch.nn')
sys.modules['torch.nn.attention'] = torch.nn.attention = types.ModuleType('torch.nn.attention')
import gpu
from attention import time_sdpa
from kernels import sdpa_runs

class SDPBackend(enum.Enum):
    ERROR, MATH, FLASH_ATTENTION, EFFICIENT_ATTENTION, CUDNN_ATTENTION, OVERRIDEABLE = -1, 0, 1, 2, 3, 4
ORDER = ('FLASH_ATTENTION', 'EFFICIENT_ATTENTION', 'CUDNN_ATTENTION', 'MATH')
state = {'allowed': set(SDPBackend), 'host': 0.0, 'gpu': 0.0, 'ran': []}
@contextlib.contextmanager
def sdpa_kernel(backends):
    old, state['allowed'] = state['allowed'], set(backends)
    try:
        yield
    finally:
        state['allowed'] = old
torch.nn.attention.SDPBackend, torch.nn.attention.sdpa_kernel = SDPBackend, sdpa_kernel
class Event:
    def __init__(self, enable_timing=False): self.t = None
    def record(self): state['gpu'] = max(state['gpu'], state['host']); self.t = state['gpu']
    def elapsed_time(self, end): return (end.t - self.t) * 1e3
def synchronize(): state['host'] = max(state['host'], state['gpu'])
def spin(cycles): state['gpu'] = max(state['gpu'], state['host']) + cycles / 2e9
torch.cuda = types.SimpleNamespace(Event=Event, synchronize=synchronize, _sleep=spin, is_available=lambda: True)
gpu.time.perf_counter = lambda: state['host']

def sdpa(us, gqa=True):
    """The SDPA call of a point with a boolean mask: us[backend] = its kernel's time, None where it refuses the inputs."""
    def call(i):
        for name in ORDER:
            refuses = us.get(name) is None or (name == 'FLASH_ATTENTION') or (name == 'EFFICIENT_ATTENTION' and gqa)
            if getattr(SDPBackend, name) not in state['allowed']:
                continue
            if refuses:
                warnings.warn(f'{name} not used')
                continue
            state['ran'].append(name)
            state['host'] += 10e-6
            state['gpu'] = max(state['gpu'], state['host']) + us[name] * 1e-6
            return name
        raise RuntimeError('No available kernel. Aborting execution.')
    return call

out = {}
cases = {'cuda': (dict(FLASH_ATTENTION=20, EFFICIENT_ATTENTION=50, MATH=400), True),
         'cudnn': (dict(EFFICIENT_ATTENTION=50, CUDNN_ATTENTION=30, MATH=400), True),
         'fastestNotFirst': (dict(EFFICIENT_ATTENTION=50, CUDNN_ATTENTION=30, MATH=400), False),
         'none': ({}, True)}
for case, (us, gqa) in cases.items():
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter('always')
        runs = [name for name, _ in sdpa_runs(torch, lambda: sdpa(us, gqa)(0))]
        state['ran'] = []
        t = time_sdpa(torch, sdpa(us, gqa), 20)
    out[case] = {'runs': runs, 'backend': t.get('sdpa', {}).get('backend'), 'us': t.get('sdpa', {}).get('medianUs'), 'all': t.get('sdpaBackends'),
                 'failed': t.get('sdpaFailed'), 'ran': sorted(set(state['ran'])), 'leaked': len(leaked)}
state['ran'] = []
sdpa(cases['cuda'][0])(0)
out['unforced'] = state['ran']
print(json.dumps(out))
`;
    type Case = { runs: string[]; backend: string | null; us: number | null; all: Record<string, number> | null; failed: string | null; ran: string[]; leaked: number };
    const r = JSON.parse(await py(script)) as Record<'cuda' | 'cudnn' | 'fastestNotFirst' | 'none', Case> & { unforced: string[] };
    // What the benchmark timed before, unforced: math (its label was plain 'SDPA').
    expect(r.unforced).toEqual(['MATH']);
    expect(r.cuda).toMatchObject({ runs: ['MATH'], backend: 'MATH', failed: null, ran: ['MATH'], leaked: 0 });
    expect(r.cuda.us).toBeCloseTo(400, 6);
    // cuDNN takes the mask and the head groups: both that run are timed, the faster is the row's.
    expect(r.cudnn).toMatchObject({ runs: ['CUDNN_ATTENTION', 'MATH'], backend: 'CUDNN_ATTENTION', ran: ['CUDNN_ATTENTION', 'MATH'], leaked: 0 });
    expect(r.cudnn.us).toBeCloseTo(30, 6);
    expect(Object.keys(r.cudnn.all!)).toEqual(['CUDNN_ATTENTION', 'MATH']);
    expect(r.cudnn.all!['MATH']).toBeCloseTo(400, 6);
    // Without head groups memory-efficient runs first, but cuDNN is faster: the fastest, not the first, is the row's.
    expect(r.fastestNotFirst).toMatchObject({ runs: ['EFFICIENT_ATTENTION', 'CUDNN_ATTENTION', 'MATH'], backend: 'CUDNN_ATTENTION' });
    expect(r.none).toMatchObject({ runs: [], backend: null, failed: 'no SDPA backend runs it', leaked: 0 });
  });

  test('device-check.md and the summary name the backend of each SDPA time, and say when none ran', async () => {
    const timing = (us: number) => ({ medianUs: us, p20Us: us - 1, p80Us: us + 1, reps: 100 });
    const row = (prefix: number, extra: object) => ({ variant: 'tidar_k16', n: 16, prefix, batch: 1, splits: 4, tidarc: timing(100), predictedUs: 80, predictedBound: 'copy',
      tidarcTBs: 3, tidarcTflops: 50, copyShare: 0.75, computeShare: 0.06, flex: timing(140), ...extra });
    const data = { format: 1, date: '2026-12-05', dryRun: false, device: { name: 'NVIDIA H100' }, parts: [], bench: [
      row(4096, { sdpa: { ...timing(400), backend: 'MATH' }, sdpaBackends: { MATH: 400 } }), row(16384, { sdpaFailed: 'no SDPA backend runs it' })],
    correctness: [{ model: 'qwen3_8b', variant: 'tidar_k16', batch: 1, splits: 1, maxError: 1e-3, tolerance: 5e-3, lseMaxError: 1e-6,
      rule: '2 x SDPA bf16 error (2.00e-03, MATH) + 0.001', sdpaError: 2e-3, sdpaBackend: 'MATH', ok: true }] };
    const script = `
import json, sys, tempfile
from report import write_reports
out = tempfile.mkdtemp()
short = write_reports(json.loads(sys.argv[1]), out)
print(json.dumps({'md': open(out + '/device-check.md').read(), 'short': short}))
`;
    const r = JSON.parse(await py(script, JSON.stringify(data))) as { md: string; short: string };
    expect(r.md).toContain('| 140.0 | 400.0 (MATH) | 1.40x | 4.00x |');
    expect(r.md).toContain('| 140.0 | error: no SDPA backend runs it | 1.40x | -x |');
    expect(r.md).toContain('| 2 x SDPA bf16 error (2.00e-03, MATH) + 0.001 | ok |');
    expect(r.md).toContain('at the fastest of its backends (flash, memory-efficient, cuDNN, math');
    expect(r.short).toMatch(/tidar_k16 L=4096 +B=1: .* sdpa +400\.0 \(MATH\)/);
  });
});

describe.skipIf(!torch)('FlexAttention and SDPA baselines (flex.py; torch\'s CPU build; skipped in CI)', () => {

  test('the attention correctness check\'s GPU judge (kernels.torch_judge: 16-bit inputs uploaded once, reference and SDPA there) on torch\'s CPU: numpy\'s float64 reference, SDPA\'s bf16 error beside it', async () => {
    const mask = gridMask('tidar_k2', tidarDecode(2));
    const script = `
import json, sys
import numpy as np, torch
from kernels import from_bits, reference, to_bits, torch_judge
v = {**json.loads(sys.argv[1]), 'steps': 6}
model = {'dtype': 'bf16', 'qHeads': 4, 'kvHeads': 2, 'headDim': 16}
rng = np.random.default_rng(5)
prefix = [37, 0]
shapes = {'q': (2, 6, 4, 16), 'kc': (2, 2, 37, 16), 'vc': (2, 2, 37, 16), 'ks': (2, 6, 2, 16), 'vs': (2, 6, 2, 16)}
bits = {k: to_bits(rng.standard_normal(s, dtype=np.float32), 'bf16') for k, s in shapes.items()}
ref_o, ref_lse = reference(model, v, *(from_bits(bits[k], 'bf16') for k in ('q', 'kc', 'vc', 'ks', 'vs')), prefix)
o, lse, sdpa, backend = torch_judge(torch, 'cpu')(model, v, bits, prefix)
print(json.dumps({'o': float(np.abs(o - ref_o).max()), 'lse': float(np.abs(lse - ref_lse).max()), 'sdpa': sdpa, 'backend': backend}))
`;
    const r = JSON.parse(await py(script, JSON.stringify(mask))) as { o: number; lse: number; sdpa: number; backend: string };
    expect(r.backend).toBe('FLASH_ATTENTION');  // the CPU's flash kernel takes a boolean mask and head groups (CUDA's does not)
    expect(r.o).toBeLessThan(1e-12);
    expect(r.lse).toBeLessThan(1e-12);
    expect(r.sdpa).toBeGreaterThan(1e-4);  // bf16 outputs: SDPA's own rounding, the FA3 tolerance's base
    expect(r.sdpa).toBeLessThan(3e-2);
  }, 60_000);
  test('the BlockMask and the dense mask of grid.json\'s masks (a cache seen or not) give the float64 reference; 12 shapes compile 12 times, none falls back to unfused Flex', async () => {
    const masks = [gridMask('tidar_k2', tidarDecode(2)), gridMask('tidar_k4', tidarDecode(4)), gridMask('ar', causal(1)), gridMask('block_k4', blockDiffusion(4)),
      gridMask('train', tidarTrain(6, 3)), gridMask('tree', tree([-1, 0, 0, 1, -1]))];
    expect(masks.map((m) => m.prefixVisible)).toEqual([true, true, true, true, false, true]);
    // backend 'eager': dynamo's guards and recompile limit as under inductor, without inductor's minutes of C++ compiles.
    // Automatic dynamic shapes off: each shape is its own compile, as when the benchmark's points recompile (a new
    // mask function, batch or block count); past the default limit (8) the 9th would run unfused, timed as Flex.
    const script = `
import json, sys
import numpy as np, torch
from torch._dynamo.utils import counters
from flex import block_mask, compiled_flex, dense_mask
from kernels import reference
torch._dynamo.config.automatic_dynamic_shapes = False
flex = compiled_flex(torch, backend='eager')
Hq, Hkv, D = 4, 2, 16
rng = np.random.default_rng(3)
rows = []
for m in json.loads(sys.argv[1]):
    for L in (37, 130):
        n = len(m['visible'])
        q, ks, vs = (rng.standard_normal((1, n, h, D)) for h in (Hq, Hkv, Hkv))
        kc, vc = rng.standard_normal((1, Hkv, L, D)), rng.standard_normal((1, Hkv, L, D))
        ref, _ = reference({'kvHeads': Hkv}, m, q, kc, vc, ks, vs, [L])
        t = lambda a: torch.from_numpy(a).float()
        Q, K, V = t(q).transpose(1, 2), torch.cat([t(kc), t(ks).transpose(1, 2)], 2), torch.cat([t(vc), t(vs).transpose(1, 2)], 2)
        o = flex(Q, K, V, block_mask=block_mask(torch, m['visible'], m['prefixVisible'], L, 'cpu'), enable_gqa=True)
        s = torch.nn.functional.scaled_dot_product_attention(Q, K, V, attn_mask=dense_mask(torch, m['visible'], m['prefixVisible'], L, 'cpu'), enable_gqa=True)
        err = lambda x: float(np.abs(x.transpose(1, 2).double().numpy() - ref).max())
        rows.append({'mask': m['name'], 'prefix': L, 'flex': err(o), 'sdpa': err(s)})
print(json.dumps({'rows': rows, 'compiles': counters['frames']['ok'], 'limit': torch._dynamo.config.recompile_limit}))
`;
    const r = JSON.parse(await py(script, JSON.stringify(masks))) as { rows: { mask: string; prefix: number; flex: number; sdpa: number }[]; compiles: number; limit: number };
    expect(r.rows).toHaveLength(12);
    for (const row of r.rows) {
      expect(row.flex, `${row.mask} L=${row.prefix}`).toBeLessThan(1e-5);
      expect(row.sdpa, `${row.mask} L=${row.prefix}`).toBeLessThan(1e-5);
    }
    expect(r.compiles).toBe(12);  // frames dynamo compiled: a call past the limit runs unfused and is not one
    expect(r.limit).toBeGreaterThanOrEqual(32);  // the attention part's 32 points
  }, 120_000);
});

describe.skipIf(!numpy)('a part that fails, a part that runs long (device_check.py)', () => {
  test('run_child calls tick while the part runs (--out is refreshed from what it saved) and not after it ends', async () => {
    const script = `
import sys, time
sys.path.insert(0, sys.argv[1])
import device_check
ticks = []
code, tail = device_check.run_child(['bash', '-c', 'echo started; sleep 1.2'], time.time() + 30, lambda line: None, tick=lambda: ticks.append(time.time()), tick_every=0.25)
print(code, tail, 3 <= len(ticks) <= 6)
`;
    expect(await py(script, DIR)).toBe("0 ['started'] True");
  });

  test('sm90a keeps to its own share like attention (both benchmarks fill any window), so what gemm leaves goes on to runtime and e2e', async () => {
    const script = `
import sys
sys.path.insert(0, sys.argv[1])
from device_check import PARTS, window_end
shares = dict(PARTS)
cum = lambda name: sum(s for p, s in PARTS[:[p for p, _ in PARTS].index(name) + 1])
# 420 s budget; gemm ended at 30 s, 58 s before its window: sm90a gets its own share, not the 58 s.
print(round(window_end('sm90a', 0, 420, cum('sm90a'), shares['sm90a'], 30), 1), round(window_end('runtime', 0, 420, cum('runtime'), shares['runtime'], 200), 1))
`;
    // runtime's window ends at its cumulative share: facts 0.06 + gemm 0.15 + sm90a 0.14 + attention 0.20 + runtime 0.09.
    expect(await py(script, DIR)).toBe(`${(30 + 420 * 0.14).toFixed(1)} ${(420 * 0.64).toFixed(1)}`);
  });

  test('a part whose facts part left no ceilings measures them itself (once) instead of failing on the missing key', async () => {
    const script = `
import sys, tempfile, types
sys.path.insert(0, sys.argv[1])
import parts
calls = []
parts.ceilings = lambda torch: calls.append(torch) or {'copyTBs': 4.0, 'matmulTflops': 800.0}
d = tempfile.mkdtemp()
args = types.SimpleNamespace(bundle=d, out=d, scratch=d, dry_run=False, until=0, part='gemm')
ctx = parts.Ctx(args, {})
first, again = ctx.ceilings('torch'), ctx.ceilings('torch')
kept = parts.Ctx(args, {'ceilings': {'copyTBs': 1.0, 'matmulTflops': 2.0}}).ceilings('torch')
print(first == again == {'copyTBs': 4.0, 'matmulTflops': 800.0}, len(calls), kept['copyTBs'])
`;
    expect(await py(script, DIR)).toBe('True 1 1.0');
  });

  test('the compiler a GPU run records (tune meta): the device\'s nvcc, or where it has none the prebuilt fatbins\' (no FileNotFoundError)', async () => {
    const script = `
import json, sys, tempfile, types
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import parts
d = tempfile.mkdtemp()
ctx = parts.Ctx(types.SimpleNamespace(bundle=d, out=d, scratch=d, dry_run=False, until=0, part='tune'), {})
def missing():
    raise FileNotFoundError('nvcc')
parts.nvcc_version = missing
bare = ctx.nvcc()
(Path(d) / 'prebuilt.json').write_text(json.dumps({'arch': '90', 'nvcc': 'release 13.0, V13.0.88'}))
prebuilt = ctx.nvcc()
parts.nvcc_version = lambda: 'release 12.8'
print(json.dumps([bare, prebuilt, ctx.nvcc()]))
`;
    const [bare, prebuilt, present] = JSON.parse(await py(script, DIR)) as string[];
    expect(bare).toMatch(/^absent \(FileNotFoundError/);
    expect(prebuilt).toMatch(/^release 13\.0, V13\.0\.88 \(prebuilt; no nvcc on the device: absent/);
    expect(present).toBe('release 12.8');
  });

  test('precompile.mjs fills the very cache entries the runtime and e2e parts\' models load (the spec as loadCheckpoint reads it back, the target)', async () => {
    // The emulator target: the same keys and lock as sm_90's, with codegen only (its modules build when the emulated driver loads them).
    const cache = join(root, 'precompiled');
    const configs = join(root, 'precompile-configs.json');
    writeFileSync(configs, await py('import json\nfrom e2e_cost import dry_models\nfrom e2e_hf import hf_config\nprint(json.dumps([hf_config(s) for s, _ in dry_models()]))'));
    const { stdout } = await exec(process.execPath, [join(DIR, 'precompile.mjs'), resolve('.'), cache, 'emulator', configs, '2'], { maxBuffer: 16 << 20 });
    const entries = stdout.trim().split('\n').map((l) => JSON.parse(l) as { model: string; entry: string; error?: string });
    expect(entries.map((e) => [e.model, e.error])).toEqual([['gpu-runtime-check', undefined], ['e2e-tiny', undefined]]);
    // What the parts load: runtime_check.mjs's checkpoint (initModel of its spec) and e2e.py's (config.json from hf_config).
    const { runtimeCheckSpec } = await import(join(DIR, 'runtime_spec.mjs')) as { runtimeCheckSpec: (drafts: number[]) => Parameters<typeof initModel>[0]['spec'] };
    const runtimeDir = join(root, 'runtime-model');
    await initModel({ spec: runtimeCheckSpec([2]), outDir: runtimeDir, seed: 5, std: 0.3 });
    const e2eDir = join(root, 'e2e-model');
    await initModel({ spec: (JSON.parse(await py('import json\nfrom e2e_cost import dry_models\nprint(json.dumps(dry_models()[0][0]))')) as Parameters<typeof initModel>[0]['spec']), outDir: e2eDir, seed: 5, std: 0.3 });
    writeFileSync(join(e2eDir, 'config.json'), JSON.stringify((JSON.parse(readFileSync(configs, 'utf8')) as unknown[])[0]));
    for (const [dir, i] of [[runtimeDir, 0], [e2eDir, 1]] as const) {
      const { spec } = await loadCheckpoint(dir);
      expect(entries[i]!.entry, spec.name).toBe(kernelCacheEntry({ spec, target: 'emulator', cacheDir: cache }));
    }
  }, 300_000);

  test('the background compile on a GPU run: the target from nvidia-smi\'s compute capability; a bundle without Node skips it; one still running at the end is killed and reported', async () => {
    const bin = join(root, 'fake-bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'nvidia-smi'), '#!/bin/sh\necho 9.0\n', { mode: 0o755 });
    const script = `
import json, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import gpu
d = Path(tempfile.mkdtemp())
skipped = gpu.start_precompile(d, d, ['runtime', 'e2e'])
log = d / 'precompile.log'
log.write_text('compiling the kernels of m\\n')
p = subprocess.Popen([sys.executable, '-c', 'import json, time; print(json.dumps(dict(model="m", entry="e", seconds=1)), flush=True); time.sleep(30)'], stdout=subprocess.PIPE, text=True, process_group=0)
time.sleep(0.5)
t0 = time.time()
done = gpu.finish_precompile({'process': p, 'log': log, 'target': 'sm_90', 'started': t0})
print(json.dumps({'target': gpu.device_target(), 'skipped': skipped, 'done': done, 'fast': time.time() - t0 < 5}))
`;
    const r = JSON.parse(await py(script, DIR).catch((e: { stderr: string }) => { throw new Error(e.stderr); })) as Record<string, unknown>;
    expect(r).toEqual({ target: 'sm_90', skipped: { skipped: 'no Node in the bundle' }, fast: true,
      done: { target: 'sm_90', entries: [{ model: 'm', entry: 'e', seconds: 1 }], killed: 'still compiling at the end of the check', lastLog: 'compiling the kernels of m' } });
  });

  test.skipIf(!cxx.found)('an exception in a part: one line (type, message, where) in device-check.json and .md, exit 1; the parts before and after it keep their results', async () => {
    // A GEMM unit whose module is missing: the launch's cuModuleLoad raises inside gemm.py, on the emulated driver as on a GPU.
    const bundle = join(root, 'bundle-missing-module');
    mkdirSync(bundle, { recursive: true });
    writeFileSync(join(bundle, 'gemm.json'), JSON.stringify({ format: 1, units: [{ name: 'gemm_bf16_n64_k64', role: 'qkv', n: 64, k: 64, dtype: 'bf16', splitK: 1,
      fatbin: 'gemm/missing.fatbin', kernels: [{ m: 1, blockM: 16, nTiles: 1, threads: 128, sharedBytes: 0, symbol: 'tidarc_gemm_missing' }] }] }));
    const out = join(root, 'out-missing-module');
    let code = 0;
    let stdout = '';
    try {
      ({ stdout } = await exec('python3', [join(DIR, 'device_check.py'), '--dry-run', '--bundle', bundle, '--out', out, '--parts', 'gemm,runtime'],
        { env: { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver() }, maxBuffer: 16 << 20 }));
    } catch (e) {
      ({ code, stdout } = e as { code: number; stdout: string });
    }
    expect(code).toBe(1);
    const data = JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { parts: { name: string; status: string; why?: string }[]; device: { name: string }; failed?: unknown; partial?: boolean };
    expect(data.parts.map((p) => [p.name, p.status])).toEqual([['facts', 'ok'], ['gemm', 'failed'], ['runtime', 'skipped']]);
    const why = data.parts[1]!.why!;
    expect(why).toMatch(/^RuntimeError: cuModuleLoad\(\S*missing\.fatbin\) failed: CUDA_ERROR_\w+ \(\d+\) \(at gemm\.py:\d+ launch_gemm > kernels\.py:\d+ function > kernels\.py:\d+ check\)$/);
    expect(data.device.name).toBe('tidarc emulated GPU');  // the facts part's, kept
    expect([data.failed, data.partial]).toEqual([undefined, undefined]);
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toContain(`| gemm | failed |`);
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toContain(why);
    expect(readFileSync(join(out, 'device-check.log'), 'utf8')).toMatch(/Traceback \(most recent call last\)/);
    expect(stdout).not.toBe('');
  }, 300_000);
});
