// The folder-level layering check (scripts/check-folder-cycles.ts) on src/ and on small trees.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, test } from 'vitest';
import { folderCycles, folderEdges, readSources } from '../../scripts/check-folder-cycles.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = join(repo, 'scripts', 'check-folder-cycles.ts');
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-cycles-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function tree(name: string, files: Record<string, string>): string {
  const root = join(scratch, name);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

function check(srcDir: string): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, srcDir], { cwd: repo, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

test('src/ has no folder cycles (the script exits 0)', () => {
  expect(folderCycles(folderEdges(readSources(join(repo, 'src'))))).toEqual([]);
  expect(check(join(repo, 'src'))).toEqual({ status: 0, out: expect.stringContaining('no folder cycles') });
});

test('a cycle through a type-only import is found, with the imports that make it, and the script exits 1', () => {
  const root = tree('typed', {
    'runtime/loader.ts': "import { tuned } from '../tune/apply.js';\nexport const x = tuned;\n",
    'tune/apply.ts': "import type { Runner } from '../runtime/loader.js';\nexport const tuned = 1;\nexport type R = Runner;\n",
  });
  const cycles = folderCycles(folderEdges(readSources(root)));
  expect(cycles.map((c) => c.path)).toEqual([['runtime', 'tune', 'runtime']]);
  expect(cycles[0]!.steps.map((s) => `${s.file} ${s.specifier}`)).toEqual(['runtime/loader.ts ../tune/apply.js', 'tune/apply.ts ../runtime/loader.js']);
  const r = check(root);
  expect(r.status).toBe(1);
  expect(r.out).toContain('folder cycle: runtime -> tune -> runtime');
  expect(r.out).toContain("tune -> runtime: src/tune/apply.ts imports '../runtime/loader.js'");
});

test('a three-folder cycle through a dynamic import and an export-from is found', () => {
  const root = tree('three', {
    'a/x.ts': "export { y } from '../b/y.js';\n",
    'b/y.ts': "export const y = async () => (await import('../c/z.js')).z;\n",
    'c/z.ts': "import '../a/x.js';\nexport const z = 1;\n",
  });
  expect(folderCycles(folderEdges(readSources(root))).map((c) => c.path)).toEqual([['a', 'b', 'c', 'a']]);
});

test('files directly in src/ are nodes of their own: the API entry over folders that import errors.ts is no cycle', () => {
  const root = tree('root-files', {
    'index.ts': "export * from './runtime/r.js';\n",
    'errors.ts': 'export class E extends Error {}\n',
    'runtime/r.ts': "import { E } from '../errors.js';\nexport const r = new E();\n",
    'runtime/deep/s.ts': "import { r } from '../r.js';\nimport { u } from '../../util/u.js';\nexport const s = [r, u];\n",
    'util/u.ts': 'export const u = 1;\n',
  });
  const edges = folderEdges(readSources(root));
  expect(edges.map((e) => `${e.from}->${e.to}`).sort()).toEqual(['index.ts->runtime', 'runtime->errors.ts', 'runtime->util']);
  expect(folderCycles(edges)).toEqual([]);
});
