/**
 * Every CUDA variant of the bundled examples, and a grid of extra shapes and masks,
 * compiles with nvcc for sm_80 and sm_90 with no spills and no stack frame, planned for that
 * pair (its default row tiles: plan.ts plannedRowTile, and cp.async stages); extras pin 3 stages, 32-row warps and 4 16-row warps. The stage rule
 * (plan.ts defaultStages) takes the same stages with ptxas's registers as with its estimate.
 * Tagged: nvcc (skipped where nvcc is absent; CI has it).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parsePtxasReport, type PtxasByArch } from '../../src/build/ptxas.js';
import { runPool } from '../../src/build/pool.js';
import { findNvcc } from '../../src/build/toolchain.js';
import { ARCHES, type TileConfig } from '../../src/codegen/arch.js';
import { nvccFlags } from '../../src/codegen/generate.js';
import { occupancy } from '../../src/codegen/occupancy.js';
import { renderCudaVariant } from '../../src/codegen/kernel-source.js';
import { defaultStages, planAttention, plannedRegisters } from '../../src/codegen/plan.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { packageRoot } from '../../src/util/paths.js';
import { type AttentionVariant, arVariant, prefillChunkVariant, tidarDecodeVariant, variantForMask, variantsForModel } from '../../src/codegen/variant.js';
import { blockDiffusion, tree } from '../../src/ir/mask-builders.js';
import { parseModelJson } from '../../src/ir/model-validate.js';

const exec = promisify(execFile);
const nvcc = await findNvcc();
const ARCH_PAIR = [ARCHES.sm_80, ARCHES.sm_90];

const examples = ['tiny', 'qwen3-8b', 'qwen2.5-1.5b'].flatMap((name) =>
  variantsForModel(parseModelJson(readFileSync(join(packageRoot(), 'examples', `${name}.json`), 'utf8'))).map((v) => [`${name}/${v.name}`, v] as const),
);
const extras: (readonly [string, AttentionVariant, TileConfig?])[] = [
  ['fp16 d128 G6 tree', variantForMask('tree7', tree([-1, 0, 0, 1, 1, 2, -1]), { dtype: 'fp16', headDim: 128, qHeads: 6, kvHeads: 1 }, 'speculative tree')],
  ['bf16 d64 G8 block-diffusion', variantForMask('bd16', blockDiffusion(16), { dtype: 'bf16', headDim: 64, qHeads: 8, kvHeads: 1 }, 'block diffusion')],
  ...variantsForModel({ ...parseModelJson(readFileSync(join(packageRoot(), 'examples', 'tiny.json'), 'utf8')), name: 'g6', queryHeads: 6, kvHeads: 1, headDim: 128, dtype: 'fp16', draftLengths: [1, 16] })
    .map((v) => [`fp16 d128 G6 ${v.name}`, v] as const),
  // 32-row warps (head dim 64, above 128 rows) and 3 stages where the rule would not take them.
  ['bf16 d64 G4 tidar_k16 32-row 3 stages', tidarDecodeVariant(16, { dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 1 }), { tileN: 64, stages: 3 }],
  ['fp16 d64 G8 prefill 32-row 4 warps 3 stages', prefillChunkVariant({ dtype: 'fp16', headDim: 64, qHeads: 8, kvHeads: 1 }), { tileN: 64, warps: 4, stages: 3 }],
  ['bf16 d128 G4 tidar_k16 3 stages', tidarDecodeVariant(16, { dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 }), { tileN: 64, stages: 3 }],
  // 16-row warps at head dim 64 that ptxas's own 128-register target spilled (kernel-source.ts MIN_BLOCKS_PER_SM).
  ['bf16 d64 G8 tidar_k4 16-row 4 warps', tidarDecodeVariant(4, { dtype: 'bf16', headDim: 64, qHeads: 8, kvHeads: 1 }), { tileN: 64, warps: 4, warpRows: 16 }],
  ['bf16 d128 G4 ar 3 stages', arVariant({ dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 }), { tileN: 64, stages: 3 }],
  // Qwen3-8B k = 4 on 2 tiles of 3 warps at 3 stages (the planner's sm_90 choice until the merge dropped its partials from L2; now one CTA of 5 warps).
  ['bf16 d128 G4 tidar_k4 3 warps 3 stages', tidarDecodeVariant(4, { dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 }), { tileN: 64, warps: 3, stages: 3 }],
];
const all = [...examples, ...extras];
const reports = new Map<string, PtxasByArch>();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-nvcc-'));

beforeAll(async () => {
  if (!nvcc.found) return;
  for (const h of ['cuda/tidarc_attention.cuh', 'cuda/tidarc_device.cuh']) writeFileSync(join(dir, h.split('/')[1]!), readTemplateFile(h));
  writeFileSync(join(dir, 'tidarc_abi.h'), readTemplateFile('common/tidarc_abi.h'));
  await runPool(all, availableParallelism(), async ([label, variant, tile], i) => {
    const source = join(dir, `v${i}.cu`);
    writeFileSync(source, renderCudaVariant(planAttention(variant, tile ?? ARCHES.sm_80.tile, ARCH_PAIR), 'nvcc-test'));
    const { stderr } = await exec(nvcc.tool.path, [...nvccFlags(ARCH_PAIR), '-o', join(dir, `v${i}.fatbin`), source], { maxBuffer: 64 << 20 });
    reports.set(label, parsePtxasReport(stderr));
  });
}, 900_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!nvcc.found)('nvcc sm_80 + sm_90', () => {
  test.for(all.map(([label, v]) => [label, v] as const))('%s compiles without spills', ([label, v]) => {
    const report = reports.get(label)!;
    for (const arch of ['sm_80', 'sm_90']) {
      for (const kernel of [v.symbol]) {
        const r = report[arch]?.[kernel];
        expect(r, `${arch} ${kernel}`).toBeDefined();
        expect(r!.spillStoreBytes + r!.spillLoadBytes, `${arch} ${kernel} spills`).toBe(0);
        expect(r!.stackBytes, `${arch} ${kernel} stack`).toBe(0);
        expect(r!.registers).toBeLessThanOrEqual(255);
      }
    }
  });
  test.for(all.filter(([, , tile]) => tile === undefined).map(([label, v]) => [label, v] as const))('%s: ptxas\'s registers give the stages the estimate gave', ([label, v]) => {
    const plan = planAttention(v, ARCHES.sm_80.tile, ARCH_PAIR);
    const real = defaultStages(plan.rowTile, plan.tile.tileN, v.shape.headDim, ARCH_PAIR, (a) => reports.get(label)![a.name]![v.symbol]!.registers);
    expect(real, `${label}: ${plan.rowTile.warps} warps of ${plan.rowTile.warpRows} rows, planned at ${plannedRegisters(plan, 'sm_90')} registers (sm_90)`).toBe(plan.tile.stages);
    // The registers the planner priced (32-row warps: attention-registers.ts) give ptxas's CTAs an SM.
    for (const arch of ARCH_PAIR) {
      const ctas = (registers: number) => occupancy(arch.name, { registers, threads: plan.threads, sharedBytes: plan.sharedBytes }).ctasPerSm;
      if (plan.rowTile.warpRows === 32) expect(ctas(plannedRegisters(plan, arch.name)), `${label} ${arch.name}`).toBe(ctas(reports.get(label)![arch.name]![v.symbol]!.registers));
    }
  });
});
