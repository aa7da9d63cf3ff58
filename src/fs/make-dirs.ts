/**
 * `mkdir -p` that ends. Node's recursive mkdir retries forever where mkdir says ENOENT under a
 * parent that exists (`/proc/x`, `/proc/self/...`: 100% CPU, no error); this walks up once to the
 * nearest existing ancestor, then creates each missing level once. A failure names the level
 * that could not be created, why, and the option or setting the path came from.
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { TidarcError } from '../errors.js';
import { errnoCode, fsReason } from './fs-error.js';

/** How errors name the path: the option or setting it came from, and the path as given. */
export interface PathLabel {
  readonly field: string;
  readonly value: string;
}

function cannot(label: PathLabel, what: string, err: unknown): TidarcError {
  return new TidarcError('invalid-argument', `cannot create the directory ${what} (${fsReason(err)})`, {
    field: label.field, value: label.value === '' ? '""' : label.value, allowed: 'a path in a writable directory',
  });
}

/** Creates `path` and its missing parents; each level is tried once. */
export function makeDirs(path: string, label: PathLabel): void {
  const missing: string[] = [];
  // Each step drops a path component, so this ends at the root at the latest.
  for (let p = resolve(path); ; p = dirname(p)) {
    try {
      if (statSync(p).isDirectory()) break;
      throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw cannot(label, resolve(path), e);
    }
    missing.push(p);
    if (dirname(p) === p) break;
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir);
    } catch (e) {
      // Another process may have made it in the meantime.
      if (errnoCode(e) === 'EEXIST' && statSync(dir, { throwIfNoEntry: false })?.isDirectory()) continue;
      throw cannot(label, dir, e);
    }
  }
}
