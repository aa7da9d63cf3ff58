/**
 * `tidarc mask` end to end through the CLI edge: output formats, --out, and one-line errors.
 * Needs: nothing.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { denseMask, positions } from '../../src/ir/mask.js';
import { blockDiffusion, causal, tidarDecode, tidarPrefill, tidarTrain, tree } from '../../src/ir/mask-builders.js';
import { renderMaskText } from '../../src/ir/mask-render.js';
import { expectWellFormedXml } from '../helpers/well-formed-xml.js';
import { type Run, expectOneErrorLine, runTidarc } from '../helpers/cli.js';


const run = (...argv: string[]): Promise<Run> => runTidarc('mask', ...argv);

/** A chain-and-fork tree of n nodes as a --parents list: node i's parent is i - 1 or i - 2. */
const bigTree = (n: number): string => Array.from({ length: n }, (_, i) => (i === 0 ? -1 : i - 1 - (i % 2 && i > 1 ? 1 : 0))).join(',');

const scratch = mkdtempSync(join(tmpdir(), 'tidarc-cli-mask-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('json output follows the contract for every kind', () => {
  const cases = [
    { argv: ['--kind', 'tidar-decode', '--draft', '3', '--prefix', '3'], mask: tidarDecode(3), prefix: 3, params: { draft: 3 } },
    { argv: ['--kind', 'tidar-decode', '--draft', '2'], mask: tidarDecode(2), prefix: 0, params: { draft: 2 } },
    { argv: ['--kind', 'tidar-prefill', '--length', '5', '--draft', '2', '--prefix', '1'], mask: tidarPrefill(5, 2), prefix: 1, params: { length: 5, draft: 2 } },
    { argv: ['--kind', 'tidar-train', '--length', '6', '--block', '3'], mask: tidarTrain(6, 3), prefix: 0, params: { length: 6, block: 3 } },
    { argv: ['--kind', 'causal', '--length', '4', '--prefix', '2'], mask: causal(4), prefix: 2, params: { length: 4 } },
    { argv: ['--kind', 'block-diffusion', '--block', '4'], mask: blockDiffusion(4), prefix: 0, params: { block: 4 } },
    { argv: ['--kind', 'tree', '--parents', '-1,0,0,1,-1', '--prefix', '2'], mask: tree([-1, 0, 0, 1, -1]), prefix: 2, params: { parents: [-1, 0, 0, 1, -1] } },
  ];
  test.each(cases.map((c) => [c.argv.join(' '), c] as const))('%s', async (_name, c) => {
    const r = await run(...c.argv, '--format', 'json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as Record<string, unknown>;
    const n = c.mask.tokens.length;
    expect(j).toEqual({
      kind: c.mask.kind,
      ...c.params,
      prefix: c.prefix,
      rows: n,
      cols: c.prefix + n,
      positions: positions(c.mask, c.prefix),
      visible: denseMask(c.mask, c.prefix).map((row) => [...row]),
    });
  });
});

test('text is the default format', async () => {
  const r = await run('--kind', 'tidar-decode', '--draft', '3', '--prefix', '3');
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(renderMaskText(tidarDecode(3), 3));
});

test('svg output is well-formed and labelled', async () => {
  const r = await run('--kind', 'tidar-decode', '--draft', '4', '--prefix', '8', '--format', 'svg');
  expect(r.code).toBe(0);
  expect(r.stdout.startsWith('<svg')).toBe(true);
  expectWellFormedXml(r.stdout);
  for (const label of ['prefix', 'drafts', 'block 1', 'block 4']) expect(r.stdout).toContain(`>${label}</text>`);
});

describe('--out', () => {
  test('writes the file, prints one line, leaves no temp file', async () => {
    const file = join(scratch, 'k2.json');
    const r = await run('--kind', 'tidar-decode', '--draft', '2', '--format', 'json', '--out', file);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stdout).toContain(file);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ kind: 'tidar-decode', draft: 2, rows: 6, cols: 6 });
    expect(readdirSync(scratch).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  test('overwrites an existing file', async () => {
    const file = join(scratch, 'mask.svg');
    await run('--kind', 'causal', '--length', '2', '--format', 'svg', '--out', file);
    const r = await run('--kind', 'causal', '--length', '3', '--format', 'svg', '--out', file);
    expect(r.code).toBe(0);
    expect(readFileSync(file, 'utf8')).toContain('3 queries');
  });

  test('a value that looks like an option is refused, not taken as a file name (`--out --json` wrote a file named --json)', async () => {
    const cwd = process.cwd();
    process.chdir(scratch);
    try {
      const r = await runTidarc('mask', '--kind', 'causal', '--length', '2', '--out', '--json');
      expectOneErrorLine(r, '--out = --json', 'looks like an option');
      expect(existsSync(join(scratch, '--json'))).toBe(false);
    } finally {
      process.chdir(cwd);
    }
  });

  test('a missing directory is one error line', async () => {
    const r = await run('--kind', 'causal', '--length', '2', '--out', join(scratch, 'no', 'such', 'dir', 'x.txt'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^tidarc: error: .*--out.*\n$/);
  });
});

describe('bad options give exit code 1 and exactly one `tidarc: error:` line naming the option', () => {
  const cases: [string, string[], RegExp][] = [
    ['unknown kind', ['--kind', 'flash'], /--kind = flash.*tidar-decode/],
    ['missing kind', ['--draft', '3'], /--kind/],
    ['missing --draft', ['--kind', 'tidar-decode'], /--draft.*1 to 64/],
    ['--draft 0', ['--kind', 'tidar-decode', '--draft', '0'], /--draft = 0.*1 to 64/],
    ['--draft -3', ['--kind', 'tidar-decode', '--draft', '-3'], /--draft = -3.*1 to 64/],
    ['--draft 100000', ['--kind', 'tidar-decode', '--draft', '100000'], /--draft = 100000.*1 to 64/],
    ['--draft 1.5', ['--kind', 'tidar-decode', '--draft', '1.5'], /integer.*--draft = 1\.5/],
    ['--draft abc', ['--kind', 'tidar-decode', '--draft', 'abc'], /--draft = abc/],
    ['--prefix -1', ['--kind', 'tidar-decode', '--draft', '2', '--prefix', '-1'], /--prefix = -1/],
    ['missing --length', ['--kind', 'tidar-prefill', '--draft', '2'], /--length/],
    ['--block larger than --length', ['--kind', 'tidar-train', '--length', '4', '--block', '5'], /--block = 5.*1 to 4/],
    ['--prefix with tidar-train', ['--kind', 'tidar-train', '--length', '4', '--block', '2', '--prefix', '1'], /--prefix.*tidar-train/],
    ['--draft with causal', ['--kind', 'causal', '--length', '4', '--draft', '2'], /--draft.*causal/],
    ['--parents not integers', ['--kind', 'tree', '--parents', 'a,b'], /--parents = a,b/],
    ['--parents first not a root', ['--kind', 'tree', '--parents', '0,1'], /entry 0.*--parents = 0,1/],
    ['--parents forward reference', ['--kind', 'tree', '--parents', '-1,0,5'], /entry 2.*--parents = -1,0,5.*-1 to 1/],
    ['--parents empty', ['--kind', 'tree', '--parents', ''], /--parents/],
    ['unknown format', ['--kind', 'causal', '--length', '2', '--format', 'png'], /--format = png.*text, json, svg/],
    // Issue 12: an 8192-node tree wrote a 134 MB JSON using 1.2 GB; causal --length 8192 the same.
    ['a tree over the node limit', ['--kind', 'tree', `--parents=${bigTree(1025)}`, '--format', 'json'], /the tree has too many nodes \(--parents = 1025 nodes\); allowed: at most 1024 nodes/],
    ['an 8192-node tree', ['--kind', 'tree', `--parents=${bigTree(8192)}`], /--parents = 8192 nodes/],
    ['a json over the dense limit', ['--kind', 'causal', '--length', '8192', '--format', 'json'],
      /the causal mask is too large for --format json: 8192 queries x 8192 keys from --length 8192 \(--format = json\); allowed: at most 16777216 cells for text or json/],
    ['a text table over the dense limit', ['--kind', 'tidar-decode', '--draft', '64', '--prefix', '8'], /too large for --format text: 4160 queries x 4168 keys from --draft 64, --prefix 8 \(--format = text\)/],
    // Commander's own parse errors go through the same one-line rendering.
    ['unknown option', ['--kind', 'causal', '--length', '2', '--bogus'], /unknown option '--bogus'/],
    ['option without its value', ['--kind', 'causal', '--length'], /--length <s>.*missing/],
    ['misspelt option', ['--kind', 'causal', '--lenght', '2'], /unknown option '--lenght'.*Did you mean --length/],
  ];
  test.each(cases)('%s', async (_name, argv, pattern) => {
    const r = await run(...argv);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.endsWith('\n')).toBe(true);
    const lines = r.stderr.slice(0, -1).split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^tidarc: error: /);
    expect(lines[0]).toMatch(pattern);
  });
});

test('the largest tree renders in every format, json within the dense limit', async () => {
  const r = await run('--kind', 'tree', `--parents=${bigTree(1024)}`, '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as { rows: number; cols: number };
  expect([out.rows, out.cols]).toEqual([1024, 1024]);
  expect(r.stdout.length).toBeLessThan(4 << 20);
});

test('--help explains every option with examples', async () => {
  const r = await run('--help');
  expect(r.code).toBe(0);
  for (const opt of ['--kind', '--draft', '--prefix', '--length', '--block', '--parents', '--format', '--out']) expect(r.stdout).toContain(opt);
  for (const kind of ['tidar-decode', 'tidar-prefill', 'tidar-train', 'causal', 'block-diffusion', 'tree']) expect(r.stdout).toContain(kind);
  expect(r.stdout).toContain('Examples:');
  expect(r.stdout).toContain('$ tidarc mask --kind tree --parents=-1,0,0,1,-1');
});
