/**
 * The typed TypeScript library of a compiled model, built with ts-morph from ONE source
 * file structure (adding statements one call at a time is ~40x slower), formatted once,
 * emitted in memory to .js and .d.ts, and to .cjs for CommonJS. A package.json of its own
 * makes the directory an ES module package whatever project it lies in, with `require`
 * pointed at index.cjs. The library loads its runtime from 'tidarc/kernels', looked up from
 * the directory, then from the running script and the working directory.
 */
import { Project, StructureKind, VariableDeclarationKind, ts, type StatementStructures } from 'ts-morph';
import type { Manifest, ManifestVariant } from './manifest.js';

/** `tidar_k4` -> `tidarK4`. */
export function entryName(variant: string): string {
  return variant.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function interfaceName(model: string): string {
  const words = model.split(/[^A-Za-z0-9]+/).filter(Boolean);
  const stem = words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
  return `${/^[0-9]/.test(stem) ? 'M' : ''}${stem || 'Model'}Kernels`;
}

function shapeDoc(v: ManifestVariant): string {
  const { dtype, headDim, qHeads, kvHeads } = v.shape;
  return [
    `${v.description}.`,
    '',
    `q, o: [batch, ${v.steps}, ${qHeads}, ${headDim}] ${dtype} bits (Uint16Array);`,
    `kCache, vCache: [batch, ${kvHeads}, cacheCapacity, ${headDim}]; kStep, vStep: [batch, ${v.steps}, ${kvHeads}, ${headDim}];`,
    `lse: [batch, ${v.steps}, ${qHeads}] natural log. Tiles: ${v.plan.stepTiles.full} full, ${v.plan.stepTiles.partial} partial, ${v.plan.stepTiles.empty} empty in-step tiles skipped.`,
  ].join('\n');
}

function librarySource(manifest: Manifest): StatementStructures[] {
  const iface = interfaceName(manifest.model.name);
  const variantsLiteral = JSON.stringify(
    Object.fromEntries(manifest.variants.map((v) => [v.name, { name: v.name, draft: v.draft ?? null, steps: v.steps, rows: v.rows, mask: v.mask, shape: v.shape, symbols: v.symbols, launch: v.launch }])),
    null,
    2,
  );
  return [
    {
      kind: StructureKind.Function,
      name: 'tidarcKernels',
      docs: [
        [
          "Where the tidarc runtime is: resolved from this directory (a node_modules above it), else from",
          'the script that runs and the working directory, so that kernels compiled outside the project',
          'that installed tidarc still load.',
        ].join('\n'),
      ],
      parameters: [{ name: 'dir', type: 'string' }],
      returnType: 'string',
      statements: [
        `const bases = [...new Set([dir, ...(process.argv[1] ? [dirname(process.argv[1])] : []), process.cwd()])];`,
        `for (const base of bases) {\n  try {\n    return createRequire(join(base, 'index.js')).resolve('tidarc/kernels');\n  } catch {\n    // not installed there: the next place\n  }\n}`,
        "throw new Error(`tidarc: error: the kernels in ${dir} need the tidarc package at run time, and no node_modules/tidarc is above ${bases.join(' or ')}: run \\`npm install tidarc\\` in the project that loads them`);",
      ],
    },
    {
      kind: StructureKind.VariableStatement,
      isExported: true,
      declarationKind: VariableDeclarationKind.Const,
      docs: ['The model these kernels were compiled for.'],
      declarations: [{ name: 'model', initializer: `${JSON.stringify(manifest.model, null, 2)} as const` }],
    },
    {
      kind: StructureKind.VariableStatement,
      isExported: true,
      declarationKind: VariableDeclarationKind.Const,
      docs: ['Per variant: mask, shapes, exported symbols and launch geometry (from manifest.json).'],
      declarations: [{ name: 'variants', initializer: `${variantsLiteral} as const` }],
    },
    {
      kind: StructureKind.TypeAlias,
      isExported: true,
      name: 'VariantName',
      type: 'keyof typeof variants',
    },
    {
      kind: StructureKind.Interface,
      isExported: true,
      name: iface,
      docs: [`Typed entry points of the attention kernels of model "${manifest.model.name}", one per variant.`],
      properties: [{ name: 'backend', isReadonly: true, type: 'string', docs: ['The backend that runs the kernels: "cpu" (the C++ library) or "cuda" (the fatbins on the GPU).'] }],
      methods: [
        ...manifest.variants.flatMap((v) => [
          { name: entryName(v.name), parameters: [{ name: 'inputs', type: 'AttentionInputs' }], returnType: 'AttentionOutputs', docs: [shapeDoc(v)] },
          { name: `${entryName(v.name)}Async`, parameters: [{ name: 'inputs', type: 'AttentionInputs' }], returnType: 'Promise<AttentionOutputs>', docs: [`${v.description}, off the event loop.`] },
        ]),
        { name: 'close', returnType: 'void', docs: ['Releases the loaded kernel library.'] },
      ],
    },
    {
      kind: StructureKind.Function,
      isExported: true,
      name: 'load',
      docs: ['Opens the kernels compiled next to this file (see manifest.json) on options.backend: "cpu", "cuda", or "auto" (default: cuda when usable).'],
      parameters: [{ name: 'options', type: 'OpenOptions', initializer: '{}' }],
      returnType: iface,
      statements: [
        `const lib = openKernelLibrary(here, options);`,
        `return {\n  backend: lib.backend,\n${manifest.variants
          .map((v) => `  ${entryName(v.name)}: (inputs) => lib.run('${v.name}', inputs),\n  ${entryName(v.name)}Async: (inputs) => lib.runAsync('${v.name}', inputs),`)
          .join('\n')}\n  close: () => lib.close(),\n};`,
      ],
    },
  ];
}

type Statement = string | StatementStructures;

/** The imports and the runtime of each module system; everything after them is shared. */
function preamble(format: 'esm' | 'cjs'): Statement[] {
  const imports: StatementStructures[] = [
    { kind: StructureKind.ImportDeclaration, moduleSpecifier: 'node:module', namedImports: ['createRequire'] },
    { kind: StructureKind.ImportDeclaration, moduleSpecifier: 'node:path', namedImports: ['dirname', 'join'] },
    ...(format === 'esm' ? [{ kind: StructureKind.ImportDeclaration, moduleSpecifier: 'node:url', namedImports: ['fileURLToPath', 'pathToFileURL'] } satisfies StatementStructures] : []),
    { kind: StructureKind.ImportDeclaration, moduleSpecifier: 'tidarc/kernels', isTypeOnly: true, namedImports: ['AttentionInputs', 'AttentionOutputs', 'OpenOptions'] },
  ];
  const runtime = format === 'esm'
    ? ['const here = dirname(fileURLToPath(import.meta.url));', "const { openKernelLibrary }: typeof import('tidarc/kernels') = await import(pathToFileURL(tidarcKernels(here)).href);"]
    // require() of an ES module (tidarc): Node >= 20.19.
    : ['const here = __dirname;', "const { openKernelLibrary }: typeof import('tidarc/kernels') = require(tidarcKernels(here));"];
  return [...imports, ...runtime];
}

function emitSource(project: Project, path: string, statements: Statement[], banner: string): string {
  const file = project.createSourceFile(path, { statements });
  file.formatText({ indentSize: 2, convertTabsToSpaces: true });
  return banner + file.getFullText();
}

/** package.json of the compiled directory: ES modules inside, index.cjs for require(). */
function packageJson(manifest: Manifest): string {
  const pkg = {
    description: `attention kernels of model "${manifest.model.name}", generated by tidarc; do not edit`,
    private: true,
    type: 'module',
    main: './index.cjs',
    types: './index.d.ts',
    exports: {
      '.': {
        import: { types: './index.d.ts', default: './index.js' },
        require: { types: './index.d.cts', default: './index.cjs' },
      },
      './package.json': './package.json',
    },
  };
  return `${JSON.stringify(pkg, null, 2)}\n`;
}

/**
 * index.js, index.d.ts, index.cjs, index.d.cts and package.json of a compiled model.
 * The .js, .cjs and .d.ts come from single-file transforms (transpileModule,
 * transpileDeclaration: every export carries its type), not from a program emit: no lib.d.ts
 * loading, no type check, ~10x faster. That the library type-checks against tidarc is proven
 * by test/codegen/library-ts.test.ts; that it loads from CommonJS and ES modules by
 * test/codegen/library-modules.test.ts.
 *
 * The TypeScript source (libraryTsSource) is not written beside them: TypeScript resolves an
 * import of './index.js' to an index.ts before index.d.ts, so a user's `tsc` would compile it
 * into their program (TS6059 under a rootDir, or emit over the generated index.js and index.d.ts)
 * and type-check it against their settings (no @types/node: errors in a file they did not write).
 */
export function renderTsLibrary(manifest: Manifest): Map<string, string> {
  const project = new Project({ useInMemoryFileSystem: true, compilerOptions: COMPILER_OPTIONS });
  const source = libraryTsSource(manifest, project);
  const cjsSource = emitSource(project, '/lib/index.cts', [...preamble('cjs'), ...librarySource(manifest)], banner(manifest));
  const js = ts.transpileModule(source, { compilerOptions: COMPILER_OPTIONS, fileName: 'index.ts' });
  const cjs = ts.transpileModule(cjsSource, { compilerOptions: { ...COMPILER_OPTIONS, module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10 }, fileName: 'index.cts' });
  const dts = ts.transpileDeclaration(source, { compilerOptions: COMPILER_OPTIONS, fileName: 'index.ts', reportDiagnostics: true });
  const problems = dts.diagnostics ?? [];
  if (problems.length > 0) {
    const text = problems.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('; ');
    throw new Error(`tidarc: generated index.ts has no isolated declarations: ${text}`);
  }
  return new Map([
    ['index.cjs', cjs.outputText],
    // The declarations are the same for both: in a .d.cts they describe CommonJS exports.
    ['index.d.cts', dts.outputText],
    ['index.d.ts', dts.outputText],
    ['index.js', js.outputText],
    ['package.json', packageJson(manifest)],
  ]);
}

const banner = (manifest: Manifest): string => `/*! generated by tidarc from model "${manifest.model.name}"; do not edit */\n`;

/** The ES module source the library's files are transformed from (not written: see renderTsLibrary). */
export function libraryTsSource(manifest: Manifest, project = new Project({ useInMemoryFileSystem: true, compilerOptions: COMPILER_OPTIONS })): string {
  return emitSource(project, '/lib/index.ts', [...preamble('esm'), ...librarySource(manifest)], banner(manifest));
}

const COMPILER_OPTIONS = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ES2022,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  declaration: true,
  isolatedDeclarations: true,
  strict: true,
  skipLibCheck: true,
  newLine: ts.NewLineKind.LineFeed,
};
