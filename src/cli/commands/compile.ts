/**
 * `tidarc compile [model.json|config.json]`: generates the attention kernels of a model per
 * draft length and arch, builds them where the compilers exist, and reports what it built.
 */
import { relative } from 'node:path';
import type { Command } from 'commander';
import { ARCH_NAMES, type ArchName, PORTABLE_ARCH_NAMES, parseArch } from '../../codegen/arch.js';
import { compileModel, type CompileResult } from '../../build/compile-model.js';
import { pickVariants, variantsForModel } from '../../codegen/variant.js';
import { packageRoot } from '../../util/paths.js';
import { checkReplaceable } from '../../fs/tidarc-dir.js';
import { readModelInput } from '../../model/model-input.js';
import { loadTunedGemms, loadTunedTiles } from '../../tune/apply.js';
import type { CliIo } from '../io.js';
import { checkTunedOption, parseDraftList, parseIntegerOption, parseNameList, parsePathOption } from '../options.js';

export const DEFAULT_MODEL = 'examples/tiny.json';
/** sm_90a runs on one device generation only: asked for by name (--arch sm_90a), never by default. */
export const DEFAULT_ARCHES: readonly ArchName[] = PORTABLE_ARCH_NAMES;

interface CompileFlags {
  draft?: string;
  arch: string;
  out?: string;
  build: boolean;
  jobs?: string;
  json?: boolean;
  tuned?: string;
  variant?: string;
}

const HELP_AFTER = `
Examples:
  $ tidarc compile                                   # the bundled tiny model into ./tidarc-out/tiny
  $ tidarc compile examples/qwen3-8b.json --draft 4,8,16 --arch sm_80,sm_90 --out build/qwen3-8b
  $ tidarc compile ~/models/Qwen3-8B/config.json --draft 16 --out build/q3  # an HF config works too
  $ tidarc compile examples/tiny.json --no-build --out generated/tiny      # sources only
  $ tidarc compile examples/qwen3-8b.json --tuned tune.json               # the tiles tidarc tune chose
  $ tidarc compile examples/tiny.json --variant tidar_k4,ar               # only these kernels: not enough to run a model

Output (written atomically: a failed or interrupted compile leaves an earlier DIR intact; DIR is
replaced only when it is absent, empty or an earlier tidarc compile output, see the README's
"Output directories and your data"):
  cuda/<variant>.cu (+ .fatbin with nvcc), cpu/<variant>.cpp (+ cpu/libtidarc_cpu.so with g++),
  manifest.json (variants, symbols, launch geometry, ptxas report), index.js/.d.ts/.cjs/.d.cts
  (typed entry points: import { load } from 'DIR/index.js'), CMakeLists.txt, model.json.
An unchanged input does not run nvcc again.
`;

export function registerCompileCommand(program: Command, io: CliIo): void {
  program
    .command('compile')
    .description('Compile a model into fused TiDAR attention kernels (CUDA per arch + portable C++) and a typed library.')
    .argument('[model]', `a checkpoint directory, its config.json (or any Hugging Face config.json), or a model.json (default: the bundled ${DEFAULT_MODEL})`)
    .option('--draft <k,...>', "draft lengths to compile, e.g. 4,8,16 (default: the model's draftLengths)")
    .option('--arch <list>', `GPU architectures, comma separated, from ${ARCH_NAMES.join(', ')}; e.g. sm_80,sm_90`, DEFAULT_ARCHES.join(','))
    .option('--out <dir>', 'output directory, e.g. build/qwen3-8b (default: tidarc-out/<model name>)')
    .option('--no-build', 'write sources, manifest and bindings only; run neither nvcc nor the C++ compiler')
    .option('--jobs <n>', 'parallel compiler processes (default: all cores), e.g. 2')
    .option('--json', 'print the manifest summary as JSON instead of text')
    .option('--variant <name,...>', 'compile only these attention variants and the GEMM kernels their steps launch, e.g. tidar_k4,ar (default: every variant; a model runner needs them all, so a partial output serves kernel calls: import { load } from \'DIR/index.js\')')
    .option('--tuned <db>', 'compile each variant with the tile (warps, tileN; on CUDA rows a warp and stages) that tidarc tune or the device check recorded in this database, and each GEMM with the split-K and tiles the device check\'s GEMM search recorded')
    .addHelpText('after', HELP_AFTER)
    .action(async (modelPath: string | undefined, flags: CompileFlags) => {
      const path = modelPath ?? `${packageRoot()}/${DEFAULT_MODEL}`;
      const { spec } = await readModelInput(path);
      const arches = [...new Set(parseNameList('--arch', flags.arch, 'sm_80,sm_90').map((a) => parseArch(a).name))];
      const drafts = flags.draft === undefined ? undefined : parseDraftList(flags.draft);
      const jobs = flags.jobs === undefined ? undefined : parseIntegerOption('--jobs', flags.jobs, 1, 256);
      const variants = flags.variant === undefined ? undefined : parseNameList('--variant', flags.variant, 'tidar_k4,ar');
      // Checked here, before anything is printed: a refused --draft (a length out of range) or
      // --variant is the command's only line.
      const all = variantsForModel(spec, drafts ?? spec.draftLengths);
      if (variants) pickVariants(all, variants, '--variant');
      if (flags.tuned !== undefined) checkTunedOption(flags.tuned);
      const outDir = flags.out === undefined ? `tidarc-out/${spec.name}` : parsePathOption('--out', flags.out);
      // Before anything is printed: a refused --out is the command's only line.
      checkReplaceable({ path: outDir, kind: 'compile-output', field: '--out' });
      const log = flags.json ? () => undefined : (line: string) => io.stdout(`${line}\n`);
      log(`compiling ${spec.name} (${modelPath ?? `bundled ${DEFAULT_MODEL}`}) for ${arches.join(', ')}`);
      const tunedLoad = flags.tuned === undefined ? undefined : { path: flags.tuned, field: '--tuned', spec, drafts: drafts ?? spec.draftLengths, arches, log };
      const gemms = tunedLoad && loadTunedGemms(tunedLoad);
      const tiles = tunedLoad && loadTunedTiles(tunedLoad);
      const result = await compileModel({ spec, arches, outDir, outField: '--out', build: flags.build ? 'all' : 'none', log, ...(drafts ? { drafts } : {}), ...(jobs ? { jobs } : {}), ...(variants ? { variants } : {}), ...(tiles ? { tiles } : {}), ...(gemms && Object.keys(gemms).length > 0 ? { gemms } : {}) });
      io.stdout(flags.json ? `${JSON.stringify(summary(result), null, 2)}\n` : renderSummary(result));
    });
}


function summary(r: CompileResult) {
  const b = r.manifest.build;
  return {
    outDir: r.outDir,
    unchanged: r.unchanged,
    codegenMs: Math.round(r.codegenMs),
    buildMs: Math.round(r.buildMs),
    arches: r.manifest.arches,
    variants: r.manifest.variants.map((v) => ({
      name: v.name,
      steps: v.steps,
      symbol: v.symbols.cuda,
      stepTiles: v.plan.stepTiles,
      warps: v.plan.warps,
      tileN: v.plan.tileN,
      sharedBytes: v.launch.dynamicSharedBytes,
      ptxas: b?.nvcc?.variants[v.name]?.ptxas ?? null,
    })),
    gemms: [...new Set((r.manifest.gemms ?? []).map((g) => g.unit))].map((unit) => {
      const kernels = r.manifest.gemms!.filter((g) => g.unit === unit);
      const g = kernels[0]!;
      return {
        unit, roles: g.roles, n: g.n, k: g.k, dtype: g.dtype, splitK: g.splitK, m: kernels.map((x) => x.m), ptxas: kernels.map((x) => x.ptxas ?? null),
        ...(g.tuned ? { tuned: { device: g.tuned.device, tiles: kernels.filter((x) => x.tuned?.tile).map((x) => x.m) } } : {}),
      };
    }),
    gemmRefusals: r.manifest.gemmRefusals ?? [],
    stepGraphs: r.manifest.stepGraphs ?? null,
    nvcc: b?.nvcc ? b.nvcc.version : (b?.nvccMissing ?? 'not run (--no-build)'),
    cpuLibrary: b?.cpu ? b.cpu.library : (b?.cpuMissing ?? 'not built (--no-build)'),
    warnings: r.warnings,
  };
}

/** Relative to the working directory when inside it, else absolute. */
function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' ? '.' : rel.startsWith('..') ? path : rel;
}

function renderSummary(r: CompileResult): string {
  const s = summary(r);
  const lines = [
    `${r.unchanged ? 'up to date' : 'wrote'} ${displayPath(r.outDir)}: ${s.variants.length} variants for ${s.arches.join(', ')} (codegen ${s.codegenMs} ms, build ${(s.buildMs / 1000).toFixed(1)} s)`,
  ];
  for (const v of s.variants) {
    const t = v.stepTiles;
    const regs = v.ptxas ? Object.entries(v.ptxas).map(([arch, ks]) => `${arch} ${ks[v.symbol]?.registers ?? '?'} regs`).join(', ') : 'not compiled';
    lines.push(`  ${v.name.padEnd(10)} ${String(v.steps).padStart(4)} in-step ${v.steps === 1 ? 'token, ' : 'tokens,'} tile ${v.warps} warps x ${v.tileN} keys, in-step tiles ${t.full} full / ${t.partial} partial / ${t.empty} skipped, ${v.sharedBytes} B smem; ${regs}`);
  }
  for (const g of s.gemms) {
    const archs = [...new Set(g.ptxas.flatMap((p) => Object.keys(p ?? {})))];
    const regs = archs.length === 0 ? 'not compiled' : archs.map((a) => {
      const r = g.ptxas.map((p) => p?.[a]?.kernel.registers ?? 0);
      return `${a} ${Math.min(...r)}-${Math.max(...r)} regs`;
    }).join(', ');
    const tuned = g.tuned ? ` (tuned on ${g.tuned.device}${g.tuned.tiles.length ? `, tiles of M = ${g.tuned.tiles.join(', ')}` : ''})` : '';
    lines.push(`  gemm ${g.roles.join('+').padEnd(8)} ${`${g.n} x ${g.k}`.padEnd(13)} ${g.dtype}, split-K ${g.splitK}${tuned}, M = ${g.m.join(', ')}; ${regs}`);
  }
  for (const r of s.gemmRefusals) lines.push(`  gemm ${r.role}: refused, tidarc_op_matmul runs it (${r.reason})`);
  lines.push(`  nvcc: ${s.nvcc}`, `  cpu:  ${s.cpuLibrary}`);
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  return `${lines.join('\n')}\n`;
}
