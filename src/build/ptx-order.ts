/**
 * A static check of the programmatic dependent launch (PDL) contract on nvcc's PTX (pure): in
 * every kernel entry, no instruction that touches global memory comes before the kernel's
 * `griddepcontrol.wait`, and control cannot get past the wait without running it. The
 * templates put the wait first (tidarc_device.cuh grid_dependency_wait, an asm volatile with a
 * memory clobber); this catches a compiler, or a later template edit, that moves a load above it.
 *
 * What counts as a global access (before the wait it is a finding): ld/ldu/st/atom/red whose
 * state space is global or generic (a generic address may be global), cp.async (16-byte copies
 * from global), cp.async.bulk copies and TMA (cp.async.bulk.tensor, cp.reduce.async.bulk),
 * discard.global, tex/suld/sust, multimem, tensormap.replace. Not: ld.param / ld.shared /
 * ld.local / ld.const (by-value arguments, shared memory, the stack, constant banks no kernel
 * writes), prefetch / prefetchu (prefetch.global.L2: the L2 line hint the GEMMs issue before
 * the wait, tidarc_device.cuh prefetch_l2_line; it reads nothing into the kernel: not in the
 * memory ops), cp.async.bulk.prefetch (the bulk L2 hint), prefetch.tensormap, mbarrier and the
 * commit/wait group ops.
 * Before the wait these are findings too: a `call` (a non-inlined function may access
 * anything), a branch to a label that is not itself before the wait (a path around it), and
 * `griddepcontrol.launch_dependents` (the contract issues it right after the wait); so is a
 * wait under a predicate (`@%p griddepcontrol.wait`: the threads of !%p go on without it).
 * The scan is textual: PTX's layout order. A path may leave the prologue only by `ret`/`exit`;
 * a branch back to a prologue label keeps the path before the wait, still checked.
 */

import { parseSass } from '../codegen/sass-mix.js';

export interface PtxEntryOrder {
  readonly name: string;
  /** 1-based line of the entry's first griddepcontrol.wait, or undefined. */
  readonly waitLine?: number;
  /** The first global access of the entry (line and instruction), if any. */
  readonly firstAccess?: { readonly line: number; readonly text: string };
  /** Why the entry breaks the contract (empty: keeps it). */
  readonly problems: readonly string[];
}

/** State spaces that are not global memory (with their ::qualifiers: shared::cta, param::entry, ...). */
const FINE_SPACES = ['param', 'shared', 'local', 'const'];
const isFineSpace = (part: string): boolean => FINE_SPACES.includes(part.split('::')[0]!);
const MEMORY_OPS = new Set(['ld', 'ldu', 'st', 'atom', 'red']);

/** Whether a PTX instruction (its text without predicate and label) touches global memory. */
export function isGlobalAccess(instruction: string): boolean {
  const opcode = instruction.trim().split(/\s+/, 1)[0] ?? '';
  const parts = opcode.split('.');
  const op = parts[0]!;
  if (MEMORY_OPS.has(op)) return !parts.slice(1).some(isFineSpace);
  if (opcode.startsWith('cp.async.bulk.prefetch')) return false;
  if (/^cp\.async(\.bulk)?\.(commit_group|wait_group|wait_all)/.test(opcode) || opcode.startsWith('cp.async.mbarrier')) return false;
  if (op === 'cp' && (parts[1] === 'async' || parts[1] === 'reduce')) return true;
  if (opcode.startsWith('discard.global') || opcode.startsWith('tensormap.replace')) return true;
  return op === 'tex' || op === 'tld4' || op === 'suld' || op === 'sust' || op === 'sured' || op === 'multimem';
}

interface Line { readonly n: number; readonly text: string }

/** The entries of a PTX module, each with its body's lines (inside its outermost braces). */
function entries(ptx: string): { name: string; body: Line[] }[] {
  const lines = ptx.split('\n');
  const out: { name: string; body: Line[] }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /\.entry\s+([A-Za-z_$][\w$]*)/.exec(lines[i]!);
    if (!m) continue;
    let j = i;
    while (j < lines.length && !lines[j]!.includes('{')) j++;
    const body: Line[] = [];
    let depth = 0;
    for (; j < lines.length; j++) {
      const raw = lines[j]!.replace(/\/\/.*$/, '');
      for (const ch of raw) depth += ch === '{' ? 1 : ch === '}' ? -1 : 0;
      body.push({ n: j + 1, text: raw });
      if (depth === 0) break;
    }
    out.push({ name: m[1]!, body });
    i = j;
  }
  return out;
}

/** One entry's instructions, each without its label, predicate and trailing semicolon; labels apart. */
function statements(body: readonly Line[]): ({ kind: 'label'; name: string; n: number } | { kind: 'insn'; text: string; n: number; guarded: boolean })[] {
  const out: ({ kind: 'label'; name: string; n: number } | { kind: 'insn'; text: string; n: number; guarded: boolean })[] = [];
  for (const { n, text } of body) {
    for (let piece of text.split(';')) {
      piece = piece.replace(/[{}]/g, ' ').trim();
      const label = /^([$\w]+):/.exec(piece);
      if (label) {
        out.push({ kind: 'label', name: label[1]!, n });
        piece = piece.slice(label[0].length).trim();
      }
      if (piece === '' || piece.startsWith('.')) continue;  // directives (.reg, .shared, .pragma, ...)
      const text = piece.replace(/^@!?%\w+\s+/, '');
      out.push({ kind: 'insn', text, n, guarded: text !== piece });
    }
  }
  return out;
}

/**
 * Every entry of `ptx` and what breaks the contract. expectWait: the PTX is for sm_90+, where
 * every entry must have its wait; false (sm_80..89): no griddepcontrol may appear at all.
 */
export function checkPdlOrder(ptx: string, expectWait: boolean): PtxEntryOrder[] {
  return entries(ptx).map(({ name, body }) => {
    const st = statements(body);
    const problems: string[] = [];
    const waitAt = st.findIndex((s) => s.kind === 'insn' && s.text.startsWith('griddepcontrol.wait'));
    const access = st.find((s) => s.kind === 'insn' && isGlobalAccess(s.text)) as { text: string; n: number } | undefined;
    const waitLine = waitAt >= 0 ? st[waitAt]!.n : undefined;
    if (!expectWait) {
      const g = st.find((s) => s.kind === 'insn' && s.text.startsWith('griddepcontrol'));
      if (g) problems.push(`line ${g.n}: ${(g as { text: string }).text} in PTX for an arch below sm_90`);
      return { name, ...(access ? { firstAccess: { line: access.n, text: access.text } } : {}), problems };
    }
    if (waitAt < 0) {
      problems.push('no griddepcontrol.wait');
      return { name, ...(access ? { firstAccess: { line: access.n, text: access.text } } : {}), problems };
    }
    const wait = st[waitAt] as { guarded: boolean };
    if (wait.guarded) problems.push(`line ${waitLine}: griddepcontrol.wait under a predicate (a thread may skip it)`);
    const prologue = st.slice(0, waitAt);
    const labels = new Set(prologue.filter((s) => s.kind === 'label').map((s) => (s as { name: string }).name));
    for (const s of prologue) {
      if (s.kind !== 'insn') continue;
      if (isGlobalAccess(s.text)) problems.push(`line ${s.n}: ${s.text} before griddepcontrol.wait (line ${waitLine})`);
      else if (/^call(\.uni)?\b/.test(s.text)) problems.push(`line ${s.n}: a call before griddepcontrol.wait (line ${waitLine})`);
      else if (s.text.startsWith('griddepcontrol.launch_dependents')) problems.push(`line ${s.n}: launch_dependents before griddepcontrol.wait (line ${waitLine})`);
      else if (/^(bra|brx)\b/.test(s.text)) {
        const target = /([$\w]+)\s*$/.exec(s.text)?.[1];
        if (!/^bra/.test(s.text) || target === undefined || !labels.has(target)) problems.push(`line ${s.n}: ${s.text} jumps past griddepcontrol.wait (line ${waitLine})`);
      }
    }
    if (!st.slice(waitAt + 1).some((s) => s.kind === 'insn' && s.text.startsWith('griddepcontrol.launch_dependents'))) problems.push('no griddepcontrol.launch_dependents after the wait');
    return { name, waitLine, ...(access ? { firstAccess: { line: access.n, text: access.text } } : {}), problems };
  });
}

// ---- the same contract on ptxas's output (SASS, cuobjdump -sass) ----------------------------
// The PTX check above trusts ptxas not to move a load above the wait. This one reads the SASS a
// GPU runs: griddepcontrol.wait is ACQBULK, launch_dependents PREEXIT (sm_90, nvcc 13.0). Before
// the first ACQBULK of a kernel, in address order: no global access (LDG, STG, ATOMG, RED, generic
// LD/ST/ATOM, LDGSTS, the TMA and bulk copies, surface/texture ops, CCTL), no CALL, no indirect
// branch, no BRA forward past the wait, no PREEXIT; the ACQBULK not predicated (a thread must not
// skip it), and a PREEXIT after it. Allowed before it: the L2 prefetches (CCTL.E.PF2, what ptxas
// makes of prefetch.global.L2, the GEMMs' weight prefetch; any CCTL with a PFn modifier; the bulk
// UBLKPF), constant bank and parameter loads (LDC, ULDC), shared/local memory, arithmetic, EXIT.
// Any other CCTL (discard, invalidate) is a global access.

/** SASS opcodes (before the first '.') that touch, or may touch, global memory. */
const SASS_GLOBAL = new Set(['LDG', 'STG', 'ATOMG', 'ATOM', 'RED', 'REDG', 'LD', 'ST', 'LDGSTS', 'UTMALDG', 'UTMASTG', 'UTMAREDG', 'UBLKCP', 'UBLKRED',
  'SULD', 'SUST', 'SURED', 'SUATOM', 'SUQUERY', 'TEX', 'TLD', 'TLD4', 'TMML', 'TXD', 'CCTL']);

/** Whether a SASS opcode (with its modifiers, e.g. LDG.E.128.CONSTANT) touches global memory. */
export function isSassGlobalAccess(opcode: string): boolean {
  const [op, ...mods] = opcode.split('.');
  if (op === 'CCTL' && mods.some((m) => /^PF\d/.test(m))) return false;  // a prefetch: CCTL.E.PF2 (prefetch.global.L2), PF1
  return SASS_GLOBAL.has(op!);
}

export interface SassEntryOrder {
  readonly name: string;
  readonly arch: string;
  /** Address of the kernel's first ACQBULK, or undefined. */
  readonly waitAddress?: number;
  readonly problems: readonly string[];
}

/** Every kernel of `cuobjdump -sass` output (sm_90+ code) and what breaks the contract. */
export function checkSassPdlOrder(sass: string): SassEntryOrder[] {
  const hex = (a: number): string => `0x${a.toString(16).padStart(4, '0')}`;
  return parseSass(sass).map(({ name, arch, instructions }) => {
    const problems: string[] = [];
    const waitAt = instructions.findIndex((i) => i.opcode.startsWith('ACQBULK'));
    if (waitAt < 0) return { name, arch, problems: ['no ACQBULK (griddepcontrol.wait)'] };
    const wait = instructions[waitAt]!;
    if (wait.predicate !== undefined) problems.push(`${hex(wait.address)}: ACQBULK under @${wait.predicate} (some threads may skip the wait)`);
    for (const i of instructions.slice(0, waitAt)) {
      const op = i.opcode.split('.', 1)[0]!;
      const at = `${hex(i.address)}: ${i.opcode} ${i.operands}`.trim();
      if (isSassGlobalAccess(i.opcode)) problems.push(`${at} before ACQBULK (${hex(wait.address)})`);
      else if (op === 'CALL' || op === 'BRX' || op === 'JMX' || op === 'JMP') problems.push(`${at}: a call or indirect jump before ACQBULK (${hex(wait.address)})`);
      else if (op === 'PREEXIT') problems.push(`${at}: launch_dependents before ACQBULK (${hex(wait.address)})`);
      else if (op === 'BRA' && (i.target === undefined || i.target > wait.address)) problems.push(`${at} jumps past ACQBULK (${hex(wait.address)})`);
    }
    if (!instructions.slice(waitAt + 1).some((i) => i.opcode.startsWith('PREEXIT'))) problems.push('no PREEXIT (launch_dependents) after ACQBULK');
    return { name, arch, waitAddress: wait.address, problems };
  });
}
