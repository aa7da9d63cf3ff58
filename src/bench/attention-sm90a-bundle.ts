/**
 * The device check's sm_90a attention part (scripts/device-check/attention_sm90a.py, issue 18):
 * per case (a variant of a head shape), the generated sm_90a unit and the variant's own (mma.sync)
 * unit, so that the check, on the same tensors in one process, (1) holds both to the float64
 * reference at a small check point (splits 1 and 3), then (2) on an H200 races them and
 * FlexAttention at the Qwen3-8B points (L = 4k and 16k, batch 1 and 8; each kernel at its best of
 * a few split counts). Writes <out>/attention_sm90a/ (sources, headers, and for a dry run the
 * emulator modules beside the .fatbin paths the check loads) and <out>/attention_sm90a.json.
 * On the GPU machine the check compiles the sources with nvcc (sm_90a, and sm_90 for the
 * mma.sync units).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ARCHES } from '../codegen/arch.js';
import { SM90A_ATTENTION_STATIC_FILES, planAttentionSm90a, renderAttentionSm90a } from '../codegen/attention-sm90a.js';
import { renderCudaVariant } from '../codegen/kernel-source.js';
import { planAttention } from '../codegen/plan.js';
import { NVCC_BASE_FLAGS } from '../codegen/targets.js';
import { readTemplateFile } from '../codegen/templates.js';
import { type AttentionShape, type AttentionVariant, prefillChunkVariant, tidarDecodeVariant } from '../codegen/variant.js';
import { buildEmulatedModule, emulatedModulePath } from '../emulate/emulated-driver.js';
import { stepVisibility } from '../ir/mask.js';

export interface AttentionSm90aCheckPlan {
  readonly shape: AttentionShape;
  readonly variants: readonly AttentionVariant[];
  /** The correctness point: small enough for a float64 reference in numpy. */
  readonly check: { readonly prefix: number; readonly batch: number };
  /** Timed on a GPU (none in a dry run). */
  readonly points: readonly { readonly prefix: number; readonly batch: number }[];
  /** Split counts each kernel is timed at; its best is reported. */
  readonly splits: readonly number[];
}

const QWEN3_8B: AttentionShape = { dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 };
const DRY_SHAPE: AttentionShape = { dtype: 'fp16', headDim: 64, qHeads: 4, kvHeads: 1 };

/** Qwen3-8B's compute-bound variants at the points. */
export const FULL_ATTENTION_SM90A: AttentionSm90aCheckPlan = {
  shape: QWEN3_8B,
  variants: [tidarDecodeVariant(16, QWEN3_8B), prefillChunkVariant(QWEN3_8B)],
  check: { prefix: 200, batch: 2 },
  points: [4096, 16384].flatMap((prefix) => [1, 8].map((batch) => ({ prefix, batch }))),
  splits: [1, 2, 4, 8, 16],
};
/** --dry-run on the emulated driver: the prefill chunk at G = 4, head dim 64 (256 rows, 2 row tiles), checked only. */
export const DRY_RUN_ATTENTION_SM90A: AttentionSm90aCheckPlan = { shape: DRY_SHAPE, variants: [prefillChunkVariant(DRY_SHAPE)], check: { prefix: 130, batch: 2 }, points: [], splits: [1, 3] };

export interface AttentionSm90aKernelEntry {
  readonly source: string;
  readonly fatbin: string;
  readonly symbol: string;
  readonly rowTiles: number;
  readonly block: number;
  readonly sharedBytes: number;
}

export interface AttentionSm90aCase {
  readonly name: string;
  readonly steps: number;
  readonly prefixVisible: boolean;
  /** The in-step mask, one '0'/'1' string per query token (grid.json's form). */
  readonly visible: readonly string[];
  readonly sm90a: AttentionSm90aKernelEntry & { readonly tileN: number };
  readonly sm90: AttentionSm90aKernelEntry;
}

export interface AttentionSm90aBundle {
  readonly format: 1;
  readonly model: AttentionShape;
  readonly check: AttentionSm90aCheckPlan['check'];
  readonly points: AttentionSm90aCheckPlan['points'];
  readonly splits: readonly number[];
  /** nvcc's flags (the check adds -o and the source): the sm_90a units, the mma.sync ones. */
  readonly nvccFlags: { readonly sm90a: readonly string[]; readonly sm90: readonly string[] };
  readonly cases: readonly AttentionSm90aCase[];
}

const HEADERS = ['cuda/tidarc_attention.cuh', 'cuda/tidarc_device.cuh', 'cuda/tidarc_gemm_abi.h', 'common/tidarc_abi.h', ...SM90A_ATTENTION_STATIC_FILES.map(([, t]) => t)];

/** nvcc's flags of an sm_90a unit (the check adds -o and the source). */
export const SM90A_UNIT_FLAGS: readonly string[] = [...NVCC_BASE_FLAGS, ARCHES.sm_90a.gencode];

const kernelEntry = (dir: string, source: string, symbol: string, rowTiles: number, block: number, sharedBytes: number): AttentionSm90aKernelEntry =>
  ({ source: `${dir}/${source}`, fatbin: `${dir}/${source.replace(/\.cu$/, '.fatbin')}`, symbol, rowTiles, block, sharedBytes });

/** The headers every unit of `dir` (relative to `outDir`) includes, written beside them. */
export async function writeSm90aUnitHeaders(outDir: string, dir: string): Promise<void> {
  await mkdir(join(outDir, dir), { recursive: true });
  for (const h of HEADERS) await writeFile(join(outDir, dir, h.replace(/^(cuda|common)\//, '')), readTemplateFile(h));
}

/**
 * A variant's sm_90a unit in `dir` (relative to `outDir`, its headers written there first): the
 * source, and with `emulated` the emulator module beside its .fatbin path; returns its entry.
 */
export async function writeSm90aUnit(outDir: string, dir: string, v: AttentionVariant, emulated: boolean): Promise<AttentionSm90aKernelEntry & { readonly tileN: number }> {
  const fast = planAttentionSm90a(v);
  const sm90a = { ...kernelEntry(dir, `${v.name}.sm90a.cu`, fast.symbol, fast.rowTiles, fast.threads, fast.sharedBytes), tileN: fast.tileN };
  await writeFile(join(outDir, sm90a.source), renderAttentionSm90a(fast, 'device-check'));
  if (emulated) await buildEmulatedModule(join(outDir, sm90a.source), emulatedModulePath(join(outDir, sm90a.fatbin)), [{ name: sm90a.symbol, argsType: 'TidarcAttentionSm90aArgs' }], { includeDirs: [join(outDir, dir)] });
  return sm90a;
}

/** Writes the bundle under `outDir`; `emulated`: builds each unit's emulator module too (for --dry-run). */
export async function prepareAttentionSm90aBundle(outDir: string, plan: AttentionSm90aCheckPlan, emulated: boolean): Promise<AttentionSm90aBundle> {
  const dir = join(outDir, 'attention_sm90a');
  await writeSm90aUnitHeaders(outDir, 'attention_sm90a');
  const cases: AttentionSm90aCase[] = [];
  for (const v of plan.variants) {
    const fast = planAttentionSm90a(v);
    const own = planAttention(v, ARCHES.sm_90.tile, [ARCHES.sm_90]);  // as an sm_90 compile plans it (its row tile is chosen for the device)
    const sm90a = await writeSm90aUnit(outDir, 'attention_sm90a', v, emulated);
    const sm90 = kernelEntry('attention_sm90a', `${v.name}.cu`, v.symbol, own.rowTiles, own.threads, own.sharedBytes);
    await writeFile(join(outDir, sm90.source), renderCudaVariant(own, 'device-check'));
    if (emulated) await buildEmulatedModule(join(outDir, sm90.source), emulatedModulePath(join(outDir, sm90.fatbin)), [{ name: sm90.symbol, argsType: 'TidarcAttentionArgs' }], { includeDirs: [dir] });
    const vis = stepVisibility(v.mask);
    const n = fast.steps;
    const visible = Array.from({ length: n }, (_, q) => Array.from({ length: n }, (_, k) => String(vis[q * n + k])).join(''));
    cases.push({ name: v.name, steps: n, prefixVisible: v.mask.prefix === 'all', visible, sm90a, sm90 });
  }
  const bundle: AttentionSm90aBundle = {
    format: 1, model: plan.shape, check: plan.check, points: plan.points, splits: plan.splits,
    nvccFlags: { sm90a: SM90A_UNIT_FLAGS, sm90: [...NVCC_BASE_FLAGS, ARCHES.sm_90.gencode] }, cases,
  };
  await writeFile(join(outDir, 'attention_sm90a.json'), `${JSON.stringify(bundle, null, 2)}\n`);
  return bundle;
}
