/**
 * SASS instruction counts of the mma.sync attention kernel's main loop, one warp-iteration by class
 * (src/codegen/sass-mix.ts: the hot loop's unmasked path), over the tiles the planner may take
 * (src/codegen/sass-space.ts: every row-tile candidate of TiDAR decode, block diffusion and causal at head dim 64
 * and 128, and the split-key tile of <= 16 rows), for sm_80 and sm_90 in one nvcc run a tile
 * (the generated source, cuobjdump -sass on the fatbin). Prints the table to paste into
 * src/codegen/sass-counts.ts MEASURED_SASS when the kernel changes, then each tile's per-pipe
 * cycles on the H200 (a model, not a measurement); exits 1 with --check if a measured tile differs
 * from the committed table. Needs nvcc and cuobjdump (src/build/sass.ts findCuobjdump says where to
 * get one); 105 compiles, ~5 minutes on 2 cores.
 * Then the same for the mma.sync GEMM's k-tile loop (src/codegen/sass-space.ts gemmSassSpace: every
 * tile the GEMM planner can offer, at every stage count an sm_90 CTA holds, split-K 1 and 2; ~400
 * kernels in units of 25, ~15 minutes): the table for src/codegen/gemm-sass-counts.ts MEASURED_GEMM_SASS, and each tile's
 * cycles on the H200. `--only attention` or `--only gemm` measures one of them.
 * Usage: npm run bench:sass-counts [-- --jobs 2] [-- --check] [-- --only gemm]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPool } from '../src/build/pool.js';
import { findCuobjdump, measureAttentionLoop, writeAttentionHeaders } from '../src/build/sass.js';
import { findNvcc } from '../src/build/toolchain.js';
import { mmaSyncRate } from '../src/codegen/attention-cost-model.js';
import { H200 } from '../src/codegen/machine.js';
import { ARCHES } from '../src/codegen/arch.js';
import { hmmaCycles, INSTRUCTION_CLASSES, iterationCycles } from '../src/codegen/sass-mix.js';
import { gemmSassKey, gemmSassSpace, gemmSassSplit, sassSpace } from '../src/codegen/sass-space.js';
import { measureGemmLoops, writeGemmHeaders } from '../src/build/gemm-sass.js';
import { gemmHmmaCycles, gemmLoopCounts, type MeasuredGemmSass } from '../src/codegen/gemm-sass-counts.js';
import { layoutOf, loopCounts, MEASURED_SASS_CUOBJDUMP, MEASURED_SASS_NVCC, type MeasuredSass } from '../src/codegen/sass-counts.js';

async function main(): Promise<void> {
  const nvcc = await findNvcc();
  const cuobjdump = await findCuobjdump();
  if (!nvcc.found || !cuobjdump.found) {
    console.error(`bench:sass-counts needs nvcc and cuobjdump (${!nvcc.found ? nvcc.reason : ''}${!cuobjdump.found ? cuobjdump.reason : ''})`);
    process.exit(1);
  }
  const jobsArg = process.argv.indexOf('--jobs');
  const jobs = jobsArg > 0 ? Number(process.argv[jobsArg + 1]) : Math.min(2, availableParallelism());
  const check = process.argv.includes('--check');
  const onlyArg = process.argv.indexOf('--only');
  const only = onlyArg > 0 ? process.argv[onlyArg + 1] : undefined;
  if (only !== undefined && only !== 'gemm' && only !== 'attention') throw new Error(`--only ${only}: attention or gemm`);
  const PAIR = [ARCHES.sm_80, ARCHES.sm_90];
  const same = nvcc.tool.version === MEASURED_SASS_NVCC && cuobjdump.tool.version === MEASURED_SASS_CUOBJDUMP;
  let drifted = false;
  if (only !== 'gemm') drifted = (await attention(nvcc.tool.path, cuobjdump.tool.path, `${nvcc.tool.version}; cuobjdump ${cuobjdump.tool.version}`, same, jobs, check, PAIR)) || drifted;
  if (only !== 'attention') drifted = (await gemm(nvcc.tool.path, cuobjdump.tool.path, `${nvcc.tool.version}; cuobjdump ${cuobjdump.tool.version}`, same, jobs, check, PAIR)) || drifted;
  if (drifted) process.exit(1);
}

const q = (x: unknown): string => (typeof x === 'string' ? `'${x}'` : Array.isArray(x) ? `[${x.join(', ')}]` : String(x));

/** The attention table (MEASURED_SASS); true when --check found a row that differs. */
async function attention(nvccPath: string, cuobjdumpPath: string, tools: string, same: boolean, jobs: number, check: boolean, PAIR: readonly (typeof ARCHES)[keyof typeof ARCHES][]): Promise<boolean> {
  const work = sassSpace();
  const dir = mkdtempSync(join(tmpdir(), 'tidarc-bench-sass-counts-'));
  const rows: MeasuredSass[] = new Array(work.length);
  try {
    writeAttentionHeaders(dir);
    await runPool(work, jobs, async (plan, i) => {
      const m = await measureAttentionLoop(plan, PAIR, nvccPath, cuobjdumpPath, dir, `t${i}`);
      if (m.some((x) => x.nested > 0)) throw new Error(`${plan.variant.symbol}: the hot loop holds ${m.map((x) => x.nested).join('/')} loops: the table assumes none`);
      const [a, b] = m.map((x) => INSTRUCTION_CLASSES.map((c) => x.counts[c]));
      rows[i] = [plan.variant.mask.kind, plan.variant.shape.headDim, layoutOf(plan), plan.rowTile.warps, plan.tile.tileN, plan.tile.stages, plan.tile.tileN / plan.rowTile.keyWarps, a!, b!];
      process.stderr.write('.');
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stderr.write('\n');
  console.log(`// bench:sass-counts (${tools}; sm_80 and sm_90), ${new Date().toISOString().slice(0, 10)}${same ? '' : ': not MEASURED_SASS_NVCC / _CUOBJDUMP, set them to these'}.`);
  for (const r of rows) console.log(`  [${r.map(q).join(', ')}],`);
  // The model's view (H200, sm_90): issue slots against each pipe, HMMA at the plan's mma.sync rate.
  const clock = H200.smClockHz;
  console.log(`\nOne warp-iteration on an H200 sub-partition (predicted cycles, sass-mix.ts iterationCycles; HMMA at the cost model's mma.sync rate):`);
  console.log('kind             D    tile        keys  instr  hmma   fp32  imad   alu   conv  mufu  shfl  limiter');
  work.forEach((plan, i) => {
    const r = rows[i]!;
    const counts = loopCounts(plan, 'sm_90') ?? { counts: Object.fromEntries(INSTRUCTION_CLASSES.map((c, j) => [c, r[8][j]!])) as never, keys: r[6] };
    const it = iterationCycles(counts.counts, 'sm_90', hmmaCycles(mmaSyncRate(plan, H200) / H200.sms / clock));
    const p = it.pipes;
    console.log(`${r[0].padEnd(16)} ${String(r[1]).padStart(3)}  ${`${r[2]} w${r[3]} n${r[4]} p${r[5]}`.padEnd(11)} ${String(r[6]).padStart(4)}  ${String(it.issue).padStart(5)}  ${[p.hmma, p.fp32, p.imad, p.alu, p.conv, p.mufu, p.shfl].map((x) => x.toFixed(0).padStart(5)).join(' ')}  ${it.limiter}`);
  });
  if (check) {
    const drift = rows.filter((r, i) => {
      const [a, b] = (['sm_80', 'sm_90'] as const).map((arch) => loopCounts(work[i]!, arch));
      return !a || !b || a.keys !== r[6] || INSTRUCTION_CLASSES.some((c, j) => a.counts[c] !== r[7][j] || b.counts[c] !== r[8][j]);
    });
    for (const r of drift) console.error(`differs from MEASURED_SASS: ${r.map(q).join(', ')}`);
    return drift.length > 0;
  }
  return false;
}

/** Kernels a GEMM unit compiles (one nvcc run, sm_80 and sm_90). */
const GEMM_UNIT_KERNELS = 25;

/** The GEMM table (MEASURED_GEMM_SASS); true when --check found a row that differs. */
async function gemm(nvccPath: string, cuobjdumpPath: string, tools: string, same: boolean, jobs: number, check: boolean, PAIR: readonly (typeof ARCHES)[keyof typeof ARCHES][]): Promise<boolean> {
  const work = gemmSassSpace();
  // Units of one reduction (a unit's kernels share it), at most GEMM_UNIT_KERNELS each.
  const units: { start: number; plans: typeof work }[] = [];
  work.forEach((p, i) => {
    const last = units[units.length - 1];
    if (last && last.plans.length < GEMM_UNIT_KERNELS && last.plans[0]!.reduction.splitK === p.reduction.splitK) last.plans.push(p);
    else units.push({ start: i, plans: [p] });
  });
  const dir = mkdtempSync(join(tmpdir(), 'tidarc-bench-gemm-sass-'));
  const rows: MeasuredGemmSass[] = new Array(work.length);
  try {
    writeGemmHeaders(dir);
    await runPool(units, jobs, async ({ start, plans }, u) => {
      const measured = await measureGemmLoops(plans, PAIR, nvccPath, cuobjdumpPath, dir, `g${u}`);
      measured.forEach((m, j) => {
        const p = plans[j]!;
        if (m.some((x) => x.nested > 0)) throw new Error(`${gemmSassKey(p, p.stages)}: the hot loop holds ${m.map((x) => x.nested).join('/')} loops: the table assumes none`);
        const [a, b] = m.map((x) => INSTRUCTION_CLASSES.map((c) => x.counts[c]));
        rows[start + j] = [p.blockN, p.threads / 32, p.warpsM, p.blockM, p.stages, gemmSassSplit(p), a!, b!];
      });
      process.stderr.write('.');
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stderr.write('\n');
  console.log(`\n// bench:sass-counts GEMM (${tools}; sm_80 and sm_90), ${new Date().toISOString().slice(0, 10)}${same ? '' : ': not MEASURED_SASS_NVCC / _CUOBJDUMP, set them to these'}.`);
  for (const r of rows) console.log(`  [${r.map(q).join(', ')}],`);
  console.log(`\nOne warp-iteration (a k tile) of the mma.sync GEMM on an H200 sub-partition (predicted cycles, sass-mix.ts iterationCycles; HMMA at the GEMM cost model's mma.sync rate):`);
  console.log('tile                    instr  hmma   imad   alu  limiter');
  const hmma = gemmHmmaCycles(H200);
  work.forEach((p, i) => {
    const r = rows[i]!;
    const counts = Object.fromEntries(INSTRUCTION_CLASSES.map((c, j) => [c, r[7][j]!])) as never;
    const it = iterationCycles(counts, 'sm_90', hmma);
    console.log(`${`n${p.blockN} w${p.threads / 32} ${p.warpsM}x${p.threads / 32 / p.warpsM} m${p.blockM} s${p.stages} k${r[5]}`.padEnd(23)} ${String(it.issue).padStart(5)}  ${[it.pipes.hmma, it.pipes.imad, it.pipes.alu].map((x) => x.toFixed(0).padStart(5)).join(' ')}  ${it.limiter}`);
  });
  if (!check) return false;
  const drift = rows.filter((r, i) => {
    const [a, b] = (['sm_80', 'sm_90'] as const).map((arch) => gemmLoopCounts(work[i]!, arch));
    return !a || !b || INSTRUCTION_CLASSES.some((c, j) => a[c] !== r[6][j] || b[c] !== r[7][j]);
  });
  for (const r of drift) console.error(`differs from MEASURED_GEMM_SASS: ${r.map(q).join(', ')}`);
  return drift.length > 0;
}

main().catch((e: unknown) => {
  console.error(`bench:sass-counts: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
