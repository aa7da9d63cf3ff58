/**
 * `tidarc compile` and the GEMMs: the generator plans the linear layers of the model's step
 * kinds (qkv and gate_up fused: four GEMMs a layer plus lm_head) and lists every kernel under
 * "gemms" in manifest.json; a shape the kernels refuse is named under "gemmRefusals"; a build
 * compiles each GEMM unit and puts its ptxas figures per arch into the entries (here with a
 * stand-in nvcc that reports fixed figures, so the test needs no CUDA). Needs: nothing.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { generateModel } from '../../src/codegen/generate.js';
import { packageRoot } from '../../src/util/paths.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { modelForShape } from '../helpers/models.js';

const qwen3 = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-gemm-manifest-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('GEMMs in the generated output', () => {
  const out = generateModel(qwen3, { arches: ['sm_80', 'sm_90'] });
  const gemms = out.manifest.gemms!;

  test('qwen3-8b: five weight shapes x its step row counts, one source each', () => {
    const units = [...new Set(gemms.map((g) => g.unit))];
    expect(units.map((u) => gemms.find((g) => g.unit === u)!.roles.join('+')).sort()).toEqual(['down', 'gate_up', 'lm_head', 'o', 'qkv']);
    const shapes = Object.fromEntries(gemms.map((g) => [g.roles.join('+'), [g.n, g.k]]));
    expect(shapes).toEqual({ qkv: [6144, 4096], o: [4096, 4096], gate_up: [24576, 4096], down: [4096, 12288], lm_head: [151936, 4096] });
    for (const u of units) expect(gemms.filter((g) => g.unit === u).map((g) => g.m)).toEqual([1, 20, 64, 72, 272]);
    expect(gemms).toHaveLength(25);
    expect(out.manifest.gemmRefusals).toBeUndefined();
    for (const h of ['cuda/tidarc_gemm.cuh', 'cuda/tidarc_gemm_abi.h']) expect(out.files.has(h), h).toBe(true);
  });

  test('every kernel of a unit shares its split-K and is in its source; split-K counters exactly when split-K > 1, no reduce kernel', () => {
    for (const g of gemms) {
      const source = out.files.get(g.source)!;
      expect(source, g.source).toContain(`${g.kernel}(TidarcGemmArgs args)`);
      expect(gemms.filter((o) => o.unit === g.unit).every((o) => o.splitK === g.splitK && o.plan.kTilesPerSplit === g.plan.kTilesPerSplit)).toBe(true);
      expect(source.includes(`kSplitK = ${g.splitK};`)).toBe(true);
      // The split-K sum runs inside the launch: the source has no second kernel for it.
      expect(source).not.toMatch(/_reduce\(TidarcGemmArgs/);
      expect(g.launch.splitCounters).toBe(g.splitK > 1 ? `ceil(rows / ${g.plan.blockM}) * ${g.launch.nTiles}` : undefined);
      // 64- or 128-column tiles as the cost model chooses per M (gemm-tile-choice.ts), 128 for the lm_head's row statistics.
      const blockN = g.plan.blockN;
      expect(g.rowStatsKernel ? [128] : [64, 128]).toContain(blockN);
      expect(g.launch.nTiles).toBe(Math.ceil(g.n / blockN));
      expect(g.launch.grid).toEqual([`ceil(rows / ${g.plan.blockM})`, String(Math.ceil(g.n / blockN)), String(g.splitK)]);
    }
  });

  test('fold-norms: the residual units (o, down) have the producer code, the ones reading a norm (qkv, gate_up, lm_head) the consumer code; the manifest says so', () => {
    for (const g of gemms) {
      const source = out.files.get(g.source)!;
      const producer = g.roles.some((r) => r === 'o' || r === 'down'), consumer = g.roles.some((r) => ['qkv', 'gate_up', 'lm_head'].includes(r));
      expect([g.normOut, g.rowScale], g.unit).toEqual([producer ? true : undefined, consumer ? true : undefined]);
      expect(source).toContain(`kNormOut = ${producer};`);
      expect(source).toContain(`kRowScale = ${consumer};`);
    }
    // fp16 never folds (gamma * x of a large residual can overflow): no unit carries the code.
    const fp16 = generateModel({ ...qwen3, dtype: 'fp16' }, { arches: ['sm_80'] });
    expect(fp16.manifest.gemms!.some((g) => g.normOut || g.rowScale)).toBe(false);
    for (const [name, text] of fp16.files) if (name.startsWith('cuda/gemm_')) expect(text, name).toContain('kNormOut = false;');
  });

  test('draft lengths set the row counts: 1, k(k+1) per draft, the prefill chunk', () => {
    const g = generateModel(qwen3, { arches: ['sm_90'], drafts: [2] }).manifest.gemms!;
    expect([...new Set(g.map((x) => x.m))]).toEqual([1, 6, 64]);
  });

  test('a shape the kernels refuse is named with the reason; the other layers keep their GEMMs', () => {
    const spec: ModelSpec = { ...modelForShape({ dtype: 'fp16', headDim: 64, qHeads: 2, kvHeads: 1 }, [1]), intermediateSize: 100 };
    const m = generateModel(spec, { arches: ['sm_80'] }).manifest;
    expect(m.gemmRefusals).toEqual([{ role: 'down', n: 128, k: 100, reason: expect.stringMatching(/\(k = 100\); allowed: a multiple of 8/) }]);
    expect(m.gemms!.some((g) => g.roles.includes('down'))).toBe(false);
    expect(m.gemms!.some((g) => g.roles.includes('gate_up'))).toBe(true);
  });
});

describe('a build puts the ptxas figures of every GEMM kernel into the manifest', () => {
  test('with a stand-in nvcc', async () => {
    // Writes its output, then reports each kernel of the source like ptxas -v would.
    const nvcc = join(scratch, 'fake-nvcc');
    writeFileSync(nvcc, [
      '#!/bin/sh',
      'if [ "$1" = "--version" ]; then echo "Cuda compilation tools, release 99.9, stand-in"; exit 0; fi',
      'prev=""; for a in "$@"; do if [ "$prev" = "-o" ]; then out="$a"; fi; prev="$a"; src="$a"; done',
      'echo stand-in > "$out"',
      'grep -o "__global__ void __launch_bounds__([^)]*) [A-Za-z0-9_]*" "$src" | awk \'{print $NF}\' | while read k; do',
      '  echo "ptxas info    : Compiling entry function \'$k\' for \'sm_80\'" >&2',
      '  echo "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" >&2',
      '  echo "ptxas info    : Used 42 registers, used 1 barriers, 408 bytes cmem[0]" >&2',
      'done',
    ].join('\n'));
    chmodSync(nvcc, 0o755);
    const saved = { nvcc: process.env['NVCC'], cxx: process.env['CXX'] };
    process.env['NVCC'] = nvcc;
    process.env['CXX'] = join(scratch, 'no-such-cxx');  // no CPU library: this test is about nvcc
    try {
      // K = 1024 for down: 16 k tiles, split into 2 parts: a split-K unit has its one kernel's figures.
      const spec: ModelSpec = { ...modelForShape({ dtype: 'bf16', headDim: 64, qHeads: 2, kvHeads: 1 }, [1]), intermediateSize: 1024 };
      const r = await compileModel({ spec, arches: ['sm_80'], outDir: join(scratch, 'out'), build: 'all', jobs: 2, log: () => undefined });
      const gemms = r.manifest.gemms!;
      expect(gemms.length).toBeGreaterThan(0);
      expect(gemms.some((g) => g.splitK > 1)).toBe(true);
      for (const g of gemms) {
        expect(r.manifest.build?.nvcc?.variants[g.unit]?.binary, g.unit).toBe(g.source.replace(/\.cu$/, '.fatbin'));
        expect(g.ptxas?.['sm_80']?.kernel.registers, g.kernel).toBe(42);
      }
      const written = JSON.parse(readFileSync(join(r.outDir, 'manifest.json'), 'utf8')) as typeof r.manifest;
      expect(written.gemms).toEqual(gemms);
    } finally {
      for (const [k, v] of [['NVCC', saved.nvcc], ['CXX', saved.cxx]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }, 120_000);
});
