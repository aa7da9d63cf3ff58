/**
 * A whole decode step on a GPU, predicted before one measures it (issue 16's targets): the
 * step's launches as the cuda backend issues them (step-launches.ts: the runner itself on a
 * recording device), each priced by the model of its kernel, plus the launch and host costs of
 * running them one by one or as one CUDA graph. Pure: spec + step + machine + registers in.
 *
 *   GEMM        the compile's plan for the kernel the runtime picked (gemm-plan.ts, the unit's
 *               kernel of the fewest rows >= M), predictGemm at the launch's rows, accumulate and
 *               epilogue; the row statistics' merge kernel is its own launch (its bytes, below).
 *   attention   the variant's plan (plan.ts, sm_90), predictAttention at the step's prefix and
 *               the split count the runtime launched with (grid z: its split rule, at the CTAs
 *               an SM holds with the given registers).
 *   other       every operator of tidarc_ops.cu (rmsnorm, rope_pack, embed, verify, accept,
 *               draft_rows, kv_commit_layers, ...): the bytes it reads and writes at the copy rate.
 *               Every kernel takes at least smallKernelS (one DRAM round trip, a CTA wave).
 *   overheads   named below, with where each figure comes from. GPU time with graphs: the
 *               graph's start, the upload (a node of the graph), the kernels back to back with
 *               GRAPH_NODE_GAP_S between them, the download. Launch by launch: the host issues
 *               launch i at i x HOST_LAUNCH_S (after the upload call) and the GPU runs it at the
 *               later of that and the previous kernel's end + STREAM_GAP_S, so a step whose
 *               kernels are shorter than their issue waits on the host. Host time (what
 *               bench-step calls hostMs: the step's wall time outside its waits for the GPU, the
 *               synchronous download among them): the decoder's own work and the launches' (or
 *               the graph launch's) issue, plus launch by launch the upload call (stepIssue).
 *   PDL         programmatic dependent launch (pdlStepTimes; what an H200 runs by default): each
 *               kernel after the first is scheduled once its predecessor's CTAs have all started,
 *               where its CTAs fit beside them (occupancy.ts ctasBeside); then its node (or stream)
 *               gap and its floor's launch ramp pass during the predecessor's last wave, leaving the
 *               wait's release, and a GEMM's L2 prefetch (gemm-prefetch.ts) streams at the HBM rate
 *               the predecessor leaves idle, shortening its HBM time. PdlOverheads names the figures.
 *               The GEMM models have no latency-bound start term of their own (their HBM rate is
 *               Little's law's), so the prefetch shortens their HBM time only.
 *   roofline    roofline.ts stepCost at the machine's copy and matmul rates.
 */
import { ARCHES } from '../codegen/arch.js';
import { GEMM_EPILOGUE } from '../codegen/gemm-epilogue.js';
import { planModelGemms } from '../codegen/gemm-model.js';
import { GEMM_BLOCK_N, GEMM_REDUCE_THREADS, type GemmPlan, type GemmReduction, gemmUnitName } from '../codegen/gemm-plan.js';
import { sm90aRegisters, sm90aTokenTile } from '../codegen/gemm-sm90a.js';
import type { Machine } from '../codegen/machine.js';
import type { Manifest } from '../codegen/manifest.js';
import { type KernelResources, ctasBeside, occupancy } from '../codegen/occupancy.js';
import { type GemmPrefetch, gemmPlanPrefetch, sm90aPrefetch } from '../codegen/gemm-prefetch.js';
import { fillRate } from '../codegen/in-flight-rate.js';
import { type AttentionPlan, planAttention } from '../codegen/plan.js';
import { variantsForModel } from '../codegen/variant.js';
import { parseVariantName } from '../codegen/variant-name.js';
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import {
  ACCEPT, DRAFT_ROWS, EMBED, GELU, GEMM, KV_COMMIT, KV_COMMIT_LAYER, KV_COMMIT_LAYERS, MATMUL, NEXT_DRAFTS, RMSNORM, ROPE_PACK, ROW_STATS, SAMPLE, SILU_MUL, type StructSchema, TO_FLOAT, VERIFY, layoutOf,
} from '../runtime/cuda/op-abi.js';
import { predictAttention } from '../codegen/attention-cost-model.js';
import { planAttentionSm90a } from '../codegen/attention-sm90a.js';
import { generateModel } from '../codegen/generate.js';
import { TENSOR_MAP_BYTES } from '../runtime/cuda/tensor-map.js';
import { predictAttentionSm90a } from './attention-sm90a-cost-model.js';
import { predictSm90aGemm } from './gemm-sm90a-cost-model.js';
import { type GemmEpilogue, predictGemm } from './gemm-cost-model.js';
import { type Roofline, type StepCost, roofline, stepCost } from './roofline.js';
import { type RecordedLaunch, type RecordedStep, argField, recordStep } from './step-launches.js';

/**
 * Launch and host costs. Each is a figure someone measured on other hardware or an assumption,
 * never an H200 measurement: the device check's e2e part measures the step (and the host
 * microseconds per launch) to replace them.
 */
export interface StepOverheads {
  /**
   * Host time to issue one kernel from tidarc: JS packing of the argument, the N-API call and
   * cuLaunchKernel. 6 us: /work/shared/docs/performance-model.md says 5-7 us for this path;
   * cuLaunchKernel alone enqueues in ~2.7 us and a launch + its share of a sync costs ~6.4 us
   * (github.com/ahrefs/ocannl/issues/488, RTX 5070 Ti, CUDA 13.3); ~5 us per cudaLaunchKernel
   * (github.com/pegainfer-project/pegainfer/pull/163, nsys notes).
   */
  readonly hostLaunchS: number;
  /**
   * GPU idle between two dependent kernels issued one by one on a stream, when the host is ahead:
   * 2 us (machine.ts H200.launchGapS, the figure the GEMM and attention models already use).
   */
  readonly streamGapS: number;
  /**
   * The same gap inside a replayed CUDA graph: 0.58 us a node (a replayed chain of N no-op
   * kernels costs ~15 us + 0.58 us x N, github.com/ahrefs/ocannl/issues/488).
   */
  readonly graphNodeGapS: number;
  /**
   * What a graph replay costs on the GPU's timeline beyond one plain launch: ~15 us fixed per
   * replay (ocannl#488, with its synchronize) less one launch with its sync (~6.4 us): 8.6 us.
   */
  readonly graphStartS: number;
  /** Host time of cuGraphLaunch for a straight-line graph: assumed 5 us (no H100/H200 figure found; NVIDIA's CUDA 12.6 notes call it constant in the node count). */
  readonly hostGraphLaunchS: number;
  /**
   * Latency of one small host<->device copy on the stream (pinned, tens of bytes): assumed 3 us each
   * way. With graphs the step's upload is a memcpy node, priced as this + graphNodeGapS: the
   * overheads part measures the copy on the stream only (launch-overheads.ts 'copies'), not as a node.
   */
  readonly copyLatencyS: number;
  /** Host time of one copy call (N-API + cuMemcpy*Async): assumed 5 us, like a launch. */
  readonly hostCopyS: number;
  /** The decoder's own host work per step (JS: the step input, the pinned fill, reading the result): assumed 20 us. */
  readonly hostStepS: number;
  /** Floor of a small operator kernel (one DRAM round trip, one CTA wave): assumed 1.5 us. */
  readonly smallKernelS: number;
}

export const STEP_OVERHEADS: StepOverheads = {
  hostLaunchS: 6e-6, streamGapS: 2e-6, graphNodeGapS: 0.58e-6, graphStartS: 8.6e-6, hostGraphLaunchS: 5e-6,
  copyLatencyS: 3e-6, hostCopyS: 5e-6, hostStepS: 20e-6, smallKernelS: 1.5e-6,
};

/**
 * Programmatic dependent launch (PDL: the kernels' griddepcontrol contract, cuLaunchKernelEx with
 * programmatic stream serialization, captured as programmatic graph edges). Kernel j's CTAs are
 * scheduled once every CTA of kernel i (its predecessor) has started, since each calls
 * launch_dependents right after its wait, and only where they fit beside i's resident CTAs
 * (occupancy.ts ctasBeside: registers, shared memory, threads, CTA slots). Then, before j's wait
 * returns: the graph node's gap (or the stream's) and j's launch ramp pass while i runs, and a
 * GEMM's L2 prefetch of its weight slice (gemm-prefetch.ts) streams at the HBM rate i leaves idle.
 * None of these figures was measured on an H200: the device check's e2e part times the steps with
 * PDL on and off to check them.
 */
export interface PdlOverheads {
  /**
   * Exposed time between kernel i's end and kernel j's wait returning when j was scheduled early
   * (i's completion and memory flush signalled to j's waiting CTAs): ASSUMED 0.3 us. No H100/H200
   * figure was found; pegainfer-project/pegainfer#569 measured (%globaltimer, graph with
   * programmatic edges, unnamed GPU at 1755 MHz) that PDL removes 0.96 us of an empty kernel
   * pair's gap, which with this model's 0.58 us node gap + 0.8 us ramp leaves ~0.4 us.
   */
  readonly waitReleaseS: number;
  /**
   * A kernel's launch ramp (its CTAs dispatched, their prologue up to the wait): the part of the
   * floor smallKernelS (one DRAM round trip, one CTA wave) that is not the round trip, i.e.
   * smallKernelS - Machine.hbmLatencyS = 1.5 - 0.7 = 0.8 us (both assumed, see their sources).
   * Only the floor prices a ramp (the GEMM and attention models have none), so PDL lowers only a
   * floored kernel's time, to smallKernelS - rampS: the DRAM round trip after its wait remains.
   */
  readonly rampS: number;
}

export const PDL_OVERHEADS: PdlOverheads = { waitReleaseS: 0.3e-6, rampS: 0.8e-6 };

/**
 * The operators of tidarc_ops.cu and the row statistics' merge kernel: registers and static shared
 * memory as ptxas (nvcc 13.0, V13.0.88, sm_90) reported for the templates of commit 4aaf601
 * (before the PDL primitives), 2026-12-05; threads as the launch sets them. What the PDL fit
 * reads beside the predecessor's CTAs.
 */
export const OP_PTXAS: Readonly<Record<string, { readonly registers: number; readonly sharedBytes: number }>> = {
  kv_commit_layers: { registers: 32, sharedBytes: 0 }, next_drafts: { registers: 30, sharedBytes: 0 }, draft_rows: { registers: 30, sharedBytes: 0 },
  verify: { registers: 32, sharedBytes: 2048 }, accept: { registers: 22, sharedBytes: 0 }, sample: { registers: 102, sharedBytes: 36872 },
  row_stats: { registers: 29, sharedBytes: 4096 }, kv_commit: { registers: 32, sharedBytes: 0 }, to_float: { registers: 10, sharedBytes: 0 },
  rope_pack: { registers: 40, sharedBytes: 10240 }, gelu: { registers: 16, sharedBytes: 0 }, silu_mul: { registers: 18, sharedBytes: 0 },
  matmul: { registers: 63, sharedBytes: 20736 }, rmsnorm: { registers: 32, sharedBytes: 2048 }, embed: { registers: 26, sharedBytes: 0 },
};
/** A GEMM unit's row statistics' merge kernel (tidarc_gemm*_row_stats): 26 registers, no shared memory (ptxas, as OP_PTXAS). */
export const ROW_STATS_MERGE_PTXAS = { registers: 26, sharedBytes: 0 } as const;

/** Registers per thread of the step's kernels (ptxas), and where the figures came from. */
export interface StepRegisters {
  /** By GEMM kernel symbol (manifest gemms[].kernel). */
  gemm(symbol: string): number;
  /** By attention variant name. */
  attention(variant: string): number;
  /** The sm_90a kernels (GEMM units, compute-bound attention), by kernel symbol; a GEMM kernel's token tile and its unit's split-K beside it. */
  sm90a(symbol: string, gemm?: { readonly tileT: number; readonly splitK: number }): number;
  readonly source: string;
}

/**
 * Which kernels the H200 runs: 'sm_90' the mma.sync GEMMs and attention of an sm_90 compile;
 * 'sm_90a' what the kernel cache builds for a 9.0 device (sm_90 and sm_90a: the sm_90a GEMMs
 * for every role but lm_head, the sm_90a attention for the compute-bound variants; gemmsFor,
 * attentionKernelOf).
 */
export type StepPath = 'sm_90' | 'sm_90a';

/**
 * What ptxas (nvcc 13.0, sm_90a) reported for the sm_90a kernels, 2026-12-05: a GEMM kernel by
 * its token tile and split-K (gemm-sm90a.ts sm90aRegisters, the table the family choice and the
 * ring depth read: 30 to 168), attention 160 (bench/attention-sm90a.ts; 138 before the split
 * merge's dynamic CTA ids; the same 1 CTA an SM). The bench takes these where it has no ptxas
 * figure of its own.
 */
export const SM90A_RECORDED_REGISTERS = (symbol: string, gemm?: { readonly tileT: number; readonly splitK: number }): number => {
  if (gemm) return sm90aRegisters(gemm.tileT, gemm.splitK);
  if (symbol.includes('_attn_')) return 160;
  throw new TidarcError('runtime', `step cost model: no token tile and split-K for the sm_90a GEMM kernel ${symbol}`);
};

export type LaunchTerm = 'gemm' | 'attention' | 'other';

/** What a GEMM's L2 prefetch before its PDL wait changes of its price (its model's terms). */
export interface PrefetchTerms {
  /** The rule's prefetch (gemm-prefetch.ts): launchBytes distinct weight bytes, bytesPerCta a CTA. */
  readonly prefetch: GemmPrefetch;
  /** The main loop's HBM bytes and their time at the launch's HBM rate (the model's hbmS). */
  readonly mainBytes: number;
  readonly hbmS: number;
  /** The other terms of the main loop's max (L2, and compute with its wave term). */
  readonly restS: number;
  /** What follows the main loop in the launch (the split-K sum). */
  readonly tailS: number;
}

export interface LaunchPrice {
  readonly kernel: string;
  readonly term: LaunchTerm;
  /** GEMMs: the roles of the weight shape (qkv, o, gate_up, down, lm_head; roles of one shape share a unit). */
  readonly role?: string;
  readonly gpuS: number;
  /** HBM bytes (other: what the operator reads and writes; GEMM and attention: their model's). */
  readonly bytes: number;
  /** The model's time before the floor (smallKernelS). */
  readonly modelS: number;
  /** CTAs of the launch, CTAs an SM holds, and one CTA's resources: what the PDL fit reads. */
  readonly ctas: number;
  readonly ctasPerSm: number;
  readonly resources: KernelResources;
  /** GEMMs: the terms an L2 prefetch before the wait shortens. */
  readonly prefetch?: PrefetchTerms;
}

/** A GEMM's time when `bytes` of its main loop's HBM bytes are already in L2 (read at the L2 rate its restS already counts). */
export function prefetchedGemmS(t: PrefetchTerms, bytes: number): number {
  const left = Math.max(0, t.mainBytes - bytes);
  return Math.max(t.hbmS * (t.mainBytes > 0 ? left / t.mainBytes : 0), t.restS) + t.tailS;
}

export interface ModeTimes {
  /** GPU time of the step between events around it (upload to download). */
  readonly gpuS: number;
  /** Host time per step outside the waits for the GPU. */
  readonly hostS: number;
  /** gpuS less the kernels' own time: gaps, the graph's start, copies, waits on the host. */
  readonly overheadS: number;
}

export interface StepPrediction {
  readonly model: string;
  readonly step: string;
  readonly tokens: number;
  readonly prefix: number;
  readonly launches: number;
  readonly prices: readonly LaunchPrice[];
  readonly gemmS: number;
  readonly attentionS: number;
  readonly otherS: number;
  readonly kernelS: number;
  readonly uploadBytes: number;
  readonly downloadBytes: number;
  /** Host<->device copies the step issues (the recorded step's; what the host-time terms count: copies.uploads, copies.downloads). */
  readonly uploads: number;
  readonly downloads: number;
  /** PDL off: plain launches (cuLaunchKernel), as an sm_8x device or `--no-pdl` runs them. */
  readonly graphs: ModeTimes;
  readonly direct: ModeTimes;
  /** PDL on (what an H200 runs by default): the same launches with the overlap of pdlStep. */
  readonly pdl: PdlStep;
  readonly roofline: Roofline & StepCost;
}

/** What the pricing needs of a model once (the compile's manifest and plans), shared by its steps. */
export interface StepModelContext {
  readonly spec: ModelSpec;
  readonly manifest: Manifest;
  readonly path: StepPath;
  readonly gemmPlans: ReadonlyMap<string, GemmPlan>;
  /** Each weight shape's reduction (the compile's: gemm-unit-split.ts planUnitReduction), by unit name: the sm_90a units take it unchanged. */
  readonly reductions: ReadonlyMap<string, GemmReduction>;
  readonly attentionPlans: ReadonlyMap<string, AttentionPlan>;
  readonly registers: StepRegisters;
  readonly machine: Machine;
  /** Each weight shape's planned row counts, by unit name (the sm_90a kernels' prefetch counts CTAs at the most rows a kernel serves). */
  readonly unitMs: ReadonlyMap<string, readonly number[]>;
}

/**
 * The model's sm_90 compile, with each variant's occupancy at the given registers (what
 * `tidarc compile` records from ptxas and the runtime's split rule reads).
 */
export function stepModelContext(spec: ModelSpec, machine: Machine, registers: StepRegisters, path: StepPath = 'sm_90'): StepModelContext {
  const base = generateModel(spec, { arches: path === 'sm_90' ? ['sm_90'] : ['sm_90', 'sm_90a'] }).manifest;
  const sm90 = [ARCHES.sm_90];
  const attentionPlans = new Map(variantsForModel(spec).map((v) => [v.name, planAttention(v, ARCHES.sm_90.tile, sm90)]));
  const variants = base.variants.map((v) => {
    const plan = attentionPlans.get(v.name);
    if (!plan) return v;
    const occ = occupancy(machine.arch, { registers: registers.attention(v.name), sharedBytes: plan.sharedBytes, threads: plan.threads });
    // The split rule of an sm_90a launch counts that kernel's CTAs an SM (attention-launch.ts).
    const k = v.sm90a, r = k && registers.sm90a(k.symbol);
    const occ90a = k && r !== undefined ? occupancy(machine.arch, { registers: r, sharedBytes: k.dynamicSharedBytes, threads: k.block }) : undefined;
    return {
      ...v, occupancy: { ...v.occupancy, [machine.arch]: { registers: registers.attention(v.name), sharedBytes: plan.sharedBytes, ctasPerSm: occ.ctasPerSm, limit: occ.limit } },
      ...(k && occ90a ? { sm90a: { ...k, occupancy: { registers: r!, sharedBytes: k.dynamicSharedBytes, ctasPerSm: occ90a.ctasPerSm, limit: occ90a.limit } } } : {}),
    };
  });
  const gemmPlans = new Map<string, GemmPlan>(), reductions = new Map<string, GemmReduction>(), unitMs = new Map<string, number[]>();
  for (const u of planModelGemms(spec, spec.draftLengths, base.arches).units) {
    reductions.set(u.name, u.reduction);
    unitMs.set(u.name, u.plans.map((p) => p.m));
    for (const p of u.plans) gemmPlans.set(`${u.name} m${p.m}`, p);
  }
  return { spec, manifest: { ...base, variants }, path, gemmPlans, reductions, attentionPlans, registers, machine, unitMs };
}

const EPILOGUE_NAME = new Map<number, GemmEpilogue>(Object.entries(GEMM_EPILOGUE).map(([k, v]) => [v, k as GemmEpilogue]));
const F32 = 2;  // DTYPE_CODE.f32
const elementBytes = (dtypeCode: number): number => (dtypeCode === F32 ? 4 : 2);

/**
 * Bytes an operator of tidarc_ops.cu reads and writes, from its launch argument (op-abi.ts). The
 * caches and tables are counted by the rows touched, not their size.
 */
const OP_BYTES: Readonly<Record<string, { readonly schema: StructSchema; bytes(f: (field: string) => number): number }>> = {
  embed: { schema: EMBED, bytes: (f) => f('rows') * (4 + f('cols') * (elementBytes(f('dtype')) + 4)) },
  rmsnorm: { schema: RMSNORM, bytes: (f) => f('rows') * f('cols') * (4 + elementBytes(f('outDtype'))) + f('cols') * elementBytes(f('dtype')) },
  // Positions, q and k read (float32) and written (16-bit), v packed; the head norms' weights once each.
  rope_pack: {
    schema: ROPE_PACK,
    bytes: (f) => f('rows') * (4 + (f('qHeads') + 2 * f('kvHeads')) * f('headDim') * (4 + 2)) + ((f('qNorm') ? 1 : 0) + (f('kNorm') ? 1 : 0)) * f('headDim') * elementBytes(f('normDtype')),
  },
  // Every layer: its K and V rows read and written (at most max_count: the accepted count is not known here), and its 32-byte table entry.
  kv_commit_layers: { schema: KV_COMMIT_LAYERS, bytes: (f) => f('layers') * (2 * 2 * f('maxCount') * f('kvHeads') * f('headDim') * 2 + layoutOf(KV_COMMIT_LAYER).size) },
  kv_commit: { schema: KV_COMMIT, bytes: (f) => 2 * 2 * f('count') * f('kvHeads') * f('headDim') * 2 },
  row_stats: { schema: ROW_STATS, bytes: (f) => f('rows') * (f('cols') * 4 + 12) },
  verify: { schema: VERIFY, bytes: (f) => f('rows') * ((f('logits') ? f('vocab') * 4 : 4) + (f('mixLogits') ? f('vocab') * 4 : 0) + 12) },
  sample: { schema: SAMPLE, bytes: (f) => f('rows') * (f('vocab') * 4 * (f('mixLogits') ? 2 : 1) + 12) },
  accept: { schema: ACCEPT, bytes: (f) => f('rows') * 12 },
  draft_rows: { schema: DRAFT_ROWS, bytes: (f) => 4 + f('count') * 4 },
  next_drafts: { schema: NEXT_DRAFTS, bytes: (f) => 4 + f('count') * 16 },
  matmul: { schema: MATMUL, bytes: (f) => f('n') * f('k') * elementBytes(f('dtype')) + f('rows') * (f('k') * elementBytes(f('xDtype')) + f('n') * 4 * (f('accumulate') ? 2 : 1)) },
  silu_mul: { schema: SILU_MUL, bytes: (f) => f('count') * (8 + elementBytes(f('outDtype'))) },
  gelu: { schema: GELU, bytes: (f) => f('count') * (4 + elementBytes(f('outDtype'))) },
  to_float: { schema: TO_FLOAT, bytes: (f) => f('count') * 6 },
};

/** One launch's predicted GPU time, by the model of its kernel, with what the PDL overlap reads of it (its CTAs, their resources, a GEMM's prefetch). */
export function priceLaunch(c: StepModelContext, l: RecordedLaunch, prefix: number, o: StepOverheads = STEP_OVERHEADS): LaunchPrice {
  const { machine, spec } = c;
  const floor = (s: number): number => Math.max(s, o.smallKernelS);
  const gridCtas = l.grid[0] * l.grid[1] * l.grid[2];
  const launch = (x: { kernel: string; term: LaunchTerm; role?: string; modelS: number; bytes: number; ctas?: number; ctasPerSm?: number; resources: KernelResources; prefetch?: PrefetchTerms }): LaunchPrice => ({
    kernel: x.kernel, term: x.term, ...(x.role !== undefined ? { role: x.role } : {}), gpuS: floor(x.modelS), bytes: x.bytes, modelS: x.modelS,
    ctas: x.ctas ?? gridCtas, ctasPerSm: x.ctasPerSm ?? occupancy(machine.arch, x.resources).ctasPerSm, resources: x.resources, ...(x.prefetch ? { prefetch: x.prefetch } : {}),
  });
  const g = c.manifest.gemms?.find((x) => x.kernel === l.kernel || x.rowStatsKernel === l.kernel);
  if (g) {
    const rows = argField(GEMM, l.args, 'rows');
    if (l.kernel === g.rowStatsKernel) {
      // The tiles' statistics merged per row (gemm-cost-model.ts mergeBytes), its own launch.
      const bytes = rows * Math.ceil(g.n / GEMM_BLOCK_N) * 12 + rows * 12;
      return launch({ kernel: l.kernel, term: 'gemm', role: g.roles.join('|'), modelS: bytes / machine.copyBytesPerS, bytes, resources: { ...ROW_STATS_MERGE_PTXAS, threads: GEMM_REDUCE_THREADS } });
    }
    const plan = c.gemmPlans.get(`${g.unit} m${g.m}`);
    if (!plan) throw new TidarcError('runtime', `step cost model: no GEMM plan for ${g.unit} at M = ${g.m}`);
    const epilogue = EPILOGUE_NAME.get(argField(GEMM, l.args, 'epilogue')) ?? 'none';
    const registers = c.registers.gemm(g.kernel);
    const p = predictGemm(plan, rows, machine, registers, { accumulate: argField(GEMM, l.args, 'accumulate') === 1, epilogue });
    const restS = Math.max(p.l2S, Math.max(p.mmaS, p.sharedS, p.issueS ?? 0) + p.waveS);
    // The merge (mergeS, with its own launch gap) is the row statistics kernel's launch above.
    return launch({
      kernel: l.kernel, term: 'gemm', role: g.roles.join('|'), modelS: p.predictedS - p.mergeS, bytes: p.hbmBytes, ctas: p.ctas, ctasPerSm: p.ctasPerSm,
      resources: { registers, sharedBytes: plan.sharedBytes, threads: plan.threads },
      prefetch: { prefetch: gemmPlanPrefetch(plan), mainBytes: p.hbmS * p.hbm.bytesPerS, hbmS: p.hbmS, restS, tailS: p.reduceS },
    });
  }
  const u = c.manifest.gemmsSm90a?.find((x) => x.kernels.some((k) => k.symbol === l.kernel));
  if (u) {
    // TidarcGemmSm90aArgs: the W and x tensor maps, then TidarcGemmArgs.
    const args = l.args.subarray(2 * TENSOR_MAP_BYTES);
    const kernel = u.kernels.find((k) => k.symbol === l.kernel)!;
    const shape = { n: u.n, k: u.k, dtype: u.dtype };
    const reduction = c.reductions.get(gemmUnitName(shape));
    if (!reduction) throw new TidarcError('runtime', `step cost model: no reduction for ${u.unit}`);
    const epilogue = EPILOGUE_NAME.get(argField(GEMM, args, 'epilogue')) === 'swiglu' ? 'swiglu' : 'none';
    const registers = c.registers.sm90a(l.kernel, { tileT: kernel.tileT, splitK: reduction.splitK });
    const p = predictSm90aGemm(shape, reduction, kernel.tileT, argField(GEMM, args, 'rows'), machine, registers, { accumulate: argField(GEMM, args, 'accumulate') === 1, epilogue, blockW: kernel.blockW, stages: kernel.stages });
    // The rule counts the kernel's CTAs at the most rows it serves of the unit's planned row counts (gemm-sm90a.ts planSm90aKernels).
    const ms = (c.unitMs.get(gemmUnitName(shape)) ?? []).filter((m) => sm90aTokenTile(m) === kernel.tileT);
    return launch({
      kernel: l.kernel, term: 'gemm', role: u.roles.join('|'), modelS: p.predictedS, bytes: p.hbmBytes, ctas: p.ctas, ctasPerSm: p.ctasPerSm,
      resources: { registers, sharedBytes: kernel.sharedBytes, threads: kernel.threads },
      prefetch: { prefetch: sm90aPrefetch(shape, reduction, kernel, ms.length > 0 ? ms : [kernel.tileT]), mainBytes: p.hbmS * p.hbm.bytesPerS, hbmS: p.hbmS, restS: Math.max(p.l2S, p.wgmmaS + p.waveS), tailS: p.reduceS },
    });
  }
  const a = c.manifest.variants.find((x) => x.sm90a?.symbol === l.kernel);
  if (a?.sm90a) {
    const variant = variantsForModel(spec).find((x) => x.name === a.name)!;
    const registers = c.registers.sm90a(l.kernel);
    const p = predictAttentionSm90a(planAttentionSm90a(variant, a.sm90a.consumers as 1 | 2), { batch: 1, prefix }, machine, registers, l.grid[2]);
    return launch({ kernel: l.kernel, term: 'attention', modelS: p.predictedS, bytes: p.hbmBytes, ctasPerSm: p.ctasPerSm, resources: { registers, sharedBytes: a.sm90a.dynamicSharedBytes, threads: a.sm90a.block } });
  }
  const v = c.manifest.variants.find((x) => x.symbols.cuda === l.kernel);
  if (v) {
    const plan = c.attentionPlans.get(v.name)!;
    const ctasPerSm = v.occupancy?.[machine.arch]?.ctasPerSm ?? 1;
    const p = predictAttention(plan, { batch: 1, prefix }, machine, ctasPerSm, l.grid[2]);
    return launch({ kernel: l.kernel, term: 'attention', modelS: p.predictedS, bytes: p.hbmBytes, ctasPerSm, resources: { registers: c.registers.attention(v.name), sharedBytes: plan.sharedBytes, threads: plan.threads } });
  }
  const name = l.kernel.replace(/^tidarc_op_/, '');
  const op = OP_BYTES[name];
  if (!op) throw new TidarcError('runtime', `step cost model: no price for kernel ${l.kernel} of ${spec.name}`, { field: 'kernel', value: l.kernel, allowed: `a GEMM, an attention variant or tidarc_op_${Object.keys(OP_BYTES).join('/')}` });
  const bytes = op.bytes((field) => argField(op.schema, l.args, field));
  const ptxas = OP_PTXAS[name];
  if (!ptxas) throw new TidarcError('runtime', `step cost model: no ptxas record of ${l.kernel} (OP_PTXAS)`);
  return launch({ kernel: l.kernel, term: 'other', modelS: bytes / machine.copyBytesPerS, bytes, resources: { ...ptxas, threads: l.block } });
}

/**
 * Where a step's kernels can start and what the host spends issuing them, as the runner issues a
 * step (gpu-runner.ts decodeStep). Launch by launch: the decoder's own work, the upload call (its
 * copy lands copyLatencyS later), then each launch. With graphs the upload is a node of the
 * captured graph (DeviceStepIo.upload inside the capture): the host fills the pinned inputs and
 * launches the graph, whose copy node runs after the graph's start. The download is synchronous:
 * bench-step counts it among the waits, so it is GPU time (the tail) and not host time.
 */
function stepIssue(copies: { uploads: number; downloads: number; bytes: number }, machine: Machine, o: StepOverheads) {
  const directIssued = o.hostStepS + copies.uploads * o.hostCopyS;
  return {
    /** Launch by launch: the host's time when the upload call returns, and when its copy has landed. */
    directIssued, directUploaded: directIssued + copies.uploads * o.copyLatencyS,
    /** With graphs: when the graph's first kernel can start. */
    graphKernelsFrom: o.hostStepS + o.hostGraphLaunchS + o.graphStartS + copies.uploads * (o.copyLatencyS + o.graphNodeGapS),
    tail: copies.downloads * o.copyLatencyS + copies.bytes / machine.copyBytesPerS,
    graphHostS: o.hostStepS + o.hostGraphLaunchS,
    directHostS: (launches: number): number => directIssued + launches * o.hostLaunchS,
  };
}

/**
 * GPU and host time of the priced kernels run one by one (the host issues each) and as one graph.
 * Both timelines start where bench-step's first CUDA event does, before the decoder's own host
 * work (stepIssue: what comes before the first kernel).
 */
export function stepTimes(kernels: readonly number[], copies: { uploads: number; downloads: number; bytes: number }, machine: Machine, o: StepOverheads = STEP_OVERHEADS): { graphs: ModeTimes; direct: ModeTimes } {
  const kernelS = kernels.reduce((a, b) => a + b, 0);
  const at = stepIssue(copies, machine, o);
  const graphGpu = at.graphKernelsFrom + kernelS + Math.max(0, kernels.length - 1) * o.graphNodeGapS + at.tail;
  // Launch by launch: the GPU runs each kernel once it is issued and the previous one is done.
  let host = at.directIssued, gpu = at.directUploaded - o.streamGapS;
  for (const k of kernels) {
    host += o.hostLaunchS;
    gpu = Math.max(gpu + o.streamGapS, host) + k;
  }
  const directGpu = gpu + at.tail;
  return {
    graphs: { gpuS: graphGpu, hostS: at.graphHostS, overheadS: graphGpu - kernelS },
    direct: { gpuS: directGpu, hostS: at.directHostS(kernels.length), overheadS: directGpu - kernelS },
  };
}

/** What PDL changes of a step: its times, and which kernel pairs overlap. */
export interface PdlStep {
  readonly graphs: ModeTimes;
  readonly direct: ModeTimes;
  /** The kernels' own time with PDL, graphs (floored kernels less their ramp, GEMMs less their prefetched HBM time). */
  readonly kernelS: number;
  /** Weight bytes the GEMMs had in L2 at their wait (graphs). */
  readonly prefetchedBytes: number;
  /** Kernel pairs (i, i + 1): all of i + 1's CTAs scheduled beside i's, some of them, none (no overlap). */
  readonly pairs: { readonly all: number; readonly some: number; readonly none: number };
  /** The pairs that do not fully fit, by kernel names: how often, and the share of the second's CTAs scheduled early (0: no overlap). */
  readonly unfit: readonly { readonly from: string; readonly to: string; readonly count: number; readonly early: number }[];
}

/**
 * The share of `next`'s CTAs scheduled while `prev` runs: on each SM holding prev's CTAs (at most
 * min(CTAs an SM holds, ceil(CTAs / SMs)) of them) as many as fit beside them (occupancy.ts
 * ctasBeside), on the SMs prev leaves empty as many as an SM holds. 0: no overlap. Any share
 * above 0 overlaps the gap and the ramp in full (the grid is launched; its other CTAs start as
 * prev's exit), the L2 prefetch in proportion (only the early CTAs issue theirs in time).
 */
export function pdlEarlyShare(prev: LaunchPrice, next: LaunchPrice, machine: Machine): number {
  const withPrev = Math.min(machine.sms, prev.ctas);
  const resident = Math.min(Math.max(1, prev.ctasPerSm), Math.ceil(prev.ctas / machine.sms));
  const beside = ctasBeside(machine.arch, prev.resources, resident, next.resources);
  const early = withPrev * beside + (machine.sms - withPrev) * next.ctasPerSm;
  return Math.min(1, early / Math.max(1, next.ctas));
}

/** Time from the moment `prev`'s last CTAs start to its end (its last wave): how long a dependent scheduled then runs beside it. */
export function pdlLeadS(prev: LaunchPrice, prevS: number, machine: Machine): number {
  return prevS / Math.max(1, Math.ceil(prev.ctas / (machine.sms * Math.max(1, prev.ctasPerSm))));
}

/**
 * One dependent kernel under PDL, scheduled `leadS` before its predecessor's end with `early` of
 * its CTAs: the gap before it (the node or stream gap `gapS` and its floor's ramp pass during the
 * lead; what does not fit in it stays exposed; at least the wait's release), its time (a floored
 * kernel at smallKernelS - rampS; a GEMM with the weight bytes it prefetched to L2 in the lead after
 * the gap and ramp, at the HBM rate the predecessor leaves idle and its early CTAs' bytes in flight
 * can pull, read at the L2 rate instead of HBM's).
 */
export function pdlKernel(prev: LaunchPrice, prevS: number, next: LaunchPrice, early: number, leadS: number, gapS: number, machine: Machine,
  o: StepOverheads = STEP_OVERHEADS, p: PdlOverheads = PDL_OVERHEADS): { boundaryS: number; kernelS: number; prefetchedBytes: number } {
  if (early <= 0 || leadS <= 0) return { boundaryS: gapS, kernelS: next.gpuS, prefetchedBytes: 0 };
  const rampFloor = Math.max(0, o.smallKernelS - p.rampS);
  const rampS = Math.max(0, next.gpuS - Math.max(next.modelS, rampFloor));
  let prefetchedBytes = 0, modelS = next.modelS;
  if (next.prefetch) {
    const idle = Math.max(0, machine.copyBytesPerS - prev.bytes / prevS);
    const pf = next.prefetch.prefetch;
    const fill = fillRate(machine, { bytesPerCta: pf.bytesPerCta, ctas: Math.max(1, Math.round(early * next.ctas)), ctasPerSm: Math.max(1, next.ctasPerSm) }).bytesPerS;
    const window = Math.max(0, leadS - gapS - rampS);
    prefetchedBytes = Math.min(pf.launchBytes * early, Math.min(idle, fill) * window, next.prefetch.mainBytes);
    modelS = prefetchedGemmS(next.prefetch, prefetchedBytes);
  }
  return { boundaryS: Math.max(p.waitReleaseS, gapS + rampS - leadS), kernelS: Math.max(modelS, rampFloor), prefetchedBytes };
}

/**
 * The step with PDL on: stepTimes' timelines with each kernel after the first (the first follows
 * the upload, a copy) launched as a programmatic dependent of the one before (pdlKernel). Launch
 * by launch a kernel is scheduled early only when the host issued it before its predecessor's end
 * (the lead is cut to what is left of it then); a host-bound step keeps its gaps.
 */
export function pdlStepTimes(prices: readonly LaunchPrice[], copies: { uploads: number; downloads: number; bytes: number }, machine: Machine,
  o: StepOverheads = STEP_OVERHEADS, p: PdlOverheads = PDL_OVERHEADS): PdlStep {
  const at = stepIssue(copies, machine, o);
  const early = prices.map((x, j) => (j === 0 ? 0 : pdlEarlyShare(prices[j - 1]!, x, machine)));
  // Graphs: the kernels back to back, each boundary as pdlKernel prices it.
  let graphKernels = 0, graphGaps = 0, prefetchedBytes = 0, prevS = 0;
  prices.forEach((x, j) => {
    if (j === 0) {
      graphKernels += (prevS = x.gpuS);
      return;
    }
    const prev = prices[j - 1]!;
    const r = pdlKernel(prev, prevS, x, early[j]!, pdlLeadS(prev, prevS, machine), o.graphNodeGapS, machine, o, p);
    graphKernels += r.kernelS;
    graphGaps += r.boundaryS;
    prefetchedBytes += r.prefetchedBytes;
    prevS = r.kernelS;
  });
  const graphGpu = at.graphKernelsFrom + graphKernels + graphGaps + at.tail;
  // Launch by launch: the host issues kernel j at its time; the GPU schedules it early only if that is before i's end.
  let host = at.directIssued, end = at.directUploaded - o.streamGapS, directKernels = 0;
  prevS = 0;
  prices.forEach((x, j) => {
    host += o.hostLaunchS;
    const prev = j > 0 ? prices[j - 1]! : undefined;
    const lead = prev ? Math.min(pdlLeadS(prev, prevS, machine), end - host) : 0;
    if (prev && early[j]! > 0 && lead > 0) {
      const r = pdlKernel(prev, prevS, x, early[j]!, lead, o.streamGapS, machine, o, p);
      end += r.boundaryS + r.kernelS;
      prevS = r.kernelS;
    } else {
      end = Math.max(end + o.streamGapS, host) + x.gpuS;
      prevS = x.gpuS;
    }
    directKernels += prevS;
  });
  const directGpu = end + at.tail;
  const unfit = new Map<string, { from: string; to: string; count: number; early: number }>();
  early.forEach((e, j) => {
    if (j === 0 || e >= 1) return;
    const key = `${prices[j - 1]!.kernel} -> ${prices[j]!.kernel}`;
    const u = unfit.get(key) ?? { from: prices[j - 1]!.kernel, to: prices[j]!.kernel, count: 0, early: e };
    unfit.set(key, { ...u, count: u.count + 1 });
  });
  const pairs = early.slice(1);
  return {
    graphs: { gpuS: graphGpu, hostS: at.graphHostS, overheadS: graphGpu - graphKernels },
    direct: { gpuS: directGpu, hostS: at.directHostS(prices.length), overheadS: directGpu - directKernels },
    kernelS: graphKernels, prefetchedBytes,
    pairs: { all: pairs.filter((e) => e >= 1).length, some: pairs.filter((e) => e > 0 && e < 1).length, none: pairs.filter((e) => e <= 0).length },
    unfit: [...unfit.values()],
  };
}

/** The step's shape for roofline.ts: AR 1 token and 1 lm_head row, tidar_k<K> K(K+1) tokens and 2K - 1 rows. */
function rooflineShape(step: string, prefix: number): { tokens: number; lmHeadRows: number; prefix: number } {
  const key = parseVariantName(step);
  if (key?.kind === 'tidar') return { tokens: key.draft * (key.draft + 1), lmHeadRows: 2 * key.draft - 1, prefix };
  return { tokens: 1, lmHeadRows: 1, prefix };
}

/** Prices one recorded step (recordStep). */
export function priceStep(c: StepModelContext, rec: RecordedStep, prefix: number, o: StepOverheads = STEP_OVERHEADS, p: PdlOverheads = PDL_OVERHEADS): StepPrediction {
  const prices = rec.launches.map((l) => priceLaunch(c, l, prefix, o));
  const sum = (t: LaunchTerm): number => prices.filter((p) => p.term === t).reduce((a, p) => a + p.gpuS, 0);
  const uploadBytes = rec.uploads.reduce((a, b) => a + b, 0), downloadBytes = rec.downloads.reduce((a, b) => a + b, 0);
  const copies = { uploads: rec.uploads.length, downloads: rec.downloads.length, bytes: uploadBytes + downloadBytes };
  const times = stepTimes(prices.map((p) => p.gpuS), copies, c.machine, o);
  const pdl = pdlStepTimes(prices, copies, c.machine, o, p);
  const cost = stepCost(c.spec, rooflineShape(rec.variant, prefix));
  const limit = roofline(cost, { copyBytesPerMs: c.machine.copyBytesPerS / 1e3, matmulFlopsPerMs: c.machine.matmulFlops / 1e3, how: c.machine.name });
  return {
    model: c.spec.name, step: rec.variant, tokens: rec.tokens, prefix, launches: rec.launches.length, prices,
    gemmS: sum('gemm'), attentionS: sum('attention'), otherS: sum('other'), kernelS: prices.reduce((a, p) => a + p.gpuS, 0),
    uploadBytes, downloadBytes, uploads: copies.uploads, downloads: copies.downloads, ...times, pdl, roofline: { ...cost, ...limit },
  };
}

/** Records and prices one decode step (`ar`, `tidar_k<K>`) at committed prefix `prefix`. */
export function predictStep(c: StepModelContext, step: string, prefix: number, o: StepOverheads = STEP_OVERHEADS, p: PdlOverheads = PDL_OVERHEADS): StepPrediction {
  return priceStep(c, recordStep(c.spec, step, prefix, { manifest: c.manifest, sms: c.machine.sms }), prefix, o, p);
}
