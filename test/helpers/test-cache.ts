/**
 * Keeps the tests' build cache (node_modules/.cache/tidarc-test) from growing with every edit.
 * Its keyed entries are directories `<kind>-<hash>` (emu-runtime, ops, kernels) whose hash covers
 * what they were built from, so an edit of runtime/emu, the templates or src/ leaves the old
 * entry unused for good (about 1 MB to 10 MB each; a day of edits left 40). Tests mark an entry
 * used (markUsed) each time they take it; pruneTestCache removes an entry that is neither among
 * the newest `keep` of its kind nor used in the last `idleMs`: another process may still be
 * running on an older checkout state, and a long test file runs for minutes, not an hour.
 * An entry whose lock file (`<entry>.lock`) exists is being built or read: never removed.
 * Unkeyed entries (the emulated driver, which rebuilds in place) are left alone.
 */
import { existsSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';

export interface PruneOptions {
  /** Entries of each kind kept whatever their age (newest use first). */
  readonly keep?: number;
  /** An entry used more recently than this is kept (ms). */
  readonly idleMs?: number;
  readonly now?: number;
}

const KEYED = /^(.+)-[0-9a-f]{16}$/;

/** Records that `dir` (an entry of the cache) is in use now: its mtime is its last use. */
export function markUsed(dir: string): void {
  const now = new Date();
  utimesSync(dir, now, now);
}

/** Removes the cache's stale entries; returns their names, sorted. A missing cache is empty. */
export function pruneTestCache(root: string, { keep = 3, idleMs = 3_600_000, now = Date.now() }: PruneOptions = {}): string[] {
  if (!existsSync(root)) return [];
  const byKind = new Map<string, { name: string; used: number }[]>();
  for (const name of readdirSync(root)) {
    const kind = KEYED.exec(name)?.[1];
    if (kind === undefined) continue;
    const stat = statSync(join(root, name), { throwIfNoEntry: false });
    if (!stat?.isDirectory()) continue;
    byKind.set(kind, [...(byKind.get(kind) ?? []), { name, used: stat.mtimeMs }]);
  }
  const removed: string[] = [];
  for (const entries of byKind.values()) {
    entries.sort((a, b) => b.used - a.used);
    for (const e of entries.slice(keep)) {
      if (now - e.used <= idleMs || existsSync(join(root, `${e.name}.lock`))) continue;
      rmSync(join(root, e.name), { recursive: true, force: true });
      removed.push(e.name);
    }
  }
  return removed.sort();
}
