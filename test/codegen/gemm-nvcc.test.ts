/**
 * The GEMMs of examples/qwen3-8b.json (qkv, o, gate_up, down, lm_head at its step row counts
 * 1, 20, 64, 72, 272), planned for sm_80 + sm_90, compile with nvcc for both with no spills
 * and no stack frame (the lm_head's row statistics merge too); the kernels that plan two CTAs an SM fit 128 registers. Prints the
 * ptxas registers. Tagged: nvcc (skipped where nvcc is absent).
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
import { planModelGemms } from '../../src/codegen/gemm-model.js';
import { gemmReduceSymbol, gemmRowStatsSymbol, gemmSymbol } from '../../src/codegen/gemm-plan.js';
import { renderGemmUnit } from '../../src/codegen/gemm-source.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { packageRoot } from '../../src/util/paths.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { GEMM_HEADERS } from '../helpers/gemm.js';

const exec = promisify(execFile);
const nvcc = await findNvcc();
const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
const { units } = planModelGemms(spec, spec.draftLengths, ['sm_80', 'sm_90']);
const reports = new Map<string, PtxasByArch>();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-gemm-nvcc-'));

beforeAll(async () => {
  if (!nvcc.found) return;
  for (const h of GEMM_HEADERS) writeFileSync(join(dir, h), readTemplateFile(`cuda/${h}`));
  await runPool(units, availableParallelism(), async (unit) => {
    const source = join(dir, `${unit.name}.cu`);
    writeFileSync(source, renderGemmUnit(unit.shape, unit.plans, unit.roles, spec.name));
    const { stderr } = await exec(nvcc.tool.path, [...nvccFlags([ARCHES.sm_80, ARCHES.sm_90]), '-o', join(dir, `${unit.name}.fatbin`), source], { maxBuffer: 64 << 20 });
    reports.set(unit.name, parsePtxasReport(stderr));
  });
  const lines = units.flatMap((u) => u.plans.map((p) => `${u.roles.join('+').padEnd(8)} ${`${u.shape.n}x${u.shape.k}`.padEnd(12)} M=${String(p.m).padEnd(4)} ` +
    ['sm_80', 'sm_90'].map((a) => `${a} ${reports.get(u.name)![a]![gemmSymbol(u.shape, p.m)]!.registers} regs`).join(', ')));
  console.log(`ptxas, GEMMs of ${spec.name}:\n${lines.join('\n')}`);
}, 600_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!nvcc.found)('GEMMs of qwen3-8b with nvcc sm_80 + sm_90', () => {
  test('the step row counts are those of the issue', () => {
    expect(units[0]!.plans.map((p) => p.m)).toEqual([1, 20, 64, 72, 272]);
    expect(units.flatMap((u) => u.roles).sort()).toEqual(['down', 'gate_up', 'lm_head', 'o', 'qkv']);
  });
  test.for(units.map((u) => [`${u.roles.join('+')} ${u.shape.n}x${u.shape.k}`, u] as const))('%s: no spills, no stack frame', ([, unit]) => {
    const report = reports.get(unit.name)!;
    const kernels = [...unit.plans.map((p) => [gemmSymbol(unit.shape, p.m), p] as const), ...(unit.reduction.splitK > 1 ? [[gemmReduceSymbol(unit.shape), undefined] as const] : []),
      ...(unit.roles.includes('lm_head') ? [[gemmRowStatsSymbol(unit.shape), undefined] as const] : [])];
    for (const arch of ['sm_80', 'sm_90']) {
      for (const [kernel, plan] of kernels) {
        const r = report[arch]?.[kernel];
        expect(r, `${arch} ${kernel}`).toBeDefined();
        expect(r!.spillStoreBytes + r!.spillLoadBytes, `${arch} ${kernel} spills`).toBe(0);
        expect(r!.stackBytes, `${arch} ${kernel} stack`).toBe(0);
        // Two CTAs of 256 threads an SM need at most 128 registers each.
        if (plan && 2 * (plan.sharedBytes + 1024) <= 167_936) expect(r!.registers, `${arch} ${kernel} registers`).toBeLessThanOrEqual(128);
      }
    }
  });
});
