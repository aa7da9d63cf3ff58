/**
 * The typed TypeScript library of a compiled model, built with ts-morph from ONE source
 * file structure (adding statements one call at a time is ~40x slower), formatted once,
 * emitted in memory to .js and .d.ts. The library imports its runtime from 'tidarc'.
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
      kind: StructureKind.ImportDeclaration,
      moduleSpecifier: 'node:url',
      namedImports: ['fileURLToPath'],
    },
    {
      kind: StructureKind.ImportDeclaration,
      moduleSpecifier: 'tidarc',
      namedImports: ['openKernelLibrary', 'type AttentionInputs', 'type AttentionOutputs', 'type OpenOptions'],
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
      properties: [{ name: 'backend', isReadonly: true, type: 'string', docs: ['The backend that runs the kernels, e.g. "cpu".'] }],
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
      docs: ['Opens the kernels compiled next to this file (see manifest.json) on the chosen backend.'],
      parameters: [{ name: 'options', type: 'OpenOptions', initializer: '{}' }],
      returnType: iface,
      statements: [
        `const lib = openKernelLibrary(fileURLToPath(new URL('.', import.meta.url)), options);`,
        `return {\n  backend: lib.backend,\n${manifest.variants
          .map((v) => `  ${entryName(v.name)}: (inputs) => lib.run('${v.name}', inputs),\n  ${entryName(v.name)}Async: (inputs) => lib.runAsync('${v.name}', inputs),`)
          .join('\n')}\n  close: () => lib.close(),\n};`,
      ],
    },
  ];
}

/**
 * index.ts, index.js and index.d.ts of a compiled model. The .js and .d.ts come from
 * single-file transforms (transpileModule, transpileDeclaration: every export carries its
 * type), not from a program emit: no lib.d.ts loading, no type check, ~10x faster. That
 * the library type-checks against tidarc is proven by test/codegen/library-ts.test.ts.
 */
export function renderTsLibrary(manifest: Manifest): Map<string, string> {
  const project = new Project({ useInMemoryFileSystem: true, compilerOptions: COMPILER_OPTIONS });
  const banner = `/*! generated by tidarc from model "${manifest.model.name}"; do not edit */\n`;
  const file = project.createSourceFile('/lib/index.ts', { statements: librarySource(manifest) });
  file.formatText({ indentSize: 2, convertTabsToSpaces: true });
  const source = banner + file.getFullText();
  const js = ts.transpileModule(source, { compilerOptions: COMPILER_OPTIONS, fileName: 'index.ts' });
  const dts = ts.transpileDeclaration(source, { compilerOptions: COMPILER_OPTIONS, fileName: 'index.ts', reportDiagnostics: true });
  const problems = dts.diagnostics ?? [];
  if (problems.length > 0) {
    const text = problems.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('; ');
    throw new Error(`tidarc: generated index.ts has no isolated declarations: ${text}`);
  }
  return new Map([
    ['index.d.ts', dts.outputText],
    ['index.js', js.outputText],
    ['index.ts', source],
  ]);
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
