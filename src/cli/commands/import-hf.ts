/**
 * `tidarc import-hf <config.json>`: a Hugging Face config.json -> a tidarc model.json,
 * printed to stdout or written atomically with --out.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { TidarcError } from '../../errors.js';
import { importHfConfig, modelNameFromPath, type HfImportOptions } from '../../ir/hf-config.js';
import { MAX_DRAFT_COMPILE, type DType, type ModelSpec } from '../../ir/model.js';
import { readJsonFile, writeModelSpecFile } from '../../ir/model-file.js';
import { DTYPES, formatModelSpecJson } from '../../ir/model-validate.js';
import type { CliIo } from '../io.js';
import { modelFileArgument, optionText, parseDraftList, parsePathOption } from '../options.js';

interface ImportHfFlags {
  draft?: string;
  maskToken?: string;
  name?: string;
  dtype?: string;
  out?: string;
}

/** Errors about option-sourced fields name the flag the user typed. */
const FLAG_OF_FIELD: NonNullable<HfImportOptions['optionNames']> = {
  draftLengths: '--draft',
  maskTokenId: '--mask-token',
  name: '--name',
  dtype: '--dtype',
};

const HELP_AFTER = `
Examples:
  $ tidarc import-hf ~/models/Qwen3-8B/config.json --draft 4,8,16 --out qwen3-8b.json
  $ tidarc import-hf examples/hf/llama-3.2-1b/config.json --mask-token 128002 --name llama-3.2-1b

Supported: model_type qwen2, qwen3 and llama; rope_scaling null, linear or llama3.
float32 checkpoints are imported as bf16 unless --dtype says otherwise.
The model.json is printed with keys in a fixed order, so imports can be diffed and committed.
`;

export function registerImportHfCommand(program: Command, io: CliIo): void {
  program
    .command('import-hf')
    .description('Convert a Hugging Face config.json (qwen2, qwen3, llama) into a tidarc model.json.')
    .argument('<config.json>', 'path to the Hugging Face config.json, or the checkpoint directory that holds it')
    .option('--draft <k,...>', `draft lengths k to compile kernels for, one or a comma list from 1 to ${MAX_DRAFT_COMPILE} (default: the config's "tidar": {"draft_lengths"}, else 16), e.g. 4,8,16`)
    .option('--mask-token <id>', 'vocabulary id of the diffusion mask token (default: the config\'s "tidar": {"mask_token_id"}, else 151662 for Qwen vocabularies; required otherwise), e.g. 128002')
    .option('--name <name>', "model name (default: the config's \"tidar\": {\"name\"}, else its directory name), e.g. qwen3-8b")
    .option('--dtype <dtype>', `kernel dtype, one of ${DTYPES.join(', ')} (default: from torch_dtype), e.g. fp16`)
    .option('--out <file>', 'write the model.json to this file (atomically) instead of stdout, e.g. models/qwen3-8b.json')
    .addHelpText('after', HELP_AFTER)
    .action(async (configArg: string, flags: ImportHfFlags) => {
      const out = flags.out === undefined ? undefined : parsePathOption('--out', flags.out);
      const configPath = modelFileArgument('<config.json>', configArg, 'a Hugging Face config.json, or the checkpoint directory that holds it');
      const config = await readJsonFile(configPath);
      const spec = importHfConfig(config, {
        ...(flags.draft !== undefined ? { draftLengths: parseDraftList(flags.draft) } : {}),
        ...(flags.maskToken !== undefined ? { maskTokenId: parseTokenId(flags.maskToken) } : {}),
        ...(flags.dtype !== undefined ? { dtype: parseDtype(flags.dtype) } : {}),
        ...(flags.name !== undefined ? { name: flags.name } : {}),
        // Resolved so that `config.json` in the current directory is named after that directory (the config's "tidar" name wins).
        defaultName: modelNameFromPath(resolve(configPath)),
        source: configPath,
        optionNames: FLAG_OF_FIELD,
      });
      if (out === undefined) {
        io.stdout(formatModelSpecJson(spec));
        return;
      }
      await writeModelSpecFile(out, spec, '--out');
      io.stdout(`wrote ${out}: ${describe(spec)}\n`);
    });
}


function parseTokenId(text: string): number {
  if (!/^\d+$/.test(text.trim())) {
    throw new TidarcError('invalid-argument', 'invalid value', { field: '--mask-token', value: optionText(text), allowed: 'a vocabulary id (an integer >= 0)' });
  }
  return Number(text);
}

function parseDtype(text: string): DType {
  if (!DTYPES.includes(text as DType)) {
    throw new TidarcError('invalid-argument', 'invalid value', { field: '--dtype', value: optionText(text), allowed: `one of ${DTYPES.join(', ')}` });
  }
  return text as DType;
}

function describe(spec: ModelSpec): string {
  const heads = `${spec.queryHeads}/${spec.kvHeads} heads x ${spec.headDim}`;
  return `${spec.name} (${spec.family}, ${spec.layers} layers, ${heads}, ${spec.dtype}, draft lengths ${spec.draftLengths.join(',')})`;
}
