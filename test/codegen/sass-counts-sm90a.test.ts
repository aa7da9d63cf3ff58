/**
 * The sm_90a attention's SASS counts (src/codegen/sass-counts-sm90a.ts) and the cost model's
 * softmax term that reads them. A fixture cut from a real sm_90a dump (test/fixtures/
 * sass-attention-sm90a-loop.sass: Qwen3-8B tidar_k16, head dim 128, 2 consumers in ping-pong,
 * nvcc 13.0 + cuobjdump 13.1; of the key-tile loop 0x7050..0xd110 only branches, their targets and
 * the HGMMA, WARPGROUP, MUFU, SHFL, F2FP, FSEL, BAR and SYNCS instructions kept; the peeled first
 * tile's HGMMA, the outer loop's back edge and the out-of-line mbarrier spin kept): HGMMA is the
 * tensor class, the key-tile loop is the innermost loop holding it (sass-mix.ts hotLoop takes the
 * outer one, holding more). The softmax term by hand from a table row. Tagged nvcc + cuobjdump:
 * one kernel re-measured against the table (skipped, saying why, where either tool is missing).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { measureSm90aLoop, sm90aSassSpace, writeSm90aHeaders } from '../../bench/sass-counts-sm90a.js';
import { findCuobjdump } from '../../src/build/sass.js';
import { findNvcc } from '../../src/build/toolchain.js';
import { planAttentionSm90a } from '../../src/codegen/attention-sm90a.js';
import { predictAttentionSm90a, SOFTMAX_PER_EXP } from '../../src/codegen/attention-sm90a-cost-model.js';
import { H200 } from '../../src/codegen/machine.js';
import { MEASURED_SM90A_SASS, MEASURED_SM90A_SASS_CUOBJDUMP, MEASURED_SM90A_SASS_NVCC, sm90aKeyLoop, sm90aLoopCounts } from '../../src/codegen/sass-counts-sm90a.js';
import { classOf, countClasses, findLoops, hotLoop, INSTRUCTION_CLASSES, parseSass } from '../../src/codegen/sass-mix.js';
import { prefillChunkVariant, tidarDecodeVariant } from '../../src/codegen/variant.js';
import { packageRoot } from '../../src/util/paths.js';

const fixture = readFileSync(join(packageRoot(), 'test', 'fixtures', 'sass-attention-sm90a-loop.sass'), 'utf8');
const [kernel] = parseSass(fixture);
const QWEN3 = { dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 } as const;

describe('HGMMA in sass-mix.ts, on an sm_90a dump', () => {
  test('HGMMA is the tensor class; the WARPGROUP fences are issue', () => {
    expect(parseSass(fixture).map((k) => [k.name, k.arch])).toEqual([['tidarc_attn_tidar_k16_bf16_d128_q32_kv8_sm90a', 'sm_90a']]);
    expect(classOf('HGMMA.64x64x16.F32.BF16')).toBe('hmma');
    expect(classOf('HGMMA.64x128x16.F32.BF16')).toBe('hmma');
    expect(classOf('WARPGROUP.ARRIVE')).toBe('issue');
    expect(classOf('WARPGROUP.DEPBAR.LE')).toBe('issue');
    expect(countClasses(kernel!.instructions).hmma).toBe(20);  // the peeled tile's 8 and the loop's 12
  });

  test('loops holding HGMMA: the outer one (most) is sass-mix.ts hotLoop\'s, the key-tile loop (innermost) is sm90aKeyLoop\'s', () => {
    expect(findLoops(kernel!).map((l) => [l.head, l.tail, l.hmma])).toEqual([
      [0x7050, 0xd110, 12],
      [0x1c00, 0x14240, 20],
      [0x14250, 0x14260, 0],
      [0x7100, 0x14270, 12],
    ]);
    expect(hotLoop(kernel!)!.loop.head).toBe(0x1c00);
    const key = sm90aKeyLoop(kernel!)!;
    expect([key.loop.head, key.loop.tail]).toEqual([0x7050, 0xd110]);
    expect(key.path[0]!.address).toBe(0x7050);
    expect(key.path.at(-1)!.address).toBe(0xd110);
    // The spin of a tile not yet landed is out of line: the iteration's path waits once and goes on.
    expect(key.path.filter((i) => i.opcode.startsWith('SYNCS.PHASECHK')).length).toBe(1);
    expect(key.path.every((i) => i.address < 0x14250)).toBe(true);
    const counts = countClasses(key.path);
    // S = Q K^T: 8 HGMMA.64x64x16 (D / 16); P V: 4 HGMMA.64x128x16 (64 keys / 16); 32 scores a thread: 32 + 2 MUFU.EX2; 16 F2FP; 4 SHFL.
    expect(key.path.filter((i) => i.opcode.startsWith('HGMMA.64x64x16')).length).toBe(8);
    expect(key.path.filter((i) => i.opcode.startsWith('HGMMA.64x128x16')).length).toBe(4);
    expect({ hmma: counts.hmma, mufu: counts.mufu, conv: counts.conv, shfl: counts.shfl }).toEqual({ hmma: 12, mufu: 34, conv: 16, shfl: 4 });
  });
});

describe('the sm_90a SASS table and the softmax term', () => {
  test('one row for each plan of the space, and the planner\'s k = 16 and prefill plans have theirs', () => {
    const key = (p: { variant: { mask: { kind: string }; shape: { headDim: number } }; consumers: number; pingPong: boolean; tileN: number }) => [p.variant.mask.kind, p.variant.shape.headDim, p.consumers, p.pingPong, p.tileN].join(' ');
    expect(MEASURED_SM90A_SASS.map((r) => r.slice(0, 5).join(' ')).sort()).toEqual(sm90aSassSpace().map(key).sort());
    for (const headDim of [64, 128]) {
      for (const v of [tidarDecodeVariant(16, { ...QWEN3, headDim }), prefillChunkVariant({ ...QWEN3, headDim })]) expect(sm90aLoopCounts(planAttentionSm90a(v)), v.name).toBeDefined();
    }
  });

  test('k = 16 (2 consumers, ping-pong), L = 4096, 4 splits: the softmax is the row\'s 511 issue slots a warpgroup tile at Machine.smClockHz', () => {
    const plan = planAttentionSm90a(tidarDecodeVariant(16, QWEN3));
    expect(sm90aLoopCounts(plan)).toEqual({ hmma: 12, fp32: 162, imad: 48, alu: 109, conv: 16, mufu: 34, shfl: 4, issue: 126 });
    const p = predictAttentionSm90a(plan, { batch: 1, prefix: 4096 }, H200, 138, 4);
    // Warpgroup tiles: 8 KV heads x 2 consumers x (9 row tiles x 64 prefix tiles + the in-step tiles); 511 issue slots beat every pipe (MUFU: 34 x 8 = 272).
    const tiles = 8 * 2 * (9 * 64 + plan.stepTileKey.length);
    const raw = (511 * tiles) / (1.755e9 * 132);
    expect(p.softmaxSource).toBe('measured');
    expect(p.softmaxRawS).toBeCloseTo(raw, 15);
    const tilesPerCta = (9 * 64 + plan.stepTileKey.length) / (9 * 4);
    expect(p.softmaxS).toBeCloseTo(Math.max(0, raw - p.wgmmaS) + raw / tilesPerCta, 15);
  });

  test('a plan with no row keeps the old assumption, labelled, at Machine.smClockHz', () => {
    const plan = planAttentionSm90a(tidarDecodeVariant(16, QWEN3));
    const other = { ...plan, variant: { ...plan.variant, mask: { ...plan.variant.mask, kind: 'block-diffusion' as const } } };
    expect(sm90aLoopCounts(other)).toBeUndefined();
    const p = predictAttentionSm90a(other, { batch: 1, prefix: 4096 }, H200, 138, 4);
    expect(p.softmaxSource).toBe('assumed');
    expect(p.softmaxRawS).toBeCloseTo(((1 + SOFTMAX_PER_EXP) * p.executedFlops) / (4 * 128) / (16 * 132 * H200.smClockHz), 15);
  });
});

describe('[nvcc] [cuobjdump] the sm_90a table against the kernel', async () => {
  const [nvcc, cuobjdump] = await Promise.all([findNvcc(), findCuobjdump()]);
  const missing = !nvcc.found ? `nvcc: ${nvcc.reason}` : !cuobjdump.found ? cuobjdump.reason : undefined;
  const sameTools = nvcc.found && cuobjdump.found && nvcc.tool.version === MEASURED_SM90A_SASS_NVCC && cuobjdump.tool.version === MEASURED_SM90A_SASS_CUOBJDUMP;
  if (missing) console.warn(`sass-counts-sm90a.test: re-measuring skipped (${missing})`);

  test.skipIf(missing !== undefined)('prefill_c64 at head dim 128 (2 consumers, ping-pong) re-measured: the same counts (exact with the tools that measured the table, else within 5% and the same HGMMA and MUFU)', async () => {
    const plan = planAttentionSm90a(prefillChunkVariant(QWEN3));
    const dir = mkdtempSync(join(tmpdir(), 'tidarc-sass-sm90a-test-'));
    try {
      writeSm90aHeaders(dir);
      const measured = await measureSm90aLoop(plan, nvcc.found ? nvcc.tool.path : '', cuobjdump.found ? cuobjdump.tool.path : '', dir, 'p');
      const table = sm90aLoopCounts(plan)!;
      if (sameTools) expect(measured).toEqual(table);
      else {
        const total = (c: typeof measured) => INSTRUCTION_CLASSES.reduce((n, k) => n + c[k], 0);
        expect(Math.abs(total(measured) - total(table)) / total(table)).toBeLessThan(0.05);
        expect([measured.hmma, measured.mufu]).toEqual([table.hmma, table.mufu]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
