/**
 * The bundle the GPU device check runs from (scripts/device-check/device_check.py): the
 * generated CUDA sources of a grid of attention shapes, and grid.json describing every variant
 * the check launches: its kernels, launch geometry, and its mask as the in-step visibility
 * rows (from the IR, so the check's references and its FlexAttention / SDPA baselines use the
 * very mask the kernels were generated from). The check builds the fatbins there with nvcc;
 * `emulated: true` also builds each variant's .emu.so here, for the dry run on the emulated
 * CUDA driver.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { compileModel } from '../build/compile-model.js';
import type { Manifest } from '../codegen/manifest.js';
import { TIDARC_VERSION } from '../version.js';
import type { ModelSpec } from '../ir/model.js';
import { maskFromParams } from '../ir/mask-builders.js';
import { stepVisibility } from '../ir/mask.js';
import { emulateCompiledDir } from '../emulate/emulated-driver.js';

export interface BundleShape {
  readonly dtype: 'bf16' | 'fp16';
  readonly headDim: 64 | 128;
  readonly qHeads: number;
  readonly kvHeads: number;
  readonly drafts: readonly number[];
}

/** What issue 5 asks for: bf16 and fp16, head dim 64/128, GQA 1/4/6/8, k in {1, 2, 4, 8, 16}. */
export const FULL_GRID: readonly BundleShape[] = (['bf16', 'fp16'] as const).flatMap((dtype) => [
  { dtype, headDim: 64, qHeads: 8, kvHeads: 8, drafts: [1, 2, 4, 8, 16] },
  { dtype, headDim: 128, qHeads: 32, kvHeads: 8, drafts: [1, 2, 4, 8, 16] },  // Qwen3-8B
  { dtype, headDim: 128, qHeads: 12, kvHeads: 2, drafts: [1, 2, 4, 8, 16] },  // Qwen2.5-1.5B
  { dtype, headDim: 64, qHeads: 16, kvHeads: 2, drafts: [1, 2, 4, 8, 16] },
] as const);

/** Small enough for the emulator in CI: the dry run's grid. */
export const DRY_RUN_GRID: readonly BundleShape[] = [
  { dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 1, drafts: [2] },
  { dtype: 'fp16', headDim: 64, qHeads: 2, kvHeads: 2, drafts: [1] },
];

/** The benchmark's model: Qwen3-8B attention (32 query heads, 8 KV heads, head dim 128, bf16). */
export const BENCH_SHAPE = FULL_GRID[1]!;

export interface BundleVariant {
  readonly name: string;
  readonly draft?: number;
  readonly steps: number;
  readonly rowTiles: number;
  readonly block: number;
  readonly sharedBytes: number;
  readonly symbol: string;
  readonly combine: string;
  /** Relative to the bundle. */
  readonly cu: string;
  readonly fatbin: string;
  readonly prefixVisible: boolean;
  /** In-step visibility, one string of '0'/'1' per query row (key columns in order). */
  readonly visible: readonly string[];
  /** Position offsets of the in-step tokens (position = prefix length + offset). */
  readonly offsets: readonly number[];
}

export interface BundleModel {
  readonly name: string;
  readonly dir: string;
  readonly dtype: 'bf16' | 'fp16';
  readonly headDim: number;
  readonly qHeads: number;
  readonly kvHeads: number;
  readonly nvccFlags: readonly string[];
  readonly variants: readonly BundleVariant[];
}

export interface BundleGrid {
  readonly format: 1;
  readonly generator: string;
  readonly arch: string;
  readonly models: readonly BundleModel[];
  /** The model the benchmark grid uses. */
  readonly bench: string;
}

export function shapeName(s: BundleShape): string {
  return `${s.dtype}-d${s.headDim}-q${s.qHeads}-kv${s.kvHeads}`;
}

function specOf(s: BundleShape): ModelSpec {
  return {
    name: shapeName(s), family: 'qwen3', layers: 1, hiddenSize: s.qHeads * s.headDim, queryHeads: s.qHeads, kvHeads: s.kvHeads,
    headDim: s.headDim, intermediateSize: 128, vocabSize: 260, ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true,
    tieEmbeddings: true, dtype: s.dtype, maskTokenId: 259, draftLengths: [...s.drafts],
  };
}

function describe(m: Manifest, dir: string): BundleModel {
  const variants = m.variants.map((v): BundleVariant => {
    const mask = maskFromParams(v.mask.kind, v.mask.params);
    const n = mask.tokens.length;
    const vis = stepVisibility(mask);
    return {
      name: v.name, ...(v.draft === undefined ? {} : { draft: v.draft }), steps: v.steps,
      rowTiles: v.launch.rowTiles, block: v.launch.block, sharedBytes: v.launch.dynamicSharedBytes,
      symbol: v.symbols.cuda, combine: v.symbols.cudaCombine,
      cu: `${dir}/${v.sources.cuda}`, fatbin: `${dir}/${v.sources.cuda.replace(/\.cu$/, '.fatbin')}`,
      prefixVisible: mask.prefix === 'all',
      visible: Array.from({ length: n }, (_, q) => Array.from(vis.subarray(q * n, (q + 1) * n)).join('')),
      offsets: mask.tokens.map((t) => t.offset),
    };
  });
  const s = m.model;
  return { name: s.name, dir, dtype: s.dtype, headDim: s.headDim, qHeads: s.queryHeads, kvHeads: s.kvHeads, nvccFlags: m.nvccFlags, variants };
}

export interface PrepareOptions {
  readonly outDir: string;
  readonly grid: readonly BundleShape[];
  /** Also build .emu.so modules (dry run on the emulated driver). */
  readonly emulated?: boolean;
  readonly log?: (line: string) => void;
}

export async function prepareDeviceBundle(o: PrepareOptions): Promise<BundleGrid> {
  const log = o.log ?? (() => undefined);
  await mkdir(o.outDir, { recursive: true });
  const models: BundleModel[] = [];
  for (const [i, shape] of o.grid.entries()) {
    const dir = `models/${shapeName(shape)}`;
    const out = join(o.outDir, dir);
    const r = await compileModel({ spec: specOf(shape), arches: ['sm_90'], outDir: out, build: 'none', log: () => undefined });
    if (o.emulated) await emulateCompiledDir(out);
    models.push(describe(r.manifest, dir));
    log(`[${i + 1}/${o.grid.length}] ${shapeName(shape)}: ${r.manifest.variants.length} variants${o.emulated ? ' (+ .emu.so)' : ''}`);
  }
  const grid: BundleGrid = {
    format: 1, generator: `tidarc ${TIDARC_VERSION}`, arch: 'sm_90', models,
    bench: models.find((m) => m.name === shapeName(BENCH_SHAPE))?.name ?? models[0]!.name,
  };
  await writeFile(join(o.outDir, 'grid.json'), `${JSON.stringify(grid, null, 1)}\n`);
  return grid;
}
