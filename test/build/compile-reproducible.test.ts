/**
 * Issue 17 item 7: a compile is a function of its input, not of where it is written.
 * - The same model compiled into two output directories (different paths and depths) gives
 *   the same files with the same bytes (sources, manifest, bindings).
 * - The fatbins too: a unit compiled by the nvcc command line compile-model runs
 *   (nvccUnitArgs), in two such directories, gives byte-identical fatbins. nvcc used to name
 *   internal symbols after a hash of the source's absolute path. One unit per kind (an
 *   attention variant with its internal constants, the operators, a GEMM) keeps it to seconds.
 * Tagged: nvcc for the second part (skipped where it is absent; CI has it).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { nvccUnitArgs } from '../../src/build/nvcc-unit.js';
import { findNvcc } from '../../src/build/toolchain.js';
import type { Manifest } from '../../src/codegen/manifest.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { packageRoot } from '../../src/util/paths.js';

const exec = promisify(execFile);
const nvcc = await findNvcc();
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-reproducible-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const dirs = [join(scratch, 'a'), join(scratch, 'a much longer name', 'nested', 'b')] as const;

function listFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

function differing(files: readonly string[]): string[] {
  return files.filter((f) => !readFileSync(join(dirs[0], f)).equals(readFileSync(join(dirs[1], f))));
}

let manifest: Manifest;
beforeAll(async () => {
  const spec = await loadModelSpecFile(join(packageRoot(), 'examples', 'tiny.json'));
  for (const outDir of dirs) manifest = (await compileModel({ spec, arches: ['sm_80'], outDir, build: 'none', log: () => undefined })).manifest;
});

describe('the same model compiled into two directories', () => {
  test('gives the same files with the same bytes', () => {
    const [first, second] = dirs.map(listFiles) as [string[], string[]];
    expect(first).toContain('cuda/ar.cu');
    expect(second).toEqual(first);
    expect(differing(first)).toEqual([]);
  });

  test.skipIf(!nvcc.found)('gives byte-identical fatbins from the nvcc command line compile-model runs', async () => {
    const units = ['cuda/ar.cu', 'cuda/tidarc_ops.cu', manifest.gemms![0]!.source];
    const fatbins = units.map((u) => u.replace(/\.cu$/, '.fatbin'));
    for (const dir of dirs) {
      mkdirSync(join(dir, 'cuda'), { recursive: true });
      await Promise.all(units.map((u, i) => exec(nvcc.found ? nvcc.tool.path : 'nvcc', nvccUnitArgs(manifest.nvccFlags, u, fatbins[i]!), { cwd: dir, maxBuffer: 64 << 20 })));
    }
    expect(differing(fatbins)).toEqual([]);
  }, 300_000);
});
