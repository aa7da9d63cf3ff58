/**
 * One CUDA device for the runtime: memory, modules and launches over the addon's driver
 * binding (exports.cuda), with every CUDA failure turned into a TidarcError('runtime') that
 * names the call and the CUDA error. Tracks its allocations so close() frees them all.
 *
 * Launches, device copies and fills go to the binding's own stream (not the legacy NULL
 * stream), so a sequence of them can be captured once into a CUDA graph (capture) and replayed
 * with one launch (launchGraph). What changes between replays lives in device buffers that an
 * asynchronous upload from pinned memory (allocPinned, uploadAsync) fills before the launch;
 * a graph reads device memory as it is when it runs. stats counts what the host issues.
 * A launch may be programmatic (launch's `programmatic`: cuLaunchKernelEx with
 * CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, programmatic dependent launch on sm_90+;
 * the caller decides, pdl.ts programmaticLaunchFor); a capture records it as a programmatic edge.
 * Only a launch that directly follows a kernel launch on the stream is made so (afterKernel): see
 * launch.
 * upload() too goes through pinned memory on that stream (staged, STAGING_BYTES a block): no
 * copy of ours is a synchronous one from pageable memory on the legacy NULL stream.
 *
 * Each CudaDevice holds one reference to the process's primary context (the addon's open());
 * close() frees what this object holds, unloads its modules and gives the reference back, and
 * the last one releases the context (a few hundred MiB of device memory on a GPU): a process
 * done with the device holds nothing on it. A closed CudaDevice refuses every call, so no
 * buffer, kernel or graph of it can reach a later context.
 */
import { TidarcError } from '../../errors.js';
import { type CudaDeviceInfo, type NativeCuda, loadNative } from '../native.js';
import { type NativeTensorMaps, type TensorMapLayout, encodeTensorMap } from './tensor-map.js';

export interface DeviceBuffer {
  readonly ptr: number;
  readonly bytes: number;
  readonly label: string;
}

/** Device memory in bytes (CudaDevice.memory). */
export interface DeviceMemory {
  readonly freeBytes: number;
  readonly totalBytes: number;
}

export interface KernelRef {
  readonly name: string;
  readonly handle: number;
  /** Dynamic shared memory this function was opted in to (bytes). */
  maxShared: number;
}

export type Dim3 = readonly [number, number?, number?];

/** How a kernel is launched. */
export interface LaunchOptions {
  /**
   * Programmatic dependent launch (cuLaunchKernelEx, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 1),
   * made so only where a kernel launch is right before it on the stream (CudaDevice.launch).
   */
  readonly programmatic?: boolean;
}

/** An instantiated graph: what one capture recorded, replayed by launchGraph. */
export interface GraphRef {
  readonly handle: number;
  readonly label: string;
  /** Kernel launches, and host<->device copies and bytes, that one replay performs. */
  readonly kernels: number;
  /** Of `kernels`, those captured from programmatic launches (programmatic edges in the graph). */
  readonly programmaticKernels: number;
  readonly uploads: number;
  readonly uploadBytes: number;
  readonly downloads: number;
  readonly downloadBytes: number;
}

/** Page-locked host memory: write through views of `buffer`, then uploadAsync. */
export interface PinnedBuffer {
  readonly buffer: ArrayBuffer;
  readonly bytes: number;
  readonly label: string;
}

/** What the host has issued through this device object (a graph's replay counts once). */
export interface DeviceStats {
  /** Kernel launches outside captures (cuLaunchKernel and cuLaunchKernelEx: the total). */
  readonly kernelLaunches: number;
  /** Of kernelLaunches, the programmatic ones (cuLaunchKernelEx with the PDL attribute; a requested one made plain is not). */
  readonly programmaticLaunches: number;
  readonly graphLaunches: number;
  /** Kernels run by graph replays (each replay: its graph's count). */
  readonly graphKernels: number;
  /** Of graphKernels, those captured from programmatic launches (made so: CudaDevice.launch). */
  readonly graphProgrammaticKernels: number;
  /** Host -> device and device -> host transfers and their bytes, replays included. */
  readonly uploads: number;
  readonly uploadBytes: number;
  readonly downloads: number;
  readonly downloadBytes: number;
}

type MutableStats = { -readonly [K in keyof DeviceStats]: DeviceStats[K] };
const NO_STATS: DeviceStats = { kernelLaunches: 0, programmaticLaunches: 0, graphLaunches: 0, graphKernels: 0, graphProgrammaticKernels: 0, uploads: 0, uploadBytes: 0, downloads: 0, downloadBytes: 0 };

/** b - a, field by field. */
export function statsSince(a: DeviceStats, b: DeviceStats): DeviceStats {
  const out = { ...NO_STATS } as MutableStats;
  for (const k of Object.keys(NO_STATS) as (keyof DeviceStats)[]) out[k] = b[k] - a[k];
  return out;
}

interface CaptureTally {
  kernels: number;
  programmaticKernels: number;
  uploads: number;
  uploadBytes: number;
  downloads: number;
  downloadBytes: number;
}

/** Dynamic shared memory every kernel may use without opting in. */
const DEFAULT_SHARED_LIMIT = 48 * 1024;

/**
 * Most bytes of each of upload()'s two pinned staging blocks: the host fills one while the copy
 * engine reads the other (8 MiB: a few hundred microseconds of PCIe or C2C copy each, so the
 * stream waits little). A block is sized to what the uploads have needed (from 4 KiB), and
 * releaseStaging() gives them back after a bulk upload (the weights).
 */
export const STAGING_BYTES = 8 << 20;
const MIN_STAGING_BYTES = 4 << 10;

/** upload()'s staging: two pinned blocks used in turn, and whether each has a copy the stream may not have run yet. */
interface Staging {
  readonly blocks: PinnedBuffer[];
  next: number;
  readonly pending: boolean[];
}

export class CudaDevice {
  private readonly live = new Map<number, DeviceBuffer>();
  private readonly modules = new Map<string, number>();
  private readonly functions = new Map<string, KernelRef>();
  private readonly graphs = new Map<number, GraphRef>();
  private readonly pinned = new Set<PinnedBuffer>();
  private readonly counts: MutableStats = { ...NO_STATS };
  /** Set while a capture records: what it issues counts towards the graph, not stats. */
  private tally: CaptureTally | undefined;
  private events: [number, number] | undefined;
  private staging: Staging | undefined;
  private allocated = 0;
  /**
   * Whether the operation last issued on the stream (inside a capture: last recorded into it) is
   * a kernel launch: the one place launch() reads to make a requested programmatic launch
   * programmatic. Every stream operation of this class sets it: a successful launch to true;
   * an upload, download, device copy, fill, graph launch, event record, the start and the end of
   * a capture to false. False before the stream's first launch.
   */
  private afterKernel = false;
  private isClosed = false;

  private constructor(private readonly driver: NativeCuda, readonly info: CudaDeviceInfo) {}

  /** The driver binding, while this object is open: a closed device's buffers, kernels and graphs are dead. */
  private get cuda(): NativeCuda {
    if (this.isClosed) throw new TidarcError('runtime', `CUDA: ${this.info.name} was closed (CudaDevice.close): open the device again`);
    return this.driver;
  }

  /** Whether close() ran. */
  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Device `ordinal`'s primary context in this process: active while some reference holds it,
   * and how many CudaDevice objects (addon open()s) are not closed. Opens nothing.
   */
  static primaryContext(ordinal = 0): { active: boolean; opens: number } {
    const cuda = loadNative().cuda;
    if (typeof cuda.primaryContext !== 'function') throw rebuildAddon('cuda.primaryContext');
    return guard('read the state of the primary context', () => cuda.primaryContext!(ordinal));
  }

  /** Opens device `ordinal` (its primary context); throws when CUDA is not usable. */
  static open(ordinal = 0): CudaDevice {
    const cuda = loadNative().cuda;
    const status = cuda.status();
    if (!status.available) throw new TidarcError('unsupported', `CUDA is not usable: ${status.reason}`, { field: 'backend', value: 'cuda' });
    return new CudaDevice(cuda, guard('open the CUDA device', () => cuda.open(ordinal)));
  }

  /**
   * Whether this device can take a programmatic launch at all: the driver exports
   * cuLaunchKernelEx. Whether a model's kernels may be launched so is pdl.ts's decision.
   */
  get programmaticLaunch(): boolean {
    return this.info.hasLaunchKernelEx === true;
  }

  /** sm_XY of the device. */
  get arch(): string {
    return `sm_${this.info.major}${this.info.minor}`;
  }

  /** Bytes currently allocated through this device object. */
  get allocatedBytes(): number {
    return this.allocated;
  }

  /**
   * The device's memory now (cuMemGetInfo): free is what every process's allocations, contexts
   * and the driver leave, so it is below totalBytes even on an idle GPU.
   */
  memory(): DeviceMemory {
    // An addon built before memInfo existed: every cuda load's preflight reads it, so say what to do.
    if (typeof this.cuda.memInfo !== 'function') throw new TidarcError('runtime', 'the native addon predates cuMemGetInfo (the cuda load\'s memory preflight); rebuild it with `npm run build:native`', { field: 'addon' });
    const m = guard('read the device memory in use', () => this.cuda.memInfo());
    return { freeBytes: m.free, totalBytes: m.total };
  }

  alloc(bytes: number, label: string): DeviceBuffer {
    const size = Math.max(1, Math.ceil(bytes));
    const ptr = guard(`allocate ${size} bytes for ${label}`, () => this.cuda.alloc(size));
    const buf = { ptr, bytes: size, label };
    this.live.set(ptr, buf);
    this.allocated += size;
    return buf;
  }

  free(buf: DeviceBuffer): void {
    if (!this.live.delete(buf.ptr)) return;
    this.allocated -= buf.bytes;
    guard(`free ${buf.label}`, () => this.cuda.free(buf.ptr));
  }

  /** A copy of the counts so far. */
  get stats(): DeviceStats {
    return { ...this.counts };
  }

  /**
   * Host array -> buf at byte offset `at`: copied into pinned staging blocks and from there on
   * the stream (asynchronous, ordered with the launches; `src` may be reused at once). Not
   * allowed during a capture: the graph would replay whatever the staging block holds then.
   */
  upload(buf: DeviceBuffer, src: ArrayBufferView, at = 0): void {
    checkRange(buf, at, src.byteLength, 'upload');
    if (this.tally) throw new TidarcError('runtime', `CUDA: cannot upload to ${buf.label} while a graph is captured: a step's inputs go through its pinned block (uploadAsync)`);
    const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    const s = (this.staging ??= { blocks: [], next: 0, pending: [false, false] });
    for (let done = 0; done < bytes.length;) {
      const i = s.next;
      s.next ^= 1;
      // The block's last copy must have read it before it is refilled (the other block's copy may still run).
      if (s.pending[i]) this.synchronize();
      const n = Math.min(STAGING_BYTES, bytes.length - done);
      let block = s.blocks[i];
      if (!block || block.bytes < n) {
        if (block) this.freePinned(block);
        block = s.blocks[i] = this.allocPinned(Math.min(STAGING_BYTES, Math.max(MIN_STAGING_BYTES, 2 ** Math.ceil(Math.log2(n)))), `upload staging ${i}`);
      }
      new Uint8Array(block.buffer, 0, n).set(bytes.subarray(done, done + n));
      this.afterKernel = false;
      guard(`upload to ${buf.label}`, () => this.cuda.uploadAsync(buf.ptr + at + done, new Uint8Array(block.buffer, 0, n)));
      s.pending[i] = true;
      done += n;
    }
    this.countUpload(src.byteLength);
  }

  /** Frees upload()'s staging blocks once their copies have run (after a bulk upload: the weights). */
  releaseStaging(): void {
    const s = this.staging;
    if (!s) return;
    if (s.pending.some(Boolean)) this.synchronize();
    for (const b of s.blocks) if (b) this.freePinned(b);
    this.staging = undefined;
  }

  /** buf from byte offset `at` -> the whole host array (synchronous: not allowed during a capture). */
  download(buf: DeviceBuffer, dst: ArrayBufferView, at = 0): void {
    checkRange(buf, at, dst.byteLength, 'download');
    this.afterKernel = false;
    guard(`download from ${buf.label}`, () => this.cuda.download(buf.ptr + at, dst));
    // A synchronous copy on the legacy stream waits for our (blocking) stream: every staged upload has run.
    this.staging?.pending.fill(false);
    this.countDownload(dst.byteLength);
  }

  /** Page-locked host memory for asynchronous copies (freed by freePinned or close). */
  allocPinned(bytes: number, label: string): PinnedBuffer {
    const size = Math.max(1, Math.ceil(bytes));
    const buffer = guard(`allocate ${size} bytes of pinned host memory for ${label}`, () => this.cuda.hostAlloc(size));
    const p = { buffer, bytes: size, label };
    this.pinned.add(p);
    return p;
  }

  freePinned(p: PinnedBuffer): void {
    if (!this.pinned.delete(p)) return;
    guard(`free the pinned memory of ${p.label}`, () => this.cuda.hostFree(p.buffer));
  }

  /**
   * `bytes` of pinned memory from byte `from` -> buf at byte offset `at`, on the stream: returns
   * at once; the host must not rewrite that memory before the stream has read it (a later
   * synchronize or download). Inside a capture the graph reads the pinned memory at each replay.
   */
  uploadAsync(buf: DeviceBuffer, src: PinnedBuffer, o: { at?: number; from?: number; bytes?: number } = {}): void {
    const at = o.at ?? 0, from = o.from ?? 0, bytes = o.bytes ?? src.bytes - from;
    checkRange(buf, at, bytes, 'upload');
    checkPinned(src, from, bytes);
    this.afterKernel = false;
    guard(`upload to ${buf.label}`, () => this.cuda.uploadAsync(buf.ptr + at, new Uint8Array(src.buffer, from, bytes)));
    this.countUpload(bytes);
  }

  /** buf from byte offset `at` -> `bytes` of pinned memory from byte `to`, on the stream; valid after synchronize. */
  downloadAsync(buf: DeviceBuffer, dst: PinnedBuffer, o: { at?: number; to?: number; bytes?: number } = {}): void {
    const at = o.at ?? 0, to = o.to ?? 0, bytes = o.bytes ?? dst.bytes - to;
    checkRange(buf, at, bytes, 'download');
    checkPinned(dst, to, bytes);
    this.afterKernel = false;
    guard(`download from ${buf.label}`, () => this.cuda.downloadAsync(buf.ptr + at, new Uint8Array(dst.buffer, to, bytes)));
    this.countDownload(bytes);
  }

  private countUpload(bytes: number): void {
    const t = this.tally ?? this.counts;
    t.uploads++;
    t.uploadBytes += bytes;
  }

  private countDownload(bytes: number): void {
    const t = this.tally ?? this.counts;
    t.downloads++;
    t.downloadBytes += bytes;
  }

  copy(dst: DeviceBuffer, dstAt: number, src: DeviceBuffer, srcAt: number, bytes: number): void {
    checkRange(dst, dstAt, bytes, 'copy to');
    checkRange(src, srcAt, bytes, 'copy from');
    this.afterKernel = false;
    guard(`copy ${src.label} -> ${dst.label}`, () => this.cuda.copy(dst.ptr + dstAt, src.ptr + srcAt, bytes));
  }

  fill(buf: DeviceBuffer, byteValue: number): void {
    this.afterKernel = false;
    guard(`fill ${buf.label}`, () => this.cuda.fill(buf.ptr, byteValue, buf.bytes));
  }

  /** A kernel of a module file (loaded once per path). */
  kernel(modulePath: string, name: string): KernelRef {
    const key = `${modulePath}\0${name}`;
    const known = this.functions.get(key);
    if (known) return known;
    let mod = this.modules.get(modulePath);
    if (mod === undefined) {
      mod = guard(`load ${modulePath}`, () => this.cuda.loadModule(modulePath));
      this.modules.set(modulePath, mod);
    }
    const handle = guard(`find kernel ${name} in ${modulePath}`, () => this.cuda.getFunction(mod!, name));
    const ref = { name, handle, maxShared: DEFAULT_SHARED_LIMIT };
    this.functions.set(key, ref);
    return ref;
  }

  /**
   * Launches a kernel whose single parameter is the struct `args` (op-abi.ts packStruct).
   * `programmatic`: with the PDL attribute (the kernel must keep the contract: no global memory
   * access before its griddepcontrol.wait); refused where the driver has no cuLaunchKernelEx.
   *
   * A requested programmatic launch is made so only where the operation right before it on the
   * stream (or in the capture) is a kernel launch (afterKernel). After an upload, download, device
   * copy, fill (memset), graph launch or event record, at the start of a capture and for the
   * stream's first launch it is a plain cuLaunchKernel, and stats count it as plain: under stream
   * capture a programmatic edge exists only between kernel nodes (CUDA driver API, CUgraphEdgeData:
   * only kernel nodes have programmatic ports), what a driver does with the attribute on a kernel
   * that follows a memcpy or memset node is not documented, and there is no predecessor kernel
   * whose tail the launch could overlap anyway.
   */
  launch(fn: KernelRef, grid: Dim3, block: Dim3, sharedBytes: number, args: Uint8Array, o: LaunchOptions = {}): void {
    if (o.programmatic === true && !this.programmaticLaunch) {
      throw new TidarcError('runtime', `CUDA: cannot launch ${fn.name} programmatically: the driver has no cuLaunchKernelEx (a CUDA 12 driver has it)`, { field: 'programmatic' });
    }
    const programmatic = o.programmatic === true && this.afterKernel;
    if (sharedBytes > fn.maxShared) {
      guard(`allow ${sharedBytes} bytes of shared memory for ${fn.name}`, () => this.cuda.setMaxDynamicShared(fn.handle, sharedBytes));
      fn.maxShared = sharedBytes;
    }
    guard(`launch ${fn.name}${programmatic ? ' programmatically' : ''}`,
      () => this.cuda.launch(fn.handle, grid[0], grid[1] ?? 1, grid[2] ?? 1, block[0], block[1] ?? 1, block[2] ?? 1, sharedBytes, args, programmatic), programmatic ? PDL_HINT : '');
    this.afterKernel = true;
    if (this.tally) {
      this.tally.kernels++;
      if (programmatic) this.tally.programmaticKernels++;
    } else {
      this.counts.kernelLaunches++;
      if (programmatic) this.counts.programmaticLaunches++;
    }
  }

  /**
   * Records what `record` issues on the stream (launches, device copies and fills, asynchronous
   * copies) into a graph instead of running it. Anything a capture cannot hold (a synchronous
   * upload or download, synchronize) fails inside `record` with the driver's error, as on a GPU,
   * and no graph is made. Kernels must be loaded and opted in to their shared memory before
   * (kernel(), one launch outside a capture): neither is recorded.
   */
  capture(label: string, record: () => void): GraphRef {
    if (this.tally) throw new TidarcError('runtime', `CUDA: cannot capture ${label}: a capture is already recording`);
    // The capture's first node has no kernel before it in the graph.
    this.afterKernel = false;
    guard(`start capturing ${label}`, () => this.cuda.beginCapture());
    const tally: CaptureTally = { kernels: 0, programmaticKernels: 0, uploads: 0, uploadBytes: 0, downloads: 0, downloadBytes: 0 };
    this.tally = tally;
    let failure: unknown;
    try {
      record();
    } catch (e) {
      failure = e;
    } finally {
      this.tally = undefined;
      // What the stream runs next follows whatever the capture left: taken as no kernel.
      this.afterKernel = false;
    }
    let handle: number;
    try {
      handle = guard(`capture ${label}`, () => this.cuda.endCapture(), tally.programmaticKernels > 0 ? PDL_HINT : '');
    } catch (e) {
      throw failure ?? e;  // the first error says what broke the capture
    }
    const ref: GraphRef = { handle, label, ...tally };
    this.graphs.set(handle, ref);
    if (failure !== undefined) {
      this.destroyGraph(ref);
      throw failure;
    }
    return ref;
  }

  /** One launch of a captured graph on the stream. */
  launchGraph(ref: GraphRef): void {
    if (this.graphs.get(ref.handle) !== ref) throw new TidarcError('runtime', `CUDA: cannot launch graph ${ref.label}: it was destroyed`);
    this.afterKernel = false;
    guard(`launch graph ${ref.label}`, () => this.cuda.graphLaunch(ref.handle), ref.programmaticKernels > 0 ? PDL_HINT : '');
    const t = this.tally ?? this.counts;
    if (this.tally) (this.tally.kernels += ref.kernels, this.tally.programmaticKernels += ref.programmaticKernels);
    else (this.counts.graphLaunches++, this.counts.graphKernels += ref.kernels, this.counts.graphProgrammaticKernels += ref.programmaticKernels);
    t.uploads += ref.uploads;
    t.uploadBytes += ref.uploadBytes;
    t.downloads += ref.downloads;
    t.downloadBytes += ref.downloadBytes;
  }

  destroyGraph(ref: GraphRef): void {
    if (this.graphs.get(ref.handle) !== ref) return;
    this.graphs.delete(ref.handle);
    guard(`destroy graph ${ref.label}`, () => this.cuda.graphDestroy(ref.handle));
  }

  /** A tensor map of `buf` (its 128 bytes, for a kernel's argument struct): the layout is checked first (tensor-map.ts). */
  encodeTensorMap(buf: DeviceBuffer, layout: TensorMapLayout): Uint8Array {
    return guard(`encode a tensor map of ${buf.label}`, () => encodeTensorMap(this.cuda as NativeTensorMaps, layout, buf.ptr, buf.label));
  }

  /** Waits for every launch; an asynchronous kernel failure surfaces here. */
  synchronize(): void {
    guard('synchronize', () => this.cuda.synchronize());
    this.staging?.pending.fill(false);
  }

  /**
   * Runs `work` between two events on the stream: the GPU milliseconds between them (waits
   * for the second) and the host milliseconds `work` took to issue and return.
   */
  timeGpu(work: () => void): { gpuMs: number; hostMs: number } {
    const [start, end] = (this.events ??= [guard('create an event', () => this.cuda.eventCreate()), guard('create an event', () => this.cuda.eventCreate())]);
    this.afterKernel = false;
    guard('record an event', () => this.cuda.eventRecord(start));
    const t0 = performance.now();
    work();
    const hostMs = performance.now() - t0;
    this.afterKernel = false;
    guard('record an event', () => this.cuda.eventRecord(end));
    return { gpuMs: guard('time the GPU between two events', () => this.cuda.eventElapsed(start, end)), hostMs };
  }

  /**
   * Frees every buffer, graph, pinned block and event still held by this object, unloads its
   * modules and gives its reference to the context back (the last one releases the context).
   * Every step runs even where an earlier one failed (a context a kernel fault left unusable
   * fails them all, and only the release gives the device back); the first failure is thrown
   * after. The object is closed either way; a second close() does nothing.
   */
  close(): void {
    if (this.isClosed) return;
    const failures: unknown[] = [];
    const attempt = (step: () => void): void => {
      try {
        step();
      } catch (e) {
        failures.push(e);
      }
    };
    for (const ref of [...this.graphs.values()]) attempt(() => this.destroyGraph(ref));
    // Staged uploads still queued read their blocks: they finish before the blocks go.
    attempt(() => this.releaseStaging());
    this.staging = undefined;
    for (const p of [...this.pinned]) attempt(() => this.freePinned(p));
    for (const e of this.events?.splice(0) ?? []) attempt(() => guard('destroy an event', () => this.cuda.eventDestroy(e)));
    this.events = undefined;
    for (const buf of [...this.live.values()]) attempt(() => this.free(buf));
    const driver = this.driver;
    if (typeof driver.close !== 'function' || typeof driver.unloadModule !== 'function') {
      failures.push(rebuildAddon('cuda.close'));
    } else {
      // Another CudaDevice may keep the context: this object's modules go now, not with it.
      for (const [path, mod] of this.modules) attempt(() => guard(`unload ${path}`, () => driver.unloadModule!(mod)));
      attempt(() => guard(`close ${this.info.name}`, () => driver.close!()));
    }
    this.modules.clear();
    this.functions.clear();
    this.isClosed = true;
    if (failures.length > 0) throw failures[0];
  }
}

/** An addon built before `call` existed: one error that says how to get it. */
function rebuildAddon(call: string): TidarcError {
  return new TidarcError('runtime', `the native addon predates ${call} (releasing the CUDA context when the device is closed); rebuild it with \`npm run build:native\``, { field: 'addon' });
}

function checkPinned(p: PinnedBuffer, from: number, bytes: number): void {
  if (!(Number.isInteger(from) && Number.isInteger(bytes) && from >= 0 && bytes >= 0 && from + bytes <= p.buffer.byteLength)) {
    throw new TidarcError('runtime', `pinned ${p.label}: bytes [${from}, ${from + bytes}) are outside its ${p.buffer.byteLength} (freed?)`);
  }
}

function checkRange(buf: DeviceBuffer, at: number, bytes: number, what: string): void {
  if (!(Number.isInteger(at) && at >= 0 && at + bytes <= buf.bytes)) {
    throw new TidarcError('runtime', `${what} ${buf.label}: bytes [${at}, ${at + bytes}) are outside the buffer's ${buf.bytes}`);
  }
}

/**
 * What a failed programmatic launch (or the capture or replay of a graph holding some) adds to
 * the driver's error: the first run of PDL on a new GPU or driver is where it can fail, and the
 * way around it (the plain launches) is one flag.
 */
export const PDL_HINT = ' (programmatic dependent launch: run again with --no-pdl, or loadModel pdl: false, to launch the kernels without it)';

/** Runs a driver call; its Error becomes a TidarcError('runtime') saying what was being done. */
function guard<T>(doing: string, call: () => T, hint = ''): T {
  try {
    return call();
  } catch (e) {
    if (e instanceof TidarcError) throw e;
    const err = e as Error & { code?: unknown };
    throw new TidarcError('runtime', `CUDA: cannot ${doing}: ${err.message}${hint}`, typeof err.code === 'string' ? { field: 'cuda', value: err.code } : {});
  }
}
