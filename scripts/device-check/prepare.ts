/**
 * Writes the device check's whole bundle, the one thing a GPU session prepares:
 *   npm run device-check:prepare [-- --out DIR] [--dry-run] [--no-pack] [--no-prebuild] [--budget S]
 * Default: into out/device-check the attention grid, the CUDA search's tiles and the benchmark's
 * points (grid.json), the GEMMs of issue 14 (gemm.json), the sm_90a GEMM check of issue 18
 * (gemm_sm90a.json), all as CUDA sources the check compiles on the GPU machine, then Node and the
 * built tidarc package (pack-runtime.sh, for the runtime and e2e parts), then nvcc builds every
 * fatbin for sm_90 here (prebuild.py: device time saved; the check rebuilds on another arch). It checks that the
 * working tree and the bundle fit what the device tool carries and that no script the check runs
 * is gitignored, and prints the device tool's `run` call. --dry-run: the small grid and shapes with
 * their emulator modules, into out/device-check-dry, for device_check.py --dry-run.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { DRY_RUN_BENCH, FULL_BENCH } from '../../src/bench/attention-points.js';
import { DEVICE_BUDGET_S, checkCarry, deviceRunCall, mib } from '../../src/bench/device-carry.js';
import { DRY_RUN_GRID, DRY_RUN_TUNE, FULL_GRID, FULL_TUNE, prepareDeviceBundle } from '../../src/bench/device-bundle.js';
import { DRY_RUN_GEMM, FULL_GEMM, prepareGemmBundle } from '../../src/bench/gemm-bundle.js';
import { DRY_RUN_SM90A, FULL_SM90A, prepareSm90aBundle } from '../../src/bench/gemm-sm90a-bundle.js';
import { DRY_RUN_ATTENTION_SM90A, FULL_ATTENTION_SM90A, prepareAttentionSm90aBundle } from '../../src/bench/attention-sm90a-bundle.js';
import { writeE2ePredictions } from '../../src/bench/e2e-bundle.js';
import { TidarcError } from '../../src/errors.js';
import { findNvcc } from '../../src/build/toolchain.js';

/** The device tool lends H200s (compute capability 9.0); on another arch the check builds its fatbins itself. */
const PREBUILD_ARCH = '90';

function bytesUnder(path: string): number {
  const s = statSync(path);
  return s.isDirectory() ? readdirSync(path).reduce((n, f) => n + bytesUnder(join(path, f)), 0) : s.size;
}

function fatbinsUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? fatbinsUnder(p) : e.name.endsWith('.fatbin') || e.name === 'prebuilt.json' ? [p] : [];
  });
}

function git(args: string[]): string {
  return execFileSync('git', args, { encoding: 'utf8', maxBuffer: 64 << 20 });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const dry = args.includes('--dry-run');
  const at = args.indexOf('--out');
  const outDir = at >= 0 ? args[at + 1]! : dry ? 'out/device-check-dry' : 'out/device-check';
  const budgetAt = args.indexOf('--budget');
  const budget = budgetAt >= 0 ? Number(args[budgetAt + 1]) : DEVICE_BUDGET_S;
  const repo = git(['rev-parse', '--show-toplevel']).trim();
  const call = deviceRunCall(relative(repo, resolve(outDir)), budget);  // refuses a bundle outside the repository before anything is written

  // An earlier prepare's fatbins and prebuilt.json would be taken as built from these sources: gone before they are written.
  if (existsSync(outDir)) for (const f of fatbinsUnder(outDir)) rmSync(f);
  const grid = await prepareDeviceBundle({ outDir, grid: dry ? DRY_RUN_GRID : FULL_GRID, tune: dry ? DRY_RUN_TUNE : FULL_TUNE, bench: dry ? DRY_RUN_BENCH : FULL_BENCH, emulated: dry, log: (l) => console.error(l) });
  const gemm = await prepareGemmBundle(outDir, dry ? DRY_RUN_GEMM : FULL_GEMM, dry);
  const sm90a = await prepareSm90aBundle(outDir, dry ? DRY_RUN_SM90A : FULL_SM90A, dry);
  // Issue 18: the sm_90a attention against its mma.sync twin and Flex (attention_sm90a.json, run by parts.py's sm90a part).
  const sm90aAttention = await prepareAttentionSm90aBundle(outDir, dry ? DRY_RUN_ATTENTION_SM90A : FULL_ATTENTION_SM90A, dry);
  // Issue 16: the e2e part prints each measured step beside the step cost model's prediction.
  const e2e = await writeE2ePredictions(outDir, dry);
  const tuned = grid.tune?.variants.flatMap((v) => v.buckets) ?? [];
  console.log(`${outDir}: ${grid.models.length} models, ${grid.models.reduce((n, m) => n + m.variants.length, 0)} variants; tune: ${grid.tune?.tiles.length ?? 0} tiles, ${tuned.length} buckets, ${tuned.reduce((n, b) => n + b.configs.length, 0)} configurations; gemm: ${gemm.units.length} weight shapes x ${gemm.units[0]?.kernels.length ?? 0} row counts; gemm search: ${(gemm.tune ?? []).reduce((n, t) => n + t.candidates.length, 0)} candidates in ${(gemm.tune ?? []).reduce((n, t) => n + t.sources.length, 0)} sources; sm_90a GEMM check: ${sm90a.units.length} weight shapes x ${sm90a.units[0]?.kernels.length ?? 0} token tiles; sm_90a attention: ${sm90aAttention.cases.map((c) => c.name).join(', ')} at ${sm90aAttention.points.length} points; e2e predictions: ${e2e.models.reduce((n, m) => n + m.rows.length, 0)} steps`);

  if (!args.includes('--no-pack')) {
    const pack = spawnSync('bash', [join(repo, 'scripts/device-check/pack-runtime.sh'), outDir], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (pack.status !== 0) throw new TidarcError('build-failed', 'pack-runtime.sh failed (Node and the tidarc package for the runtime and e2e parts)', { source: outDir });
  }
  // nvcc needs no GPU: every fatbin built here is device time saved there (minutes for the GEMM search's sources).
  if (!dry && !args.includes('--no-prebuild')) {
    const nvcc = await findNvcc();
    if (nvcc.found) {
      const built = spawnSync('python3', [join(repo, 'scripts/device-check/device_check.py'), '--prebuild', PREBUILD_ARCH, '--bundle', outDir], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, NVCC: nvcc.tool.path } });
      if (built.status !== 0) throw new TidarcError('build-failed', `nvcc could not prebuild the bundle for sm_${PREBUILD_ARCH} (the GPU machine would fail the same way)`, { source: outDir });
    } else {
      console.error(`prepare: no nvcc here, so the GPU machine builds the fatbins itself (minutes of its device time): ${nvcc.reason}`);
    }
  }

  // What travels: tracked and untracked-not-ignored files, plus the carried bundle.
  const tree = git(['-C', repo, 'ls-files', '-z', '-co', '--exclude-standard']).split('\0').filter(Boolean);
  const treeBytes = tree.reduce((n, f) => { try { const s = statSync(join(repo, f)); return n + (s.isFile() ? s.size : 0); } catch { return n; } }, 0);
  const sizes = checkCarry({ treeBytes, bundleBytes: bytesUnder(outDir) }, call.carry[0]!);
  const scripts = readdirSync(join(repo, 'scripts/device-check')).map((f) => `scripts/device-check/${f}`);
  const ignored = spawnSync('git', ['-C', repo, 'check-ignore', ...scripts], { encoding: 'utf8' }).stdout.trim();
  if (ignored) throw new TidarcError('invalid-argument', 'the device check runs scripts that git ignores, so the device tool would not copy them', { field: 'scripts/device-check', value: ignored.split('\n').join(', '), allowed: 'tracked or untracked-not-ignored files' });
  console.log(`carry: ${mib(treeBytes)} working tree + ${mib(sizes.totalBytes - treeBytes)} bundle = ${mib(sizes.totalBytes)} (${mib(sizes.spareBytes)} under the device tool's limit)`);
  console.log(dry
    ? `dry run: TIDARC_LIBCUDA=$(node bin/tidarc.js emulated-driver) python3 scripts/device-check/device_check.py --bundle ${call.carry[0]} --out out/device-check-dry-results --dry-run`
    : `device tool: run(command=${JSON.stringify(call.command)}, carry=${JSON.stringify(call.carry)}, timeout_s=${call.timeout_s})`);
}

main().catch((e: unknown) => {
  console.error(`tidarc: error: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
