/**
 * Leftovers of dead runs (staging NAME.tmp-PID, swap NAME.old-PID, atomic-write NAME.PID.HEX.tmp)
 * are removed by the next run that writes there; a live process's, and a user's look-alike
 * without tidarc's marker, are not. Needs: nothing.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { removeOnInterrupt, settled } from '../../src/fs/interrupt.js';
import { removeStaleTemps } from '../../src/fs/stale-temps.js';
import { MARKER_FILE, markerText } from '../../src/fs/tidarc-dir.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-stale-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The id of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

test('removes what dead tidarc runs left, keeps the rest', () => {
  const dir = join(root, 'parent');
  mkdirSync(dir);
  const dead = deadPid();
  const marked = (name: string) => {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, MARKER_FILE), markerText('checkpoint'));
    writeFileSync(join(dir, name, 'model.safetensors'), 'partial');
  };
  marked(`ckpt.tmp-${dead}`);
  marked(`ckpt.old-${dead}`);
  mkdirSync(join(dir, `empty.tmp-${dead}`));
  // Killed between creating the marker and writing its text (createStaging's first moments).
  mkdirSync(join(dir, `early.tmp-${dead}`));
  writeFileSync(join(dir, `early.tmp-${dead}`, MARKER_FILE), '');
  writeFileSync(join(dir, `tune.json.${dead}.0badf00d.tmp`), '{');
  // Kept: a live process's (our parent's) staging, a user's look-alike, unrelated files.
  marked(`live.tmp-${process.ppid}`);
  mkdirSync(join(dir, `notes.tmp-${dead}`));
  writeFileSync(join(dir, `notes.tmp-${dead}`, 'mine.txt'), 'keep');
  writeFileSync(join(dir, `report.tmp-${dead}`), 'a file, not a staging directory');
  writeFileSync(join(dir, 'keep.txt'), 'x');

  const removed = removeStaleTemps(dir).map((p) => p.slice(dir.length + 1)).sort();
  expect(removed).toEqual([`ckpt.old-${dead}`, `ckpt.tmp-${dead}`, `early.tmp-${dead}`, `empty.tmp-${dead}`, `tune.json.${dead}.0badf00d.tmp`]);
  expect(readdirSync(dir).sort()).toEqual(['keep.txt', `live.tmp-${process.ppid}`, `notes.tmp-${dead}`, `report.tmp-${dead}`].sort());
});

test("this process's own id: a leftover of an earlier process with the same id goes, what it is writing stays", () => {
  const dir = join(root, 'own');
  mkdirSync(dir);
  mkdirSync(join(dir, `old.tmp-${process.pid}`));
  mkdirSync(join(dir, `busy.tmp-${process.pid}`));
  removeOnInterrupt(join(dir, `busy.tmp-${process.pid}`));
  try {
    removeStaleTemps(dir);
    expect(readdirSync(dir)).toEqual([`busy.tmp-${process.pid}`]);
  } finally {
    settled(join(dir, `busy.tmp-${process.pid}`));
  }
});

test('a leftover that is the current directory stays (it would pull the directory from under the shell)', () => {
  const dir = join(root, 'cwd');
  const leftover = join(dir, `out.tmp-${deadPid()}`);
  mkdirSync(leftover, { recursive: true });
  writeFileSync(join(leftover, MARKER_FILE), markerText('compile-output'));
  const cwd = process.cwd();
  process.chdir(leftover);
  try {
    expect(removeStaleTemps(dir)).toEqual([]);
  } finally {
    process.chdir(cwd);
  }
  expect(removeStaleTemps(dir)).toEqual([leftover]);
});
