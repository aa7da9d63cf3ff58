/**
 * `tidarc init-model <model.json|config.json> --seed S --out DIR [--std X] [--norm-std X]`: a random-weight
 * checkpoint directory (config.json, model.safetensors, tokenizer.json) that the runtime loads
 * like a downloaded one. Same seed, same bytes.
 */
import type { Command } from 'commander';
import { TidarcError } from '../../errors.js';
import { looksLikeHfConfig } from '../../ir/hf-config.js';
import type { ModelSpec } from '../../ir/model.js';
import { readJsonFile } from '../../ir/model-file.js';
import { validateModelSpec } from '../../ir/model-validate.js';
import { specFromCheckpointConfig } from '../../model/checkpoint.js';
import { DEFAULT_INIT_STD, MAX_INIT_STD, MAX_SEED, initModel, type InitModelResult, type InitProgress } from '../../model/init-model.js';
import type { CliIo } from '../io.js';
import { modelFileArgument, optionText, parseIntegerOption, parsePathOption } from '../options.js';

interface InitModelFlags {
  seed: string;
  out: string;
  std?: string;
  normStd?: string;
}

/** Progress lines start after this long, then come at most this often. */
const PROGRESS_AFTER_MS = 1000;

const HELP_AFTER = `
Examples:
  $ tidarc init-model examples/tiny.json --seed 1 --out models/tiny-random
  $ tidarc init-model examples/qwen2.5-1.5b.json --seed 7 --std 0.01 --out models/q25-random
  $ tidarc init-model ~/models/Qwen3-8B/config.json --seed 0 --out models/q3-random   # an HF config works too

Writes DIR/config.json (Hugging Face form, plus "tidar": {"mask_token_id", "draft_lengths", "name"}),
DIR/model.safetensors (the model's dtype; norm weights 1, or 1 + N(0, norm-std^2) with --norm-std,
everything else N(0, std^2)) and
DIR/tokenizer.json (byte-level: ids 0-255 are bytes, 256 <|endoftext|>, 257 <|pad|>, the mask token
<|mask|>). The directory is written atomically (an interrupted run leaves nothing behind); the same
seed gives byte-identical files. DIR is replaced only when it is empty or an earlier init-model
output (see the README's "Output directories and your data").
`;

export function registerInitModelCommand(program: Command, io: CliIo): void {
  program
    .command('init-model')
    .description('Write a random-weight checkpoint directory (Hugging Face layout) for a model.')
    .argument('<model>', 'a tidarc model.json or a Hugging Face config.json (or the checkpoint directory that holds it), e.g. examples/tiny.json')
    .requiredOption('--seed <n>', `PRNG seed, an integer from 0 to ${MAX_SEED}, e.g. 1`)
    .requiredOption('--out <dir>', 'output directory: new, empty or an earlier init-model output (nothing else is replaced), e.g. models/tiny-random')
    .option('--std <x>', `standard deviation of the non-norm weights, from 0 to ${MAX_INIT_STD} (default: ${DEFAULT_INIT_STD}), e.g. 0.01`)
    .option('--norm-std <x>', `standard deviation of the norm weights around 1, from 0 to ${MAX_INIT_STD} (default: 0, all ones), e.g. 0.2`)
    .addHelpText('after', HELP_AFTER)
    .action(async (modelPath: string, flags: InitModelFlags) => {
      const out = parsePathOption('--out', flags.out);
      const seed = parseIntegerOption('--seed', flags.seed, 0, MAX_SEED);
      const std = flags.std === undefined ? DEFAULT_INIT_STD : parseStd('--std', flags.std);
      const normStd = flags.normStd === undefined ? 0 : parseStd('--norm-std', flags.normStd);
      const spec = await loadSpec(modelFileArgument('<model>', modelPath, 'a tidarc model.json, a Hugging Face config.json, or the checkpoint directory that holds one'));
      const started = Date.now();
      let lastReport = started;
      const onProgress = (p: InitProgress): void => {
        const now = Date.now();
        if (now - started < PROGRESS_AFTER_MS || (now - lastReport < PROGRESS_AFTER_MS && p.tensorsDone < p.tensorCount)) return;
        lastReport = now;
        const percent = Math.floor((100 * p.bytesWritten) / p.totalBytes);
        io.stdout(`  ${percent}% (${p.tensorsDone}/${p.tensorCount} tensors, ${humanBytes(p.bytesWritten)} of ${humanBytes(p.totalBytes)})\n`);
      };
      const result = await initModel({ spec, outDir: out, seed, std, normStd, onProgress, optionNames: { seed: '--seed', std: '--std', normStd: '--norm-std', outDir: '--out' } });
      io.stdout(renderResult(result, seed, std, normStd));
    });
}

/** A model.json, or an HF config.json whose "tidar" object supplies mask token and draft lengths. */
async function loadSpec(path: string): Promise<ModelSpec> {
  const data = await readJsonFile(path);
  return looksLikeHfConfig(data) ? specFromCheckpointConfig(data, path, { requireMaskToken: true }) : validateModelSpec(data, path);
}

function parseStd(flag: '--std' | '--norm-std', text: string): number {
  const value = Number(text.trim());
  if (!/^\d*\.?\d+(e[+-]?\d+)?$/i.test(text.trim()) || !(value >= 0 && value <= MAX_INIT_STD)) {
    throw new TidarcError('invalid-argument', 'invalid value', { field: flag, value: optionText(text), allowed: `a number from 0 to ${MAX_INIT_STD}` });
  }
  return value;
}

function renderResult(r: InitModelResult, seed: number, std: number, normStd: number): string {
  const s = r.spec;
  const lines = [
    `wrote ${r.outDir}: ${s.name} (${s.family}, ${s.layers} layers, ${s.dtype}), ${r.parameters.toLocaleString('en-US')} parameters, seed ${seed}, std ${std}${normStd > 0 ? `, norm weights 1 + N(0, ${normStd}^2)` : ''}`,
  ];
  const width = Math.max(...r.files.map((f) => f.name.length));
  for (const f of r.files) lines.push(`  ${f.name.padEnd(width)}  ${f.bytes.toLocaleString('en-US').padStart(15)} bytes${f.bytes >= 1024 ? ` (${humanBytes(f.bytes)})` : ''}`);
  lines.push(`  ${'total'.padEnd(width)}  ${r.totalBytes.toLocaleString('en-US').padStart(15)} bytes${r.totalBytes >= 1024 ? ` (${humanBytes(r.totalBytes)})` : ''}`);
  return `${lines.join('\n')}\n`;
}

function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}
