/**
 * The C++ predicate and offset, compiled with g++ and evaluated for every (tq, tk), must equal
 * stepVisibility and the token offsets exactly. Needs: g++ (skipped without it).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import { type MaskSpec, stepVisibility } from '../../src/ir/mask.js';
import { blockDiffusion, causal, tidarDecode, tidarPrefill, tidarTrain, tree } from '../../src/ir/mask-builders.js';
import { renderOffsetCpp, renderStepPredicateCpp } from '../../src/ir/mask-cpp.js';

const hasGxx = spawnSync('g++', ['--version'], { stdio: 'ignore' }).status === 0;

/** A 70-node tree so the bitset spans two 64-bit words; parents from a fixed LCG. */
function bigTreeParents(n: number): number[] {
  let s = 12345;
  return Array.from({ length: n }, (_, i) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return i === 0 ? -1 : (s % (i + 1)) - 1;
  });
}

const MASKS: readonly MaskSpec[] = [
  ...[1, 2, 3, 4, 8, 16].map((k) => tidarDecode(k)),
  tidarPrefill(5, 3), tidarPrefill(1, 1), tidarPrefill(7, 16),
  tidarTrain(6, 3), tidarTrain(7, 3), tidarTrain(1, 1), tidarTrain(8, 8), tidarTrain(5, 1),
  causal(1), causal(9),
  blockDiffusion(1), blockDiffusion(5),
  tree([-1, 0, 0, 1, -1]), tree([-1]), tree(bigTreeParents(70)), tree(bigTreeParents(129)),
];

const name = (m: MaskSpec): string => `${m.kind} ${JSON.stringify(m.params).slice(0, 40)}`;

/** One program: each mask in its own namespace, printing its n x n matrix then its offsets. */
function harness(masks: readonly MaskSpec[]): string {
  const parts = ['#include <cstdint>', '#include <cstdio>', ''];
  masks.forEach((m, i) => {
    const vis = renderStepPredicateCpp(m), off = renderOffsetCpp(m);
    parts.push(
      `namespace m${i} {`,
      vis.declarations,
      off.declarations,
      `bool visible([[maybe_unused]] int tq, [[maybe_unused]] int tk) { return ${vis.expression}; }`,
      `int offset([[maybe_unused]] int tq) { return ${off.expression}; }`,
      `constexpr int kN = ${m.tokens.length};`,
      '}',
    );
  });
  parts.push('int main() {');
  masks.forEach((_, i) => {
    parts.push(
      `  std::printf("mask ${i}\\n");`,
      `  for (int tq = 0; tq < m${i}::kN; ++tq) {`,
      `    for (int tk = 0; tk < m${i}::kN; ++tk) std::putchar(m${i}::visible(tq, tk) ? '1' : '0');`,
      `    std::printf(" %d\\n", m${i}::offset(tq));`,
      '  }',
    );
  });
  parts.push('  return 0;', '}', '');
  return parts.join('\n');
}

describe.skipIf(!hasGxx)('C++ predicate and offsets compiled with g++', () => {
  let dir = '';
  let output = new Map<number, string[]>();

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tidarc-mask-cpp-'));
    const src = join(dir, 'masks.cpp'), exe = join(dir, 'masks');
    writeFileSync(src, harness(MASKS));
    // -Wparentheses (in -Wall) would flag any precedence the renderer left implicit.
    execFileSync('g++', ['-std=c++17', '-O1', '-Wall', '-Wextra', '-Werror', '-o', exe, src], { stdio: 'pipe' });
    const lines = execFileSync(exe, { encoding: 'utf8', maxBuffer: 64 << 20 }).split('\n');
    output = new Map();
    let current = -1;
    for (const line of lines) {
      const header = /^mask (\d+)$/.exec(line);
      if (header) {
        current = Number(header[1]);
        output.set(current, []);
      } else if (line !== '') {
        output.get(current)!.push(line);
      }
    }
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test.each(MASKS.map((m, i) => [name(m), i] as const))('%s: matrix and offsets match the IR', (_label, i) => {
    const m = MASKS[i]!;
    const n = m.tokens.length;
    const step = stepVisibility(m);
    const rows = output.get(i)!;
    expect(rows).toHaveLength(n);
    const expected = m.tokens.map((t, q) => `${Array.from(step.subarray(q * n, q * n + n)).join('')} ${t.offset}`);
    expect(rows).toEqual(expected);
  });
});

describe('rendered C++ (no compiler needed)', () => {
  test('closed forms are pure arithmetic with literal parameters and no declarations', () => {
    const d = renderStepPredicateCpp(tidarDecode(16));
    expect(d.declarations).toBe('');
    expect(d.expression).toBe('((tq < 16) ? (tk <= tq) : ((tk < (tq / 16)) || ((tk / 16) == (tq / 16))))');
    expect(renderOffsetCpp(tidarDecode(16)).expression).toBe('((tq / 16) + (tq % 16))');
    expect(renderStepPredicateCpp(causal(4)).expression).toBe('(tk <= tq)');
    expect(renderStepPredicateCpp(blockDiffusion(4)).expression).toBe('(true)');
    expect(renderOffsetCpp(causal(4)).expression).toBe('(tq)');
    expect(renderOffsetCpp(tidarTrain(6, 3)).expression).toBe('(tq % 6)');
    for (const m of MASKS.filter((x) => x.kind !== 'tree')) {
      expect(renderStepPredicateCpp(m).expression).not.toMatch(/\[/);
    }
  });

  test('every expression is wrapped in one outer pair of parentheses', () => {
    for (const m of MASKS) {
      for (const e of [renderStepPredicateCpp(m).expression, renderOffsetCpp(m).expression]) {
        let depth = 0, closedEarly = false;
        [...e].forEach((c, i) => {
          depth += c === '(' ? 1 : c === ')' ? -1 : 0;
          if (depth === 0 && i < e.length - 1) closedEarly = true;
        });
        expect(e.startsWith('(') && depth === 0 && !closedEarly, e).toBe(true);
      }
    }
  });

  test('trees use a kTreeVisible bitset table, one row of uint64 words per node', () => {
    const t = renderStepPredicateCpp(tree([-1, 0, 0, 1, -1]));
    expect(t.declarations).toMatch(/static constexpr uint64_t kTreeVisible_5_[0-9a-f]{8}\[5\]\[1\] = \{/);
    expect(t.declarations).toContain('{0x000000000000000bull},  // node 3');
    expect(t.expression).toMatch(/^\(\(\(kTreeVisible_5_[0-9a-f]{8}\[tq\]\[\(tk\) >> 6\] >> \(\(tk\) & 63\)\) & 1ull\) != 0ull\)$/);
    expect(renderStepPredicateCpp(tree([-1, 0, 0, 1, -1]))).toEqual(t); // deterministic
    expect(renderStepPredicateCpp(tree([-1, 0, 1])).expression).not.toBe(t.expression);
    expect(renderOffsetCpp(tree([-1, 0, 0, 1, -1])).declarations).toContain('0, 1, 1, 2, 0,');
  });

  test('masks past the exhaustive-check size use the sampled self-check and still render', () => {
    expect(renderStepPredicateCpp(tidarPrefill(3000, 8)).expression).toBe('((tk <= tq) || (tq >= 3000))');
    expect(renderStepPredicateCpp(tidarDecode(64)).expression).toBe('((tq < 64) ? (tk <= tq) : ((tk < (tq / 64)) || ((tk / 64) == (tq / 64))))');
  });

  test('a spec whose tokens disagree with its kind is refused, not rendered', () => {
    const good = tidarDecode(2);
    const lying: MaskSpec = { ...good, tokens: good.tokens.map((t, i) => (i === 3 ? { ...t, ancestors: [0, 1] } : t)) };
    expect(() => renderStepPredicateCpp(lying)).toThrow(TidarcError);
    expect(() => renderStepPredicateCpp(lying)).toThrow(/tokens\[3\]/);
    const shifted: MaskSpec = { ...good, tokens: good.tokens.map((t) => ({ ...t, offset: t.offset + 1 })) };
    expect(() => renderOffsetCpp(shifted)).toThrow(/position offset/);
    expect(() => renderStepPredicateCpp({ ...good, params: {} })).toThrow(/params.draft/);
  });
});
