/**
 * A build with --arch sm_90a records the sm_90a attention's ptxas figures in the manifest
 * (variant.sm90a.occupancy: registers, static + dynamic shared memory, CTAs an SM holds at
 * sm_90a), from its own unit's report, beside the variant's own kernel's occupancy per arch. A
 * stand-in nvcc reports, for every kernel and every arch it is asked for, 168 registers and 16
 * bytes of static shared memory.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { occupancy } from '../../src/codegen/occupancy.js';
import { modelForShape } from '../helpers/models.js';

const scratch = mkdtempSync(join(tmpdir(), 'tidarc-occupancy-sm90a-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test('the sm_90a attention unit\'s occupancy at sm_90a, from its ptxas figures and launch', async () => {
  const nvcc = join(scratch, 'fake-nvcc');
  writeFileSync(nvcc, [
    '#!/bin/sh',
    'if [ "$1" = "--version" ]; then echo "Cuda compilation tools, release 99.9, stand-in"; exit 0; fi',
    'prev=""; arches=""; for a in "$@"; do if [ "$prev" = "-o" ]; then out="$a"; fi; prev="$a"; src="$a";',
    '  case "$a" in *code=sm_*) arches="$arches ${a##*code=}";; esac; done',
    'echo stand-in > "$out"',
    'grep -o "__global__ void __launch_bounds__([^)]*) [A-Za-z0-9_]*" "$src" | awk \'{print $NF}\' | while read k; do',
    '  for arch in $arches; do',
    '    echo "ptxas info    : Compiling entry function \'$k\' for \'$arch\'" >&2',
    '    echo "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" >&2',
    '    echo "ptxas info    : Used 168 registers, used 1 barriers, 16 bytes smem" >&2',
    '  done',
    'done',
  ].join('\n'));
  chmodSync(nvcc, 0o755);
  const saved = { nvcc: process.env['NVCC'], cxx: process.env['CXX'] };
  process.env['NVCC'] = nvcc;
  process.env['CXX'] = join(scratch, 'no-such-cxx');
  try {
    const r = await compileModel({ spec: modelForShape({ dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 1 }, [2, 16]), arches: ['sm_90', 'sm_90a'], outDir: join(scratch, 'out'), build: 'all', jobs: 2, log: () => undefined });
    const k16 = r.manifest.variants.find((v) => v.name === 'tidar_k16')!;
    const shared = 16 + k16.sm90a!.dynamicSharedBytes;
    const o = occupancy('sm_90a', { registers: 168, sharedBytes: shared, threads: k16.sm90a!.block });
    expect(k16.sm90a!.occupancy).toEqual({ registers: 168, sharedBytes: shared, ctasPerSm: o.ctasPerSm, limit: o.limit });
    expect(k16.occupancy?.['sm_90']?.registers).toBe(168);  // the variant's own kernel, as before
    expect(r.manifest.variants.find((v) => v.name === 'tidar_k2')!.sm90a).toBeUndefined();  // memory-bound: no sm_90a unit
  } finally {
    for (const [k, v] of [['NVCC', saved.nvcc], ['CXX', saved.cxx]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}, 120_000);
