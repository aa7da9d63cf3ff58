/**
 * host-memory.ts's readings: the host's memory now and a checkpoint's file sizes. Every reading
 * that fails is undefined, and the load's check is then skipped: a load never fails because a
 * reading did.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { freemem, totalmem } from 'node:os';
import { join } from 'node:path';
import type { ModelSpec } from '../ir/model.js';
import { WEIGHTS_FILE } from '../model/checkpoint.js';
import { SAFETENSORS_INDEX_FILE } from '../model/safetensors.js';
import { type CgroupMemory, type HostMemory, checkHostFits, hostNeed, parseCgroupLimit, parseArcShrinkable, parseFileCache, parseMeminfo, withCgroupLimit, withShrinkable } from './host-memory.js';

/**
 * Linux: /proc/meminfo (MemAvailable: free memory plus the page cache and slabs the kernel can
 * reclaim; SwapFree), the ZFS ARC above its floor added, then the memory cgroup's limit.
 * Elsewhere os.freemem() / os.totalmem(), swap unknown: freemem is libuv's uv_get_free_memory, on macOS and the BSDs only the free pages (the file cache and inactive
 * pages, which the system gives back on demand, are not in it), on Windows the available
 * physical memory (standby pages included); with swap unknown the load's check refuses nothing
 * there (host-memory.ts), the figures are for `tidarc doctor`.
 */
export function readHostMemory(): HostMemory | undefined {
  try {
    if (process.platform === 'linux') {
      const machine = parseMeminfo(readFileSync('/proc/meminfo', 'utf8'));
      return machine && withCgroupLimit(withShrinkable(machine, readArcShrinkable()), readCgroupMemory());
    }
    return { availableBytes: freemem(), totalBytes: totalmem() };
  } catch {
    return undefined;
  }
}

/** ZFS's ARC above its floor where the zfs module is loaded (host-memory.ts parseArcShrinkable); undefined elsewhere or unreadable. */
function readArcShrinkable(): number | undefined {
  try {
    return parseArcShrinkable(readFileSync('/proc/spl/kstat/zfs/arcstats', 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * The process's memory cgroup (Linux), from /proc/self/cgroup: v1's memory controller line
 * (memory.limit_in_bytes, memory.usage_in_bytes) where there is one, else v2's `0::` line
 * (memory.max, memory.current, and memory.swap.max / swap.current), each with memory.stat. The files are looked for under the
 * cgroup's path, then at the mount's root (a container with its own cgroup namespace sees its
 * cgroup there). Parents' limits are not walked (a tighter parent can only let a load through).
 * undefined: anything unreadable (no memory limit: limitBytes Infinity, its swap limit still read).
 */
function readCgroupMemory(): CgroupMemory | undefined {
  try {
    const lines = readFileSync('/proc/self/cgroup', 'utf8').split('\n');
    const v1 = lines.map((l) => /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/.exec(l)).find((m) => m !== null);
    const v2 = lines.map((l) => /^0::(.*)$/.exec(l)).find((m) => m !== null);
    const [mount, limitFile, usageFile, path] = v1
      ? ['/sys/fs/cgroup/memory', 'memory.limit_in_bytes', 'memory.usage_in_bytes', v1[1]!]
      : v2 ? ['/sys/fs/cgroup', 'memory.max', 'memory.current', v2[1]!] : [];
    if (!mount || path === undefined) return undefined;
    const dir = [join(mount, path), mount].find((d) => existsSync(join(d, limitFile!)));
    if (!dir) return undefined;
    const limitBytes = parseCgroupLimit(readFileSync(join(dir, limitFile!), 'utf8'));
    const usageBytes = Number(readFileSync(join(dir, usageFile!), 'utf8').trim());
    const swapFreeBytes = v1 ? undefined : cgroupSwapFree(dir);
    // No memory limit: the machine's figures (Infinity never wins withCgroupLimit's comparisons), a swap limit still applies.
    if (!Number.isFinite(usageBytes)) return undefined;
    return {
      limitBytes: limitBytes ?? Infinity, usageBytes, fileCacheBytes: parseFileCache(readFileSync(join(dir, 'memory.stat'), 'utf8')),
      ...(swapFreeBytes === undefined ? {} : { swapFreeBytes }),
    };
  } catch {
    return undefined;
  }
}

/** v2's memory.swap.max less memory.swap.current in `dir`; undefined where either is missing or the limit is "max". */
function cgroupSwapFree(dir: string): number | undefined {
  try {
    const max = parseCgroupLimit(readFileSync(join(dir, 'memory.swap.max'), 'utf8'));
    const current = Number(readFileSync(join(dir, 'memory.swap.current'), 'utf8').trim());
    return max === undefined || !Number.isFinite(current) ? undefined : Math.max(0, max - current);
  } catch {
    return undefined;
  }
}

/**
 * The bytes the loader reads whole: model.safetensors' size, or the sum of the shards the index
 * names. undefined when it cannot tell (no weights, an unreadable index: the loader's own error
 * says what is wrong).
 */
export function checkpointFileBytes(dir: string): number | undefined {
  try {
    const single = join(dir, WEIGHTS_FILE);
    const isFile = (path: string): number | undefined => {
      const s = statSync(path, { throwIfNoEntry: false });
      return s?.isFile() ? s.size : undefined;
    };
    const size = isFile(single);
    if (size !== undefined) return size;
    const index = JSON.parse(readFileSync(join(dir, SAFETENSORS_INDEX_FILE), 'utf8')) as { weight_map?: unknown };
    const map = index.weight_map;
    if (typeof map !== 'object' || map === null) return undefined;
    let total = 0;
    for (const file of new Set(Object.values(map))) {
      if (typeof file !== 'string' || /[\\/]/.test(file)) return undefined;
      const s = isFile(join(dir, file));
      if (s === undefined) return undefined;
      total += s;
    }
    return total;
  } catch {
    return undefined;
  }
}

/**
 * The load's host preflight, before any weight is read: the checkpoint's files (and on the cpu
 * backend its first runner) against `memory()` (default: readHostMemory); one error when it does
 * not fit, nothing when a reading fails.
 */
export function hostPreflight(dir: string, spec: ModelSpec, backend: 'cpu' | 'cuda', memory: () => HostMemory | undefined = readHostMemory): void {
  const bytes = checkpointFileBytes(dir);
  if (bytes === undefined) return;
  let now: HostMemory | undefined;
  try {
    now = memory();
  } catch {
    return;
  }
  if (now === undefined) return;
  checkHostFits(hostNeed(bytes, backend === 'cpu' ? spec : undefined), now, dir);
}
