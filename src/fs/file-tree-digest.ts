/**
 * One content digest of the files under some directories: each file's path (relative to `root`,
 * '/'-separated) then its bytes, directories walked depth first in name order, a file under two of
 * the directories counted once. What the templates' digest and the emulator runtime's cache key
 * hash.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hasher } from '../util/hash.js';

/** Hex sha256 over every file under `dirs` (relative to `root`; '' is root itself); a missing directory adds nothing. */
export function fileTreeDigest(root: string, dirs: readonly string[] = ['']): string {
  const walk = (rel: string): string[] => {
    let names: string[];
    try {
      names = readdirSync(join(root, rel)).sort();
    } catch {
      return [];
    }
    return names.flatMap((name) => {
      const path = rel ? `${rel}/${name}` : name;
      return statSync(join(root, path)).isDirectory() ? walk(path) : [path];
    });
  };
  const hash = sha256Hasher();
  for (const path of new Set(dirs.flatMap(walk))) {
    hash.update(`${path}\n`);
    hash.update(readFileSync(join(root, path)));
  }
  return hash.digest();
}
