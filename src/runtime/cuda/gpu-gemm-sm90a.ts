/**
 * The linear layers on the sm_90a GEMM (templates/cuda/tidarc_gemm_sm90a.cuh) where the
 * selection rule (arch.ts selectArch) says the device runs sm_90a code: a compile that built
 * sm_90a, on a device of compute capability 9.0. Same launch contract as GpuGemms (GemmLaunch):
 * one output or up to three column segments, bias, residual add, SwiGLU; no row gather (TMA
 * reads x as one tensor) and no lm_head row statistics. A launch over `rows` takes the token
 * tile sm90aTokenTile picks (else the nearest compiled one; codegen/gemm-kernel-pick.ts): every
 * kernel of a unit shares the reduction, so which one runs never changes a row's result. The
 * tensor maps are encoded per launch on the host (tensor-map.ts; W's once per weight buffer) and
 * travel in the argument struct, so a captured graph replays them.
 */
import { join } from 'node:path';
import type { ArchName } from '../../codegen/arch.js';
import { selectArch } from '../../codegen/arch.js';
import { GEMM_EPILOGUE } from '../../codegen/gemm-epilogue.js';
import { pickSm90aKernel } from '../../codegen/gemm-kernel-pick.js';
import { type ManifestGemmSm90a, sm90aUnitName } from '../../codegen/gemm-sm90a.js';
import { TidarcError } from '../../errors.js';
import type { CudaDevice, DeviceBuffer, KernelRef, LaunchOptions } from './device.js';
import type { ManifestGemm } from '../../codegen/manifest.js';
import { type GemmFoldFlags, type GemmLaunch, GpuGemms, SplitCounters, gemmNormFields } from './gpu-gemm.js';
import type { GpuMatrix } from './gpu-ops.js';
import { GEMM, packStruct } from './op-abi.js';
import { TENSOR_MAP_BYTES, sm90aGemmMaps } from './tensor-map.js';

/** Which GEMMs a device runs from a compile for `compiled`: the sm_90a ones or the mma.sync ones (the selection rule). */
export function gemmPathFor(compiled: readonly ArchName[], device: { readonly major: number; readonly minor: number }): 'sm_90a' | 'mma.sync' {
  return selectArch(compiled, [device.major, device.minor]) === 'sm_90a' ? 'sm_90a' : 'mma.sync';
}

/** TidarcGemmSm90aArgs: the W map, the x map, TidarcGemmArgs, padded to the struct's 64-byte alignment. */
export function packSm90aArgs(wMap: Uint8Array, xMap: Uint8Array, g: Uint8Array): Uint8Array {
  const size = Math.ceil((2 * TENSOR_MAP_BYTES + g.length) / 64) * 64;
  const out = new Uint8Array(size);
  out.set(wMap, 0), out.set(xMap, TENSOR_MAP_BYTES), out.set(g, 2 * TENSOR_MAP_BYTES);
  return out;
}

export class GpuGemmsSm90a {
  private readonly byRole = new Map<string, ManifestGemmSm90a>();
  private readonly fns = new Map<string, KernelRef>();
  private readonly wMaps = new Map<string, Uint8Array>();  // per weight buffer and shape
  private workspace?: DeviceBuffer;
  private readonly counters: SplitCounters;

  /** `launch`: how every sm_90a GEMM is launched (programmatic where pdl.ts decided so). */
  constructor(private readonly device: CudaDevice, private readonly kernelsDir: string, units: readonly ManifestGemmSm90a[], private readonly launch: LaunchOptions = {}) {
    this.counters = new SplitCounters(device);
    for (const u of units) for (const role of u.roles) this.byRole.set(role, u);
  }

  /** Per role, whether its unit has the fold-norms code (the manifest's flags). */
  foldFlags(): Map<string, GemmFoldFlags> {
    return new Map([...this.byRole].map(([role, u]) => [role, sm90aFoldFlags(u)]));
  }

  covers(role: string, w: GpuMatrix): boolean {
    const u = this.byRole.get(role);
    return u !== undefined && u.n === w.rows && u.k === w.cols && u.dtype === w.dtype;
  }

  run(role: string, a: GemmLaunch): void {
    const u = this.byRole.get(role);
    if (!u || !this.covers(role, a.w)) throw new TidarcError('runtime', `the compiled sm_90a kernels have no GEMM for ${role} ${a.w.rows}x${a.w.cols} ${a.w.dtype}`, { source: this.kernelsDir });
    const epilogue = a.epilogue ?? 'none';
    if (a.rowIds) throw new TidarcError('runtime', `sm_90a GEMM ${role}: no row gather (the tensor map reads x as stored)`, { field: 'rowIds' });
    if (epilogue === 'rowStats') throw new TidarcError('runtime', `sm_90a GEMM ${role}: the lm_head row statistics are not in the sm_90a kernel`, { field: 'epilogue', value: epilogue, allowed: 'none, swiglu' });
    if (epilogue === 'swiglu' && (u.swigluInterleave === undefined || a.accumulate || a.segments || a.outs.length !== 1)) {
      throw new TidarcError('runtime', `sm_90a GEMM ${role}: the swiglu epilogue needs a gate_up unit, one output and no accumulate`);
    }
    const n = u.n;
    const [seg1, seg2] = a.segments ?? [n, n];
    const widths = [seg1, seg2 - seg1, n - seg2];
    if (epilogue === 'none' && (!(seg1 > 0 && seg1 <= seg2 && seg2 <= n) || a.outs.length !== widths.filter((x) => x > 0).length)) {
      throw new TidarcError('runtime', `sm_90a GEMM ${role}: ${a.outs.length} outputs do not match the segments ${seg1}, ${seg2} of ${n} columns`);
    }
    const [out, out2, out3] = [a.outs[0], seg2 > seg1 ? a.outs[1] : undefined, seg2 < n ? a.outs[a.outs.length - 1] : undefined];
    const kernel = pickSm90aKernel(u.kernels, a.rows, (k) => k.tileT);
    const shape = { n, k: u.k, dtype: u.dtype };
    const maps = sm90aGemmMaps(shape, a.rows, kernel.tileT, kernel.blockW);
    const wKey = `${a.w.buf.ptr}:${n}x${u.k}:${u.dtype}:${kernel.blockW}`;  // the box is the kernel's weight rows
    let wMap = this.wMaps.get(wKey);
    if (!wMap) this.wMaps.set(wKey, (wMap = this.device.encodeTensorMap(a.w.buf, maps.w)));
    const xMap = this.device.encodeTensorMap(a.x, maps.x);
    const grid: [number, number, number] = [Math.ceil(a.rows / kernel.tileT), Math.ceil(n / kernel.blockW), u.splitK];
    const sizes = sm90aGemmScratch(u, a.rows);
    const workspace = sizes.workspaceBytes > 0 ? this.scratch(sizes.workspaceBytes) : undefined;
    const g = packStruct(GEMM, {
      x: a.x.ptr, w: a.w.buf.ptr, bias: a.bias?.ptr ?? 0, rowIds: 0, out: out?.ptr ?? 0, out2: out2?.ptr ?? 0, out3: out3?.ptr ?? 0, workspace: workspace?.ptr ?? 0,
      tileStats: 0, tileArgmax: 0, rowArgmax: 0, rowMax: 0, rowLse: 0, rows: a.rows, accumulate: a.accumulate ? 1 : 0, seg1, seg2, epilogue: GEMM_EPILOGUE[epilogue],
      splitCounters: sizes.counters > 0 ? this.counters.at(sizes.counters).ptr : 0,
      ...gemmNormFields(role, { n, k: u.k, ...sm90aFoldFlags(u) }, a, epilogue === 'none' && seg1 === n && seg2 === n),
    });
    const module = join(this.kernelsDir, u.source.replace(/\.cu$/, '.fatbin'));
    this.device.launch(this.kernel(module, kernel.symbol), grid, [kernel.threads], kernel.sharedBytes, packSm90aArgs(wMap, xMap, g), this.launch);
  }

  close(): void {
    if (this.workspace) this.device.free(this.workspace);
    this.counters.close();
    this.workspace = undefined;
  }

  /** Bytes of scratch held now, by slot (SM90A_GEMM_SLOTS). */
  heldScratch(): Map<string, number> {
    return new Map([[SM90A_GEMM_SLOTS.workspace, this.workspace?.bytes ?? 0], [SM90A_GEMM_SLOTS.counters, this.counters.bytes]]);
  }

  private kernel(module: string, name: string): KernelRef {
    let fn = this.fns.get(name);
    if (!fn) this.fns.set(name, (fn = this.device.kernel(module, name)));
    return fn;
  }

  private scratch(bytes: number): DeviceBuffer {
    if (this.workspace && this.workspace.bytes >= bytes) return this.workspace;
    if (this.workspace) this.device.free(this.workspace);
    this.workspace = this.device.alloc(bytes, 'sm_90a GEMM workspace (split-K partials)');
    return this.workspace;
  }
}

/** An sm_90a unit's fold-norms flags (a manifest from before them has none: nothing folds on it). */
function sm90aFoldFlags(u: ManifestGemmSm90a): GemmFoldFlags {
  return { ...('normOut' in u && u.normOut === true ? { normOut: true } : {}), ...('rowScale' in u && u.rowScale === true ? { rowScale: true } : {}) };
}

/** Slot names of the sm_90a GEMMs' scratch (step-scratch.ts). */
export const SM90A_GEMM_SLOTS = { workspace: 'sm_90a GEMM workspace', counters: 'sm_90a GEMM split-K counters' } as const;

/**
 * The scratch one sm_90a launch of `rows` rows needs: split-K partials (bytes) and arrival
 * counters (one per output tile of the kernel sm90aTokenTile picks; 0 without split-K).
 */
export function sm90aGemmScratch(u: ManifestGemmSm90a, rows: number): { readonly workspaceBytes: number; readonly counters: number } {
  if (u.splitK <= 1) return { workspaceBytes: 0, counters: 0 };
  const kernel = pickSm90aKernel(u.kernels, rows, (k) => k.tileT);
  return { workspaceBytes: u.splitK * rows * u.n * 4, counters: Math.ceil(rows / kernel.tileT) * Math.ceil(u.n / kernel.blockW) };
}

/** Roles the sm_90a GEMM never takes: lm_head gathers rows and keeps its row statistics on the mma.sync kernels. */
const MMA_SYNC_ONLY: ReadonlySet<string> = new Set(['lm_head']);

/** The sm_90a units with the roles they take (those of MMA_SYNC_ONLY left to the mma.sync kernels); units left with none dropped. */
export function takenSm90aUnits(units: readonly ManifestGemmSm90a[]): ManifestGemmSm90a[] {
  return units.map((u) => ({ ...u, roles: u.roles.filter((r) => !MMA_SYNC_ONLY.has(r)) })).filter((u) => u.roles.length > 0);
}

/**
 * GpuGemms with the roles the compile's sm_90a units cover (every layer GEMM) on them: the
 * choice is per role and fixed for the runner's life, never per launch, so a row's result never
 * depends on the step's row count (the two paths sum alike but round differently).
 */
export class GpuGemmsWithSm90a extends GpuGemms {
  private readonly sm90a: GpuGemmsSm90a;
  private readonly roles: ReadonlySet<string>;

  constructor(device: CudaDevice, kernelsDir: string, gemms: readonly ManifestGemm[], units: readonly ManifestGemmSm90a[], launch: LaunchOptions = {}) {
    super(device, kernelsDir, gemms, launch);
    const taken = takenSm90aUnits(units);
    this.sm90a = new GpuGemmsSm90a(device, kernelsDir, taken, launch);
    this.roles = new Set(taken.flatMap((u) => u.roles));
  }

  /** The roles the sm_90a kernels run (tests, reports). */
  sm90aRoles(): string[] {
    return [...this.roles].sort();
  }

  override covers(role: string, w: GpuMatrix): boolean {
    return this.roles.has(role) ? this.sm90a.covers(role, w) : super.covers(role, w);
  }

  override foldFlags(): Map<string, GemmFoldFlags> {
    const own = this.sm90a.foldFlags();
    return new Map([...super.foldFlags()].map(([role, f]) => [role, this.roles.has(role) ? own.get(role) ?? {} : f]));
  }

  override run(role: string, a: GemmLaunch): void {
    if (this.roles.has(role)) this.sm90a.run(role, a);
    else super.run(role, a);
  }

  override close(): void {
    this.sm90a.close();
    super.close();
  }

  override heldScratch(): Map<string, number> {
    return new Map([...super.heldScratch(), ...this.sm90a.heldScratch()]);
  }
}

/**
 * The sm_90a units a 9.0 device takes from a compile: every one, but those whose weight shape a
 * tuning record keeps on the mma.sync kernel (`tuned.kernel` 'sm_90': the search measured it
 * faster) or, without a record, the compile's cost-model choice does (heuristic.kernel 'sm_90'). A record that chose sm_90a for a unit the compile has no sm_90a kernel for is refused.
 */
export function tunedSm90aUnits(kernelsDir: string, gemms: readonly ManifestGemm[], units: readonly ManifestGemmSm90a[]): ManifestGemmSm90a[] {
  const family = new Map(gemms.flatMap((g) => (g.tuned?.kernel ? [[g.unit, g.tuned.kernel] as const] : [])));
  for (const [unit, kernel] of family) {
    if (kernel === 'sm_90a' && !units.some((u) => u.unit === sm90aUnitName(gemms.find((g) => g.unit === unit)!))) {
      throw new TidarcError('invalid-argument', `tuned GEMM ${unit} chose the sm_90a kernel, which the compile did not build`, { field: 'gemms.tuned.kernel', value: kernel, allowed: `sm_90 (the compile's sm_90a units: ${units.map((u) => u.unit).join(', ') || 'none'})`, source: kernelsDir });
    }
  }
  // No record: the compile's cost-model choice (heuristic, gemm-kernel-choice.ts); an older manifest has none: sm_90a.
  return units.filter((u) => (family.get(gemms.find((g) => sm90aUnitName(g) === u.unit)?.unit ?? '') ?? u.heuristic?.kernel) !== 'sm_90');
}

/** The runner's GEMMs for a compiled directory on `device`: the selection rule, once (arch.ts selectArch), and the tuned families; `launch` for every launch of both families. */
export function gemmsFor(device: CudaDevice, kernelsDir: string, manifest: GemmManifest, launch: LaunchOptions = {}): GpuGemms {
  const sm90a = sm90aUnitsFor(kernelsDir, manifest, device.info);
  if (sm90a.length > 0) return new GpuGemmsWithSm90a(device, kernelsDir, manifest.gemms ?? [], sm90a, launch);
  return new GpuGemms(device, kernelsDir, manifest.gemms ?? [], launch);
}

/** What of a manifest picks a runner's GEMMs. */
export type GemmManifest = { readonly arches: readonly ArchName[]; readonly gemms?: readonly ManifestGemm[]; readonly gemmsSm90a?: readonly ManifestGemmSm90a[] };

/** The sm_90a units a runner on a device of `info`'s compute capability runs (gemmsFor; none: the mma.sync kernels alone). Before takenSm90aUnits. */
export function sm90aUnitsFor(kernelsDir: string, manifest: GemmManifest, info: { readonly major: number; readonly minor: number }): ManifestGemmSm90a[] {
  // Checked on every device: a record naming a family the compile lacks is wrong wherever it runs.
  const tuned = tunedSm90aUnits(kernelsDir, manifest.gemms ?? [], manifest.gemmsSm90a ?? []);
  return tuned.length > 0 && gemmPathFor(manifest.arches, info) === 'sm_90a' ? tuned : [];
}
