/**
 * The machine a tuning was measured on (db.ts: an entry made under other metadata is stale).
 * CPU: tidarc version, the C++ compiler's version, the CPU model and its thread count.
 */
import { cpus } from 'node:os';
import { findCxx } from '../build/toolchain.js';
import { TidarcError } from '../errors.js';
import { cpuThreadCount } from '../runtime/ops.js';
import { TIDARC_VERSION } from '../version.js';
import type { TuneMeta } from './db.js';

export async function cpuTuneMeta(): Promise<TuneMeta> {
  const cxx = await findCxx();
  if (!cxx.found) throw new TidarcError('unsupported', `tuning the CPU backend needs a C++ compiler (${cxx.reason})`);
  return { tidarc: TIDARC_VERSION, compiler: cxx.tool.version, backend: 'cpu', device: `${cpus()[0]?.model.trim() ?? 'CPU'} x ${cpuThreadCount()}` };
}
