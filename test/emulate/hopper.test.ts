/**
 * The emulated Hopper primitives against the PTX ISA (hopper-isa.ts: its tables, written apart
 * from the emulator's C++): the TMA swizzle patterns (2D and 3D boxes, zero fill outside the
 * tensor), the wgmma accumulator fragment for N = 8..256, the matrix descriptors of every
 * canonical layout (K- and MN-major, swizzle none/32/64/128B, A from registers), and the sm_90a
 * GEMM tile (TMA -> 2-stage mbarrier ring -> wgmma) against float64 with no findings, misuse
 * reported; nvcc -arch=sm_90a compiles the same tile with no spills, and assembles every PTX
 * wrapper. Tagged: g++, nvcc.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parsePtxasReport, type PtxasByArch } from '../../src/build/ptxas.js';
import { findCxx, findNvcc } from '../../src/build/toolchain.js';
import { type DType, encode } from '../../src/util/dtype.js';
import { packageRoot } from '../../src/util/paths.js';
import { seededRandom } from '../../src/util/random.js';
import { worstRatio } from '../helpers/gemm.js';
import { FIXTURES, GEMM_KERNEL, type GemmCase, type HopperRun, buildHopperHarness, gemmArgs, gemmProblem, runHopper } from './hopper-emu.js';
import { type Major, type Span, accElement, aElement, canonicalByte, descriptor, swizzledByte } from './hopper-isa.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const nvcc = await findNvcc();
const sm90a = nvcc.found ? (await exec(nvcc.tool.path, ['--list-gpu-arch'])).stdout.includes('compute_90') : false;
const dir = mkdtempSync(join(tmpdir(), 'tidarc-hopper-'));
const runs = new Map<string, HopperRun>();
let exe = '';

// ---- TMA: one box per case; global element at byte address b holds b / 2 + 1 ----------------
interface TmaCase {
  readonly name: string; readonly dims: number[]; readonly strides: number[]; readonly box: number[]; readonly coords: number[]; readonly span: Span;
  /** Where the box goes in shared memory (default 0, a pattern start). */
  readonly dstOffset?: number;
}
const TMA_CASES: readonly TmaCase[] = [
  { name: '2D, no swizzle, box past both ends', dims: [80, 40], strides: [192], box: [24, 16], coords: [64, 30], span: 0 },
  { name: '2D, 32B swizzle', dims: [80, 40], strides: [192], box: [16, 16], coords: [8, 4], span: 32 },
  { name: '2D, 64B swizzle, negative start', dims: [80, 40], strides: [192], box: [32, 16], coords: [-8, 2], span: 64 },
  { name: '2D, 128B swizzle, box past the inner end', dims: [80, 40], strides: [192], box: [64, 16], coords: [32, 5], span: 128 },
  { name: '2D, 128B swizzle, 64-byte rows', dims: [80, 40], strides: [192], box: [32, 24], coords: [16, 3], span: 128 },
  { name: '3D, 64B swizzle, past the middle end', dims: [32, 10, 3], strides: [64, 640], box: [32, 8, 2], coords: [0, 4, 1], span: 64 },
];

function tmaFile(c: TmaCase, path: string): void {
  const buf = Buffer.alloc(88);
  buf.writeInt32LE(c.dims.length, 0), buf.writeInt32LE(c.span, 4), buf.writeInt32LE(c.dstOffset ?? 0, 8);
  c.dims.forEach((d, i) => buf.writeBigUInt64LE(BigInt(d), 16 + 8 * i));
  c.strides.forEach((s, i) => buf.writeBigUInt64LE(BigInt(s), 40 + 8 * i));
  c.box.forEach((b, i) => buf.writeUInt32LE(b, 56 + 4 * i));
  c.coords.forEach((x, i) => buf.writeInt32LE(x, 72 + 4 * i));
  writeFileSync(path, buf);
}

/** What the box must look like in shared memory: dense in box order, then swizzled per the ISA. */
function expectedBox(c: TmaCase): Uint16Array {
  const count = c.box.reduce((a, b) => a * b, 1);
  const out = new Uint16Array(count);
  for (let e = 0; e < count; e++) {
    let rest = e, inside = true, address = 0;
    for (let d = 0; d < c.dims.length; d++) {
      const coord = c.coords[d]! + (rest % c.box[d]!);
      rest = Math.floor(rest / c.box[d]!);
      if (coord < 0 || coord >= c.dims[d]!) inside = false;
      address += coord * (d === 0 ? 2 : c.strides[d - 1]!);
    }
    out[swizzledByte(2 * e, c.span) / 2] = inside ? (address / 2 + 1) & 0xffff : 0;
  }
  return out;
}

// ---- wgmma: one instruction per case on a shared-memory image the test lays out ---------------
interface Operand { readonly major: Major; readonly span: Span }
interface WgmmaCase {
  readonly name: string;
  readonly n: number;
  readonly dtype: DType;
  readonly a: Operand | 'registers';
  readonly b: Operand;
  readonly accumulate: boolean;
  /** A and B: [m or k][k or n] values; default small random integers and halves (exact sums). */
  readonly fill?: 'fragment-map';
  /** A is stored 64 columns wide and the descriptor starts at the kSlice-th 16-column slice. */
  readonly kSlice?: number;
  /** Misuse: B's descriptor with this start (bytes past B's tile) or stride byte offset, and/or
   *  a descriptor built from a pointer 8 bytes past a 16-byte boundary. */
  readonly badB?: { readonly start?: number; readonly sbo?: number };
  readonly misalignedDescriptor?: boolean;
  /** The image goes in through st.shared (every thread a share), with or without fence.proxy.async. */
  readonly stores?: 'fenced' | 'unfenced';
  /** Misuse whose result is still right on the emulator (hopper_main.cpp's kFenceFirst...): the
   *  fence before the stores, the image copied again by cp.async and waited for after the wgmma,
   *  A's registers or an accumulator written between issue and wgmma.wait_group (a read is not
   *  seen: g++ does not instrument a local array's constant-index accesses). */
  readonly quietMisuse?: 'fence-first' | 'cp-async-again' | 'overwrite-a' | 'write-accumulator';
  /** No __syncthreads after the stores: the warpgroup's wgmma.fence orders them (not misuse). */
  readonly noBarrier?: boolean;
}
const QUIET_FLAGS = { 'fence-first': 8, 'cp-async-again': 16, 'overwrite-a': 32, 'write-accumulator': 64 } as const;

const K_MAJOR = (span: Span): Operand => ({ major: 'K', span });
const MN_MAJOR = (span: Span): Operand => ({ major: 'MN', span });
const SPANS: readonly Span[] = [0, 32, 64, 128];

const WGMMA_CASES: readonly WgmmaCase[] = [
  ...[8, 16, 24, 64, 128, 200, 256].map((n, i): WgmmaCase => ({ name: `accumulator fragment, N = ${n}`, n, dtype: i % 2 ? 'fp16' : 'bf16', a: K_MAJOR(0), b: K_MAJOR(0), accumulate: false, fill: 'fragment-map' })),
  ...SPANS.flatMap((span) => (['K', 'MN'] as const).flatMap((ma) => (['K', 'MN'] as const).map((mb): WgmmaCase => ({
    name: `descriptors: A ${ma}-major, B ${mb}-major, ${span ? `${span}B swizzle` : 'no swizzle'}`,
    n: 64, dtype: span === 64 ? 'fp16' : 'bf16', a: { major: ma, span }, b: { major: mb, span }, accumulate: true,
  })))),
  { name: 'descriptors: K-major 128B, the 3rd 16-column slice of a 64-column tile', n: 32, dtype: 'bf16', a: K_MAJOR(128), b: K_MAJOR(128), accumulate: true, kSlice: 2 },
  { name: 'A from registers, B K-major 64B swizzle', n: 64, dtype: 'bf16', a: 'registers', b: K_MAJOR(64), accumulate: true },
  { name: 'A from registers, B MN-major no swizzle', n: 32, dtype: 'fp16', a: 'registers', b: MN_MAJOR(0), accumulate: false },
  { name: 'operands stored with st.shared, then fence.proxy.async', n: 64, dtype: 'bf16', a: K_MAJOR(128), b: MN_MAJOR(64), accumulate: true, stores: 'fenced' },
  { name: 'operands stored by the warpgroup itself, fence.proxy.async, no __syncthreads (wgmma.fence orders them)', n: 32, dtype: 'fp16', a: K_MAJOR(0), b: MN_MAJOR(0), accumulate: true, stores: 'fenced', noBarrier: true },
];

/** LBO and SBO (bytes) of a tile laid out canonically: 8-row groups after each other. */
function offsets(o: Operand, mn: number): { lbo: number; sbo: number } {
  if (o.major === 'K') return o.span === 0 ? { lbo: 128, sbo: 256 } : { lbo: 16, sbo: 8 * o.span };
  return o.span === 0 ? { lbo: (mn / 8) * 128, sbo: 128 } : { lbo: 16 * o.span, sbo: 8 * o.span };
}

/** Writes `values[i][j]` (i along M or N, j along K) at `base` in the operand's layout; returns its end. */
function layOut(image: Buffer, base: number, o: Operand, values: number[][], dtype: DType): { end: number; lbo: number; sbo: number } {
  const { lbo, sbo } = offsets(o, values.length);
  let end = base;
  values.forEach((row, i) => row.forEach((x, j) => {
    const at = base + swizzledByte(canonicalByte(o.major, o.span, lbo, sbo, i, j), o.span);
    image.writeUInt16LE(encode(dtype, [x])[0]!, at);
    end = Math.max(end, at + 2);
  }));
  return { end, lbo, sbo };
}

const roundUp = (x: number, m: number) => Math.ceil(x / m) * m;

function wgmmaFile(c: WgmmaCase, seed: number, path: string): { d: number[][] } {
  const rng = seededRandom(seed);
  const small = () => rng.int(-8, 8) / 2;
  const kWidth = c.kSlice !== undefined ? 64 : 16, k0 = 16 * (c.kSlice ?? 0);
  const A = Array.from({ length: 64 }, (_, m) => Array.from({ length: kWidth }, (_, k) => c.fill ? (k === 0 ? m : k === 1 ? 1 : 0) : small()));
  const Bt = Array.from({ length: c.n }, (_, n) => Array.from({ length: 16 }, (_, k) => c.fill ? (k === 0 ? 256 : k === 1 ? n : 0) : small()));
  const C = Array.from({ length: 64 }, () => Array.from({ length: c.n }, () => rng.int(-20, 20)));
  const image = Buffer.alloc(64 * 1024);
  let descA = 0n, bBase = 0;
  if (c.a !== 'registers') {
    const a = layOut(image, 0, c.a, A, c.dtype);
    descA = descriptor(32 * (c.kSlice ?? 0), a.lbo, a.sbo, c.a.span);
    bBase = roundUp(a.end, 1024);
  }
  const b = layOut(image, bBase, c.b, Bt, c.dtype);
  const smem = roundUp(b.end, 1024);
  const header = Buffer.alloc(48);
  [c.n, c.a !== 'registers' && c.a.major === 'MN' ? 1 : 0, c.b.major === 'MN' ? 1 : 0, c.dtype === 'fp16' ? 1 : 0, c.a === 'registers' ? 1 : 0, c.accumulate ? 1 : 0, smem, 0]
    .forEach((v, i) => header.writeInt32LE(v, 4 * i));
  header.writeInt32LE((c.misalignedDescriptor ? 1 : 0) | (c.stores ? 2 : 0) | (c.stores === 'fenced' ? 4 : 0) | (c.quietMisuse ? QUIET_FLAGS[c.quietMisuse] : 0) | (c.noBarrier ? 128 : 0), 28);
  header.writeBigUInt64LE(descA, 32);
  header.writeBigUInt64LE(descriptor(bBase + (c.badB?.start ?? 0), b.lbo, c.badB?.sbo ?? b.sbo, c.b.span), 40);
  const regs = Buffer.alloc(128 * 16), acc = Buffer.alloc(128 * (c.n / 2) * 4);
  for (let t = 0; t < 128; t++) {
    for (let r = 0; r < 4; r++) {
      const [r0, k0r] = aElement(t, 2 * r), [r1, k1r] = aElement(t, 2 * r + 1);
      const bits = encode(c.dtype, [A[r0]![k0r]!, A[r1]![k1r]!]);
      regs.writeUInt32LE((bits[0]! | (bits[1]! << 16)) >>> 0, 16 * t + 4 * r);
    }
    for (let i = 0; i < c.n / 2; i++) {
      const [row, col] = accElement(t, i);
      acc.writeFloatLE(C[row]![col]!, 4 * (t * (c.n / 2) + i));
    }
  }
  writeFileSync(path, Buffer.concat([header, image.subarray(0, smem), regs, acc]));
  const d = C.map((row, m) => row.map((cv, n) => {
    let s = c.accumulate ? cv : 0;
    for (let k = 0; k < 16; k++) s += A[m]![k0 + k]! * Bt[n]![k]!;
    return s;
  }));
  return { d };
}

/** Misuse the emulator must report (the finding's kind), each alone in its run. */
const MISUSE: readonly { readonly finding: string; readonly tma?: TmaCase; readonly wgmma?: WgmmaCase }[] = [
  { finding: 'alignment', tma: { name: 'a 128B-swizzled box 128 bytes past its pattern start', dims: [80, 40], strides: [192], box: [64, 8], coords: [0, 0], span: 128, dstOffset: 128 } },
  { finding: 'alignment', tma: { name: 'an unswizzled box at a 64-byte (not 128-byte) boundary', dims: [80, 40], strides: [192], box: [8, 8], coords: [0, 0], span: 0, dstOffset: 64 } },
  { finding: 'descriptor', wgmma: { name: 'a K-major descriptor with stride byte offset 0', n: 32, dtype: 'bf16', a: K_MAJOR(0), b: K_MAJOR(0), accumulate: false, badB: { sbo: 0 } } },
  { finding: 'descriptor', wgmma: { name: 'a 128B descriptor starting in the 3rd line of its pattern (needs a base offset)', n: 32, dtype: 'bf16', a: K_MAJOR(0), b: K_MAJOR(128), accumulate: false, badB: { start: 256 } } },
  { finding: 'descriptor', wgmma: { name: 'a 32B K-major descriptor whose 16 columns cross the swizzle row', n: 32, dtype: 'bf16', a: K_MAJOR(0), b: K_MAJOR(32), accumulate: false, badB: { start: 16 } } },
  { finding: 'alignment', wgmma: { name: 'a descriptor built from a pointer 8 bytes past a 16-byte boundary', n: 32, dtype: 'bf16', a: K_MAJOR(0), b: K_MAJOR(0), accumulate: false, misalignedDescriptor: true } },
  { finding: 'proxy', wgmma: { name: 'operands stored with st.shared and read by wgmma with no fence.proxy.async', n: 32, dtype: 'bf16', a: K_MAJOR(0), b: K_MAJOR(0), accumulate: false, stores: 'unfenced' } },
  // The right result on the emulator (checked too): only the finding shows these.
  { finding: 'proxy', wgmma: { name: 'fence.proxy.async before the st.shared stores, not after', n: 32, dtype: 'bf16', a: K_MAJOR(0), b: K_MAJOR(0), accumulate: false, stores: 'unfenced', quietMisuse: 'fence-first' } },
  { finding: 'cp-async', wgmma: { name: 'wgmma reads bytes a cp.async still has in flight (the same bytes again)', n: 32, dtype: 'bf16', a: K_MAJOR(0), b: K_MAJOR(0), accumulate: false, stores: 'fenced', quietMisuse: 'cp-async-again' } },
  { finding: 'wgmma', wgmma: { name: 'register A overwritten before wgmma.wait_group', n: 32, dtype: 'bf16', a: 'registers', b: K_MAJOR(0), accumulate: true, quietMisuse: 'overwrite-a' } },
  { finding: 'wgmma', wgmma: { name: 'an accumulator written before wgmma.wait_group', n: 32, dtype: 'fp16', a: K_MAJOR(0), b: K_MAJOR(0), accumulate: true, quietMisuse: 'write-accumulator' } },
];
const misuseName = (m: (typeof MISUSE)[number]) => m.tma?.name ?? m.wgmma!.name;

// ---- the GEMM tile ------------------------------------------------------------------------------
const GEMMS: readonly GemmCase[] = [
  { kernel: 'bf16_n64', dtype: 'bf16', m: 128, n: 128, k: 256 },  // 2 x 2 tiles, the ring wraps twice
  { kernel: 'fp16_n128x2', dtype: 'fp16', m: 256, n: 256, k: 192 },  // 2 consumer warpgroups; 3 k-tiles: a stage used twice, one once
];
const gemmWorst = new Map<string, number>();
const expectedD = new Map<string, number[][]>();
let ptxas: PtxasByArch = {};
let instancesAssembled = false;

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  exe = join(dir, 'hopper');
  await buildHopperHarness(cxx.tool.path, GEMM_KERNEL, objects, exe);
  for (const [i, c] of TMA_CASES.entries()) {
    const input = join(dir, `tma${i}.bin`);
    tmaFile(c, input);
    runs.set(c.name, await runHopper(exe, ['tma', input], join(dir, `tma${i}.out`)));
  }
  for (const [i, c] of WGMMA_CASES.entries()) {
    const input = join(dir, `wgmma${i}.bin`);
    expectedD.set(c.name, wgmmaFile(c, 100 + i, input).d);
    runs.set(c.name, await runHopper(exe, ['wgmma', input], join(dir, `wgmma${i}.out`)));
  }
  for (const [i, m] of MISUSE.entries()) {
    const input = join(dir, `misuse${i}.bin`);
    if (m.tma) tmaFile(m.tma, input);
    else expectedD.set(misuseName(m), wgmmaFile(m.wgmma!, 300 + i, input).d);
    runs.set(misuseName(m), await runHopper(exe, [m.tma ? 'tma' : 'wgmma', input], join(dir, `misuse${i}.out`)));
  }
  for (const c of GEMMS) {
    const { input, ref, bound } = gemmProblem(c, dir, 7);
    const run = await runHopper(exe, gemmArgs(c, input), join(dir, `gemm-${c.kernel}.out`));
    runs.set(c.kernel, run);
    gemmWorst.set(c.kernel, worstRatio(new Float32Array(run.out.buffer, run.out.byteOffset, c.m * c.n), ref, bound));
  }
  if (sm90a && nvcc.found) {
    const { stderr } = await exec(nvcc.tool.path, ['-std=c++17', '-arch=sm_90a', '-cubin', '-Xptxas', '-v', `-I${join(packageRoot(), 'templates', 'cuda')}`,
      '-o', join(dir, 'gemm.cubin'), GEMM_KERNEL], { maxBuffer: 64 << 20 });
    ptxas = parsePtxasReport(stderr);
    // Throws (failing the suite) if any wrapper's PTX does not assemble.
    await exec(nvcc.tool.path, ['-std=c++17', '-arch=sm_90a', '-cubin', `-I${join(packageRoot(), 'templates', 'cuda')}`,
      '-o', join(dir, 'instances.cubin'), join(FIXTURES, 'hopper_ptx_instances.cu')], { maxBuffer: 64 << 20 });
    instancesAssembled = true;
  }
}, 300_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('emulated Hopper primitives (PTX ISA layouts)', () => {
  test.for(TMA_CASES.map((c) => [c.name, c] as const))('cp.async.bulk.tensor %s', ([name, c]) => {
    const run = runs.get(name)!;
    expect(run.messages).toEqual([]);
    expect(run.completed).toBe(true);
    expect(Array.from(new Uint16Array(run.out.buffer, run.out.byteOffset, run.out.length / 2))).toEqual(Array.from(expectedBox(c)));
  });

  /** The accumulators that differ from the expected D (the first 4). */
  const wrongAccumulators = (name: string, c: WgmmaCase): string[] => {
    const run = runs.get(name)!, d = expectedD.get(name)!;
    const out = new Float32Array(run.out.buffer, run.out.byteOffset, 128 * (c.n / 2));
    const wrong: string[] = [];
    for (let t = 0; t < 128; t++) {
      for (let i = 0; i < c.n / 2; i++) {
        const [row, col] = accElement(t, i);
        if (out[t * (c.n / 2) + i] !== d[row]![col]) wrong.push(`thread ${t} d${i} = ${out[t * (c.n / 2) + i]}, want D[${row}][${col}] = ${d[row]![col]}`);
      }
    }
    return wrong.slice(0, 4);
  };

  test.for(WGMMA_CASES.map((c) => [c.name, c] as const))('wgmma %s', ([name, c]) => {
    expect(runs.get(name)!.messages).toEqual([]);
    expect(wrongAccumulators(name, c)).toEqual([]);
  });

  test.for(MISUSE.map((m) => [misuseName(m), m] as const))('finding for %s', ([name, m]) => {
    const run = runs.get(name)!;
    // The first finding is the cause (a refused copy then leaves its mbarrier waiting forever).
    expect(run.messages[0]?.split(':')[0], run.messages.join('\n')).toBe(m.finding);
    if (m.wgmma?.quietMisuse) expect(wrongAccumulators(name, m.wgmma)).toEqual([]);
  });

  test.for(GEMMS.map((c) => [c.kernel, c] as const))('GEMM tile %s (TMA -> 2-stage mbarrier ring -> 1 or 2 wgmma warpgroups) matches float64 with no findings', ([kernel]) => {
    const run = runs.get(kernel)!;
    expect(run.messages).toEqual([]);
    expect(run.completed).toBe(true);
    expect(gemmWorst.get(kernel)).toBeLessThanOrEqual(1);
  });

  test.skipIf(!sm90a)('nvcc -arch=sm_90a compiles the same GEMM tile with no spills and no stack', () => {
    for (const kernel of ['hopper_gemm_tile_bf16_n64', 'hopper_gemm_tile_fp16_n128x2']) {
      const r = ptxas['sm_90a']?.[kernel];
      expect(r, kernel).toBeDefined();
      expect(r!.spillStoreBytes + r!.spillLoadBytes, `${kernel} spills`).toBe(0);
      expect(r!.stackBytes, `${kernel} stack`).toBe(0);
    }
  });

  test.skipIf(!sm90a)('ptxas assembles every wrapper of tidarc_hopper.cuh (each wgmma N, ss and rs, bf16 and fp16, transposes, TMA 2D/3D, mbarriers)', () => {
    expect(instancesAssembled).toBe(true);
  });
});
