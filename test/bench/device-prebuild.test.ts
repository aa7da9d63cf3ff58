/**
 * The device check's prebuild (scripts/device-check/prebuild.py, run by prepare.ts): every fatbin
 * the GPU parts launch is built before the GPU session, for sm_90, with the flags the parts would
 * use (the attention grid and its tuning tiles, the GEMM units, ops and search sources, the sm_90a
 * GEMM units for sm_90a; an earlier prepare's fatbins rebuilt, not taken), and prebuilt.json records the arch and ptxas's registers; the parts take
 * it only for that arch. nvcc here is a recording stand-in (the real one takes minutes for these
 * sources; ptxas of the same sources is tested with the generators). Needs python3 with numpy.
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type BundleGrid, DRY_RUN_GRID, DRY_RUN_TUNE, prepareDeviceBundle } from '../../src/bench/device-bundle.js';
import { type BundleGemm, DRY_RUN_GEMM, prepareGemmBundle } from '../../src/bench/gemm-bundle.js';
import { DRY_RUN_SM90A, type Sm90aBundle, prepareSm90aBundle } from '../../src/bench/gemm-sm90a-bundle.js';

const exec = promisify(execFile);
const SCRIPTS = resolve('scripts/device-check');
const numpy = await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-prebuild-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Writes its arguments to the -o file and reports one kernel's registers as ptxas -v does; like
// nvcc it resolves the source and -o paths against its working directory.
const FAKE_NVCC = `#!/bin/bash
src="\${@: -1}"; [ -f "$src" ] || { echo "cc1plus: fatal error: $src: No such file or directory" >&2; exit 1; }
out=""; prev=""
for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done
echo "$@" > "$out"
echo "ptxas info    : Compiling entry function 'k_$(basename "$out" .fatbin)' for 'sm_90'" >&2
echo "ptxas info    : Used 42 registers, 380 bytes cmem[0]" >&2
`;

describe.skipIf(!numpy)('prebuild', () => {
  const bundle = join(root, 'bundle');
  let grid: BundleGrid;
  let gem: BundleGemm;
  let sm90a: Sm90aBundle;
  beforeAll(async () => {
    grid = await prepareDeviceBundle({ outDir: bundle, grid: DRY_RUN_GRID, tune: DRY_RUN_TUNE });
    gem = await prepareGemmBundle(bundle, DRY_RUN_GEMM);
    sm90a = await prepareSm90aBundle(bundle, DRY_RUN_SM90A, false);
    writeFileSync(join(root, 'nvcc'), FAKE_NVCC);
    chmodSync(join(root, 'nvcc'), 0o755);
  }, 120_000);

  test('every fatbin the parts launch, for sm_90 (sm_90a units for sm_90a), and prebuilt.json with the arch and the GEMM registers', async () => {
    writeFileSync(join(bundle, sm90a.units[0]!.fatbin), 'stale: an earlier prepare\'s');  // rebuilt, not taken
    // A bundle path relative to the working directory, as the GPU machine's command gives it.
    await exec('python3', [join(SCRIPTS, 'device_check.py'), '--prebuild', '90', '--bundle', 'bundle'], { cwd: root, env: { ...process.env, NVCC: join(root, 'nvcc') } });
    // The fatbins travel packed (the carry limit); the first prebuilt() on their arch unpacks them.
    expect(existsSync(join(bundle, 'prebuilt.tar.xz'))).toBe(true);
    expect(existsSync(join(bundle, sm90a.units[0]!.fatbin))).toBe(false);
    const unpack = `import sys, pathlib; sys.path.insert(0, sys.argv[1]); from prebuild import prebuilt; print(prebuilt(pathlib.Path(sys.argv[2]), '90') is not None)`;
    expect((await exec('python3', ['-c', unpack, SCRIPTS, bundle])).stdout.trim()).toBe('True');
    const sm90 = '-gencode=arch=compute_90,code=sm_90';
    const attention = [...grid.models, ...grid.tune!.tiles.map((t) => t.model)].flatMap((m) => m.variants.map((v) => v.fatbin));
    const gemms = [...gem.units.map((u) => u.fatbin), gem.ops.fatbin, ...(gem.tune ?? []).flatMap((t) => t.sources.map((s) => s.fatbin))];
    expect(attention.length).toBeGreaterThan(8);
    for (const f of [...attention, ...gemms]) expect(readFileSync(join(bundle, f), 'utf8'), f).toContain(sm90);
    for (const u of sm90a.units) expect(readFileSync(join(bundle, u.fatbin), 'utf8'), u.fatbin).toContain('-gencode=arch=compute_90a,code=sm_90a');
    const pre = JSON.parse(readFileSync(join(bundle, 'prebuilt.json'), 'utf8')) as { arch: string; registers: Record<string, number> };
    expect(pre.arch).toBe('90');
    expect(Object.keys(pre.registers).sort()).toEqual([...gem.units.map((u) => `k_${u.fatbin.split('/').pop()!.replace('.fatbin', '')}`), 'k_tidarc_ops'].sort());
    expect(Object.values(pre.registers).every((r) => r === 42)).toBe(true);
  }, 120_000);

  test('the parts take the prebuilt fatbins on the arch they were built for only; a failed prebuild leaves none', async () => {
    const probe = `import sys, pathlib; sys.path.insert(0, sys.argv[1]); from prebuild import prebuilt; b = pathlib.Path(sys.argv[2]); print(prebuilt(b, '90') is not None, prebuilt(b, '100') is None)`;
    expect((await exec('python3', ['-c', probe, SCRIPTS, bundle])).stdout.trim()).toBe('True True');
    writeFileSync(join(root, 'nvcc-broken'), '#!/bin/bash\necho "error: broken" >&2; exit 2\n');
    chmodSync(join(root, 'nvcc-broken'), 0o755);
    const r = await exec('python3', [join(SCRIPTS, 'device_check.py'), '--prebuild', '90', '--bundle', bundle], { env: { ...process.env, NVCC: join(root, 'nvcc-broken') } })
      .then(() => 0, (e: { code: number }) => e.code);
    expect(r).not.toBe(0);
    expect(existsSync(join(bundle, 'prebuilt.json'))).toBe(false);
    expect(existsSync(join(bundle, 'prebuilt.tar.xz'))).toBe(false);
  }, 120_000);
});
