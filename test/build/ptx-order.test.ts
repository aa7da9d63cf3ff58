/**
 * The PTX order check of the PDL contract (src/build/ptx-order.ts) on hand-written PTX: an entry
 * that loads a global before its griddepcontrol.wait, one whose branch skips the wait, one with a
 * call in its prologue, and one without a wait all fail; a GEMM-like prologue (param loads, L2
 * prefetch, a loop inside the prologue) then the wait passes; at sm_80 any griddepcontrol fails.
 * The SASS check (checkSassPdlOrder, ACQBULK = griddepcontrol.wait) on hand-written cuobjdump
 * output: the GEMM prologue's shape (constant loads, its CCTL.E.PF2 line prefetch loop) passes; an LDG
 * (e.g. one ptxas hoisted), a forward branch past the wait, a predicated wait, a CALL, PREEXIT
 * first, no ACQBULK and no PREEXIT after it each fail.
 */
import { describe, expect, test } from 'vitest';
import { checkPdlOrder, checkSassPdlOrder, isGlobalAccess, isSassGlobalAccess } from '../../src/build/ptx-order.js';

const entry = (name: string, body: string): string => `.visible .entry ${name}(\n\t.param .align 8 .b8 ${name}_param_0[16]\n)\n{\n\t.reg .b64 %rd<9>;\n${body}\n}\n`;

const GOOD = entry('good', `
\tld.param.u64 \t%rd1, [good_param_0];
\tmov.u32 \t%r1, %tid.x;
\tsetp.gt.u32 \t%p1, %r1, 31;
\t@%p1 bra \t$L__BB0_2;
$L__BB0_1:
\tprefetch.global.L2 [%rd1];
\tsetp.lt.u32 \t%p2, %r1, 64;
\t@%p2 bra \t$L__BB0_1;
$L__BB0_2:
\tgriddepcontrol.wait;
\tgriddepcontrol.launch_dependents;
\tld.global.nc.u32 \t%r3, [%rd1];
\tst.shared.u32 \t[%r4], %r3;`);

describe('checkPdlOrder', () => {
  test('a prologue of param loads, an L2 prefetch loop and branches inside it, then the wait: kept', () => {
    const [e] = checkPdlOrder(GOOD, true);
    expect(e).toMatchObject({ name: 'good', problems: [] });
    expect(e!.firstAccess!.text).toMatch(/^ld\.global\.nc/);
    expect(e!.firstAccess!.line).toBeGreaterThan(e!.waitLine!);
  });

  test('a global load hoisted above the wait fails, naming it', () => {
    const bad = entry('hoisted', `
\tld.param.u64 \t%rd1, [hoisted_param_0];
\tld.global.u32 \t%r3, [%rd1];
\tgriddepcontrol.wait;
\tgriddepcontrol.launch_dependents;`);
    const [e] = checkPdlOrder(bad, true);
    expect(e!.problems).toHaveLength(1);
    expect(e!.problems[0]).toMatch(/ld\.global\.u32.*before griddepcontrol\.wait/);
  });

  test('generic loads, atomics, cp.async, TMA, a call, a branch past the wait, launch_dependents first: each fails', () => {
    for (const insn of ['ld.u32 \t%r3, [%rd1];', 'atom.global.add.u32 \t%r5, [%rd4], 1;', 'red.relaxed.gpu.global.add.u32 [%rd4], 1;', 'cp.async.cg.shared.global [%r1], [%rd1], 16, %r2;',
      'cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%r1], [%rd1, {%r2, %r3}], [%r4];', 'call.uni \tvprintf, (param0, param1);',
      '@%p1 bra \t$L__BB0_9;', 'griddepcontrol.launch_dependents;']) {
      const [e] = checkPdlOrder(entry('bad', `\t${insn}\n\tgriddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;\n$L__BB0_9:\n\tret;`), true);
      expect(e!.problems.length, insn).toBeGreaterThan(0);
    }
  });

  test('no wait at sm_90, or no launch_dependents after it, fails; at sm_80 no griddepcontrol may appear', () => {
    expect(checkPdlOrder(entry('none', '\tld.global.u32 \t%r3, [%rd1];'), true)[0]!.problems).toEqual(['no griddepcontrol.wait']);
    expect(checkPdlOrder(entry('nolaunch', '\tgriddepcontrol.wait;\n\tld.global.u32 \t%r3, [%rd1];'), true)[0]!.problems).toEqual(['no griddepcontrol.launch_dependents after the wait']);
    expect(checkPdlOrder(entry('plain', '\tld.global.u32 \t%r3, [%rd1];'), false)[0]!.problems).toEqual([]);
    expect(checkPdlOrder(GOOD, false)[0]!.problems[0]).toMatch(/griddepcontrol\.wait in PTX for an arch below sm_90/);
  });

  test('a wait under a predicate fails (the other threads skip it)', () => {
    const [e] = checkPdlOrder(entry('guarded', '\tsetp.eq.u32 \t%p1, %r1, 0;\n\t@%p1 griddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;\n\tld.global.u32 \t%r3, [%rd1];'), true);
    expect(e!.problems).toHaveLength(1);
    expect(e!.problems[0]).toMatch(/griddepcontrol\.wait under a predicate/);
  });

  test('two entries are checked apart; nested braces of inline asm stay inside the entry', () => {
    const two = GOOD + entry('second', '\t{\n\t.reg .pred p;\n\tld.global.u32 \t%r3, [%rd1];\n\t}\n\tgriddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;');
    const r = checkPdlOrder(two, true);
    expect(r.map((e) => [e.name, e.problems.length])).toEqual([['good', 0], ['second', 1]]);
  });
});

describe('isGlobalAccess', () => {
  test('state spaces and the hints', () => {
    for (const s of ['ld.global.nc.v4.u32', 'ld.u32', 'st.global.f32', 'ld.acquire.gpu.global.b32', 'atom.add.u32', 'cp.async.ca.shared.global', 'discard.global.L2', 'cp.reduce.async.bulk.tensor.2d.global.shared::cta.add']) expect(isGlobalAccess(s), s).toBe(true);
    for (const s of ['ld.param.u64', 'ld.param::entry.u64', 'ld.shared.v4.u32', 'st.shared::cluster.u32', 'ld.local.u32', 'ld.const.u32', 'atom.shared.add.u32', 'cp.async.bulk.prefetch.L2.global', 'prefetch.global.L2', 'prefetch.global.L1', 'cp.async.commit_group', 'cp.async.wait_group', 'cp.async.bulk.wait_group.read', 'prefetch.tensormap', 'mbarrier.try_wait.parity.shared::cta.b64', 'mov.u32']) expect(isGlobalAccess(s), s).toBe(false);
  });
});

// cuobjdump -sass as nvcc 13.0 prints an sm_90 GEMM entry's prologue (abridged; encodings dropped).
const sass = (name: string, body: string): string => `\tcode for sm_90\n\t\tFunction : ${name}\n\t.headerflags\t@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"\n${body}\n\t\t..........\n`;
const insn = (address: number, text: string): string => `        /*${address.toString(16).padStart(4, '0')}*/                   ${text} ;`;
const PROLOGUE = [
  insn(0x00, 'LDC R1, c[0x0][0x28]'),
  insn(0x10, 'S2R R0, SR_TID.X'),
  insn(0x20, 'ULDC.64 UR4, c[0x0][0x208]'),
  insn(0x30, 'ISETP.GT.U32.AND P0, PT, R0, 0x7f, PT'),
  insn(0x40, 'BSSY B0, 0x90'),
  insn(0x50, '@P0 BRA 0x80'),
  insn(0x60, 'IADD3 R2, P1, R2, 0x200, RZ'),
  insn(0x70, 'CCTL.E.PF2 [R2]'),
  insn(0x80, '@!P1 BRA 0x60'),
  insn(0x90, 'BSYNC B0'),
];
const TAIL = [insn(0xa0, 'ACQBULK'), insn(0xb0, 'PREEXIT'), insn(0xc0, 'LDG.E.128.CONSTANT R8, desc[UR4][R2.64]'), insn(0xd0, 'EXIT'), insn(0xe0, 'BRA 0xe0')];

describe('checkSassPdlOrder', () => {
  test('constant loads, a CCTL.E.PF2 prefetch loop and branches inside the prologue, then ACQBULK and PREEXIT: kept', () => {
    const [e] = checkSassPdlOrder(sass('good', [...PROLOGUE, ...TAIL].join('\n')));
    expect(e).toMatchObject({ name: 'good', arch: 'sm_90', waitAddress: 0xa0, problems: [] });
  });

  test('a hoisted LDG, a branch past the wait, a CALL, PREEXIT first: each fails, naming it', () => {
    for (const [text, why] of [['LDG.E.CONSTANT R4, desc[UR4][R2.64]', /LDG\.E\.CONSTANT .*before ACQBULK \(0x00a0\)/], ['@!P1 BRA 0xc0', /jumps past ACQBULK/],
      ['CALL.REL.NOINC 0x400', /a call/], ['PREEXIT', /launch_dependents before ACQBULK/], ['LDGSTS.E.BYPASS.128 [R5], desc[UR4][R2.64]', /LDGSTS/],
      ['UTMALDG.2D [UR8], [UR10]', /UTMALDG/], ['ATOMG.E.ADD.STRONG.GPU PT, R3, desc[UR4][R2.64], R7', /ATOMG/]] as const) {
      const body = [...PROLOGUE.slice(0, -1), insn(0x90, text), ...TAIL].join('\n');
      const [e] = checkSassPdlOrder(sass('bad', body));
      expect(e!.problems, text).toHaveLength(1);
      expect(e!.problems[0], text).toMatch(why);
    }
  });

  test('no ACQBULK, a predicated one, no PREEXIT after it: each fails; kernels are checked apart', () => {
    expect(checkSassPdlOrder(sass('none', [insn(0, 'LDG.E R2, desc[UR4][R2.64]'), insn(0x10, 'EXIT')].join('\n')))[0]!.problems).toEqual(['no ACQBULK (griddepcontrol.wait)']);
    expect(checkSassPdlOrder(sass('pred', [insn(0, '@P0 ACQBULK'), insn(0x10, 'PREEXIT')].join('\n')))[0]!.problems[0]).toMatch(/ACQBULK under @P0/);
    expect(checkSassPdlOrder(sass('nolaunch', [insn(0, 'ACQBULK'), insn(0x10, 'EXIT')].join('\n')))[0]!.problems).toEqual(['no PREEXIT (launch_dependents) after ACQBULK']);
    const two = sass('good', [...PROLOGUE, ...TAIL].join('\n')) + sass('second', [insn(0, 'STG.E desc[UR4][R2.64], R0'), ...TAIL].join('\n'));
    expect(checkSassPdlOrder(two).map((e) => [e.name, e.problems.length])).toEqual([['good', 0], ['second', 1]]);
  });

  test('isSassGlobalAccess: global, generic, TMA and bulk copies, discard/invalidate CCTL yes; the L2 prefetches (CCTL.E.PF2 of prefetch.global.L2, UBLKPF), constants, shared, local no', () => {
    for (const op of ['LDG.E.128', 'STG.E.64', 'LD.E', 'ST.E.STRONG.GPU', 'ATOMG.E.ADD', 'RED.E.ADD.STRONG.GPU', 'LDGSTS.E.BYPASS.128', 'UTMALDG.2D', 'UBLKCP.S.G', 'CCTL.E.DML', 'CCTL.E.RML2', 'CCTL.IVALL']) expect(isSassGlobalAccess(op), op).toBe(true);
    for (const op of ['CCTL.E.PF2', 'CCTL.E.PF1', 'UBLKPF.L2', 'LDC.64', 'ULDC.64', 'LDS.128', 'STS.64', 'LDL', 'STL', 'LDSM.16.M88.4', 'ATOMS.ADD', 'ACQBULK', 'SYNCS.EXCH.64']) expect(isSassGlobalAccess(op), op).toBe(false);
  });
});
