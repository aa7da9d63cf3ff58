/**
 * The device check's sm_90a attention part: src/bench/attention-sm90a-bundle.ts writes each case's
 * sm_90a and mma.sync units with what scripts/device-check/attention_sm90a.py needs to launch
 * them (Qwen3-8B's k = 16 and prefill chunk at L = 4k/16k, batch 1/8 for the H200), and the
 * script's dry run on the emulated driver holds both kernels of the small case to the float64
 * reference at splits 1 and 3 (through its own tensor-map encoding and argument packing);
 * prebuild.py (run by prepare.ts) builds its units before the GPU session.
 * Tagged: a C++ compiler, python3 with numpy.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { DRY_RUN_ATTENTION_SM90A, FULL_ATTENTION_SM90A, prepareAttentionSm90aBundle } from '../../src/bench/attention-sm90a-bundle.js';
import { findCxx } from '../../src/build/toolchain.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const numpy = await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-attn-sm90a-bundle-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('the device check\'s sm_90a attention part', () => {
  test('the H200 bundle: k = 16 and the prefill chunk of Qwen3-8B, each with its sm_90a and mma.sync units, at L = 4k/16k and batch 1/8', async () => {
    const b = await prepareAttentionSm90aBundle(join(root, 'full'), FULL_ATTENTION_SM90A, false);
    expect(b.cases.map((c) => [c.name, c.steps, c.sm90a.rowTiles, c.sm90a.block, c.sm90a.tileN])).toEqual([['tidar_k16', 272, 9, 288, 64], ['prefill_c64', 64, 2, 288, 64]]);
    expect(b.points).toEqual([{ prefix: 4096, batch: 1 }, { prefix: 4096, batch: 8 }, { prefix: 16384, batch: 1 }, { prefix: 16384, batch: 8 }]);
    expect(b.nvccFlags.sm90a).toContain('-gencode=arch=compute_90a,code=sm_90a');
    expect(b.nvccFlags.sm90).toContain('-gencode=arch=compute_90,code=sm_90');
    for (const c of b.cases) {
      expect(c.visible).toHaveLength(c.steps);
      for (const k of [c.sm90a, c.sm90]) expect(readFileSync(join(root, 'full', k.source), 'utf8')).toContain(k.symbol);
    }
    expect(JSON.parse(readFileSync(join(root, 'full', 'attention_sm90a.json'), 'utf8'))).toEqual(JSON.parse(JSON.stringify(b)));
  });

  test.skipIf(!numpy)('prebuild.py builds its units beside their sources: the sm_90a ones for sm_90a, their mma.sync twins for sm_90 (a stand-in nvcc)', async () => {
    const dir = join(root, 'pre');
    const b = await prepareAttentionSm90aBundle(dir, FULL_ATTENTION_SM90A, false);
    const nvcc = join(root, 'fake-nvcc');
    writeFileSync(nvcc, '#!/bin/bash\nout=""; prev=""\nfor a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done\necho "$@" > "$out"\n');
    chmodSync(nvcc, 0o755);
    await exec('python3', ['-c', 'import sys, pathlib; sys.path.insert(0, sys.argv[1]); import prebuild; b = pathlib.Path(sys.argv[2]); prebuild.prebuild(b, "90"); assert prebuild.prebuilt(b, "90")', resolve('scripts/device-check'), dir], { env: { ...process.env, NVCC: nvcc } });
    for (const c of b.cases) {
      expect(readFileSync(join(dir, c.sm90a.fatbin), 'utf8')).toContain('-gencode=arch=compute_90a,code=sm_90a');
      expect(readFileSync(join(dir, c.sm90.fatbin), 'utf8')).toContain('-gencode=arch=compute_90,code=sm_90');
    }
  });

  test.skipIf(!cxx.found || !numpy)('the dry run on the emulated driver: both kernels against float64 at splits 1 and 3', async () => {
    const dir = join(root, 'dry');
    const [, driver] = await Promise.all([prepareAttentionSm90aBundle(dir, DRY_RUN_ATTENTION_SM90A, true), sharedEmulatedDriver()]);
    const { stdout } = await exec('python3', [resolve('scripts/device-check/attention_sm90a.py'), '--bundle', dir, '--dry-run'], { env: { ...process.env, TIDARC_LIBCUDA: driver }, maxBuffer: 64 << 20 });
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as { sm90aAttention: { ok: boolean; correctness: { kernel: string; splits: number; ok: boolean }[] } };
    expect(out.sm90aAttention.correctness.map((r) => [r.kernel, r.splits, r.ok])).toEqual([['sm90a', 1, true], ['sm90a', 3, true], ['sm90', 1, true], ['sm90', 3, true]]);
    expect(out.sm90aAttention.ok).toBe(true);
    // parts.py's call: run() hands each result so far to save(), so a part killed at its deadline still reports.
    const script = 'import sys, os, json, pathlib; sys.path.insert(0, sys.argv[1]); import attention_sm90a as a; from kernels import Driver; saved = []; '
      + 'r = a.run(Driver(os.environ["TIDARC_LIBCUDA"]), pathlib.Path(sys.argv[2]), True, lambda s: None, save=lambda x: saved.append(json.loads(json.dumps(x)))); print(json.dumps(saved))';
    const saved = JSON.parse((await exec('python3', ['-c', script, resolve('scripts/device-check'), dir], { env: { ...process.env, TIDARC_LIBCUDA: driver }, maxBuffer: 64 << 20 })).stdout) as { correctness: unknown[]; ok: boolean }[];
    expect(saved.map((x) => [x.correctness.length, x.ok])).toEqual([[4, true]]);
  }, 300_000);
});
