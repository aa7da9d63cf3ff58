/**
 * Host memory, priced before a checkpoint is read: safetensors.ts reads each weights file whole
 * into one Buffer, which the cpu backend keeps for the model's lifetime and the cuda backend until
 * the weights are uploaded. A checkpoint larger than the machine can hold would otherwise end,
 * after minutes of reading, in a RangeError from Node or the kernel's OOM killer (no message).
 *
 * What a load needs on the host:
 *   - the checkpoint's files, as read: their whole size (both backends);
 *   - cpu backend: what its first runner allocates, priced as device-memory.ts prices a cuda one:
 *     a K/V cache of CAPACITY_QUANTUM tokens (KvCache: layers x 2 x kvHeads x capacity x headDim
 *     16-bit elements) and the activations of a first pass of one prefill chunk (ModelRunner's
 *     workspace: each f32 / 16-bit tensor of the pass's graph, tokens x width) with one row of
 *     lm_head logits.
 * Not priced: the biases' fp32 copies (weights.ts: under 1 MiB for the bundled shapes), the cuda
 * upload's transient host copies (gpu-weights.ts: each fused matrix is built on the host, twice
 * where gate/up are interleaved, until the garbage collector takes it: 2 x 192 MiB for Qwen3-8B's
 * gate_up; and up to 16 MiB of pinned staging), Node's own heap; and, where cuda's own preflight
 * sends an `auto` load to the cpu backend after this check, that backend's runner (59 MiB for
 * Qwen3-8B). Each is small beside the checkpoint (15.3 GiB there); leaving them out can only let
 * a load through, never refuse one that fits.
 *
 * The decision: required > available + swap free is the error. Swap is counted because the kernel
 * pages other processes' (and the checkpoint's own cold) pages out to it instead of killing the
 * load: a model that fits only with swap runs, slowly, and refusing it would refuse a model that
 * runs. Where swap is unknown (no /proc/meminfo: see host-memory-now.ts) nothing is refused.
 *
 * Pure: no I/O (the readings come from host-memory-now.ts or a test).
 */
import { PREFILL_CHUNK } from '../codegen/variant.js';
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import { tensorElemBytes } from '../ir/step-ops.js';
import { formatBytes, kvCacheBytes } from '../runtime/cuda/device-memory.js';
import { passGraph } from '../runtime/model/step.js';
import { CAPACITY_QUANTUM } from './runner-pool.js';

/** The host's memory now. */
export interface HostMemory {
  /** What can be allocated without swapping (Linux: MemAvailable, which counts reclaimable page cache). */
  readonly availableBytes: number;
  readonly totalBytes: number;
  /** Free swap; undefined: not known here (the check then refuses nothing). */
  readonly swapFreeBytes?: number;
  /** The process's memory cgroup limits it below the machine's figures (a container's --memory): available and total are the cgroup's. */
  readonly cgroupLimited?: boolean;
  /** Whose limit that is, where known: "memory cgroup /kubepods/pod1" (cgroupName). */
  readonly limitedBy?: string;
  /** Whose swap limit bounds swapFreeBytes below the machine's free swap, where one does and its path is known. */
  readonly swapLimitedBy?: string;
}

/** One memory cgroup (v1 or v2) as read: its limit, what it holds, and what of that the kernel reclaims before it kills. */
export interface CgroupMemory {
  /** Infinity: no memory limit (or one whose usage could not be read). */
  readonly limitBytes: number;
  readonly usageBytes: number;
  /**
   * What of the usage the kernel reclaims before it kills (parseReclaimable): the file cache on
   * the LRU lists (memory.stat's active_file + inactive_file) and, v2, the reclaimable slab
   * (dentries and inodes: memory.current counts them, MemAvailable counts the machine's). Active
   * pages count too: a checkpoint read twice (a download's hash check, a previous run) sits on
   * the active list, charged to the cgroup.
   */
  readonly reclaimableBytes: number;
  /**
   * The swap its limit leaves: v2 memory.swap.max less memory.swap.current (Kubernetes sets 0);
   * v1 what memory.memsw.limit_in_bytes (memory and swap together) leaves beyond the memory
   * limit, less the swap in use. Absent: no swap limit, or not read.
   */
  readonly swapFreeBytes?: number;
  /** The cgroup, as /proc/self/cgroup names it ("/kubepods/pod1"); absent: not known. */
  readonly path?: string;
  /** v1: the limit is memory.stat's hierarchical_memory_limit, an ancestor's, tighter than the cgroup's own. */
  readonly inherited?: boolean;
}

/**
 * A cgroup limit file's value: v2 memory.max ("max") or v1 memory.limit_in_bytes (a number near
 * 2^63 when unlimited). undefined: no limit, or not a number.
 */
export function parseCgroupLimit(text: string): number | undefined {
  const t = text.trim();
  if (!/^\d+$/.test(t)) return undefined;
  const n = Number(t);
  return n >= 2 ** 62 ? undefined : n;
}

/** A count file's value (memory.current, memory.usage_in_bytes, ...); undefined when not a number. */
function parseCount(text: string | undefined): number | undefined {
  const t = text?.trim();
  return t !== undefined && /^\d+$/.test(t) ? Number(t) : undefined;
}

/** memory.stat's `key` field; undefined when absent. */
function statField(stat: string, key: string): number | undefined {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(stat);
  return m ? Number(m[1]) : undefined;
}

/**
 * memory.stat's file cache on the LRU lists: active_file + inactive_file, v1's hierarchical
 * total_ fields where present (else a v1 leaf's or v2's own, which are hierarchical); 0 when
 * absent. Shmem (tmpfs) sits on the anon lists and is not in either.
 */
export function parseFileCache(stat: string): number {
  const both = (prefix: string): number | undefined => {
    const active = statField(stat, `${prefix}active_file`), inactive = statField(stat, `${prefix}inactive_file`);
    return active === undefined && inactive === undefined ? undefined : (active ?? 0) + (inactive ?? 0);
  };
  return both('total_') ?? both('') ?? 0;
}

/**
 * What of a cgroup's usage the kernel reclaims before it kills: its file cache (parseFileCache)
 * and v2's slab_reclaimable (a file-heavy container holds GiBs of dentries and inodes, charged to
 * memory.current and shrunk under the limit's pressure; v1's memory.stat has no slab fields).
 */
export function parseReclaimable(stat: string): number {
  return parseFileCache(stat) + (statField(stat, 'slab_reclaimable') ?? 0);
}

/**
 * /proc/self/cgroup's memory cgroup: v1's memory controller line where there is one (a hybrid
 * host's v2 `0::` line then holds no memory controller), else v2's `0::` line. undefined: neither.
 */
export function parseProcCgroup(text: string): { readonly version: 1 | 2; readonly path: string } | undefined {
  const lines = text.split('\n');
  const v1 = lines.map((l) => /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/.exec(l)).find((m) => m !== null);
  if (v1) return { version: 1, path: v1[1]! };
  const v2 = lines.map((l) => /^0::(.*)$/.exec(l)).find((m) => m !== null);
  return v2 ? { version: 2, path: v2[1]! } : undefined;
}

/** A v2 cgroup's path and its ancestors' up to the mount's root: "/a/b" -> ["/a/b", "/a", "/"]. */
export function cgroupAncestors(path: string): string[] {
  const parts = path.split('/').filter((p) => p !== '');
  return parts.map((_, i) => `/${parts.slice(0, parts.length - i).join('/')}`).concat('/');
}

/**
 * One cgroup's memory files as read; undefined: missing or unreadable. v2: memory.max,
 * memory.current, memory.swap.max, memory.swap.current; v1: memory.limit_in_bytes,
 * memory.usage_in_bytes, memory.memsw.limit_in_bytes, memory.memsw.usage_in_bytes. Both: memory.stat.
 */
export interface CgroupFiles {
  readonly path?: string;
  readonly limit?: string;
  readonly usage?: string;
  readonly stat?: string;
  readonly swapLimit?: string;
  readonly swapUsage?: string;
}

/**
 * One cgroup's figures from its files. Its memory limit counts only where the limit, the usage and
 * memory.stat all read (a reading that fails leaves the check as lenient as no limit); v1's
 * effective limits are the tighter of the cgroup's own and memory.stat's hierarchical_memory_limit /
 * hierarchical_memsw_limit (its ancestors': with them the usage is still this cgroup's, so a
 * sibling's use of an ancestor's limit is not counted). v1's swap: memsw (memory + swap) less the
 * memory limit, less the swap in use (memsw.usage - usage); memsw equal to the limit: no swap.
 * undefined: neither a memory nor a swap limit.
 */
export function parseCgroupLevel(version: 1 | 2, files: CgroupFiles): CgroupMemory | undefined {
  const { stat } = files;
  const hierarchical = (key: string): number | undefined => {
    const n = version === 1 && stat !== undefined ? statField(stat, key) : undefined;
    return n === undefined ? undefined : parseCgroupLimit(String(n));
  };
  const tighter = (a: number | undefined, b: number | undefined): number | undefined => a === undefined ? b : b === undefined ? a : Math.min(a, b);
  const own = files.limit === undefined ? undefined : parseCgroupLimit(files.limit);
  const ancestors = hierarchical('hierarchical_memory_limit');
  const limit = tighter(own, ancestors), usage = parseCount(files.usage);
  const memory = limit !== undefined && usage !== undefined && stat !== undefined
    ? { limitBytes: limit, usageBytes: usage, reclaimableBytes: parseReclaimable(stat) } : undefined;
  let swapFreeBytes: number | undefined;
  const swapUsage = parseCount(files.swapUsage);
  if (version === 2) {
    const swapMax = files.swapLimit === undefined ? undefined : parseCgroupLimit(files.swapLimit);
    if (swapMax !== undefined && swapUsage !== undefined) swapFreeBytes = Math.max(0, swapMax - swapUsage);
  } else {
    const memsw = tighter(files.swapLimit === undefined ? undefined : parseCgroupLimit(files.swapLimit), hierarchical('hierarchical_memsw_limit'));
    if (memory && memsw !== undefined && swapUsage !== undefined) swapFreeBytes = Math.max(0, memsw - memory.limitBytes - Math.max(0, swapUsage - memory.usageBytes));
  }
  if (!memory && swapFreeBytes === undefined) return undefined;
  return {
    ...(memory ?? { limitBytes: Infinity, usageBytes: 0, reclaimableBytes: 0 }),
    ...(swapFreeBytes === undefined ? {} : { swapFreeBytes }),
    ...(files.path === undefined ? {} : { path: files.path }),
    ...(memory && ancestors !== undefined && (own === undefined || ancestors < own) ? { inherited: true } : {}),
  };
}

/** "memory cgroup /kubepods/pod1", "an ancestor of memory cgroup /a/b" (v1's hierarchical limit); undefined where the path is not known. */
export function cgroupName(cgroup: CgroupMemory): string | undefined {
  if (cgroup.path === undefined) return undefined;
  return `${cgroup.inherited ? 'an ancestor of ' : ''}memory cgroup ${cgroup.path}`;
}

/**
 * The machine's figures within the process's memory cgroups (`cgroup`: one, or the process's and
 * its ancestors'): a container limited to 8 GiB on a 64 GiB host is killed past 8, whatever
 * MemAvailable says, and so is one whose own cgroup has no limit under a parent (a systemd slice,
 * a Kubernetes pod) that has. Available: the least any limit leaves beside its cgroup's usage,
 * that cgroup's file cache and reclaimable slab counted back (reclaimed before a kill, as
 * MemAvailable counts the machine's); total: that limit. Limits at or above the machine's total are the machine's figures.
 * Swap: the machine's, within the tightest cgroup swap limit (a pod whose memory.swap.max is 0
 * cannot swap at all, whatever the machine has free).
 */
export function withCgroupLimit(host: HostMemory, cgroup: CgroupMemory | readonly CgroupMemory[] | undefined): HostMemory {
  const levels: readonly CgroupMemory[] = cgroup === undefined ? [] : 'limitBytes' in cgroup ? [cgroup] : cgroup;
  // The tightest swap limit, where it is below the machine's free swap.
  let out = host;
  for (const level of levels) {
    if (level.swapFreeBytes === undefined || out.swapFreeBytes === undefined || level.swapFreeBytes >= out.swapFreeBytes) continue;
    const name = cgroupName(level);
    out = { ...host, swapFreeBytes: level.swapFreeBytes, ...(name === undefined ? {} : { swapLimitedBy: name }) };
  }
  // The memory limit that leaves the least.
  let binding: { readonly level: CgroupMemory; readonly left: number } | undefined;
  for (const level of levels) {
    if (level.limitBytes >= host.totalBytes) continue;
    const left = Math.max(0, level.limitBytes - level.usageBytes + level.reclaimableBytes);
    if (!binding || left < binding.left) binding = { level, left };
  }
  if (!binding) return out;
  const name = cgroupName(binding.level);
  return {
    ...out, availableBytes: Math.min(host.availableBytes, binding.left), totalBytes: binding.level.limitBytes, cgroupLimited: true,
    ...(name === undefined ? {} : { limitedBy: name }),
  };
}

/** What a cpu runner of `capacity` tokens holds once it has run a first pass of one prefill chunk. */
export interface CpuRunnerBytes {
  readonly capacity: number;
  readonly kvCache: number;
  /** One chunk's activations (ModelRunner.workspace) and one row of lm_head logits. */
  readonly firstPass: number;
  readonly total: number;
}

/** A cpu runner's host bytes (forward.ts ModelRunner over a KvCache of `capacity` tokens). */
export function cpuRunnerBytes(spec: ModelSpec, capacity = CAPACITY_QUANTUM): CpuRunnerBytes {
  const kvCache = kvCacheBytes(spec, capacity);
  const T = PREFILL_CHUNK;
  const graph = passGraph(spec, T, { kind: 'prefill', promptTokens: T });
  // ids and positions are the pass's own arrays (i32: a few bytes a token, not the workspace's).
  const activations = graph.tensors.reduce((n, t) => n + (t.type === 'i32' ? 0 : T * t.width * tensorElemBytes(t.type)), 0);
  const firstPass = activations + spec.vocabSize * 4;
  return { capacity, kvCache, firstPass, total: kvCache + firstPass };
}

/** What a load needs on the host: the checkpoint, and on the cpu backend its first runner. */
export interface HostNeed {
  readonly checkpointBytes: number;
  readonly runner?: CpuRunnerBytes;
  readonly totalBytes: number;
}

/** The need of a load of `checkpointBytes` (its files' sizes); `cpuSpec`: the cpu backend's spec (its runner is priced). */
export function hostNeed(checkpointBytes: number, cpuSpec?: ModelSpec): HostNeed {
  if (!cpuSpec) return { checkpointBytes, totalBytes: checkpointBytes };
  const runner = cpuRunnerBytes(cpuSpec);
  return { checkpointBytes, runner, totalBytes: checkpointBytes + runner.total };
}

export interface HostFit {
  readonly fits: boolean;
  /** Why not (the error's sentence); '' when it fits. */
  readonly sentence: string;
}

/** The need against the host's memory: refused only when it exceeds available + free swap (see the file comment). */
export function hostFit(need: HostNeed, memory: HostMemory): HostFit {
  if (memory.swapFreeBytes === undefined || need.totalBytes <= memory.availableBytes + memory.swapFreeBytes) return { fits: true, sentence: '' };
  const what = need.runner
    ? `the checkpoint (${formatBytes(need.checkpointBytes)}) and a ${need.runner.capacity}-token cpu runner (${formatBytes(need.runner.total)}) need ${formatBytes(need.totalBytes)},`
    : `the checkpoint (${formatBytes(need.checkpointBytes)}) needs`;
  const where = !memory.cgroupLimited ? 'this machine has available'
    : memory.limitedBy === undefined ? 'this process\'s memory cgroup (a container\'s limit) allows' : `the limit of ${memory.limitedBy} allows`;
  return { fits: false, sentence: `${what} more memory than ${where}: ${formatBytes(memory.availableBytes)} of ${formatBytes(memory.totalBytes)} (${swapText(memory)})` };
}

/** Throws the fit's sentence as one error when the load does not fit (`source`: the model directory). */
export function checkHostFits(need: HostNeed, memory: HostMemory, source?: string): void {
  const fit = hostFit(need, memory);
  if (fit.fits) return;
  throw new TidarcError('runtime', fit.sentence, source === undefined ? {} : { source });
}

/**
 * /proc/meminfo's MemAvailable, MemTotal and SwapFree (kB lines: "MemAvailable:   11744000 kB");
 * undefined when any is missing or malformed (the check is then skipped, never failed).
 */
export function parseMeminfo(text: string): HostMemory | undefined {
  const kb = (key: string): number | undefined => {
    const m = new RegExp(`^${key}:\\s*(\\d+)\\s*kB\\s*$`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const availableBytes = kb('MemAvailable'), totalBytes = kb('MemTotal'), swapFreeBytes = kb('SwapFree');
  if (availableBytes === undefined || totalBytes === undefined || swapFreeBytes === undefined) return undefined;
  return { availableBytes, totalBytes, swapFreeBytes };
}

/**
 * ZFS's ARC above its floor (/proc/spl/kstat/zfs/arcstats: size - c_min), bytes; undefined when
 * the text has neither. The kernel's MemAvailable does not count the ARC (OpenZFS keeps it outside
 * the page cache), yet the ARC shrinks to c_min when a process needs the memory: on a ZFS host
 * with a full ARC (half the RAM by default) MemAvailable alone would refuse a load that fits.
 */
export function parseArcShrinkable(arcstats: string): number | undefined {
  const field = (key: string): number | undefined => {
    const m = new RegExp(`^${key}\\s+\\d+\\s+(\\d+)\\s*$`, 'm').exec(arcstats);
    return m ? Number(m[1]) : undefined;
  };
  const size = field('size'), floor = field('c_min');
  return size === undefined || floor === undefined ? undefined : Math.max(0, size - floor);
}

/** The machine's figures with memory the kernel does not call available but gives back on demand (the ZFS ARC above its floor) counted in, at most the total. */
export function withShrinkable(host: HostMemory, shrinkableBytes: number | undefined): HostMemory {
  if (!shrinkableBytes) return host;
  return { ...host, availableBytes: Math.min(host.totalBytes, host.availableBytes + shrinkableBytes) };
}

/** "swap: 0 bytes free", "swap: 0 bytes free within the swap limit of memory cgroup /kubepods", "swap: not known". */
function swapText(memory: HostMemory): string {
  if (memory.swapFreeBytes === undefined) return 'swap: not known';
  return `swap: ${formatBytes(memory.swapFreeBytes)} free${memory.swapLimitedBy === undefined ? '' : ` within the swap limit of ${memory.swapLimitedBy}`}`;
}

/**
 * Doctor's line, naming the limit that binds: "11.2 GiB available of 23.4 GiB (swap: 0 bytes
 * free)", "6.0 GiB available of 8.0 GiB (the limit of memory cgroup /kubepods/pod1) (swap: ...)".
 */
export function describeHostMemory(memory: HostMemory): string {
  const limit = !memory.cgroupLimited ? '' : memory.limitedBy === undefined ? ' (the memory cgroup\'s limit)' : ` (the limit of ${memory.limitedBy})`;
  return `${formatBytes(memory.availableBytes)} available of ${formatBytes(memory.totalBytes)}${limit} (${swapText(memory)})`;
}
