/**
 * Writes the device check's bundle: `npm run device-check:prepare [-- --out DIR] [--dry-run]`.
 * Default: the full grid, the CUDA search's tiles and the GEMMs of issue 14 into out/device-check
 * (CUDA sources; the check compiles them on the GPU machine) and the benchmark's points (the runtime's split-KV
 * count at ptxas's occupancy, the cost model's prediction). --dry-run: the small grid and search plus emulator
 * modules, for device_check.py --dry-run.
 */
import { DRY_RUN_BENCH, FULL_BENCH } from '../../src/bench/attention-points.js';
import { DRY_RUN_GRID, DRY_RUN_TUNE, FULL_GRID, FULL_TUNE, prepareDeviceBundle } from '../../src/bench/device-bundle.js';
import { DRY_RUN_GEMM, FULL_GEMM, prepareGemmBundle } from '../../src/bench/gemm-bundle.js';

const args = process.argv.slice(2);
const dry = args.includes('--dry-run');
const at = args.indexOf('--out');
const outDir = at >= 0 ? args[at + 1]! : dry ? 'out/device-check-dry' : 'out/device-check';
const grid = await prepareDeviceBundle({ outDir, grid: dry ? DRY_RUN_GRID : FULL_GRID, tune: dry ? DRY_RUN_TUNE : FULL_TUNE, bench: dry ? DRY_RUN_BENCH : FULL_BENCH, emulated: dry, log: (l) => console.error(l) });
// The GEMM part (issue 14): gemm/ and gemm.json beside grid.json.
const gemm = await prepareGemmBundle(outDir, dry ? DRY_RUN_GEMM : FULL_GEMM, dry);
const tuned = grid.tune?.variants.flatMap((v) => v.buckets) ?? [];
console.log(`${outDir}: ${grid.models.length} models, ${grid.models.reduce((n, m) => n + m.variants.length, 0)} variants; tune: ${grid.tune?.tiles.length ?? 0} tiles, ${tuned.length} buckets, ${tuned.reduce((n, b) => n + b.configs.length, 0)} configurations; gemm: ${gemm.units.length} weight shapes x ${gemm.units[0]?.kernels.length ?? 0} row counts; gemm search: ${(gemm.tune ?? []).reduce((n, t) => n + t.candidates.length, 0)} candidates in ${(gemm.tune ?? []).reduce((n, t) => n + t.sources.length, 0)} sources`);
