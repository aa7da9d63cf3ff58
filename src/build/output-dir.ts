/**
 * Writes an output directory atomically: everything goes into a sibling staging directory
 * (DIR.tmp-PID, marked as tidarc's from its first moment), which replaces DIR only when
 * complete. A failed or interrupted write leaves DIR as it was. Only what checkReplaceable
 * allows is ever replaced (src/fs/tidarc-dir.ts); leftovers of dead runs beside DIR are removed
 * first (src/fs/stale-temps.ts).
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { TidarcError } from '../errors.js';
import { fsReason } from '../fs/fs-error.js';
import { removeOnInterrupt, restoreOnInterrupt, settled } from '../fs/interrupt.js';
import { makeDirs } from '../fs/make-dirs.js';
import { removeStaleTemps } from '../fs/stale-temps.js';
import { MARKER_FILE, type OutputPlace, checkReplaceable, markedKind, markerText, parentOf, refusal } from '../fs/tidarc-dir.js';

export type { OutputPlace } from '../fs/tidarc-dir.js';

function label(place: OutputPlace) {
  return { field: place.field, value: place.path };
}

/** Checks `place` (throws when it may not be written), then creates its staging directory. */
export async function createStaging(place: OutputPlace): Promise<string> {
  checkReplaceable(place);
  const parent = parentOf(place);
  makeDirs(parent, label(place));
  removeStaleTemps(parent);
  const staging = `${resolve(place.path)}.tmp-${process.pid}`;
  try {
    mkdirSync(staging);
    removeOnInterrupt(staging);
    writeFileSync(join(staging, MARKER_FILE), markerText(place.kind));
  } catch (e) {
    await discardStaging(staging);
    throw refusal(place, `cannot create a directory in ${parent} (${fsReason(e)})`, 'a path in a writable directory');
  }
  return staging;
}

export async function writeFiles(root: string, files: ReadonlyMap<string, string>): Promise<void> {
  for (const [rel, text] of files) {
    const path = join(root, rel);
    makeDirs(dirname(path), { field: 'staging directory', value: root });
    await writeFile(path, text);
  }
}

/**
 * Replaces the output by `staging`; the earlier output is removed only after the swap. The
 * swap itself is synchronous, so an interrupt finds either the old or the new directory in
 * place, never neither.
 */
export async function commitStaging(staging: string, place: OutputPlace): Promise<void> {
  const outDir = resolve(place.path);
  const state = checkReplaceable(place);
  const aside = `${dirname(outDir)}/${basename(outDir)}.old-${process.pid}`;
  try {
    if (state === 'replace') {
      renameSync(outDir, aside);
      restoreOnInterrupt(aside, outDir);
    }
    try {
      renameSync(staging, outDir);
      settled(staging);
    } catch (e) {
      if (state === 'replace') {
        renameSync(aside, outDir);
        settled(aside);
      }
      throw e;
    }
  } catch (e) {
    throw refusal(place, `cannot put the output directory in place (${fsReason(e)})`, 'a path in a writable directory');
  }
  if (state === 'replace') {
    await rm(aside, { recursive: true, force: true, maxRetries: 3 });
    settled(aside);
  }
}

export async function discardStaging(staging: string): Promise<void> {
  await rm(staging, { recursive: true, force: true, maxRetries: 3 });
  settled(staging);
}

/**
 * A directory tidarc writes files into without replacing it as a whole (the emulated driver's):
 * checked like an output, created, its dead runs' temp files removed, and marked.
 */
export function openOutputDir(place: OutputPlace): string {
  checkReplaceable(place);
  const dir = resolve(place.path);
  makeDirs(dir, label(place));
  removeStaleTemps(dir);
  if (markedKind(dir) !== place.kind) {
    try {
      writeFileSync(join(dir, MARKER_FILE), markerText(place.kind));
    } catch (e) {
      throw new TidarcError('invalid-argument', `cannot write in the directory (${fsReason(e)})`, { field: place.field, value: place.path, allowed: 'a writable directory' });
    }
  }
  return dir;
}

/** Whether `dir` exists and carries the marker of `kind` (an output this tidarc wrote). */
export function isMarked(dir: string, kind: OutputPlace['kind']): boolean {
  return existsSync(dir) && markedKind(dir) === kind;
}
