/**
 * The device check's attention benchmark points (issue 15 item 5), decided here in TypeScript so
 * that the check times tidarc the way the runtime would run it: per (variant, L, batch) the
 * split-KV count of the runtime's rule (call-params.ts splitsFor: the count of least estimated
 * time over the SMs and the CTAs an SM holds, the occupancy from ptxas at sm_90 as a build
 * records it in the manifest) and the workspace it needs,
 * with the cost model's prediction (src/codegen/attention-cost-model.ts) that the check prints beside the
 * measurement. scripts/device-check reads them from grid.json; it re-implements neither rule.
 */
import { join } from 'node:path';
import { predictAttention } from '../codegen/attention-cost-model.js';
import { H200, type Machine } from '../codegen/machine.js';
import { byMachine } from './predicted-machines.js';
import { ptxasOfSource } from '../build/ptxas.js';
import { findNvcc } from '../build/toolchain.js';
import { ARCHES } from '../codegen/arch.js';
import { splitsFor } from '../codegen/call-params.js';
import { splitKernel } from '../codegen/splits.js';
import type { Manifest, VariantOccupancy } from '../codegen/manifest.js';
import { variantOccupancy } from '../codegen/occupancy.js';
import { planAttention } from '../codegen/plan.js';
import { variantsForModel } from '../codegen/variant.js';
import { AR_VARIANT, tidarVariantName } from '../codegen/variant-name.js';
import { TidarcError } from '../errors.js';

export interface BenchGrid {
  readonly variants: readonly string[];
  readonly prefixes: readonly number[];
  readonly batches: readonly number[];
}

/** What the GPU check times: Qwen3-8B's AR and TiDAR k = 4, 8, 16 steps at L = 1k..64k, batch 1 and 8. */
export const FULL_BENCH: BenchGrid = { variants: [AR_VARIANT, tidarVariantName(4), tidarVariantName(8), tidarVariantName(16)], prefixes: [1024, 4096, 16384, 65536], batches: [1, 8] };
/** The dry run's: one prefix that splits (5 tiles of 64) and one that does not, on the emulator. */
export const DRY_RUN_BENCH: BenchGrid = { variants: [AR_VARIANT, tidarVariantName(2)], prefixes: [64, 300], batches: [1, 2] };

export interface BenchPoint {
  readonly variant: string;
  readonly prefix: number;
  readonly batch: number;
  /** The runtime's split-KV count for this launch. */
  readonly splits: number;
  readonly ctas: number;
  /** float32 elements of the split workspace (0 with one split). */
  readonly workspaceFloats: number;
  /** The cost model's prediction on the H200 (the planner's machine)... */
  readonly predictedUs: number;
  readonly predictedBound: string;
  readonly rooflineUs: number;
  /** ...and on each machine of predicted-machines.ts, by key: the check takes its GPU's (scripts/device-check/machines.py). */
  readonly byMachine: Readonly<Record<string, { readonly predictedUs: number; readonly predictedBound: string; readonly rooflineUs: number }>>;
}

export interface BenchSection {
  readonly model: string;
  readonly arch: 'sm_90';
  /** SMs the rule fills (an H200's); the check says so when its GPU has another count. */
  readonly sms: number;
  /** Per variant: the main kernel's occupancy at sm_90 and where its registers came from. */
  readonly occupancy: Readonly<Record<string, VariantOccupancy & { readonly source: string }>>;
  readonly points: readonly BenchPoint[];
}

/**
 * The points of `grid` for a compiled bundle model (its manifest and directory, sources written):
 * ptxas sm_90 on each variant's source when nvcc is here, else 1 CTA an SM (what the runtime
 * assumes for a manifest without occupancy).
 */
export async function benchPoints(m: Manifest, modelDir: string, grid: BenchGrid, sms: number): Promise<BenchSection> {
  const nvcc = await findNvcc();
  // As the bundle's sm_90 compile plans them (its row tiles and stages: plan.ts plannedRowTile, defaultStages).
  const plans = variantsForModel(m.model, m.model.draftLengths).map((v) => planAttention(v, ARCHES.sm_90.tile, [ARCHES.sm_90]));
  const occupancy: Record<string, VariantOccupancy & { source: string }> = {};
  const points: BenchPoint[] = [];
  for (const name of grid.variants) {
    const v = m.variants.find((x) => x.name === name);
    const plan = plans.find((p) => p.variant.name === name);
    if (!v || !plan) throw new TidarcError('invalid-argument', 'no such variant to benchmark', { field: 'variants', value: name, allowed: m.variants.map((x) => x.name).join(', ') });
    const report = nvcc.found ? (await ptxasOfSource(nvcc.tool.path, join(modelDir, v.sources.cuda), 'sm_90'))[v.symbols.cuda] : undefined;
    const occ = report
      ? { ...variantOccupancy('sm_90', report, v.launch), source: `ptxas sm_90 (${nvcc.found ? nvcc.tool.version : ''})` }
      : { registers: 0, sharedBytes: v.launch.dynamicSharedBytes, ctasPerSm: 1, limit: 'unknown', source: `assumed 1 CTA/SM (${nvcc.found ? `ptxas did not report ${v.symbols.cuda}` : nvcc.reason})` };
    occupancy[name] = occ;
    for (const prefix of grid.prefixes) {
      for (const batch of grid.batches) {
        // The launcher's call (attention-launch.ts): nothing tuned, the rule over the SMs.
        const kernel = splitKernel({ ...v.plan, rows: v.rows, headDim: v.shape.headDim });
        const splits = splitsFor({ tuned: undefined, workItems: batch * m.model.kvHeads * v.launch.rowTiles, sms, prefixTiles: Math.ceil(prefix / v.plan.tileN), ctasPerSm: occ.ctasPerSm, kernel });
        // The same launch (splits) priced on each machine over the rule's SMs.
        const predict = (machine: Machine) => {
          const q = predictAttention(plan, { batch, prefix }, { ...machine, sms }, occ.ctasPerSm, splits);
          return { splits: q.splits, ctas: q.ctas, predictedUs: q.predictedS * 1e6, predictedBound: q.bound, rooflineUs: q.rooflineS * 1e6 };
        };
        const p = predict(H200);
        const rows = batch * v.steps * m.model.queryHeads;
        points.push({
          variant: name, prefix, batch, splits: p.splits, ctas: p.ctas, workspaceFloats: p.splits > 1 ? p.splits * rows * (m.model.headDim + 1) : 0,
          predictedUs: p.predictedUs, predictedBound: p.predictedBound, rooflineUs: p.rooflineUs,
          byMachine: byMachine((machine) => {
            const q = predict(machine);
            return { predictedUs: q.predictedUs, predictedBound: q.predictedBound, rooflineUs: q.rooflineUs };
          }),
        });
      }
    }
  }
  return { model: m.model.name, arch: 'sm_90', sms, occupancy, points };
}
