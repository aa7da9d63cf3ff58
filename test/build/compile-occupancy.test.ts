/**
 * A build records each attention variant's occupancy per arch in the manifest (issue 15 item 2):
 * the main kernel's ptxas registers, its static + dynamic shared memory and the CTAs an SM holds,
 * which the split-KV rule counts slots with. A stand-in nvcc reports 178 registers for every
 * kernel (what nvcc 13 gives tidar_k4 at sm_90) and 24 bytes of static shared memory.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { occupancy } from '../../src/codegen/occupancy.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { modelForShape } from '../helpers/models.js';

const scratch = mkdtempSync(join(tmpdir(), 'tidarc-occupancy-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test('every variant\'s occupancy at each built arch, from its main kernel\'s ptxas figures and launch', async () => {
  const nvcc = join(scratch, 'fake-nvcc');
  writeFileSync(nvcc, [
    '#!/bin/sh',
    'if [ "$1" = "--version" ]; then echo "Cuda compilation tools, release 99.9, stand-in"; exit 0; fi',
    'prev=""; for a in "$@"; do if [ "$prev" = "-o" ]; then out="$a"; fi; prev="$a"; src="$a"; done',
    'echo stand-in > "$out"',
    'grep -o "__global__ void __launch_bounds__([^)]*) [A-Za-z0-9_]*" "$src" | awk \'{print $NF}\' | while read k; do',
    '  for arch in sm_80 sm_90; do',
    '    echo "ptxas info    : Compiling entry function \'$k\' for \'$arch\'" >&2',
    '    echo "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" >&2',
    '    echo "ptxas info    : Used 178 registers, used 1 barriers, 24 bytes smem, 408 bytes cmem[0]" >&2',
    '  done',
    'done',
  ].join('\n'));
  chmodSync(nvcc, 0o755);
  const saved = { nvcc: process.env['NVCC'], cxx: process.env['CXX'] };
  process.env['NVCC'] = nvcc;
  process.env['CXX'] = join(scratch, 'no-such-cxx');
  try {
    const spec: ModelSpec = modelForShape({ dtype: 'bf16', headDim: 128, qHeads: 4, kvHeads: 1 }, [4]);
    // tidar_k4 pinned to one CTA of 5 warps (the planner now splits its 80 rows over 3 CTAs of 2): the sub-partition case below.
    const r = await compileModel({ spec, arches: ['sm_80', 'sm_90'], outDir: join(scratch, 'out'), build: 'all', jobs: 2, tiles: { tidar_k4: { warps: 5, tileN: 64 } }, log: () => undefined });
    expect(r.manifest.variants.length).toBeGreaterThan(1);
    for (const v of r.manifest.variants) {
      const shared = 24 + v.launch.dynamicSharedBytes;
      for (const arch of ['sm_80', 'sm_90'] as const) {
        const o = occupancy(arch, { registers: 178, sharedBytes: shared, threads: v.launch.block });
        expect(v.occupancy?.[arch], `${v.name} ${arch}`).toEqual({ registers: 178, sharedBytes: shared, ctasPerSm: o.ctasPerSm, limit: o.limit });
      }
    }
    // Head dim 128, 64 keys: 69,632 bytes of K/V stages. block_k4's 16 rows are 4 warps splitting the keys: 178 registers
    // hold 2 CTAs, and sm_80's shared memory 2 as well. tidar_k4's 80 rows are one CTA of 5 warps (the pinned tile):
    // 2 of its warps share a sub-partition's registers, which hold 2 such warps, so 1 CTA.
    const b4 = r.manifest.variants.find((v) => v.name === 'block_k4')!;
    expect([b4.launch.block, b4.occupancy?.['sm_90']?.ctasPerSm, b4.occupancy?.['sm_90']?.limit]).toEqual([128, 2, 'registers']);
    expect(b4.occupancy?.['sm_80']?.ctasPerSm).toBe(2);
    const k4 = r.manifest.variants.find((v) => v.name === 'tidar_k4')!;
    expect([k4.launch.block, k4.occupancy?.['sm_90']?.ctasPerSm, k4.occupancy?.['sm_90']?.limit]).toEqual([160, 1, 'registers']);
    const written = JSON.parse(readFileSync(join(r.outDir, 'manifest.json'), 'utf8')) as typeof r.manifest;
    expect(written.variants).toEqual(r.manifest.variants);
  } finally {
    for (const [k, v] of [['NVCC', saved.nvcc], ['CXX', saved.cxx]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}, 120_000);
