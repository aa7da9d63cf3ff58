/**
 * tidarc_op_rope_pack with Qwen3's q/k head norms (fuseHeadNorms, src/ir/step-rewrite.ts) on the
 * emulated driver, against the launches it replaces: tidarc_op_rmsnorm in place on q and on k
 * (rows * heads rows of head_dim), then rope_pack without norms. Bitwise, not within a
 * tolerance: the fused kernel sums each head row's squares in float64 in the same tree as
 * rmsnorm's block (templates/cuda/tidarc_ops.cu norm_subtree), rounds 1 / rms the same way and
 * scales w * (x * inv) as rmsnorm stores it, so there is nothing to tolerate; a difference is a
 * different reduction or a wrong weight. At row counts 1, 20 and 72 (a TiDAR k = 8 step's rows),
 * each row's outputs equal the same row's at 72 rows (batch invariance: greedy TiDAR == AR relies
 * on it). Shapes: Qwen3's head_dim 128 with 16 + 8 heads (0.6B), a head_dim over 256 (two
 * columns a lane, two chunks of RoPE pairs) and 68 heads (two rounds of the per-head sums).
 * The norms must change the result (not a no-op), and q and k are only read.
 * Tagged: a C++ compiler (the emulated driver).
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
import { opsModule } from '../../helpers/ops-module.js';
import type { RopeNormCase, RopeNormResult } from './fixtures/rope-pack-norm-child.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-rope-norm-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ROWS = [1, 20, 72];
const CASES: RopeNormCase[] = [
  { name: 'qwen3-0.6b heads (16 + 8 of 128), bf16', qHeads: 16, kvHeads: 8, headDim: 128, dtype: 'bf16', normDtype: 'bf16', rowCounts: ROWS },
  { name: 'head_dim 300, fp16, float32 norms', qHeads: 2, kvHeads: 1, headDim: 300, dtype: 'fp16', normDtype: 'f32', rowCounts: ROWS },
  { name: '66 + 2 heads of 16, fp16 norms', qHeads: 66, kvHeads: 2, headDim: 16, dtype: 'bf16', normDtype: 'fp16', rowCounts: ROWS },
];

describe.skipIf(!cxx.found)('rope_pack with the q/k head norms on the emulated driver', () => {
  let results: RopeNormResult[];
  beforeAll(async () => {
    if (!cxx.found) return;
    const { module, env } = await opsModule(root, 'emulated');
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'rope-pack-norm-child.ts'), module, JSON.stringify(CASES)], {
      cwd: packageRoot(), env, maxBuffer: 16 << 20, timeout: 600_000,
    });
    results = JSON.parse(stdout.trim().split('\n').pop()!) as RopeNormResult[];
  }, 900_000);

  test.for(CASES)('$name: bitwise the unfused rmsnorm + rmsnorm + rope_pack at 1, 20 and 72 rows', (c) => {
    const mine = results.filter((r) => r.name === c.name);
    expect(mine.map((r) => r.rows)).toEqual(ROWS);
    for (const r of mine) expect(r.vsUnfused, `${r.rows} rows`).toBe(0);
  });

  test.for(CASES)('$name: a row\'s outputs do not depend on the row count (bitwise the 72-row launch\'s rows)', (c) => {
    for (const r of results.filter((x) => x.name === c.name)) expect(r.vsLargest, `${r.rows} rows`).toBe(0);
  });

  test.for(CASES)('$name: the norms change q and k (most outputs differ from rope_pack without them); q and k are only read', (c) => {
    for (const r of results.filter((x) => x.name === c.name)) {
      expect(r.sameAsUnnormed / r.qkOutputs, `${r.rows} rows`).toBeLessThan(0.2);
      expect(r.inputsKept, `${r.rows} rows`).toBe(true);
    }
  });
});
