/**
 * Text, JSON and SVG renderings of masks. Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import { type MaskSpec, denseMask, positions } from '../../src/ir/mask.js';
import { blockDiffusion, causal, tidarDecode, tidarPrefill, tidarTrain, tree } from '../../src/ir/mask-builders.js';
import { renderMaskJson, renderMaskSvg, renderMaskText } from '../../src/ir/mask-render.js';
import { expectWellFormedXml } from '../helpers/well-formed-xml.js';

const ALL: readonly [MaskSpec, number][] = [
  [tidarDecode(3), 3],
  [tidarPrefill(4, 2), 1],
  [tidarTrain(6, 3), 0],
  [causal(4), 2],
  [blockDiffusion(3), 2],
  [tree([-1, 0, 0, 1, -1]), 1],
];

test('text: the k = 3 decode step reads like the table in docs/tidar.md', () => {
  expect(renderMaskText(tidarDecode(3), 3)).toBe(
    [
      '# tidar-decode draft=3 prefix=3: 12 queries x 15 keys (1 = visible, . = hidden)',
      '               prefix | drafts | block 1 | block 2 | block 3',
      ' 0 drafts  @3  1 1 1  | 1 . .  | . . .   | . . .   | . . .',
      ' 1 drafts  @4  1 1 1  | 1 1 .  | . . .   | . . .   | . . .',
      ' 2 drafts  @5  1 1 1  | 1 1 1  | . . .   | . . .   | . . .',
      ' 3 block 1 @4  1 1 1  | 1 . .  | 1 1 1   | . . .   | . . .',
      ' 4 block 1 @5  1 1 1  | 1 . .  | 1 1 1   | . . .   | . . .',
      ' 5 block 1 @6  1 1 1  | 1 . .  | 1 1 1   | . . .   | . . .',
      ' 6 block 2 @5  1 1 1  | 1 1 .  | . . .   | 1 1 1   | . . .',
      ' 7 block 2 @6  1 1 1  | 1 1 .  | . . .   | 1 1 1   | . . .',
      ' 8 block 2 @7  1 1 1  | 1 1 .  | . . .   | 1 1 1   | . . .',
      ' 9 block 3 @6  1 1 1  | 1 1 1  | . . .   | . . .   | 1 1 1',
      '10 block 3 @7  1 1 1  | 1 1 1  | . . .   | . . .   | 1 1 1',
      '11 block 3 @8  1 1 1  | 1 1 1  | . . .   | . . .   | 1 1 1',
      '',
    ].join('\n'),
  );
});

test('text: no prefix column group when P = 0, one line per row plus two header lines', () => {
  const text = renderMaskText(tidarTrain(6, 3), 0);
  expect(text.split('\n')[1]).toMatch(/^\s+clean\s+\| mask block 0 \| mask block 1$/);
  expect(text.trimEnd().split('\n')).toHaveLength(2 + 12);
  expect(text).not.toMatch(/[ \t]$/m);
});

describe('json contract', () => {
  test.each(ALL.map(([m, p]) => [m.kind, m, p] as const))('%s', (_kind, m, p) => {
    const j = JSON.parse(renderMaskJson(m, p)) as Record<string, unknown>;
    const n = m.tokens.length;
    expect(Object.keys(j)).toEqual(['kind', ...Object.keys(m.params), 'prefix', 'rows', 'cols', 'positions', 'visible']);
    expect(j['kind']).toBe(m.kind);
    for (const [k, v] of Object.entries(m.params)) expect(j[k]).toEqual(v);
    expect(j['prefix']).toBe(p);
    expect(j['rows']).toBe(n);
    expect(j['cols']).toBe(p + n);
    expect(j['positions']).toEqual(positions(m, p));
    expect(j['visible']).toEqual(denseMask(m, p).map((r) => [...r]));
  });

  test('one matrix row per line', () => {
    const lines = renderMaskJson(tidarDecode(2), 0).split('\n');
    expect(lines.filter((l) => /^\s+\[[01,]+\],?$/.test(l))).toHaveLength(6);
  });
});

describe('svg', () => {
  test.each(ALL.map(([m, p]) => [m.kind, m, p] as const))('%s is well-formed with segment labels on both axes', (_kind, m, p) => {
    const svg = renderMaskSvg(m, p);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expectWellFormedXml(svg);
    for (const seg of new Set(m.tokens.map((t) => t.segment))) {
      // A row label and a column label per segment.
      expect(svg.split(`>${seg}</text>`).length - 1).toBeGreaterThanOrEqual(2);
    }
    if (p > 0) expect(svg).toContain('>prefix</text>');
    expect(renderMaskSvg(m, p)).toBe(svg);
  });

  test('decode k = 3: rows with equal visibility merge into one rect per run', () => {
    const svg = renderMaskSvg(tidarDecode(3), 3);
    // Drafts: 3 rows, 1 run each (prefix + causal drafts); blocks: 3 row-groups, 2 runs each.
    expect(svg.match(/<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+"\/>/g)).toHaveLength(3 + 3 * 2);
    // Separators: 4 between the 5 column segments, 3 between the 4 row segments.
    const separators = /<g stroke="#c0392b"[^>]*>([\s\S]*?)<\/g>/.exec(svg)![1]!;
    expect(separators.match(/<line /g)).toHaveLength(4 + 3);
    // Plus a faint grid: 14 inner column lines and 11 inner row lines at 20 px cells.
    expect(svg.match(/<line /g)).toHaveLength(4 + 3 + 14 + 11);
  });

  test('big masks stay a sane size', () => {
    const svg = renderMaskSvg(tidarDecode(64), 1024);
    const width = Number(/width="([\d.]+)"/.exec(svg)![1]);
    expect(width).toBeLessThan(1600);
    expect(svg.length).toBeLessThan(2_000_000);
    expectWellFormedXml(svg);
  });

  test('labels are XML-escaped', () => {
    const m: MaskSpec = { ...causal(2), tokens: causal(2).tokens.map((t) => ({ ...t, segment: 'a<b & "c"' })) };
    const svg = renderMaskSvg(m, 0);
    expect(svg).toContain('a&lt;b &amp; &quot;c&quot;');
    expectWellFormedXml(svg);
  });
});

test('renderers refuse a bad prefix and masks too large to draw densely', () => {
  expect(() => renderMaskText(causal(2), -1)).toThrow(TidarcError);
  expect(() => renderMaskJson(causal(2), 1.5)).toThrow(TidarcError);
  expect(() => renderMaskSvg(blockDiffusion(8192), 8192)).toThrow(/too large/);
});
