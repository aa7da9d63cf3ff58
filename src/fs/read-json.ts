/**
 * The one reader of JSON files: every config, tokenizer, index, manifest and tuning database
 * tidarc reads goes through here, so each is a regular file, read up to a cap for its kind, and
 * nested no deeper than any real file is. Every refusal is one TidarcError naming the path.
 */
import { TidarcError } from '../errors.js';
import { parseJsonText } from '../ir/model-validate.js';
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

/**
 * Nesting the readers accept. tidarc's files nest a few levels (a tokenizer's merges: 4); deeper
 * is no real file, and the recursive code after JSON.parse (validation, quoting a value in an
 * error) would overflow the stack on 100,000 levels.
 */
export const MAX_JSON_DEPTH = 64;

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

/** Parses JSON text after the depth check; errors name `source`. */
export function parseJsonFileText(text: string, source: string): unknown {
  checkJsonDepth(text, source);
  return parseJsonText(text, source);
}

/**
 * Refuses text whose brackets nest deeper than `maxDepth`, without parsing it (a linear scan
 * that skips strings). Malformed text within the limit is left for JSON.parse to describe.
 */
export function checkJsonDepth(text: string, source: string, maxDepth = MAX_JSON_DEPTH): void {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c /* \ */) i++;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > maxDepth) {
        throw new TidarcError('invalid-json', 'JSON nested too deeply', { field: 'depth', value: `more than ${maxDepth}`, allowed: `at most ${maxDepth} levels of [ and {`, source });
      }
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
}
