/**
 * The attention launch's grid (attention-grid.ts): one rule, spelled once for TypeScript, C (the
 * harnesses' tidarc_attention_args.h) and Python (the device check's tidarc_abi.py), and the split
 * counters it needs fit the array every host allocates (abi-fields.ts splitCounters).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ATTENTION_GRID_TEXT, attentionGrid } from '../../src/codegen/attention-grid.js';
import { attentionElements } from '../../src/codegen/abi-fields.js';

const CASES = [[1, 1, 1], [1, 8, 1], [2, 8, 1], [2, 8, 8], [17, 24, 5], [1, 1, 2], [12, 3, 64]] as const;
const python = spawnSync('python3', ['--version']).status === 0;

describe('the attention grid', () => {
  test('one split: (row tiles, batch x KV heads, 1); more: (G + 1, 1, S), exactly G S compute items and S merge-only CTAs', () => {
    expect(attentionGrid(2, 8, 1)).toEqual([2, 8, 1]);
    expect(attentionGrid(2, 8, 8)).toEqual([17, 1, 8]);
    for (const [rowTiles, planes, splits] of CASES.filter(([, , s]) => s > 1)) {
      const [x, y, z] = attentionGrid(rowTiles, planes, splits);
      expect(x * y * z).toBe(rowTiles * planes * splits + splits);
    }
  });

  test('the manifest\'s text, the C harnesses\' and the device check\'s Python compute the same grid', () => {
    const fromText = (rowTiles: number, batch: number, kvHeads: number, splits: number) =>
      ATTENTION_GRID_TEXT.map((e) => Function('rowTiles', 'batch', 'kvHeads', 'splits', `return ${e};`)(rowTiles, batch, kvHeads, splits) as number);
    for (const [rowTiles, planes, splits] of CASES) expect(fromText(rowTiles, planes, 1, splits)).toEqual(attentionGrid(rowTiles, planes, splits));
    if (!python) return;
    const script = `import sys; sys.path.insert(0, ${JSON.stringify(join(process.cwd(), 'scripts/device-check'))}); from tidarc_abi import attention_grid; print([list(attention_grid(*c)) for c in ${JSON.stringify(CASES.map(([r, p, s]) => [r, p, 1, s]))}])`;
    const r = spawnSync('python3', ['-c', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual(CASES.map(([r2, p, s]) => attentionGrid(r2, p, s)));
  });

  test('the split counters (splits x rows) hold the id counter and one count per row group, even at one row a group (AR without GQA)', () => {
    for (const [rowsPerGroup, rowTiles] of [[1, 1], [4, 1], [80, 2], [1088, 12]] as const) {
      for (const splits of [2, 3, 64]) {
        const dims = { batch: 3, n: rowsPerGroup, qHeads: 8, kvHeads: 8, headDim: 64, cacheCapacity: 1, numSplits: splits };
        expect(attentionElements('splitCounters', dims)).toBeGreaterThanOrEqual(1 + rowTiles * dims.batch * dims.kvHeads);
      }
    }
  });
});
