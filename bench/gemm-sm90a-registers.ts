/**
 * ptxas registers and spills of every sm_90a GEMM token tile (src/codegen/gemm-sm90a.ts
 * SM90A_TOKEN_TILES) on the Qwen3-8B units (qkv, o, gate_up with its SwiGLU, down) at split-K 1
 * to 4, the 4-stage ring (the depth changes no register), nvcc -arch=sm_90a. Prints each figure,
 * then the table gemm-sm90a.ts's SM90A_REGISTERS_BY_TILE records (the most over the units, split-K
 * 1 and above 1), to paste there when the kernel changes (the bf16 units carry the fold-norms
 * code, Reduction::kNormOut / kRowScale, since 2026-12-06: the table keeps the most of these
 * and of the figures without it, as its comment says); exits 1 if any kernel spills or uses
 * stack (the planner may emit every tile at every split: draft lengths 12 to 15 plan 256 tokens).
 * test/codegen/gemm-sm90a-spills.test.ts compiles only the 256-token kernels a Qwen3-8B compile
 * plans. Needs nvcc; 3.3 minutes of CPU (9 wall on 2 busy cores).
 *   npm run bench:gemm-sm90a-registers
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parsePtxasReport } from '../src/build/ptxas.js';
import { runPool } from '../src/build/pool.js';
import { findNvcc } from '../src/build/toolchain.js';
import { ARCHES } from '../src/codegen/arch.js';
import { type GemmShape, gemmTarget, planReduction } from '../src/codegen/gemm-plan.js';
import { SM90A_STAGES, SM90A_TOKEN_TILES, planSm90aKernels, renderSm90aUnit, sm90aSource } from '../src/codegen/gemm-sm90a.js';
import { readTemplateFile } from '../src/codegen/templates.js';

const exec = promisify(execFile);
const UNITS: readonly { readonly role: string; readonly shape: GemmShape }[] = [
  { role: 'qkv', shape: { n: 6144, k: 4096, dtype: 'bf16' } },
  { role: 'o', shape: { n: 4096, k: 4096, dtype: 'bf16' } },
  { role: 'gate_up', shape: { n: 24576, k: 4096, dtype: 'bf16' } },
  { role: 'down', shape: { n: 4096, k: 12288, dtype: 'bf16' } },
];
const SPLITS = [1, 2, 3, 4];
const nvcc = await findNvcc();
if (!nvcc.found) {
  console.error(`bench:gemm-sm90a-registers needs nvcc (${nvcc.reason})`);
  process.exit(1);
}
const dir = mkdtempSync(join(tmpdir(), 'tidarc-bench-sm90a-registers-'));
const figures: { role: string; splitK: number; tileT: number; registers: number; spillBytes: number }[] = [];
try {
  for (const h of ['tidarc_gemm_sm90a.cuh', 'tidarc_gemm_sm90a_abi.h', 'tidarc_gemm.cuh', 'tidarc_gemm_abi.h', 'tidarc_hopper.cuh', 'tidarc_device.cuh']) writeFileSync(join(dir, h), readTemplateFile(`cuda/${h}`));
  const jobs = UNITS.flatMap((u) => SPLITS.map((splitK) => ({ ...u, splitK })));
  await runPool(jobs, 2, async ({ role, shape, splitK }) => {
    const reduction = planReduction(shape, gemmTarget(['sm_90a']), splitK);
    const kernels = planSm90aKernels(shape, [...SM90A_TOKEN_TILES], reduction, { stages: SM90A_STAGES });
    const source = join(dir, `${sm90aSource(shape).replace('cuda/', '')}.s${splitK}.cu`);
    writeFileSync(source, renderSm90aUnit(shape, reduction, kernels, [role], 'bench'));
    const { stderr } = await exec(nvcc.tool.path, ['-cubin', '-O3', '-std=c++17', '-Xptxas', '-v', ARCHES.sm_90a.gencode, `-I${dir}`, '-o', `${source}.cubin`, source], { maxBuffer: 64 << 20 });
    const report = parsePtxasReport(stderr)['sm_90a'] ?? {};
    for (const k of kernels) {
      const r = report[k.symbol];
      if (!r) throw new Error(`ptxas reported nothing for ${k.symbol}`);
      figures.push({ role, splitK, tileT: k.tileT, registers: r.registers, spillBytes: r.spillStoreBytes + r.spillLoadBytes + r.stackBytes });
    }
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const { stdout: version } = await exec(nvcc.tool.path, ['--version']);
console.log(`ptxas -arch=sm_90a, ${/release [^\n]*/.exec(version)?.[0] ?? 'nvcc'}; registers (spill + stack bytes where any) by split-K and token tile`);
console.log(['role', 'split-K', ...SM90A_TOKEN_TILES.map(String)].map((c) => c.padStart(8)).join(''));
for (const u of UNITS) {
  for (const splitK of SPLITS) {
    const cell = (t: number): string => {
      const f = figures.find((x) => x.role === u.role && x.splitK === splitK && x.tileT === t)!;
      return f.spillBytes > 0 ? `${f.registers}/${f.spillBytes}` : String(f.registers);
    };
    console.log([u.role, String(splitK), ...SM90A_TOKEN_TILES.map(cell)].map((c) => c.padStart(8)).join(''));
  }
}
const most = (split: boolean): string => SM90A_TOKEN_TILES.map((t) => `${t}: ${Math.max(...figures.filter((f) => f.tileT === t && (f.splitK > 1) === split).map((f) => f.registers))}`).join(', ');
console.log(`\nSM90A_REGISTERS_BY_TILE:\n  single: { ${most(false)} },\n  split: { ${most(true)} },`);
const spilled = figures.filter((f) => f.spillBytes > 0);
if (spilled.length > 0) {
  console.error(`spills or stack: ${spilled.map((f) => `${f.role} split-K ${f.splitK} t${f.tileT} (${f.spillBytes} bytes)`).join(', ')}`);
  process.exit(1);
}
