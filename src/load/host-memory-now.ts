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
import { type CgroupMemory, type HostMemory, cgroupAncestors, checkHostFits, hostNeed, parseArcShrinkable, parseCgroupLevel, parseMeminfo, parseProcCgroup, withCgroupLimit, withShrinkable } from './host-memory.js';

/**
 * Linux: /proc/meminfo (MemAvailable: free memory plus the page cache and slabs the kernel can
 * reclaim; SwapFree), the ZFS ARC above its floor added, then the memory cgroups' limits
 * (readCgroupMemory: the process's and, on v2, its ancestors').
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

/** The files parseCgroupLevel reads, by cgroup version. */
const CGROUP_FILES = {
  1: { limit: 'memory.limit_in_bytes', usage: 'memory.usage_in_bytes', swapLimit: 'memory.memsw.limit_in_bytes', swapUsage: 'memory.memsw.usage_in_bytes' },
  2: { limit: 'memory.max', usage: 'memory.current', swapLimit: 'memory.swap.max', swapUsage: 'memory.swap.current' },
} as const;

/**
 * The process's memory cgroups (Linux) as host-memory.ts withCgroupLimit takes them: the cgroup
 * /proc/self/cgroup names (`procCgroup`) under the controller's mount in `root` (v1: root/memory,
 * v2: root). v2: that cgroup and each ancestor up to the mount's root, each limit its own (a
 * parent's memory.max binds the children: a systemd slice, a Kubernetes pod). v1: that cgroup
 * alone, memory.stat's hierarchical limits standing for its ancestors'. Where the named cgroup is
 * not under the mount (a container with its own view of the hierarchy sees its cgroup at the
 * mount's root), the root is read, as that cgroup. A file that cannot be read leaves its cgroup
 * without that figure (parseCgroupLevel: as lenient as no limit); undefined: no memory cgroup read.
 */
export function readCgroupMemory(root = '/sys/fs/cgroup', procCgroup = '/proc/self/cgroup'): CgroupMemory[] | undefined {
  try {
    const own = parseProcCgroup(readFileSync(procCgroup, 'utf8'));
    if (!own) return undefined;
    const mount = own.version === 1 ? join(root, 'memory') : root;
    const inTree = existsSync(join(mount, own.path));
    const levels: [dir: string, path: string][] = !inTree ? [[mount, own.path]]
      : (own.version === 1 ? [own.path] : cgroupAncestors(own.path)).map((p) => [join(mount, p), p]);
    const names = CGROUP_FILES[own.version];
    return levels.map(([dir, path]) => {
      const read = (file: string): string | undefined => {
        try {
          return readFileSync(join(dir, file), 'utf8');
        } catch {
          return undefined;
        }
      };
      return parseCgroupLevel(own.version, {
        path, limit: read(names.limit), usage: read(names.usage), stat: read('memory.stat'), swapLimit: read(names.swapLimit), swapUsage: read(names.swapUsage),
      });
    }).filter((l) => l !== undefined);
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
