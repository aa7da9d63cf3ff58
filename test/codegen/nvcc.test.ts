/**
 * Every CUDA variant of the bundled examples, and a grid of extra shapes and masks,
 * compiles with nvcc for sm_80 and sm_90 with no spills and no stack frame. Tagged: nvcc
 * (skipped where nvcc is absent; CI has it).
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
import { ARCHES } from '../../src/codegen/arch.js';
import { nvccFlags } from '../../src/codegen/generate.js';
import { renderCudaVariant } from '../../src/codegen/kernel-source.js';
import { planAttention } from '../../src/codegen/plan.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { packageRoot } from '../../src/util/paths.js';
import { type AttentionVariant, variantForMask, variantsForModel } from '../../src/codegen/variant.js';
import { blockDiffusion, tree } from '../../src/ir/mask-builders.js';
import { parseModelJson } from '../../src/ir/model-validate.js';

const exec = promisify(execFile);
const nvcc = await findNvcc();
const ARCH_PAIR = [ARCHES.sm_80, ARCHES.sm_90];

const examples = ['tiny', 'qwen3-8b', 'qwen2.5-1.5b'].flatMap((name) =>
  variantsForModel(parseModelJson(readFileSync(join(packageRoot(), 'examples', `${name}.json`), 'utf8'))).map((v) => [`${name}/${v.name}`, v] as const),
);
const extras: (readonly [string, AttentionVariant])[] = [
  ['fp16 d128 G6 tree', variantForMask('tree7', tree([-1, 0, 0, 1, 1, 2, -1]), { dtype: 'fp16', headDim: 128, qHeads: 6, kvHeads: 1 }, 'speculative tree')],
  ['bf16 d64 G8 block-diffusion', variantForMask('bd16', blockDiffusion(16), { dtype: 'bf16', headDim: 64, qHeads: 8, kvHeads: 1 }, 'block diffusion')],
  ...variantsForModel({ ...parseModelJson(readFileSync(join(packageRoot(), 'examples', 'tiny.json'), 'utf8')), name: 'g6', queryHeads: 6, kvHeads: 1, headDim: 128, dtype: 'fp16', draftLengths: [1, 16] })
    .map((v) => [`fp16 d128 G6 ${v.name}`, v] as const),
];
const all = [...examples, ...extras];
const reports = new Map<string, PtxasByArch>();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-nvcc-'));

beforeAll(async () => {
  if (!nvcc.found) return;
  for (const h of ['cuda/tidarc_attention.cuh', 'cuda/tidarc_device.cuh']) writeFileSync(join(dir, h.split('/')[1]!), readTemplateFile(h));
  writeFileSync(join(dir, 'tidarc_abi.h'), readTemplateFile('common/tidarc_abi.h'));
  await runPool(all, availableParallelism(), async ([label, variant], i) => {
    const source = join(dir, `v${i}.cu`);
    writeFileSync(source, renderCudaVariant(planAttention(variant, ARCHES.sm_80.tile), 'nvcc-test'));
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
});
