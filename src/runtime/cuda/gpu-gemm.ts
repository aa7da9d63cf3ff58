/**
 * The linear layers on the generated GEMMs (manifest "gemms", templates/cuda/tidarc_gemm.cuh):
 * per role (qkv, o, gate_up, down, lm_head) the kernels `tidarc compile` built, one per planned
 * row count. A launch over `rows` rows takes the kernel planned for the fewest rows >= rows
 * (else the largest; codegen/gemm-kernel-pick.ts, the rule a filtered compile keeps kernels
 * by): every kernel of a weight shape shares one reduction order, so which one runs never
 * changes a row's result (greedy TiDAR == AR rests on it). Split-K partials go to a workspace
 * shared by every launch (they run in order on one stream) and are summed inside the launch by
 * each output tile's last CTA, on arrival counters zeroed once at allocation (every launch, a
 * graph replay too, leaves them 0: splitCounters).
 */
import { join } from 'node:path';
import { ARCHES } from '../../codegen/arch.js';
import { GEMM_EPILOGUE } from '../../codegen/gemm-epilogue.js';
import { pickMmaKernel } from '../../codegen/gemm-kernel-pick.js';
import { GEMM_BLOCK_N, GEMM_REDUCE_THREADS } from '../../codegen/gemm-plan.js';
import type { ManifestGemm } from '../../codegen/manifest.js';
import { TidarcError } from '../../errors.js';
import { NORM_SUMSQ_CHUNK } from '../../ir/step-ops.js';
import type { CudaDevice, DeviceBuffer, KernelRef, LaunchOptions } from './device.js';
import type { GpuMatrix } from './gpu-ops.js';
import { GEMM, GEMM_NO_NORM, packStruct } from './op-abi.js';


/** Outputs of the lm_head's row statistics: per row argmax (int32), max and lse; the tiles' partials in scratch. */
export interface GemmRowStatsOut {
  readonly argmax: DeviceBuffer;
  readonly max: DeviceBuffer;
  readonly lse: DeviceBuffer;
}

export interface GemmLaunch {
  /** [*, k] activations in the weights' 16-bit dtype (rows 16-byte aligned): the step graph's 'u16' tensors. */
  readonly x: DeviceBuffer;
  readonly rows: number;
  readonly w: GpuMatrix;
  readonly bias?: DeviceBuffer | null;
  readonly rowIds?: DeviceBuffer;
  /** One output [rows, n], or the parts of a fused weight: [rows, seg1], [rows, seg2 - seg1], [rows, n - seg2]. */
  readonly outs: readonly DeviceBuffer[];
  /** Where out2 and out3 start (with three outputs; two outputs: seg2 = n). */
  readonly segments?: readonly [number, number];
  /** Add the old out (a residual) after the bias. */
  readonly accumulate?: boolean;
  /**
   * swiglu: w is gate | up interleaved (uploadWeights), one out [rows, n / 2] = silu(gate) * up in the 16-bit dtype.
   * rowStats: no out (outs empty); `stats` gets each row's argmax, max and lse.
   */
  readonly epilogue?: 'swiglu' | 'rowStats';
  readonly stats?: GemmRowStatsOut;
  /** A folded RMSNorm's producer (step-fold-norms.ts): also norm_out and the row sums of squares (ABI v6). */
  readonly normOut?: GemmNormOut;
  /** A folded RMSNorm's consumer: each output row scaled by the norm's 1 / rms (ABI v6). */
  readonly rowScale?: GemmRowScale;
}

/** What a producer writes for a folded RMSNorm: round16(weight[n] * out[r, n]) and per row the float64 sums of out^2 by 64 columns. */
export interface GemmNormOut {
  /** [n] float32: the norm's gamma widened at upload (gpu-weights.ts normWeights). */
  readonly weight: DeviceBuffer;
  /** [rows, n] in the kernel's 16-bit dtype. */
  readonly out: DeviceBuffer;
  /** [rows, ceil(n / 64)] float64. */
  readonly sumsq: DeviceBuffer;
}

/** A consumer's folded RMSNorm: the producer's sums over `cols` columns (the GEMM's k) and the norm's eps. */
export interface GemmRowScale {
  readonly sumsq: DeviceBuffer;
  readonly cols: number;
  readonly eps: number;
}

/** A unit's fold-norms code (the manifest's flags: ManifestGemm / ManifestGemmSm90a normOut, rowScale). */
export interface GemmFoldFlags {
  readonly normOut?: true;
  readonly rowScale?: true;
}

/**
 * The ABI v6 fields of a launch (GEMM_NO_NORM without a fold). A unit launched with a field its
 * kernel has no code for would ignore it and compute something else: refused here, host-side,
 * as are a producer with an epilogue or segments and sizes that do not match the launch.
 */
export function gemmNormFields(role: string, unit: GemmFoldFlags & { readonly n: number; readonly k: number }, a: GemmLaunch, plain: boolean): typeof GEMM_NO_NORM | Record<keyof typeof GEMM_NO_NORM, number> {
  const { normOut: p, rowScale: c } = a;
  if (!p && !c) return GEMM_NO_NORM;
  const chunks = (cols: number): number => Math.ceil(cols / NORM_SUMSQ_CHUNK);
  if (p && !unit.normOut) throw new TidarcError('runtime', `GEMM ${role}: launched as a folded RMSNorm's producer, but its kernel has no norm-out epilogue (compiled without it)`, { field: 'normOut' });
  if (c && !unit.rowScale) throw new TidarcError('runtime', `GEMM ${role}: launched with a folded RMSNorm's row scale, but its kernel has no row-scale epilogue (compiled without it)`, { field: 'rowScale' });
  if (p && (!plain || a.outs.length !== 1 || p.weight.bytes !== unit.n * 4 || p.out.bytes < a.rows * unit.n * 2 || p.sumsq.bytes < a.rows * chunks(unit.n) * 8)) {
    throw new TidarcError('runtime', `GEMM ${role}: a folded RMSNorm's producer takes one plain output of ${unit.n} columns, no epilogue, a float32 weight of ${unit.n} and its out and sums for ${a.rows} rows`);
  }
  if (c && (c.cols !== unit.k || !(c.eps >= 0))) throw new TidarcError('runtime', `GEMM ${role}: a folded RMSNorm's row scale over ${c.cols} columns, the GEMM's k is ${unit.k}`, { field: 'rowScale.cols', value: c.cols, allowed: String(unit.k) });
  return {
    normWeight: p?.weight.ptr ?? 0, normOut: p?.out.ptr ?? 0, normSumsq: p?.sumsq.ptr ?? 0,
    rowSumsq: c?.sumsq.ptr ?? 0, sumsqChunks: c ? chunks(c.cols) : 0, normCols: c?.cols ?? 0, normEps: c?.eps ?? 0,
  };
}

/**
 * The dynamic shared memory of a launch on a device of `deviceArch`: that of the code the driver
 * runs there (the unit's Config per __CUDA_ARCH__): the compiled arch of the same major version
 * with the highest minor not above the device's, as the driver picks a fatbin's real code; the
 * common stages' when the manifest has no per-arch figures or none matches.
 */
export function gemmSharedBytes(launch: ManifestGemm['launch'], deviceArch: string): number {
  const cc = (ARCHES as Record<string, { computeCapability: readonly [number, number] } | undefined>)[deviceArch]?.computeCapability;
  const byArch = Object.entries(launch.dynamicSharedBytesByArch ?? {}).flatMap(([a, bytes]) => {
    const c = (ARCHES as Record<string, { computeCapability: readonly [number, number] } | undefined>)[a]?.computeCapability;
    return c && cc && c[0] === cc[0] && c[1] <= cc[1] ? [{ minor: c[1], bytes }] : [];
  });
  return byArch.length === 0 ? launch.dynamicSharedBytes : byArch.reduce((best, x) => (x.minor > best.minor ? x : best)).bytes;
}

export class GpuGemms {
  private readonly byRole = new Map<string, ManifestGemm[]>();
  private readonly fns = new Map<string, KernelRef>();
  private workspace?: DeviceBuffer;
  private readonly counters: SplitCounters;

  /** `launch`: how every GEMM (and row statistics merge) is launched (programmatic where pdl.ts decided so). */
  constructor(private readonly device: CudaDevice, private readonly kernelsDir: string, gemms: readonly ManifestGemm[], protected readonly launch: LaunchOptions = {}) {
    this.counters = new SplitCounters(device);
    for (const g of gemms) for (const role of g.roles) (this.byRole.get(role) ?? this.byRole.set(role, []).get(role)!).push(g);
    for (const list of this.byRole.values()) list.sort((a, b) => a.m - b.m);
  }

  /** Whether a generated GEMM runs `role` for weights of this shape and format. */
  covers(role: string, w: GpuMatrix): boolean {
    const g = this.byRole.get(role)?.[0];
    return g !== undefined && g.n === w.rows && g.k === w.cols && g.dtype === w.dtype;
  }

  /** The gate | up interleave the compiled gate_up kernels fuse SwiGLU with (uploadWeights applies it), if any. */
  swigluInterleave(): number | undefined {
    return this.byRole.get('gate_up')?.[0]?.swigluInterleave;
  }

  /** Whether the compiled lm_head kernels have the row statistics (greedy steps write no logits). */
  hasRowStats(): boolean {
    return this.byRole.get('lm_head')?.[0]?.rowStatsKernel !== undefined;
  }

  /** Per role, whether its kernels have the fold-norms code (every kernel of the role: one unit). */
  foldFlags(): Map<string, GemmFoldFlags> {
    return new Map([...this.byRole].map(([role, list]) => [role, {
      ...(list.every((g) => g.normOut) ? { normOut: true } : {}), ...(list.every((g) => g.rowScale) ? { rowScale: true } : {}),
    } as GemmFoldFlags]));
  }

  run(role: string, a: GemmLaunch): void {
    const list = this.byRole.get(role);
    if (!list || !this.covers(role, a.w)) {
      throw new TidarcError('runtime', `the compiled kernels have no GEMM for ${role} ${a.w.rows}x${a.w.cols} ${a.w.dtype}`, { source: this.kernelsDir });
    }
    const g = pickMmaKernel(list, a.rows, (x) => x.m);
    const n = g.n;
    const epilogue = a.epilogue ?? 'none';
    if ((epilogue === 'swiglu' && (g.swigluInterleave === undefined || a.accumulate || a.segments || a.outs.length !== 1))
      || (epilogue === 'rowStats' && (g.rowStatsKernel === undefined || a.accumulate || a.outs.length !== 0 || !a.stats))) {
      throw new TidarcError('runtime', `GEMM ${role}: the ${epilogue} epilogue needs a kernel that has it, one plain output (none for rowStats) and no accumulate`);
    }
    const [seg1, seg2] = a.segments ?? [n, n];
    const widths = [seg1, seg2 - seg1, n - seg2];
    if (epilogue === 'none' && (!(seg1 > 0 && seg1 <= seg2 && seg2 <= n) || a.outs.length !== widths.filter((x) => x > 0).length)) {
      throw new TidarcError('runtime', `GEMM ${role}: ${a.outs.length} outputs do not match the segments ${seg1}, ${seg2} of ${n} columns`);
    }
    const [out, out2, out3] = [a.outs[0], seg2 > seg1 ? a.outs[1] : undefined, seg2 < n ? a.outs[a.outs.length - 1] : undefined];
    const tiles = Math.ceil(n / GEMM_BLOCK_N);
    // One scratch holds the split-K partials, then the tiles' statistics (max, sum; argmax): sized by mmaGemmScratch (the decode loop's price reads it too).
    const sizes = mmaGemmScratch(g, a.rows, epilogue);
    const partials = g.splitK > 1 ? g.splitK * a.rows * n : 0;
    const statFloats = epilogue === 'rowStats' ? 3 * a.rows * tiles : 0;
    const scratch = sizes.workspaceBytes > 0 ? this.scratch(sizes.workspaceBytes) : undefined;
    const at = (floats: number): number => scratch!.ptr + floats * 4;
    const args = packStruct(GEMM, {
      x: a.x.ptr, w: a.w.buf.ptr, bias: a.bias?.ptr ?? 0, rowIds: a.rowIds?.ptr ?? 0,
      out: out?.ptr ?? 0, out2: out2?.ptr ?? 0, out3: out3?.ptr ?? 0, workspace: partials > 0 ? at(0) : 0,
      tileStats: statFloats > 0 ? at(partials) : 0, tileArgmax: statFloats > 0 ? at(partials + 2 * a.rows * tiles) : 0,
      rowArgmax: a.stats?.argmax.ptr ?? 0, rowMax: a.stats?.max.ptr ?? 0, rowLse: a.stats?.lse.ptr ?? 0,
      rows: a.rows, accumulate: a.accumulate ? 1 : 0, seg1, seg2, epilogue: GEMM_EPILOGUE[epilogue],
      splitCounters: sizes.counters > 0 ? this.counters.at(sizes.counters).ptr : 0,
      ...gemmNormFields(role, g, a, epilogue === 'none' && seg1 === n && seg2 === n),
    });
    const shared = gemmSharedBytes(g.launch, this.device.arch);
    // Split-K: the parts' partials are summed in order by each tile's last CTA, which runs the epilogue too.
    this.device.launch(this.kernel(g, g.kernel), [Math.ceil(a.rows / g.launch.blockM), g.launch.nTiles, g.splitK], [g.launch.block], shared, args, this.launch);
    // The tiles merged into argmax, max and lse per row (a warp a row).
    if (epilogue === 'rowStats') this.device.launch(this.kernel(g, g.rowStatsKernel!), [Math.ceil(a.rows / (GEMM_REDUCE_THREADS / 32))], [GEMM_REDUCE_THREADS], 0, args, this.launch);
  }

  close(): void {
    if (this.workspace) this.device.free(this.workspace);
    this.counters.close();
    this.workspace = undefined;
  }

  /** Bytes of scratch held now (the decode loop's price compares them): the workspace and the split-K counters, by slot (GEMM_SLOTS). */
  heldScratch(): Map<string, number> {
    return new Map([[GEMM_SLOTS.workspace, this.workspace?.bytes ?? 0], [GEMM_SLOTS.counters, this.counters.bytes]]);
  }

  private kernel(g: ManifestGemm, name: string): KernelRef {
    let fn = this.fns.get(name);
    if (!fn) this.fns.set(name, (fn = this.device.kernel(join(this.kernelsDir, g.source.replace(/\.cu$/, '.fatbin')), name)));
    return fn;
  }

  /** Split-K partials and row statistics' tiles, shared by every launch (they run in order on one stream). */
  private scratch(bytes: number): DeviceBuffer {
    if (this.workspace && this.workspace.bytes >= bytes) return this.workspace;
    if (this.workspace) this.device.free(this.workspace);
    this.workspace = this.device.alloc(bytes, 'GEMM workspace (split-K partials, row statistics tiles)');
    return this.workspace;
  }
}

/**
 * The split-K arrival counters of a launcher (int32, one per output tile), grown on demand and
 * zeroed once when allocated, by a fill on the stream before the launch (inside a graph capture
 * the graph re-zeroes them each replay, which changes nothing): every launch leaves them 0.
 * Shared by every launch of the launcher (they run in order on one stream).
 */
export class SplitCounters {
  private buf?: DeviceBuffer;

  constructor(private readonly device: CudaDevice) {}

  at(count: number): DeviceBuffer {
    if (this.buf && this.buf.bytes >= count * 4) return this.buf;
    if (this.buf) this.device.free(this.buf);
    this.buf = this.device.alloc(count * 4, 'GEMM split-K counters');
    this.device.fill(this.buf, 0);
    return this.buf;
  }

  close(): void {
    if (this.buf) this.device.free(this.buf);
    this.buf = undefined;
  }

  /** Bytes held now (0: none allocated). */
  get bytes(): number {
    return this.buf?.bytes ?? 0;
  }
}

/** Slot names of a GEMM launcher's scratch (the decode loop's price, step-scratch.ts, merges held and needed bytes by them). */
export const GEMM_SLOTS = { workspace: 'GEMM workspace', counters: 'GEMM split-K counters' } as const;

/**
 * The scratch one mma.sync GEMM launch of `rows` rows needs: the workspace (split-K partials, then
 * the row statistics' tile partials: bytes) and the split-K arrival counters (a count, one per
 * output tile; 0 without split-K). GpuGemms.run allocates these; the launcher keeps the largest.
 */
export function mmaGemmScratch(g: ManifestGemm, rows: number, epilogue: 'none' | 'swiglu' | 'rowStats' = 'none'): { readonly workspaceBytes: number; readonly counters: number } {
  const partials = g.splitK > 1 ? g.splitK * rows * g.n : 0;
  const statFloats = epilogue === 'rowStats' ? 3 * rows * Math.ceil(g.n / GEMM_BLOCK_N) : 0;
  return { workspaceBytes: (partials + statFloats) * 4, counters: g.splitK > 1 ? Math.ceil(rows / g.launch.blockM) * g.launch.nTiles : 0 };
}

/** The mma.sync kernel a launch of `rows` rows of `role` takes (GpuGemms.run's pick; the list sorted by m). */
export function mmaGemmFor(list: readonly ManifestGemm[], rows: number): ManifestGemm {
  return pickMmaKernel([...list].sort((a, b) => a.m - b.m), rows, (x) => x.m);
}
