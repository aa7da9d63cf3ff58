/**
 * tidarc_op_kv_commit_layers (templates/cuda/tidarc_ops.cu): a decode step's K/V commit for every
 * layer in one launch (grid z over the layers), each layer's step K/V and cache addresses read
 * from a device table (gpu-ops.ts packKvCommitTable; the runner fills one per step workspace),
 * the row count and first slot read from device memory. Three layers of separate allocations,
 * 2 KV heads, head_dim 80 (more than the block's 64 threads), 8 slots, at most 3 rows. Each case
 * starts from caches filled with one sentinel per buffer; afterwards rows [0, count) of each
 * layer's step K and V must sit at slots [slot, slot + count) of THAT layer's caches, for each
 * head, and every other element must still be the buffer's sentinel. Cases: 2 rows at slot 5,
 * 3 rows at slot 0, 1 row at the last slot, a count of 0 (nothing written), and the same counts
 * and slots by replaying one captured graph (what a step graph does: count and slot change, the
 * launch does not). Tagged: a C++ compiler (the emulated driver); [gpu] the same on a GPU.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { packageRoot } from '../../../src/util/paths.js';
import { gpuAvailable, opsModule } from '../../helpers/ops-module.js';
import { type KvCommitCase, type KvCommitResult, type KvCommitShape, sentinel, stepValue } from './fixtures/kv-commit-layers-case.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const gpu = await gpuAvailable();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-kv-commit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SHAPE: KvCommitShape = { layers: 3, kvHeads: 2, headDim: 80, capacity: 8, maxCount: 3 };
const POINTS: readonly (readonly [number, number])[] = [[2, 5], [3, 0], [1, 7], [0, 2]];
const CASES: KvCommitCase[] = (['launch', 'graph'] as const).flatMap((via) => POINTS.map(([count, slot]) => ({ count, slot, via })));

/** A layer's K (kv 0) or V (kv 1) cache after committing `count` rows at `slot` onto the sentinel. */
function expected(l: number, kv: number, count: number, slot: number): number[] {
  const { kvHeads: H, capacity: C, headDim: D } = SHAPE;
  const cache = new Array<number>(H * C * D).fill(sentinel(l, kv));
  for (let j = 0; j < count; j++) for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) cache[(h * C + slot + j) * D + d] = stepValue(SHAPE, l, kv, j, h, d);
  return cache;
}

describe.for([
  { on: 'emulated' as const, label: 'the emulated driver', skip: !cxx.found },
  { on: 'gpu' as const, label: '[gpu] the GPU', skip: !gpu },
])('kv_commit_layers: $label', ({ on, skip }) => {
  let results: KvCommitResult[];
  beforeAll(async () => {
    if (skip) return;
    const { module, env } = await opsModule(root, on);
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'kv-commit-layers-child.ts'), module, JSON.stringify(SHAPE), JSON.stringify(CASES)], {
      cwd: packageRoot(), env, maxBuffer: 16 << 20, timeout: 300_000,
    });
    results = JSON.parse(stdout.trim().split('\n').pop()!) as KvCommitResult[];
  }, 600_000);

  test.skipIf(skip).for(CASES.map((c) => [c.via, c.count, c.slot] as const))('%s: %i rows at slot %i land in each layer\'s own K and V cache; nothing else changes', ([via, count, slot]) => {
    const r = results.find((x) => x.via === via && x.count === count && x.slot === slot)!;
    expect(r.k).toHaveLength(SHAPE.layers);
    for (let l = 0; l < SHAPE.layers; l++) {
      expect(r.k[l], `layer ${l} K`).toEqual(expected(l, 0, count, slot));
      expect(r.v[l], `layer ${l} V`).toEqual(expected(l, 1, count, slot));
    }
  });
});
