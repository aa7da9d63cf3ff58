/**
 * CPU matmul (src/runtime/ops.ts matmul, runtime/src/ops_cpu.cc) at the TiDAR step sizes:
 * T = 1 (AR), 20, 72, 272 (k = 4, 8, 16) token rows, K = N = 4096, bf16 weights, against a
 * naive triple loop (C++, same compiler and flags, one thread) in the same run.
 *   1. build the naive loop (a small program: reads x and W, writes out, prints its best time);
 *   2. prove: every run's output against the naive output (error bound of fp32 sums);
 *   3. time: matmul with all threads and with one, >= 5 runs and >= 1 s each, median.
 * The naive loop computes only the first `cols` weight rows when T is large (its run time is
 * quadratic in patience); GFLOP/s compares rates, so the ratio stays meaningful.
 *
 *   npx tsx bench/ops-matmul.ts        # needs `npm run build:native` and g++
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CPU_FLAGS } from '../src/build/compile-model.js';
import { findCxx } from '../src/build/toolchain.js';
import { toBf16Bits } from '../src/util/dtype.js';
import { cpuThreadCount, matmul, type WeightMatrix } from '../src/runtime/ops.js';
import { seededRandom } from '../src/util/random.js';
import { summarize } from '../src/bench/stats.js';

const K = 4096;
const N = 4096;
const TOKENS = [1, 20, 72, 272];
/** Naive work per T, in multiply-adds: enough to time, small enough to wait for. */
const NAIVE_MACS = 4e8;

const NAIVE_CPP = String.raw`
// Naive x W^T: one output at a time, k in order, one thread. Args: in-file out-file T K N cols reps.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
static float bf16(uint16_t h) { uint32_t u = uint32_t(h) << 16; float f; std::memcpy(&f, &u, 4); return f; }
int main(int argc, char** argv) {
  long T = atol(argv[3]), K = atol(argv[4]), N = atol(argv[5]), cols = atol(argv[6]), reps = atol(argv[7]);
  std::vector<float> x(T * K), out(T * cols);
  std::vector<uint16_t> w(N * K);
  FILE* f = fopen(argv[1], "rb");
  if (!f || fread(x.data(), 4, x.size(), f) != x.size() || fread(w.data(), 2, w.size(), f) != w.size()) return 2;
  fclose(f);
  double best = 1e30;
  for (long r = 0; r < reps; r++) {
    auto t0 = std::chrono::steady_clock::now();
    for (long t = 0; t < T; t++)
      for (long n = 0; n < cols; n++) {
        float s = 0.f;
        for (long k = 0; k < K; k++) s += x[t * K + k] * bf16(w[n * K + k]);
        out[t * cols + n] = s;
      }
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (sec < best) best = sec;
  }
  f = fopen(argv[2], "wb");
  fwrite(out.data(), 4, out.size(), f);
  fclose(f);
  printf("%.9f\n", best);
}
`;

const work = mkdtempSync(join(tmpdir(), 'tidarc-bench-matmul-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const run = promisify(execFile);

// ---- 1. naive baseline ------------------------------------------------------------------------
const cxx = await findCxx();
if (!cxx.found) throw new Error(`no C++ compiler: ${cxx.reason}`);
writeFileSync(join(work, 'naive.cc'), NAIVE_CPP);
await run(cxx.tool.path, [...CPU_FLAGS, join(work, 'naive.cc'), '-o', join(work, 'naive')]);

const rng = seededRandom(2025);
const wValues = new Float32Array(N * K);
for (let i = 0; i < wValues.length; i++) wValues[i] = rng.normal() * 0.02;
const w: WeightMatrix = { data: toBf16Bits(wValues), dtype: 'bf16', rows: N, cols: K };

function timeRuns(fn: () => void): number {
  fn(); // warm-up (page faults, the pool)
  const seconds: number[] = [];
  const start = performance.now();
  while (seconds.length < 5 || performance.now() - start < 1000) {
    const t0 = performance.now();
    fn();
    seconds.push((performance.now() - t0) / 1000);
  }
  return summarize(seconds).median;
}

/** Largest |ours - naive| in units of the fp32 error bound of a K-term sum (must be <= 1). */
function errorRatio(ours: Float32Array, naive: Float32Array, x: Float32Array, T: number, cols: number, checked: number): number {
  let worst = 0;
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < checked; n++) {
      let mag = 0;
      for (let k = 0; k < K; k++) mag += Math.abs(x[t * K + k]! * wValues[n * K + k]!);
      // naive: K sequential roundings; ours: ceil(K/16) + 4: together <= (K + K/16 + 6) ulps.
      const bound = (K + K / 16 + 6) * 2 ** -24 * mag;
      worst = Math.max(worst, Math.abs(ours[t * N + n]! - naive[t * cols + n]!) / bound);
    }
  }
  return worst;
}

const threads = cpuThreadCount();
const load0 = loadavg()[0]!;
const rows: { T: number; all: number; one: number; naive: number; cols: number; err: number }[] = [];
for (const T of TOKENS) {
  const x = new Float32Array(T * K);
  for (let i = 0; i < x.length; i++) x[i] = rng.normal();
  const out = new Float32Array(T * N);
  const cols = Math.min(N, Math.ceil(NAIVE_MACS / (T * K)));
  // ---- 2. prove (naive output vs ours), then 3. time ----
  const input = join(work, `in-${T}.bin`);
  writeFileSync(input, Buffer.concat([Buffer.from(x.buffer), Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength)]));
  const naiveOut = join(work, `out-${T}.bin`);
  const { stdout } = await run(join(work, 'naive'), [input, naiveOut, String(T), String(K), String(N), String(cols), '2']);
  const naiveSeconds = Number(stdout.trim());
  const bytes = readFileSync(naiveOut);
  const naive = new Float32Array(bytes.byteLength / 4);
  new Uint8Array(naive.buffer).set(bytes);
  const all = timeRuns(() => matmul(x, w, null, out, 0));
  const err = errorRatio(out, naive, x, T, cols, Math.min(cols, 64));
  const one = timeRuns(() => matmul(x, w, null, out, 1));
  if (err > 1) throw new Error(`T = ${T}: matmul and the naive loop differ beyond the fp32 bound (${err.toFixed(2)} x bound)`);
  rows.push({ T, all, one, naive: naiveSeconds * (N / cols), cols, err });
}

const gflops = (T: number, s: number): number => (2 * T * K * N) / s / 1e9;
const cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown';
console.log(`matmul x[T, ${K}] W[${N}, ${K}]^T, bf16 weights; ${availableParallelism()} cores (${cpu}), pool ${threads} threads;`);
console.log(`1-min load average ${load0.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after (other processes slow every figure)`);
console.log(`weight bytes per call ${(2 * K * N / 1e6).toFixed(1)} MB; FLOPs 2*T*K*N; naive: ${CPU_FLAGS.join(' ')}, 1 thread\n`);
console.log(`${'T'.padStart(4)}${'ms (all)'.padStart(10)}${'GFLOP/s'.padStart(9)}${'W GB/s'.padStart(8)}${'ms (1 thr)'.padStart(12)}${'GFLOP/s'.padStart(9)}${'naive GFLOP/s'.padStart(15)}${'naive cols'.padStart(12)}${'all/naive'.padStart(11)}${'1thr/naive'.padStart(12)}${'err/bound'.padStart(11)}`);
for (const r of rows) {
  console.log(`${String(r.T).padStart(4)}${(r.all * 1e3).toFixed(2).padStart(10)}${gflops(r.T, r.all).toFixed(1).padStart(9)}${((2 * K * N) / r.all / 1e9).toFixed(1).padStart(8)}` +
    `${(r.one * 1e3).toFixed(2).padStart(12)}${gflops(r.T, r.one).toFixed(1).padStart(9)}${gflops(r.T, r.naive).toFixed(2).padStart(15)}${String(r.cols).padStart(12)}` +
    `${`${(r.naive / r.all).toFixed(1)}x`.padStart(11)}${`${(r.naive / r.one).toFixed(1)}x`.padStart(12)}${r.err.toFixed(3).padStart(11)}`);
}
