/**
 * The generated TypeScript library of a compiled model (index.js/.d.ts/.cjs/.d.cts):
 * - its source type-checks against tidarc's public API under strict; a consumer's import of
 *   './index.js' resolves to index.d.ts (no index.ts is written: TypeScript would take it into
 *   the consumer's program), and a wrong call does not type-check;
 * - index.d.ts declares one method per variant (+ Async) and close; index.js is plain JS;
 * - end to end as a user would: compile with the CPU build inside the repository so that
 *   'tidarc/kernels' resolves by package self-reference to dist/, import the
 *   generated index.js, run a kernel and check it against the float64 reference.
 * Needs: g++ and the native addon (build/native) for the end-to-end part; it builds dist/
 * with tsc when dist/ is missing or older than src/.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Project, ts } from 'ts-morph';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { entryName, libraryTsSource } from '../../src/codegen/library-ts.js';
import { generateModel } from '../../src/codegen/generate.js';
import { stepVisibility } from '../../src/ir/mask.js';
import { causal, tidarDecode } from '../../src/ir/mask-builders.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { decode } from '../../src/util/dtype.js';
import type { AttentionInputs, AttentionOutputs } from '../../src/runtime/kernel-library.js';
import { randomAttentionInputs, referenceAttention } from '../../src/runtime/reference.js';

const repo = join(import.meta.dirname, '..', '..');
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-library-ts-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const EXAMPLES = ['tiny', 'qwen3-8b', 'qwen2.5-1.5b'];
const specs = new Map<string, ModelSpec>();
beforeAll(async () => {
  for (const name of EXAMPLES) specs.set(name, await loadModelSpecFile(join(repo, 'examples', `${name}.json`)));
});

function libraryFiles(name: string): ReadonlyMap<string, string> {
  return generateModel(specs.get(name)!, { arches: ['sm_80'] }).files;
}

describe('the generated library type-checks against tidarc', () => {
  const dir = join(scratch, 'typecheck');
  // One program for every consumer: loading lib.d.ts and @types/node once is most of the cost.
  let diagnostics: Map<string, string[]>;
  let resolvedImport: string | undefined;

  const inputs = `{
  batch: 1,
  cacheCapacity: 8,
  prefixLen: [3],
  q: new Uint16Array(variants.tidar_k4.steps * model.queryHeads * model.headDim),
  kCache: new Uint16Array(model.kvHeads * 8 * model.headDim),
  vCache: new Uint16Array(model.kvHeads * 8 * model.headDim),
  kStep: new Uint16Array(variants.tidar_k4.steps * model.kvHeads * model.headDim),
  vStep: new Uint16Array(variants.tidar_k4.steps * model.kvHeads * model.headDim),
}`;
  const consumers: Record<string, string> = {
    'good.ts': `import type { AttentionOutputs } from 'tidarc';
import { load, model, variants, type VariantName, type TinyKernels } from './index.js';

const kernels: TinyKernels = load({ backend: 'cpu' });
const out: AttentionOutputs = kernels.tidarK4(${inputs});
const o: Uint16Array = out.o;
const lse: Float32Array = out.lse;
const pending: Promise<AttentionOutputs> = kernels.tidarK2Async({ ...${inputs}, splits: 2, threads: 1 });
const steps: 20 = variants.tidar_k4.steps;
const headDim: 64 = model.headDim;
const names: VariantName[] = ['tidar_k2', 'tidar_k4', 'ar'];
const backend: string = kernels.backend;
kernels.close();
export { o, lse, pending, steps, headDim, names, backend };
`,
    'bad-variant.ts': `import { load, model, variants } from './index.js';
load().tidarK99(${inputs});
`,
    'bad-batch.ts': `import { load, model, variants } from './index.js';
load({ backend: 'cpu' }).tidarK4({ ...${inputs}, batch: 'two' });
`,
    'bad-backend.ts': `import { load } from './index.js';
load({ backend: 'tpu' });
`,
  };

  beforeAll(() => {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    // What a compile writes, as a consumer sees it; the source the library is built from apart.
    const generated = generateModel(specs.get('tiny')!, { arches: ['sm_80'] });
    for (const [file, text] of generated.files) if (/^(index\.|package\.json$)/.test(file)) writeFileSync(join(dir, file), text);
    mkdirSync(join(dir, 'source'));
    writeFileSync(join(dir, 'source', 'index.ts'), libraryTsSource(generated.manifest));
    for (const [file, text] of Object.entries(consumers)) writeFileSync(join(dir, file), text);
    const project = new Project({
      skipAddingFilesFromTsConfig: true,
      compilerOptions: {
        strict: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.ES2022,
        moduleResolution: ts.ModuleResolutionKind.Bundler,
        paths: { tidarc: [join(repo, 'src', 'index.ts')], 'tidarc/kernels': [join(repo, 'src', 'kernels.ts')] },
        types: ['node'],
        typeRoots: [join(repo, 'node_modules', '@types')],
        skipLibCheck: true,
        noEmit: true,
      },
    });
    project.addSourceFilesAtPaths([join('source', 'index.ts'), ...Object.keys(consumers)].map((f) => join(dir, f)));
    resolvedImport = project.getSourceFileOrThrow(join(dir, 'good.ts')).getImportDeclarations()[1]!.getModuleSpecifierSourceFile()?.getFilePath();
    diagnostics = new Map();
    for (const d of project.getPreEmitDiagnostics()) {
      const file = d.getSourceFile()?.getFilePath() ?? '(global)';
      const text = `${d.getCode()}: ${ts.flattenDiagnosticMessageText(d.getMessageText() as string | ts.DiagnosticMessageChain, ' ')}`;
      diagnostics.set(file, [...(diagnostics.get(file) ?? []), text]);
    }
  });

  test('a consumer\'s import of ./index.js resolves to index.d.ts, not a TypeScript source of the library', () => {
    expect(resolvedImport).toBe(join(dir, 'index.d.ts'));
  });

  test('a correct consumer, the library and tidarc itself have no diagnostics', () => {
    const unexpected = [...diagnostics].filter(([file]) => !/\/bad-[^/]+\.ts$/.test(file));
    expect(unexpected).toEqual([]);
  });

  test.each([
    ['an unknown variant', 'bad-variant.ts', /2339|2551/, /tidarK99/],
    ['a string as batch', 'bad-batch.ts', /2322/, /string.*number/],
    ['an unknown backend', 'bad-backend.ts', /2322/, /"tpu"/],
  ])('%s is a type error', (_name, file, code, message) => {
    const found = diagnostics.get(join(dir, file)) ?? [];
    expect(found.length).toBeGreaterThan(0);
    expect(found.join('\n')).toMatch(code);
    expect(found.join('\n')).toMatch(message);
  });
});

describe.for(EXAMPLES)('the generated bindings of %s', (name) => {
  test('index.d.ts declares one method per variant, its Async twin, close, and load', () => {
    const files = libraryFiles(name);
    const manifest = JSON.parse(files.get('manifest.json')!) as { variants: { name: string }[] };
    const project = new Project({ useInMemoryFileSystem: true });
    const dts = project.createSourceFile('/lib/index.d.ts', files.get('index.d.ts')!);
    const kernels = dts.getInterfaces().filter((i) => i.isExported() && i.getName().endsWith('Kernels'));
    expect(kernels).toHaveLength(1);
    const methods = kernels[0]!.getMethods().map((m) => m.getName()).sort();
    const expected = [...manifest.variants.flatMap((v) => [entryName(v.name), `${entryName(v.name)}Async`]), 'close'].sort();
    expect(methods).toEqual(expected);
    expect(kernels[0]!.getProperties().map((p) => p.getName())).toEqual(['backend']);
    for (const m of kernels[0]!.getMethods()) {
      if (m.getName() === 'close') continue;
      expect(m.getParameters().map((p) => p.getTypeNode()?.getText())).toEqual(['AttentionInputs']);
      expect(m.getReturnTypeNode()?.getText()).toBe(m.getName().endsWith('Async') ? 'Promise<AttentionOutputs>' : 'AttentionOutputs');
    }
    expect(dts.getFunction('load')?.isExported()).toBe(true);
    expect(dts.getVariableDeclaration('model')).toBeDefined();
    expect(dts.getVariableDeclaration('variants')).toBeDefined();
    expect(dts.getTypeAlias('VariantName')?.isExported()).toBe(true);
  });

  test('index.js and index.cjs are plain JavaScript that node accepts as an ES and a CommonJS module', () => {
    const files = libraryFiles(name);
    for (const [out, ext] of [['index.js', 'mjs'], ['index.cjs', 'cjs']] as const) {
      const file = join(scratch, `${name}-index.${ext}`);
      writeFileSync(file, files.get(out)!);
      expect(() => execFileSync(process.execPath, ['--check', file], { stdio: 'pipe' })).not.toThrow();
    }
    // The runtime without the compiler, found at run time (test/codegen/library-modules.test.ts).
    expect(files.get('index.js')).toMatch(/^const \{ openKernelLibrary \} = await import\(pathToFileURL\(tidarcKernels\(here\)\)\.href\);$/m);
    expect(files.get('index.cjs')).toMatch(/^const \{ openKernelLibrary \} = require\(tidarcKernels\(here\)\);$/m);
    expect(files.get('index.d.cts')).toBe(files.get('index.d.ts'));
    expect(JSON.parse(files.get('package.json')!)).toMatchObject({ type: 'module', main: './index.cjs' });
  });
});

// ---- end to end through dist/ -----------------------------------------------------------

/** Newest mtime of the TypeScript sources dist/ is built from. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Builds dist/ only when it is missing or stale, so CI (where `npm ci` built it) does not. */
function ensureDist(): void {
  const entry = join(repo, 'dist', 'src', 'index.js');
  const sources = Math.max(newestSource(join(repo, 'src')), statSync(join(repo, 'tsconfig.json')).mtimeMs);
  if (existsSync(entry) && statSync(entry).mtimeMs >= sources) return;
  try {
    execFileSync(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: repo, stdio: 'pipe' });
  } catch (e) {
    const err = e as { stdout?: Buffer; stderr?: Buffer; message: string };
    throw new Error(`building dist/ with tsc failed:\n${err.stdout?.toString() ?? ''}${err.stderr?.toString() ?? err.message}`);
  }
}

interface GeneratedTiny {
  model: { queryHeads: number; kvHeads: number; headDim: number };
  variants: Record<'tidar_k4' | 'ar', { steps: number }>;
  load(options?: { backend?: string }): {
    backend: string;
    tidarK4(inputs: AttentionInputs): AttentionOutputs;
    tidarK4Async(inputs: AttentionInputs): Promise<AttentionOutputs>;
    ar(inputs: AttentionInputs): AttentionOutputs;
    close(): void;
  };
}

describe('end to end: the compiled tiny library, imported as a user would', () => {
  // Inside the repository, so that the library finds tidarc by package self-reference.
  const outDir = join(repo, 'build', `test-lib-${process.pid}`);
  let lib: GeneratedTiny;

  beforeAll(async () => {
    ensureDist();
    // The variants the test runs (compileModel's filter): the library's C++ for the other four was never called.
    await compileModel({ spec: specs.get('tiny')!, arches: ['sm_80'], outDir, build: 'cpu', variants: ['tidar_k4', 'ar'], log: () => undefined });
    lib = (await import(/* @vite-ignore */ pathToFileURL(join(outDir, 'index.js')).href)) as GeneratedTiny;
  }, 600_000);

  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  function check(variant: 'tidar_k4' | 'ar', run: (inputs: AttentionInputs) => AttentionOutputs, seed: number) {
    const { queryHeads: qHeads, kvHeads, headDim } = lib.model;
    const mask = variant === 'ar' ? causal(1) : tidarDecode(4);
    const n = lib.variants[variant].steps;
    expect(n).toBe(mask.tokens.length);
    const prefixLen = [17, 0, 33];
    const cacheCapacity = 40;
    const inputs = randomAttentionInputs({ dtype: 'bf16', batch: prefixLen.length, n, qHeads, kvHeads, headDim, cacheCapacity, prefixLen, seed });
    const got = run({ batch: prefixLen.length, cacheCapacity, prefixLen, ...inputs.bits, splits: 2, threads: 2 });
    const table = stepVisibility(mask);
    const want = referenceAttention({ ...inputs.shape, prefixLen, ...inputs.values, visible: (tq, tk) => table[tq * n + tk] === 1 });
    const o = decode('bf16', got.o);
    let maxErr = 0;
    for (let i = 0; i < o.length; i++) maxErr = Math.max(maxErr, Number.isNaN(o[i]!) ? Infinity : Math.abs(o[i]! - want.o[i]!));
    let maxLseErr = 0;
    for (let i = 0; i < want.lse.length; i++) {
      const a = got.lse[i]!, b = want.lse[i]!;
      maxLseErr = Math.max(maxLseErr, a === b ? 0 : Number.isNaN(a) ? Infinity : Math.abs(a - b));
    }
    expect(o.length).toBe(want.o.length);
    expect(maxErr).toBeLessThan(8e-3);
    expect(maxLseErr).toBeLessThan(3.2e-3);
    return got;
  }

  test('load({backend: "cpu"}) runs tidarK4, tidarK4Async and ar like the reference; close() ends it', async () => {
    const kernels = lib.load({ backend: 'cpu' });
    expect(kernels.backend).toBe('cpu');
    const sync = check('tidar_k4', (i) => kernels.tidarK4(i), 11);
    let pending: Promise<AttentionOutputs> | undefined;
    const viaAsync = check('tidar_k4', (i) => {
      pending = kernels.tidarK4Async(i);
      return kernels.tidarK4(i); // same inputs: the async result must match it bit for bit
    }, 11);
    const asyncOut = await pending!;
    expect(Buffer.from(asyncOut.o.buffer).equals(Buffer.from(viaAsync.o.buffer))).toBe(true);
    expect(Buffer.from(sync.o.buffer).equals(Buffer.from(viaAsync.o.buffer))).toBe(true);
    check('ar', (i) => kernels.ar(i), 12);
    kernels.close();
    const closed = (() => {
      try {
        kernels.ar({ batch: 1, cacheCapacity: 0, prefixLen: [0], q: new Uint16Array(0), kCache: new Uint16Array(0), vCache: new Uint16Array(0), kStep: new Uint16Array(0), vStep: new Uint16Array(0) });
      } catch (e) {
        return e as Error & { code?: string };
      }
      return undefined;
    })();
    expect(closed).toMatchObject({ name: 'TidarcError', code: 'runtime', message: expect.stringMatching(/closed/) });
    // The runtime came through the package self-reference, i.e. from dist/, not from src/.
    expect(closed!.stack).toMatch(/[/\\]dist[/\\]src[/\\]runtime[/\\]kernel-library\.js/);
  });
});
