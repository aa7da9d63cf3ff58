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
}

/** The process's memory cgroup (v1 or v2) as read: its limit, what it holds, and what of that is reclaimable page cache. */
export interface CgroupMemory {
  /** Infinity: no memory limit. */
  readonly limitBytes: number;
  readonly usageBytes: number;
  /**
   * The cgroup's file cache on the LRU lists (memory.stat's active_file + inactive_file), which
   * the kernel reclaims before it kills. Active pages count too: a checkpoint read twice (a
   * download's hash check, a previous run) sits on the active list, charged to the cgroup.
   */
  readonly fileCacheBytes: number;
  /** v2: the swap its memory.swap.max leaves beside memory.swap.current (Kubernetes sets 0); absent: no swap limit, or v1 (not read). */
  readonly swapFreeBytes?: number;
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

/**
 * memory.stat's file cache on the LRU lists: active_file + inactive_file, v1's hierarchical
 * total_ fields where present (else a v1 leaf's or v2's own, which are hierarchical); 0 when
 * absent. Shmem (tmpfs) sits on the anon lists and is not in either.
 */
export function parseFileCache(stat: string): number {
  const field = (key: string): number | undefined => {
    const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(stat);
    return m ? Number(m[1]) : undefined;
  };
  const both = (prefix: string): number | undefined => {
    const active = field(`${prefix}active_file`), inactive = field(`${prefix}inactive_file`);
    return active === undefined && inactive === undefined ? undefined : (active ?? 0) + (inactive ?? 0);
  };
  return both('total_') ?? both('') ?? 0;
}

/**
 * The machine's figures within the process's memory cgroup: a container limited to 8 GiB on a
 * 64 GiB host is killed past 8, whatever MemAvailable says. Available: what the limit leaves
 * beside the cgroup's usage, its file cache counted back (reclaimed before a kill, as
 * MemAvailable counts the machine's);
 * total: the limit. Swap: the machine's, within the cgroup's own swap limit where v2 sets one
 * (a pod whose memory.swap.max is 0 cannot swap at all, whatever the machine has free).
 */
export function withCgroupLimit(host: HostMemory, cgroup: CgroupMemory | undefined): HostMemory {
  if (!cgroup) return host;
  const swapped = cgroup.swapFreeBytes === undefined || host.swapFreeBytes === undefined || cgroup.swapFreeBytes >= host.swapFreeBytes
    ? host : { ...host, swapFreeBytes: cgroup.swapFreeBytes };
  if (cgroup.limitBytes >= host.totalBytes) return swapped;
  const left = Math.max(0, cgroup.limitBytes - cgroup.usageBytes + cgroup.fileCacheBytes);
  return { ...swapped, availableBytes: Math.min(host.availableBytes, left), totalBytes: cgroup.limitBytes, cgroupLimited: true };
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
  const activations = graph.tensors.reduce((n, t) => n + (t.type === 'i32' ? 0 : T * t.width * (t.type === 'f32' ? 4 : 2)), 0);
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
  const where = memory.cgroupLimited ? 'this process\'s memory cgroup (a container\'s limit) allows' : 'this machine has available';
  return { fits: false, sentence: `${what} more memory than ${where}: ${formatBytes(memory.availableBytes)} of ${formatBytes(memory.totalBytes)} (swap: ${formatBytes(memory.swapFreeBytes)} free)` };
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

/** "11.2 GiB available of 23.4 GiB (swap: 0 bytes free)": doctor's line. */
export function describeHostMemory(memory: HostMemory): string {
  const swap = memory.swapFreeBytes === undefined ? 'swap: not known' : `swap: ${formatBytes(memory.swapFreeBytes)} free`;
  return `${formatBytes(memory.availableBytes)} available of ${formatBytes(memory.totalBytes)}${memory.cgroupLimited ? ' (the memory cgroup\'s limit)' : ''} (${swap})`;
}
