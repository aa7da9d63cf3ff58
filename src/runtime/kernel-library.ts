/**
 * A compiled model's kernels, opened from its output directory (manifest.json + the CPU
 * library `tidarc compile` built). Checks every buffer against the variant's shapes before
 * the native call, so a wrong size is a clear error, never a read past an array.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { TidarcError } from '../errors.js';
import { readJsonFileSync } from '../fs/read-json.js';
import { cpuSplitsFor, heuristicCpuCall, tunedCall } from '../codegen/call-params.js';
import type { Manifest, ManifestVariant } from '../codegen/manifest.js';
import { type LibraryHandle, type NativeAttentionArgs, loadNative } from './native.js';

export type Backend = 'auto' | 'cpu' | 'cuda';

export interface OpenOptions {
  /** 'auto' (default) and 'cpu' run the portable C++ kernels; 'cuda' arrives with the CUDA runtime. */
  readonly backend?: Backend;
}

export interface AttentionInputs {
  readonly batch: number;
  /** Capacity of the cache's sequence axis (>= every prefix length). */
  readonly cacheCapacity: number;
  /** Cached prefix length L_b of each sequence. */
  readonly prefixLen: Int32Array | readonly number[];
  readonly q: Uint16Array;
  readonly kCache: Uint16Array;
  readonly vCache: Uint16Array;
  readonly kStep: Uint16Array;
  readonly vStep: Uint16Array;
  /** Split-KV count; default: the tuned value for this shape (compile --tuned), else the wave-efficiency heuristic. */
  readonly splits?: number;
  /** CPU threads (0 = all); default: the tuned value for this shape, else one for a small call and all otherwise. */
  readonly threads?: number;
  /** Buffers to write into instead of fresh ones (reuse across steps; tests poison them). */
  readonly outputs?: { readonly o: Uint16Array; readonly lse: Float32Array };
}

export interface AttentionOutputs {
  /** [batch, steps, qHeads, headDim] in the variant's dtype (bits). */
  readonly o: Uint16Array;
  /** [batch, steps, qHeads], natural log; -Infinity for a row that sees no key. */
  readonly lse: Float32Array;
  readonly splits: number;
}

export interface KernelLibrary {
  /** 'cpu': the portable C++ kernels; 'emulator': the generated CUDA on the SIMT emulator. */
  readonly backend: 'cpu' | 'emulator';
  /** Why this backend was chosen (e.g. why CUDA was not). */
  readonly backendReason: string;
  readonly manifest: Manifest;
  run(variant: string, inputs: AttentionInputs): AttentionOutputs;
  runAsync(variant: string, inputs: AttentionInputs): Promise<AttentionOutputs>;
  close(): void;
}

export function readManifest(dir: string): Manifest {
  const path = join(dir, 'manifest.json');
  if (!existsSync(path)) {
    throw new TidarcError('missing-file', 'no manifest.json: not a directory written by `tidarc compile`', { source: dir });
  }
  return readJsonFileSync(path, 'manifest') as Manifest;
}

function checkLength(field: string, actual: number, expected: number, shape: string): void {
  if (actual !== expected) {
    throw new TidarcError('invalid-argument', `${field} has the wrong size`, { field, value: actual, allowed: `${expected} elements (${shape})` });
  }
}

/** Validates inputs against a variant and builds the native call's arguments. */
export function prepareCall(v: ManifestVariant, inputs: AttentionInputs, parallelism: number): NativeAttentionArgs {
  const { qHeads, kvHeads, headDim } = v.shape;
  const { batch, cacheCapacity } = inputs;
  if (!Number.isInteger(batch) || batch < 1) throw new TidarcError('invalid-argument', 'batch must be a positive integer', { field: 'batch', value: batch });
  if (!Number.isInteger(cacheCapacity) || cacheCapacity < 0) throw new TidarcError('invalid-argument', 'cacheCapacity must be a non-negative integer', { field: 'cacheCapacity', value: cacheCapacity });
  const prefixLen = Int32Array.from(inputs.prefixLen);
  checkLength('prefixLen', prefixLen.length, batch, '[batch]');
  prefixLen.forEach((L, b) => {
    if (L < 0 || L > cacheCapacity) throw new TidarcError('invalid-argument', 'prefix length out of range', { field: `prefixLen[${b}]`, value: L, allowed: `0..${cacheCapacity}` });
  });
  checkLength('q', inputs.q.length, batch * v.steps * qHeads * headDim, `[${batch}, ${v.steps}, ${qHeads}, ${headDim}]`);
  for (const f of ['kCache', 'vCache'] as const) checkLength(f, inputs[f].length, batch * kvHeads * cacheCapacity * headDim, `[${batch}, ${kvHeads}, ${cacheCapacity}, ${headDim}]`);
  for (const f of ['kStep', 'vStep'] as const) checkLength(f, inputs[f].length, batch * v.steps * kvHeads * headDim, `[${batch}, ${v.steps}, ${kvHeads}, ${headDim}]`);
  const maxPrefix = Math.max(0, ...prefixLen);
  // What the caller says, else what tidarc tune measured for this shape, else the heuristic.
  const tuned = v.tuned?.backend === 'cpu' ? tunedCall(v.tuned.calls, batch, maxPrefix) : undefined;
  const threads = inputs.threads ?? tuned?.threads ?? heuristicCpuCall({ batch, kvHeads, rows: v.rows, rowTiles: v.plan.rowTiles, prefix: maxPrefix, steps: v.steps, headDim, tileN: v.plan.tileN }, parallelism).threads;
  const splits = inputs.splits ?? tuned?.splits ?? cpuSplitsFor(batch * kvHeads * v.plan.rowTiles, threads, parallelism, Math.ceil(maxPrefix / v.plan.tileN));
  if (!Number.isInteger(splits) || splits < 1 || splits > 1024) throw new TidarcError('invalid-argument', 'splits must be an integer from 1 to 1024', { field: 'splits', value: splits });
  const rows = batch * v.steps * qHeads;
  if (inputs.outputs) {
    checkLength('outputs.o', inputs.outputs.o.length, rows * headDim, `[${batch}, ${v.steps}, ${qHeads}, ${headDim}]`);
    checkLength('outputs.lse', inputs.outputs.lse.length, rows, `[${batch}, ${v.steps}, ${qHeads}]`);
  }
  return {
    q: inputs.q, kCache: inputs.kCache, vCache: inputs.vCache, kStep: inputs.kStep, vStep: inputs.vStep, prefixLen,
    o: inputs.outputs?.o ?? new Uint16Array(rows * headDim),
    lse: inputs.outputs?.lse ?? new Float32Array(rows),
    workspace: splits > 1 ? new Float32Array(splits * rows * (headDim + 1)) : null,
    batch, cacheCapacity, numSplits: splits, numThreads: threads,
  };
}

export function openKernelLibrary(dir: string, options: OpenOptions = {}): KernelLibrary {
  const backend = options.backend ?? 'auto';
  if (backend !== 'auto' && backend !== 'cpu' && backend !== 'cuda') {
    throw new TidarcError('invalid-argument', 'unknown backend', { field: 'backend', value: backend, allowed: 'auto, cpu, cuda' });
  }
  const manifest = readManifest(dir);
  const native = loadNative();
  const cuda = native.cudaStatus();
  if (backend === 'cuda') {
    throw new TidarcError('unsupported', `the cuda backend is not available in this build (launching fatbins arrives with the CUDA runtime); CUDA status: ${cuda.reason}`, { field: 'backend', value: backend, allowed: 'auto, cpu' });
  }
  const libPath = manifest.build?.cpu?.library;
  if (!libPath) {
    throw new TidarcError('missing-file', 'this compile has no CPU library (it was compiled with --no-build or without a C++ compiler); run `tidarc compile` again with g++ on PATH', { source: dir });
  }
  const handle: LibraryHandle = native.openLibrary(join(dir, libPath));
  const byName = new Map(manifest.variants.map((v) => [v.name, v]));
  const parallelism = availableParallelism();
  let closed = false;
  const call = (name: string, inputs: AttentionInputs): [ManifestVariant, NativeAttentionArgs] => {
    if (closed) throw new TidarcError('runtime', 'the kernel library was closed');
    const v = byName.get(name);
    if (!v) throw new TidarcError('invalid-argument', 'unknown variant', { field: 'variant', value: name, allowed: [...byName.keys()].join(', ') });
    return [v, prepareCall(v, inputs, parallelism)];
  };
  return {
    backend: 'cpu',
    backendReason: backend === 'cpu' ? 'requested' : `CUDA not used: ${cuda.available ? 'the cuda backend arrives with the CUDA runtime' : cuda.reason}`,
    manifest,
    run(name, inputs) {
      const [v, args] = call(name, inputs);
      native.runAttention(handle, v.symbols.cpu, args);
      return { o: args.o, lse: args.lse, splits: args.numSplits };
    },
    async runAsync(name, inputs) {
      const [v, args] = call(name, inputs);
      await native.runAttentionAsync(handle, v.symbols.cpu, args);
      return { o: args.o, lse: args.lse, splits: args.numSplits };
    },
    close() {
      if (!closed) native.closeLibrary(handle);
      closed = true;
    },
  };
}
