/**
 * The attention launches of a compiled kernels directory on a CudaDevice, in one place for
 * every caller that has its tensors on the device (the kernel library's cuda backend, the cuda
 * model runner): a variant's kernel (each module loaded once), the split-KV choice
 * (call-params.ts splitsFor: tuned on cuda, else the split count of least estimated time over the
 * device's SMs and the CTAs an SM holds, from the manifest's occupancy), the split workspace and counters, the argument
 * struct (op-abi.ts ATTENTION) and ONE launch per call:
 *   grid attentionGrid(rowTiles, batch * kvHeads, splits), the variant's block and dynamic shared
 *   memory; with splits > 1 each CTA takes a dynamic id, writes its split's partial o and lse to
 *   the workspace, counts itself in on its row group's counter and merges a slice of the previous
 *   row group's partials into o and lse (attention-grid.ts); the CTAs that count last reset the
 *   counters, so the zeroed counters serve every later launch (and a graph's replays).
 */
import { join } from 'node:path';
import { splitsFor, tunedCallOf } from '../../codegen/call-params.js';
import { attentionGrid } from '../../codegen/attention-grid.js';
import { splitKernel } from '../../codegen/splits.js';
import type { Manifest, ManifestVariant } from '../../codegen/manifest.js';
import { TidarcError } from '../../errors.js';
import type { CudaDevice, DeviceBuffer, KernelRef, LaunchOptions } from './device.js';
import { type ArchName, selectArch } from '../../codegen/arch.js';
import type { ManifestAttentionSm90a } from '../../codegen/attention-sm90a.js';
import { packAttentionSm90aArgs, sm90aCacheMap } from './attention-sm90a-args.js';
import { ATTENTION, packStruct } from './op-abi.js';

/** Device addresses of one launch's tensors (tidarc_abi.h layouts; offsets into larger buffers already added). */
export interface AttentionPointers {
  /** [batch, steps, qHeads, headDim], 16-bit. */
  readonly q: number;
  /** [batch, kvHeads, cacheCapacity, headDim], 16-bit. */
  readonly kCache: number;
  readonly vCache: number;
  /** [batch, steps, kvHeads, headDim], 16-bit. */
  readonly kStep: number;
  readonly vStep: number;
  /** int32 [batch]: the cached prefix length of each sequence. */
  readonly prefixLen: number;
  /** [batch, steps, qHeads, headDim], 16-bit. */
  readonly o: number;
  /** float32 [batch, steps, qHeads]. */
  readonly lse: number;
}

export interface AttentionLaunch extends AttentionPointers {
  readonly batch: number;
  readonly cacheCapacity: number;
  /** The longest prefix of the batch, on the host (prefixLen lives on the device): the split choice reads it. */
  readonly maxPrefix: number;
  /** Split-KV count; default: this launcher's splitsFor. */
  readonly splits?: number;
}

/** The module of a variant's kernels: its .cu's fatbin (on the emulated driver, the .emu.so beside it). */
export function attentionModule(kernelsDir: string, v: ManifestVariant): string {
  return join(kernelsDir, v.sources.cuda.replace(/\.cu$/, '.fatbin'));
}

/** The module of a variant's sm_90a kernel (manifest variant.sm90a): its .cu's fatbin, as attentionModule. */
export function attentionSm90aModule(kernelsDir: string, sm90a: { readonly source: string }): string {
  return join(kernelsDir, sm90a.source.replace(/\.cu$/, '.fatbin'));
}

/**
 * The kernel a variant's launches take on a device of compute capability `cc` from a compile for
 * `compiled`: its sm_90a kernel (TMA + wgmma) where the selection rule (arch.ts selectArch, the
 * GEMMs' rule too) picks sm_90a and the compile made one for the variant, unless the kernel is
 * named: first by `compile --tuned`'s record of what the search on a GPU measured faster
 * (tuned.kernel), else by the compile's cost-model choice (sm90a.heuristic.kernel,
 * attention-kernel-choice.ts); 'sm_90' keeps the variant's own. An older manifest names neither:
 * the arch rule alone (pure).
 */
export function attentionKernelOf(v: ManifestVariant, compiled: readonly ArchName[] | undefined, cc: readonly [number, number]): ManifestAttentionSm90a | undefined {
  const named = v.tuned?.backend === 'cuda' && v.tuned.kernel !== undefined ? v.tuned.kernel : v.sm90a?.heuristic?.kernel;
  if (named === 'sm_90') return undefined;
  return v.sm90a !== undefined && compiled !== undefined && selectArch(compiled, cc) === 'sm_90a' ? v.sm90a : undefined;
}

/** What of the device the split-KV rule reads. */
export interface SplitDevice {
  readonly arch: string;
  readonly multiprocessors: number;
}

/**
 * Split-KV parts of a launch of `variant` (its sm_90a kernel `sm90a` where the device takes it:
 * attentionKernelOf) at a prefix of `maxPrefix` keys: what tidarc tune measured on a GPU for the
 * shape, else the rule of least estimated time (splits.ts) over the row tiles and the CTAs an SM
 * holds of the kernel that runs. AttentionLauncher.splitsFor, and the decode loop's price.
 */
export function attentionSplits(variant: ManifestVariant, sm90a: ManifestAttentionSm90a | undefined, device: SplitDevice, batch: number, maxPrefix: number): number {
  const v = sm90a ? { ...variant, launch: { ...variant.launch, rowTiles: sm90a.rowTiles }, occupancy: sm90a.occupancy ? { [device.arch]: sm90a.occupancy } : {} } : variant;
  return splitsFor({
    tuned: tunedCallOf(v, 'cuda', batch, maxPrefix)?.splits,
    workItems: batch * v.shape.kvHeads * v.launch.rowTiles,
    sms: device.multiprocessors,
    // The CTAs an SM holds at this arch (ptxas, recorded at compile); unknown: 1.
    ctasPerSm: v.occupancy?.[device.arch]?.ctasPerSm,
    prefixTiles: Math.ceil(maxPrefix / v.plan.tileN),
    kernel: splitKernel({ ...v.plan, rows: v.rows, headDim: v.shape.headDim }),
  });
}

/** Slot names of a launcher's split-KV scratch (step-scratch.ts). */
export const SPLIT_KV_SLOTS = { workspace: 'split-KV workspace', counters: 'split-KV counters' } as const;

/** The split workspace (each split's partial o and lse, fp32) and counters (int32, splits x rows) of a launch in `splits` parts; none for 1. */
export function splitKvScratch(v: ManifestVariant, batch: number, splits: number): { readonly workspaceBytes: number; readonly countersBytes: number } {
  if (splits <= 1) return { workspaceBytes: 0, countersBytes: 0 };
  const rows = batch * v.steps * v.shape.qHeads;
  return { workspaceBytes: splits * rows * (v.shape.headDim + 1) * 4, countersBytes: splits * rows * 4 };
}

export class AttentionLauncher {
  private readonly variants: ReadonlyMap<string, ManifestVariant>;
  private readonly loaded = new Map<string, KernelRef>();
  private workspace?: DeviceBuffer;
  private counters?: DeviceBuffer;
  /** The arches of the compile (absent: only the variants' own kernels run). */
  private readonly arches?: readonly ArchName[];

  constructor(
    private readonly device: CudaDevice,
    private readonly kernelsDir: string,
    manifest: Pick<Manifest, 'variants'> & { readonly arches?: readonly ArchName[] },
    /** How every attention launch (and so its split-KV merge, done by the last CTA) is launched: programmatic where pdl.ts decided so. */
    private readonly launchOptions: LaunchOptions = {},
  ) {
    this.variants = new Map(manifest.variants.map((v) => [v.name, v]));
    this.arches = manifest.arches;
  }

  /** The variant's sm_90a kernel when this device takes it (attentionKernelOf), else undefined. */
  sm90aKernel(v: ManifestVariant): ManifestAttentionSm90a | undefined {
    return attentionKernelOf(v, this.arches, [this.device.info.major, this.device.info.minor]);
  }

  variant(name: string): ManifestVariant {
    const v = this.variants.get(name);
    if (!v) throw new TidarcError('runtime', `the compiled kernels have no variant ${name}`, { source: this.kernelsDir });
    return v;
  }

  /**
   * Split-KV parts of a launch the caller leaves open: what tidarc tune measured on a GPU for this
   * shape, else the rule of least estimated time (splits.ts) over the row tiles and the CTAs an SM
   * holds of the kernel that runs (the sm_90a one's where this device takes it: a caller that fixes
   * the count before the launch, as the runner's graphs do, gets the same count as launch()).
   */
  splitsFor(variant: ManifestVariant, batch: number, maxPrefix: number): number {
    return attentionSplits(variant, this.sm90aKernel(variant), { arch: this.device.arch, multiprocessors: this.device.info.multiprocessors }, batch, maxPrefix);
  }

  /** A variant's kernel, loaded on first use (a missing module fails here, naming it). */
  kernel(v: ManifestVariant): KernelRef {
    const sm90a = this.sm90aKernel(v);
    let fn = this.loaded.get(v.name);
    if (!fn) {
      fn = sm90a
        ? this.device.kernel(attentionSm90aModule(this.kernelsDir, sm90a), sm90a.symbol)
        : this.device.kernel(attentionModule(this.kernelsDir, v), v.symbols.cuda);
      this.loaded.set(v.name, fn);
    }
    return fn;
  }

  /** Enqueues one attention call of `variant` (no synchronisation); returns the splits it ran with. */
  launch(variant: string | ManifestVariant, call: AttentionLaunch): number {
    const v = typeof variant === 'string' ? this.variant(variant) : variant;
    const fn = this.kernel(v);
    const sm90a = this.sm90aKernel(v);
    const { kvHeads } = v.shape;
    const splits = call.splits ?? this.splitsFor(v, call.batch, call.maxPrefix);
    const scratch = splitKvScratch(v, call.batch, splits);
    const args = packStruct(ATTENTION, {
      q: call.q, kCache: call.kCache, vCache: call.vCache, kStep: call.kStep, vStep: call.vStep, prefixLen: call.prefixLen, o: call.o, lse: call.lse,
      workspace: splits > 1 ? this.splitWorkspace(scratch.workspaceBytes).ptr : 0,
      splitCounters: splits > 1 ? this.splitCounters(scratch.countersBytes).ptr : 0,
      batch: call.batch, cacheCapacity: call.cacheCapacity, numSplits: splits, numThreads: 0,
    });
    if (sm90a) {
      // The KV cache's tensor maps, encoded per launch on the host: a captured graph replays them with the args.
      const map = sm90aCacheMap(v.shape, call.batch, call.cacheCapacity, sm90a.tileN);
      const kMap = this.device.encodeTensorMap({ ptr: call.kCache, bytes: 0, label: 'k cache' }, map);
      const vMap = this.device.encodeTensorMap({ ptr: call.vCache, bytes: 0, label: 'v cache' }, map);
      this.device.launch(fn, attentionGrid(sm90a.rowTiles, call.batch * kvHeads, splits), [sm90a.block], sm90a.dynamicSharedBytes, packAttentionSm90aArgs(kMap, vMap, args), this.launchOptions);
      return splits;
    }
    this.device.launch(fn, attentionGrid(v.launch.rowTiles, call.batch * kvHeads, splits), [v.launch.block], v.launch.dynamicSharedBytes, args, this.launchOptions);
    return splits;
  }

  /** Frees the split workspace and counters (the device's modules stay loaded). */
  close(): void {
    if (this.workspace) this.device.free(this.workspace);
    if (this.counters) this.device.free(this.counters);
    this.workspace = undefined;
    this.counters = undefined;
  }

  /** Bytes of the split workspace and counters held now, by slot (SPLIT_KV_SLOTS; the decode loop's price, step-scratch.ts). */
  heldScratch(): Map<string, number> {
    return new Map([[SPLIT_KV_SLOTS.workspace, this.workspace?.bytes ?? 0], [SPLIT_KV_SLOTS.counters, this.counters?.bytes ?? 0]]);
  }

  /** Partial outputs and lse of every split, grown on demand and shared by every launch (they run in stream order). */
  private splitWorkspace(bytes: number): DeviceBuffer {
    if (this.workspace && this.workspace.bytes >= bytes) return this.workspace;
    if (this.workspace) this.device.free(this.workspace);
    this.workspace = this.device.alloc(bytes, 'split-KV workspace');
    return this.workspace;
  }

  /**
   * The split schedule's id and arrival counters (int32; splits x rows of them, abi-fields.ts
   * splitCounters, bound the 1 + row groups of any tiling), zeroed when allocated, by a fill on the stream before the launch (inside a graph
   * capture the graph re-zeroes them each replay, which changes nothing): every launch leaves
   * them zero. Grown on demand like the workspace.
   */
  private splitCounters(bytes: number): DeviceBuffer {
    if (this.counters && this.counters.bytes >= bytes) return this.counters;
    if (this.counters) this.device.free(this.counters);
    this.counters = this.device.alloc(bytes, 'split-KV counters');
    this.device.fill(this.counters, 0);
    return this.counters;
  }
}
