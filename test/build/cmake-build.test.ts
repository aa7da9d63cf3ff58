/**
 * Issue 13 item 2: the generated CMakeLists.txt builds exactly what `tidarc compile` builds,
 * because both come from the targets' build stages (src/codegen/build-steps.ts).
 * - CPU: compileModel builds the CPU target of a small model (ar + prefill_c64 + the library
 *   source: the fewest units a model has); cmake builds the same directory; the build tree holds
 *   the same products by name and cpu/libtidarc_cpu.so is byte-identical (same compiler, flags,
 *   object order; no -g, so no paths inside).
 * - CUDA (sm_80): the CMake file names one fatbin per nvcc unit compile-model builds (variants,
 *   operators, GEMMs), and the `ar` unit cmake builds is byte-identical to the one compile-model's
 *   step writes. One unit, not all eight: nvcc takes ~10 s a unit on CI's two cores.
 * Tagged: g++ and cmake (CPU half), nvcc (CUDA half); each half skips with its reason.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { findCxx, findNvcc } from '../../src/build/toolchain.js';
import { cudaUnits, planBuild, stepArgs } from '../../src/codegen/build-steps.js';
import { TARGETS } from '../../src/codegen/targets.js';
import { smallSpec } from '../helpers/random-model.js';

const exec = promisify(execFile);
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-cmake-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const [cxx, nvcc] = await Promise.all([findCxx(), findNvcc()]);
const cmake = await exec('cmake', ['--version']).then(() => true, () => false);
const spec = smallSpec('cmake_check', []);

/** Every file under `dir`, relative, sorted. */
function productsIn(dir: string, ext: RegExp): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && ext.test(e.name))
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

async function cmakeBuild(src: string, target?: string): Promise<string> {
  const tree = `${src}-cmake`;
  // CXX as tidarc found it: the same compiler must build both for the bytes to agree.
  const env = { ...process.env, ...(cxx.found ? { CXX: cxx.tool.path } : {}), ...(nvcc.found ? { NVCC: nvcc.tool.path } : {}) };
  await exec('cmake', ['-S', src, '-B', tree], { env });
  await exec('cmake', ['--build', tree, '-j', '2', ...(target ? ['--target', target] : [])], { env, maxBuffer: 64 << 20 });
  return tree;
}

describe.skipIf(!cxx.found || !cmake)('CMakeLists.txt of a CPU compile (needs g++ and cmake)', () => {
  test('builds the library tidarc compile builds, byte for byte', { timeout: 300_000 }, async () => {
    const out = join(scratch, 'cpu');
    const r = await compileModel({ spec, drafts: [], targets: ['cpu'], outDir: out, build: 'all', jobs: 2, log: () => undefined });
    expect(r.manifest.build?.cpu?.library).toBe('cpu/libtidarc_cpu.so');
    // A CPU target is not an sm_80 in disguise: no CUDA sources, no arches.
    expect(existsSync(join(out, 'cuda'))).toBe(false);
    expect(r.manifest.arches).toEqual([]);
    const tree = await cmakeBuild(out);
    expect(productsIn(join(tree, 'cpu'), /\.so$/)).toEqual(productsIn(join(out, 'cpu'), /\.so$/));
    expect(readFileSync(join(tree, 'cpu', 'libtidarc_cpu.so')).equals(readFileSync(join(out, 'cpu', 'libtidarc_cpu.so')))).toBe(true);
  });
});

describe.skipIf(!nvcc.found || !cmake)('CMakeLists.txt of an sm_80 compile (needs nvcc and cmake)', () => {
  test('names every fatbin compile-model builds, and builds one byte-identical to its step', { timeout: 300_000 }, async () => {
    const out = join(scratch, 'sm80');
    const r = await compileModel({ spec, drafts: [], targets: ['sm_80'], outDir: out, build: 'none', log: () => undefined });
    const files = productsIn(out, /./);
    const plan = planBuild([TARGETS.sm_80], r.manifest, files);
    const units = cudaUnits(r.manifest).map((u) => u.name);
    expect(plan.cuda!.steps.map((s) => s.unit)).toEqual(units);
    expect(units).toEqual(expect.arrayContaining(['ar', 'tidarc_ops', ...(r.manifest.gemms ?? []).map((g) => g.unit)]));
    const cmakeLists = readFileSync(join(out, 'CMakeLists.txt'), 'utf8');
    const named = [...cmakeLists.matchAll(/OUTPUT \$\{CMAKE_CURRENT_BINARY_DIR\}\/(\S+\.fatbin)/g)].map((m) => m[1]);
    expect(named).toEqual(plan.cuda!.steps.map((s) => s.output));
    // compile-model runs each step in the output directory with stepArgs (build-steps.ts).
    const step = plan.cuda!.steps.find((s) => s.unit === 'ar')!;
    await exec(nvcc.found ? nvcc.tool.path : 'nvcc', stepArgs(step), { cwd: out, maxBuffer: 64 << 20 });
    const tree = await cmakeBuild(out, 'tidarc_fatbin_ar');
    expect(productsIn(join(tree, 'cuda'), /\.fatbin$/)).toEqual(['ar.fatbin']);
    expect(readFileSync(join(tree, 'cuda', 'ar.fatbin')).equals(readFileSync(join(out, 'cuda', 'ar.fatbin')))).toBe(true);
  });
});
