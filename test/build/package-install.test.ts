/**
 * Issue 17 item 1: tidarc installs as a dependency from its own tarball. A copy of this working
 * tree (so that the prepack build does not rewrite the dist/ other tests run) is packed as
 * `npm pack` does it (prepack: a clean dist/ built by tsc; `files` picks what ships), the
 * tarball is installed with `npm install --no-audit` into an empty project in a temporary
 * directory (dependencies from the registry; the install script builds the native addon with
 * cmake-js, no TypeScript), and the installed package is used as a user would: `npx tidarc
 * --help`, `npx tidarc compile`, a loadModel decode (greedy TiDAR == greedy AR) of a checkpoint
 * made by `npx tidarc init-model`, and the kernels it compiled through require().
 * Needs: npm and the registry (or its cache), git, cmake, g++. About a minute and a half.
 */
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

const exec = promisify(execFile);
const repo = resolve(import.meta.dirname, '..', '..');
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-package-'));
const source = join(scratch, 'tidarc');
const app = join(scratch, 'app');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

// No nvcc (fatbins are tested elsewhere; here they would only cost minutes), a private kernel cache.
const env: NodeJS.ProcessEnv = { ...process.env, NVCC: join(scratch, 'no-nvcc'), TIDARC_CACHE: join(scratch, 'cache'), npm_config_update_notifier: 'false' };
delete env['TIDARC_DEBUG'];

async function sh(cmd: string, args: readonly string[], cwd: string, timeout = 300_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(cmd, args, { cwd, env, timeout, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string; message: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? err.message };
  }
}

async function ok(cmd: string, args: readonly string[], cwd: string): Promise<string> {
  const r = await sh(cmd, args, cwd);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

let shipped: string[] = [];

beforeAll(async () => {
  // The working tree as a clone would have it: tracked and new files, nothing git ignores.
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: repo, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const f of files) {
    if (!existsSync(join(repo, f))) continue; // deleted in the working tree
    mkdirSync(dirname(join(source, f)), { recursive: true });
    copyFileSync(join(repo, f), join(source, f));
  }
  symlinkSync(join(repo, 'node_modules'), join(source, 'node_modules'), 'dir');
  // What `npm pack` runs: prepack (then prepare, the same tsc again; skipped here to save its time).
  await ok('npm', ['run', 'prepack'], source);
  const packed = JSON.parse(await ok('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', scratch], source)) as { filename: string; files: { path: string }[] }[];
  shipped = packed[0]!.files.map((f) => f.path).sort();
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), `${JSON.stringify({ name: 'app', version: '1.0.0', main: 'index.js', license: 'ISC' }, null, 2)}\n`);
  await ok('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(scratch, packed[0]!.filename)], app);
}, 400_000);

describe('the packed tarball', () => {
  test('ships the built library, the CLI and what it reads at run time', () => {
    for (const f of ['bin/tidarc.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/kernels.js', 'dist/src/cli/main.js', 'examples/tiny.json',
      'package.json', 'README.md', 'runtime/CMakeLists.txt', 'runtime/build-native.mjs', 'runtime/src/addon.cc', 'runtime/emu/fake_cuda.cpp',
      'runtime/gpu/gpu_main.cu', 'templates/cuda/tidarc_device.cuh', 'templates/cpu/library.cpp.hbs']) {
      expect(shipped).toContain(f);
    }
  });

  test('is lean: no tests, TypeScript sources, benchmarks, goldens, models or tools', () => {
    const extra = shipped.filter((f) => /^(test|src|bench|scripts|generated|models|tools|build|\.ci)\//.test(f) || /^dist\/(bench|scripts)\//.test(f) || /\.tsbuildinfo$/.test(f));
    expect(extra).toEqual([]);
    // A bound on wholesale inclusion (a stray folder ships hundreds of files), not on growth: each
    // module of src/ ships as .js + .d.ts, and the package held 411 files at 2026-12-05.
    expect(shipped.length).toBeLessThan(520);
  });
});

describe('installed as a dependency', () => {
  test('npx tidarc --help lists the commands', async () => {
    const r = await sh('npx', ['--no-install', 'tidarc', '--help'], app);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const command of ['compile', 'run', 'init-model', 'tune', 'doctor']) expect(r.stdout).toContain(command);
  });

  test('the native addon was built at install time', () => {
    expect(existsSync(join(app, 'node_modules', 'tidarc', 'build', 'native', 'Release', 'tidarc_native.node'))).toBe(true);
  });

  test('npx tidarc compile writes the bundled model\'s kernels', async () => {
    // Sources only: the C++ build from the package's templates runs in the loadModel test below.
    const r = await sh('npx', ['--no-install', 'tidarc', 'compile', '--out', 'kernels', '--no-build', '--json'], app);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { variants: { name: string }[] };
    expect(summary.variants.map((v) => v.name)).toEqual(expect.arrayContaining(['tidar_k2', 'tidar_k4', 'ar']));
    for (const f of ['cuda/tidar_k4.cu', 'cpu/tidar_k4.cpp', 'manifest.json', 'index.js', 'index.cjs', 'package.json']) expect(existsSync(join(app, 'kernels', f)), f).toBe(true);
  });

  test('a strict TypeScript project (rootDir src) type-checks its import of the compiled index.js against index.d.ts', async () => {
    // tsc --init's strict settings, no @types/node; the README's ES module import. An index.ts
    // beside index.js was taken into this program instead: TS6059 (not under rootDir).
    mkdirSync(join(app, 'src'), { recursive: true });
    writeFileSync(join(app, 'src', 'use.mts'), `import { load, variants, model, type VariantName } from '../kernels/index.js';
const kernels = load({ backend: 'cpu' });
const steps: 20 = variants.tidar_k4.steps;
const names: VariantName[] = ['ar', 'tidar_k2'];
const headDim: 64 = model.headDim;
const backend: string = kernels.backend;
kernels.close();
export { steps, names, headDim, backend };
`);
    writeFileSync(join(app, 'tsconfig.json'), `${JSON.stringify({
      compilerOptions: { module: 'nodenext', target: 'esnext', types: [], strict: true, noUncheckedIndexedAccess: true, exactOptionalPropertyTypes: true,
        verbatimModuleSyntax: true, isolatedModules: true, skipLibCheck: false, rootDir: 'src', outDir: 'out', declaration: true },
      include: ['src'],
    }, null, 2)}\n`);
    const r = await sh(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], app);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(readdirSync(join(app, 'out')).sort()).toEqual(['use.d.mts', 'use.mjs']);
  });

  test('loadModel decodes a checkpoint: greedy TiDAR gives the greedy AR tokens', async () => {
    const init = await sh('npx', ['--no-install', 'tidarc', 'init-model', 'node_modules/tidarc/examples/tiny.json', '--seed', '3', '--out', 'model'], app);
    expect(init.code, init.stderr).toBe(0);
    writeFileSync(join(app, 'decode.mjs'), `import { loadModel } from 'tidarc';
const model = await loadModel('model', { backend: 'cpu' });
const tidar = await model.generate({ prompt: 'def main(', maxTokens: 12, mode: 'tidar', draft: 2, stopAtEos: false });
const ar = await model.generate({ prompt: 'def main(', maxTokens: 12, mode: 'ar', stopAtEos: false });
model.close();
console.log(JSON.stringify({ tidar: tidar.tokens, ar: ar.tokens, nfe: tidar.nfe, backend: tidar.backend }));
`);
    const r = await sh(process.execPath, ['decode.mjs'], app);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { tidar: number[]; ar: number[]; nfe: number; backend: string };
    expect(out.backend).toBe('cpu');
    expect(out.tidar).toHaveLength(12);
    expect(out.tidar).toEqual(out.ar);
    expect(readFileSync(join(app, 'model', 'config.json'), 'utf8')).toContain('"tidar"');
  });

  test('the kernels loadModel compiled (a compile output in the kernel cache) run through require()', async () => {
    const [dir] = readdirSync(join(scratch, 'cache', 'kernels'));
    // The AR step at an empty prefix sees its own key only: o is v exactly (bf16 1.5 = 0x3fc0).
    writeFileSync(join(app, 'use-kernels.js'), `const { load, variants } = require(${JSON.stringify(join(scratch, 'cache', 'kernels', dir!))});
const { qHeads, kvHeads, headDim } = variants.ar.shape;
const k = load({ backend: 'cpu' });
const out = k.ar({ batch: 1, cacheCapacity: 2, prefixLen: [0], q: new Uint16Array(qHeads * headDim),
  kCache: new Uint16Array(kvHeads * 2 * headDim), vCache: new Uint16Array(kvHeads * 2 * headDim),
  kStep: new Uint16Array(kvHeads * headDim), vStep: new Uint16Array(kvHeads * headDim).fill(0x3fc0) });
k.close();
console.log(JSON.stringify([...new Set(out.o)]));
`);
    const r = await sh(process.execPath, ['use-kernels.js'], app);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([0x3fc0]);
  });
});
