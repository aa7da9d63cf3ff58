/**
 * The machine a tuning was measured on (db.ts: an entry made under other metadata is stale).
 * CPU: tidarc version, the C++ compiler's version, the CPU model and its thread count; and the
 * size of its last-level cache, which the timing's input rotation must exceed.
 */
import { readFileSync } from 'node:fs';
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

/** When the OS does not say (no sysfs cache entries, as on some VMs): larger than most servers' last-level cache slice. */
export const ASSUMED_LLC_BYTES = 64 << 20;

/** The CPU's last-level cache in bytes (Linux sysfs), else ASSUMED_LLC_BYTES. */
export function lastLevelCacheBytes(): number {
  const base = '/sys/devices/system/cpu/cpu0/cache';
  let best = { level: 0, bytes: ASSUMED_LLC_BYTES };
  for (let i = 0; i < 16; i++) {
    try {
      const level = Number(readFileSync(`${base}/index${i}/level`, 'utf8'));
      const m = /^(\d+)([KMG]?)/.exec(readFileSync(`${base}/index${i}/size`, 'utf8').trim());
      if (!m || !(level > best.level)) continue;
      best = { level, bytes: Number(m[1]) * ({ '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 } as Record<string, number>)[m[2]!]! };
    } catch {
      break;
    }
  }
  return best.bytes;
}
