/**
 * The file-system edge for model descriptions: read a tidarc model.json or an HF config.json
 * into a validated ModelSpec, and write a model.json atomically. Everything it calls is pure.
 */
import { resolve } from 'node:path';
import { writeTextFileAtomic } from '../fs/atomic-write.js';
import { readJsonFile } from '../fs/read-json.js';
import { type HfImportOptions, importHfConfig, looksLikeHfConfig, modelNameFromPath } from './hf-config.js';
import type { ModelSpec } from './model.js';
import { formatModelSpecJson, validateModelSpec } from './model-validate.js';

// The one JSON reader (regular files only, capped size and depth), re-exported for its callers here.
export { readJsonFile };

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

/** Writes the spec as model.json via a temp file and rename, so readers never see half a file. */
export async function writeModelSpecFile(path: string, spec: ModelSpec, option?: string): Promise<void> {
  await writeTextFileAtomic(path, formatModelSpecJson(spec), option);
}

