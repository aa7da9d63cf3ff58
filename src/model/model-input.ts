/**
 * The model argument of every command (compile, run, tune, bench-step), read one way: a
 * checkpoint directory, its config.json, or a tidarc model.json. A config.json is read as a
 * checkpoint's, "tidar" object included (mask token, draft lengths, name), whether it was named
 * or its directory was: `tidarc compile ckpt/config.json` and `tidarc run ckpt` see one model.
 * A model.json describes a model without weights: commands that run one need a checkpoint.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { TidarcError } from '../errors.js';
import { readJsonFile } from '../fs/read-json.js';
import { looksLikeHfConfig } from '../ir/hf-config.js';
import type { ModelSpec } from '../ir/model.js';
import { validateModelSpec } from '../ir/model-validate.js';
import { CONFIG_FILE, specFromCheckpointConfig } from './checkpoint.js';

export type ModelInputKind = 'checkpoint' | 'config' | 'model-json';

const ALLOWED = 'a checkpoint directory, its config.json, or a tidarc model.json';

interface Located {
  readonly kind: ModelInputKind;
  /** The JSON file the spec is read from. */
  readonly file: string;
  readonly data: unknown;
}

export interface ModelInput {
  readonly kind: ModelInputKind;
  readonly spec: ModelSpec;
  /** The JSON file the spec came from (config.json or the model.json). */
  readonly source: string;
  /** The checkpoint (config.json, weights, tokenizer) for a directory or a config.json; none for a model.json. */
  readonly checkpointDir?: string;
}

function isDirectory(path: string, field: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    throw new TidarcError('invalid-argument', 'no such model file or directory', { field, value: path, allowed: ALLOWED });
  }
}

/**
 * What a model argument cannot be, refused in one line before anything reads it: a directory
 * without a config.json (not "DIR/config.json: no such file"), or a checkpoint's weights file,
 * whose binary header would otherwise be quoted by the JSON parser. `allowed`: what the
 * command takes, where it is not a model argument's (cli/options.ts modelFileArgument).
 */
export function checkModelPath(path: string, isDir: boolean, field: string, allowed?: string): void {
  if (isDir && !existsSync(join(path, CONFIG_FILE))) {
    throw new TidarcError('invalid-argument', `not a checkpoint directory: it has no ${CONFIG_FILE}`, { field, value: path, allowed: allowed ?? ALLOWED });
  }
  if (!isDir && /\.safetensors$/i.test(path)) {
    throw new TidarcError('invalid-argument', "a weights file, not the model's description", { field, value: path, allowed: allowed ?? 'the checkpoint directory that holds it, its config.json, or a tidarc model.json' });
  }
}

async function locate(path: string, field: string): Promise<Located> {
  const isDir = isDirectory(path, field);
  checkModelPath(path, isDir, field);
  const file = isDir ? join(path, CONFIG_FILE) : path;
  const data = await readJsonFile(file);
  return { kind: isDir ? 'checkpoint' : looksLikeHfConfig(data) ? 'config' : 'model-json', file, data };
}

/** The spec of a model argument (compile, tune). */
export async function readModelInput(path: string, field = 'model'): Promise<ModelInput> {
  const { kind, file, data } = await locate(path, field);
  if (kind === 'model-json') return { kind, spec: validateModelSpec(data, file), source: file };
  return { kind, spec: specFromCheckpointConfig(data, file), source: file, checkpointDir: dirname(file) };
}

/** The checkpoint directory of a model argument (run, bench-step), or one error for a model.json. */
export async function checkpointDirOf(path: string, field = 'model'): Promise<string> {
  // A directory with a config.json is the checkpoint; loading it says what else is missing from it.
  if (isDirectory(path, field)) {
    checkModelPath(path, true, field);
    return path;
  }
  const { kind, file } = await locate(path, field);  // checks a file argument itself
  if (kind !== 'model-json') return dirname(file);
  throw new TidarcError('invalid-argument', 'a model.json describes a model without weights; this command runs one', {
    field, value: path, allowed: 'a checkpoint directory (config.json, model.safetensors, tokenizer.json) or its config.json; tidarc init-model writes one from a model.json',
  });
}
