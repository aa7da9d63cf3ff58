/**
 * ptxas registers and spills of the mma.sync attention kernel with warps of 32 rows over the tiles
 * the planner may take (src/codegen/attention-registers.ts MEASURED_32_ROW: every 32-row tile
 * plan.ts fitsInRegisters admits, 2 to 4 warps, one variant of each mask kind), for sm_80 and
 * sm_90 in one nvcc run a tile (the generated source, -Xptxas -v). Prints the table to paste into
 * MEASURED_32_ROW when the kernel changes; exits 1 if a measured tile differs from the committed
 * table with --check. Needs nvcc; about 150 compiles, ~10 minutes on 2 cores.
 * Usage: npm run bench:attention-registers [-- --jobs 2] [-- --check]
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parsePtxasReport } from '../src/build/ptxas.js';
import { runPool } from '../src/build/pool.js';
import { findNvcc } from '../src/build/toolchain.js';
import { ARCHES } from '../src/codegen/arch.js';
import { attention32Registers, ATTENTION_32_ROW_KINDS, attention32RowSpace, MEASURED_32_ROW_NVCC, type MeasuredAttention32, measuredVariant } from '../src/codegen/attention-registers.js';
import { renderCudaVariant } from '../src/codegen/kernel-source.js';
import { planAttention } from '../src/codegen/plan.js';
import { nvccFlags } from '../src/codegen/targets.js';
import { readTemplateFile } from '../src/codegen/templates.js';

const exec = promisify(execFile);
const nvcc = await findNvcc();
if (!nvcc.found) {
  console.error(`bench:attention-registers needs nvcc (${nvcc.reason})`);
  process.exit(1);
}
const jobsArg = process.argv.indexOf('--jobs');
const jobs = jobsArg > 0 ? Number(process.argv[jobsArg + 1]) : Math.min(2, availableParallelism());
const check = process.argv.includes('--check');
const PAIR = [ARCHES.sm_80, ARCHES.sm_90];
const work = ATTENTION_32_ROW_KINDS.flatMap((kind) => attention32RowSpace().map((t) => ({ kind, ...t })));
const dir = mkdtempSync(join(tmpdir(), 'tidarc-bench-attention-registers-'));
const rows: MeasuredAttention32[] = new Array(work.length);
try {
  for (const h of ['cuda/tidarc_attention.cuh', 'cuda/tidarc_device.cuh']) writeFileSync(join(dir, h.split('/')[1]!), readTemplateFile(h));
  writeFileSync(join(dir, 'tidarc_abi.h'), readTemplateFile('common/tidarc_abi.h'));
  await runPool(work, jobs, async (t, i) => {
    const variant = measuredVariant(t.kind, t.headDim);
    const plan = planAttention(variant, { tileN: t.tileN, stages: t.stages, warps: t.warps, warpRows: 32 }, PAIR);
    const source = join(dir, `t${i}.cu`);
    writeFileSync(source, renderCudaVariant(plan, 'bench'));
    const { stderr } = await exec(nvcc.tool.path, [...nvccFlags(PAIR), '-o', join(dir, `t${i}.fatbin`), source], { maxBuffer: 64 << 20 });
    const report = parsePtxasReport(stderr);
    const [a, b] = (['sm_80', 'sm_90'] as const).map((arch) => report[arch]![variant.symbol]!);
    rows[i] = [t.kind, t.headDim, t.tileN, t.stages, t.warps, a!.registers, a!.spillStoreBytes, b!.registers, b!.spillStoreBytes];
    process.stderr.write('.');
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.stderr.write('\n');
console.log(`// bench:attention-registers (${nvcc.tool.version}, sm_80 and sm_90), ${new Date().toISOString().slice(0, 10)}${nvcc.tool.version === MEASURED_32_ROW_NVCC ? '' : `: not MEASURED_32_ROW_NVCC, set it to this`}.`);
for (const r of rows) console.log(`  [${r.map((x) => (typeof x === 'string' ? `'${x}'` : String(x))).join(', ')}],${r[6] > 0 || r[8] > 0 ? '  // spills' : ''}`);
if (check) {
  const drift = rows.filter((r) => {
    const [a, b] = (['sm_80', 'sm_90'] as const).map((arch) => attention32Registers(r[0], r[1], r[2], r[3], r[4], arch));
    return !a || !b || a.registers !== r[5] || a.spillBytes !== r[6] || b.registers !== r[7] || b.spillBytes !== r[8];
  });
  for (const r of drift) console.error(`differs from MEASURED_32_ROW: ${r.join(', ')}`);
  if (drift.length > 0) process.exit(1);
}
