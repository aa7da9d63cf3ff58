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
import { MAX_CPU_THREADS, MAX_SPLITS, checkInteger, checkPrefixLen } from './attention-checks.js';
import { cpuSplitsFor, heuristicCpuCall, tunedCall } from '../codegen/call-params.js';
import type { Manifest, ManifestVariant } from '../codegen/manifest.js';
import { type Backend, type BackendChoice, checkBackendChoice } from '../codegen/target.js';
import { type LibraryHandle, type NativeAttentionArgs, loadNative } from './native.js';

// The public entries (index.ts, kernels.ts) export these types from here.
export type { Backend, BackendChoice };

export interface OpenOptions {
  /** 'auto' (default) and 'cpu' run the portable C++ kernels; 'cuda' arrives with the CUDA runtime. */
  readonly backend?: BackendChoice;
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
  /**
   * CPU threads, 0 (all) to MAX_CPU_THREADS (1024); a library runs at most its machine's
   * hardware threads. Default: the tuned value for this shape, else one for a small call and all otherwise.
   */
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
  /**
   * run() on the libuv thread pool. The call works on copies taken when it is made (the caller
   * may detach or shrink a buffer meanwhile, which would free the memory under the kernel) and
   * writes o and lse back when it settles; it rejects, naming the field, if outputs.o or
   * outputs.lse was detached or resized meanwhile. Of the caches only the slots the call reads
   * are copied; arrays on a SharedArrayBuffer are used in place. Cost, on the main thread, at
   * Qwen3-8B's AR shape on the 2-core development VM: 0.15 ms at L = 512 (any capacity), 1.5 ms
   * at L = 4096 (16 MB of caches), against 0.4 and 2-3 ms for the kernel itself.
   */
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

function checkArray(field: string, value: unknown, type: typeof Uint16Array | typeof Float32Array): void {
  // The tag, not instanceof: an array made in another realm (vm, a worker's message) is fine.
  if (!ArrayBuffer.isView(value) || Object.prototype.toString.call(value) !== `[object ${type.name}]`) {
    const kind = value === null ? 'null' : typeof value === 'object' ? `a ${value.constructor?.name ?? 'object'}` : typeof value;
    throw new TidarcError('invalid-argument', `${field} must be a ${type.name}`, { field, value: kind, allowed: `a ${type.name}` });
  }
}

/** Validates inputs against a variant and builds the native call's arguments. */
export function prepareCall(v: ManifestVariant, inputs: AttentionInputs, parallelism: number): NativeAttentionArgs {
  const { qHeads, kvHeads, headDim } = v.shape;
  // Every number as given, before anything converts it (attention-checks.ts says why).
  const batch = checkInteger('batch', inputs.batch, 1);
  const cacheCapacity = checkInteger('cacheCapacity', inputs.cacheCapacity, 0);
  const prefixLen = checkPrefixLen(inputs.prefixLen, batch, cacheCapacity);
  if (inputs.threads !== undefined) checkInteger('threads', inputs.threads, 0, MAX_CPU_THREADS);
  if (inputs.splits !== undefined) checkInteger('splits', inputs.splits, 1, MAX_SPLITS);
  for (const f of ['q', 'kCache', 'vCache', 'kStep', 'vStep'] as const) checkArray(f, inputs[f], Uint16Array);
  checkLength('q', inputs.q.length, batch * v.steps * qHeads * headDim, `[${batch}, ${v.steps}, ${qHeads}, ${headDim}]`);
  for (const f of ['kCache', 'vCache'] as const) checkLength(f, inputs[f].length, batch * kvHeads * cacheCapacity * headDim, `[${batch}, ${kvHeads}, ${cacheCapacity}, ${headDim}]`);
  for (const f of ['kStep', 'vStep'] as const) checkLength(f, inputs[f].length, batch * v.steps * kvHeads * headDim, `[${batch}, ${v.steps}, ${kvHeads}, ${headDim}]`);
  const maxPrefix = prefixLen.reduce((m, L) => Math.max(m, L), 0); // no spread: a large batch would overflow the arguments
  // What the caller says, else what tidarc tune measured for this shape, else the heuristic.
  const tuned = v.tuned?.backend === 'cpu' ? tunedCall(v.tuned.calls, batch, maxPrefix) : undefined;
  const threads = checkInteger('threads', inputs.threads ?? tuned?.threads ?? heuristicCpuCall({ batch, kvHeads, rows: v.rows, rowTiles: v.plan.rowTiles, prefix: maxPrefix, steps: v.steps, headDim, tileN: v.plan.tileN }, parallelism).threads, 0, MAX_CPU_THREADS);
  const splits = checkInteger('splits', inputs.splits ?? tuned?.splits ?? cpuSplitsFor(batch * kvHeads * v.plan.rowTiles, threads, parallelism, Math.ceil(maxPrefix / v.plan.tileN)), 1, MAX_SPLITS);
  const rows = batch * v.steps * qHeads;
  if (inputs.outputs) {
    checkArray('outputs.o', inputs.outputs.o, Uint16Array);
    checkArray('outputs.lse', inputs.outputs.lse, Float32Array);
    checkLength('outputs.o', inputs.outputs.o.length, rows * headDim, `[${batch}, ${v.steps}, ${qHeads}, ${headDim}]`);
    checkLength('outputs.lse', inputs.outputs.lse.length, rows, `[${batch}, ${v.steps}, ${qHeads}]`);
  }
  return {
    q: inputs.q, kCache: inputs.kCache, vCache: inputs.vCache, kStep: inputs.kStep, vStep: inputs.vStep, prefixLen,
    o: inputs.outputs?.o ?? new Uint16Array(rows * headDim),
    lse: inputs.outputs?.lse ?? new Float32Array(rows),
    workspace: splits > 1 ? new Float32Array(splits * rows * (headDim + 1)) : null,
    batch, cacheCapacity, numSplits: splits, numThreads: threads, headDim,
  };
}

export function openKernelLibrary(dir: string, options: OpenOptions = {}): KernelLibrary {
  const backend = checkBackendChoice(options.backend ?? 'auto');
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
      try {
        await native.runAttentionAsync(handle, v.symbols.cpu, args);
      } catch (e) {
        const err = e as { code?: unknown; field?: unknown };
        if (err.code !== 'TIDARC_ERR_BUFFER_CHANGED') throw e;
        throw new TidarcError('runtime', 'an output buffer was detached or resized while runAsync ran; its result was not written', {
          field: `outputs.${String(err.field)}`,
          allowed: 'buffers left attached and of the same size until the promise settles',
        });
      }
      return { o: args.o, lse: args.lse, splits: args.numSplits };
    },
    close() {
      if (!closed) native.closeLibrary(handle);
      closed = true;
    },
  };
}
