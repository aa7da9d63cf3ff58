/**
 * The emulated device primitives against the PTX ISA's documented fragment layouts,
 * written here from the ISA's tables (element index -> row, column), independently of the
 * emulator's register-wise code: ldmatrix x1/x2/x4 with and without .trans, mma.m16n8k16
 * for bf16 and fp16, shfl.xor, and cp.async group completion.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { packageRoot } from '../../src/util/paths.js';
import { EMU_FLAGS, EMU_RUNTIME_SOURCES, emulatorSourceDir } from '../../src/emulate/emulator-build.js';
import { encode } from '../../src/util/dtype.js';
import { seededRandom } from '../../src/util/random.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const root = packageRoot();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-emu-prim-'));
const results = new Map<string, Record<string, unknown>>();
const findings: unknown[] = [];

// ---- the PTX ISA tables --------------------------------------------------------------
const groupID = (lane: number) => lane >> 2;
const threadInGroup = (lane: number) => lane % 4;
/** ldmatrix .m8n8 .b16: element e (0, 1) of lane's register for one matrix. */
function ldmatrixElement(lane: number, e: number, trans: boolean): [number, number] {
  const row = groupID(lane), col = threadInGroup(lane) * 2 + e;
  return trans ? [col, row] : [row, col];
}
/** mma.m16n8k16 .bf16/.f16 A fragment: a_i, i = 0..7 (two per register). */
function aElement(lane: number, i: number): [number, number] {
  const row = groupID(lane) + ([2, 3, 6, 7].includes(i) ? 8 : 0);
  const col = threadInGroup(lane) * 2 + (i & 1) + (i >= 4 ? 8 : 0);
  return [row, col];
}
/** B fragment b_i, i = 0..3: (k row, n col). */
function bElement(lane: number, i: number): [number, number] {
  return [threadInGroup(lane) * 2 + (i & 1) + (i >= 2 ? 8 : 0), groupID(lane)];
}
/** C/D fragment c_i, i = 0..3. */
function cElement(lane: number, i: number): [number, number] {
  return [groupID(lane) + (i >= 2 ? 8 : 0), threadInGroup(lane) * 2 + (i & 1)];
}
const element = (m: number, r: number, c: number) => 0x0101 + (m << 8) + r * 8 + c;

// Small integers and halves: every product and sum is exact in fp32, so D must match exactly.
const rng = seededRandom(11);
const A = Array.from({ length: 16 }, () => Array.from({ length: 16 }, () => rng.int(-8, 8) / 2));
const B = Array.from({ length: 16 }, () => Array.from({ length: 8 }, () => rng.int(-8, 8) / 2));
const C = Array.from({ length: 16 }, () => Array.from({ length: 8 }, () => rng.int(-20, 20)));

function fragmentsFile(dtype: 'bf16' | 'fp16'): string {
  const words = new Uint32Array(32 * 4 + 32 * 2);
  const c = new Float32Array(32 * 4);
  const bits = (x: number) => encode(dtype, [x])[0]!;
  for (let lane = 0; lane < 32; lane++) {
    for (let i = 0; i < 8; i += 2) {
      const [r0, c0] = aElement(lane, i), [r1, c1] = aElement(lane, i + 1);
      words[lane * 4 + i / 2] = bits(A[r0]![c0]!) | (bits(A[r1]![c1]!) << 16);
    }
    for (let i = 0; i < 4; i += 2) {
      const [k0, n0] = bElement(lane, i), [k1, n1] = bElement(lane, i + 1);
      words[32 * 4 + lane * 2 + i / 2] = bits(B[k0]![n0]!) | (bits(B[k1]![n1]!) << 16);
    }
    for (let i = 0; i < 4; i++) {
      const [r, col] = cElement(lane, i);
      c[lane * 4 + i] = C[r]![col]!;
    }
  }
  const path = join(dir, `mma-${dtype}.bin`);
  writeFileSync(path, Buffer.concat([Buffer.from(words.buffer), Buffer.from(c.buffer)]));
  return path;
}

beforeAll(async () => {
  if (!cxx.found) return;
  const emu = emulatorSourceDir();
  const exe = join(dir, 'primitives');
  await exec(cxx.tool.path, [
    ...EMU_FLAGS, `-I${emu}`, `-I${join(emu, 'include')}`, `-I${join(root, 'templates', 'cuda')}`, `-I${join(root, 'templates', 'common')}`,
    '-include', 'tidarc_emu.h', join(root, 'test', 'emulate', 'fixtures', 'primitives_main.cpp'),
    ...EMU_RUNTIME_SOURCES.map((f) => join(emu, f)), '-o', exe,
  ]);
  const { stdout } = await exec(exe, [fragmentsFile('bf16'), fragmentsFile('fp16')]);
  for (const line of stdout.trim().split('\n')) {
    const rec = JSON.parse(line) as Record<string, unknown>;
    if (typeof rec['test'] === 'string') results.set(rec['test'], rec);
    else findings.push(rec);
  }
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('emulated primitives (PTX ISA layouts)', () => {
  test.for([1, 2, 4].flatMap((count) => [false, true].map((trans) => [count, trans] as const)))('ldmatrix x%i trans=%s', ([count, trans]) => {
    const regs = results.get(`ldmatrix_x${count}${trans ? '_trans' : ''}`)!['regs'] as number[][];
    for (let lane = 0; lane < 32; lane++) {
      for (let m = 0; m < count; m++) {
        const [r0, c0] = ldmatrixElement(lane, 0, trans), [r1, c1] = ldmatrixElement(lane, 1, trans);
        expect(regs[lane]![m], `lane ${lane} matrix ${m}`).toBe(element(m, r0, c0) | (element(m, r1, c1) << 16));
      }
    }
  });

  test.for(['bf16', 'fp16'])('mma.m16n8k16 %s: D = A B + C with the documented fragments', (dtype) => {
    const d = results.get(`mma_${dtype}`)!['d'] as number[][];
    for (let lane = 0; lane < 32; lane++) {
      for (let i = 0; i < 4; i++) {
        const [r, col] = cElement(lane, i);
        let want = C[r]![col]!;
        for (let k = 0; k < 16; k++) want += A[r]![k]! * B[k]![col]!;
        expect(d[lane]![i], `lane ${lane} d${i}`).toBe(want);
      }
    }
  });

  test.for([1, 2, 4, 8, 16])('shfl.xor %i stays inside each warp', (mask) => {
    const out = results.get(`shfl_xor_${mask}`)!['out'] as number[];
    for (let t = 0; t < 64; t++) expect(out[t]).toBe((t ^ mask) + 0.5);
  });

  test('cp.async: wait_group 1 completes all but the newest group, wait_group 0 the rest', () => {
    const seen = results.get('cp_async_groups')!['seen'] as number[];
    expect(seen.slice(0, 3)).toEqual([100, 108, 116]);
    // The emulator lands a group only when waited for: the newest one still shows the poison.
    expect(seen[3]).toBe(0xffff);
  });

  test('a static __shared__ array is one per block, shared by its threads', () => {
    expect(results.get('static_shared')!['sums']).toEqual([2016, 2016 + 64]);
  });

  test('no findings from correct primitive use', () => {
    expect(findings.filter((f) => (f as { finding?: string }).finding !== undefined)).toEqual([]);
  });
});
