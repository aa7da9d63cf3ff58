/**
 * A KernelLibrary whose kernels are the generated CUDA running on the SIMT emulator: the
 * runtime's forward pass and decoding loop drive the very source a GPU would run, so the
 * runtime/kernel seam (layouts, prefix lengths, step buffers, split-KV) is proven without a
 * GPU. Every launch is a process; slow, meant for small models in tests. A finding or an
 * unfinished launch is an error. The emulator runtime's objects come from the kernel cache
 * (runtime-cache.ts cachedEmulatorRuntime, as `tidarc emulate` takes them): only the first open
 * with a cache compiles them; each open still builds its variants' executables in a temp dir.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TidarcError } from '../errors.js';
import { removeOnInterrupt, settled } from '../fs/interrupt.js';
import { runPool } from '../build/pool.js';
import { type Tool, findCxx } from '../build/toolchain.js';
import { type AttentionInputs, type AttentionOutputs, type KernelLibrary, prepareCall, readManifest } from '../runtime/kernel-library.js';
import { buildVariantEmulator } from './emulator-build.js';
import { runEmulatorSync } from './emulator-run.js';
import { cachedEmulatorRuntime } from './runtime-cache.js';

export interface EmulatedLibraryOptions {
  /** Where the emulator runtime is cached (default: $TIDARC_CACHE or ~/.cache/tidarc, as `tidarc emulate`). */
  readonly cacheDir?: string;
  /** The C++ compiler (default: findCxx()). */
  readonly compiler?: Tool;
  /** Progress lines ("emulator runtime: cached (...)" or "building the emulator runtime (...)"). */
  readonly log?: (line: string) => void;
}

export async function openEmulatedKernelLibrary(dir: string, options: EmulatedLibraryOptions = {}): Promise<KernelLibrary> {
  const manifest = readManifest(dir);
  let cxx = options.compiler;
  if (!cxx) {
    const found = await findCxx();
    if (!found.found) throw new TidarcError('unsupported', `the emulator needs a C++ compiler (${found.reason})`);
    cxx = found.tool;
  }
  const objects = await cachedEmulatorRuntime(cxx, {
    ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }), ...(options.log === undefined ? {} : { log: options.log }),
  });
  const work = await mkdtemp(join(tmpdir(), 'tidarc-emulib-'));
  removeOnInterrupt(work);
  const exes = new Map<string, string>();
  try {
    await runPool(manifest.variants, availableParallelism(), async (v) => {
      const exe = join(work, `emu_${v.name}`);
      await buildVariantEmulator(cxx.path, join(dir, v.sources.cuda), join(dir, 'cuda'), v, objects, exe);
      exes.set(v.name, exe);
    });
  } catch (e) {
    await rm(work, { recursive: true, force: true });
    settled(work);
    throw e;
  }
  let launches = 0;
  const run = (name: string, inputs: AttentionInputs): AttentionOutputs => {
    const v = manifest.variants.find((x) => x.name === name);
    if (!v) throw new TidarcError('invalid-argument', 'unknown variant', { field: 'variant', value: name, allowed: manifest.variants.map((x) => x.name).join(', ') });
    const args = prepareCall(v, inputs, availableParallelism());
    const r = runEmulatorSync(exes.get(name)!, v, {
      batch: args.batch, cacheCapacity: args.cacheCapacity, prefixLen: [...args.prefixLen], splits: args.numSplits,
      q: args.q, kCache: args.kCache, vCache: args.vCache, kStep: args.kStep, vStep: args.vStep,
    }, work, `launch${launches++ % 2}`);
    if (r.findings.length > 0 || !r.completed) {
      const f = r.findings[0];
      throw new TidarcError('runtime', `emulated kernel ${name} ${f ? `reported ${f.kind}: ${f.message}` : 'did not complete'}`);
    }
    args.o.set(r.o);
    args.lse.set(r.lse);
    return { o: args.o, lse: args.lse, splits: args.numSplits };
  };
  return {
    backend: 'emulator',
    backendReason: 'the generated CUDA on the CPU SIMT emulator',
    manifest,
    run,
    runAsync: async (name, inputs) => run(name, inputs),
    // Removed before close() returns: a process that exits right after it leaves nothing behind.
    close: () => {
      rmSync(work, { recursive: true, force: true });
      settled(work);
    },
  };
}
