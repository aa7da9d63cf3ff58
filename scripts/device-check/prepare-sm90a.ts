/**
 * Writes the device check's sm_90a GEMM part (issue 18): `npm run device-check:prepare-sm90a
 * [-- --out DIR] [--dry-run]` -> DIR/gemm_sm90a.json and DIR/gemm_sm90a/ (sources; --dry-run:
 * the small shapes and their emulator modules). Then, on the H200:
 *   python3 scripts/device-check/gemm_sm90a.py --bundle DIR
 * and without a GPU: TIDARC_LIBCUDA=<emulated driver> python3 scripts/device-check/gemm_sm90a.py --bundle DIR --dry-run
 */
import { DRY_RUN_SM90A, FULL_SM90A, prepareSm90aBundle } from '../../src/bench/gemm-sm90a-bundle.js';

const args = process.argv.slice(2);
const dry = args.includes('--dry-run');
const at = args.indexOf('--out');
const outDir = at >= 0 ? args[at + 1]! : dry ? 'out/device-check-dry' : 'out/device-check';
const bundle = await prepareSm90aBundle(outDir, dry ? DRY_RUN_SM90A : FULL_SM90A, dry);
console.log(`${outDir}: sm_90a GEMM check, ${bundle.units.length} weight shapes x ${bundle.units[0]?.kernels.length ?? 0} token tiles at ${bundle.rows} rows`);
