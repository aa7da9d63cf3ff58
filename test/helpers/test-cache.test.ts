/**
 * The tests' build cache is pruned (test-cache.ts): of each kind of keyed entry, the newest 3
 * and any used in the last hour stay; an entry being built (its lock file exists) and unkeyed
 * entries stay whatever their age; marking an entry used makes it the newest. Needs: nothing.
 */
import { mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { markUsed, pruneTestCache } from './test-cache.js';
import { scratchDir } from './scratch.js';

const HOUR = 3_600_000;

/** An entry directory (with a file in it) last used `hoursAgo`. */
function entry(root: string, name: string, hoursAgo: number, now: number): void {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'objects.txt'), 'x\n');
  const t = new Date(now - hoursAgo * HOUR);
  utimesSync(dir, t, t);
}

test('keeps the newest 3 of each kind and what was used in the last hour; locked and unkeyed entries stay', async () => {
  const root = await scratchDir('tidarc-test-cache-');
  const now = Date.now();
  const h = (i: number) => i.toString(16).padStart(16, '0');
  // kernels: 6 entries, 4 of them used within the hour.
  [0.1, 0.2, 0.5, 0.8, 3, 4].forEach((ago, i) => entry(root, `kernels-${h(i)}`, ago, now));
  // emu-runtime: one old entry, the newest of its kind.
  entry(root, `emu-runtime-${h(9)}`, 30, now);
  // ops: 5 old entries; the oldest is being built (its lock exists).
  [10, 11, 12, 13, 14].forEach((ago, i) => entry(root, `ops-${h(i)}`, ago, now));
  writeFileSync(join(root, `ops-${h(4)}.lock`), '123\n');
  entry(root, 'emulated-driver', 50, now);
  entry(root, 'kernels-not-a-hash', 50, now);

  const removed = pruneTestCache(root, { now });
  expect(removed).toEqual([`kernels-${h(4)}`, `kernels-${h(5)}`, `ops-${h(3)}`]);
  expect(readdirSync(root).sort()).toEqual([
    `emu-runtime-${h(9)}`, 'emulated-driver',
    `kernels-${h(0)}`, `kernels-${h(1)}`, `kernels-${h(2)}`, `kernels-${h(3)}`, 'kernels-not-a-hash',
    `ops-${h(0)}`, `ops-${h(1)}`, `ops-${h(2)}`, `ops-${h(4)}`, `ops-${h(4)}.lock`,
  ].sort());
  // Pruning again removes nothing; the oldest kernels entry, used now, is among the newest 3 two hours on.
  expect(pruneTestCache(root, { now })).toEqual([]);
  markUsed(join(root, `kernels-${h(3)}`));
  expect(statSync(join(root, `kernels-${h(3)}`)).mtimeMs).toBeGreaterThanOrEqual(now - 1000);
  expect(pruneTestCache(root, { now: now + 2 * HOUR })).toEqual([`kernels-${h(2)}`]);
  expect(pruneTestCache(join(root, 'absent'))).toEqual([]);
});
