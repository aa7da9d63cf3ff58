/**
 * `tidarc compile` behind the CLI: generate (pure) -> stage -> build (nvcc, C++) -> swap.
 * The build runs the steps planBuild derives from the targets' build stages (build-steps.ts),
 * the same steps the generated CMakeLists.txt spells.
 * Per-variant content hashes let an unchanged input skip nvcc; an unchanged compile does
 * not touch the output directory at all.
 */
import { execFile } from 'node:child_process';
import { appendFile, copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, isAbsolute, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { TidarcError } from '../errors.js';
import { readJsonFile } from '../fs/read-json.js';
import { readRegularFile } from '../fs/read-regular-file.js';
import type { ModelSpec } from '../ir/model.js';
import type { ArchName } from '../codegen/arch.js';
import { type BuildPlan, type BuildStep, type BuildTargets, type CpuBuild, type CudaBuild, buildTools, planBuild, stepArgs } from '../codegen/build-steps.js';
import { type TargetName, compileTargets, dialectsOf } from '../codegen/targets.js';
import { compileInputKey, generatorDigest, type TileOverrides } from '../codegen/input-key.js';
import type { GemmOverrides } from '../codegen/gemm-plan.js';
import { sha256 } from '../util/hash.js';
import type { BuildReport, Manifest, ManifestGemm, ManifestVariant } from '../codegen/manifest.js';
import { isArchName, variantOccupancy } from '../codegen/occupancy.js';
import { childProcessSignal } from '../fs/interrupt.js';
import { checkReplaceable } from '../fs/tidarc-dir.js';
import { type OutputPlace, commitStaging, createStaging, discardStaging, isMarked, writeFiles } from './output-dir.js';
import { runPool } from './pool.js';
import { parsePtxasReport, ptxasWarnings, type PtxasByArch } from './ptxas.js';
import { type Tool, findCxx, findNvcc } from './toolchain.js';

const exec = promisify(execFile);

export type { BuildTargets } from '../codegen/build-steps.js';
export { CPU_FLAGS } from '../codegen/targets.js';

export interface CompileRequest {
  readonly spec: ModelSpec;
  readonly drafts?: readonly number[];
  /** A compile for the CPU and these CUDA arches (what `tidarc compile --arch` means)... */
  readonly arches?: readonly ArchName[];
  /** ...or for exactly these targets (the kernel cache's). */
  readonly targets?: readonly TargetName[];
  readonly outDir: string;
  /** How errors name outDir: the option or setting it came from (default 'outDir'). */
  readonly outField?: string;
  /** 'none': sources, manifest and bindings only (what generated/ holds); 'cpu': skip nvcc. */
  readonly build: BuildTargets;
  /** Tuned tiles per variant (`tidarc compile --tuned`); the others use the arch's tile. */
  readonly tiles?: TileOverrides;
  /** Tuned split-K and tiles per GEMM unit (`tidarc compile --tuned`); the others use the plan's heuristic. */
  readonly gemms?: GemmOverrides;
  /** Only these attention variants (`tidarc compile --variant`); the manifest's omittedVariants names the rest. */
  readonly variants?: readonly string[];
  readonly jobs?: number;
  readonly log: (line: string) => void;
  /** Called before an earlier output in outDir is compiled again, with why it is not up to date (the kernel cache says so). */
  readonly onRecompile?: (why: string) => void;
}

export interface CompileResult {
  readonly outDir: string;
  readonly manifest: Manifest;
  readonly unchanged: boolean;
  readonly codegenMs: number;
  readonly buildMs: number;
  readonly warnings: readonly string[];
}

/** Which generator code wrote the output (see input-key.ts); not part of the goldens. */
export const STAMP_FILE = '.tidarc-stamp';

/** A generated source or header is far smaller; anything bigger is not one of ours. */
const MAX_OUTPUT_FILE_BYTES = 64 << 20;

/**
 * The text of a file an earlier output's manifest lists, or undefined when it cannot be ours: a path
 * that leaves the directory, or anything but a regular file of sane size (a tampered manifest
 * must not make a compile read /dev/zero or block on a FIFO).
 */
async function listedFileText(outDir: string, rel: string): Promise<string | undefined> {
  if (typeof rel !== 'string' || isAbsolute(rel) || relative(outDir, resolve(outDir, rel)).startsWith('..')) return undefined;
  return readRegularFile(resolve(outDir, rel), MAX_OUTPUT_FILE_BYTES, 'a generated file').then((b) => b.toString('utf8'), () => undefined);
}

/** Every file the manifest lists still has its recorded hash, and every binary exists. */
async function outputIntact(outDir: string, m: Manifest): Promise<boolean> {
  if (typeof m.files !== 'object' || m.files === null) return false;
  const hashes = await Promise.all(Object.entries(m.files).map(async ([rel, hash]) => {
    const text = await listedFileText(outDir, rel);
    return text !== undefined && sha256(text) === hash;
  }));
  const binaries = [m.build?.cpu?.library, ...Object.values(m.build?.nvcc?.variants ?? {}).map((v) => v.binary)].filter((p): p is string => !!p);
  return hashes.every(Boolean) && binaries.every((p) => existsSync(join(outDir, p)));
}

/**
 * Why the output in outDir is not the one this compile would write, or undefined when it is (then
 * it is reused). `inputHash`: the build's (input key, compilers, stages); undefined: no build.
 */
async function outdatedBecause(outDir: string, old: Manifest | undefined, oldStamp: string, stamp: string, inputKey: string, inputHash: string | undefined): Promise<string | undefined> {
  if (!old) return 'it has no readable manifest.json (an interrupted or damaged compile)';
  if (oldStamp !== stamp) {
    if (oldStamp === '') return `it has no ${STAMP_FILE} (an interrupted or damaged compile)`;
    let was: { inputKey?: unknown; generator?: unknown } | undefined;
    try {
      was = JSON.parse(oldStamp) as typeof was;
    } catch {
      was = undefined;
    }
    if (was?.inputKey === inputKey && was.generator !== generatorDigest()) return "its sources are stale: tidarc's code generator changed since they were generated";
    return 'its sources are stale: they were generated from other inputs (tidarc version, model, drafts, targets, templates or tiles)';
  }
  if (!isMarked(outDir, 'compile-output')) return 'it is not marked as a compile output';
  if (old.inputKey !== inputKey) return 'its manifest names other inputs (tidarc version, model, drafts, targets, templates or tiles)';
  if (inputHash === undefined ? old.build !== undefined : old.build?.inputHash !== inputHash) {
    if (inputHash === undefined) return 'it was built, and this compile writes sources only';
    return old.build === undefined ? 'its sources were generated but not built' : 'a compiler changed since it was built (the C++ compiler or nvcc: another version, found or gone)';
  }
  if (!(await outputIntact(outDir, old))) return 'a file it lists is missing or was changed';
  return undefined;
}

async function readOldManifest(outDir: string): Promise<Manifest | undefined> {
  try {
    return (await readJsonFile(join(outDir, 'manifest.json'), 'manifest')) as Manifest;
  } catch {
    return undefined;
  }
}

/** Records a failed compiler run and throws its one-line error. */
type BuildFailure = (what: string, output: string) => Promise<never>;

/**
 * A compile's failed compiler runs: the full output goes to `<outDir>.build-error.log` (nothing
 * lost), the error itself stays one line with the compiler's first error. The compile's first
 * failure moves the last compile's log to `<outDir>.build-error.previous.log` instead of
 * overwriting it (the failure before an edit is often what explains the one after); later
 * failures of the same compile (steps still running in parallel) are appended.
 */
function buildErrorLog(outDir: string): BuildFailure {
  const log = `${outDir}.build-error.log`;
  let written: Promise<void> | undefined;
  return async (what, output) => {
    const entry = `${what}\n${output}`;
    const before = written;
    written = before
      ? before.then(() => appendFile(log, `\n${entry}`))
      // Keeping the old log is best effort: failing to move it must not hide this failure.
      : rename(log, `${outDir}.build-error.previous.log`).catch(() => undefined).then(() => writeFile(log, entry));
    await written;
    const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
    const first = lines.find((l) => /error/i.test(l)) ?? lines[0] ?? 'no output';
    throw new TidarcError('build-failed', `${what}: ${first} (full output in ${log})`);
  };
}

export async function compileModel(request: CompileRequest): Promise<CompileResult> {
  // Resolved so that `--out dir/` or `--out dir/.` stage next to the directory, not inside it.
  const req = { ...request, outDir: resolve(request.outDir) };
  // Refused before any work: only an absent path, an empty directory or an earlier compile output is replaced.
  const place: OutputPlace = { path: request.outDir, kind: 'compile-output', field: request.outField ?? 'outDir' };
  checkReplaceable(place);
  const t0 = performance.now();
  const targets = compileTargets(req);
  const inputKey = compileInputKey(req.spec, req.drafts ?? req.spec.draftLengths, targets.map((t) => t.name), req.tiles, req.gemms, req.variants);
  const building = req.build !== 'none';
  // Which compilers the build needs: the targets' stages (a CPU-only target asks for no nvcc).
  const tools = buildTools(targets, req.build);
  const cudaSources = dialectsOf(targets).some((d) => d.dir === 'cuda');
  const [nvcc, cxx] = await Promise.all([tools.nvcc ? findNvcc() : undefined, tools.cxx ? findCxx() : undefined]);
  const inputHash = sha256([inputKey, nvcc?.found ? nvcc.tool.version : 'no-nvcc', cxx?.found ? cxx.tool.version : 'no-cxx', req.build].join('\n'));
  const old = await readOldManifest(req.outDir);
  const stamp = `${JSON.stringify({ inputKey, generator: generatorDigest() })}\n`;
  const oldStamp = (await listedFileText(req.outDir, STAMP_FILE)) ?? '';
  const outdated = await outdatedBecause(req.outDir, old, oldStamp, stamp, inputKey, building ? inputHash : undefined);
  if (outdated === undefined) {
    return { outDir: req.outDir, manifest: old!, unchanged: true, codegenMs: performance.now() - t0, buildMs: 0, warnings: [] };
  }
  if (existsSync(req.outDir)) req.onRecompile?.(outdated);

  // Loaded only when there is something to generate: it pulls in ts-morph.
  const { generateModel } = await import('../codegen/generate.js');
  const generated = generateModel(req.spec, { ...(req.targets ? { targets: req.targets } : {}), ...(req.arches ? { arches: req.arches } : {}), ...(req.drafts ? { drafts: req.drafts } : {}), ...(req.tiles ? { tiles: req.tiles } : {}), ...(req.gemms ? { gemms: req.gemms } : {}), ...(req.variants ? { variants: req.variants } : {}) });
  const codegenMs = performance.now() - t0;
  const files = new Map(generated.files);

  const staging = await createStaging(place);
  const t1 = performance.now();
  const warnings: string[] = [];
  try {
    await writeFiles(staging, files);
    let manifest: Manifest = generated.manifest;
    if (building) {
      const jobs = req.jobs ?? availableParallelism();
      const failed = buildErrorLog(req.outDir);
      const plan: BuildPlan = planBuild(targets, generated.manifest, [...files.keys()], req.build);
      const build: BuildReport = {
        inputHash,
        ...(plan.cuda && nvcc?.found
          ? { nvcc: await buildCuda(plan.cuda, nvcc.tool, staging, req.outDir, old, jobs, failed, req.log, warnings) }
          : plan.cuda ? { nvccMissing: `nvcc not found (${nvcc?.found === false ? nvcc.reason : 'not probed'}); CUDA sources written, not compiled` }
          : cudaSources ? { nvccMissing: 'CPU-only build: CUDA sources written, not compiled' } : {}),
        ...(plan.cpu && cxx?.found
          ? { cpu: await buildCpu(plan.cpu, cxx.tool, staging, jobs, failed, req.log) }
          : plan.cpu ? { cpuMissing: `no C++ compiler (${cxx?.found === false ? cxx.reason : 'not probed'}); CPU sources written, not compiled` } : {}),
      };
      // A CPU-only build leaves CUDA out by request: nothing to report.
      if (build.nvccMissing && plan.cuda) req.log(build.nvccMissing);
      if (build.cpuMissing) req.log(build.cpuMissing);
      manifest = { ...manifest, build, ...(build.nvcc ? { variants: withOccupancy(manifest.variants, build.nvcc) } : {}), ...(manifest.gemms && build.nvcc ? { gemms: withGemmPtxas(manifest.gemms, build.nvcc) } : {}) };
      await writeFiles(staging, new Map([['manifest.json', `${JSON.stringify(manifest, null, 2)}\n`]]));
    }
    await writeFiles(staging, new Map([[STAMP_FILE, stamp]]));
    await commitStaging(staging, place);
    return { outDir: req.outDir, manifest, unchanged: false, codegenMs, buildMs: performance.now() - t1, warnings };
  } catch (e) {
    await discardStaging(staging);
    throw e;
  }
}

/** The variants with their main kernel's occupancy per arch (the split-KV rule's CTAs per SM), from the build report. */
function withOccupancy(variants: readonly ManifestVariant[], nvcc: NonNullable<BuildReport['nvcc']>): ManifestVariant[] {
  return variants.map((v) => {
    const byArch = nvcc.variants[v.name]?.ptxas ?? {};
    const occ = Object.fromEntries(Object.entries(byArch).flatMap(([arch, kernels]) => {
      const r = kernels[v.symbols.cuda];
      return r && isArchName(arch) ? [[arch, variantOccupancy(arch, r, v.launch)]] : [];
    }));
    // The variant's sm_90a attention unit (built for sm_90a alone), when the compile made one.
    const fast = v.sm90a ? nvcc.variants[`${v.name}_sm90a`]?.ptxas?.['sm_90a']?.[v.sm90a.symbol] : undefined;
    const sm90a = v.sm90a && fast ? { sm90a: { ...v.sm90a, occupancy: variantOccupancy('sm_90a', fast, { block: v.sm90a.block, dynamicSharedBytes: v.sm90a.dynamicSharedBytes }) } } : {};
    return Object.keys(occ).length > 0 ? { ...v, occupancy: occ, ...sm90a } : { ...v, ...sm90a };
  });
}

/** The GEMM entries with their kernels' ptxas figures per arch, from the build report of their unit. */
function withGemmPtxas(gemms: readonly ManifestGemm[], nvcc: NonNullable<BuildReport['nvcc']>): ManifestGemm[] {
  return gemms.map((g) => {
    const byArch = nvcc.variants[g.unit]?.ptxas ?? {};
    const ptxas = Object.fromEntries(Object.entries(byArch).flatMap(([arch, kernels]) => {
      const kernel = kernels[g.kernel];
      return kernel ? [[arch, { kernel }]] : [];
    }));
    return { ...g, ptxas };
  });
}

/** The text of every input of a step, for its reuse hash. */
async function inputsText(staging: string, step: BuildStep): Promise<string> {
  return (await Promise.all(step.inputs.map((f) => readFile(join(staging, f), 'utf8')))).join('\n');
}

/** nvcc's $TMPDIR, inside the staging directory while the CUDA build runs. */
const NVCC_TMP = '.nvcc-tmp';

async function buildCuda(cuda: CudaBuild, nvcc: Tool, staging: string, outDir: string, old: Manifest | undefined, jobs: number, failed: BuildFailure,
  log: (l: string) => void, warnings: string[]): Promise<NonNullable<BuildReport['nvcc']>> {
  const flags = [...cuda.flags];
  let done = 0;
  // Every variant, and the GPU operators and GEMMs the cuda backend runs around them.
  const total = cuda.steps.length;
  // nvcc's intermediates (tmpxft_*, megabytes a variant) go to $TMPDIR, and a killed nvcc leaves
  // them there: inside the staging directory, an interrupt or the next run's cleanup removes them.
  const nvccTmp = join(staging, NVCC_TMP);
  await mkdir(nvccTmp);
  const env = { ...process.env, TMPDIR: nvccTmp };
  const results = await runPool(cuda.steps, jobs, async (step) => {
    const v = { name: step.unit };
    const binary = step.output;
    const args = stepArgs(step);
    const hash = sha256([await inputsText(staging, step), nvcc.version, args.join(' ')].join('\n'));
    const previous = old?.build?.nvcc?.variants[v.name];
    const t = performance.now();
    let ptxas: PtxasByArch;
    if (previous && previous.hash === hash && existsSync(join(outDir, previous.binary))) {
      await copyFile(join(outDir, previous.binary), join(staging, binary));
      ptxas = previous.ptxas as PtxasByArch;
      log(`[${++done}/${total}] nvcc ${v.name}: unchanged, reused ${binary}`);
    } else {
      try {
        const { stderr } = await exec(nvcc.path, args, { cwd: staging, env, maxBuffer: 64 << 20, signal: childProcessSignal });
        ptxas = parsePtxasReport(stderr);
      } catch (e) {
        const err = e as { stderr?: string; message: string };
        return failed(`nvcc failed on variant ${v.name}`, err.stderr || err.message);
      }
      log(`[${++done}/${total}] nvcc ${v.name} (${(step.arches ?? []).join(', ')}) ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
    warnings.push(...ptxasWarnings(v.name, ptxas));
    return [v.name, { binary, hash, ptxas }] as const;
  }).finally(() => rm(nvccTmp, { recursive: true, force: true }));
  for (const w of warnings) log(`warning: ${w}`);
  return { version: nvcc.version, flags, variants: Object.fromEntries(results) };
}

async function buildCpu(cpu: CpuBuild, cxx: Tool, staging: string, jobs: number, failed: BuildFailure, log: (l: string) => void): Promise<NonNullable<BuildReport['cpu']>> {
  const t = performance.now();
  let done = 0;
  const objects = await runPool(cpu.compile, jobs, async (step) => {
    const t1 = performance.now();
    try {
      await exec(cxx.path, stepArgs(step), { cwd: staging, maxBuffer: 64 << 20, signal: childProcessSignal });
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      return failed(`${cxx.path} failed on ${step.unit}`, err.stderr || err.message);
    }
    log(`[${++done}/${cpu.compile.length}] ${basename(cxx.path)} ${step.unit} ${((performance.now() - t1) / 1000).toFixed(1)} s`);
    return step.output;
  });
  try {
    await exec(cxx.path, stepArgs(cpu.link), { cwd: staging, signal: childProcessSignal });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    await failed(`linking ${cpu.library} failed`, err.stderr || err.message);
  }
  await Promise.all(objects.map((o) => rm(join(staging, o), { force: true })));
  log(`cpu: ${cpu.library} (${cpu.compile.length} sources, ${cxx.version}) ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return { compiler: cxx.version, flags: cpu.flags, library: cpu.library };
}
