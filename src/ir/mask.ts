/**
 * Structured attention masks: one primitive covers every mask tidarc knows.
 *
 * A step has P cached prefix keys and n in-step tokens. In-step token q sees
 *   - prefix key c   iff the prefix rule says so ('all': every cached key, 'none': none),
 *   - in-step key t  iff t == q, t is one of q's ancestors, or q and t share a group.
 * Positions are `P + offset(q)`. Builders for the named kinds live in mask-builders.ts.
 */
import { TidarcError } from '../errors.js';

export type MaskKind =
  | 'tidar-decode'
  | 'tidar-prefill'
  | 'tidar-train'
  | 'causal'
  | 'block-diffusion'
  | 'tree';

export const MASK_KINDS: readonly MaskKind[] = [
  'tidar-decode',
  'tidar-prefill',
  'tidar-train',
  'causal',
  'block-diffusion',
  'tree',
];

export interface StepToken {
  /** Position relative to the prefix length P: position = P + offset. */
  readonly offset: number;
  /** Other in-step tokens this one sees (sorted, without itself and its group). */
  readonly ancestors: readonly number[];
  /** Tokens with the same group id see each other (bidirectional block). */
  readonly group?: number;
  /** Segment label for drawings and tables: 'drafts', 'block 3', 'prompt', ... */
  readonly segment: string;
}

export interface MaskSpec {
  readonly kind: MaskKind;
  /** The builder's parameters, echoed into JSON output and generated code comments. */
  readonly params: Readonly<Record<string, number | readonly number[]>>;
  /** Whether in-step queries see the cached prefix keys. */
  readonly prefix: 'all' | 'none';
  readonly tokens: readonly StepToken[];
}

export type TileClass = 'empty' | 'partial' | 'full';

const stepTables = new WeakMap<MaskSpec, Uint8Array>();

/** n x n visibility of in-step tokens (row-major, 1 = visible), computed once per spec. */
export function stepVisibility(mask: MaskSpec): Uint8Array {
  const cached = stepTables.get(mask);
  if (cached) return cached;
  const n = mask.tokens.length;
  const table = new Uint8Array(n * n);
  const groups = new Map<number, number[]>();
  mask.tokens.forEach((tok, i) => {
    if (tok.group !== undefined) {
      const members = groups.get(tok.group) ?? [];
      members.push(i);
      groups.set(tok.group, members);
    }
  });
  mask.tokens.forEach((tok, q) => {
    const row = q * n;
    table[row + q] = 1;
    for (const a of tok.ancestors) table[row + a] = 1;
    if (tok.group !== undefined) for (const m of groups.get(tok.group)!) table[row + m] = 1;
  });
  stepTables.set(mask, table);
  return table;
}

export function stepCount(mask: MaskSpec): number {
  return mask.tokens.length;
}

/** Is column `col` (prefix keys 0..P-1 first, then in-step keys) visible to in-step row `row`? */
export function isVisible(mask: MaskSpec, prefixLength: number, row: number, col: number): boolean {
  if (col < prefixLength) return mask.prefix === 'all';
  const n = mask.tokens.length;
  return stepVisibility(mask)[row * n + (col - prefixLength)] === 1;
}

/** The dense mask: n rows, P + n columns, 1 = visible. */
export function denseMask(mask: MaskSpec, prefixLength: number): Uint8Array[] {
  const n = mask.tokens.length;
  const step = stepVisibility(mask);
  const prefixBit = mask.prefix === 'all' ? 1 : 0;
  return mask.tokens.map((_, q) => {
    const row = new Uint8Array(prefixLength + n);
    row.fill(prefixBit, 0, prefixLength);
    row.set(step.subarray(q * n, q * n + n), prefixLength);
    return row;
  });
}

export function positions(mask: MaskSpec, prefixLength: number): number[] {
  return mask.tokens.map((t) => prefixLength + t.offset);
}

/**
 * Class of the in-step rectangle rows [q0, q1) x keys [k0, k1) (clipped to n).
 * An empty rectangle (after clipping) is 'empty'.
 */
export function classifyStepRect(mask: MaskSpec, q0: number, q1: number, k0: number, k1: number): TileClass {
  const n = mask.tokens.length;
  const qa = Math.max(0, q0), qb = Math.min(n, q1), ka = Math.max(0, k0), kb = Math.min(n, k1);
  if (qa >= qb || ka >= kb) return 'empty';
  const step = stepVisibility(mask);
  let seen = 0;
  for (let q = qa; q < qb; q++) for (let k = ka; k < kb; k++) seen += step[q * n + k]!;
  const cells = (qb - qa) * (kb - ka);
  return seen === 0 ? 'empty' : seen === cells ? 'full' : 'partial';
}

/**
 * Tile classes of the whole dense mask (n rows, P + n columns) for tiles of
 * tileRows x tileCols; edge tiles are clipped to the matrix.
 */
export function classifyTiles(mask: MaskSpec, prefixLength: number, tileRows: number, tileCols: number): TileClass[][] {
  if (!Number.isInteger(tileRows) || tileRows < 1 || !Number.isInteger(tileCols) || tileCols < 1) {
    throw new TidarcError('invalid-argument', 'tile sizes must be positive integers', {
      field: 'tile',
      value: `${tileRows}x${tileCols}`,
      allowed: 'integers >= 1',
    });
  }
  const n = mask.tokens.length;
  const cols = prefixLength + n;
  const dense = denseMask(mask, prefixLength);
  const out: TileClass[][] = [];
  for (let r0 = 0; r0 < n; r0 += tileRows) {
    const row: TileClass[] = [];
    for (let c0 = 0; c0 < cols; c0 += tileCols) {
      let seen = 0, cells = 0;
      for (let r = r0; r < Math.min(n, r0 + tileRows); r++) {
        for (let c = c0; c < Math.min(cols, c0 + tileCols); c++) {
          seen += dense[r]![c]!;
          cells++;
        }
      }
      row.push(seen === 0 ? 'empty' : seen === cells ? 'full' : 'partial');
    }
    out.push(row);
  }
  return out;
}

/** Checks the structural invariants every builder must keep; throws one clear sentence. */
export function validateMask(mask: MaskSpec): MaskSpec {
  const n = mask.tokens.length;
  if (n < 1) throw new TidarcError('invalid-spec', 'a mask needs at least one in-step token', { field: 'tokens', value: n, allowed: '>= 1' });
  mask.tokens.forEach((tok, i) => {
    if (!Number.isInteger(tok.offset) || tok.offset < 0) {
      throw new TidarcError('invalid-spec', 'position offsets must be non-negative integers', { field: `tokens[${i}].offset`, value: tok.offset, allowed: 'an integer >= 0' });
    }
    let last = -1;
    for (const a of tok.ancestors) {
      if (!Number.isInteger(a) || a < 0 || a >= n || a === i || a <= last) {
        throw new TidarcError('invalid-spec', 'ancestors must be sorted distinct in-step indices other than the token itself', { field: `tokens[${i}].ancestors`, value: a, allowed: `0..${n - 1} except ${i}, ascending` });
      }
      last = a;
    }
  });
  return mask;
}
