/**
 * Issue 17 item 2: a compiled directory loads from both module systems, wherever it lies.
 * The tiny model is compiled (CPU build) into a directory that no project with tidarc is
 * above; scratch projects with tidarc in their node_modules (a link to this package, as
 * `npm install` of a local path makes) then load it as a user would: `require('../kernels')`
 * from a default `npm init -y` (CommonJS) project, `import ... from '../kernels/index.js'`
 * from an .mjs file of that project and from an ES module project. Each runs the AR kernel
 * on inputs whose result is known exactly. A project without tidarc gets one clear error.
 * Needs: g++, the native addon and the built dist/ (`npm run build:ts`).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';

const run = promisify(execFile);
const repo = resolve(import.meta.dirname, '..', '..');
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-library-modules-'));
const kernels = join(scratch, 'kernels');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * The AR step at an empty prefix attends to its own key only: o is v exactly (bf16 1.5 =
 * 0x3fc0) and lse is q.k * scale = 0. Prints what it got as JSON.
 */
function arCheck(loadExpr: string): string {
  return `${loadExpr}
const k = load({ backend: 'cpu' });
const { qHeads, kvHeads, headDim } = variants.ar.shape;
const out = k.ar({
  batch: 1, cacheCapacity: 4, prefixLen: [0],
  q: new Uint16Array(qHeads * headDim), kCache: new Uint16Array(kvHeads * 4 * headDim), vCache: new Uint16Array(kvHeads * 4 * headDim),
  kStep: new Uint16Array(kvHeads * headDim), vStep: new Uint16Array(kvHeads * headDim).fill(0x3fc0),
});
k.close();
console.log(JSON.stringify({ backend: k.backend, o: [...new Set(out.o)], lse: [...new Set(out.lse)], model: model.name }));
`;
}

function project(name: string, pkg: object, withTidarc: boolean): string {
  const dir = join(scratch, name);
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  if (withTidarc) symlinkSync(repo, join(dir, 'node_modules', 'tidarc'), 'dir');
  return dir;
}

/** What `npm init -y` writes: no "type", so .js files are CommonJS. */
const npmInit = (name: string) => ({ name, version: '1.0.0', main: 'index.js', scripts: { test: 'echo "Error: no test specified" && exit 1' }, keywords: [], author: '', license: 'ISC' });

async function node(cwd: string, file: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [file], { cwd, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

const EXPECTED = { backend: 'cpu', o: [0x3fc0], lse: [0], model: 'tiny' };

describe('a compiled directory outside any project with tidarc', () => {
  let cjs: string;
  let esm: string;
  let bare: string;

  beforeAll(async () => {
    const spec = await loadModelSpecFile(join(repo, 'examples', 'tiny.json'));
    // Only what the projects run (the module formats are under test, not the kernels): 1 of tiny's 6 variants' C++.
    await compileModel({ spec, arches: ['sm_80'], outDir: kernels, build: 'cpu', variants: ['ar'], log: () => undefined });
    cjs = project('cjs-project', npmInit('cjs-project'), true);
    writeFileSync(join(cjs, 'index.js'), arCheck(`const { load, variants, model } = require('../kernels');`));
    writeFileSync(join(cjs, 'esm.mjs'), arCheck(`import { load, variants, model } from '../kernels/index.js';`));
    esm = project('esm-project', { name: 'esm-project', version: '1.0.0', type: 'module' }, true);
    writeFileSync(join(esm, 'index.js'), arCheck(`import { load, variants, model } from '../kernels/index.js';`));
    bare = project('bare-project', npmInit('bare-project'), false);
    writeFileSync(join(bare, 'index.mjs'), arCheck(`import { load, variants, model } from '../kernels/index.js';`));
    writeFileSync(join(bare, 'index.js'), arCheck(`const { load, variants, model } = require('../kernels');`));
  }, 300_000);

  test('require() from a CommonJS project (npm init -y) runs the kernels', async () => {
    const r = await node(cjs, 'index.js');
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual(EXPECTED);
  });

  test('import from an .mjs file of that CommonJS project runs the kernels', async () => {
    const r = await node(cjs, 'esm.mjs');
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual(EXPECTED);
  });

  test('import from an ES module project runs the kernels', async () => {
    const r = await node(esm, 'index.js');
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual(EXPECTED);
  });

  test.each(['index.mjs', 'index.js'])('without tidarc installed anywhere, %s fails with one line naming the kernels and what to do', async (file) => {
    const r = await node(bare, file);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`tidarc: error: the kernels in ${kernels}`);
    expect(r.stderr).toContain('need the tidarc package at run time');
    expect(r.stderr).toContain('npm install tidarc');
  });
});
