/**
 * Wall time spent inside the native addon, per entry point: the CPU operators (cpuOps.*), the
 * attention kernels (runAttention) and the CUDA driver calls (cuda.*: 'cuda.download' and
 * 'cuda.synchronize' are where the host waits for the GPU). Installing wraps the addon's functions in place, so
 * every caller (ops.ts, kernel-library.ts) is timed without changing it; uninstalling puts
 * the originals back. A wrapper costs two performance.now() calls (~0.1 us), which lands on
 * the host side of the split: the measured host share is an upper bound. (performance comes
 * from node:perf_hooks: the global one is a lazy getter that runs on every access.)
 */
import { performance } from 'node:perf_hooks';
import { loadCpuOps } from '../runtime/ops.js';
import { loadNative } from '../runtime/native.js';

/** Accumulated milliseconds and calls per entry point ('attention' = runAttention). */
export interface NativeTotals {
  readonly ms: Record<string, number>;
  readonly calls: Record<string, number>;
  /** Bytes the CUDA copies between host and device moved (CUDA_COPIES). */
  readonly hostDeviceBytes: number;
}

export interface NativeTimer {
  /** A copy of the totals so far. */
  read(): NativeTotals;
  uninstall(): void;
}

type AnyFn = (...args: unknown[]) => unknown;

/** The kernel entry's name in the totals; every other name is an operator. */
export const ATTENTION = 'attention';
/** The driver calls in which the host waits for the GPU's work (kernels and copies). */
export const CUDA_WAITS: readonly string[] = ['cuda.download', 'cuda.synchronize', 'cuda.streamSynchronize'];
/** The driver calls that copy between host and device; their second argument is the host array. */
export const CUDA_COPIES: readonly string[] = ['cuda.upload', 'cuda.download', 'cuda.uploadAsync', 'cuda.downloadAsync'];
/** The driver calls that start work on the GPU: a kernel, or a whole captured graph. */
export const CUDA_LAUNCHES: readonly string[] = ['cuda.launch', 'cuda.graphLaunch'];

export function installNativeTimer(): NativeTimer {
  const ms: Record<string, number> = {};
  const calls: Record<string, number> = {};
  const restore: (() => void)[] = [];
  let hostDeviceBytes = 0;
  const wrap = (target: Record<string, unknown>, key: string, name: string): void => {
    const original = target[key] as AnyFn;
    const copies = CUDA_COPIES.includes(name);
    ms[name] = 0;
    calls[name] = 0;
    target[key] = function timed(this: unknown, ...args: unknown[]): unknown {
      if (copies) hostDeviceBytes += (args[1] as ArrayBufferView | undefined)?.byteLength ?? 0;
      const t0 = performance.now();
      try {
        return original.apply(this, args);
      } finally {
        ms[name]! += performance.now() - t0;
        calls[name]!++;
      }
    };
    restore.push(() => { target[key] = original; });
  };
  const cpuOps = loadCpuOps() as unknown as Record<string, unknown>;
  for (const key of Object.keys(cpuOps)) {
    if (key !== 'threadCount' && typeof cpuOps[key] === 'function') wrap(cpuOps, key, key);
  }
  const native = loadNative();
  wrap(native as unknown as Record<string, unknown>, 'runAttention', ATTENTION);
  // The CUDA driver binding: launches return at once; downloads and synchronize wait for the GPU.
  const cuda = native.cuda as unknown as Record<string, unknown>;
  for (const key of Object.keys(cuda)) if (typeof cuda[key] === 'function') wrap(cuda, key, `cuda.${key}`);
  return {
    read: () => ({ ms: { ...ms }, calls: { ...calls }, hostDeviceBytes }),
    uninstall: () => {
      for (const r of restore.splice(0).reverse()) r();
    },
  };
}

/** b - a, per name. */
export function totalsSince(a: NativeTotals, b: NativeTotals): NativeTotals {
  const ms: Record<string, number> = {};
  const calls: Record<string, number> = {};
  for (const k of Object.keys(b.ms)) {
    ms[k] = b.ms[k]! - (a.ms[k] ?? 0);
    calls[k] = b.calls[k]! - (a.calls[k] ?? 0);
  }
  return { ms, calls, hostDeviceBytes: b.hostDeviceBytes - a.hostDeviceBytes };
}
