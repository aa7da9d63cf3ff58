/**
 * CPU backend throughput on one Qwen3-8B TiDAR step (32 query heads, 8 KV heads, head dim 128,
 * bf16, draft k = 8 so n = 72 in-step tokens, prefix L = 4096, batch 1) against the plain loop
 * of bench/baseline/naive_attention.cpp, on the same inputs, in the same run.
 *   1. build: the tidarc CPU library (compileModel, build 'cpu') and the baseline .so, both with
 *      CPU_FLAGS; both are loaded through the native addon and called with the same arguments;
 *   2. prove: at L = 256 both against the float64 referenceAttention and against each other;
 *   3. time at L = 4096 (warm-up, then >= 10 runs and >= 2 s): tidarc (all threads), tidarc
 *      (1 thread), naive (1 thread); results also go to bench/results/cpu-attention-<date>.json.
 *
 *   npm run bench:cpu            # = tsx bench/cpu-attention.ts; needs `npm run build:native` and g++
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CPU_FLAGS, compileModel } from '../src/build/compile-model.js';
import { findCxx } from '../src/build/toolchain.js';
import { loadModelSpecFile } from '../src/ir/model-file.js';
import { stepVisibility } from '../src/ir/mask.js';
import { tidarDecode } from '../src/ir/mask-builders.js';
import { decode } from '../src/util/dtype.js';
import { openKernelLibrary } from '../src/runtime/kernel-library.js';
import { loadNative } from '../src/runtime/native.js';
import { packageRoot } from '../src/util/paths.js';
import { type RandomAttentionInputs, randomAttentionInputs, referenceAttention } from '../src/runtime/reference.js';
import { type Summary, summarize } from '../src/bench/stats.js';

const DRAFT = 8;
const PREFIX = 4096;
const CHECK_PREFIX = 256;
const SHAPE = { batch: 1, qHeads: 32, kvHeads: 8, headDim: 128, dtype: 'bf16' as const };
const VARIANT = `tidar_k${DRAFT}`;
const NAIVE_SYMBOL = `tidarc_cpu_naive_tidar_k${DRAFT}`;
/** From test/codegen/cpu-backend.test.ts: half a bf16 ulp near 1 plus fp32 slack; lse abs. */
const TOL = { o: 8e-3, lse: 3.2e-3 };
const GOAL_RATIO = 4;

const root = packageRoot();
const mask = tidarDecode(DRAFT);
const n = mask.tokens.length;
const table = stepVisibility(mask);
const work = mkdtempSync(join(tmpdir(), 'tidarc-bench-cpu-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

// ---- 1. build both libraries ------------------------------------------------------------
const cxx = await findCxx();
if (!cxx.found) throw new Error(`no C++ compiler: ${cxx.reason}`);
let t = performance.now();
const spec = await loadModelSpecFile(join(root, 'examples/qwen3-8b.json'));
await compileModel({ spec, drafts: [DRAFT], arches: ['sm_80'], outDir: join(work, 'tidarc'), build: 'cpu', log: () => undefined });
const tidarcBuildS = (performance.now() - t) / 1000;
const lib = openKernelLibrary(join(work, 'tidarc'), { backend: 'cpu' });
const naivePath = join(work, 'libnaive.so');
t = performance.now();
await promisify(execFile)(cxx.tool.path, [...CPU_FLAGS, '-shared', '-I', join(root, 'templates/common'), join(root, 'bench/baseline/naive_attention.cpp'), '-o', naivePath]);
const naiveBuildS = (performance.now() - t) / 1000;
const native = loadNative();
const naiveLib = native.openLibrary(naivePath);
console.log(`built: tidarc CPU library ${tidarcBuildS.toFixed(1)} s, naive baseline ${naiveBuildS.toFixed(1)} s (${cxx.tool.version}; ${CPU_FLAGS.join(' ')})`);

// ---- runners: the same inputs and output buffers for both -------------------------------
interface Outputs { o: Uint16Array; lse: Float32Array }
const freshOutputs = (): Outputs => ({ o: new Uint16Array(n * SHAPE.qHeads * SHAPE.headDim).fill(0x7fc0), lse: new Float32Array(n * SHAPE.qHeads).fill(NaN) });
const problem = (L: number, capacity: number, seed: number): RandomAttentionInputs =>
  randomAttentionInputs({ ...SHAPE, n, cacheCapacity: capacity, prefixLen: [L], seed });

let lastSplits = 0;
function runTidarc(p: RandomAttentionInputs, threads: number, out: Outputs): void {
  lastSplits = lib.run(VARIANT, { batch: 1, cacheCapacity: p.shape.cacheCapacity, prefixLen: p.prefixLen, ...p.bits, threads, outputs: out }).splits;
}
function runNaive(p: RandomAttentionInputs, out: Outputs): void {
  native.runAttention(naiveLib, NAIVE_SYMBOL, {
    ...p.bits, prefixLen: p.prefixLen, ...out, workspace: null, batch: 1, cacheCapacity: p.shape.cacheCapacity, numSplits: 1, numThreads: 1,
  });
}

/** Largest |a - b| over o (decoded) and lse; NaN counts as infinitely wrong. */
function maxDiff(a: { o: ArrayLike<number>; lse: ArrayLike<number> }, b: { o: ArrayLike<number>; lse: ArrayLike<number> }) {
  const worst = (x: ArrayLike<number>, y: ArrayLike<number>): number => {
    let m = 0;
    for (let i = 0; i < x.length; i++) {
      const d = x[i] === y[i] ? 0 : Math.abs(x[i]! - y[i]!);
      m = Math.max(m, Number.isNaN(d) ? Infinity : d);
    }
    return m;
  };
  return { o: worst(a.o, b.o), lse: worst(a.lse, b.lse) };
}
const asFloats = (out: Outputs) => ({ o: decode('bf16', out.o), lse: out.lse });

function check(label: string, d: { o: number; lse: number }, scale = 1): void {
  const ok = d.o < TOL.o * scale && d.lse < TOL.lse * scale;
  console.log(`  ${label.padEnd(28)} max |o| err ${d.o.toExponential(2)}, max |lse| err ${d.lse.toExponential(2)}  ${ok ? 'ok' : 'FAILED'} (bound ${(TOL.o * scale).toExponential(1)} / ${(TOL.lse * scale).toExponential(1)})`);
  if (!ok) process.exit(1);
}

// ---- 2. prove before timing --------------------------------------------------------------
{
  // Capacity > L: the cache tail holds NaN, so a read past L poisons the output.
  const p = problem(CHECK_PREFIX, CHECK_PREFIX + 5, 1);
  const ref = referenceAttention({ ...p.shape, prefixLen: p.prefixLen, ...p.values, visible: (q, k) => table[q * n + k] === 1 });
  const [tid, tid1, nai] = [freshOutputs(), freshOutputs(), freshOutputs()];
  runTidarc(p, 0, tid);
  runTidarc(p, 1, tid1);
  runNaive(p, nai);
  console.log(`check at L = ${CHECK_PREFIX} (float64 reference; outputs poisoned with NaN first):`);
  check('tidarc vs reference', maxDiff(asFloats(tid), ref));
  check('tidarc 1 thread vs reference', maxDiff(asFloats(tid1), ref));
  check('naive vs reference', maxDiff(asFloats(nai), ref));
  check('tidarc vs naive', maxDiff(asFloats(tid), asFloats(nai)), 2); // both within TOL of ref
}

// ---- 3. time -----------------------------------------------------------------------------
function time(run: () => void, warmup: number): number[] {
  for (let i = 0; i < warmup; i++) run();
  const seconds: number[] = [];
  const start = performance.now();
  while (seconds.length < 10 || performance.now() - start < 2000) {
    const t0 = performance.now();
    run();
    seconds.push((performance.now() - t0) / 1000);
  }
  return seconds;
}

const p = problem(PREFIX, PREFIX, 2);
let visiblePairs = n * PREFIX; // (query token, key) pairs of one query head: all prefix keys ...
for (const v of table) visiblePairs += v; // ... plus the visible in-step keys
const flops = 4 * SHAPE.headDim * visiblePairs * SHAPE.qHeads * SHAPE.batch;
const kvBytes = 2 * 2 * SHAPE.batch * SHAPE.kvHeads * (PREFIX + n) * SHAPE.headDim; // K and V, bf16, once per KV head
const cores = availableParallelism();
const cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';

const outs = { tidarc: freshOutputs(), tidarc1: freshOutputs(), naive: freshOutputs() };
const loadBefore = loadavg()[0]!;
console.log(`\ntiming at L = ${PREFIX} (${cores} cores: ${cpuModel}; load average ${loadBefore.toFixed(2)}) ...`);
const runs = [
  { name: 'tidarc', threads: cores, seconds: time(() => runTidarc(p, 0, outs.tidarc), 3), splits: lastSplits },
  { name: 'tidarc, 1 thread', threads: 1, seconds: time(() => runTidarc(p, 1, outs.tidarc1), 2), splits: lastSplits },
  { name: 'naive loop', threads: 1, seconds: time(() => runNaive(p, outs.naive), 1), splits: 1 },
].map((r) => {
  const s: Summary = summarize(r.seconds);
  return { ...r, seconds: s, gflops: flops / s.median / 1e9, kvGBs: kvBytes / s.median / 1e9 };
});
// The timed outputs must agree too (same inputs, L = 4096).
check('tidarc vs naive at L = 4096', maxDiff(asFloats(outs.tidarc), asFloats(outs.naive)), 2);
check('tidarc 1 thread vs naive', maxDiff(asFloats(outs.tidarc1), asFloats(outs.naive)), 2);

const [tid, tid1, nai] = runs as [typeof runs[0], typeof runs[0], typeof runs[0]];
const ratio = nai.seconds.median / tid.seconds.median;
const ratios = { tidarcOverNaive: ratio, tidarc1OverNaive: nai.seconds.median / tid1.seconds.median, threadingGain: tid1.seconds.median / tid.seconds.median };
// Other processes on these cores (a test run, a build) slow every figure: the JSON keeps the load.
const load = { before: loadBefore, after: loadavg()[0]! };
const date = new Date().toISOString().slice(0, 10);
const resultPath = join(root, 'bench/results', `cpu-attention-${date}.json`);
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(resultPath, `${JSON.stringify({
  benchmark: 'cpu-attention', date, machine: { cpuModel, cores, loadAverage1m: load, node: process.version, compiler: cxx.tool.version, flags: CPU_FLAGS },
  problem: { ...SHAPE, draft: DRAFT, n, prefixLen: PREFIX, visiblePairsPerQueryHead: visiblePairs },
  flopsFormula: '4 * headDim * sum over query heads of visible (query row, key) pairs', flops,
  kvBytesFormula: '2 (K, V) * 2 B * batch * kvHeads * (L + n) * headDim', kvBytes,
  results: runs.map((r) => ({ name: r.name, threads: r.threads, splits: r.splits, seconds: r.seconds, gflops: r.gflops, kvGBs: r.kvGBs })),
  ratios, goal: { tidarcOverNaive: GOAL_RATIO, met: ratio >= GOAL_RATIO },
}, null, 2)}\n`);

console.log(`\nQwen3-8B TiDAR step: k = ${DRAFT}, n = ${n}, L = ${PREFIX}, batch 1, ${SHAPE.qHeads} q heads / ${SHAPE.kvHeads} kv heads, d = ${SHAPE.headDim}, bf16`);
console.log(`FLOPs = 4 * headDim * visible (query row, key) pairs over all query heads = 4 * ${SHAPE.headDim} * ${visiblePairs} * ${SHAPE.qHeads} = ${(flops / 1e9).toFixed(3)} GFLOP`);
console.log(`KV bytes = K and V read once per KV head = 2 * 2 B * ${SHAPE.kvHeads} * (${PREFIX} + ${n}) * ${SHAPE.headDim} = ${(kvBytes / 1e6).toFixed(2)} MB`);
console.log(`machine: ${cores} cores, ${cpuModel}; 1-min load average ${load.before.toFixed(2)} before, ${load.after.toFixed(2)} after timing; results: ${resultPath.slice(root.length + 1)}\n`);
const ms = (x: number): string => (x * 1000).toFixed(1);
console.log(`${'kernel'.padEnd(18)}${'threads'.padStart(8)}${'runs'.padStart(6)}${'median ms'.padStart(11)}${'p20 ms'.padStart(9)}${'p80 ms'.padStart(9)}${'GFLOP/s'.padStart(9)}${'KV GB/s'.padStart(9)}${'vs naive'.padStart(10)}`);
for (const r of runs) {
  console.log(`${r.name.padEnd(18)}${String(r.threads).padStart(8)}${String(r.seconds.count).padStart(6)}${ms(r.seconds.median).padStart(11)}${ms(r.seconds.p20).padStart(9)}${ms(r.seconds.p80).padStart(9)}${r.gflops.toFixed(2).padStart(9)}${r.kvGBs.toFixed(3).padStart(9)}${`${(nai.seconds.median / r.seconds.median).toFixed(2)}x`.padStart(10)}`);
}
console.log(`tidarc/naive = ${ratio.toFixed(2)}x [goal >= ${GOAL_RATIO}x on CI's 2 cores: ${ratio >= GOAL_RATIO ? 'met' : 'MISSED'}]; threading gain ${ratios.threadingGain.toFixed(2)}x, tiling gain (1 thread) ${ratios.tidarc1OverNaive.toFixed(2)}x`);
lib.close();
native.closeLibrary(naiveLib);
