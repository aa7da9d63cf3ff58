/**
 * SASS instruction counts of the sm_90a attention kernel's key-tile loop (one consumer warp's
 * iteration, by class: src/codegen/sass-counts-sm90a.ts sm90aKeyLoop on sass-mix.ts's parse and
 * unmasked path) for every plan of src/codegen/sass-counts-sm90a.ts's space (sm90aSassSpace: TiDAR
 * k = 16 and the prefill chunk at G = 4, head dim 64 and 128, one consumer, two in ping-pong, two
 * without), each compiled for sm_90a alone (the generated unit, renderAttentionSm90a, with its
 * headers) and dumped with cuobjdump (src/build/sass.ts). Prints the table to paste into
 * MEASURED_SM90A_SASS, then each plan's per-pipe cycles of one warp-iteration on an H200
 * sub-partition (sass-mix.ts iterationCycles without the tensor pipe: a model, not a measurement)
 * beside the cost model's old assumption; exits 1 with --check if a measured plan differs from
 * the committed table. Needs nvcc and cuobjdump (findCuobjdump says where to get one); 12
 * compiles, ~1 minute on 2 cores.
 * Usage: npm run bench:sass-counts-sm90a [-- --check]
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { dumpSass, findCuobjdump } from '../src/build/sass.js';
import { findNvcc } from '../src/build/toolchain.js';
import { ARCHES } from '../src/codegen/arch.js';
import { type AttentionSm90aPlan, SM90A_ATTENTION_STATIC_FILES, planAttentionSm90a, renderAttentionSm90a } from '../src/codegen/attention-sm90a.js';
import { sm90aSoftmaxCycles, SOFTMAX_PER_EXP } from '../src/codegen/attention-sm90a-cost-model.js';
import { H200 } from '../src/codegen/machine.js';
import { type ClassCounts, countClasses, INSTRUCTION_CLASSES, parseSass } from '../src/codegen/sass-mix.js';
import { MEASURED_SM90A_SASS_CUOBJDUMP, MEASURED_SM90A_SASS_NVCC, type MeasuredSm90aSass, sm90aKeyLoop, sm90aLoopCounts } from '../src/codegen/sass-counts-sm90a.js';
import { nvccFlags } from '../src/codegen/targets.js';
import { readTemplateFile } from '../src/codegen/templates.js';
import { prefillChunkVariant, tidarDecodeVariant } from '../src/codegen/variant.js';

const run = promisify(execFile);

/** The plans the table covers: k = 16 and the prefill chunk at G = 4, head dim 64 and 128; one consumer, two in ping-pong, two without. */
export function sm90aSassSpace(): AttentionSm90aPlan[] {
  const plans: AttentionSm90aPlan[] = [];
  for (const headDim of [64, 128]) {
    const shape = { dtype: 'bf16', headDim, qHeads: 32, kvHeads: 8 } as const;
    for (const variant of [tidarDecodeVariant(16, shape), prefillChunkVariant(shape)]) {
      const two = planAttentionSm90a(variant, 2);
      plans.push(planAttentionSm90a(variant, 1), two, { ...two, pingPong: false });
    }
  }
  return plans;
}

/** The headers an sm_90a attention unit includes, into `dir`. */
export function writeSm90aHeaders(dir: string): void {
  for (const h of ['cuda/tidarc_attention.cuh', 'cuda/tidarc_device.cuh', 'cuda/tidarc_gemm_abi.h', ...SM90A_ATTENTION_STATIC_FILES.map(([out]) => out)]) {
    writeFileSync(join(dir, h.replace(/^cuda\//, '')), readTemplateFile(h));
  }
  writeFileSync(join(dir, 'tidarc_abi.h'), readTemplateFile('common/tidarc_abi.h'));
}

/** Compiles `plan`'s unit for sm_90a in `dir` (holding writeSm90aHeaders), dumps its SASS and counts one iteration of its key-tile loop. */
export async function measureSm90aLoop(plan: AttentionSm90aPlan, nvcc: string, cuobjdump: string, dir: string, tag: string): Promise<ClassCounts> {
  const source = join(dir, `${tag}.cu`);
  const binary = join(dir, `${tag}.fatbin`);
  writeFileSync(source, renderAttentionSm90a(plan, 'sass'));
  await run(nvcc, [...nvccFlags([ARCHES.sm_90a]).filter((f) => f !== '-Xptxas' && f !== '-v'), '-o', binary, source], { maxBuffer: 64 << 20 });
  const kernel = parseSass(await dumpSass(cuobjdump, binary)).find((k) => k.name === plan.symbol && k.arch === 'sm_90a');
  if (!kernel) throw new Error(`cuobjdump printed no sm_90a SASS for ${plan.symbol}`);
  const loop = sm90aKeyLoop(kernel);
  if (!loop) throw new Error(`${plan.symbol}: no loop holding HGMMA`);
  return countClasses(loop.path);
}

const q = (x: unknown): string => (typeof x === 'string' ? `'${x}'` : Array.isArray(x) ? `[${x.join(', ')}]` : String(x));

async function main(): Promise<void> {
  const nvcc = await findNvcc();
  const cuobjdump = await findCuobjdump();
  if (!nvcc.found || !cuobjdump.found) {
    console.error(`bench:sass-counts-sm90a needs nvcc and cuobjdump (${!nvcc.found ? nvcc.reason : ''}${!cuobjdump.found ? cuobjdump.reason : ''})`);
    process.exit(1);
  }
  const check = process.argv.includes('--check');
  const same = nvcc.tool.version === MEASURED_SM90A_SASS_NVCC && cuobjdump.tool.version === MEASURED_SM90A_SASS_CUOBJDUMP;
  const work = sm90aSassSpace();
  const dir = mkdtempSync(join(tmpdir(), 'tidarc-bench-sass-sm90a-'));
  const rows: MeasuredSm90aSass[] = [];
  try {
    writeSm90aHeaders(dir);
    for (const [i, plan] of work.entries()) {
      const counts = await measureSm90aLoop(plan, nvcc.tool.path, cuobjdump.tool.path, dir, `a${i}`);
      rows.push([plan.variant.mask.kind, plan.variant.shape.headDim, plan.consumers, plan.pingPong, plan.tileN, INSTRUCTION_CLASSES.map((c) => counts[c])]);
      process.stderr.write('.');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stderr.write('\n');
  console.log(`// bench:sass-counts-sm90a (${nvcc.tool.version}; cuobjdump ${cuobjdump.tool.version}; sm_90a, G = 4), ${new Date().toISOString().slice(0, 10)}${same ? '' : ': not MEASURED_SM90A_SASS_NVCC / _CUOBJDUMP, set them to these'}.`);
  for (const r of rows) console.log(`  [${r.map(q).join(', ')}],`);
  // The cost model's view: a warp's non-tensor cycles an iteration (issue and each CUDA-core pipe), against the old assumption
  // (one exp2 a score on the SFU plus SOFTMAX_PER_EXP times that: 64 x 64 scores a warpgroup tile, 16 exp2 a clock an SM).
  const assumed = ((1 + SOFTMAX_PER_EXP) * 64 * 64) / 16;
  console.log(`\nOne consumer warp's key tile on an H200 sub-partition (predicted cycles, sass-mix.ts iterationCycles without the tensor pipe; a warpgroup tile takes them on each of the 4 sub-partitions):`);
  console.log(`the old assumption: ${assumed} cycles an SM a warpgroup tile ((1 + ${SOFTMAX_PER_EXP}) x 4096 exp2 / 16 a clock), at ${H200.smClockHz / 1e9} GHz.`);
  console.log('kind           D  cons  pp     instr  hgmma  fp32  imad   alu  conv  mufu  shfl  other  cycles  limiter  vs assumed');
  for (const r of rows) {
    const counts = Object.fromEntries(INSTRUCTION_CLASSES.map((c, j) => [c, r[5][j]!])) as ClassCounts;
    const it = sm90aSoftmaxCycles(counts);
    console.log(`${r[0].padEnd(13)} ${String(r[1]).padStart(3)}  ${String(r[2]).padStart(4)}  ${String(r[3]).padEnd(5)}  ${String(it.issue).padStart(5)}  ${r[5].map((x) => String(x).padStart(5)).join(' ')}  ${it.cycles.toFixed(0).padStart(6)}  ${it.limiter.padEnd(7)}  ${(it.cycles / assumed).toFixed(2)}`);
  }
  if (check) {
    const drift = rows.filter((r, i) => {
      const c = sm90aLoopCounts(work[i]!);
      return !c || INSTRUCTION_CLASSES.some((k, j) => c[k] !== r[5][j]);
    });
    for (const r of drift) console.error(`differs from MEASURED_SM90A_SASS: ${r.map(q).join(', ')}`);
    if (drift.length > 0) process.exit(1);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e: unknown) => {
    console.error(`bench:sass-counts-sm90a: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
