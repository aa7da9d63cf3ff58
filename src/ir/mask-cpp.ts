/**
 * The in-step part of a mask as C++ for generated kernels: a visibility predicate over
 * `int tq, int tk` (in-step query and key indices, both in [0, n)) and a position offset
 * over `int tq`. The cached prefix is not covered here: its rule (MaskSpec.prefix) is
 * uniform per kind, so kernels handle it without a predicate.
 *
 * Closed-form kinds become pure integer arithmetic with the parameters as literals, so a
 * kernel evaluates them in registers and reads no mask from memory. The math is built as
 * a small expression tree in TypeScript, rendered fully parenthesised, and checked against
 * stepVisibility / positions before it is returned (a spec whose tokens disagree with its
 * kind is refused instead of silently rendered). Trees have no closed form: they get a
 * constexpr bitset table, one row of 64-bit words per query.
 */
import { TidarcError } from '../errors.js';
import { type MaskSpec, stepVisibility } from './mask.js';

export interface CppSnippet {
  /** Namespace-scope C++ the expression needs (tables); empty for closed forms. Needs <cstdint>. */
  readonly declarations: string;
  /** A fully parenthesised C++ expression. */
  readonly expression: string;
}

type Var = 'tq' | 'tk';
type BinaryOp = '+' | '-' | '*' | '/' | '%' | '<' | '<=' | '>=' | '==' | '&&' | '||';
type Expr =
  | { readonly op: 'var'; readonly name: Var }
  | { readonly op: 'int'; readonly value: number }
  | { readonly op: 'bool'; readonly value: boolean }
  | { readonly op: BinaryOp; readonly a: Expr; readonly b: Expr }
  | { readonly op: '?:'; readonly cond: Expr; readonly then: Expr; readonly else: Expr };

const tq: Expr = { op: 'var', name: 'tq' };
const tk: Expr = { op: 'var', name: 'tk' };
const int = (value: number): Expr => ({ op: 'int', value });
const bin = (op: BinaryOp) => (a: Expr, b: Expr): Expr => ({ op, a, b });
const [sub, mul, div, mod] = [bin('-'), bin('*'), bin('/'), bin('%')];
const [lt, le, ge, eq, and, or] = [bin('<'), bin('<='), bin('>='), bin('=='), bin('&&'), bin('||')];
const cond = (c: Expr, then: Expr, otherwise: Expr): Expr => ({ op: '?:', cond: c, then, else: otherwise });

function render(e: Expr): string {
  switch (e.op) {
    case 'var': return e.name;
    case 'int': return String(e.value);
    case 'bool': return e.value ? 'true' : 'false';
    case '?:': return `(${render(e.cond)} ? ${render(e.then)} : ${render(e.else)})`;
    default: return `(${render(e.a)} ${e.op} ${render(e.b)})`;
  }
}

/** C++ semantics on non-negative ints: `/` truncates, comparisons give 0 or 1. */
function evaluate(e: Expr, env: Readonly<Record<Var, number>>): number {
  switch (e.op) {
    case 'var': return env[e.name];
    case 'int': return e.value;
    case 'bool': return e.value ? 1 : 0;
    case '?:': return evaluate(e.cond, env) !== 0 ? evaluate(e.then, env) : evaluate(e.else, env);
    default: {
      const a = evaluate(e.a, env);
      if (e.op === '&&' && a === 0) return 0;
      if (e.op === '||' && a !== 0) return 1;
      const b = evaluate(e.b, env);
      switch (e.op) {
        case '+': return a + b;
        case '-': return a - b;
        case '*': return a * b;
        case '/': return Math.trunc(a / b);
        case '%': return a % b;
        case '<': return a < b ? 1 : 0;
        case '<=': return a <= b ? 1 : 0;
        case '>=': return a >= b ? 1 : 0;
        case '==': return a === b ? 1 : 0;
        default: return b !== 0 ? 1 : 0; // '&&' and '||' after short-circuit
      }
    }
  }
}

/** Top-level wrap so even a bare variable pastes safely into any context. */
const paste = (e: Expr): string => (e.op === 'var' || e.op === 'int' || e.op === 'bool' ? `(${render(e)})` : render(e));

function intParam(mask: MaskSpec, name: string): number {
  const v = mask.params[name];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new TidarcError('invalid-spec', `a ${mask.kind} mask needs a positive integer parameter`, { field: `params.${name}`, value: v ?? 'missing', allowed: 'an integer >= 1' });
  }
  return v;
}

/** visible(tq, tk) for the closed-form kinds; null for trees. Formulas: docs/tidar.md. */
function visibilityExpr(mask: MaskSpec): Expr | null {
  switch (mask.kind) {
    case 'tidar-decode': {
      // Drafts (tq < k) form a causal chain; block j = tq / k sees d[0..j-1] and its own block.
      const k = int(intParam(mask, 'draft'));
      return cond(lt(tq, k), le(tk, tq), or(lt(tk, div(tq, k)), eq(div(tk, k), div(tq, k))));
    }
    case 'tidar-prefill': {
      // Prompt rows are causal; the trailing mask rows see everything in the step.
      const S = int(intParam(mask, 'length'));
      return or(le(tk, tq), ge(tq, S));
    }
    case 'tidar-train': {
      // Mask row of block b sees clean keys < b*B (b*B <= tq-S < S, so only clean ones) and its own block.
      const S = int(intParam(mask, 'length'));
      const B = int(intParam(mask, 'block'));
      const blockOf = (t: Expr): Expr => div(sub(t, S), B);
      return cond(lt(tq, S), le(tk, tq), or(lt(tk, mul(blockOf(tq), B)), and(ge(tk, S), eq(blockOf(tk), blockOf(tq)))));
    }
    case 'causal':
      return le(tk, tq);
    case 'block-diffusion':
      return { op: 'bool', value: true };
    case 'tree':
      return null;
  }
}

/** offset(tq) for the closed-form kinds; null for trees. */
function offsetExpr(mask: MaskSpec): Expr | null {
  switch (mask.kind) {
    case 'tidar-decode': {
      // Draft i sits at i; slot s of block j at j + s. With j = tq / k, s = tq % k both cases are j + s.
      const k = int(intParam(mask, 'draft'));
      return { op: '+', a: div(tq, k), b: mod(tq, k) };
    }
    case 'tidar-train':
      // Clean and mask halves share positions 0..S-1.
      return mod(tq, int(intParam(mask, 'length')));
    case 'tidar-prefill':
    case 'causal':
    case 'block-diffusion':
      return tq;
    case 'tree':
      return null;
  }
}

/**
 * Checking every (tq, tk) costs n^2 expression walks; beyond this many cells we check the
 * rows next to each segment boundary plus evenly spaced rows (all keys of each), which
 * still catches a formula slip while keeping the check well under a second for large n.
 */
const FULL_CHECK_CELLS = 1 << 22;

function rowsToCheck(mask: MaskSpec): number[] {
  const n = mask.tokens.length;
  if (n * n <= FULL_CHECK_CELLS) return Array.from({ length: n }, (_, i) => i);
  const rows = new Set<number>([0, n - 1]);
  mask.tokens.forEach((t, i) => {
    if (i > 0 && mask.tokens[i - 1]!.segment !== t.segment) for (const r of [i - 2, i - 1, i, i + 1]) if (r >= 0 && r < n) rows.add(r);
  });
  const stride = Math.max(1, Math.ceil((n * n) / FULL_CHECK_CELLS));
  for (let r = 0; r < n; r += stride) rows.add(r);
  return [...rows].sort((a, b) => a - b);
}

function mismatch(mask: MaskSpec, what: string, q: number, detail: string): never {
  throw new TidarcError('invalid-spec', `the tokens of this ${mask.kind} mask disagree with its closed-form ${what}`, { field: `tokens[${q}]`, value: detail, allowed: `tokens as built by the ${mask.kind} builder for params ${JSON.stringify(mask.params)}` });
}

function checkVisibility(mask: MaskSpec, e: Expr): void {
  const n = mask.tokens.length;
  const table = stepVisibility(mask);
  for (const q of rowsToCheck(mask)) {
    for (let k = 0; k < n; k++) {
      if (evaluate(e, { tq: q, tk: k }) !== table[q * n + k]) mismatch(mask, 'visibility', q, `key ${k}`);
    }
  }
}

/** FNV-1a over the table contents: distinct trees get distinct, reproducible C++ names. */
function contentHash(values: Iterable<number>): string {
  let h = 0x811c9dc5;
  for (const v of values) {
    h ^= v & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
    h ^= (v >>> 8) & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

function treeName(mask: MaskSpec, prefix: string): string {
  const offsets = mask.tokens.map((t) => t.offset);
  return `${prefix}_${mask.tokens.length}_${contentHash([...stepVisibility(mask), ...offsets])}`;
}

/** Row q, word w holds keys 64w..64w+63, bit b = key 64w+b. */
function visibilityWords(mask: MaskSpec): bigint[][] {
  const n = mask.tokens.length;
  const words = Math.ceil(n / 64);
  const table = stepVisibility(mask);
  return mask.tokens.map((_, q) => {
    const row: bigint[] = new Array<bigint>(words).fill(0n);
    for (let k = 0; k < n; k++) if (table[q * n + k]) row[k >> 6]! |= 1n << BigInt(k & 63);
    return row;
  });
}

/** How a table is declared: a host constexpr array by default; a target's dialect may put it elsewhere (CUDA constant memory). */
const HOST_TABLE = 'static constexpr';

function treeVisibility(mask: MaskSpec, qualifier: string): CppSnippet {
  const n = mask.tokens.length;
  const words = Math.ceil(n / 64);
  const name = treeName(mask, 'kTreeVisible');
  const rows = visibilityWords(mask).map((row, q) => `  {${row.map((w) => `0x${w.toString(16).padStart(16, '0')}ull`).join(', ')}},  // node ${q}`);
  const declarations = [
    `// Tree mask, ${n} nodes: bit t of row q (word t / 64, bit t % 64) is set iff node q sees node t (an ancestor or itself).`,
    `${qualifier} uint64_t ${name}[${n}][${words}] = {`,
    ...rows,
    '};',
    '',
  ].join('\n');
  return { declarations, expression: `(((${name}[tq][(tk) >> 6] >> ((tk) & 63)) & 1ull) != 0ull)` };
}

function treeOffset(mask: MaskSpec, qualifier: string): CppSnippet {
  const name = treeName(mask, 'kTreeOffset');
  const values = mask.tokens.map((t) => String(t.offset));
  const lines: string[] = [];
  for (let i = 0; i < values.length; i += 16) lines.push(`  ${values.slice(i, i + 16).join(', ')},`);
  const declarations = [
    `// Tree mask, ${values.length} nodes: position offset of node q is its depth.`,
    `${qualifier} int ${name}[${values.length}] = {`,
    ...lines,
    '};',
    '',
  ].join('\n');
  return { declarations, expression: `(${name}[tq])` };
}

/** C++ for "in-step query tq sees in-step key tk"; `tableQualifier` declares a tree's table. */
export function renderStepPredicateCpp(mask: MaskSpec, tableQualifier = HOST_TABLE): CppSnippet {
  const e = visibilityExpr(mask);
  if (e === null) return treeVisibility(mask, tableQualifier);
  checkVisibility(mask, e);
  return { declarations: '', expression: paste(e) };
}

/** C++ for "position of in-step query tq minus the prefix length P". */
export function renderOffsetCpp(mask: MaskSpec, tableQualifier = HOST_TABLE): CppSnippet {
  const e = offsetExpr(mask);
  if (e === null) return treeOffset(mask, tableQualifier);
  mask.tokens.forEach((t, q) => {
    const got = evaluate(e, { tq: q, tk: 0 });
    if (got !== t.offset) mismatch(mask, 'position offset', q, `offset ${t.offset}, formula gives ${got}`);
  });
  return { declarations: '', expression: paste(e) };
}
