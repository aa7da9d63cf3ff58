import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import { type HostMemory, checkHostFits, cpuRunnerBytes, describeHostMemory, hostFit, hostNeed, parseArcShrinkable, parseCgroupLimit, parseFileCache, parseMeminfo, withCgroupLimit, withShrinkable } from '../../src/load/host-memory.js';
import { checkpointFileBytes, readHostMemory } from '../../src/load/host-memory-now.js';
import { openModelParts } from '../../src/load/model-parts.js';
import { CAPACITY_QUANTUM } from '../../src/load/runner-pool.js';
import { formatBytes } from '../../src/runtime/cuda/device-memory.js';
import { KvCache } from '../../src/runtime/model/kv-cache.js';
import { smallSpec, writeRandomModel } from '../helpers/random-model.js';
import { scratchDir } from '../helpers/scratch.js';

const GiB = 2 ** 30;
/** The brief's machine: an 8B bf16 checkpoint on a 24 GB host without swap. */
const HOST: HostMemory = { availableBytes: Math.round(11.2 * GiB), totalBytes: Math.round(23.4 * GiB), swapFreeBytes: 0 };
const CKPT = Math.round(16.4 * GiB);

describe('the decision (pure)', () => {
  test('a checkpoint larger than available + free swap is one sentence with the figures', () => {
    const fit = hostFit(hostNeed(CKPT), HOST);
    expect(fit.fits).toBe(false);
    expect(fit.sentence).toBe('the checkpoint (16.4 GiB) needs more memory than this machine has available: 11.2 GiB of 23.4 GiB (swap: 0 bytes free)');
    expect(() => checkHostFits(hostNeed(CKPT), HOST, '/models/8b')).toThrow(TidarcError);
    expect(() => checkHostFits(hostNeed(CKPT), HOST, '/models/8b')).toThrow(/^\/models\/8b: the checkpoint \(16\.4 GiB\) needs more memory than this machine has available: 11\.2 GiB of 23\.4 GiB \(swap: 0 bytes free\)/);
  });

  test('swap is counted: required <= available + swap free fits, one byte more does not', () => {
    const swap = { ...HOST, swapFreeBytes: CKPT - HOST.availableBytes };
    expect(hostFit(hostNeed(CKPT), swap).fits).toBe(true);
    expect(hostFit(hostNeed(CKPT + 1), swap).fits).toBe(false);
    expect(hostFit(hostNeed(CKPT + 1), swap).sentence).toMatch(/\(swap: 5\.2 GiB free\)$/);
    // A checkpoint that fits in what is available needs no swap.
    expect(hostFit(hostNeed(HOST.availableBytes), HOST).fits).toBe(true);
  });

  test('swap unknown (no /proc/meminfo): nothing is refused', () => {
    expect(hostFit(hostNeed(100 * GiB), { availableBytes: GiB, totalBytes: 2 * GiB }).fits).toBe(true);
  });

  test('cpu: the first runner is priced beside the checkpoint, its K/V cache as KvCache allocates it', () => {
    const spec = smallSpec('host-mem', [2]);
    const runner = cpuRunnerBytes(spec);
    expect(runner.capacity).toBe(CAPACITY_QUANTUM);
    const cache = new KvCache({ layers: spec.layers, kvHeads: spec.kvHeads, headDim: spec.headDim, capacity: CAPACITY_QUANTUM });
    expect(runner.kvCache).toBe([...cache.k, ...cache.v].reduce((n, a) => n + a.byteLength, 0));
    // A chunk's activations hold at least its fp32 hidden states and the MLP's intermediate, and one row of logits.
    expect(runner.firstPass).toBeGreaterThan(64 * (spec.hiddenSize + spec.intermediateSize) * 4 + spec.vocabSize * 4);
    expect(runner.total).toBe(runner.kvCache + runner.firstPass);
    const need = hostNeed(CKPT, spec);
    expect(need.totalBytes).toBe(CKPT + runner.total);
    // At the boundary the runner decides: the checkpoint alone fits, with the runner it does not.
    const edge = { ...HOST, availableBytes: CKPT };
    expect(hostFit(hostNeed(CKPT), edge).fits).toBe(true);
    const fit = hostFit(need, edge);
    expect(fit.fits).toBe(false);
    expect(fit.sentence).toMatch(/^the checkpoint \(16\.4 GiB\) and a 256-token cpu runner \(\d+\.\d [KM]iB\) need 16\.4 GiB, more memory than this machine has available: 16\.4 GiB of 23\.4 GiB \(swap: 0 bytes free\)$/);
  });
});

const MEMINFO = `MemTotal:       24543220 kB
MemFree:         1234567 kB
MemAvailable:   11744000 kB
Buffers:          123456 kB
Cached:          9876543 kB
SwapCached:            0 kB
SwapTotal:       2097148 kB
SwapFree:        1048576 kB
HugePages_Total:       0
`;

describe('/proc/meminfo', () => {
  test('MemAvailable, MemTotal and SwapFree in bytes', () => {
    expect(parseMeminfo(MEMINFO)).toEqual({ availableBytes: 11744000 * 1024, totalBytes: 24543220 * 1024, swapFreeBytes: 1048576 * 1024 });
    expect(describeHostMemory(parseMeminfo(MEMINFO)!)).toBe('11.2 GiB available of 23.4 GiB (swap: 1.0 GiB free)');
  });

  test('malformed: undefined (the check is skipped), never thrown', () => {
    expect(parseMeminfo('')).toBeUndefined();
    expect(parseMeminfo(MEMINFO.replace(/^SwapFree:.*$/m, ''))).toBeUndefined();  // a kernel before 2.6 / no swap line
    expect(parseMeminfo(MEMINFO.replace('11744000 kB', 'lots kB'))).toBeUndefined();
    expect(parseMeminfo(MEMINFO.replace(/^MemAvailable:.*$/m, 'MemAvailable:   11744000 MB'))).toBeUndefined();
    expect(parseMeminfo('\u0000\u0001 garbage')).toBeUndefined();
  });

  test('a ZFS host: the ARC above c_min is counted available (MemAvailable leaves it out; it shrinks on demand), at most the total', () => {
    const arcstats = '13 1 0x01 147 39984 5296094580 2711297458958\nname                            type data\nhits                            4    123\nc_min                           4    2147483648\nc_max                           4    34359738368\nsize                            4    32212254720\n';
    expect(parseArcShrinkable(arcstats)).toBe(28 * GiB);
    expect(parseArcShrinkable('name type data\nhits 4 1\n')).toBeUndefined();
    // 64 GiB, the ARC full at 30 GiB: MemAvailable 20 GiB; a 40 GiB checkpoint fits once the ARC gives back 28.
    const zfs: HostMemory = { availableBytes: 20 * GiB, totalBytes: 64 * GiB, swapFreeBytes: 0 };
    expect(hostFit(hostNeed(40 * GiB), zfs).fits).toBe(false);
    expect(withShrinkable(zfs, parseArcShrinkable(arcstats))).toEqual({ ...zfs, availableBytes: 48 * GiB });
    expect(hostFit(hostNeed(40 * GiB), withShrinkable(zfs, parseArcShrinkable(arcstats))).fits).toBe(true);
    expect(withShrinkable(zfs, undefined)).toBe(zfs);
    expect(withShrinkable(zfs, 100 * GiB).availableBytes).toBe(64 * GiB);
  });

  test.runIf(process.platform === 'linux')('this machine: read, available at most total', () => {
    const m = readHostMemory();
    expect(m).toBeDefined();
    expect(m!.availableBytes).toBeGreaterThan(0);
    expect(m!.availableBytes).toBeLessThanOrEqual(m!.totalBytes);
    expect(m!.swapFreeBytes).toBeGreaterThanOrEqual(0);
  });
});

describe('a memory cgroup (a container\'s --memory)', () => {
  const machine: HostMemory = { availableBytes: 60 * GiB, totalBytes: 64 * GiB, swapFreeBytes: 0 };
  test('a v2 swap limit bounds the swap counted, with or without a memory limit (a pod with memory.swap.max 0 cannot swap)', () => {
    const swappy: HostMemory = { availableBytes: 10 * GiB, totalBytes: 64 * GiB, swapFreeBytes: 8 * GiB };
    const noSwap = withCgroupLimit(swappy, { limitBytes: Infinity, usageBytes: GiB, reclaimableBytes: 0, swapFreeBytes: 0 });
    expect(noSwap).toEqual({ ...swappy, swapFreeBytes: 0 });
    expect(hostFit(hostNeed(12 * GiB), swappy).fits).toBe(true);
    expect(hostFit(hostNeed(12 * GiB), noSwap).fits).toBe(false);
    expect(withCgroupLimit(swappy, { limitBytes: 8 * GiB, usageBytes: GiB, reclaimableBytes: 0, swapFreeBytes: 2 * GiB }))
      .toEqual({ availableBytes: 7 * GiB, totalBytes: 8 * GiB, swapFreeBytes: 2 * GiB, cgroupLimited: true });
    // A swap limit above the machine's free swap, or none: the machine's.
    expect(withCgroupLimit(swappy, { limitBytes: Infinity, usageBytes: GiB, reclaimableBytes: 0, swapFreeBytes: 100 * GiB })).toBe(swappy);
    expect(withCgroupLimit(swappy, { limitBytes: Infinity, usageBytes: GiB, reclaimableBytes: 0 })).toBe(swappy);
  });

  test('its limit bounds available and total: what the limit leaves beside the usage, the file cache counted back', () => {
    const m = withCgroupLimit(machine, { limitBytes: 8 * GiB, usageBytes: 3 * GiB, reclaimableBytes: GiB });
    expect(m).toEqual({ availableBytes: 6 * GiB, totalBytes: 8 * GiB, swapFreeBytes: 0, cgroupLimited: true });
    // A 16 GiB checkpoint the machine could hold: refused, and the sentence says whose limit it is.
    const fit = hostFit(hostNeed(16 * GiB), m);
    expect(fit.sentence).toBe('the checkpoint (16.0 GiB) needs more memory than this process\'s memory cgroup (a container\'s limit) allows: 6.0 GiB of 8.0 GiB (swap: 0 bytes free)');
    expect(hostFit(hostNeed(16 * GiB), machine).fits).toBe(true);
    expect(describeHostMemory(m)).toBe('6.0 GiB available of 8.0 GiB (the memory cgroup\'s limit) (swap: 0 bytes free)');
  });

  test('no limit, or one above the machine: the machine\'s figures; the machine\'s available still bounds a loose limit', () => {
    expect(withCgroupLimit(machine, undefined)).toBe(machine);
    expect(withCgroupLimit(machine, { limitBytes: 128 * GiB, usageBytes: 0, reclaimableBytes: 0 })).toBe(machine);
    expect(withCgroupLimit({ ...machine, availableBytes: 2 * GiB }, { limitBytes: 32 * GiB, usageBytes: GiB, reclaimableBytes: 0 }).availableBytes).toBe(2 * GiB);
    // Usage past the limit (reclaim pending): nothing available, not a negative figure.
    expect(withCgroupLimit(machine, { limitBytes: 8 * GiB, usageBytes: 9 * GiB, reclaimableBytes: 0 }).availableBytes).toBe(0);
  });

  test('the files: v2 "max" and v1\'s near-2^63 are no limit; stat\'s active + inactive file cache, v1\'s total_ fields first', () => {
    expect(parseCgroupLimit('max\n')).toBeUndefined();
    expect(parseCgroupLimit('9223372036854771712\n')).toBeUndefined();
    expect(parseCgroupLimit('8589934592\n')).toBe(8 * GiB);
    expect(parseCgroupLimit('')).toBeUndefined();
    expect(parseCgroupLimit('-1')).toBeUndefined();
    expect(parseFileCache('anon 10\ninactive_file 356646912\nactive_file 5\n')).toBe(356646917);
    expect(parseFileCache('inactive_file 1\nactive_file 2\ntotal_inactive_file 2048\ntotal_active_file 4096\n')).toBe(6144);
    expect(parseFileCache('anon 10\n')).toBe(0);
    // A checkpoint read twice (a download's hash check, then a run) sits on the active list: a
    // 24 GiB container holding 16 GiB of it as cache still has room for the 16 GiB load.
    const v2 = 'anon 1073741824\nfile 17179869184\nactive_file 16106127360\ninactive_file 1073741824\n';
    const again = withCgroupLimit(machine, { limitBytes: 24 * GiB, usageBytes: 17 * GiB, reclaimableBytes: parseFileCache(v2) });
    expect(again.availableBytes).toBe(23 * GiB);
    expect(hostFit(hostNeed(16 * GiB), again).fits).toBe(true);
  });
});

describe("the checkpoint's bytes", () => {
  test('model.safetensors: its size; a sharded one: the shards the index names, each once; none: undefined', async () => {
    const dir = await scratchDir('tidarc-hostmem-');
    expect(checkpointFileBytes(dir)).toBeUndefined();
    writeFileSync(join(dir, 'a.safetensors'), Buffer.alloc(1000));
    writeFileSync(join(dir, 'b.safetensors'), Buffer.alloc(234));
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'a.safetensors', y: 'b.safetensors', z: 'a.safetensors' } }));
    expect(checkpointFileBytes(dir)).toBe(1234);
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'a.safetensors', y: 'missing.safetensors' } }));
    expect(checkpointFileBytes(dir)).toBeUndefined();
    writeFileSync(join(dir, 'model.safetensors.index.json'), '{not json');
    expect(checkpointFileBytes(dir)).toBeUndefined();
    writeFileSync(join(dir, 'model.safetensors'), Buffer.alloc(77));
    expect(checkpointFileBytes(dir)).toBe(77);
  });
});

describe('the load refuses before it reads the weights', () => {
  /**
   * A model directory whose config.json and tokenizer are real and whose model.safetensors is not
   * a safetensors file (zeros, `bytes` long, sparse): a load that read it would fail on its header.
   */
  async function unreadableWeights(bytes?: number): Promise<{ dir: string; size: number }> {
    const dir = await writeRandomModel(await scratchDir('tidarc-hostmem-load-'), smallSpec('host-mem', [2]), 1);
    const file = join(dir, 'model.safetensors');
    const size = bytes ?? statSync(file).size;
    writeFileSync(file, '');
    truncateSync(file, size);
    return { dir, size };
  }
  const small = (): HostMemory => ({ availableBytes: 1000, totalBytes: 4000, swapFreeBytes: 0 });

  test('cpu: too little memory is the sentence, not the header error the file would give', async () => {
    const { dir, size } = await unreadableWeights();
    const err = await openModelParts(dir, { backend: 'cpu', hostMemory: small }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TidarcError);
    const runner = cpuRunnerBytes(smallSpec('host-mem', [2]));
    expect((err as Error).message).toContain(`the checkpoint (${(size / 2 ** 10).toFixed(1)} KiB) and a 256-token cpu runner (${formatBytes(runner.total)}) need ${formatBytes(size + runner.total)}, `);
    expect((err as Error).message).toContain('more memory than this machine has available: 1000 bytes of 3.9 KiB (swap: 0 bytes free)');
    expect((err as TidarcError).details.source).toBe(dir);
  });

  test('enough memory, or a reading that fails: the load goes on and reads the file (its header error)', async () => {
    const { dir } = await unreadableWeights();
    const header = /safetensors|header/i;
    for (const hostMemory of [() => ({ availableBytes: 64 * GiB, totalBytes: 64 * GiB, swapFreeBytes: 0 }), () => undefined, () => { throw new Error('no /proc'); }]) {
      const err = await openModelParts(dir, { backend: 'cpu', hostMemory }).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(header);
      expect((err as Error).message).not.toMatch(/more memory than this machine has/);
    }
  });

  test.runIf(process.platform === 'linux')("this machine's own reading: a checkpoint larger than its memory and swap is refused at once", async () => {
    const m = parseMeminfo(readFileSync('/proc/meminfo', 'utf8'))!;
    const { dir } = await unreadableWeights(m.totalBytes + m.swapFreeBytes! + GiB);  // sparse: no disk used
    const started = performance.now();
    const err = await openModelParts(dir, { backend: 'cpu' }).catch((e: unknown) => e);
    // Where this test runs in a container with a memory limit (its own or a parent cgroup's), the sentence names that cgroup's limit instead.
    expect((err as Error).message).toMatch(/: the checkpoint \(\d+\.\d GiB\) and a 256-token cpu runner .* more memory than (this machine has available|this process's memory cgroup \(a container's limit\) allows|the limit of (an ancestor of )?memory cgroup \S+ allows): /);
    expect(performance.now() - started).toBeLessThan(2000);  // nothing of the file was read
  });
});
