/**
 * src/codegen/sass-mix.ts on a fixture cut from real `cuobjdump -sass` output (test/fixtures/
 * sass-attention-loop.sass: Qwen3-8B tidar_k16 at sm_90, nvcc 13.0, runs of straight-line
 * instructions dropped, every branch and its target kept): the parser, the loop finder, the hot
 * loop's unmasked path, the class counts, and the per-pipe model on hand-computed counts. No tools.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { classOf, countClasses, findLoops, hmmaCycles, hotLoop, hotPath, iterationCycles, parseSass } from '../../src/codegen/sass-mix.js';
import { packageRoot } from '../../src/util/paths.js';

const fixture = readFileSync(join(packageRoot(), 'test', 'fixtures', 'sass-attention-loop.sass'), 'utf8');
const [kernel] = parseSass(fixture);

describe('parseSass', () => {
  test('one kernel, its arch, every instruction with its predicate, modifiers and branch target', () => {
    expect(parseSass(fixture).map((k) => [k.name, k.arch])).toEqual([['tidarc_attn_tidar_k16_bf16_d128_q32_kv8', 'sm_90']]);
    expect(kernel!.instructions).toHaveLength(67);
    const at = (a: number) => kernel!.instructions.find((i) => i.address === a)!;
    expect(at(0x3e00)).toEqual({ address: 0x3e00, predicate: '!P0', opcode: 'BRA', operands: '0x4680', target: 0x4680 });
    expect(at(0x4f30).opcode).toBe('HMMA.16816.F32.BF16');
    expect(at(0x4f30).predicate).toBeUndefined();
    expect(at(0x5120)).toMatchObject({ opcode: 'FSEL', operands: 'R148, R148, -INF , !P0' });
    expect(at(0xa080)).toMatchObject({ predicate: 'P0', target: 0x3de0 });
  });

  test('a fatbin\'s dump: each Function under its `code for` arch', () => {
    const two = `${fixture.replace('code for sm_90', 'code for sm_80')}\n${fixture}`;
    expect(parseSass(two).map((k) => k.arch)).toEqual(['sm_80', 'sm_90']);
  });
});

describe('loops and the hot loop', () => {
  test('a backward BRA closes a loop; the hot loop is the one holding the HMMA, with no loop nested in it', () => {
    expect(findLoops(kernel!)).toEqual([
      { head: 0x3de0, tail: 0xa080, instructions: 61, hmma: 3 },
      { head: 0xd660, tail: 0xd6a0, instructions: 5, hmma: 0 },
    ]);
    const hot = hotLoop(kernel!)!;
    expect(hot.loop.head).toBe(0x3de0);
    expect(hot.nested).toEqual([]);
  });

  test('of two loops holding the same HMMA, the inner one is hot and the outer reports it nested', () => {
    const body = [
      '        /*0000*/                   MOV R0, RZ ;',
      '        /*0010*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;',
      '        /*0020*/               @P0 BRA 0x10 ;',
      '        /*0030*/               @P1 BRA 0x0 ;',
      '        /*0040*/                   EXIT ;',
    ].join('\n');
    const k = parseSass(`\tcode for sm_90\n\t\tFunction : nested\n${body}\n`)[0]!;
    expect(hotLoop(k)!.loop).toEqual({ head: 0x10, tail: 0x20, instructions: 2, hmma: 1 });
    const outer = findLoops(k).find((l) => l.head === 0)!;
    expect(findLoops(k).filter((l) => l !== outer && l.head >= outer.head && l.tail < outer.tail)).toHaveLength(1);
  });

  test('the unmasked path: it issues the next tile (the guarded cp.async block is taken), skips every mask block, and keeps the fall-through on a tie', () => {
    const hot = hotLoop(kernel!)!;
    const addresses = hot.path.map((i) => i.address);
    // issue_tile's guard falls through into the loads; describe_tile's two address blocks are
    // 4 instructions each in the cut (a tie: the fall-through); softmax_max's mode tests fall
    // through the tail test and jump past the partial-tile mask (BRA, ISETP, BRA), the path of a
    // full prefix tile; the masked alternatives are as long, or longer, and are not taken.
    expect(addresses).toEqual([
      0x3de0, 0x3df0, 0x3e00, 0x3e10, 0x3e20, 0x3e30, 0x3e40, 0x3e50, 0x3e60, 0x3e70, 0x3e80, 0x3e90, 0x3ea0,
      0x3eb0, 0x3ec0, 0x3ed0, 0x3fd0,
      0x4100, 0x44f0, 0x4570, 0x4670, 0x4680, 0x4690, 0x4f30, 0x4f40, 0x4f50,
      0x4fa0, 0x4fb0, 0x4fc0, 0x4fd0, 0x5160, 0xa070, 0xa080,
    ]);
    expect(hotPath(kernel!, hot.loop)).toEqual(hot.path);
  });

  test('class counts of that path, by hand', () => {
    expect(countClasses(hotLoop(kernel!)!.path)).toEqual({
      hmma: 3, fp32: 1, imad: 2,
      alu: 7,     // VIADD, 3 ISETP, 2 SHF, VIADDMNMX
      conv: 0, mufu: 0, shfl: 0,
      issue: 20,  // 6 BRA, 2 S2UR, UMOV, ULEA, 3 LDS, LDC, 3 LDGSTS, LDGDEPBAR, 2 NOP
    });
    expect(['F2FP.BF16.F32.PACK_AB', 'MUFU.EX2', 'FMNMX', 'IMAD.WIDE.U32', 'SHFL.BFLY', 'LDSM.16.M88.4', 'FFMA.FTZ'].map(classOf))
      .toEqual(['conv', 'mufu', 'alu', 'imad', 'shfl', 'issue', 'fp32']);
  });
});

describe('iterationCycles: one warp-iteration on a sub-partition', () => {
  // Qwen3-8B tidar_k16's measured iteration (sm_90): 779 instructions.
  const k16 = { hmma: 128, fp32: 228, imad: 72, alu: 145, conv: 16, mufu: 36, shfl: 8, issue: 146 };

  test('each pipe is its instructions x 32 / its lanes a sub-partition (the table\'s results a SM / 4)', () => {
    const it = iterationCycles(k16, 'sm_90', 4);
    expect(it.issue).toBe(779);
    // fp32 128 a SM = 32 lanes: 1 clock each; IMAD and ALU 64 = 16 lanes: 2; conversions and MUFU 16 = 4 lanes: 8; shuffles 32 = 8 lanes: 4.
    expect(it.pipes).toEqual({ hmma: 512, fp32: 228, imad: 144, alu: 290, conv: 128, mufu: 288, shfl: 32 });
    expect(it).toMatchObject({ cycles: 779, limiter: 'issue' });
    // sm_80: fp32 at 64 a SM (2 clocks each).
    expect(iterationCycles(k16, 'sm_80', 4).pipes.fp32).toBe(456);
  });

  test('HMMA at the mma.sync rate the cost model assumes: 395 TFLOP/s over 132 SMs at 1.755 GHz is 9.6 clocks an HMMA.16816, so the tensor pipe limits this iteration', () => {
    const each = hmmaCycles(395e12 / 132 / 1.755e9);
    expect(each).toBeCloseTo(9.609, 3);
    const it = iterationCycles(k16, 'sm_90', each);
    expect(it.limiter).toBe('hmma');
    expect(it.cycles).toBeCloseTo(128 * each, 9);
  });

  test('a MUFU-heavy iteration is limited by its MUFU pipe', () => {
    const it = iterationCycles({ hmma: 0, fp32: 0, imad: 0, alu: 0, conv: 0, mufu: 40, shfl: 0, issue: 100 }, 'sm_90', 9.6);
    expect(it).toMatchObject({ issue: 140, cycles: 320, limiter: 'mufu' });
  });
});
