/**
 * A KernelLibrary whose kernels are the generated CUDA running on the SIMT emulator: the
 * runtime's forward pass and decoding loop drive the very source a GPU would run, so the
 * runtime/kernel seam (layouts, prefix lengths, step buffers, split-KV) is proven without a
 * GPU. Every launch is a process; slow, meant for small models in tests. A finding or an
 * unfinished launch is an error.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TidarcError } from '../errors.js';
import { removeOnInterrupt, settled } from '../fs/interrupt.js';
import { runPool } from '../build/pool.js';
import { findCxx } from '../build/toolchain.js';
import { type AttentionInputs, type AttentionOutputs, type KernelLibrary, prepareCall, readManifest } from '../runtime/kernel-library.js';
import { buildEmulatorRuntime, buildVariantEmulator } from './emulator-build.js';
import { runEmulatorSync } from './emulator-run.js';

export async function openEmulatedKernelLibrary(dir: string): Promise<KernelLibrary> {
  const manifest = readManifest(dir);
  const cxx = await findCxx();
  if (!cxx.found) throw new TidarcError('unsupported', `the emulator needs a C++ compiler (${cxx.reason})`);
  const work = await mkdtemp(join(tmpdir(), 'tidarc-emulib-'));
  removeOnInterrupt(work);
  const objects = await buildEmulatorRuntime(cxx.tool.path, join(work, 'runtime'));
  const exes = new Map<string, string>();
  await runPool(manifest.variants, availableParallelism(), async (v) => {
    const exe = join(work, `emu_${v.name}`);
    await buildVariantEmulator(cxx.tool.path, join(dir, v.sources.cuda), join(dir, 'cuda'), v, objects, exe);
    exes.set(v.name, exe);
  });
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
    close: () => void rm(work, { recursive: true, force: true }).then(() => settled(work)),
  };
}
