/**
 * The kernel cache: compiled kernels per model, tuning and target, shared by every process of a
 * user (loadModel and `tidarc run`, bench-step, tune's tile libraries). One key names an entry,
 * kernels/<model>-<target>-<key>, derived from the compile's input key (tidarc version, spec,
 * drafts, arches, templates, tiles) and the build it gets; one lock file beside the entry
 * (<entry>.lock) lets one process build it while the others wait, then find it up to date.
 * The key leaves the generator's code out, but the entry's compile does not: compileModel
 * regenerates an entry whose stamp names other generator code (input-key.ts generatorDigest),
 * so what the generator decides for the runtime (the kernel-family choice, sm90a.heuristic and
 * gemmsSm90a[].heuristic) is never an older code's (test/build/kernel-cache-choice.test.ts).
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { compileInputKey, type TileOverrides } from '../codegen/input-key.js';
import type { GemmOverrides } from '../codegen/gemm-plan.js';
import { withFileLock } from '../fs/file-lock.js';
import { makeDirs } from '../fs/make-dirs.js';
import type { ModelSpec } from '../ir/model.js';
import { sha256 } from '../util/hash.js';
import type { TargetName } from '../codegen/targets.js';
import { ARCH_NAMES, ARCHES } from '../codegen/arch.js';
import { type BuildTargets, type CompileResult, compileModel } from './compile-model.js';

/** 'cpu': the C++ library; an arch: fatbins built by nvcc; 'emulator': sources for the emulated driver's modules. */
export type CacheTarget = TargetName;

export interface CacheRequest {
  readonly spec: ModelSpec;
  /** Default: the spec's draft lengths. */
  readonly drafts?: readonly number[];
  readonly target: CacheTarget;
  readonly tiles?: TileOverrides;
  /** Tuned GEMM split-K and tiles per unit (`--tuned` on a CUDA target). */
  readonly gemms?: GemmOverrides;
  /** Only these attention variants (compileModel's filter): a tuner's tile libraries; a model run needs them all. */
  readonly variants?: readonly string[];
  /** Default: defaultCacheDir(). */
  readonly cacheDir?: string;
  /** How errors name the cache (default: cacheField(cacheDir)). */
  readonly field?: string;
  readonly jobs?: number;
  readonly log?: (line: string) => void;
  /** How long to wait for another process building the same entry (default: file-lock.ts). */
  readonly lockTimeoutMs?: number;
  /**
   * More work on the entry under its lock, after the compile (the emulated driver's modules);
   * `shared` is sharedCacheDir's, for what entries have in common.
   */
  readonly finish?: (dir: string, compiled: CompileResult, shared: string) => Promise<void>;
}

export function defaultCacheDir(): string {
  return process.env['TIDARC_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'tidarc');
}

/** Beside kernels/: what entries have in common, built once for all of them (the emulated GPU operators). */
export function sharedCacheDir(cacheDir?: string): string {
  return join(cacheDir ?? defaultCacheDir(), 'shared');
}

/** How errors name a directory in the kernel cache: where the cache is and what sets it. */
export function cacheField(cacheDir?: string): string {
  if (cacheDir !== undefined) return `the kernel cache (cacheDir=${cacheDir})`;
  const env = process.env['TIDARC_CACHE'];
  return env !== undefined ? `the kernel cache (TIDARC_CACHE=${env})` : `the kernel cache (${defaultCacheDir()}; TIDARC_CACHE moves it)`;
}

/**
 * What compileModel is asked for: the entry's target, for a device's arch with every record
 * specific to it (a 9.0 device: sm_90 and sm_90a, so selectArch takes the sm_90a GEMMs and
 * attention without `tidarc compile --arch sm_90a`; the first use pays their nvcc time), and its
 * build stage. The emulator's stage builds modules when the emulated driver loads them
 * (`finish`), not during the compile.
 */
export function cacheCompile(target: CacheTarget): { targets: TargetName[]; build: BuildTargets } {
  if (target === 'cpu' || target === 'emulator') return { targets: [target], build: target === 'emulator' ? 'none' : 'all' };
  return { targets: [target, ...ARCH_NAMES.filter((a) => ARCHES[a].specific?.base === target)], build: 'all' };
}

/** The one key of a cache entry (hex): the compile's input key and the build it gets. */
export function kernelCacheKey(req: Pick<CacheRequest, 'spec' | 'drafts' | 'target' | 'tiles' | 'gemms' | 'variants'>): string {
  const { targets, build } = cacheCompile(req.target);
  return sha256(`${compileInputKey(req.spec, req.drafts ?? req.spec.draftLengths, targets, req.tiles, req.gemms, req.variants)}\n${build}`);
}

/** The entry's directory. The key is cut to 16 hex digits: 64 bits tell a user's models apart. */
export function kernelCacheEntry(req: Pick<CacheRequest, 'spec' | 'drafts' | 'target' | 'tiles' | 'gemms' | 'variants' | 'cacheDir'>): string {
  return join(req.cacheDir ?? defaultCacheDir(), 'kernels', `${req.spec.name}-${req.target}-${kernelCacheKey(req).slice(0, 16)}`);
}

/**
 * The entry for `req`, compiled if it is not (or not intact), under the entry's lock: concurrent
 * processes compile a new model once, and every one of them gets the finished entry.
 */
export async function cachedKernels(req: CacheRequest): Promise<CompileResult> {
  const dir = kernelCacheEntry(req);
  const field = req.field ?? cacheField(req.cacheDir);
  const log = req.log ?? (() => undefined);
  makeDirs(join(dir, '..'), { field, value: req.cacheDir ?? defaultCacheDir() });
  return withFileLock(`${dir}.lock`, { what: `compiling the kernels of ${req.spec.name} (${req.target})`, field, log, ...(req.lockTimeoutMs === undefined ? {} : { timeoutMs: req.lockTimeoutMs }) }, async () => {
    const { targets, build } = cacheCompile(req.target);
    // The first use of a model compiles for seconds (minutes with nvcc): say so before it starts.
    if (!existsSync(dir)) log(`compiling the kernels of ${req.spec.name} for ${req.target} (first use; kept in ${dir})`);
    // An entry that is there but not up to date is compiled again, as long: say so, and why.
    const onRecompile = (why: string): void => log(`recompiling the kernels of ${req.spec.name} for ${req.target} (kept in ${dir}): ${why}`);
    const compiled = await compileModel({
      spec: req.spec, targets, outDir: dir, outField: field, build, log, onRecompile,
      ...(req.drafts ? { drafts: req.drafts } : {}), ...(req.tiles ? { tiles: req.tiles } : {}), ...(req.gemms ? { gemms: req.gemms } : {}), ...(req.jobs ? { jobs: req.jobs } : {}),
      ...(req.variants ? { variants: req.variants } : {}),
    });
    await req.finish?.(dir, compiled, sharedCacheDir(req.cacheDir));
    return compiled;
  });
}
