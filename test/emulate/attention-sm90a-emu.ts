/**
 * Builds and runs generated sm_90a attention kernels on the SIMT emulator for
 * attention-sm90a*.test.ts (harness: fixtures/attention_sm90a_main.cpp, emu_main.cpp's protocol
 * plus the KV cache's tensor maps), so src/emulate's runEmulator and emulateVariant check them
 * against the float64 reference exactly as they check the sm_80 kernels.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type AttentionSm90aPlan, SM90A_ATTENTION_STATIC_FILES, describeAttentionSm90a, renderAttentionSm90a } from '../../src/codegen/attention-sm90a.js';
import type { ManifestVariant } from '../../src/codegen/manifest.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { EMU_FLAGS, EMU_KERNEL_FLAGS, compileWith, emulatorIncludeFlags } from '../../src/emulate/emulator-build.js';
import { packageRoot } from '../../src/util/paths.js';

const HARNESS = join(packageRoot(), 'test', 'emulate', 'fixtures', 'attention_sm90a_main.cpp');
/** The sm_80 attention headers the sm_90a unit builds on (describe_tile, store_pair, the split merge). */
const BASE_HEADERS = ['cuda/tidarc_attention.cuh', 'cuda/tidarc_device.cuh', 'cuda/tidarc_gemm_abi.h'] as const;

export interface Sm90aAttentionUnit {
  readonly plan: AttentionSm90aPlan;
  readonly source: string;
  readonly cudaDir: string;
}

/** Renders the plan's unit under dir/cuda with every header it includes. */
export function writeSm90aAttentionUnit(dir: string, plan: AttentionSm90aPlan): Sm90aAttentionUnit {
  const cudaDir = join(dir, 'cuda');
  mkdirSync(cudaDir, { recursive: true });
  for (const h of BASE_HEADERS) writeFileSync(join(dir, h), readTemplateFile(h));
  for (const [out, template] of SM90A_ATTENTION_STATIC_FILES) writeFileSync(join(dir, out), readTemplateFile(template));
  const source = join(dir, plan.source);
  writeFileSync(source, renderAttentionSm90a(plan, 'test'));
  return { plan, source, cudaDir };
}

/** One executable per unit (`source` may be a mutated copy of the unit's), its kernel built with
 *  EMU_KERNEL_FLAGS: plain shared-memory loads and stores race-checked as in the sm_80 units. */
export async function buildSm90aAttentionHarness(cxx: string, unit: Sm90aAttentionUnit, runtimeObjects: readonly string[], exe: string, source = unit.source): Promise<void> {
  await compileWith(cxx, [
    ...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...emulatorIncludeFlags(), `-I${unit.cudaDir}`, '-include', 'tidarc_emu.h',
    `-DTIDARC_SM90A_UNIT="${source}"`, `-DTIDARC_SM90A_KERNEL=${unit.plan.symbol}`, `-DTIDARC_SM90A_TILE_N=${unit.plan.tileN}`,
    '-x', 'c++', HARNESS, '-x', 'none', ...runtimeObjects, '-o', exe,
  ], `${unit.plan.variant.name} (sm_90a)`);
}

/** The manifest variant a harness run reads (mask, shape, launch), with the sm_90a kernel's launch and symbol. */
export function sm90aRunVariant(plan: AttentionSm90aPlan): ManifestVariant {
  const v = plan.variant;
  const k = describeAttentionSm90a(plan);
  return {
    name: `${v.name}_sm90a`, description: v.description, mask: { kind: v.mask.kind, params: v.mask.params }, steps: plan.steps, rows: plan.rows, shape: v.shape,
    symbols: { cuda: k.symbol, cpu: '' }, sources: { cuda: k.source, cpu: '' },
    plan: { tileM: k.tileM, tileN: k.tileN, warps: 4 * k.consumers + 1, stages: k.stages, rowTiles: k.rowTiles, stepKeyTiles: plan.stepKeyTiles, stepTiles: plan.stepTileCounts },
    launch: { grid: ['rowTiles', 'batch * kvHeads', 'splits'], rowTiles: k.rowTiles, block: k.block, dynamicSharedBytes: k.dynamicSharedBytes },
    arches: ['sm_90a'],
  };
}
