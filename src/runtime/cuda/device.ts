/**
 * One CUDA device for the runtime: memory, modules and launches over the addon's driver
 * binding (exports.cuda), with every CUDA failure turned into a TidarcError('runtime') that
 * names the call and the CUDA error. Tracks its allocations so close() frees them all.
 */
import { TidarcError } from '../../errors.js';
import { type CudaDeviceInfo, type NativeCuda, loadNative } from '../native.js';

export interface DeviceBuffer {
  readonly ptr: number;
  readonly bytes: number;
  readonly label: string;
}

export interface KernelRef {
  readonly name: string;
  readonly handle: number;
  /** Dynamic shared memory this function was opted in to (bytes). */
  maxShared: number;
}

export type Dim3 = readonly [number, number?, number?];

/** Dynamic shared memory every kernel may use without opting in. */
const DEFAULT_SHARED_LIMIT = 48 * 1024;

export class CudaDevice {
  private readonly live = new Map<number, DeviceBuffer>();
  private readonly modules = new Map<string, number>();
  private readonly functions = new Map<string, KernelRef>();
  private allocated = 0;

  private constructor(private readonly cuda: NativeCuda, readonly info: CudaDeviceInfo) {}

  /** Opens device `ordinal` (its primary context); throws when CUDA is not usable. */
  static open(ordinal = 0): CudaDevice {
    const cuda = loadNative().cuda;
    const status = cuda.status();
    if (!status.available) throw new TidarcError('unsupported', `CUDA is not usable: ${status.reason}`, { field: 'backend', value: 'cuda' });
    return new CudaDevice(cuda, guard('open the CUDA device', () => cuda.open(ordinal)));
  }

  /** sm_XY of the device. */
  get arch(): string {
    return `sm_${this.info.major}${this.info.minor}`;
  }

  /** Bytes currently allocated through this device object. */
  get allocatedBytes(): number {
    return this.allocated;
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

  /** Host array -> buf at byte offset `at`. */
  upload(buf: DeviceBuffer, src: ArrayBufferView, at = 0): void {
    checkRange(buf, at, src.byteLength, 'upload');
    guard(`upload to ${buf.label}`, () => this.cuda.upload(buf.ptr + at, src));
  }

  /** buf from byte offset `at` -> the whole host array. */
  download(buf: DeviceBuffer, dst: ArrayBufferView, at = 0): void {
    checkRange(buf, at, dst.byteLength, 'download');
    guard(`download from ${buf.label}`, () => this.cuda.download(buf.ptr + at, dst));
  }

  copy(dst: DeviceBuffer, dstAt: number, src: DeviceBuffer, srcAt: number, bytes: number): void {
    checkRange(dst, dstAt, bytes, 'copy to');
    checkRange(src, srcAt, bytes, 'copy from');
    guard(`copy ${src.label} -> ${dst.label}`, () => this.cuda.copy(dst.ptr + dstAt, src.ptr + srcAt, bytes));
  }

  fill(buf: DeviceBuffer, byteValue: number): void {
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

  /** Launches a kernel whose single parameter is the struct `args` (op-abi.ts packStruct). */
  launch(fn: KernelRef, grid: Dim3, block: Dim3, sharedBytes: number, args: Uint8Array): void {
    if (sharedBytes > fn.maxShared) {
      guard(`allow ${sharedBytes} bytes of shared memory for ${fn.name}`, () => this.cuda.setMaxDynamicShared(fn.handle, sharedBytes));
      fn.maxShared = sharedBytes;
    }
    guard(`launch ${fn.name}`, () => this.cuda.launch(fn.handle, grid[0], grid[1] ?? 1, grid[2] ?? 1, block[0], block[1] ?? 1, block[2] ?? 1, sharedBytes, args));
  }

  /** Waits for every launch; an asynchronous kernel failure surfaces here. */
  synchronize(): void {
    guard('synchronize', () => this.cuda.synchronize());
  }

  /** Frees every buffer still allocated through this object. */
  close(): void {
    for (const buf of [...this.live.values()]) this.free(buf);
  }
}

function checkRange(buf: DeviceBuffer, at: number, bytes: number, what: string): void {
  if (!(Number.isInteger(at) && at >= 0 && at + bytes <= buf.bytes)) {
    throw new TidarcError('runtime', `${what} ${buf.label}: bytes [${at}, ${at + bytes}) are outside the buffer's ${buf.bytes}`);
  }
}

/** Runs a driver call; its Error becomes a TidarcError('runtime') saying what was being done. */
function guard<T>(doing: string, call: () => T): T {
  try {
    return call();
  } catch (e) {
    if (e instanceof TidarcError) throw e;
    const err = e as Error & { code?: unknown };
    throw new TidarcError('runtime', `CUDA: cannot ${doing}: ${err.message}`, typeof err.code === 'string' ? { field: 'cuda', value: err.code } : {});
  }
}
