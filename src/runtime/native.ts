/**
 * The typed seam to the native addon (runtime/src/addon.cc, built by `npm run build:native`
 * into build/native/Release/tidarc_native.node). The addon only converts data and calls
 * into dlopen'ed kernel libraries; shapes are checked by the caller, which knows them.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { TidarcError } from '../errors.js';
import { packageRoot } from '../util/paths.js';
import type { ATTENTION_ARRAYS, AttentionScalarField } from './cuda/op-abi.js';

declare const libraryHandleBrand: unique symbol;

/** An opened kernel library (a dlopen handle inside the addon). */
export interface LibraryHandle {
  readonly [libraryHandleBrand]: 'LibraryHandle';
}

type AttentionArrays = typeof ATTENTION_ARRAYS;
interface JsArrayOf { u16: Uint16Array; i32: Int32Array; f32: Float32Array }

/**
 * Buffers and sizes of one attention call: a field per entry of op-abi.ts's ATTENTION_ARRAYS
 * (16-bit tensors carry bf16 or fp16 bits, as the variant expects; the scratch workspace is
 * null when numSplits is 1; the split counters, which only the GPU kernels use, may be left
 * out) and ATTENTION_SCALARS (numThreads: CPU backend only, 0 = all
 * hardware threads), in the layouts of templates/common/tidarc_abi.h. The addon reads them
 * through the same tables (templates/common/tidarc_attention_args.h).
 */
type ArrayOf<F extends keyof AttentionArrays> = JsArrayOf[AttentionArrays[F]['elem']];
type CounterFields = { [F in keyof AttentionArrays]: AttentionArrays[F]['role'] extends 'counters' ? F : never }[keyof AttentionArrays];
export type NativeAttentionArgs = {
  [F in Exclude<keyof AttentionArrays, CounterFields>]: AttentionArrays[F]['role'] extends 'scratch' ? ArrayOf<F> | null : ArrayOf<F>;
} & { [F in CounterFields]?: ArrayOf<F> | null } & { [S in AttentionScalarField]: number } & {
  /**
   * Elements of one cache slot (the variant's head dim). Optional; lets runAttentionAsync copy
   * only the cache slots the call reads (slots [0, prefixLen[b]) of each sequence and KV head)
   * instead of the whole caches.
   */
  headDim?: number;
};

export interface CudaStatus {
  available: boolean;
  /** Why CUDA is unavailable, or the driver version and device count when it is. */
  reason: string;
  /** When available: cuDriverGetVersion (13000 = 13.0), the device count and the library loaded. */
  driverVersion?: number;
  devices?: number;
  library?: string;
  /** When available: whether the driver exports cuLaunchKernelEx (CUDA 12.0+; programmatic launches need it). */
  hasLaunchKernelEx?: boolean;
}

/** What cuda.open() says of the device. */
export interface CudaDeviceInfo {
  name: string;
  major: number;
  minor: number;
  multiprocessors: number;
  maxSharedOptin: number;
  totalMemory: number;
  driverVersion: number;
  /** Whether the driver exports cuLaunchKernelEx (CUDA 12.0+): launch(..., programmatic) needs it. An older addon build leaves it out. */
  hasLaunchKernelEx?: boolean;
}

/**
 * The CUDA driver (runtime/src/cuda/cuda_napi.cc): libcuda.so.1, or $TIDARC_LIBCUDA, through
 * dlopen. Device pointers are numbers; modules and functions are integer handles. A failing
 * CUDA call throws an Error whose `code` is the CUDA_ERROR_* name. Use CudaDevice
 * (src/runtime/cuda/device.ts), not this.
 */
export interface NativeCuda {
  status(): CudaStatus;
  open(ordinal: number): CudaDeviceInfo;
  /**
   * Gives back one open()'s reference; the last one destroys the stream, unloads the modules and
   * releases the primary context (released: true), and refuses while buffers, graphs, events or
   * pinned blocks are held. An addon built before it lacks it.
   */
  close?(): { released: boolean };
  /** Whether device `ordinal`'s primary context is active in this process, and our open()s not closed. Needs no open(). */
  primaryContext?(ordinal: number): { active: boolean; opens: number };
  alloc(bytes: number): number;
  free(ptr: number): void;
  /** cuMemGetInfo: bytes free on the device now and its total. */
  memInfo(): { free: number; total: number };
  upload(dst: number, src: ArrayBufferView): void;
  download(src: number, dst: ArrayBufferView): void;
  copy(dst: number, src: number, bytes: number): void;
  fill(dst: number, byteValue: number, bytes: number): void;
  loadModule(path: string): number;
  getFunction(module: number, name: string): number;
  /** cuModuleUnload once the device is idle: the module's handle and its functions' are dead from then on. */
  unloadModule?(module: number): void;
  setMaxDynamicShared(fn: number, bytes: number): void;
  /**
   * programmatic true: cuLaunchKernelEx with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
   * = 1 (programmatic dependent launch; a capture records a programmatic edge); else cuLaunchKernel.
   */
  launch(fn: number, gx: number, gy: number, gz: number, bx: number, by: number, bz: number, sharedBytes: number, args: Uint8Array, programmatic?: boolean): void;
  synchronize(): void;
  /** Stream capture (global mode) of our stream, ended into an instantiated graph's handle. */
  beginCapture(): void;
  endCapture(): number;
  graphLaunch(graph: number): void;
  graphDestroy(graph: number): void;
  /** Page-locked host memory as an ArrayBuffer; hostFree detaches it. */
  hostAlloc(bytes: number): ArrayBuffer;
  hostFree(buffer: ArrayBuffer): void;
  /** Copies on our stream; the host side must be hostAlloc memory. */
  uploadAsync(dst: number, src: ArrayBufferView): void;
  downloadAsync(src: number, dst: ArrayBufferView): void;
  streamSynchronize(): void;
  eventCreate(): number;
  eventRecord(event: number): void;
  /** Waits for `end`; the milliseconds between the two records. */
  eventElapsed(start: number, end: number): number;
  eventDestroy(event: number): void;
}

/**
 * A kernel's non-zero return code surfaces as an Error whose `code` is the TIDARC_ERR_* name
 * and whose `status` is the number.
 */
export interface KernelCallError extends Error {
  code: 'TIDARC_ERR_ARGS' | 'TIDARC_ERR_PREFIX' | 'TIDARC_ERR_WORKSPACE' | 'TIDARC_ERR_UNKNOWN';
  status: number;
}

/** An output of an asynchronous call that could not take its result (see runAttentionAsync). */
export interface BufferChangedError extends Error {
  code: 'TIDARC_ERR_BUFFER_CHANGED';
  /** The field of NativeAttentionArgs: 'o', 'lse' or 'workspace'. */
  field: string;
}

export interface NativeAddon {
  /** TIDARC_ABI_VERSION the addon was built with. */
  readonly abiVersion: number;
  /** dlopen(RTLD_NOW | RTLD_LOCAL) and check tidarc_abi_version(); throws Error on failure. */
  openLibrary(path: string): LibraryHandle;
  /** Idempotent; deferred until running async calls finish. */
  closeLibrary(handle: LibraryHandle): void;
  /** Calls `symbol` synchronously; a non-zero return code throws a KernelCallError. */
  runAttention(handle: LibraryHandle, symbol: string, args: NativeAttentionArgs): void;
  /**
   * Same on the libuv thread pool, on copies of the arrays taken at the call (JavaScript may
   * detach or shrink a buffer while it runs; arrays on a SharedArrayBuffer are used in place).
   * o, lse and workspace are written back when it settles; if one was detached or resized
   * meanwhile, it rejects with a BufferChangedError instead.
   */
  runAttentionAsync(handle: LibraryHandle, symbol: string, args: NativeAttentionArgs): Promise<void>;
  /** Probes libcuda.so.1 (or $TIDARC_LIBCUDA) and cuInit once per process; never throws. */
  cudaStatus(): CudaStatus;
  readonly cuda: NativeCuda;
}

/** Where `npm run build:native` puts the addon. */
export function nativeAddonPath(root: string = packageRoot()): string {
  return join(root, 'build', 'native', 'Release', 'tidarc_native.node');
}

const loaded = new Map<string, NativeAddon>();

/** Loads the addon once per path; throws a TidarcError('runtime') that says how to build it. */
export function loadNative(path: string = nativeAddonPath()): NativeAddon {
  const cached = loaded.get(path);
  if (cached !== undefined) return cached;
  if (!existsSync(path)) {
    throw new TidarcError(
      'runtime',
      'the native addon is not built; run `npm rebuild tidarc` where tidarc is installed, `npm run build:native` in a clone (needs cmake and g++)',
      { source: path },
    );
  }
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new TidarcError(
      'runtime',
      `the native addon failed to load (${why}); rebuild it with \`npm rebuild tidarc\` where tidarc is installed, \`npm run build:native\` in a clone`,
      { source: path },
    );
  }
  loaded.set(path, addon);
  return addon;
}
