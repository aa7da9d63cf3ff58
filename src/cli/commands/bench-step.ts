/**
 * `tidarc bench-step DIR --draft K --prefix L`: the latency of one TiDAR decode step against
 * one AR step at the same committed prefix, the break-even tokens per forward, and the share
 * of step time spent outside the native kernels and operators. See src/bench/step-bench.ts.
 */
import type { Command } from 'commander';
import { TidarcError } from '../../errors.js';
import { type FillMethod, OUTSIDE_GOAL, REAL_PREFILL_MAX, REPEAT_SOURCE, type StepBenchOptions, type StepBenchResult, type StepStats, benchStep } from '../../bench/step-bench.js';
import type { BackendChoice } from '../../load/load-model.js';
import { MAX_DRAFT_COMPILE } from '../../ir/model.js';
import { checkpointDirOf } from '../../model/model-input.js';
import { MAX_CPU_THREADS } from '../../runtime/attention-checks.js';
import type { CliIo } from '../io.js';
import { checkTunedOption, optionText, parseIntegerOption, parseNumberOption } from '../options.js';

interface BenchStepFlags {
  draft?: string;
  prefix?: string;
  backend: string;
  threads?: string;
  tuned?: string;
  graphs: boolean;
  pdl: boolean;
  foldNorms: boolean;
  reps: string;
  minSeconds: string;
  warmup: string;
  fill: string;
  seed: string;
  temperature: string;
  topP: string;
  topK: string;
  json?: boolean;
}

const HELP_AFTER = `
Examples:
  $ tidarc init-model examples/tiny.json --seed 1 --out models/tiny-random
  $ tidarc bench-step models/tiny-random --draft 4 --prefix 256
  $ tidarc bench-step models/m100 --draft 8 --prefix 4096 --threads 2 --reps 30 --json

Both steps run the real decoding path (forward, lm_head argmax, verification, commit) with a
committed prefix of L random tokens; after every step the cache length goes back to L. The
prefix is a real prefill up to ${REAL_PREFILL_MAX} tokens (--fill auto), beyond that a prefill of
${REPEAT_SOURCE} tokens whose K/V is repeated (the same attention work). TiDAR and AR steps alternate:
warm-up rounds, then at least --reps rounds and --min-seconds. "outside" is the step's wall time
not spent inside native calls (kernels and operators): the host loop and the JS/native crossings
(goal <= ${OUTSIDE_GOAL * 100}%). The roofline of each step is max((weight + KV bytes) / the copy
bandwidth, FLOPs / the matmul rate), both measured in the same run; "step/roof" is the median
step over it. On cuda, GPU ms is the time between CUDA events around the step. --json prints
one object with every figure (per step kind: launchesPerStep, hostMs, gpuMs, rooflineMs,
rooflineRatio).
`;

export function registerBenchStepCommand(program: Command, io: CliIo): void {
  program
    .command('bench-step')
    .description('Time one TiDAR decode step against one AR step at the same prefix length, on the cpu or cuda backend (--backend).')
    .argument('<dir>', 'a checkpoint directory (config.json, model.safetensors, tokenizer.json) or its config.json')
    .option('--draft <k>', "draft length k, one the model was compiled for (default: the model's largest)")
    .option('--prefix <L>', 'committed prefix length in tokens, e.g. 1024 (required)')
    .option('--backend <name>', 'auto, cpu or cuda (auto: cuda when usable, see tidarc doctor)', 'auto')
    .option('--threads <n>', 'CPU threads (default: all), e.g. 2')
    .option('--tuned <db>', 'use the tiles and per-shape call parameters tidarc tune recorded in this database')
    .option('--no-graphs', 'cuda: time the steps launched kernel by kernel from the host instead of replayed as CUDA graphs (cpu: no effect)')
    .option('--no-fold-norms', 'cuda: time the steps with every RMSNorm its own launch instead of folded into the GEMMs around it (folded by default for bf16 models; cpu: no effect)')
    .option('--no-pdl', 'cuda: launch the kernels without programmatic dependent launch (PDL is on by default where the kernels, device and driver allow it; cpu: no effect)')
    .option('--reps <n>', 'timed rounds at least (one TiDAR and one AR step each)', '20')
    .option('--min-seconds <s>', 'and time at least this long', '2')
    .option('--warmup <n>', 'untimed rounds first', '3')
    .option('--fill <how>', `auto, prefill (real prefill of all L tokens) or repeat (${REPEAT_SOURCE} tokens' K/V repeated)`, 'auto')
    .option('--seed <s>', 'seed of the random prefix ids and of the sampler', '0')
    .option('--temperature <t>', '0 = greedy steps; > 0 times sampled steps (top-p, top-k, lossless acceptance), e.g. 0.8', '0')
    .option('--top-p <p>', 'nucleus sampling mass in (0, 1], with --temperature > 0', '1')
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off), with --temperature > 0', '0')
    .option('--json', 'print one JSON object with every figure')
    .addHelpText('after', HELP_AFTER)
    .action(async (dir: string, flags: BenchStepFlags) => {
      if (flags.prefix === undefined) throw new TidarcError('invalid-argument', 'a prefix length is required', { field: '--prefix', allowed: 'a token count, e.g. --prefix 1024' });
      if (!['auto', 'cpu', 'cuda'].includes(flags.backend)) throw new TidarcError('invalid-argument', 'unknown backend', { field: '--backend', value: optionText(flags.backend), allowed: 'auto, cpu, cuda' });
      if (!['auto', 'prefill', 'repeat'].includes(flags.fill)) throw new TidarcError('invalid-argument', 'unknown fill method', { field: '--fill', value: optionText(flags.fill), allowed: 'auto, prefill, repeat' });
      const minSeconds = Number(flags.minSeconds);
      if (flags.minSeconds.trim() === '' || !(minSeconds >= 0 && minSeconds <= 3600)) throw new TidarcError('invalid-argument', 'invalid value', { field: '--min-seconds', value: optionText(flags.minSeconds), allowed: 'a number from 0 to 3600' });
      const result = await benchStep({
        dir: await checkpointDirOf(dir),
        ...(flags.draft === undefined ? {} : { draft: parseIntegerOption('--draft', flags.draft, 1, MAX_DRAFT_COMPILE) }),
        prefix: parseIntegerOption('--prefix', flags.prefix, 1, 1 << 20),
        backend: flags.backend as BackendChoice,
        ...(flags.threads === undefined ? {} : { threads: parseIntegerOption('--threads', flags.threads, 1, MAX_CPU_THREADS) }),
        // With --tuned, say what the database set (the compile's other lines stay quiet).
        ...(flags.tuned === undefined ? {} : { tuned: checkTunedOption(flags.tuned), log: (l: string) => void (l.startsWith('tuned') && io.stderr(`${l}\n`)) }),
        graphs: flags.graphs,
        pdl: flags.pdl,
        foldNorms: flags.foldNorms,
        reps: parseIntegerOption('--reps', flags.reps, 1, 1_000_000),
        minSeconds,
        warmup: parseIntegerOption('--warmup', flags.warmup, 0, 1000),
        fill: flags.fill as FillMethod,
        seed: parseIntegerOption('--seed', flags.seed, 0, 2 ** 31 - 1),
        sampling: samplingOf(flags),
        optionNames: { draft: '--draft', prefix: '--prefix', backend: '--backend' },
      });
      io.stdout(flags.json ? `${JSON.stringify(result)}\n` : renderStepBench(result));
    });
}

/** The steps' sampling from the flags: greedy unless --temperature > 0; top-k 0 is off. */
function samplingOf(flags: BenchStepFlags): NonNullable<StepBenchOptions['sampling']> {
  const topK = parseIntegerOption('--top-k', flags.topK, 0, 2 ** 31 - 1);
  return {
    temperature: parseNumberOption('--temperature', flags.temperature, 0, 100),
    topP: parseNumberOption('--top-p', flags.topP, 0, 1, { aboveMin: true }),
    ...(topK > 0 ? { topK } : {}),
  };
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

/** The human-readable report; every figure is also in the JSON. */
export function renderStepBench(r: StepBenchResult): string {
  const f = (x: number): string => (x >= 100 ? x.toFixed(1) : x >= 10 ? x.toFixed(2) : x.toFixed(3));
  const lines = [
    `${r.model} (${r.family}, ${r.layers} layers, ${r.parameters.toLocaleString('en-US')} parameters), ${r.backend} backend (${r.backendReason}), ${r.threads} threads, 1-min load ${r.loadAverage1m.toFixed(2)}`,
    `prefix L = ${r.prefix}: ${r.fill.description} (${f(r.fill.ms)} ms)`,
    `${r.warmupRounds} warm-up rounds, then ${r.rounds} rounds in ${r.seconds.toFixed(2)} s (TiDAR and AR steps alternating; cache length reset to L after each step; ${r.graphs ? 'each step one CUDA graph launch' : 'steps launched kernel by kernel'}; ${r.backend === 'cuda' ? (r.foldNorms ? 'norms folded; ' : `norms not folded: ${r.foldNormsWhy}; `) : ''}${r.backend === 'cuda' ? (r.pdl ? 'PDL on; ' : `PDL off: ${r.pdlReason}; `) : ''}${r.sampling.temperature === 0 ? 'greedy' : `sampled: temperature ${r.sampling.temperature}, top-p ${r.sampling.topP}, top-k ${r.sampling.topK ?? 'off'}`})`,
    '',
    `${'step'.padEnd(10)}${'tokens'.padStart(7)}${'median ms'.padStart(11)}${'p20 ms'.padStart(10)}${'p80 ms'.padStart(10)}${'kernels ms'.padStart(12)}${'operators ms'.padStart(14)}${'outside ms'.padStart(12)}${'outside'.padStart(9)}`,
    ...[r.tidar, r.ar].map((s: StepStats) => `${s.variant.padEnd(10)}${String(s.inStepTokens).padStart(7)}${f(s.stepMs.median).padStart(11)}${f(s.stepMs.p20).padStart(10)}${f(s.stepMs.p80).padStart(10)}${f(s.kernelMs).padStart(12)}${f(s.operatorsMs).padStart(14)}${f(s.outsideMs).padStart(12)}${pct(s.outsideFraction).padStart(9)}`),
    '',
    `TiDAR / AR step time = ${r.ratio.toFixed(2)}x: TiDAR k=${r.draft} breaks even with AR at ${r.breakEvenTokensPerForward.toFixed(2)} tokens per forward`,
    `${r.backend === 'cuda' ? 'outside GPU waits (host issue time: JS and driver calls)' : 'outside kernels and operators (host loop, JS/native crossings)'}: TiDAR ${pct(r.tidar.outsideFraction)}, AR ${pct(r.ar.outsideFraction)} [goal <= ${pct(r.outsideGoal.max)}: TiDAR ${r.outsideGoal.tidarMet ? 'met' : 'MISSED'}, AR ${r.outsideGoal.arMet ? 'met' : 'MISSED'}]`,
    ...[r.tidar, r.ar].map((s) => `  ${s.variant} native ms per step: ${Object.entries(s.nativeMs).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${f(v)}`).join(', ')} (${Math.round(s.nativeCallsPerStep)} calls)`),
    '',
    `roofline: max((weights + KV) / copy bandwidth, FLOPs / matmul rate); ${r.machine.how}`,
    `${'step'.padEnd(10)}${r.backend === 'cuda' ? 'launches' : 'calls'.padStart(8)}${'host ms'.padStart(10)}${(r.backend === 'cuda' ? 'GPU ms' : 'wall ms').padStart(10)}${'H<->D KiB'.padStart(11)}${'roofline ms'.padStart(13)}${'bound'.padStart(8)}${'step/roof'.padStart(11)}`,
    ...[r.tidar, r.ar].map((s) => `${s.variant.padEnd(10)}${s.launchesPerStep.toFixed(0).padStart(8)}${f(s.hostMs).padStart(10)}${f(s.gpuMs).padStart(10)}${(s.hostDeviceBytesPerStep / 1024).toFixed(1).padStart(11)}${f(s.rooflineMs).padStart(13)}${s.roofline.bound.padStart(8)}${`${s.rooflineRatio.toFixed(2)}x`.padStart(11)}`),
  ];
  return `${lines.join('\n')}\n`;
}
