// The host preflight's memory cgroups: v1's memsw (memory + swap) limit and hierarchical limits,
// v2's walk from the process's cgroup up to the mount's root (a parent's limit binds the children).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { type CgroupFiles, type HostMemory, cgroupAncestors, describeHostMemory, hostFit, hostNeed, parseCgroupLevel, parseProcCgroup, parseReclaimable, withCgroupLimit } from '../../src/load/host-memory.js';
import { readCgroupMemory } from '../../src/load/host-memory-now.js';
import { scratchDir } from '../helpers/scratch.js';

const GiB = 2 ** 30;
const UNLIMITED_V1 = '9223372036854771712\n';
/** A 64 GiB machine with 8 GiB of free swap. */
const MACHINE: HostMemory = { availableBytes: 60 * GiB, totalBytes: 64 * GiB, swapFreeBytes: 8 * GiB };
const bytes = (n: number): string => `${n}\n`;
/** A v1 memory.stat: a leaf's own file cache (ignored) and the hierarchical total_ one (1 GiB). */
const v1Stat = (extra = ''): string => `cache 4096\nactive_file 4096\ninactive_file 0\ntotal_active_file ${GiB}\ntotal_inactive_file 0\n${extra}`;

describe('cgroup v1', () => {
  const docker = (over: Partial<CgroupFiles>): CgroupFiles => ({
    path: '/docker/abc', limit: bytes(16 * GiB), usage: bytes(4 * GiB), stat: v1Stat(), swapLimit: bytes(16 * GiB), swapUsage: bytes(4 * GiB), ...over,
  });

  test('memsw equal to the limit: no swap, whatever the machine has free (a 14 GiB load refused)', () => {
    const level = parseCgroupLevel(1, docker({}));
    expect(level).toEqual({ limitBytes: 16 * GiB, usageBytes: 4 * GiB, reclaimableBytes: GiB, swapFreeBytes: 0, path: '/docker/abc' });
    const m = withCgroupLimit(MACHINE, level);
    expect(m).toEqual({ availableBytes: 13 * GiB, totalBytes: 16 * GiB, swapFreeBytes: 0, cgroupLimited: true, limitedBy: 'memory cgroup /docker/abc', swapLimitedBy: 'memory cgroup /docker/abc' });
    expect(hostFit(hostNeed(14 * GiB), m).sentence).toBe('the checkpoint (14.0 GiB) needs more memory than the limit of memory cgroup /docker/abc allows: 13.0 GiB of 16.0 GiB (swap: 0 bytes free within the swap limit of memory cgroup /docker/abc)');
    // Without swap accounting (no memsw files) the machine's swap is counted, as before: it fits.
    const noMemsw = parseCgroupLevel(1, docker({ swapLimit: undefined, swapUsage: undefined }));
    expect(noMemsw?.swapFreeBytes).toBeUndefined();
    expect(hostFit(hostNeed(14 * GiB), withCgroupLimit(MACHINE, noMemsw)).fits).toBe(true);
  });

  test('memsw above the limit: what it leaves beyond the limit, less the swap in use; unlimited: no swap limit', () => {
    // 4 GiB of swap allowed, 1 GiB of it in use (memsw.usage - usage).
    expect(parseCgroupLevel(1, docker({ swapLimit: bytes(20 * GiB), swapUsage: bytes(5 * GiB) }))?.swapFreeBytes).toBe(3 * GiB);
    expect(parseCgroupLevel(1, docker({ swapLimit: UNLIMITED_V1 }))?.swapFreeBytes).toBeUndefined();
    // No memory limit: nothing at all from this cgroup.
    expect(parseCgroupLevel(1, docker({ limit: UNLIMITED_V1, swapLimit: UNLIMITED_V1 }))).toBeUndefined();
  });

  test("hierarchical limits: an ancestor's, where tighter than the cgroup's own, is the limit", () => {
    const stat = v1Stat(`hierarchical_memory_limit ${8 * GiB}\nhierarchical_memsw_limit ${8 * GiB}\n`);
    const level = parseCgroupLevel(1, { path: '/a/b', limit: UNLIMITED_V1, usage: bytes(2 * GiB), stat, swapLimit: UNLIMITED_V1, swapUsage: bytes(2 * GiB) });
    expect(level).toEqual({ limitBytes: 8 * GiB, usageBytes: 2 * GiB, reclaimableBytes: GiB, swapFreeBytes: 0, path: '/a/b', inherited: true });
    expect(describeHostMemory(withCgroupLimit(MACHINE, level))).toBe('7.0 GiB available of 8.0 GiB (the limit of an ancestor of memory cgroup /a/b) (swap: 0 bytes free within the swap limit of an ancestor of memory cgroup /a/b)');
    // The cgroup's own limit tighter than the hierarchical one, or the hierarchical one unlimited: its own.
    expect(parseCgroupLevel(1, { path: '/a/b', limit: bytes(4 * GiB), usage: bytes(2 * GiB), stat }))
      .toEqual({ limitBytes: 4 * GiB, usageBytes: 2 * GiB, reclaimableBytes: GiB, path: '/a/b' });
    expect(parseCgroupLevel(1, { limit: bytes(4 * GiB), usage: bytes(2 * GiB), stat: v1Stat(`hierarchical_memory_limit ${UNLIMITED_V1}`) })?.inherited).toBeUndefined();
  });

  test('a reading that fails leaves the limit out (lenient), never a guess', () => {
    expect(parseCgroupLevel(1, docker({ usage: undefined }))).toBeUndefined();
    expect(parseCgroupLevel(1, docker({ usage: 'garbage' }))).toBeUndefined();
    expect(parseCgroupLevel(1, docker({ stat: undefined }))).toBeUndefined();
    expect(parseCgroupLevel(2, { limit: bytes(8 * GiB), usage: bytes(GiB), swapLimit: '0\n', swapUsage: '0\n' }))
      .toEqual({ limitBytes: Infinity, usageBytes: 0, reclaimableBytes: 0, swapFreeBytes: 0 });
  });
});

describe("cgroup v2: the process's cgroup and its ancestors, the tightest headroom binds", () => {
  const level = (path: string, max: string, current: number, file = 0, swap?: [string, number]): CgroupFiles => ({
    path, limit: `${max}\n`, usage: bytes(current), stat: `anon 0\nactive_file ${file}\ninactive_file 0\n`,
    ...(swap ? { swapLimit: `${swap[0]}\n`, swapUsage: bytes(swap[1]) } : {}),
  });
  const walk = (...files: CgroupFiles[]): HostMemory => withCgroupLimit(MACHINE, files.map((f) => parseCgroupLevel(2, f)).filter((l) => l !== undefined));

  test("a parent tighter than the child: the container's cgroup has no limit, its pod's 8 GiB is nearly used by siblings", () => {
    const m = walk(level('/kubepods/pod1/ctr', 'max', 2 * GiB), level('/kubepods/pod1', String(8 * GiB), 7 * GiB, GiB), level('/kubepods', 'max', 20 * GiB));
    expect(m).toEqual({ availableBytes: 2 * GiB, totalBytes: 8 * GiB, swapFreeBytes: 8 * GiB, cgroupLimited: true, limitedBy: 'memory cgroup /kubepods/pod1' });
    expect(hostFit(hostNeed(12 * GiB), m).fits).toBe(false);
    // The child alone (what was read before): a 12 GiB load was let through.
    expect(walk(level('/kubepods/pod1/ctr', 'max', 2 * GiB))).toBe(MACHINE);
  });

  test('a child tighter than the parent: the child binds, though its limit is the smaller headroom and not the smaller total only', () => {
    const m = walk(level('/slice/app', String(4 * GiB), GiB), level('/slice', String(16 * GiB), 4 * GiB));
    expect(m).toMatchObject({ availableBytes: 3 * GiB, totalBytes: 4 * GiB, limitedBy: 'memory cgroup /slice/app' });
    // A parent with the larger limit but less left binds instead.
    expect(walk(level('/slice/app', String(4 * GiB), GiB), level('/slice', String(16 * GiB), 15 * GiB))).toMatchObject({ availableBytes: GiB, totalBytes: 16 * GiB, limitedBy: 'memory cgroup /slice' });
  });

  test('swap.max 0 at a parent: no swap for the whole subtree, named in the line', () => {
    const m = walk(level('/kubepods/pod1/ctr', 'max', GiB, 0, ['max', 0]), level('/kubepods/pod1', 'max', GiB, 0, ['0', 0]));
    expect(m).toEqual({ ...MACHINE, swapFreeBytes: 0, swapLimitedBy: 'memory cgroup /kubepods/pod1' });
    expect(describeHostMemory(m)).toBe('60.0 GiB available of 64.0 GiB (swap: 0 bytes free within the swap limit of memory cgroup /kubepods/pod1)');
    expect(hostFit(hostNeed(62 * GiB), MACHINE).fits).toBe(true);
    expect(hostFit(hostNeed(62 * GiB), m).fits).toBe(false);
  });

  test("v2's reclaimable slab counts back as its file cache does: a file-heavy container's dentries and inodes do not refuse a load", () => {
    // 8 GiB limit, 7.5 GiB charged, of which 0.5 GiB file cache and 3 GiB reclaimable slab: 4 GiB left once reclaimed.
    const stat = `anon ${4 * GiB}\nactive_file ${GiB / 2}\ninactive_file 0\nslab_reclaimable ${3 * GiB}\nslab_unreclaimable ${GiB / 4}\n`;
    const level = parseCgroupLevel(2, { path: '/box', limit: `${8 * GiB}\n`, usage: bytes(7.5 * GiB), stat });
    expect(level).toEqual({ limitBytes: 8 * GiB, usageBytes: 7.5 * GiB, reclaimableBytes: 3.5 * GiB, path: '/box' });
    const m = withCgroupLimit({ ...MACHINE, swapFreeBytes: 0 }, level);
    expect(m.availableBytes).toBe(4 * GiB);
    expect(hostFit(hostNeed(3 * GiB), m).fits).toBe(true);
    expect(parseReclaimable(stat)).toBe(3.5 * GiB);
    expect(parseReclaimable('anon 5\n')).toBe(0);
  });

  test('/proc/self/cgroup and the ancestors walked', () => {
    expect(parseProcCgroup('0::/user.slice/app.scope\n')).toEqual({ version: 2, path: '/user.slice/app.scope' });
    expect(parseProcCgroup('5:cpu:/\n4:memory:/docker/abc\n0::/\n')).toEqual({ version: 1, path: '/docker/abc' });
    expect(parseProcCgroup('4:cpuacct,memory:/x\n')).toEqual({ version: 1, path: '/x' });
    expect(parseProcCgroup('garbage')).toBeUndefined();
    expect(cgroupAncestors('/a/b/c')).toEqual(['/a/b/c', '/a/b', '/a', '/']);
    expect(cgroupAncestors('/')).toEqual(['/']);
  });
});

describe('readCgroupMemory over a cgroup tree in a temp dir', () => {
  function writeCgroup(dir: string, files: Record<string, string | number>): void {
    mkdirSync(dir, { recursive: true });
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), `${text}\n`);
  }

  test("v2: the process's cgroup up to the mount's root, each level's own files", async () => {
    const root = await scratchDir('tidarc-cgroup-v2-');
    const proc = join(root, 'proc-self-cgroup');
    writeFileSync(proc, '0::/kubepods/pod1/ctr\n');
    writeCgroup(root, { 'memory.stat': 'active_file 999\n' });  // the root cgroup: no memory.max
    writeCgroup(join(root, 'kubepods'), { 'memory.max': 'max', 'memory.current': 9 * GiB, 'memory.stat': 'active_file 0\n' });
    writeCgroup(join(root, 'kubepods/pod1'), {
      'memory.max': 8 * GiB, 'memory.current': 7 * GiB, 'memory.stat': `active_file ${GiB / 2}\ninactive_file ${GiB / 2}\n`, 'memory.swap.max': 0, 'memory.swap.current': 0,
    });
    writeCgroup(join(root, 'kubepods/pod1/ctr'), { 'memory.max': 'max', 'memory.current': 3 * GiB, 'memory.stat': 'active_file 0\n', 'memory.swap.max': 'max', 'memory.swap.current': 0 });
    const levels = readCgroupMemory(root, proc);
    expect(levels).toEqual([{ limitBytes: 8 * GiB, usageBytes: 7 * GiB, reclaimableBytes: GiB, swapFreeBytes: 0, path: '/kubepods/pod1' }]);
    expect(withCgroupLimit(MACHINE, levels)).toEqual({
      availableBytes: 2 * GiB, totalBytes: 8 * GiB, swapFreeBytes: 0, cgroupLimited: true, limitedBy: 'memory cgroup /kubepods/pod1', swapLimitedBy: 'memory cgroup /kubepods/pod1',
    });
    // The container's own limit, tighter: both levels read, the container's binds.
    writeCgroup(join(root, 'kubepods/pod1/ctr'), { 'memory.max': 4 * GiB });
    const both = readCgroupMemory(root, proc)!;
    expect(both.map((l) => l.path)).toEqual(['/kubepods/pod1/ctr', '/kubepods/pod1']);
    expect(withCgroupLimit(MACHINE, both)).toMatchObject({ availableBytes: GiB, totalBytes: 4 * GiB, limitedBy: 'memory cgroup /kubepods/pod1/ctr' });
    // A cgroup not in this tree (its own namespace): the mount's root stands for it.
    writeFileSync(proc, '0::/elsewhere\n');
    writeCgroup(root, { 'memory.max': 2 * GiB, 'memory.current': GiB });
    expect(readCgroupMemory(root, proc)).toEqual([{ limitBytes: 2 * GiB, usageBytes: GiB, reclaimableBytes: 999, path: '/elsewhere' }]);
  });

  test("v1: the cgroup's own files, the hierarchical limits standing for its ancestors'", async () => {
    const root = await scratchDir('tidarc-cgroup-v1-');
    const proc = join(root, 'proc-self-cgroup');
    writeFileSync(proc, '9:name=systemd:/\n4:memory:/a/b\n0::/\n');
    writeCgroup(join(root, 'memory/a'), { 'memory.limit_in_bytes': GiB, 'memory.usage_in_bytes': 0, 'memory.stat': '' });  // not walked
    writeCgroup(join(root, 'memory/a/b'), {
      'memory.limit_in_bytes': UNLIMITED_V1.trim(), 'memory.usage_in_bytes': 2 * GiB, 'memory.memsw.limit_in_bytes': UNLIMITED_V1.trim(), 'memory.memsw.usage_in_bytes': 2 * GiB,
      'memory.stat': v1Stat(`hierarchical_memory_limit ${6 * GiB}\nhierarchical_memsw_limit ${6 * GiB}`),
    });
    expect(readCgroupMemory(root, proc)).toEqual([{ limitBytes: 6 * GiB, usageBytes: 2 * GiB, reclaimableBytes: GiB, swapFreeBytes: 0, path: '/a/b', inherited: true }]);
  });

  test('nothing readable: undefined or no levels, and the machine figures stand', async () => {
    const root = await scratchDir('tidarc-cgroup-none-');
    expect(readCgroupMemory(root, join(root, 'missing'))).toBeUndefined();
    writeFileSync(join(root, 'proc'), '1:cpu:/\n');
    expect(readCgroupMemory(root, join(root, 'proc'))).toBeUndefined();
    writeFileSync(join(root, 'proc'), '0::/a\n');
    writeCgroup(join(root, 'a'), { 'memory.max': 'garbage', 'memory.current': 1 });
    expect(readCgroupMemory(root, join(root, 'proc'))).toEqual([]);
    expect(withCgroupLimit(MACHINE, [])).toBe(MACHINE);
  });
});
