/**
 * The GPU device check's parts that run without a GPU (issues 5 and 6): the bundle (grid.json
 * from the IR, the CUDA search's candidates), the whole check in --dry-run on the emulated CUDA
 * driver (the same ctypes driver code, launch packing, float64 reference and tuning loop as on
 * a GPU; a wrong mask must fail it, a wrong tuning candidate must be rejected), and the report
 * writer on recorded sample data.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DRY_RUN_BENCH } from '../../src/bench/attention-points.js';
import type { Manifest } from '../../src/codegen/manifest.js';
import { AttentionLauncher } from '../../src/runtime/cuda/attention-launch.js';
import type { CudaDevice } from '../../src/runtime/cuda/device.js';
import { BENCH_SHAPE, DRY_RUN_GRID, DRY_RUN_TUNE, FULL_TUNE, type BundleGrid, candidateTiles, plannedTile, prepareDeviceBundle, tuneConfigs } from '../../src/bench/device-bundle.js';
import { tileKey } from '../../src/codegen/arch.js';
import { findCxx, findNvcc } from '../../src/build/toolchain.js';
import { cudaTuneMeta } from '../../src/tune/cuda-meta.js';
import { entryKey, parseTuneDb } from '../../src/tune/db.js';
import { tunedTiles } from '../../src/tune/report.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { configKey, infeasible } from '../../src/tune/space.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../helpers/emulated-driver.js';
import { expectWellFormedXml } from '../helpers/well-formed-xml.js';
import { type RuntimeCheckReport, expectRuntimeInvariants } from '../helpers/runtime-check.js';

const exec = promisify(execFile);
const SCRIPT = resolve('scripts/device-check/device_check.py');
const cxx = await findCxx();
const nvcc = await findNvcc();
const numpy = await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-device-check-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface TuneRecord { variant: string; bucket: string; heuristic: string; best?: string; timed: { config: string; medianUs: number }[]; rejected: { config: string; why: string }[] }
interface TuneSection { buckets: TuneRecord[]; machine: { name: string; sms: number; driverVersion: number; compiler: string }; file: string }

describe('the CUDA search\'s candidates (pure)', () => {
  test('the benchmark shape: 36 tiles (16-row warps at 2 and 3 stages up to tileN 128; 32-row warps only at 2 stages and tileN <= 32, what plan.ts fitsInRegisters keeps at head dim 128); per bucket at most 40 feasible configurations, every tile among them, the heuristic first', () => {
    const candidates = candidateTiles(BENCH_SHAPE);
    const r16 = ['w1-n16', 'w1-n32', 'w1-n64', 'w1-n128', 'w2-n16', 'w2-n32', 'w2-n64', 'w2-n128', 'w4-n16', 'w4-n32', 'w4-n64', 'w4-n128', 'w8-n32', 'w8-n64', 'w8-n128'];
    const named = (rows: number, stages: number) => (k: string): string => k.replace(/^(w\d+)-(n\d+)$/, `$1r${rows}-$2p${stages}`);
    expect(candidates.map(tileKey)).toEqual([...r16.map(named(16, 2)), ...r16.map(named(16, 3)), ...['w1-n16', 'w1-n32', 'w2-n16', 'w2-n32', 'w4-n16', 'w4-n32'].map(named(32, 2))]);
    const rows = { tidar_k4: 80, tidar_k8: 288, ar: 4 } as Record<string, number>;
    for (const v of FULL_TUNE.variants) {
      // As prepareTune: the candidates the variant's rows can use, and its planned tile (k = 4: one CTA of 5 warps; k = 8: 3 of 3 warps of 32 rows at 32 keys; AR: 4 splitting the keys).
      const planned = plannedTile({ dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 }, v);
      expect(tileKey(planned), v).toBe({ tidar_k4: 'w5r16-n64p3', tidar_k8: 'w3r32-n32p2', ar: 'w4r16-n64p2' }[v]);
      const probe = { headDim: 128, rows: rows[v]!, kvHeads: 8, batch: 1, prefix: 1 };
      const tiles = [...candidates, ...(candidates.some((t) => tileKey(t) === tileKey(planned)) ? [] : [planned])]
        .filter((t) => infeasible({ ...t, splits: 1 }, probe, 'cuda', 'sm_90') === null);
      // AR's 4 rows are one m16 tile: no 32-row warps.
      expect(tiles.length, v).toBe(v === 'ar' ? 20 : 37);
      for (const batch of FULL_TUNE.batches) {
        for (const prefix of FULL_TUNE.prefixes) {
          const shape = { headDim: 128, rows: rows[v]!, kvHeads: 8, batch, prefix };
          // The heuristic's tile at the occupancy ptxas gives it (1 to 3 CTAs/SM) still leads the list.
          for (const ctasPerSm of [2, 3]) {
            const at = tuneConfigs(shape, planned, tiles, FULL_TUNE.slots, FULL_TUNE.maxConfigs, ctasPerSm);
            expect(configKey(at.configs[0]!)).toBe(configKey(at.heuristic));
          }
          const { heuristic, configs, feasible } = tuneConfigs(shape, planned, tiles, FULL_TUNE.slots, FULL_TUNE.maxConfigs);
          expect(configs).toHaveLength(Math.min(40, feasible));
          expect(feasible).toBeGreaterThan(v === 'ar' ? 20 : 30);
          expect(configKey(configs[0]!)).toBe(configKey(heuristic));
          expect(new Set(configs.map(configKey)).size).toBe(configs.length);
          for (const c of configs) expect(infeasible(c, shape, 'cuda', 'sm_90')).toBeNull();
          expect(new Set(configs.map(tileKey)).size).toBe(tiles.length);
          expect(heuristic).toMatchObject({ warpRows: planned.warpRows, stages: planned.stages });
        }
      }
    }
  });
});

async function runCheck(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('python3', [SCRIPT, ...args], { env, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe.skipIf(!cxx.found || !numpy)('device check without a GPU', () => {
  let grid: BundleGrid;
  let driver: string;
  const bundle = join(root, 'bundle');
  beforeAll(async () => {
    grid = await prepareDeviceBundle({ outDir: bundle, grid: DRY_RUN_GRID, tune: DRY_RUN_TUNE, bench: DRY_RUN_BENCH, emulated: true });
    driver = await sharedEmulatedDriver();
  }, 600_000);

  test('grid.json describes every variant with its mask from the IR', () => {
    expect(grid.models).toHaveLength(DRY_RUN_GRID.length);
    const k2 = grid.models[0]!.variants.find((v) => v.name === 'tidar_k2')!;
    expect(k2.steps).toBe(6);
    expect(k2.visible).toEqual(['100000', '110000', '101100', '101100', '110011', '110011']);
    expect(k2.offsets).toEqual([0, 1, 1, 2, 2, 3]);
    expect(k2.prefixVisible).toBe(true);
    expect(k2.rows).toBe(24);
  });

  test('grid.json\'s benchmark points: the cuda launcher\'s split count at the bundle\'s occupancy, its workspace, a prediction (issue 15 item 5)', () => {
    const section = grid.attentionBench!;
    const model = grid.models.find((m) => m.name === section.model)!;
    const manifest = JSON.parse(readFileSync(join(bundle, model.dir, 'manifest.json'), 'utf8')) as Manifest;
    expect(section.points).toHaveLength(DRY_RUN_BENCH.variants.length * DRY_RUN_BENCH.prefixes.length * DRY_RUN_BENCH.batches.length);
    for (const point of section.points) {
      const occ = section.occupancy[point.variant]!;
      if (nvcc.found) expect(occ.source).toMatch(/^ptxas sm_90/);
      const withOcc: Manifest = { ...manifest, variants: manifest.variants.map((v) => ({ ...v, occupancy: { sm_90: occ } })) };
      const v = withOcc.variants.find((x) => x.name === point.variant)!;
      const launcher = new AttentionLauncher({ info: { multiprocessors: section.sms }, arch: 'sm_90' } as unknown as CudaDevice, '/nowhere', withOcc);
      expect(point.splits, `${point.variant} L=${point.prefix} B=${point.batch}`).toBe(launcher.splitsFor(v, point.batch, point.prefix));
      expect(point.workspaceFloats).toBe(point.splits > 1 ? point.splits * point.batch * v.steps * model.qHeads * (model.headDim + 1) : 0);
      expect(point.predictedUs).toBeGreaterThan(0);
      // Per machine the check may run on (predicted-machines.ts): the H200's is the point's own; an H100 SXM, with less copy bandwidth, is no faster.
      expect(point.byMachine.H200).toEqual({ predictedUs: point.predictedUs, predictedBound: point.predictedBound, rooflineUs: point.rooflineUs });
      expect(point.byMachine.H100!.predictedUs).toBeGreaterThanOrEqual(point.predictedUs);
    }
    expect(JSON.parse(readFileSync(join(bundle, 'machines.json'), 'utf8'))).toMatchObject({ default: 'H200', machines: [{ key: 'H200' }, { key: 'H100' }] });
    // L = 64 is one tile: one split; L = 300 is 5 tiles the rule splits (few CTAs on 132 SMs).
    expect(section.points.filter((p) => p.prefix === 64).every((p) => p.splits === 1)).toBe(true);
    expect(section.points.filter((p) => p.prefix === 300).every((p) => p.splits === 5)).toBe(true);
  });

  test('grid.json\'s tune section: 3 tiles of tidar_k2 (one of 32-row warps at 3 stages), 2 buckets, the heuristic first, the cap applied', () => {
    const t = grid.tune!;
    expect(t.tiles.map(tileKey)).toEqual(['w1r16-n16p2', 'w1r32-n32p3', 'w1r16-n64p3']);
    expect(t.tiles[2]!.model.dir).toBe(grid.models[0]!.dir);  // the planned tile (24 rows: 2 tiles of 1 warp of 16, 3 stages: plan.ts plannedRowTile) is the grid's own model
    // Each tile's kernel is that tile: its plan's rows a warp and stages, as the check launches it.
    for (const x of t.tiles) expect(x.model.variants.map((v) => [v.block, v.warpRows, v.stages]), tileKey(x)).toEqual([[x.warps * 32, x.warpRows, x.stages]]);
    expect(t.variants.map((v) => v.key)).toEqual(['tidar_k2 bf16 d64 q4/kv1']);
    const [l64, l128] = t.variants[0]!.buckets;
    expect([l64!.bucket, l128!.bucket]).toEqual(['b1 L64', 'b1 L128']);
    // Each tile's own split first (the runtime's rule: 1 on these few short tiles, whose fill outweighs a split's saving), then the nearest.
    expect(l64!.configs.map(configKey)).toEqual(['w1r16-n64p3-s1', 'w1r16-n16p2-s1', 'w1r32-n32p3-s1', 'w1r16-n16p2-s2']);
    expect(l64!.feasible).toBe(6);
    expect(configKey(l128!.heuristic)).toBe('w1r16-n64p3-s1');
  });

  test('--dry-run: every variant, batch 1 and 2, splits 1 and 2, within tolerance on the emulated driver; the overheads and runtime parts too', async () => {
    const out = join(root, 'out');
    // --runtime-root: runtime_check.mjs on this checkout's dist (built by npm ci), as the GPU run does on the packed one.
    // $TIDARC_CACHE: the shared kernel cache (where emulated-backend.test.ts's run of runtime_check.mjs, without numpy, compiles the same model).
    // e2e (torch, minutes on the emulator) is device-check-e2e.test.ts's; gemm and sm90a have their own bundles' tests (gemm-bundle, gemm-sm90a-check).
    // Its path once: it is keyed by a digest of src/, which an edit in the checkout during the run would move.
    const cache = await sharedKernelCache();
    const r = await runCheck(['--bundle', bundle, '--out', out, '--dry-run', '--runtime-root', resolve('.'), '--parts', 'attention,overheads,runtime,tune'],
      { ...process.env, TIDARC_LIBCUDA: driver, TIDARC_CACHE: cache });
    expect(r.code, r.stderr).toBe(0);
    // Each part in its own process, in the fixed order, facts first; the bundle has no GEMM parts (a dry run notes it, a GPU run fails on it).
    const parts = (JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { parts: { name: string; status: string }[]; bundleMissing: string[]; partial?: boolean });
    expect(parts.parts.map((p) => [p.name, p.status])).toEqual([['facts', 'ok'], ['attention', 'ok'], ['runtime', 'ok'], ['overheads', 'ok'], ['tune', 'ok']]);
    expect(parts.partial).toBeUndefined();
    expect(parts.bundleMissing).toEqual(['node/node.xz (for overheads, runtime)']);
    expect(r.stderr).toMatch(/^part attention: ok in \d+ s$/m);
    expect(r.stderr).toMatch(/^GPU: tidarc emulated GPU; driver \d+; CUDA \?; \d+ s of a 1800 s budget$/m);
    // What the device tool brings back from $OUT: at most 8 plain files, no folders, names of letters, digits, '.', '_', '-'.
    const files = readdirSync(out, { withFileTypes: true });
    expect(files.every((f) => f.isFile() && /^[A-Za-z0-9._-]+$/.test(f.name))).toBe(true);
    expect(files.map((f) => f.name).sort()).toEqual(['device-check.json', 'device-check.log', 'device-check.md', 'device-check.svg', 'tune-cuda.json']);
    expect(readFileSync(join(out, 'device-check.log'), 'utf8')).toMatch(/part runtime: ok in/);
    // The overheads part: overheads.mjs on the emulated driver (its timings mean nothing; the shape and the report's section are what is checked).
    const oh = (JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { overheads: { ok: boolean; emulated: boolean; measured: Record<string, { value: number | null }> } }).overheads;
    expect([oh.ok, oh.emulated]).toEqual([true, true]);
    expect(Object.keys(oh.measured).sort()).toEqual(['copyLatencyS', 'graphNodeGapS', 'graphStartS', 'hostCopyS', 'hostGraphLaunchS', 'hostLaunchS', 'hostStepS', 'rampS', 'smallKernelS', 'streamGapS', 'waitReleaseS']);
    expect(r.stderr).toMatch(/^ {2}overheads \(us, measured on the emulator; \* not identifiable alone\): hostLaunchS [\d.]+, .*, graphCopyNodeS -?[\d.]+ \(model [\d.]+\); PDL on; \d+ s$/m);
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(/## Launch and host overheads: measured vs assumed \(src\/bench\/step-cost-model\.ts\)\n\nMeasured with overheads\.mjs on tidarc emulated GPU \(compute capability 9\.0\) -- the emulated driver/);
    expect(r.stdout).toMatch(/^overheads \(us measured\/assumed, emulator; \* not identifiable alone\): hostLaunchS [\d.]+/m);
    const data = JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { correctness: { ok: boolean; maxError: number }[]; runtime: RuntimeCheckReport };
    expect(data.runtime.backend).toBe('cuda');
    expect(data.runtime.reason).toMatch(/tidarc emulated/);
    // The load's device lines reach the report: the memory preflight's figures (what a real GPU's first run should confirm) and the weights.
    expect(data.runtime.loadLines).toEqual(expect.arrayContaining([
      expect.stringMatching(/^cuda: the weights \(.+\) and a 256-token runner \(.+\) need .+ on tidarc emulated GPU.* and .+ of .+ is free$/),
      expect.stringMatching(/^cuda: tidarc emulated GPU.*, weights [\d.]+ MiB on the device; PDL on$/),
    ]));
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(/^The load said:\n\n- cuda: the weights /m);
    // The emulated device (9.0, cuLaunchKernelEx) runs the kernels with PDL, as an H200 does: this part checks PDL's correctness there, and says so.
    expect(data.runtime.pdl).toEqual({ on: true, why: expect.stringMatching(/the driver has cuLaunchKernelEx/) });
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(/^Backend: cuda \(.*\)\. Programmatic dependent launch: on \(.*cuLaunchKernelEx; a programmatic launch and a captured programmatic edge ran at load\)\.$/m);
    expect(data.runtime.runs.length).toBe(3);  // three prompts, k = 2
    expect(data.runtime.runs.every((x) => x.equal)).toBe(true);
    expect(data.runtime.ok).toBe(true);
    // The [gpu] test's checker (8 tokens: parts.py's dry run), and the kernels compiled once into the shared cache ($TIDARC_CACHE reached runtime_check.mjs).
    expectRuntimeInvariants(data.runtime.runs, 8);
    // Once more with PDL off on the same model, prompts and k (the dry run's budget fits it all): the same checks, and the same tokens as with PDL on.
    const off = data.runtime.pdlOff!;
    expect(off.pdl).toEqual({ on: false, why: expect.stringMatching(/--no-pdl, or loadModel pdl: false/) });
    expect(off.runs!.map((x) => [x.prompt, x.draft, x.samePdlOn, x.ok])).toEqual(data.runtime.runs.map((x) => [x.prompt, x.draft, true, true]));
    expectRuntimeInvariants(off.runs!, 8);
    expect(off.runs!.map((x) => x.tidar)).toEqual(data.runtime.runs.map((x) => x.tidar));
    expect([off.tokensEqual, off.ok, off.skipped]).toEqual([true, true, undefined]);
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(/^Once more with PDL off \(loadModel pdl: false; off: turned off .*\), the same model, prompts and k: 3\/3 ok, same tokens as PDL on\.$/m);
    expect(r.stdout).toMatch(/^runtime \(cuda backend, greedy TiDAR == AR, exact cache\): ok; PDL off: 3\/3 ok, same tokens as PDL on$/m);
    // Two entries, each compiled once: the runtime part's model (k = 2 in a dry run) and the one overheads.mjs takes its operators from
    // (runtime_spec.mjs at k = 1, 2, 4, 8: on a GPU the runtime part's own entry, which precompile.mjs fills).
    expect(readdirSync(join(cache, 'kernels')).filter((e) => /^gpu-runtime-check-emulator-[0-9a-f]{16}$/.test(e))).toHaveLength(2);
    const variants = grid.models.reduce((n, m) => n + m.variants.length, 0);
    expect(data.correctness).toHaveLength(variants * 4);
    for (const c of data.correctness) expect(c.ok).toBe(true);
    expect(r.stdout).toMatch(new RegExp(`correctness: ${variants * 4}/${variants * 4} ok`));
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(/## Correctness: \d+ of \d+ checks ok/);

    // The benchmark points at the runtime's splits and workspace, each checked against the float64 reference on the emulator.
    const bench = (data as unknown as { bench: { variant: string; prefix: number; batch: number; splits: number; workspaceFloats: number; ok: boolean; predictedUs: number }[] }).bench;
    expect(bench.map((b) => [b.variant, b.prefix, b.batch, b.splits, b.workspaceFloats, b.predictedUs]))
      .toEqual(grid.attentionBench!.points.map((p) => [p.variant, p.prefix, p.batch, p.splits, p.workspaceFloats, p.predictedUs]));
    for (const b of bench) expect(b.ok, `${b.variant} L=${b.prefix} B=${b.batch}`).toBe(true);
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(/## Benchmark points \(dry run[^\n]*\n\n\| step \| n \| prefix L \| batch \| splits \|/);
    expect(r.stdout).toMatch(/tidar_k2 L=300 +B=2: tidarc +\d+\.\d us at +5 splits +predicted/);

    // The tune part: a database tidarc reads, one entry per bucket, the heuristic timed, the meta as cuda-meta.ts forms it.
    const db = parseTuneDb(readFileSync(join(out, 'tune-cuda.json'), 'utf8'), 'tune-cuda.json');
    const tune = (data as unknown as { tune: TuneSection }).tune;
    const tv = grid.tune!.variants[0]!;
    expect(Object.keys(db.entries).sort()).toEqual(tv.buckets.map((b) => entryKey(tv.key, b.bucket)).sort());
    const meta = cudaTuneMeta({ compiler: tune.machine.compiler, deviceName: tune.machine.name, multiprocessors: tune.machine.sms, driverVersion: tune.machine.driverVersion }, grid.tune!.tidarc);
    for (const b of tv.buckets) {
      const e = db.entries[entryKey(tv.key, b.bucket)]!;
      const rec = tune.buckets.find((r) => r.bucket === b.bucket)!;
      expect(configKey(e.heuristic)).toBe(configKey(b.heuristic));
      expect(rec.timed.map((x) => x.config)).toContain(configKey(b.heuristic));
      expect(e.timed).toBe(b.configs.length);
      expect(e.rejected).toEqual([]);
      expect(e.bestTiming.medianUs).toBeLessThanOrEqual(e.heuristicTiming.medianUs);
      expect(e.meta).toEqual(meta);
    }
    expect(meta.device).toBe('tidarc emulated GPU x 132 SMs');
    // compile --tuned reads it: every tile was timed in every bucket, so the tile is chosen across shapes, with per-bucket splits.
    // The 32-row, 3-stage tile was checked and timed like the others, and the entries say its rows a warp and stages.
    for (const e of Object.values(db.entries)) expect(Object.keys(e.byTile ?? {}).sort()).toEqual(['w1r16-n16p2', 'w1r16-n64p3', 'w1r32-n32p3']);
    for (const e of Object.values(db.entries)) expect(e.heuristic).toMatchObject({ warps: 1, tileN: 64, warpRows: 16, stages: 3 });
    expect(tune.buckets.find((x) => x.bucket === 'b1 L64')!.timed.map((x) => x.config)).toContain('w1r32-n32p3-s1');
    const spec = JSON.parse(readFileSync(join(bundle, grid.models[0]!.dir, 'model.json'), 'utf8')) as ModelSpec;
    const picked = tunedTiles(db, spec, ['tidar_k2'], ['sm_90']);
    expect(Object.keys(picked.tiles[`tidar_k2`]?.calls ?? {}).sort()).toEqual(['b1 L128', 'b1 L64']);
    const tile = picked.tiles['tidar_k2']!;
    expect(Object.keys(db.entries[entryKey(tv.key, 'b1 L64')]!.byTile!)).toContain(tileKey({ warps: tile.warps, tileN: tile.tileN, warpRows: tile.warpRows, stages: tile.stages }));
    expect(r.stdout).toMatch(/tune: heuristic within 10% of the tuned best on \d of 2 shapes; tune-cuda\.json/);
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(/## Tuning: the CUDA search/);
  }, 600_000);

  test('--dry-run: a wrong tuning candidate (a tile that leaves rows unwritten) is rejected and never chosen', async () => {
    const broken = JSON.parse(readFileSync(join(bundle, 'grid.json'), 'utf8')) as BundleGrid;
    const tile = broken.tune!.tiles.find((t) => tileKey(t) === 'w1r16-n16p2')!;
    (tile.model.variants[0] as unknown as { rowTiles: number }).rowTiles = 1;  // 24 rows, 16 per tile: rows 16..23 stay NaN
    writeFileSync(join(bundle, 'grid.json'), JSON.stringify(broken));
    try {
      const out = join(root, 'out-tune-broken');
      const r = await runCheck(['--bundle', bundle, '--out', out, '--dry-run', '--parts', 'tune'], { ...process.env, TIDARC_LIBCUDA: driver });
      expect(r.code, r.stderr).toBe(0);
      const db = parseTuneDb(readFileSync(join(out, 'tune-cuda.json'), 'utf8'), 'tune-cuda.json');
      for (const b of grid.tune!.variants[0]!.buckets) {
        const e = db.entries[entryKey(grid.tune!.variants[0]!.key, b.bucket)]!;
        const wrong = b.configs.filter((c) => tileKey(c) === tileKey(tile)).map(configKey);
        expect(wrong.length).toBeGreaterThan(0);
        expect(e.rejected).toEqual(wrong);
        expect(tileKey(e.best)).not.toBe(tileKey(tile));
        expect(e.timed).toBe(b.configs.length - wrong.length);
      }
      expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(/Rejected \(wrong output or failed launch, never chosen\): tidar_k2 bf16 d64 q4\/kv1 \| b1 L64: w1r16-n16p2-s1 \(max error /);
    } finally {
      writeFileSync(join(bundle, 'grid.json'), `${JSON.stringify(grid, null, 1)}\n`);
    }
  }, 600_000);

  test.skipIf(!nvcc.found)('[nvcc] the check\'s compiler string is toolchain.ts\'s nvcc version', async () => {
    const { stdout } = await exec('python3', ['-c', 'import sys; sys.path.insert(0, sys.argv[1]); import tune; print(tune.nvcc_version(sys.argv[2]))', resolve('scripts/device-check'), nvcc.found ? nvcc.tool.path : '']);
    expect(stdout.trim()).toBe(nvcc.found ? nvcc.tool.version : '');
  });

  test('--dry-run fails (exit 1) when the mask it checks against differs from the kernel\'s', async () => {
    const broken = JSON.parse(readFileSync(join(bundle, 'grid.json'), 'utf8')) as BundleGrid;
    const v = broken.models[0]!.variants.find((x) => x.name === 'tidar_k2')! as unknown as { visible: string[] };
    v.visible[1] = '100000';  // d1 no longer sees itself
    writeFileSync(join(bundle, 'grid.json'), JSON.stringify(broken));
    try {
      const r = await runCheck(['--bundle', bundle, '--out', join(root, 'out-broken'), '--dry-run', '--parts', 'attention,tune'], { ...process.env, TIDARC_LIBCUDA: driver });
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/FAILED: bf16-d64-q4-kv1\/tidar_k2/);
      // The failed part does not stop the next one.
      const data = JSON.parse(readFileSync(join(root, 'out-broken', 'device-check.json'), 'utf8')) as { parts: { name: string; status: string }[] };
      expect(data.parts.map((p) => [p.name, p.status])).toEqual([['facts', 'ok'], ['attention', 'failed'], ['tune', 'ok']]);
    } finally {
      writeFileSync(join(bundle, 'grid.json'), `${JSON.stringify(grid, null, 1)}\n`);
    }
  }, 600_000);
});

describe.skipIf(!numpy)('the device check\'s plan: parts, windows, a part that hangs', () => {
  test('each part\'s window is its share of --budget: with 1 s none starts, and the report says why for each (no bundle needed)', async () => {
    const out = join(root, 'plan');
    const r = await runCheck(['--bundle', join(root, 'no-bundle'), '--out', out, '--dry-run', '--budget', '1']);
    expect(r.code, r.stderr).toBe(0);
    const data = JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { parts: { name: string; status: string; why: string }[]; bundleMissing: string[] };
    expect(data.parts.map((p) => [p.name, p.status])).toEqual(['facts', 'gemm', 'sm90a', 'attention', 'runtime', 'overheads', 'e2e', 'tune'].map((p) => [p, 'not started']));
    expect(data.parts[0]!.why).toMatch(/^0 s left of its window$/);
    expect(data.bundleMissing).toEqual(['grid.json (for attention, tune)', 'gemm.json (for gemm)', 'gemm_sm90a.json (for sm90a)', 'node/node.xz (for e2e, overheads, runtime)']);
    const md = readFileSync(join(out, 'device-check.md'), 'utf8');
    expect(md).toContain('The bundle lacks: grid.json (for attention, tune); gemm.json (for gemm)');
    expect(md).toMatch(/\| part \| result \| seconds \| window s \| note \|\n\|---\|---\|---\|---\|---\|\n\| facts \| not started \| - \| [\d.]+ \| 0 s left of its window \|/);
    // On a GPU a bundle without its pieces is a failure, not a note.
    const bad = await runCheck(['--parts', 'nonsense', '--out', out]);
    expect([bad.code, bad.stderr.trim()]).toEqual([1, 'device_check: --parts nonsense: unknown; the parts are facts,gemm,sm90a,attention,runtime,overheads,e2e,tune']);
  });

  test('a bad --parts exits 1 in one line before creating anything; every way out after the scratch folder removes it', async () => {
    // A private TMPDIR: the scratch folder (tempfile.mkdtemp) is made there, so nothing else's /tmp folders count.
    const tmp = join(root, 'private-tmp');
    mkdirSync(tmp);
    const env = { ...process.env, TMPDIR: tmp };
    const out = join(root, 'bad-parts-out');
    const bad = await runCheck(['--parts', 'facts,nonsense', '--bundle', join(root, 'no-bundle'), '--out', out, '--dry-run'], env);
    expect([bad.code, bad.stdout, bad.stderr]).toEqual([1, '', 'device_check: --parts nonsense: unknown; the parts are facts,gemm,sm90a,attention,runtime,overheads,e2e,tune\n']);
    expect(readdirSync(tmp)).toEqual([]);
    expect(existsSync(out)).toBe(false);
    // An exception after the scratch folder was made (an unreadable grid.json): it is gone too.
    const broken = join(root, 'broken-bundle');
    mkdirSync(broken);
    writeFileSync(join(broken, 'grid.json'), '{ not json');
    const crash = await runCheck(['--bundle', broken, '--out', join(root, 'broken-out'), '--dry-run', '--budget', '1'], env);
    expect(crash.code).toBe(1);
    expect(crash.stderr).toMatch(/JSONDecodeError/);
    expect(readdirSync(tmp)).toEqual([]);
    // A check that ran (every part out of time) leaves none either.
    const ran = await runCheck(['--bundle', join(root, 'no-bundle'), '--out', join(root, 'ran-out'), '--dry-run', '--budget', '1'], env);
    expect(ran.code, ran.stderr).toBe(0);
    expect(readdirSync(tmp)).toEqual([]);
  });

  test('time a part leaves goes to the next; attention, whose benchmark fills any window, keeps to its own share', async () => {
    const script = `
import sys
sys.path.insert(0, sys.argv[1])
from device_check import window_end
# 100 s budget; attention's cumulative share ends at 53 s, its own share is 23 s; the runtime's cumulative one ends at 63 s.
print(window_end('attention', 0, 100, 0.53, 0.23, 10), window_end('attention', 0, 100, 0.53, 0.23, 40), window_end('runtime', 0, 100, 0.63, 0.10, 33))
`;
    const { stdout } = await exec('python3', ['-c', script, resolve('scripts/device-check')]);
    expect(stdout.trim()).toBe('33.0 53.0 63.0');
  });

  test('a part still running past its window is killed with its whole process group, and the check goes on', async () => {
    const script = `
import sys, time
sys.path.insert(0, sys.argv[1])
import device_check
t0 = time.time()
code, tail = device_check.run_child(['bash', '-c', 'echo started; sleep 60 & wait'], time.time() + 2, lambda line: None)
print(code, tail, round(time.time() - t0))
`;
    const { stdout } = await exec('python3', ['-c', script, resolve('scripts/device-check')]);
    expect(stdout.trim()).toMatch(/^None \['started'\] [23]$/);
  });
});

describe.skipIf(!numpy)('device check report writer', () => {
  test('the runtime part\'s PDL-off pass: tokens that differ from PDL on\'s, runs the budget left out, and a pass not run (PDL was off)', async () => {
    const script = `
import json, sys
sys.path.insert(0, sys.argv[1])
from report import runtime_pdl_off_lines, _pdl_off_verdict
run = lambda prompt, same: {'prompt': prompt, 'draft': 2, 'equal': True, 'layer0Differing': 0, 'maxRelDiff': 0.0, 'ok': True, 'samePdlOn': same}
off = {'pdl': {'on': False, 'why': 'turned off'}, 'runs': [run('a', True), run('b', False)], 'skipped': [{'prompt': 'c', 'draft': 2}], 'skippedWhy': 'the budget', 'tokensEqual': False, 'ok': False}
print(json.dumps({'lines': runtime_pdl_off_lines(off), 'verdict': _pdl_off_verdict(off), 'none': runtime_pdl_off_lines({'skipped': 'PDL was not on (device 8.0)'})}))
`;
    const { stdout } = await exec('python3', ['-c', script, resolve('scripts/device-check')]);
    const out = JSON.parse(stdout) as { lines: string[]; verdict: string; none: string[] };
    expect(out.verdict).toBe('2/2 ok, tokens DIFFER from PDL on (a PDL race?), 1 skipped for the budget');
    expect(out.lines[0]).toBe('Once more with PDL off (loadModel pdl: false; off: turned off), the same model, prompts and k: 2/2 ok, tokens DIFFER from PDL on (a PDL race?), 1 skipped for the budget (the budget: c k=2).');
    expect(out.lines).toContain('| b | 2 | yes | 0, 0.00e+00 | NO |');
    expect(out.none).toEqual(['With PDL off: not run (PDL was not on (device 8.0)).', '']);
  });

  test('the runtime part after PDL on threw: its error, the PDL-off pass run in a fresh process, the diagnosis', async () => {
    const script = `
import json, sys, tempfile
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from report import write_reports
run = {'prompt': 'a', 'draft': 2, 'equal': True, 'arNfe': 4, 'tidarNfe': 2, 'layer0Differing': 0, 'maxRelDiff': 0.0, 'writtenPastLength': 0, 'ok': True, 'samePdlOn': False}
rt = {'backend': 'cuda', 'reason': 'NVIDIA H200', 'pdl': {'on': True, 'why': 'sm_90 kernels'}, 'runs': [],
      'pdlOff': {'pdl': {'on': False, 'why': 'turned off'}, 'runs': [run], 'afterFailure': True, 'skipped': [{'prompt': 'b', 'draft': 2}], 'tokensEqual': None, 'ok': True},
      'error': ['PDL on: CUDA: cannot launch x programmatically: CUDA_ERROR_NOT_SUPPORTED <op>'], 'diagnosis': 'PDL is the likely cause: see above', 'ok': False}
def md(rt):
    out = Path(tempfile.mkdtemp())
    write_reports({'device': {'name': 'test'}, 'runtime': rt}, out)
    return (out / 'device-check.md').read_text()
stopped = {**rt, 'pdlOff': {**rt['pdlOff'], 'skipped': [], 'stopped': 'the PDL-off process was stopped (SIGTERM)', 'error': 'the PDL-off process was stopped (SIGTERM)'}}
not_run = {**rt, 'pdlOff': {'runs': [], 'afterFailure': True, 'notRun': "2.0 s of the part's budget left", 'tokensEqual': None, 'ok': None}}
no_load = {'pdl': None, 'runs': [], 'pdlOff': {'skipped': 'the model did not load'}, 'error': ['PDL as loadModel chose: nvcc failed'], 'ok': False}
print(json.dumps([md(rt), md(stopped), md(not_run), md(no_load)]))
`;
    const { stdout } = await exec('python3', ['-c', script, resolve('scripts/device-check')]);
    const [md, stopped, notRun, noLoad] = JSON.parse(stdout) as string[];
    expect(md).toContain('The check FAILED: PDL on: CUDA: cannot launch x programmatically: CUDA_ERROR_NOT_SUPPORTED &lt;op&gt;');
    expect(md).toContain('Diagnosis: PDL is the likely cause: see above');
    expect(md).toContain('Once more with PDL off, in a fresh process after PDL on failed: 1/1 runs ok, 1 skipped for the budget.');
    expect(md).toContain('| a | 2 | yes | 0, 0.00e+00 |');
    expect(stopped).toContain('Once more with PDL off, in a fresh process after PDL on failed: 1/1 runs ok (the PDL-off process was stopped (SIGTERM): the runs it finished).');
    expect(notRun).toContain('With PDL off, after PDL on failed: not run (2.0 s of the part\'s budget left).');
    expect(noLoad).toContain('The model did not load, or the check failed before it ran: PDL as loadModel chose: nvcc failed.');
    expect(noLoad).not.toMatch(/Backend: |\['PDL/);
  });

  test('--report-only renders recorded results: tables, goals, a chart', async () => {
    const out = join(root, 'report');
    const r = await runCheck(['--report-only', resolve('test/bench/fixtures/device-check-sample.json'), '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const md = readFileSync(join(out, 'device-check.md'), 'utf8');
    expect(md).toMatch(/Ceilings measured in this run: device-to-device copy 4\.00 TB\/s, bf16 matmul 800 TFLOP\/s/);
    // Each row names its split count, the prediction beside the measurement and the tuned best (issue 15 item 5); an older record: 1 split.
    expect(md).toMatch(/\| tidar_k16 \| 272 \| 16384 \| 1 \| 5 \| 100\.0 \(98\.0-104\.0\) \| 80\.0 \| 1\.25 \| w4-n64-s8 95\.0 \| 140\.0 \| 400\.0 \| 1\.40x \| 4\.00x \|/);
    expect(md).toMatch(/\| ar \| 1 \| 4096 \| 1 \| 1 \| 20\.0 \(19\.0-21\.0\) \| - \| - \| - \| 30\.0 \|/);
    expect(md).toMatch(/error: sample failure/);
    expect(md).toMatch(/\| TiDAR k=16 step >= 1\.3x faster than FlexAttention \(L >= 4k\) \| 1\.40x \(worst point\) \| yes \|/);
    expect(md).toMatch(/\| AR step >= 85% of copy bandwidth at >= 256 MB of KV \| 90% \(worst point\) \| yes \|/);
    expect(md).toMatch(/\| k=4 step <= 1\.15x the AR step \(L >= 4k\) \| 1\.15x \(worst point\) \| yes \|/);
    expect(md).toMatch(/Skipped for the time budget: tidar_k16 L=65536 B=8/);
    expect(md).toMatch(/\| tidar_k4 bf16 d128 q32\/kv8 \| b1 L4096 \| w4-n64-s8 \| 21\.0 \(20\.5-22\.0\) \| w2-n64-s5 \| 20\.0 \(19\.5-21\.0\) \| 1\.05x \| 2 of 30 \(74 feasible\) \| 1 \| 3\.2 \|/);
    expect(md).toMatch(/Heuristic within 10% of the tuned best on 1 of 2 shapes \(50%; goal 90%\)\. Timed per shape bucket: at most 2 configurations \(limit 30\) and 60\.2 s \(limit 60 s\)/);
    expect(md).toMatch(/Buckets skipped for the search's budget: tidar_k8 bf16 d128 q32\/kv8 \| b8 L16384/);
    expectWellFormedXml(readFileSync(join(out, 'device-check.svg'), 'utf8'));
    expect(r.stdout.trim().split('\n').pop()).toMatch(/tidar_k16 L=16384 +B=1: tidarc +100\.0 us at +5 splits +predicted +80\.0 +tuned +w4-n64-s8 95\.0 +flex +140\.0 +sdpa +400\.0/);
  });
});
