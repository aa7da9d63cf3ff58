/**
 * The linear layers on the generated GEMMs (manifest "gemms", templates/cuda/tidarc_gemm.cuh):
 * per role (qkv, o, gate_up, down, lm_head) the kernels `tidarc compile` built, one per planned
 * row count. A launch over `rows` rows takes the kernel planned for the fewest rows >= rows
 * (else the largest): every kernel of a weight shape shares one reduction order, so which one
 * runs never changes a row's result (greedy TiDAR == AR rests on it). Split-K partials go to a
 * workspace shared by every launch (they run in order on one stream).
 */
import { join } from 'node:path';
import type { ManifestGemm } from '../../codegen/manifest.js';
import { TidarcError } from '../../errors.js';
import type { CudaDevice, DeviceBuffer, KernelRef } from './device.js';
import type { GpuMatrix } from './gpu-ops.js';
import { GEMM, packStruct } from './op-abi.js';

const REDUCE_THREADS = 256;

export interface GemmLaunch {
  /** [*, k] float32 activations (rows 16-byte aligned). */
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
}

export class GpuGemms {
  private readonly byRole = new Map<string, ManifestGemm[]>();
  private readonly fns = new Map<string, KernelRef>();
  private workspace?: DeviceBuffer;

  constructor(private readonly device: CudaDevice, private readonly kernelsDir: string, gemms: readonly ManifestGemm[]) {
    for (const g of gemms) for (const role of g.roles) (this.byRole.get(role) ?? this.byRole.set(role, []).get(role)!).push(g);
    for (const list of this.byRole.values()) list.sort((a, b) => a.m - b.m);
  }

  /** Whether a generated GEMM runs `role` for weights of this shape and format. */
  covers(role: string, w: GpuMatrix): boolean {
    const g = this.byRole.get(role)?.[0];
    return g !== undefined && g.n === w.rows && g.k === w.cols && g.dtype === w.dtype;
  }

  run(role: string, a: GemmLaunch): void {
    const list = this.byRole.get(role);
    if (!list || !this.covers(role, a.w)) {
      throw new TidarcError('runtime', `the compiled kernels have no GEMM for ${role} ${a.w.rows}x${a.w.cols} ${a.w.dtype}`, { source: this.kernelsDir });
    }
    const g = list.find((x) => x.m >= a.rows) ?? list[list.length - 1]!;
    const n = g.n;
    const [seg1, seg2] = a.segments ?? [n, n];
    const widths = [seg1, seg2 - seg1, n - seg2];
    if (!(seg1 > 0 && seg1 <= seg2 && seg2 <= n) || a.outs.length !== widths.filter((x) => x > 0).length) {
      throw new TidarcError('runtime', `GEMM ${role}: ${a.outs.length} outputs do not match the segments ${seg1}, ${seg2} of ${n} columns`);
    }
    const [out, out2, out3] = [a.outs[0]!, seg2 > seg1 ? a.outs[1] : undefined, seg2 < n ? a.outs[a.outs.length - 1] : undefined];
    const workspace = g.splitK > 1 ? this.scratch(g.splitK * a.rows * n * 4) : undefined;
    const args = packStruct(GEMM, {
      x: a.x.ptr, w: a.w.buf.ptr, bias: a.bias?.ptr ?? 0, rowIds: a.rowIds?.ptr ?? 0,
      out: out.ptr, out2: out2?.ptr ?? 0, out3: out3?.ptr ?? 0, workspace: workspace?.ptr ?? 0,
      rows: a.rows, accumulate: a.accumulate ? 1 : 0, seg1, seg2,
    });
    this.device.launch(this.kernel(g, g.kernel), [Math.ceil(a.rows / g.launch.blockM), g.launch.nTiles, g.splitK], [g.launch.block], g.launch.dynamicSharedBytes, args);
    // Split-K: each part wrote its float32 partial; the reduce sums them in order, then bias and residual.
    if (g.reduceKernel) this.device.launch(this.kernel(g, g.reduceKernel), [Math.ceil((a.rows * n) / REDUCE_THREADS)], [REDUCE_THREADS], 0, args);
  }

  close(): void {
    if (this.workspace) this.device.free(this.workspace);
    this.workspace = undefined;
  }

  private kernel(g: ManifestGemm, name: string): KernelRef {
    let fn = this.fns.get(name);
    if (!fn) this.fns.set(name, (fn = this.device.kernel(join(this.kernelsDir, g.source.replace(/\.cu$/, '.fatbin')), name)));
    return fn;
  }

  private scratch(bytes: number): DeviceBuffer {
    if (this.workspace && this.workspace.bytes >= bytes) return this.workspace;
    if (this.workspace) this.device.free(this.workspace);
    this.workspace = this.device.alloc(bytes, 'split-K workspace');
    return this.workspace;
  }
}
