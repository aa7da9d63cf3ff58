/**
 * End-to-end generation on the CPU backend: tokens/s of AR and of TiDAR (k = 4, 8) with the
 * tokens per forward (T/NFE) they reached, for two random-weight models written by init-model:
 *   - tiny: examples/tiny.json (2 layers, hidden 256) with draft lengths [4, 8];
 *   - m100: a Qwen3-style ~100M-parameter model (12 layers, hidden 768, 12 query / 4 KV heads,
 *     head dim 64, intermediate 3072, byte vocabulary of 260).
 * Prompt of 64 tokens, 128 new tokens, greedy, lossless verification (beta = 1), EOS ignored;
 * each configuration runs --runs times (default 3) and the median run by tokens/s is reported.
 * Then the per-step cost of TiDAR against AR at the prefix of mid-generation (src/bench/step-bench.ts).
 *
 * Random weights make drafts rarely right (greedy output repeats one token; drafts match only
 * when the diffusion slots predict the repeat), so T/NFE is ~1-1.7 and TiDAR is SLOWER than AR
 * here: its k(k+1) in-step tokens are not free on a CPU. The step-cost ratio is the T/NFE a
 * trained model must reach for TiDAR to break even on this machine.
 *
 *   npm run bench:e2e [-- --threads N --runs N]   # = tsx bench/e2e-cpu.ts; needs `npm run build:native` and g++
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchStep, type StepBenchResult } from '../src/bench/step-bench.js';
import type { ModelSpec } from '../src/ir/model.js';
import { loadModelSpecFile } from '../src/ir/model-file.js';
import { initModel } from '../src/model/init-model.js';
import { type GenerateResult, loadModel } from '../src/load/load-model.js';
import { packageRoot } from '../src/util/paths.js';
import { cpuThreadCount } from '../src/runtime/ops.js';

const DRAFTS = [4, 8];
const PROMPT_TOKENS = 64;
const NEW_TOKENS = 128;
const SEED = 1;

const { values: args } = parseArgs({ options: { threads: { type: 'string', default: '0' }, runs: { type: 'string', default: '3' } } });
const threads = Number(args.threads);
const runs = Number(args.runs);
if (!Number.isInteger(threads) || threads < 0 || !Number.isInteger(runs) || runs < 1) throw new Error('usage: tsx bench/e2e-cpu.ts [--threads N (0 = all)] [--runs N >= 1]');

const root = packageRoot();
const work = mkdtempSync(join(tmpdir(), 'tidarc-bench-e2e-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

const tiny: ModelSpec = { ...(await loadModelSpecFile(join(root, 'examples/tiny.json'))), draftLengths: DRAFTS };
const m100: ModelSpec = {
  name: 'm100', family: 'qwen3', layers: 12, hiddenSize: 768, queryHeads: 12, kvHeads: 4, headDim: 64, intermediateSize: 3072,
  vocabSize: 260, ropeTheta: 1_000_000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true, dtype: 'bf16', maskTokenId: 259,
  draftLengths: DRAFTS, maxPositionEmbeddings: 4096,
};

// 64 bytes of code: the byte tokenizer makes one token of each.
const PROMPT = 'def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n'.slice(0, PROMPT_TOKENS);

interface RunFigures {
  readonly mode: 'ar' | 'tidar';
  readonly draft: number;
  readonly tokens: number;
  readonly nfe: number;
  readonly tokensPerNfe: number;
  readonly prefillMs: number;
  readonly decodeMs: number;
  readonly tokensPerSecond: number;
  readonly decodeTokensPerSecond: number;
  /** Greedy TiDAR must give the AR tokens (lossless); AR: true. */
  readonly sameTokensAsAr: boolean;
  readonly acceptHistogram: readonly number[];
  /** tokens/s of every run, in order. */
  readonly runsTokensPerSecond: readonly number[];
}

interface ModelFigures {
  readonly model: string;
  readonly parameters: number;
  readonly initSeconds: number;
  readonly generate: RunFigures[];
  readonly steps: StepBenchResult[];
}

const loadBefore = loadavg()[0]!;
const results: ModelFigures[] = [];
for (const spec of [tiny, m100]) {
  let t = performance.now();
  const dir = join(work, spec.name);
  const init = await initModel({ spec, outDir: dir, seed: SEED });
  const initSeconds = (performance.now() - t) / 1000;
  t = performance.now();
  const model = await loadModel(dir, { backend: 'cpu', threads, log: () => undefined });
  console.log(`${spec.name}: ${init.parameters.toLocaleString('en-US')} parameters, written in ${initSeconds.toFixed(1)} s, loaded (kernels compiled or cached) in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  const prompt = model.tokenizer.encode(PROMPT);
  if (prompt.length !== PROMPT_TOKENS) throw new Error(`the prompt is ${prompt.length} tokens, expected ${PROMPT_TOKENS}`);
  const generate: RunFigures[] = [];
  let arTokens: number[] | undefined;
  try {
    // Warm-up: JIT, first-touch of the weights, the kernel library's first calls.
    for (const mode of ['ar', 'tidar'] as const) await model.generate({ prompt, maxTokens: 8, mode, draft: Math.max(...DRAFTS), stopAtEos: false });
    for (const [mode, draft] of [['ar', 0], ...DRAFTS.map((k) => ['tidar', k] as const)] as const) {
      const all: GenerateResult[] = [];
      for (let r = 0; r < runs; r++) {
        all.push(await model.generate({ prompt, maxTokens: NEW_TOKENS, mode, ...(mode === 'tidar' ? { draft } : {}), temperature: 0, trustAr: 1, stopAtEos: false }));
      }
      const sorted = [...all].sort((a, b) => a.tokensPerSecond - b.tokensPerSecond);
      const g = sorted[Math.floor((sorted.length - 1) / 2)]!;
      if (mode === 'ar') arTokens = g.tokens;
      const same = all.every((x) => JSON.stringify(x.tokens) === JSON.stringify(arTokens));
      generate.push({
        mode, draft, tokens: g.tokens.length, nfe: g.nfe, tokensPerNfe: g.tokensPerNfe, prefillMs: g.prefillMs, decodeMs: g.decodeMs,
        tokensPerSecond: g.tokensPerSecond, decodeTokensPerSecond: (g.tokens.length - 1) / (g.decodeMs / 1000),
        sameTokensAsAr: same, acceptHistogram: g.acceptHistogram, runsTokensPerSecond: all.map((x) => x.tokensPerSecond),
      });
    }
  } finally {
    model.close();
  }
  // Per-step cost at mid-generation: prefix = prompt + half the new tokens.
  const steps: StepBenchResult[] = [];
  for (const k of DRAFTS) steps.push(await benchStep({ dir, draft: k, prefix: PROMPT_TOKENS + NEW_TOKENS / 2, backend: 'cpu', threads, log: () => undefined }));
  results.push({ model: spec.name, parameters: init.parameters, initSeconds, generate, steps });
}
const loadAfter = loadavg()[0]!;

const usedThreads = threads > 0 ? Math.min(threads, cpuThreadCount()) : cpuThreadCount();
const date = new Date().toISOString().slice(0, 10);
const resultPath = join(root, 'bench/results', `e2e-cpu-${date}.json`);
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(resultPath, `${JSON.stringify({
  benchmark: 'e2e-cpu', date,
  machine: { cpuModel: cpus()[0]?.model ?? 'unknown', cores: cpus().length, threads: usedThreads, loadAverage1m: { before: loadBefore, after: loadAfter }, node: process.version },
  settings: { promptTokens: PROMPT_TOKENS, newTokens: NEW_TOKENS, decoding: 'greedy, beta = 1 (lossless), EOS ignored', drafts: DRAFTS, runs, initSeed: SEED, initStd: 0.02, stepPrefix: PROMPT_TOKENS + NEW_TOKENS / 2 },
  models: { tiny, m100 },
  results,
}, null, 2)}\n`);

console.log(`\nCPU, ${usedThreads} threads (${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} cores; 1-min load ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after); prompt ${PROMPT_TOKENS} tokens, ${NEW_TOKENS} new, greedy; median of ${runs} runs by tokens/s`);
const head = `${'model'.padEnd(7)}${'mode'.padEnd(10)}${'tokens'.padStart(7)}${'NFE'.padStart(6)}${'T/NFE'.padStart(7)}${'prefill ms'.padStart(12)}${'decode ms'.padStart(11)}${'tok/s'.padStart(9)}${'decode tok/s'.padStart(14)}${'vs AR'.padStart(8)}${'=AR tokens'.padStart(12)}`;
console.log(head);
for (const m of results) {
  const ar = m.generate.find((g) => g.mode === 'ar')!;
  for (const g of m.generate) {
    const label = g.mode === 'ar' ? 'ar' : `tidar k=${g.draft}`;
    console.log(`${m.model.padEnd(7)}${label.padEnd(10)}${String(g.tokens).padStart(7)}${String(g.nfe).padStart(6)}${g.tokensPerNfe.toFixed(2).padStart(7)}${g.prefillMs.toFixed(1).padStart(12)}${g.decodeMs.toFixed(1).padStart(11)}${g.tokensPerSecond.toFixed(1).padStart(9)}${g.decodeTokensPerSecond.toFixed(1).padStart(14)}${`${(g.tokensPerSecond / ar.tokensPerSecond).toFixed(2)}x`.padStart(8)}${(g.sameTokensAsAr ? 'yes' : 'NO').padStart(12)}`);
  }
}
console.log(`\nper-step cost at prefix L = ${PROMPT_TOKENS + NEW_TOKENS / 2} (tidarc bench-step: median step ms over >= 20 rounds and >= 2 s; break-even T/NFE = TiDAR step / AR step)`);
console.log(`${'model'.padEnd(7)}${'k'.padStart(3)}${'TiDAR ms'.padStart(10)}${'AR ms'.padStart(9)}${'ratio'.padStart(8)}${'reached T/NFE'.padStart(15)}${'outside TiDAR'.padStart(15)}${'outside AR'.padStart(12)}${'rounds'.padStart(8)}`);
const reached: number[] = [];
let anyWins = false;
for (const m of results) {
  for (const s of m.steps) {
    const g = m.generate.find((x) => x.mode === 'tidar' && x.draft === s.draft)!;
    reached.push(g.tokensPerNfe);
    anyWins ||= g.tokensPerNfe > s.ratio;
    console.log(`${m.model.padEnd(7)}${String(s.draft).padStart(3)}${s.tidar.stepMs.median.toFixed(2).padStart(10)}${s.ar.stepMs.median.toFixed(2).padStart(9)}${`${s.ratio.toFixed(2)}x`.padStart(8)}${g.tokensPerNfe.toFixed(2).padStart(15)}${`${(100 * s.tidar.outsideFraction).toFixed(1)}%`.padStart(15)}${`${(100 * s.ar.outsideFraction).toFixed(1)}%`.padStart(12)}${String(s.rounds).padStart(8)}`);
  }
}
console.log(`
Random weights (std 0.02): greedy output is one token repeated, and drafts are accepted only when the diffusion
slots happen to predict that repeat, so T/NFE is ${Math.min(...reached).toFixed(2)}-${Math.max(...reached).toFixed(2)} here, ${anyWins ? 'above the break-even ratio in some rows (TiDAR wins there)' : 'below every break-even ratio: TiDAR is slower than AR on this CPU'}.
The extra in-step tokens are not free on a CPU: a TiDAR step runs k(k+1) tokens (20 for k=4, 72 for k=8) through every
matmul, which costs the step ratio above (not ~1x as on a bandwidth-bound GPU). A trained model must reach a T/NFE above
that ratio for TiDAR to win here.
results: ${resultPath.slice(root.length + 1)}`);
