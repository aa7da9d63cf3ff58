/**
 * Where tidarc's own files are (templates/, runtime/, examples/, the native addon): the
 * package root, one meaning everywhere.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TidarcError } from '../errors.js';

const PACKAGE_NAME = 'tidarc';
let cached: string | undefined;

/**
 * The nearest directory at or above `start` (default: this module, in src/ or dist/src/) whose
 * package.json is named "tidarc". A nearer package.json of another name (runtime/'s, or a
 * project that vendors tidarc) is skipped: templates and sources are found relative to ours.
 */
export function packageRoot(start?: string): string {
  if (start === undefined && cached !== undefined) return cached;
  const from = start ?? dirname(fileURLToPath(import.meta.url));
  for (let dir = from; ; dir = dirname(dir)) {
    if (isTidarcPackage(join(dir, 'package.json'))) {
      if (start === undefined) cached = dir;
      return dir;
    }
    if (dirname(dir) === dir) break;
  }
  throw new TidarcError('runtime', `cannot locate the tidarc package root (no package.json named "${PACKAGE_NAME}" at or above it)`, { source: from });
}

function isTidarcPackage(path: string): boolean {
  if (!existsSync(path)) return false;
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { name?: unknown }).name === PACKAGE_NAME;
  } catch {
    // An unreadable package.json is not ours; keep searching upward.
    return false;
  }
}
