/**
 * Leftovers of tidarc processes that died without cleaning up (SIGKILL, power loss): staging
 * and swap directories NAME.tmp-PID / NAME.old-PID and atomic-write temp files NAME.PID.HEX.tmp.
 * The next run that writes in the same directory removes those whose process is gone. A
 * directory is removed only when tidarc wrote it (marker, or an older tidarc's layout) or it is
 * empty (or holds only a marker not yet written), so a user's `notes.tmp-1` survives; a live
 * process's files are never touched.
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { noProcessWithId } from './process-gone.js';
import { isPending } from './interrupt.js';
import { ATOMIC_TEMP, MARKER_FILE, tidarcKind, untouchableReason } from './tidarc-dir.js';

const STAGING = /^.+\.(?:tmp|old)-(\d+)$/;

/** True when no process has this id (this process counts as gone for paths it is not writing). */
function processGone(pid: number, path: string): boolean {
  if (pid === process.pid) return !isPending(path);
  return noProcessWithId(pid);
}

/**
 * Empty, or holding only the marker file, whatever its text: a run killed between creating the
 * marker and writing it (output-dir.ts createStaging, right after mkdir) leaves it empty.
 */
function isEmptyStaging(path: string): boolean {
  try {
    const names = readdirSync(path);
    return names.length === 0 || (names.length === 1 && names[0] === MARKER_FILE);
  } catch {
    return false;
  }
}

/** Removes the leftovers of dead processes in `dir`; returns their paths. Never throws. */
export function removeStaleTemps(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const e of entries) {
    const staging = STAGING.exec(e.name);
    const temp = staging ? null : ATOMIC_TEMP.exec(e.name);
    if (!staging && !temp) continue;
    const path = join(dir, e.name);
    if (!processGone(Number(staging ? staging[1] : temp![2]), path)) continue;
    // Never the current directory or a parent of it, even a leftover.
    const ours = staging ? e.isDirectory() && !untouchableReason(path) && (isEmptyStaging(path) || tidarcKind(path) !== undefined) : e.isFile();
    if (!ours) continue;
    try {
      rmSync(path, { recursive: true, force: true, maxRetries: 3 });
      removed.push(path);
    } catch {
      // Another run may be removing it too; whatever is left is tried again next time.
    }
  }
  return removed;
}
