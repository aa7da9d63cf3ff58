/**
 * The GEMMs of examples/qwen3-8b.json (qkv, o, gate_up, down, lm_head at its step row counts
 * 1, 20, 64, 72, 272), planned in one compile for sm_80 + sm_86 + sm_90 (each arch its own
 * pipeline stages), compile with nvcc for the three with no spills and no stack frame (the
 * lm_head's row statistics merge too); whether a kernel holds two CTAs an SM on an arch is the same from
 * the plan's registers table (gemm-registers.ts) and from ptxas's figures. Each arch's pass really compiles its own stage count: the PTX of the M = 1
 * kernel waits on kStages - 2 cp.async groups, 4 on sm_90 (6 stages) and 2 on sm_86 (4). Prints
 * the ptxas registers. Tagged: nvcc (skipped where nvcc is absent).
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
import { gemmCtasPerSm, gemmRowStatsSymbol, gemmSymbol } from '../../src/codegen/gemm-plan.js';
import { occupancy } from '../../src/codegen/occupancy.js';
import { renderGemmUnit } from '../../src/codegen/gemm-source.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { packageRoot } from '../../src/util/paths.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { GEMM_HEADERS } from '../helpers/gemm.js';

const exec = promisify(execFile);
const nvcc = await findNvcc();
const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
const ARCH_LIST = ['sm_80', 'sm_86', 'sm_90'] as const;
const { units } = planModelGemms(spec, spec.draftLengths, [...ARCH_LIST]);
const ptxWaits = new Map<string, number>();
const reports = new Map<string, PtxasByArch>();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-gemm-nvcc-'));

beforeAll(async () => {
  if (!nvcc.found) return;
  for (const h of GEMM_HEADERS) writeFileSync(join(dir, h), readTemplateFile(`cuda/${h}`));
  await runPool(units, availableParallelism(), async (unit) => {
    const source = join(dir, `${unit.name}.cu`);
    writeFileSync(source, renderGemmUnit(unit.shape, unit.plans, unit.roles, spec.name));
    const { stderr } = await exec(nvcc.tool.path, [...nvccFlags(ARCH_LIST.map((a) => ARCHES[a])), '-o', join(dir, `${unit.name}.fatbin`), source], { maxBuffer: 64 << 20 });
    reports.set(unit.name, parsePtxasReport(stderr));
  });
  const o = units.find((u) => u.roles.includes('o'))!;
  for (const arch of ['sm_86', 'sm_90']) {
    const ptx = join(dir, `o-${arch}.ptx`);
    await exec(nvcc.tool.path, ['-ptx', '-O3', '-std=c++17', `-arch=${arch}`, `-I${dir}`, '-o', ptx, join(dir, `${o.name}.cu`)], { maxBuffer: 64 << 20 });
    const text = readFileSync(ptx, 'utf8');
    const at = text.indexOf(`.entry ${gemmSymbol(o.shape, 1)}(`);
    const body = text.slice(at, text.indexOf('.entry', at + 1) < 0 ? undefined : text.indexOf('.entry', at + 1));
    ptxWaits.set(arch, Math.max(...[...body.matchAll(/cp\.async\.wait_group (\d+);/g)].map((m) => Number(m[1]))));
  }
  const lines = units.flatMap((u) => u.plans.map((p) => `${u.roles.join('+').padEnd(8)} ${`${u.shape.n}x${u.shape.k}`.padEnd(12)} M=${String(p.m).padEnd(4)} ` +
    ARCH_LIST.map((a) => `${a} ${reports.get(u.name)![a]![gemmSymbol(u.shape, p.m)]!.registers} regs (${p.stagesByArch[a]} stages)`).join(', ')));
  console.log(`ptxas, GEMMs of ${spec.name}:\n${lines.join('\n')}`);
}, 600_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!nvcc.found)('GEMMs of qwen3-8b with nvcc sm_80 + sm_86 + sm_90', () => {
  test('each arch compiles its own stages: the M = 1 kernel waits on 4 groups on sm_90, 2 on sm_86', () => {
    const p = units.find((u) => u.roles.includes('o'))!.plans.find((p) => p.m === 1)!;
    expect([p.stagesByArch.sm_90, p.stagesByArch.sm_86]).toEqual([6, 4]);
    expect(Object.fromEntries(ptxWaits)).toEqual({ sm_86: 2, sm_90: 4 });
  });
  test('the step row counts are those of the issue', () => {
    expect(units[0]!.plans.map((p) => p.m)).toEqual([1, 20, 64, 72, 272]);
    expect(units.flatMap((u) => u.roles).sort()).toEqual(['down', 'gate_up', 'lm_head', 'o', 'qkv']);
  });
  test.for(units.map((u) => [`${u.roles.join('+')} ${u.shape.n}x${u.shape.k}`, u] as const))('%s: no spills, no stack frame', ([, unit]) => {
    const report = reports.get(unit.name)!;
    const kernels = [...unit.plans.map((p) => [gemmSymbol(unit.shape, p.m), p] as const),
      ...(unit.roles.includes('lm_head') ? [[gemmRowStatsSymbol(unit.shape), undefined] as const] : [])];
    for (const arch of ARCH_LIST) {
      for (const [kernel, plan] of kernels) {
        const r = report[arch]?.[kernel];
        expect(r, `${arch} ${kernel}`).toBeDefined();
        expect(r!.spillStoreBytes + r!.spillLoadBytes, `${arch} ${kernel} spills`).toBe(0);
        expect(r!.stackBytes, `${arch} ${kernel} stack`).toBe(0);
        // The stage rule's question, two CTAs an SM or not (gemmCtasPerSm: the registers table), has ptxas's figures' answer.
        if (plan) {
          const planned = gemmCtasPerSm({ ...plan, splitK: plan.reduction.splitK }, plan.sharedBytesByArch[arch]!, [arch]);
          const real = occupancy(arch, { registers: r!.registers, sharedBytes: plan.sharedBytesByArch[arch]! + r!.sharedBytes, threads: plan.threads }).ctasPerSm;
          expect(Math.min(real, 2), `${arch} ${kernel} CTAs an SM (${r!.registers} registers)`).toBe(Math.min(planned, 2));
        }
      }
    }
  });
});
