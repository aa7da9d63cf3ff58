/**
 * A compiled model's kernels, opened from its output directory (manifest.json + the CPU
 * library or the fatbins `tidarc compile` built) on one backend: cpu (the native addon calls the
 * library) or cuda (the AttentionLauncher launches the fatbins). Every backend checks every
 * buffer against the variant's shapes first, with the same errors, so a wrong size is a clear
 * error, never a read past an array.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { TidarcError } from '../errors.js';
import { readJsonFileSync } from '../fs/read-json.js';
import { MAX_CPU_THREADS, MAX_SPLITS, checkInteger, checkPrefixLen } from './attention-checks.js';
import { cpuSplitsFor, heuristicCpuCall, tunedCallOf } from '../codegen/call-params.js';
import type { Manifest, ManifestVariant } from '../codegen/manifest.js';
import { type Backend, type BackendChoice, checkBackendChoice } from '../codegen/target.js';
import { AttentionLauncher, attentionKernelOf, attentionModule, attentionSm90aModule } from './cuda/attention-launch.js';
import { CudaDevice, type DeviceBuffer } from './cuda/device.js';
import { type LibraryHandle, type NativeAddon, type NativeAttentionArgs, loadNative } from './native.js';
import { runEvery } from '../util/run-every.js';

// The public entries (index.ts, kernels.ts) export these types from here.
export type { Backend, BackendChoice };

export interface OpenOptions {
  /**
   * 'cpu': the portable C++ library; 'cuda': the compiled fatbins on GPU 0 (or, with
   * $TIDARC_LIBCUDA at the emulated driver, their .emu.so on the SIMT emulator); 'auto'
   * (default): cuda when the driver is usable and loads every variant's kernels, else cpu.
   */
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
  /**
   * Split-KV count; default: the tuned value for this shape on this backend (compile --tuned),
   * else the wave-efficiency rule over the CPU threads (cpuSplitsFor), or the split count of least
   * estimated time over the GPU's SMs (call-params.ts splitsFor).
   */
  readonly splits?: number;
  /**
   * CPU threads, 0 (all) to MAX_CPU_THREADS (1024); a library runs at most its machine's
   * hardware threads. Default: the tuned value for this shape, else one for a small call and all otherwise.
   * Checked on every backend, used by cpu only.
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
  /** 'cpu': the portable C++ kernels; 'cuda': the fatbins through the CUDA driver; 'emulator': the generated CUDA on the SIMT emulator. */
  readonly backend: Backend | 'emulator';
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
   * at L = 4096 (16 MB of caches), against 0.4 and 2-3 ms for the kernel itself. On cuda the
   * driver calls are synchronous: the upload, launch and download run before the promise is
   * returned, on the calling thread.
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

/** The numbers and buffers of a call, checked against its variant; the call parameters are left to the backend. */
interface CheckedCall {
  readonly batch: number;
  readonly cacheCapacity: number;
  readonly prefixLen: Int32Array;
  readonly maxPrefix: number;
  /** batch * steps * qHeads. */
  readonly rows: number;
  readonly o: Uint16Array;
  readonly lse: Float32Array;
}

/** What every backend checks before it runs anything: the same inputs, the same one-line errors. */
function checkCall(v: ManifestVariant, inputs: AttentionInputs): CheckedCall {
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
  const rows = batch * v.steps * qHeads;
  if (inputs.outputs) {
    checkArray('outputs.o', inputs.outputs.o, Uint16Array);
    checkArray('outputs.lse', inputs.outputs.lse, Float32Array);
    checkLength('outputs.o', inputs.outputs.o.length, rows * headDim, `[${batch}, ${v.steps}, ${qHeads}, ${headDim}]`);
    checkLength('outputs.lse', inputs.outputs.lse.length, rows, `[${batch}, ${v.steps}, ${qHeads}]`);
  }
  return {
    batch, cacheCapacity, prefixLen, maxPrefix, rows,
    o: inputs.outputs?.o ?? new Uint16Array(rows * headDim),
    lse: inputs.outputs?.lse ?? new Float32Array(rows),
  };
}

/** Validates inputs against a variant and builds the CPU library's call arguments. */
export function prepareCall(v: ManifestVariant, inputs: AttentionInputs, parallelism: number): NativeAttentionArgs {
  return cpuCall(v, inputs, checkCall(v, inputs), parallelism);
}

/** The CPU library's arguments of a checked call: threads and splits as given, else tuned on cpu, else the heuristic. */
function cpuCall(v: ManifestVariant, inputs: AttentionInputs, c: CheckedCall, parallelism: number): NativeAttentionArgs {
  const { kvHeads, headDim } = v.shape;
  // What the caller says, else what tidarc tune measured for this shape, else the heuristic.
  const tuned = tunedCallOf(v, 'cpu', c.batch, c.maxPrefix);
  const threads = checkInteger('threads', inputs.threads ?? tuned?.threads ?? heuristicCpuCall({ batch: c.batch, kvHeads, rows: v.rows, rowTiles: v.plan.rowTiles, prefix: c.maxPrefix, steps: v.steps, headDim, tileN: v.plan.tileN }, parallelism).threads, 0, MAX_CPU_THREADS);
  const splits = checkInteger('splits', inputs.splits ?? cpuSplitsFor(c.batch * kvHeads * v.plan.rowTiles, threads, parallelism, Math.ceil(c.maxPrefix / v.plan.tileN), tuned?.splits), 1, MAX_SPLITS);
  return {
    q: inputs.q, kCache: inputs.kCache, vCache: inputs.vCache, kStep: inputs.kStep, vStep: inputs.vStep, prefixLen: c.prefixLen, o: c.o, lse: c.lse,
    workspace: splits > 1 ? new Float32Array(splits * c.rows * (headDim + 1)) : null,
    batch: c.batch, cacheCapacity: c.cacheCapacity, numSplits: splits, numThreads: threads, headDim,
  };
}

/** One backend's half of a library: runs a checked call of a variant into c.o and c.lse, returns the splits it ran with. */
interface Engine {
  run(v: ManifestVariant, inputs: AttentionInputs, c: CheckedCall): number;
  runAsync(v: ManifestVariant, inputs: AttentionInputs, c: CheckedCall): Promise<number>;
  close(): void;
}

function cpuEngine(dir: string, manifest: Manifest, native: NativeAddon): Engine {
  const libPath = manifest.build?.cpu?.library;
  if (!libPath) {
    throw new TidarcError('missing-file', 'this compile has no CPU library (it was compiled with --no-build or without a C++ compiler); run `tidarc compile` again with g++ on PATH', { source: dir });
  }
  const handle: LibraryHandle = native.openLibrary(join(dir, libPath));
  const parallelism = availableParallelism();
  return {
    run(v, inputs, c) {
      const args = cpuCall(v, inputs, c, parallelism);
      native.runAttention(handle, v.symbols.cpu, args);
      return args.numSplits;
    },
    async runAsync(v, inputs, c) {
      const args = cpuCall(v, inputs, c, parallelism);
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
      return args.numSplits;
    },
    close: () => native.closeLibrary(handle),
  };
}

/** cuDeviceGetName of the emulated CUDA driver (runtime/emu/fake_cuda.cpp, `tidarc emulated-driver`) starts with this. */
export const EMULATED_DEVICE_PREFIX = 'tidarc emulated';

/** What the emulated driver loads for a module file (`X.fatbin`): the `X.emu.so` beside it (fake_cuda.cpp emulated_module_path). */
export function emulatedModulePath(modulePath: string): string {
  return modulePath.replace(/(\.[^./]*)?$/, '.emu.so');
}

/**
 * On the emulated driver: every variant's .emu.so, or one line saying how to build them. A
 * compile writes fatbins (or, with --no-build, none), never these; `tidarc run --backend cuda`
 * builds its own kernel cache's (load-model), this library path cannot (open is synchronous, the
 * build is g++ minutes), so without them cuModuleLoad failed with CUDA_ERROR_FILE_NOT_FOUND for a
 * fatbin that exists and pointed at functions no public entry exported.
 */
function requireEmulatedModules(dir: string, manifest: Manifest, cc: readonly [number, number]): void {
  // The module each variant's launches load on this device (AttentionLauncher.kernel): its sm_90a one where the device takes it.
  const module = (v: ManifestVariant): string => {
    const sm90a = attentionKernelOf(v, manifest.arches, cc);
    return sm90a ? attentionSm90aModule(dir, sm90a) : attentionModule(dir, v);
  };
  const missing = manifest.variants.filter((v) => !existsSync(emulatedModulePath(module(v)))).map((v) => v.name);
  if (missing.length === 0) return;
  throw new TidarcError('runtime', `the emulated CUDA driver ($TIDARC_LIBCUDA) runs the .emu.so beside each fatbin, and ${dir} has none for ${missing.join(', ')}: build them once with \`await emulateCompiledDir(${JSON.stringify(dir)})\` (import { emulateCompiledDir } from 'tidarc'), then load again`);
}

/**
 * The compiled fatbins on device 0 (on the emulated driver, their .emu.so): every variant's
 * kernels load at open, so a directory built for another arch, or without device code, fails
 * (or falls back, for 'auto') there and not in the first call. A call uploads its inputs into
 * device buffers kept across calls (grown on demand), launches through the AttentionLauncher
 * and downloads o and lse. The driver calls are synchronous, so runAsync runs on the calling
 * thread too; it exists for the same API on every backend.
 */
function cudaEngine(dir: string, manifest: Manifest): { engine: Engine; device: CudaDevice } {
  const device = CudaDevice.open(0);
  let launcher: AttentionLauncher;
  try {
    if (device.info.name.startsWith(EMULATED_DEVICE_PREFIX)) requireEmulatedModules(dir, manifest, [device.info.major, device.info.minor]);
    launcher = new AttentionLauncher(device, dir, manifest);
    for (const v of manifest.variants) launcher.kernel(v);
  } catch (e) {
    device.close();
    throw e;
  }
  const buffers = new Map<string, DeviceBuffer>();
  const buffer = (name: string, bytes: number): DeviceBuffer => {
    const have = buffers.get(name);
    if (have && have.bytes >= bytes) return have;
    if (have) device.free(have);
    const b = device.alloc(bytes, `kernel library ${name}`);
    buffers.set(name, b);
    return b;
  };
  const upload = (name: string, src: ArrayBufferView): number => {
    const b = buffer(name, src.byteLength);
    if (src.byteLength > 0) device.upload(b, src); // an empty cache (capacity 0) is never read
    return b.ptr;
  };
  const run = (v: ManifestVariant, inputs: AttentionInputs, c: CheckedCall): number => {
    const o = buffer('o', c.o.byteLength), lse = buffer('lse', c.lse.byteLength);
    const splits = launcher.launch(v, {
      q: upload('q', inputs.q), kCache: upload('kCache', inputs.kCache), vCache: upload('vCache', inputs.vCache),
      kStep: upload('kStep', inputs.kStep), vStep: upload('vStep', inputs.vStep), prefixLen: upload('prefixLen', c.prefixLen),
      o: o.ptr, lse: lse.ptr, batch: c.batch, cacheCapacity: c.cacheCapacity, maxPrefix: c.maxPrefix,
      ...(inputs.splits === undefined ? {} : { splits: inputs.splits }),
    });
    device.synchronize();
    device.download(o, c.o);
    device.download(lse, c.lse);
    return splits;
  };
  return {
    device,
    engine: {
      run,
      runAsync: async (v, inputs, c) => run(v, inputs, c),
      // The device closes even where freeing the split workspace failed (a faulted context): it gives the context back.
      close: () => runEvery([() => launcher.close(), () => device.close()]),
    },
  };
}

/** The engine a choice gets: cuda when asked for (or, for 'auto', when usable), else cpu and why not cuda. */
function chooseEngine(dir: string, manifest: Manifest, native: NativeAddon, choice: BackendChoice): { backend: Backend; reason: string; engine: Engine } {
  if (choice === 'cpu') return { backend: 'cpu', reason: 'requested', engine: cpuEngine(dir, manifest, native) };
  const status = native.cudaStatus();
  let why = status.reason;
  if (status.available) {
    try {
      const { engine, device } = cudaEngine(dir, manifest);
      const { name, multiprocessors } = device.info;
      return { backend: 'cuda', reason: `${choice === 'cuda' ? 'requested' : 'CUDA is usable'}: ${name} (${device.arch}, ${multiprocessors} SMs), ${status.reason}`, engine };
    } catch (e) {
      if (!(e instanceof TidarcError)) throw e;
      why = e.message;
    }
  }
  if (choice === 'cuda') throw new TidarcError('unsupported', `the cuda backend cannot run here: ${why}`, { field: 'backend', value: choice, allowed: 'auto, cpu' });
  return { backend: 'cpu', reason: `CUDA not used: ${why}`, engine: cpuEngine(dir, manifest, native) };
}

export function openKernelLibrary(dir: string, options: OpenOptions = {}): KernelLibrary {
  const choice = checkBackendChoice(options.backend ?? 'auto');
  const manifest = readManifest(dir);
  const { backend, reason, engine } = chooseEngine(dir, manifest, loadNative(), choice);
  const byName = new Map(manifest.variants.map((v) => [v.name, v]));
  let closed = false;
  const call = (name: string, inputs: AttentionInputs): [ManifestVariant, CheckedCall] => {
    if (closed) throw new TidarcError('runtime', 'the kernel library was closed');
    const v = byName.get(name);
    if (!v) {
      const omitted = manifest.omittedVariants?.includes(name) === true;
      throw new TidarcError('invalid-argument', omitted ? 'variant left out of this compile by `tidarc compile --variant`' : 'unknown variant', { field: 'variant', value: name, allowed: [...byName.keys()].join(', '), source: dir });
    }
    return [v, checkCall(v, inputs)];
  };
  return {
    backend,
    backendReason: reason,
    manifest,
    run(name, inputs) {
      const [v, c] = call(name, inputs);
      return { o: c.o, lse: c.lse, splits: engine.run(v, inputs, c) };
    },
    async runAsync(name, inputs) {
      const [v, c] = call(name, inputs);
      return { o: c.o, lse: c.lse, splits: await engine.runAsync(v, inputs, c) };
    },
    close() {
      if (closed) return;
      closed = true;  // closed even where the engine's close throws (it runs every step of its own)
      engine.close();
    },
  };
}
