/**
 * manifest.json: what a compiled model contains, read by the runtime, the generated
 * TypeScript library and other tools. `build` is present only after a build ran.
 */
import { manifestAbiFields } from './abi-fields.js';
import type { ManifestAttentionSm90a } from './attention-sm90a.js';
import type { ManifestGemmSm90a } from './gemm-sm90a.js';
import type { OmittedGemm } from './gemm-omission.js';
import type { ManifestStepGraphs } from './step-kinds.js';
import type { DType, ModelSpec } from '../ir/model.js';
import type { ArchName } from './arch.js';
import type { CallParams } from './call-params.js';
import type { Backend } from './target.js';

export interface AbiField {
  readonly name: string;
  readonly type: string;
  readonly shape?: string;
  readonly note?: string;
}

/** manifest.json's abi.fields: the attention argument's fields, from their one source (abi-fields.ts). */
export const ABI_FIELDS: readonly AbiField[] = manifestAbiFields();

export interface PtxasReport {
  readonly registers: number;
  readonly stackBytes: number;
  readonly spillStoreBytes: number;
  readonly spillLoadBytes: number;
  readonly sharedBytes: number;
  readonly constantBytes?: number;
  readonly barriers?: number;
}

export interface VariantOccupancy {
  readonly registers: number;
  readonly sharedBytes: number;
  readonly ctasPerSm: number;
  /** What stops one more CTA: registers, shared, threads or ctas. */
  readonly limit: string;
}

export interface ManifestVariant {
  readonly name: string;
  readonly description: string;
  readonly draft?: number;
  readonly mask: { readonly kind: string; readonly params: Readonly<Record<string, number | readonly number[]>> };
  readonly steps: number;
  readonly rows: number;
  readonly shape: { readonly dtype: DType; readonly headDim: number; readonly qHeads: number; readonly kvHeads: number };
  /** cuda: the one kernel of a call (split-KV merges in its last CTA per row group, no second launch). */
  readonly symbols: { readonly cuda: string; readonly cpu: string };
  readonly sources: { readonly cuda: string; readonly cpu: string };
  readonly plan: {
    readonly tileM: number;
    readonly tileN: number;
    readonly warps: number;
    /**
     * The planner's row tile (plan.ts rowTileOf; absent in older manifests): 'rows', each warp
     * owns 16 rows; 'keys', one 16-row tile whose key tiles the warps split, merged at the end.
     */
    readonly layout?: 'rows' | 'keys';
    readonly rowWarps?: number;
    /** Rows a row warp owns: 16, or 32 (two m16 tiles share each K/V fragment; absent in older manifests: 16). */
    readonly warpRows?: number;
    readonly keyWarps?: number;
    readonly stages: number;
    readonly rowTiles: number;
    readonly stepKeyTiles: number;
    readonly stepTiles: Readonly<Record<'empty' | 'partial' | 'full', number>>;
  };
  readonly launch: {
    readonly grid: readonly string[];
    readonly rowTiles: number;
    readonly block: number;
    readonly dynamicSharedBytes: number;
  };
  readonly arches: readonly ArchName[];
  /**
   * --arch sm_90a, compute-bound variants (attention-sm90a.ts sm90aAttentionRefusal): the
   * variant's sm_90a kernel (TMA + wgmma), its own unit compiled for sm_90a alone; the runtime
   * takes it where arch.ts selectArch picks sm_90a (attention-launch.ts).
   */
  readonly sm90a?: ManifestAttentionSm90a;
  /**
   * After an nvcc build: per arch, the main kernel's ptxas registers, its shared memory (static
   * + dynamic) and the CTAs one SM holds (occupancy.ts), which the split-KV rule counts slots with.
   */
  readonly occupancy?: Readonly<Record<string, VariantOccupancy>>;
  /**
   * Present when `tidarc compile --tuned` set this variant's tile: the tuned call parameters per
   * shape bucket, and the backend and device they were measured on (they apply to that backend);
   * `kernel`: which of its kernels a 9.0 device runs, as the search measured (input-key.ts VariantTuning).
   */
  readonly tuned?: { readonly calls: Readonly<Record<string, CallParams>>; readonly backend?: Backend; readonly device?: string; readonly kernel?: 'sm_90' | 'sm_90a' };
}

/**
 * One generated GEMM kernel (cuda/<unit>.cu, templates/cuda/tidarc_gemm.cuh): a linear layer's
 * weight shape at one planned row count m. Every kernel of a unit shares its reduction order
 * (k tiles of blockK, splitK parts summed in order), so a row's result does not depend on m.
 */
export interface ManifestGemm {
  /** Build unit: cuda/<unit>.cu -> cuda/<unit>.fatbin, one per weight shape. */
  readonly unit: string;
  /** What the model computes with it: qkv (fused), o, gate_up (fused), down, lm_head. */
  readonly roles: readonly string[];
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly dtype: DType;
  readonly splitK: number;
  readonly kernel: string;
  /** lm_head units: the merge of the per-tile row statistics (greedy steps write no logits). */
  readonly rowStatsKernel?: string;
  /** gate_up units: the kernels fuse silu(gate) * up when gate | up rows are interleaved in blocks of this many. */
  readonly swigluInterleave?: number;
  /** Fold-norms producer (o, down; bf16): the kernels have Reduction::kNormOut, so a launch may set norm_weight / norm_out / norm_sumsq (tidarc_gemm_abi.h). */
  readonly normOut?: true;
  /** Fold-norms consumer (qkv, gate_up, lm_head or their parts; bf16): the kernels have Reduction::kRowScale, so a launch may set row_sumsq. */
  readonly rowScale?: true;
  readonly source: string;
  /** stages: what every target arch can run (the emulator's build); stagesByArch: what each arch's nvcc pass compiles (its own shared memory). */
  readonly plan: { readonly blockM: number; readonly blockN: number; readonly blockK: number; readonly warpsM: number; readonly warpsN: number; readonly stages: number; readonly stagesByArch?: Readonly<Record<string, number>>; readonly kTilesPerSplit: number };
  readonly launch: {
    /** Any row count runs: grid (ceil(rows / blockM), nTiles, splitK); split-K is summed inside that launch (tidarc_gemm_abi.h). */
    readonly grid: readonly string[];
    readonly blockM: number;
    readonly nTiles: number;
    readonly block: number;
    readonly dynamicSharedBytes: number;
    /** Per arch, the dynamic shared memory of its stages (a device of that arch launches with it; others with dynamicSharedBytes). */
    readonly dynamicSharedBytesByArch?: Readonly<Record<string, number>>;
    /** splitK > 1: the int32 arrival counters the launch needs, one per output tile (grid x * grid y), zeroed once: each launch leaves them 0. */
    readonly splitCounters?: string;
  };
  /** After an nvcc build: per arch, the ptxas figures of the kernel. */
  readonly ptxas?: Readonly<Record<string, { readonly kernel: PtxasReport }>>;
  /**
   * `compile --tuned`: the unit's split-K came from a tuning record measured on `device` for
   * `arch`; `tile` says whether this kernel's tile did too (else the heuristic's: the record
   * has none for this M); `kernel`, the family a 9.0 device runs it on (the runtime honours it:
   * gpu-gemm-sm90a.ts gemmsFor).
   */
  readonly tuned?: { readonly arch: string; readonly device: string; readonly tile: boolean; readonly kernel?: 'sm_90' | 'sm_90a' };
}

/** A linear layer the generated GEMMs refuse (the cuda backend keeps tidarc_op_matmul for it), and why. */
export interface ManifestGemmRefusal {
  readonly role: string;
  readonly n: number;
  readonly k: number;
  readonly reason: string;
}

/** The build unit of the GPU operators (cuda/tidarc_ops.cu), beside the variants. */
export const OPS_UNIT = 'tidarc_ops';

export interface BuildReport {
  readonly inputHash: string;
  readonly nvcc?: {
    readonly version: string;
    readonly flags: readonly string[];
    /** Build unit (each variant, and OPS_UNIT: the GPU operators) -> fatbin path and per-arch, per-kernel ptxas figures. */
    readonly variants: Readonly<Record<string, { readonly binary: string; readonly hash: string; readonly ptxas: Readonly<Record<string, Readonly<Record<string, PtxasReport>>>> }>>;
  };
  readonly nvccMissing?: string;
  readonly cpu?: { readonly compiler: string; readonly flags: readonly string[]; readonly library: string };
  readonly cpuMissing?: string;
}

/** The compute capability from which tidarc_device.cuh's grid_dependency_wait is griddepcontrol.wait (sm_90). */
export const PROGRAMMATIC_LAUNCH_MIN_CC: readonly [number, number] = [9, 0];

export interface Manifest {
  readonly format: 1;
  readonly generator: string;
  readonly abiVersion: number;
  readonly model: ModelSpec;
  readonly arches: readonly ArchName[];
  readonly nvccFlags: readonly string[];
  /**
   * Every CUDA kernel of the compile keeps the programmatic dependent launch contract (no global
   * access before tidarc::grid_dependency_wait(), then grid_dependents_launch(); the GEMMs only
   * prefetch their weights' lines to L2, prefetch_l2_line, before it) on devices of at least this compute capability: below
   * it the primitives compile to nothing, so the runtime launches with the PDL attribute only
   * from here up (runtime/cuda/pdl.ts). Present when the compile has CUDA sources; absent in
   * manifests written before PDL, which then never get it.
   */
  readonly programmaticLaunch?: { readonly minComputeCapability: readonly [number, number] };
  readonly abi: { readonly struct: string; readonly header: string; readonly fields: readonly AbiField[] };
  readonly variants: readonly ManifestVariant[];
  /**
   * The model's variants a filtered compile (`tidarc compile --variant`) left out (present only when
   * some were): a runner or a call that needs one fails naming them (runtime/variant-check.ts).
   */
  readonly omittedVariants?: readonly string[];
  /**
   * The GEMM kernels (mma.sync per m, sm_90a per token tile) such a compile left out: those only
   * its omitted step kinds launch (gemm-omission.ts; present only when some were). A runner whose
   * model runs such a step is refused (runtime/model/needed-variants.ts).
   */
  readonly omittedGemms?: readonly OmittedGemm[];
  /** The linear layers' GEMMs (absent in manifests written before them). */
  readonly gemms?: readonly ManifestGemm[];
  /** Linear layers the GEMMs refuse (present only when some are). */
  readonly gemmRefusals?: readonly ManifestGemmRefusal[];
  /** --arch sm_90a: the GEMMs as sm_90a units (gemm-sm90a.ts), compiled for sm_90a alone; the runner takes them where arch.ts selectArch picks sm_90a. */
  readonly gemmsSm90a?: readonly ManifestGemmSm90a[];
  /** Per compiled step kind, its op graph on each backend in brief (codegen/step-kinds.ts; absent in older manifests). */
  readonly stepGraphs?: ManifestStepGraphs;
  /** Key of the compile's inputs (version, spec, drafts, arches, templates): equal keys, equal files. */
  readonly inputKey: string;
  /** sha256 of every other file of the output, by relative path. */
  readonly files: Readonly<Record<string, string>>;
  readonly build?: BuildReport;
}
