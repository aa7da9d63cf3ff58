/**
 * `tidarc run DIR --prompt TEXT`: generates from a checkpoint with the TiDAR loop (or plain
 * AR), streaming the text as it is produced; --json prints one result object at the end.
 */
import type { Command } from 'commander';
import { TidarcError } from '../../errors.js';
import { type BackendChoice, type GenerateResult, checkContext, loadModel, requireMaskToken } from '../../load/load-model.js';
import { checkpointDirOf } from '../../model/model-input.js';
import { MAX_DRAFT_COMPILE } from '../../ir/model.js';
import { MAX_CPU_THREADS } from '../../runtime/attention-checks.js';
import type { CliIo } from '../io.js';
import { checkTunedOption, optionText, parseIntegerOption, parseNumberOption } from '../options.js';

interface RunFlags {
  prompt?: string;
  maxTokens: string;
  mode: string;
  draft?: string;
  temperature: string;
  topP: string;
  topK: string;
  seed: string;
  trustAr: string;
  backend: string;
  threads?: string;
  tuned?: string;
  graphs: boolean;
  pdl: boolean;
  foldNorms: boolean;
  json?: boolean;
  ignoreEos?: boolean;
  maskToken?: string;
  progress?: boolean;
}

const HELP_AFTER = `
Examples:
  $ tidarc init-model examples/tiny.json --seed 1 --out models/tiny-random
  $ tidarc run models/tiny-random --prompt "def main(" --max-tokens 64
  $ tidarc run models/tiny-random --prompt "hello" --mode ar --json
  $ tidarc run models/tiny-random --prompt "hello" --temperature 0.8 --top-p 0.95 --top-k 50 --seed 7

Greedy decoding with --trust-ar 1 (the default) is lossless: TiDAR gives token for token the
greedy AR output of the same model; with --temperature > 0 it samples exactly the AR
distribution. --json prints {"text", "tokens", "nfe", "tokensPerNfe", "acceptHistogram",
"prefillMs", "decodeMs", "tokensPerSecond", "backend", "mode", "draft"}; interrupted while it
decodes (Ctrl-C, SIGTERM: exit code 130, 143) it prints what it generated, {"text", "tokens",
"interrupted": "SIGINT", "backend", "mode"}.

The first run of a model compiles its kernels (seconds; minutes with nvcc) into the kernel
cache ($TIDARC_CACHE, default ~/.cache/tidarc); what is compiled, and how many of how many, is
printed on stderr as it goes (with --json only with --progress).
`;


export function registerRunCommand(program: Command, io: CliIo): void {
  program
    .command('run')
    .description('Generate text from a checkpoint with the TiDAR decoding loop (or plain AR), streaming it.')
    .argument('<dir>', 'a checkpoint directory (config.json, model.safetensors, tokenizer.json) or its config.json')
    .option('--prompt <text>', 'the prompt, e.g. "def main("')
    .option('--max-tokens <n>', 'tokens to generate, e.g. 200', '128')
    .option('--mode <mode>', 'tidar (draft and verify in one forward) or ar (one token a forward)', 'tidar')
    .option('--draft <k>', "draft length k, one the model was compiled for (default: the model's largest)")
    .option('--temperature <t>', '0 = greedy; > 0 samples, e.g. 0.8', '0')
    .option('--top-p <p>', 'nucleus sampling mass in (0, 1], e.g. 0.95', '1')
    .option('--top-k <k>', 'keep the k most likely tokens before top-p (0 = all), e.g. 50', '0')
    .option('--seed <s>', 'seed of the sampler, e.g. 7', '0')
    .option('--trust-ar <beta>', 'verifier mix: 1 trusts the AR head (lossless), 0 the diffusion head', '1')
    .option('--mask-token <id>', 'the mask token id TiDAR feeds, for a checkpoint whose config.json names none (--mode ar needs none)')
    .option('--backend <name>', 'auto, cpu or cuda', 'auto')
    .option('--threads <n>', 'CPU threads (default: all), e.g. 2')
    .option('--tuned <db>', 'use the tiles and per-shape call parameters tidarc tune recorded in this database')
    .option('--no-graphs', 'cuda: launch every kernel of a decode step from the host instead of replaying its CUDA graph (comparison, debugging; cpu: no effect)')
    .option('--no-fold-norms', 'cuda: keep every RMSNorm its own launch instead of folding it into the GEMMs around it (folded by default for bf16 models; cpu: no effect)')
    .option('--no-pdl', 'cuda: launch the kernels without programmatic dependent launch (on by default where the kernels, device and driver allow it; cpu: no effect)')
    .option('--ignore-eos', 'keep generating past the end-of-text token (benchmarks)')
    .option('--json', 'print one JSON result object at the end instead of streaming text')
    .option('--progress', 'with --json: still print the first-use compile progress on stderr')
    .addHelpText('after', HELP_AFTER)
    .action(async (dir: string, flags: RunFlags, command: Command) => {
      if (flags.prompt === undefined) throw new TidarcError('invalid-argument', 'a prompt is required', { field: '--prompt', allowed: 'any text, e.g. --prompt "hello"' });
      // Commander takes the next word as the value: `--prompt --json` (the text left out) would
      // generate from the prompt "--json" and print no JSON. An option name alone is refused.
      if (command.options.some((o) => o.long === flags.prompt || o.short === flags.prompt)) {
        throw new TidarcError('invalid-argument', 'the prompt is an option name of this command (was the text left out?)', {
          field: '--prompt', value: optionText(flags.prompt), allowed: 'any other text, e.g. --prompt "hello"',
        });
      }
      if (flags.mode !== 'tidar' && flags.mode !== 'ar') throw new TidarcError('invalid-argument', 'unknown mode', { field: '--mode', value: optionText(flags.mode), allowed: 'tidar, ar' });
      if (!['auto', 'cpu', 'cuda'].includes(flags.backend)) throw new TidarcError('invalid-argument', 'unknown backend', { field: '--backend', value: optionText(flags.backend), allowed: 'auto, cpu, cuda' });
      const options = {
        prompt: flags.prompt,
        maxTokens: parseIntegerOption('--max-tokens', flags.maxTokens, 1, 1 << 20),
        mode: flags.mode,
        ...(flags.draft === undefined ? {} : { draft: parseIntegerOption('--draft', flags.draft, 1, MAX_DRAFT_COMPILE) }),
        temperature: parseNumberOption('--temperature', flags.temperature, 0, 100),
        topP: parseNumberOption('--top-p', flags.topP, 0, 1, { aboveMin: true }),
        topK: parseIntegerOption('--top-k', flags.topK, 0, 2 ** 31 - 1),
        seed: parseIntegerOption('--seed', flags.seed, 0, 2 ** 31 - 1),
        trustAr: parseNumberOption('--trust-ar', flags.trustAr, 0, 1),
        stopAtEos: !flags.ignoreEos,
      } as const;
      const model = await loadModel(await checkpointDirOf(dir), {
        backend: flags.backend as BackendChoice, backendField: '--backend',
        // Before the kernels compile: a --draft without kernels and a --max-tokens no prompt can fit are refused at once.
        ...(flags.maskToken === undefined ? {} : { maskTokenId: parseIntegerOption('--mask-token', flags.maskToken, 0, 2 ** 31 - 1), maskTokenField: '--mask-token' }),
        checkSpec: (spec, checkpoint) => {
          if (options.mode === 'tidar') requireMaskToken(checkpoint.maskTokenId, { field: '--mask-token', allowed: 'an id of its own in this vocabulary (e.g. a reserved special token), or --mode ar' });
          if (options.mode === 'tidar' && options.draft !== undefined && !spec.draftLengths.includes(options.draft)) {
            throw new TidarcError('invalid-argument', 'no kernels for this draft length', { field: '--draft', value: options.draft, allowed: `a draft length the model was compiled for: ${spec.draftLengths.join(', ')}` });
          }
          const k = options.mode === 'tidar' ? (options.draft ?? Math.max(...spec.draftLengths)) : 0;
          checkContext(spec, undefined, options.maxTokens, k, '--max-tokens');
          // The prompt's tokens too (the kernels' compile takes seconds, minutes with nvcc): an
          // empty prompt, or one the context cannot hold with --max-tokens, is refused at once.
          const promptTokens = checkpoint.tokenizer.encode(options.prompt).length;
          if (promptTokens === 0) throw new TidarcError('invalid-argument', 'the prompt is empty (no tokens)', { field: '--prompt', allowed: 'text of at least one token, e.g. --prompt "hello"' });
          checkContext(spec, promptTokens, options.maxTokens, k);
        },
        ...(flags.threads === undefined ? {} : { threads: parseIntegerOption('--threads', flags.threads, 1, MAX_CPU_THREADS) }),
        ...(flags.tuned === undefined ? {} : { tuned: checkTunedOption(flags.tuned) }),
        graphs: flags.graphs,
        pdl: flags.pdl,
        foldNorms: flags.foldNorms,
        // Progress of a first-use compile on stderr; under --json only what --tuned set, unless --progress.
        log: (l: string) => void ((!flags.json || flags.progress || (flags.tuned !== undefined && l.startsWith('tuned'))) && io.stderr(`${l}\n`)),
      });
      let last = '';  // the text's last piece written
      const tokens: number[] = [];
      let text = '';
      // Ctrl-C or SIGTERM while it decodes: the CLI's handler (bin/tidarc.js) exits at once, 130
      // or 143. What was generated is not lost: the streamed text gets its last newline (the
      // "interrupted" line is then a line of its own), and --json prints what it has, marked
      // "interrupted". Only where that handler listens: an in-process caller keeps the signals' default.
      const onSignal = (signal: NodeJS.Signals): void => {
        if (flags.json) io.stdout(`${JSON.stringify({ text, tokens, interrupted: signal, backend: model.backend, mode: options.mode })}\n`);
        else if (last !== '' && !last.endsWith('\n')) io.stdout('\n');
      };
      const signals = (['SIGINT', 'SIGTERM'] as const).filter((s) => process.listenerCount(s) > 0);
      for (const s of signals) process.prependListener(s, onSignal);
      // A close that fails after the run failed (after a kernel fault every free is refused) must not hide the run's own error.
      let failed = true;
      try {
        const stream = model.stream(options);
        for (;;) {
          const r = await stream.next();
          if (r.done) {
            const res = r.value;
            if (flags.json) io.stdout(`${JSON.stringify(res)}\n`);
            else {
              // The text ends with one newline (a file or pipe gets a complete last line), none added to text that ends with one;
              // the summary on stderr then starts a line of its own.
              if (last !== '' && !last.endsWith('\n')) io.stdout('\n');
              io.stderr(`${runSummary(res, model.backend)}\n`);
            }
            break;
          }
          tokens.push(...r.value.tokens);
          text += r.value.text;
          if (!flags.json && r.value.text !== '') {
            io.stdout(r.value.text);
            last = r.value.text;
          }
        }
        failed = false;
      } finally {
        for (const s of signals) process.removeListener(s, onSignal);
        try {
          model.close();
        } catch (e) {
          if (!failed) throw e;
        }
      }
    });
}

/**
 * The line after the text: `[tidar k=4, cpu] 120 tokens in 57 forwards (2.11 tokens/forward),
 * 907.3 tokens/s; tokens per step: 1 in 25 steps, 2 in 11, 3 in 5, 4 in 15`. The histogram is
 * TiDAR's (a step makes 1 to k tokens final); AR makes one token a forward and has none.
 */
export function runSummary(res: GenerateResult, backend: string): string {
  const head = `[${res.mode}${res.mode === 'tidar' ? ` k=${res.draft}` : ''}, ${backend}] ${res.tokens.length} tokens in ${res.nfe} forwards (${res.tokensPerNfe.toFixed(2)} tokens/forward), ${res.tokensPerSecond.toFixed(1)} tokens/s`;
  const steps = res.acceptHistogram.flatMap((count, tokens) => (tokens === 0 ? [] : [`${tokens} in ${count}${tokens === 1 ? ` step${count === 1 ? '' : 's'}` : ''}`]));
  return res.mode === 'tidar' && steps.length > 0 ? `${head}; tokens per step: ${steps.join(', ')}` : head;
}
