/**
 * Writes the device check's bundle: `npm run device-check:prepare [-- --out DIR] [--dry-run]`.
 * Default: the full grid into out/device-check (CUDA sources; the check compiles them on the
 * GPU machine). --dry-run: the small grid plus emulator modules, for device_check.py --dry-run.
 */
import { DRY_RUN_GRID, FULL_GRID, prepareDeviceBundle } from '../../src/bench/device-bundle.js';

const args = process.argv.slice(2);
const dry = args.includes('--dry-run');
const at = args.indexOf('--out');
const outDir = at >= 0 ? args[at + 1]! : dry ? 'out/device-check-dry' : 'out/device-check';
const grid = await prepareDeviceBundle({ outDir, grid: dry ? DRY_RUN_GRID : FULL_GRID, emulated: dry, log: (l) => console.error(l) });
console.log(`${outDir}: ${grid.models.length} models, ${grid.models.reduce((n, m) => n + m.variants.length, 0)} variants`);
