/**
 * The PTX order check of the PDL contract (src/build/ptx-order.ts) on hand-written PTX: an entry
 * that loads a global before its griddepcontrol.wait, one whose branch skips the wait, one with a
 * call in its prologue, and one without a wait all fail; a GEMM-like prologue (param loads, L2
 * prefetch, a loop inside the prologue) then the wait passes; at sm_80 any griddepcontrol fails.
 */
import { describe, expect, test } from 'vitest';
import { checkPdlOrder, isGlobalAccess } from '../../src/build/ptx-order.js';

const entry = (name: string, body: string): string => `.visible .entry ${name}(\n\t.param .align 8 .b8 ${name}_param_0[16]\n)\n{\n\t.reg .b64 %rd<9>;\n${body}\n}\n`;

const GOOD = entry('good', `
\tld.param.u64 \t%rd1, [good_param_0];
\tmov.u32 \t%r1, %tid.x;
\tsetp.gt.u32 \t%p1, %r1, 31;
\t@%p1 bra \t$L__BB0_2;
$L__BB0_1:
\tcp.async.bulk.prefetch.L2.global [%rd1], %r2;
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

  test('two entries are checked apart; nested braces of inline asm stay inside the entry', () => {
    const two = GOOD + entry('second', '\t{\n\t.reg .pred p;\n\tld.global.u32 \t%r3, [%rd1];\n\t}\n\tgriddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;');
    const r = checkPdlOrder(two, true);
    expect(r.map((e) => [e.name, e.problems.length])).toEqual([['good', 0], ['second', 1]]);
  });
});

describe('isGlobalAccess', () => {
  test('state spaces and the hints', () => {
    for (const s of ['ld.global.nc.v4.u32', 'ld.u32', 'st.global.f32', 'ld.acquire.gpu.global.b32', 'atom.add.u32', 'cp.async.ca.shared.global', 'discard.global.L2', 'cp.reduce.async.bulk.tensor.2d.global.shared::cta.add']) expect(isGlobalAccess(s), s).toBe(true);
    for (const s of ['ld.param.u64', 'ld.param::entry.u64', 'ld.shared.v4.u32', 'st.shared::cluster.u32', 'ld.local.u32', 'ld.const.u32', 'atom.shared.add.u32', 'cp.async.bulk.prefetch.L2.global', 'cp.async.commit_group', 'cp.async.wait_group', 'cp.async.bulk.wait_group.read', 'prefetch.tensormap', 'mbarrier.try_wait.parity.shared::cta.b64', 'mov.u32']) expect(isGlobalAccess(s), s).toBe(false);
  });
});
