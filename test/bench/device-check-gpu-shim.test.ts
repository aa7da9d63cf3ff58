/**
 * The device check's GPU branches (parts.py without --dry-run: torch tensors, CUDA events, the float64
 * references on the device, the tensor maps of the sm_90a kernels) run on the CPU: torch's CPU build
 * behind a `torch` whose 'cuda' is the CPU, and a driver whose kernels are numpy and check what each
 * launch is given (test/bench/fixtures/gpu_shim.py). What no dry run reaches runs here: the gemm part's
 * torch correctness and benchmark, the sm90a part with its race against Flex, the attention part's torch
 * judge and benchmark, the tune part's TorchShape and TorchSets searches. Needs torch (skipped without it,
 * and in CI, which installs none, like device-check-e2e's torch tests).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DRY_RUN_BENCH } from '../../src/bench/attention-points.js';
import { DRY_RUN_ATTENTION_SM90A, prepareAttentionSm90aBundle } from '../../src/bench/attention-sm90a-bundle.js';
import { DRY_RUN_GRID, DRY_RUN_TUNE, prepareDeviceBundle } from '../../src/bench/device-bundle.js';
import { DRY_RUN_GEMM, prepareGemmBundle } from '../../src/bench/gemm-bundle.js';
import { DRY_RUN_SM90A, prepareSm90aBundle } from '../../src/bench/gemm-sm90a-bundle.js';

const exec = promisify(execFile);
const torch = (!process.env['CI'] || process.env['TIDARC_E2E_TORCH'] === '1')
  && await exec('python3', ['-c', 'import torch, numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-gpu-shim-'));
const bundle = join(root, 'bundle');
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Each part's GPU branch in its own process, as device_check.py runs it (parts.Ctx without --dry-run); nvcc a stand-in that
// writes its output (the kernels are the shim's). Prints {result, problems, stats}.
const RUN_PART = `
import argparse, json, os, sys, time
sys.path.insert(0, sys.argv[3])
import gpu_shim
sys.modules['torch'] = gpu_shim.torch
import flex, kernels, parts
flex.compiled_flex = lambda torch, backend='inductor': __import__('torch.nn.attention.flex_attention', fromlist=['x']).flex_attention  # eager Flex: no C++ compile here
bundle = sys.argv[2]
spec = lambda f: json.load(open(os.path.join(bundle, f))) if os.path.exists(os.path.join(bundle, f)) else None
def driver(path='libcuda.so.1'):
    d = gpu_shim.FakeDriver(path)
    gpu_shim.register_bundle(d, spec('grid.json'), spec('gemm.json'), spec('gemm_sm90a.json'), spec('attention_sm90a.json'))
    return d
parts.Driver = kernels.Driver = driver
parts.Ctx.driver = lambda self: driver()
part = sys.argv[1]
a = argparse.Namespace(bundle=bundle, out=sys.argv[4], scratch=sys.argv[5], dry_run=False, until=time.time() + 120, part=part, runtime_root=None,
                       bucket_seconds=5.0, e2e_dry_backend='cuda')
data = {'device': {'name': 'NVIDIA H100 80GB HBM3', 'capability': '9.0'}, 'ceilings': {'copyTBs': 3.0, 'matmulTflops': 790.0}}
ctx = parts.Ctx(a, data)
if part == 'gemm':  # part_gemm less its fused epilogues (kernels the shim does not model; the dry run checks them)
    import gemm
    torch = ctx.torch()
    regs = parts.build_gemm_fatbins(ctx.bundle, ctx.gem, ctx.arch(torch))
    r = {'gemm': {'correctness': gemm.gemm_correctness_torch(torch, ctx.driver(), ctx.bundle, ctx.gem)}}
    r['gemm']['bench'], r['gemm']['skipped'] = gemm.gemm_bench(torch, ctx.driver(), ctx.bundle, ctx.gem, data['ceilings'], parts.time_events, 60, parts.log, regs)
elif part == 'attention':  # part_attention's GPU branch, its correctness cut to the first four cases (each a torch judge on the CPU)
    import attention
    real = attention.correctness
    attention.correctness = lambda drv, b, grid, dry, judge, ref_fn, **kw: real(drv, b, {**grid, 'models': [{**grid['models'][0], 'variants': grid['models'][0]['variants'][:1]}]}, dry, judge, ref_fn, **kw)
    r = parts.part_attention(ctx)
else:
    r = parts.PART_FUNCTIONS[part](ctx)
print(json.dumps({'result': r, 'problems': gpu_shim.PROBLEMS, 'stats': gpu_shim.STATS}, default=str))
`;

type Run = { result: Record<string, unknown>; problems: string[]; stats: Record<string, number> };

async function runPart(part: string): Promise<Run> {
  const out = mkdtempSync(join(root, 'out-'));
  const scratch = mkdtempSync(join(root, 'scratch-'));
  const { stdout } = await exec('python3', ['-c', RUN_PART, part, bundle, resolve('test/bench/fixtures'), out, scratch],
    { maxBuffer: 64 << 20, env: { ...process.env, NVCC: join(root, 'nvcc'), PYTHONDONTWRITEBYTECODE: '1' } });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Run;
}

describe.skipIf(!torch)('the device check\'s GPU branches on torch\'s CPU build and a numpy driver (gpu_shim.py; skipped without torch and in CI)', () => {
  beforeAll(async () => {
    await prepareDeviceBundle({ outDir: bundle, grid: DRY_RUN_GRID, tune: DRY_RUN_TUNE, bench: DRY_RUN_BENCH, emulated: false });
    await prepareGemmBundle(bundle, DRY_RUN_GEMM, false);
    await prepareSm90aBundle(bundle, DRY_RUN_SM90A, false);
    // One benchmark point, so that the race against Flex runs.
    await prepareAttentionSm90aBundle(bundle, { ...DRY_RUN_ATTENTION_SM90A, points: [{ prefix: 256, batch: 1 }] }, false);
    const { writeFileSync, chmodSync } = await import('node:fs');
    writeFileSync(join(root, 'nvcc'), '#!/bin/sh\nout=""; prev=""\nfor a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done\n[ "$1" = "--version" ] && { echo "Cuda compilation tools, release 13.0, V13.0.48"; exit 0; }\n[ -n "$out" ] && echo stand-in > "$out"\nexit 0\n');
    chmodSync(join(root, 'nvcc'), 0o755);
  }, 120_000);

  test('gemm: torch inputs against the float64 reference, bitwise across M, then timed against F.linear', async () => {
    const r = await runPart('gemm');
    expect(r.problems).toEqual([]);
    const g = r.result['gemm'] as { correctness: { ok: boolean }[]; bench: { tidarc: { medianUs: number }; torch: { medianUs: number } }[]; skipped: string[] };
    expect(g.correctness.length).toBeGreaterThan(0);
    expect(g.correctness.every((c) => c.ok)).toBe(true);
    expect(g.bench.length).toBe(g.correctness.length);
    expect(g.skipped).toEqual([]);
    expect(r.stats['sleep']).toBeGreaterThan(0);  // every timed call behind a spin
  }, 300_000);

  test('sm90a: every token tile through its tensor maps, the attention kernels at the check point, then the race against Flex', async () => {
    const r = await runPart('sm90a');
    expect(r.problems).toEqual([]);
    const s = r.result['sm90a'] as { ok: boolean; units: unknown[]; attention: { ok: boolean; bench: { sm90a: { splits: number }; sm90: object; flex?: object; flexError?: string }[]; skipped: string[] } };
    expect(s.ok).toBe(true);
    expect(s.units.length).toBeGreaterThan(0);
    expect(s.attention.bench.length).toBe(1);
    expect(s.attention.bench[0]!.flexError).toBeUndefined();
    expect(s.attention.bench[0]!.flex).toBeDefined();
    expect(r.stats['maps']).toBeGreaterThan(0);
  }, 300_000);

  test('attention: the torch judge (reference and SDPA on the device), then the benchmark at the bundle\'s points', async () => {
    const r = await runPart('attention');
    expect(r.problems).toEqual([]);
    const c = r.result['correctness'] as { ok: boolean; sdpaBackend: string }[];
    expect(c.length).toBe(4);
    expect(c.every((x) => x.ok && x.sdpaBackend)).toBe(true);
    const bench = r.result['bench'] as { variant: string; splits: number; flex?: object; sdpa?: { backend: string } }[];
    expect(bench.length).toBe(8);  // DRY_RUN_BENCH's points, none lost to a variant the bench model lacks
    expect(bench.every((p) => p.flex && p.sdpa)).toBe(true);
  }, 300_000);

  test('tune: the GEMM search on TorchShape and the attention search on TorchSets, CUDA-event timed, into tune-cuda.json', async () => {
    const r = await runPart('tune');
    expect(r.problems).toEqual([]);
    const t = r.result as { gemm: { tune: { shapes: { error?: string; timed: number }[] } }; tune: { buckets: { error?: string; timed: unknown[]; rejected: unknown[] }[] } };
    expect(t.gemm.tune.shapes.length).toBeGreaterThan(0);
    expect(t.gemm.tune.shapes.every((s) => !s.error && s.timed > 0)).toBe(true);
    expect(t.tune.buckets.length).toBeGreaterThan(0);
    expect(t.tune.buckets.every((b) => !b.error && b.timed.length > 0 && b.rejected.length === 0)).toBe(true);
  }, 300_000);
});
