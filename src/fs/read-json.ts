/**
 * The one reader of JSON files: every config, tokenizer, index, manifest and tuning database
 * tidarc reads goes through here, so each is a regular file, read up to a cap for its kind, and
 * nested no deeper than any real file is. Every refusal is one TidarcError naming the path.
 */
import { parseJsonFileText } from '../util/json.js';
import { readRegularFile, readRegularFileSync } from './read-regular-file.js';

const MiB = 1 << 20;

/**
 * The size caps, each far above the real files (a Qwen tokenizer.json is ~7 MB, a Gemma
 * tokenizer_config.json ~1 MB, a config.json a few KB), so only a wrong path or a hostile file
 * meets them, and well below what would take seconds or gigabytes to read.
 */
export const JSON_FILE_KINDS = {
  config: { maxBytes: 4 * MiB, what: 'a model config' },
  tokenizer: { maxBytes: 64 * MiB, what: 'a tokenizer.json' },
  tokenizerConfig: { maxBytes: 16 * MiB, what: 'a tokenizer_config.json' },
  shardIndex: { maxBytes: 16 * MiB, what: 'a safetensors index' },
  manifest: { maxBytes: 16 * MiB, what: 'a manifest.json' },
  tuneDb: { maxBytes: 64 * MiB, what: 'a tuning database' },
} as const;

export type JsonFileKind = keyof typeof JSON_FILE_KINDS;

/** Reads, size-checks and parses a JSON file of the given kind. */
export async function readJsonFile(path: string, kind: JsonFileKind = 'config'): Promise<unknown> {
  const { maxBytes, what } = JSON_FILE_KINDS[kind];
  return parseJsonFileText((await readRegularFile(path, maxBytes, what)).toString('utf8'), path);
}

/** readJsonFile for synchronous callers. */
export function readJsonFileSync(path: string, kind: JsonFileKind = 'config'): unknown {
  const { maxBytes, what } = JSON_FILE_KINDS[kind];
  return parseJsonFileText(readRegularFileSync(path, maxBytes, what).toString('utf8'), path);
}
