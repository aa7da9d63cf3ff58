// The first use of the emulated driver builds a kernels directory's modules (buildEmulatedCudaModules):
// its log counted the variants ([1/6]..[6/6]) and then printed the GPU operators and the GEMM units
// as six more uncounted `built` lines. One count now runs over every module it builds. The model's
// sources are replaced by stubs that define the same kernels (the count, not the kernels, is under
// test: a stub builds in seconds), and most modules are present already, so it builds five. Needs g++.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import type { Manifest } from '../../src/codegen/manifest.js';
import { emulatedModuleKey, emulatedModulePath } from '../../src/emulate/emulated-driver.js';
import { MODULES_STAMP, buildEmulatedCudaModules } from '../../src/emulate/emulated-modules.js';
import { readManifest } from '../../src/runtime/kernel-library.js';
import { opKernels } from '../../src/runtime/cuda/op-abi.js';
import { runTidarc } from '../helpers/cli.js';
import { scratchDir } from '../helpers/scratch.js';

const cxx = await findCxx();

const stub = (header: string, kernels: readonly { name: string; argsType: string }[]): string =>
  [`#include "${header}"`, ...kernels.map((k) => `extern "C" __global__ void ${k.name}(const ${k.argsType} args) { (void)args; }`), ''].join('\n');

describe.skipIf(!cxx.found)('the emulated modules\' build log', () => {
  test('one count over the variants, the GPU operators and the GEMM units it builds', { timeout: 300_000 }, async () => {
    const dir = join(await scratchDir('tidarc-emu-count-'), 'kernels');
    const compiled = await runTidarc('compile', 'examples/tiny.json', '--arch', 'sm_90', '--no-build', '--out', dir);
    expect(compiled.code, compiled.stderr).toBe(0);
    const manifest: Manifest = readManifest(dir);
    const variants = ['tidar_k2', 'ar'];
    const units = ['gemm_bf16_n256_k256', 'gemm_bf16_n260_k256'];  // the second also holds its row-stats kernel
    const present = (source: string): void => writeFileSync(emulatedModulePath(join(dir, source.replace(/\.cu$/, '.fatbin'))), 'built before');
    for (const v of manifest.variants) {
      if (variants.includes(v.name)) writeFileSync(join(dir, v.sources.cuda), stub('tidarc_abi.h', [{ name: v.symbols.cuda, argsType: manifest.abi.struct }]));
      else present(v.sources.cuda);
    }
    for (const source of new Set((manifest.gemms ?? []).map((g) => g.source))) {
      const unit = (manifest.gemms ?? []).filter((g) => g.source === source);
      if (!units.includes(unit[0]!.unit)) {
        present(source);
        continue;
      }
      const kernels = [...new Set(unit.flatMap((g) => [g.kernel, ...(g.rowStatsKernel ? [g.rowStatsKernel] : [])]))];
      writeFileSync(join(dir, source), stub('tidarc_gemm_abi.h', kernels.map((name) => ({ name, argsType: 'TidarcGemmArgs' }))));
    }
    expect(units.every((u) => (manifest.gemms ?? []).some((g) => g.unit === u))).toBe(true);
    writeFileSync(join(dir, 'cuda', 'tidarc_ops.cu'), stub('tidarc_ops_abi.h', opKernels()));
    // The modules present were built under this emulator: kept, not rebuilt.
    writeFileSync(join(dir, 'cuda', MODULES_STAMP), `${await emulatedModuleKey()}\n`);

    const lines: string[] = [];
    await buildEmulatedCudaModules(dir, (line) => lines.push(line));
    const built = lines.filter((l) => / built /.test(` ${l}`));
    expect(built.map((l) => /^\[(\d+)\/(\d+)\] built /.exec(l)?.slice(1))).toEqual([1, 2, 3, 4, 5].map((k) => [String(k), '5']));
    // Variants first (in the order the pool finishes them), then the operators, then the GEMM units.
    expect(built.map((l) => l.replace(/^\[\d+\/\d+\] built /, '')).slice(0, 2).sort()).toEqual(['cuda/ar.emu.so', 'cuda/tidar_k2.emu.so']);
    expect(built.slice(2).map((l) => l.replace(/^\[\d+\/\d+\] built /, ''))).toEqual(['cuda/tidarc_ops.emu.so', ...units.map((u) => `cuda/${u}.emu.so`)]);
    // A second use builds nothing, and says nothing.
    const again: string[] = [];
    await buildEmulatedCudaModules(dir, (line) => again.push(line));
    expect(again).toEqual([]);
  });
});
