/**
 * Mask IR against hand-derived truth tables (docs/tidar.md), and tile classification against
 * dense evaluation on seeded random masks. Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import {
  type MaskSpec,
  type StepToken,
  classifyStepRect,
  classifyTiles,
  denseMask,
  isVisible,
  positions,
  stepVisibility,
  validateMask,
} from '../../src/ir/mask.js';
import { blockDiffusion, causal, tidarDecode, tidarPrefill, tidarTrain, tree } from '../../src/ir/mask-builders.js';

/** Parses a table written as rows of `1` / `.`, ignoring spaces and `|` separators. */
function table(text: string): number[][] {
  return text
    .trim()
    .split('\n')
    .map((line) => [...line.replace(/[\s|]/g, '')].map((c) => (c === '1' ? 1 : 0)));
}

function dense(mask: MaskSpec, prefix: number): number[][] {
  return denseMask(mask, prefix).map((row) => [...row]);
}

describe('tidar-decode truth tables', () => {
  test('k = 1: the draft, then one mask slot that sees it', () => {
    expect(dense(tidarDecode(1), 0)).toEqual(table(`
      1 | .
      1 | 1
    `));
    expect(positions(tidarDecode(1), 5)).toEqual([5, 6]);
  });

  test('k = 2 with a 2-token prefix', () => {
    expect(dense(tidarDecode(2), 2)).toEqual(table(`
      1 1 | 1 . | . . | . .
      1 1 | 1 1 | . . | . .
      1 1 | 1 . | 1 1 | . .
      1 1 | 1 . | 1 1 | . .
      1 1 | 1 1 | . . | 1 1
      1 1 | 1 1 | . . | 1 1
    `));
    expect(positions(tidarDecode(2), 2)).toEqual([2, 3, 3, 4, 4, 5]);
  });

  test('k = 3, prefix A B C: the table from docs/tidar.md', () => {
    expect(dense(tidarDecode(3), 3)).toEqual(table(`
      1 1 1 | 1 . . | . . . | . . . | . . .
      1 1 1 | 1 1 . | . . . | . . . | . . .
      1 1 1 | 1 1 1 | . . . | . . . | . . .
      1 1 1 | 1 . . | 1 1 1 | . . . | . . .
      1 1 1 | 1 . . | 1 1 1 | . . . | . . .
      1 1 1 | 1 . . | 1 1 1 | . . . | . . .
      1 1 1 | 1 1 . | . . . | 1 1 1 | . . .
      1 1 1 | 1 1 . | . . . | 1 1 1 | . . .
      1 1 1 | 1 1 . | . . . | 1 1 1 | . . .
      1 1 1 | 1 1 1 | . . . | . . . | 1 1 1
      1 1 1 | 1 1 1 | . . . | . . . | 1 1 1
      1 1 1 | 1 1 1 | . . . | . . . | 1 1 1
    `));
    // d0..d2 @3,4,5; B1 @4,5,6; B2 @5,6,7; B3 @6,7,8.
    expect(positions(tidarDecode(3), 3)).toEqual([3, 4, 5, 4, 5, 6, 5, 6, 7, 6, 7, 8]);
  });

  test('n = k(k+1) and segment labels', () => {
    expect(tidarDecode(16).tokens).toHaveLength(272);
    expect(tidarDecode(3).tokens.map((t) => t.segment)).toEqual([
      'drafts', 'drafts', 'drafts', 'block 1', 'block 1', 'block 1', 'block 2', 'block 2', 'block 2', 'block 3', 'block 3', 'block 3',
    ]);
  });
});

test('tidar-train S = 6, B = 3: clean causal, mask blocks see clean keys before their block', () => {
  const m = tidarTrain(6, 3);
  expect(m.prefix).toBe('none');
  expect(dense(m, 0)).toEqual(table(`
    1 . . . . . | . . . . . .
    1 1 . . . . | . . . . . .
    1 1 1 . . . | . . . . . .
    1 1 1 1 . . | . . . . . .
    1 1 1 1 1 . | . . . . . .
    1 1 1 1 1 1 | . . . . . .
    . . . . . . | 1 1 1 . . .
    . . . . . . | 1 1 1 . . .
    . . . . . . | 1 1 1 . . .
    1 1 1 . . . | . . . 1 1 1
    1 1 1 . . . | . . . 1 1 1
    1 1 1 . . . | . . . 1 1 1
  `));
  expect(positions(m, 0)).toEqual([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]);
  // A prefix of a train mask is never visible.
  expect(dense(m, 2).every((row) => row[0] === 0 && row[1] === 0)).toBe(true);
});

test('tree parents [-1, 0, 0, 1, -1]: each node sees its ancestors and itself', () => {
  const m = tree([-1, 0, 0, 1, -1]);
  expect(dense(m, 1)).toEqual(table(`
    1 | 1 . . . .
    1 | 1 1 . . .
    1 | 1 . 1 . .
    1 | 1 1 . 1 .
    1 | . . . . 1
  `));
  expect(positions(m, 10)).toEqual([10, 11, 11, 12, 10]);
});

test('tidar-prefill S = 3, k = 2: causal prompt, then a bidirectional mask block after it', () => {
  const m = tidarPrefill(3, 2);
  expect(dense(m, 1)).toEqual(table(`
    1 | 1 . . | . .
    1 | 1 1 . | . .
    1 | 1 1 1 | . .
    1 | 1 1 1 | 1 1
    1 | 1 1 1 | 1 1
  `));
  expect(positions(m, 1)).toEqual([1, 2, 3, 4, 5]);
});

test('causal and block-diffusion', () => {
  expect(dense(causal(3), 2)).toEqual(table(`
    1 1 | 1 . .
    1 1 | 1 1 .
    1 1 | 1 1 1
  `));
  expect(positions(causal(3), 2)).toEqual([2, 3, 4]);
  expect(dense(blockDiffusion(3), 1)).toEqual(table(`
    1 | 1 1 1
    1 | 1 1 1
    1 | 1 1 1
  `));
  expect(positions(blockDiffusion(3), 4)).toEqual([4, 5, 6]);
});

test('builders refuse bad parameters with a TidarcError naming the parameter', () => {
  for (const bad of [() => tidarDecode(0), () => tidarDecode(65), () => tidarDecode(1.5), () => tidarTrain(6, 7), () => tree([0]), () => tree([-1, 1]), () => tree([])]) {
    expect(bad).toThrow(TidarcError);
  }
  expect(() => tidarDecode(0)).toThrow(/draft = 0/);
  expect(() => validateMask({ kind: 'causal', params: {}, prefix: 'all', tokens: [{ offset: 0, ancestors: [0], segment: 'x' }] })).toThrow(/ancestors/);
});

/** mulberry32: small, seedable, good enough to pick shapes. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random primitive mask (not from a builder): random ancestors, groups and prefix rule. */
function randomPrimitive(rand: () => number, n: number): MaskSpec {
  const tokens: StepToken[] = [];
  for (let i = 0; i < n; i++) {
    const ancestors = Array.from({ length: n }, (_, j) => j).filter((j) => j !== i && rand() < 0.25);
    const group = rand() < 0.4 ? Math.floor(rand() * 3) : undefined;
    tokens.push({ offset: Math.floor(rand() * n), ancestors, ...(group === undefined ? {} : { group }), segment: `s${Math.floor(i / 4)}` });
  }
  return validateMask({ kind: 'tree', params: {}, prefix: rand() < 0.5 ? 'all' : 'none', tokens });
}

function randomMask(rand: () => number): MaskSpec {
  const pick = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  switch (pick(0, 6)) {
    case 0: return tidarDecode(pick(1, 8));
    case 1: return tidarPrefill(pick(1, 20), pick(1, 6));
    case 2: { const S = pick(1, 20); return tidarTrain(S, pick(1, S)); }
    case 3: return causal(pick(1, 30));
    case 4: return blockDiffusion(pick(1, 20));
    case 5: return tree(Array.from({ length: pick(1, 30) }, (_, i) => pick(-1, i - 1)));
    default: return randomPrimitive(rand, pick(1, 25));
  }
}

/** Visibility straight from the primitive's definition, independent of stepVisibility. */
function truth(mask: MaskSpec, prefix: number, row: number, col: number): number {
  if (col < prefix) return mask.prefix === 'all' ? 1 : 0;
  const k = col - prefix;
  const q = mask.tokens[row]!, key = mask.tokens[k]!;
  const sameGroup = q.group !== undefined && q.group === key.group;
  return k === row || q.ancestors.includes(k) || sameGroup ? 1 : 0;
}

function classOf(cells: number[]): string {
  const seen = cells.reduce((a, b) => a + b, 0);
  return cells.length === 0 || seen === 0 ? 'empty' : seen === cells.length ? 'full' : 'partial';
}

describe('tile classification against dense evaluation (seeded random masks)', () => {
  test('denseMask and isVisible agree with the primitive definition', () => {
    const rand = prng(7);
    for (let trial = 0; trial < 60; trial++) {
      const m = randomMask(rand);
      const P = Math.floor(rand() * 6);
      const d = denseMask(m, P);
      d.forEach((row, r) => row.forEach((v, c) => {
        expect(v).toBe(truth(m, P, r, c));
        expect(isVisible(m, P, r, c)).toBe(v === 1);
      }));
    }
  });

  test('classifyTiles matches per-tile counts of the dense mask', () => {
    const rand = prng(1234);
    for (let trial = 0; trial < 200; trial++) {
      const m = randomMask(rand);
      const P = Math.floor(rand() * 40);
      const tr = 1 + Math.floor(rand() * 40), tc = 1 + Math.floor(rand() * 40);
      const n = m.tokens.length, cols = P + n;
      const expected: string[][] = [];
      for (let r0 = 0; r0 < n; r0 += tr) {
        const row: string[] = [];
        for (let c0 = 0; c0 < cols; c0 += tc) {
          const cells: number[] = [];
          for (let r = r0; r < Math.min(n, r0 + tr); r++) for (let c = c0; c < Math.min(cols, c0 + tc); c++) cells.push(truth(m, P, r, c));
          row.push(classOf(cells));
        }
        expected.push(row);
      }
      expect(classifyTiles(m, P, tr, tc)).toEqual(expected);
    }
  });

  test('classifyStepRect matches the dense in-step block, including clipped and empty rectangles', () => {
    const rand = prng(99);
    for (let trial = 0; trial < 400; trial++) {
      const m = randomMask(rand);
      const n = m.tokens.length;
      const a = Math.floor(rand() * (n + 6)) - 3, b = Math.floor(rand() * (n + 6)) - 3;
      const c = Math.floor(rand() * (n + 6)) - 3, d = Math.floor(rand() * (n + 6)) - 3;
      const [q0, q1] = [Math.min(a, b), Math.max(a, b) + (rand() < 0.8 ? 1 : 0)];
      const [k0, k1] = [Math.min(c, d), Math.max(c, d) + (rand() < 0.8 ? 1 : 0)];
      const cells: number[] = [];
      const step = stepVisibility(m);
      for (let q = Math.max(0, q0); q < Math.min(n, q1); q++) {
        for (let k = Math.max(0, k0); k < Math.min(n, k1); k++) {
          expect(step[q * n + k]).toBe(truth(m, 0, q, k));
          cells.push(truth(m, 0, q, k));
        }
      }
      expect(classifyStepRect(m, q0, q1, k0, k1)).toBe(classOf(cells));
    }
  });

  test('classifyTiles of the k = 16 decode step: the prefix is full, drafts-vs-blocks tiles are empty', () => {
    const m = tidarDecode(16);
    const tiles = classifyTiles(m, 64, 16, 16);
    expect(tiles).toHaveLength(17);
    for (const row of tiles) for (let c = 0; c < 4; c++) expect(row[c]).toBe('full');
    // Draft rows (tile row 0) against block keys (tile cols 5..20): never visible.
    expect(tiles[0]!.slice(5)).toEqual(new Array(16).fill('empty'));
    // Block j rows: drafts partial (except j = 16 which sees all), own block full.
    expect(tiles[3]![4]).toBe('partial');
    expect(tiles[3]![4 + 3]).toBe('full');
    expect(tiles[16]![4]).toBe('full');
  });

  test('classifyTiles refuses non-positive tile sizes', () => {
    expect(() => classifyTiles(causal(4), 0, 0, 4)).toThrow(TidarcError);
  });
});
