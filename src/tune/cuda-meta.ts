/**
 * The tuning database's meta for a CUDA machine (TuneMeta of db.ts): what decides whether an
 * entry the device check measured applies here. Pure. The device check writes the same
 * strings from Python (scripts/device-check/tune.py, cuda_meta); a test holds the two together.
 *   compiler: nvcc's version line as toolchain.ts reports it (findNvcc: the line naming the
 *             release), since nvcc built the kernels that were timed;
 *   device:   `<GPU name> x <SM count> SMs` (cuDeviceGetName, MULTIPROCESSOR_COUNT), the CPU
 *             meta's `<model> x <threads>` for a GPU;
 *   driver:   cuDriverGetVersion as major.minor (12080 is "12.8").
 * The runtime's CudaDevice.info (name, multiprocessors, driverVersion) holds the device facts.
 */
import { TIDARC_VERSION } from '../version.js';
import type { TuneMeta } from './db.js';

export interface CudaMachine {
  /** findNvcc's version string. */
  readonly compiler: string;
  readonly deviceName: string;
  readonly multiprocessors: number;
  /** cuDriverGetVersion: 1000 * major + 10 * minor. */
  readonly driverVersion: number;
}

export function driverVersionText(version: number): string {
  return `${Math.floor(version / 1000)}.${Math.floor((version % 1000) / 10)}`;
}

export function cudaTuneMeta(m: CudaMachine, tidarc: string = TIDARC_VERSION): TuneMeta {
  return { tidarc, compiler: m.compiler, backend: 'cuda', device: `${m.deviceName} x ${m.multiprocessors} SMs`, driver: driverVersionText(m.driverVersion) };
}
