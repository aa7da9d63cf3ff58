/**
 * Issue 17 item 8, the README: the compile section names every kind of variant compile writes
 * (it listed tidar_k<K> and ar only, not block_k<K> and prefill_c64), and the quick start shows
 * TiDAR's tokens/s on the CPU beside AR's, in run's current summary format, and says where
 * TiDAR pays off (it showed TiDAR's figure alone). Needs nothing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { generateModel } from '../../src/codegen/generate.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';

const repo = join(import.meta.dirname, '..', '..');
const readme = readFileSync(join(repo, 'README.md'), 'utf8');
/** From a heading to the next heading. */
function section(heading: string): string {
  const start = readme.indexOf(heading);
  expect(start, heading).toBeGreaterThanOrEqual(0);
  const next = /\n#{2,3} /.exec(readme.slice(start + heading.length));
  return readme.slice(start, next ? start + heading.length + next.index : undefined);
}

describe('README', () => {
  test('the compile section names every kind of variant the bundled model compiles to', async () => {
    const spec = await loadModelSpecFile(join(repo, 'examples', 'tiny.json'));
    const kinds = [...new Set(generateModel(spec, { arches: ['sm_80'] }).manifest.variants.map((v) => v.name.replace(/_k\d+$/, '_k<K>')))];
    expect(kinds.sort()).toEqual(['ar', 'block_k<K>', 'prefill_c64', 'tidar_k<K>']);
    const compile = section('### `tidarc compile');
    for (const kind of kinds) expect(compile).toContain(`\`${kind}\``);
  });

  test("the quick start shows TiDAR's and AR's CPU figures in run's summary format, and where TiDAR pays off", () => {
    const quick = section('## Set-up');
    expect(quick).toContain('--mode ar --max-tokens 120');
    const tidar = /^\[tidar k=4, cpu\] 120 tokens in \d+ forwards \([\d.]+ tokens\/forward\), ([\d.]+) tokens\/s; tokens per step: 1 in \d+ steps(, \d in \d+)+$/m.exec(quick);
    const ar = /^\[ar, cpu\] 120 tokens in 120 forwards \(1\.00 tokens\/forward\), ([\d.]+) tokens\/s$/m.exec(quick);
    expect(tidar, 'the TiDAR summary line').not.toBeNull();
    expect(ar, 'the AR summary line').not.toBeNull();
    // The ratio the text states is the one the two lines show.
    const ratio = Number(tidar![1]) / Number(ar![1]);
    expect(quick).toContain(`${ratio.toFixed(2)}x above`);
    expect(quick).toMatch(/TiDAR pays off on a GPU/);
  });
});
