/**
 * `tidarc emulate` behind the CLI: builds the emulator of each chosen variant of a compiled
 * directory (in parallel, in a scratch directory removed afterwards; the emulator runtime they
 * link comes from the kernel cache, runtime-cache.ts) and checks each run against the float64
 * reference.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TidarcError } from '../errors.js';
import { removeOnInterrupt, settled } from '../fs/interrupt.js';
import type { ManifestVariant } from '../codegen/manifest.js';
import { runPool } from '../build/pool.js';
import { findCxx, findNvcc } from '../build/toolchain.js';
import { ARCHES, type ArchName } from '../codegen/arch.js';
import { readManifest } from '../runtime/kernel-library.js';
import { buildVariantEmulator, buildVariantForGpu } from './emulator-build.js';
import { type EmulationCase, type EmulationReport, emulateVariant } from './emulate-variant.js';
import { checkGpuPresent, gpuMissingIn } from './gpu-presence.js';
import { cachedEmulatorRuntime } from './runtime-cache.js';

export interface EmulateOptions {
  /** Variant names to run (default: every variant of the directory). */
  readonly variants?: readonly string[];
  readonly batch: number;
  /** One prefix length per sequence; missing ones are derived from the first (L, L - 19, ...). */
  readonly prefix: readonly number[];
  readonly splits: readonly number[];
  readonly seed: number;
  readonly jobs?: number;
  /**
   * The emulator runtime's objects (buildEmulatorRuntime's) to link, instead of compiling them
   * (a g++ run per source) in the scratch directory: a caller that emulates several directories
   * builds them once. Default: the kernel cache's (runtime-cache.ts), compiled on first use.
   */
  readonly runtimeObjects?: readonly string[];
  /** Where the emulator runtime is cached (default: $TIDARC_CACHE or ~/.cache/tidarc). */
  readonly cacheDir?: string;
  /** 'emulator' (default): g++ and the SIMT emulator; 'gpu': nvcc and the GPU, same checks. */
  readonly target?: 'emulator' | 'gpu';
  /** The GPU's architecture, for target 'gpu' (default sm_90). */
  readonly arch?: ArchName;
  /** Launch every check programmatically (PDL, harness-protocol.ts): on the emulator a global access
   *  before a thread's grid_dependency_wait is a "pdl" finding. Default false. */
  readonly programmatic?: boolean;
  readonly log: (line: string) => void;
}

export interface EmulateRow extends EmulationReport {
  readonly splits: number;
  readonly prefixLen: readonly number[];
}

export function prefixLengths(batch: number, given: readonly number[]): number[] {
  return Array.from({ length: batch }, (_, b) => given[b] ?? Math.max(0, given[0]! - 19 * b));
}

export async function emulateDirectory(dir: string, options: EmulateOptions): Promise<EmulateRow[]> {
  const manifest = readManifest(dir);
  let variants: readonly ManifestVariant[] = manifest.variants;
  if (options.variants !== undefined) {
    const known = new Set(manifest.variants.map((v) => v.name));
    const unknown = options.variants.filter((name) => !known.has(name));
    if (unknown.length > 0) {
      throw new TidarcError('invalid-argument', 'no such variant in this directory', { field: '--variant', value: unknown.join(','), allowed: [...known].join(', ') });
    }
    variants = variants.filter((v) => options.variants!.includes(v.name));
  }
  const onGpu = options.target === 'gpu';
  if (onGpu) checkGpuPresent();
  const compiler = onGpu ? await findNvcc() : await findCxx();
  if (!compiler.found) throw new TidarcError('unsupported', onGpu ? `running on the GPU needs nvcc (${compiler.reason})` : `the emulator needs a C++ compiler (${compiler.reason})`);
  const work = await mkdtemp(join(tmpdir(), 'tidarc-emu-'));
  removeOnInterrupt(work);
  const jobs = options.jobs ?? availableParallelism();
  const prefixLen = prefixLengths(options.batch, options.prefix);
  try {
    const t0 = performance.now();
    const objects = onGpu ? [] : options.runtimeObjects ?? await cachedEmulatorRuntime(compiler.tool, { log: options.log, ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }) });
    const gencode = ARCHES[options.arch ?? 'sm_90'].gencode;
    let built = 0;
    const exes = await runPool(variants, jobs, async (v) => {
      const exe = join(work, `emu_${v.name}`);
      if (onGpu) await buildVariantForGpu(compiler.tool.path, join(dir, v.sources.cuda), join(dir, 'cuda'), v, gencode, exe);
      else await buildVariantEmulator(compiler.tool.path, join(dir, v.sources.cuda), join(dir, 'cuda'), v, objects, exe);
      options.log(`[${++built}/${variants.length}] built ${onGpu ? `the ${options.arch ?? 'sm_90'} harness` : 'the emulator'} of ${v.name}`);
      return exe;
    });
    options.log(`${onGpu ? 'GPU harnesses' : 'emulators'} built in ${((performance.now() - t0) / 1000).toFixed(1)} s; running ${variants.length * options.splits.length} checks`);
    const cases = variants.flatMap((v, i) => options.splits.map((splits) => ({ v, exe: exes[i]!, c: { batch: options.batch, prefixLen, splits, seed: options.seed, ...(options.programmatic ? { programmatic: true } : {}) } satisfies EmulationCase })));
    // A check of a large variant runs for minutes on the emulator: one line as each ends.
    let checked = 0;
    const rows = await runPool(cases, jobs, async ({ v, exe, c }) => {
      const t = performance.now();
      const row = { ...(await emulateVariant(exe, v, c, work)), splits: c.splits, prefixLen: c.prefixLen };
      options.log(`[${++checked}/${cases.length}] checked ${v.name} at splits ${c.splits}: ${row.ok ? 'ok' : 'failed'} (${((performance.now() - t) / 1000).toFixed(1)} s)`);
      return row;
    });
    const missing = onGpu ? gpuMissingIn(rows) : undefined;
    if (missing) throw missing;
    return rows;
  } finally {
    await rm(work, { recursive: true, force: true });
    settled(work);
  }
}
