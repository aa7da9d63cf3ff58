/** Option parsers shared by commands: each refusal names the option, the text typed and what is allowed. */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { TidarcError } from '../errors.js';
import { outputFileError } from '../fs/atomic-write.js';
import { fsReason } from '../fs/fs-error.js';
import { MAX_DRAFT_COMPILE } from '../ir/model.js';
import { CONFIG_FILE } from '../model/checkpoint.js';
import { checkModelPath } from '../model/model-input.js';

/** The typed text as it appears in an error: unquoted, cut at 60 characters. */
export function optionText(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** "4,8,16" -> [4, 8, 16]; ranges and duplicates are checked where the list is used. */
export function parseDraftList(text: string): number[] {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) {
    throw new TidarcError('invalid-argument', 'invalid value', {
      field: '--draft',
      value: optionText(text),
      allowed: `integers from 1 to ${MAX_DRAFT_COMPILE}, one or a comma list such as 4,8,16`,
    });
  }
  return parts.map(Number);
}

/**
 * "tidar_k4,ar" -> ["tidar_k4", "ar"]. An empty entry ("tidar_k4,", ",ar", a stray comma) is
 * refused with the list as typed; it used to reach the name check as "(--variant = )".
 */
export function parseNameList(option: string, text: string, example: string): string[] {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.some((p) => p === '')) {
    throw new TidarcError('invalid-argument', 'an empty name in the list', { field: option, value: optionText(text), allowed: `names separated by single commas, e.g. ${example}` });
  }
  return parts;
}

/** A decimal integer in [min, max]. */
export function parseIntegerOption(option: string, text: string, min: number, max: number): number {
  const value = Number(text.trim());
  if (!/^[+-]?\d+$/.test(text.trim()) || value < min || value > max) {
    throw new TidarcError('invalid-argument', 'invalid value', { field: option, value: optionText(text), allowed: `an integer from ${min} to ${max}` });
  }
  return value;
}

/** A finite decimal number in [min, max], or in (min, max] with `aboveMin` (top-p: a positive mass). */
export function parseNumberOption(option: string, text: string, min: number, max: number, bounds: { aboveMin?: boolean } = {}): number {
  const value = Number(text);
  const low = bounds.aboveMin ? value <= min : value < min;
  if (text.trim() === '' || !Number.isFinite(value) || low || value > max) {
    const allowed = bounds.aboveMin ? `a number above ${min}, at most ${max}` : `a number from ${min} to ${max}`;
    throw new TidarcError('invalid-argument', 'invalid value', { field: option, value: optionText(text), allowed });
  }
  return value;
}

/** "1,3" -> [1, 3]: integers in [min, max], one or a comma list. */
export function parseIntegerList(option: string, text: string, min: number, max: number): number[] {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.some((p) => !/^\d+$/.test(p) || Number(p) < min || Number(p) > max)) {
    throw new TidarcError('invalid-argument', 'invalid value', { field: option, value: optionText(text), allowed: `integers from ${min} to ${max}, one or a comma list` });
  }
  return parts.map(Number);
}

/**
 * A path option's value. Commander takes the next word as the value, so `--out --json` would
 * write a directory named "--json": a value that starts with '-' is refused (./-name is a way
 * to mean such a path).
 */
export function parsePathOption(option: string, text: string): string {
  if (text.startsWith('-')) {
    throw new TidarcError('invalid-argument', 'the value looks like an option, not a path (was the value left out?)', {
      field: option, value: optionText(text), allowed: `a path; write ./${optionText(text)} for a name that starts with -`,
    });
  }
  return text;
}

/**
 * A command argument naming one JSON description of a model (import-hf's config.json,
 * init-model's model.json or config.json). A checkpoint directory stands for its config.json,
 * as it does for compile, run and tune (it was "not a regular file (a directory)"); the
 * checkpoint's weights file is refused before the JSON parser quotes its binary header. A
 * missing path is left to the reader, which names it.
 */
export function modelFileArgument(argument: string, path: string, allowed: string): string {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    return path;
  }
  checkModelPath(path, isDir, argument, allowed);
  return isDir ? join(path, CONFIG_FILE) : path;
}

/**
 * A `--tuned` database (compile, run, bench-step), checked before any work: a path that is not
 * there is one line naming the option, as the user typed it, and what is allowed.
 */
export function checkTunedOption(path: string): string {
  if (!existsSync(path)) {
    throw new TidarcError('invalid-argument', 'no such tuning database', { field: '--tuned', value: optionText(path), allowed: 'a database that tidarc tune or the device check wrote' });
  }
  return path;
}

/**
 * A file the command writes after its work (or after each part of it, as tune's database): a
 * path that cannot be written is refused before the work starts, not after it. tidarc writes
 * such a file beside itself and renames it over the path, so what must be writable is the
 * directory; a path that is a directory is refused too.
 */
export function checkWritableFileOption(option: string, path: string): void {
  const dir = dirname(resolve(path));
  let why: string | undefined;
  if (existsSync(path) && statSync(path).isDirectory()) why = 'the path is a directory';
  else if (!existsSync(dir)) why = 'the directory does not exist';
  else if (!statSync(dir).isDirectory()) why = 'a part of the path is a file, not a directory';
  else {
    try {
      accessSync(dir, constants.W_OK);
    } catch (err) {
      why = fsReason(err);
    }
  }
  // The words of the write that would have failed (atomic-write.ts): one source.
  if (why !== undefined) throw outputFileError(why, optionText(path), option);
}
