/**
 * The file-system edge for model descriptions: read a tidarc model.json or an HF config.json
 * into a validated ModelSpec, and write a model.json atomically. Everything it calls is pure.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { TidarcError } from '../errors.js';
import { writeTextFileAtomic } from '../fs/atomic-write.js';
import { type HfImportOptions, importHfConfig, looksLikeHfConfig, modelNameFromPath } from './hf-config.js';
import type { ModelSpec } from './model.js';
import { formatModelSpecJson, parseJsonText, validateModelSpec } from './model-validate.js';

/**
 * Reads `path` and returns its ModelSpec. A file with `model_type` is an HF config.json and is
 * imported with `hfOptions` (name defaulting to its directory's name); anything else must be a
 * tidarc model.json.
 */
export async function loadModelSpecFile(path: string, hfOptions: Omit<HfImportOptions, 'source'> = {}): Promise<ModelSpec> {
  const data = await readJsonFile(path);
  if (!looksLikeHfConfig(data)) return validateModelSpec(data, path);
  // Resolved so that `config.json` in the current directory is still named after that directory.
  const name = hfOptions.name ?? modelNameFromPath(resolve(path));
  return importHfConfig(data, { ...hfOptions, name, source: path });
}

/** Reads and parses a JSON file; a missing file or malformed JSON is one TidarcError naming the path. */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new TidarcError('missing-file', 'no such file', { source: path });
    throw new TidarcError('missing-file', `cannot read file (${code ?? (err as Error).message})`, { source: path });
  }
  return parseJsonText(text, path);
}

/** Writes the spec as model.json via a temp file and rename, so readers never see half a file. */
export async function writeModelSpecFile(path: string, spec: ModelSpec, option?: string): Promise<void> {
  await writeTextFileAtomic(path, formatModelSpecJson(spec), option);
}

