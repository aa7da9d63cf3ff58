/**
 * The variant harnesses' protocol (src/emulate/harness-protocol.ts): the committed C++ reader is
 * the renderer's, it accepts exactly the command line the TypeScript side writes and sizes the
 * arrays as op-abi.ts does (g++ compiles harness_args.h with tidarc_attention_args.h and prints
 * what it read), and the files hold the arrays in the schema's order.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ARCHES } from '../../src/codegen/arch.js';
import { describeVariant } from '../../src/codegen/generate.js';
import { planAttention } from '../../src/codegen/plan.js';
import { tidarDecodeVariant } from '../../src/codegen/variant.js';
import { findCxx } from '../../src/build/toolchain.js';
import { renderCudaVariant } from '../../src/codegen/kernel-source.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { emulateVariant } from '../../src/emulate/emulate-variant.js';
import { runEmulator } from '../../src/emulate/emulator-run.js';
import { randomAttentionInputs } from '../../src/runtime/reference.js';
import { buildVariantEmulator } from '../../src/emulate/emulator-build.js';
import {
  HARNESS_HEADER, HARNESS_OPTIONS, type HarnessRun, harnessArgv, harnessDims, harnessInputBytes, harnessOutputs, renderHarnessHeader,
} from '../../src/emulate/harness-protocol.js';
import { ATTENTION_ARRAYS, attentionArrayFields, attentionElements, cFieldName } from '../../src/runtime/cuda/op-abi.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';

const cxx = await findCxx();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-harness-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const plan = planAttention(tidarDecodeVariant(2, { dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 2 }), ARCHES.sm_90.tile);
const variant = describeVariant(plan, [ARCHES.sm_90]);
const run: HarnessRun = { variant, batch: 3, cacheCapacity: 17, splits: 2, blockOrder: 1, inPath: '/x/in', outPath: '/x/out' };

test(`${HARNESS_HEADER} is the renderer's output (npx tsx scripts/generate-abi.ts rewrites it)`, () => {
  expect(readFileSync(resolve(HARNESS_HEADER), 'utf8')).toBe(renderHarnessHeader());
});

test('the command line names every option once, with the manifest\'s values', () => {
  const argv = harnessArgv(run);
  const flags = argv.filter((_, i) => i % 2 === 0);
  expect(flags).toEqual(HARNESS_OPTIONS.map((o) => `--${o.flag}`));
  const at = (flag: string): string => argv[argv.indexOf(flag) + 1]!;
  expect([at('--steps'), at('--row-tiles'), at('--threads'), at('--block-order')])
    .toEqual([variant.steps, variant.launch.rowTiles, variant.launch.block, 1].map(String));
  expect(harnessArgv({ ...run, blockOrder: undefined })[harnessArgv(run).indexOf('--block-order') + 1]).toBe('0');
  expect(harnessDims(run)).toEqual({ batch: 3, n: variant.steps, qHeads: 4, kvHeads: 2, headDim: 64, cacheCapacity: 17, numSplits: 2 });
});

test('the input file is every input array in declaration order at its element type; a wrong length is refused', () => {
  const dims = harnessDims(run);
  const inputs = Object.fromEntries(attentionArrayFields().filter((f) => ATTENTION_ARRAYS[f].role === 'in' || ATTENTION_ARRAYS[f].role === 'cache')
    .map((f, i) => [f, Array.from({ length: attentionElements(f, dims) }, () => i + 1)])) as unknown as Parameters<typeof harnessInputBytes>[0];
  const bytes = harnessInputBytes(inputs, dims);
  const sizes = { u16: 2, i32: 4, f32: 4 } as const;
  let at = 0;
  for (const [i, f] of Object.keys(inputs).entries()) {
    const n = attentionElements(f as keyof typeof ATTENTION_ARRAYS, dims), size = sizes[ATTENTION_ARRAYS[f as keyof typeof ATTENTION_ARRAYS].elem];
    expect(size === 2 ? bytes.readUInt16LE(at) : bytes.readInt32LE(at), f).toBe(i + 1);
    at += n * size;
  }
  expect(at).toBe(bytes.length);
  expect(Object.keys(inputs)).toEqual(['q', 'kCache', 'vCache', 'kStep', 'vStep', 'prefixLen']);
  expect(() => harnessInputBytes({ ...inputs, prefixLen: [1, 2] }, dims)).toThrow(/wrong input length for the harness \(prefixLen = 2\); allowed: 3 elements/);
  const outBytes = new Uint8Array(attentionElements('o', dims) * 2 + attentionElements('lse', dims) * 4);
  new Float32Array(outBytes.buffer, attentionElements('o', dims) * 2).fill(1.5);
  const out = harnessOutputs(outBytes, dims)!;
  expect([out.o.length, out.lse.length, out.lse[0]]).toEqual([attentionElements('o', dims), attentionElements('lse', dims), 1.5]);
  expect(harnessOutputs(outBytes.subarray(1), dims)).toBeUndefined();
  // A Buffer from a pool (what readFile gives for small files) and at an odd offset: the arrays are still its bytes.
  const pooled = Buffer.concat([Buffer.from([7]), outBytes]).subarray(1);
  expect(harnessOutputs(pooled, dims)!.lse[0]).toBe(1.5);
});

describe.skipIf(!cxx.found)('the C++ reader (g++)', () => {
  const exe = join(dir, 'reader');
  const build = (): void => {
    const src = join(dir, 'reader.cpp');
    const arrays = attentionArrayFields().map((f) => `  std::printf("%s %zu %d\\n", "${cFieldName(f)}", tidarc_attention_${cFieldName(f)}_elements(&d), ${ATTENTION_ARRAYS[f].role === 'in' || ATTENTION_ARRAYS[f].role === 'cache' ? 1 : 0});`);
    const options = HARNESS_OPTIONS.map((o) => `  std::printf("--${o.flag} %s\\n", ${o.kind === 'int' ? `std::to_string(a.${o.flag.replace(/-/g, '_')}).c_str()` : `a.${o.flag}_path.c_str()`});`);
    writeFileSync(src, ['#include <cstdio>', '#include <string>', '#include "harness_args.h"', 'int main(int argc, char** argv) {',
      '  const tidarc_harness::Args a = tidarc_harness::parse(argc, argv, "reader");', '  const TidarcAttentionDims d = tidarc_harness::dims(a);',
      ...options, ...arrays, '}', ''].join('\n'));
    execFileSync(cxx.found ? cxx.tool.path : 'g++', ['-std=c++17', '-Wall', '-Wextra', '-Werror', `-I${resolve('runtime/emu')}`, `-I${resolve('templates/common')}`, src, '-o', exe]);
  };

  test('reads every option the TypeScript side writes, and sizes every array as op-abi.ts does', () => {
    build();
    const printed = execFileSync(exe, harnessArgv(run), { encoding: 'utf8' }).trim().split('\n');
    const argv = harnessArgv(run);
    const dims = harnessDims(run);
    expect(printed).toEqual([
      ...HARNESS_OPTIONS.map((o, i) => `--${o.flag} ${argv[2 * i + 1]}`),
      ...attentionArrayFields().map((f) => `${cFieldName(f)} ${attentionElements(f, dims)} ${ATTENTION_ARRAYS[f].role === 'in' || ATTENTION_ARRAYS[f].role === 'cache' ? 1 : 0}`),
    ]);
  });

  test('refuses a missing option, an unknown one and a value out of range (exit 2, the usage line)', () => {
    const argv = harnessArgv(run);
    const without = (flag: string): string[] => argv.filter((_, i) => argv[i - (i % 2)] !== flag);
    const cases: [string[], RegExp][] = [
      [without('--block-order'), /missing or invalid --block-order \(at least 0\)/],
      [without('--out'), /missing --out/],
      [[...argv, '--prefix', '1,2,3'], /unknown option --prefix/],
      [argv.map((a, i) => (argv[i - 1] === '--capacity' ? '-1' : a)), /missing or invalid --capacity \(at least 0\)/],
      [[...argv, '--batch'], /no value for --batch/],
    ];
    for (const [args, why] of cases) {
      const r = spawnSync(exe, args, { encoding: 'utf8' });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(why);
      expect(r.stderr).toContain(`usage: ${HARNESS_OPTIONS.map((o) => `--${o.flag} ${o.meta}`).join(' ')}`);
    }
  });
});

describe.skipIf(!cxx.found)('the emulator harness (emu_main.cpp) runs a variant as the manifest describes it', () => {
  test('split-KV is one launch whose last CTA per row group merges: right, bitwise the same whichever CTA finishes last (--block-order), counters left 0', async () => {
    if (!cxx.found) return;
    const cuda = join(dir, 'cuda');
    mkdirSync(cuda, { recursive: true });
    for (const h of ['tidarc_attention.cuh', 'tidarc_device.cuh']) writeFileSync(join(cuda, h), readTemplateFile(`cuda/${h}`));
    writeFileSync(join(cuda, 'tidarc_abi.h'), readTemplateFile('common/tidarc_abi.h'));
    const source = join(cuda, 'k2.cu');
    writeFileSync(source, renderCudaVariant(plan, 'harness-test'));
    const exe = join(dir, 'emu_k2');
    const v = describeVariant(plan, [ARCHES.sm_90]);
    await buildVariantEmulator(cxx.tool.path, source, cuda, v, await sharedEmulatorRuntime(), exe);
    const prefixLen = [150, 3];  // 3 splits of 3, 3 and 2 key tiles; the short sequence leaves two splits empty
    for (const blockOrder of [0, 1] as const) {
      const r = await emulateVariant(exe, v, { batch: 2, prefixLen, splits: 3, seed: 5, blockOrder }, dir);
      expect([r.completed, r.findings, r.maxError <= r.tolerance, r.lseMaxError], `block order ${blockOrder}`).toEqual([true, [], true, expect.any(Number)]);
      expect(r.lseMaxError).toBeLessThan(2e-3);
    }
    const inputs = randomAttentionInputs({ ...v.shape, batch: 2, n: v.steps, cacheCapacity: 155, prefixLen, seed: 6 });
    const [forward, reverse] = await Promise.all(([0, 1] as const).map((blockOrder) =>
      runEmulator(exe, v, { batch: 2, cacheCapacity: 155, prefixLen, splits: 3, blockOrder, ...inputs.bits }, dir, `order${blockOrder}`)));
    expect([forward!.findings, reverse!.findings]).toEqual([[], []]);
    expect(Buffer.from(reverse!.o.buffer).equals(Buffer.from(forward!.o.buffer))).toBe(true);
    expect(Buffer.from(reverse!.lse.buffer).equals(Buffer.from(forward!.lse.buffer))).toBe(true);
  }, 300_000);
});
