/**
 * Kernels for the other mask kinds of the IR, on the emulator against the reference: the
 * training layout (its queries never see the cache, so a non-empty cache must be ignored),
 * a speculative tree (its predicate is a constant-memory bitset table), a TiDAR prefill
 * block, and block diffusion.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { findCxx } from '../../src/build/toolchain.js';
import { ARCHES } from '../../src/codegen/arch.js';
import { describeVariant } from '../../src/codegen/generate.js';
import { renderCudaVariant } from '../../src/codegen/kernel-source.js';
import { planAttention } from '../../src/codegen/plan.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { variantForMask } from '../../src/codegen/variant.js';
import { buildVariantEmulator } from '../../src/emulate/emulator-build.js';
import { type EmulationReport, emulateVariant } from '../../src/emulate/emulate-variant.js';
import { blockDiffusion, tidarPrefill, tidarTrain, tree } from '../../src/ir/mask-builders.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';

const cxx = await findCxx();
const VARIANTS = [
  variantForMask('train_s24_b4', tidarTrain(24, 4), { dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 2 }, 'training layout'),
  variantForMask('tree9', tree([-1, 0, 0, 1, 1, 2, 3, -1, 7]), { dtype: 'fp16', headDim: 128, qHeads: 6, kvHeads: 1 }, 'speculative tree'),
  variantForMask('prefill_s11_k3', tidarPrefill(11, 3), { dtype: 'bf16', headDim: 128, qHeads: 8, kvHeads: 2 }, 'TiDAR prefill'),
  variantForMask('bd8', blockDiffusion(8), { dtype: 'fp16', headDim: 64, qHeads: 8, kvHeads: 1 }, 'block diffusion'),
];
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-masks-'));
const reports = new Map<string, EmulationReport[]>();

beforeAll(async () => {
  if (!cxx.found) return;
  const cuda = join(root, 'cuda');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(cuda);
  for (const h of ['cuda/tidarc_attention.cuh', 'cuda/tidarc_device.cuh']) writeFileSync(join(cuda, h.split('/')[1]!), readTemplateFile(h));
  writeFileSync(join(cuda, 'tidarc_abi.h'), readTemplateFile('common/tidarc_abi.h'));
  const objects = await sharedEmulatorRuntime();
  await runPool(VARIANTS, 2, async (variant) => {
    const plan = planAttention(variant, ARCHES.sm_80.tile);
    const source = join(cuda, `${variant.name}.cu`);
    writeFileSync(source, renderCudaVariant(plan, 'masks-test'));
    const manifestVariant = describeVariant(plan, [ARCHES.sm_80]);
    const exe = join(root, `emu_${variant.name}`);
    await buildVariantEmulator(cxx.tool.path, source, cuda, manifestVariant, objects, exe);
    const runs: EmulationReport[] = [];
    for (const splits of [1, 2]) runs.push(await emulateVariant(exe, manifestVariant, { batch: 2, prefixLen: [37, 0], splits, seed: 9 }, root));
    reports.set(variant.name, runs);
  });
}, 600_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('other mask kinds on the emulator', () => {
  test.for(VARIANTS.map((v) => [v.name] as const))('%s', ([name]) => {
    for (const r of reports.get(name)!) {
      expect(r.findings).toEqual([]);
      expect(r.completed).toBe(true);
      expect(r.maxError).toBeLessThanOrEqual(r.tolerance);
      expect(r.lseMaxError).toBeLessThan(2e-3);
    }
  });
});
