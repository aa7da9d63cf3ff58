/**
 * Parsing JSON text into one-line errors: a syntax error names the line and column, and text
 * nested deeper than any real file is refused before JSON.parse (the recursive code after it,
 * validation and quoting a value in an error, would overflow the stack on 100,000 levels).
 * Pure; fs/read-json.ts is the bounded file reader on top.
 */
import { TidarcError } from '../errors.js';

/** Nesting the readers accept. tidarc's files nest a few levels (a tokenizer's merges: 4). */
export const MAX_JSON_DEPTH = 64;

/** Parses JSON text; a syntax error becomes one 'invalid-json' line naming the source and position. */
export function parseJsonText(text: string, source?: string): unknown {
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  try {
    return JSON.parse(body) as unknown;
  } catch (err) {
    // One printable line: V8 quotes the text near the error, which for a binary file (a
    // .safetensors named by mistake) holds NULs and other control bytes; those are written \xNN.
    const reason = (err as Error).message.replace(/\s+/g, ' ').replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
    // V8 names a byte offset for some errors; a line and column is what an editor can jump to.
    const at = /position (\d+)/.exec(reason);
    const where = at?.[1] !== undefined && !/line \d/.test(reason) ? ` (${lineAndColumn(body, Number(at[1]))})` : '';
    throw new TidarcError('invalid-json', `malformed JSON: ${reason}${where}`, { source });
  }
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

function lineAndColumn(text: string, position: number): string {
  const before = text.slice(0, position).split('\n');
  return `line ${before.length}, column ${(before[before.length - 1]?.length ?? 0) + 1}`;
}
