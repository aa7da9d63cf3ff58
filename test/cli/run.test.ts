/** `tidarc run` as a user runs it: streaming, the --json contract, and one clear error for bad input. */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { smallSpec, writeRandomModel } from '../helpers/random-model.js';
import { runTidarc } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-cli-run-'));
let dir: string;

const run = runTidarc;

function variantDir(name: string, edit: (d: string) => void): string {
  const d = join(root, name);
  mkdirSync(d);
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) copyFileSync(join(dir, f), join(d, f));
  edit(d);
  return d;
}

beforeAll(async () => {
  process.env['TIDARC_CACHE'] = join(root, 'cache');
  dir = await writeRandomModel(root, smallSpec('runcli', [2, 4], { maxPositionEmbeddings: 256 }), 3);
}, 300_000);

afterAll(() => {
  delete process.env['TIDARC_CACHE'];
  rmSync(root, { recursive: true, force: true });
});

describe('tidarc run', () => {
  test('--json prints the result contract', async () => {
    const r = await run('run', dir, '--prompt', 'hello', '--max-tokens', '30', '--draft', '2', '--json', '--threads', '2');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(res).sort()).toEqual(['acceptHistogram', 'backend', 'decodeMs', 'draft', 'mode', 'nfe', 'prefillMs', 'text', 'tokens', 'tokensPerNfe', 'tokensPerSecond'].sort());
    expect(res).toMatchObject({ backend: 'cpu', mode: 'tidar', draft: 2 });
    expect((res['tokens'] as number[]).length).toBeLessThanOrEqual(30);
    expect(res['tokensPerNfe'] as number).toBeGreaterThanOrEqual(1);
  }, 120_000);

  test('streams text on stdout and a summary on stderr; AR gives the same greedy text', async () => {
    const tidar = await run('run', dir, '--prompt', 'abc', '--max-tokens', '25', '--ignore-eos');
    const ar = await run('run', dir, '--prompt', 'abc', '--max-tokens', '25', '--mode', 'ar', '--ignore-eos');
    expect(tidar.code).toBe(0);
    expect(ar.code).toBe(0);
    expect(tidar.stdout).toBe(ar.stdout);
    expect(tidar.stderr).toMatch(/\[tidar k=4, cpu\] \d+ tokens in \d+ forwards/);
  }, 120_000);
});

describe('tidarc run errors: exit 1, one line, no crash', () => {
  const cases: [string, () => string[], RegExp][] = [
    ['missing --prompt', () => ['run', dir], /a prompt is required \(--prompt\)/],
    ['unknown backend', () => ['run', dir, '--prompt', 'x', '--backend', 'tpu'], /unknown backend \(--backend = tpu\); allowed: auto, cpu, cuda/],
    ['cuda backend without a GPU', () => ['run', dir, '--prompt', 'x', '--backend', 'cuda'], /the cuda backend cannot run here: .*libcuda/],
    ['draft not compiled', () => ['run', dir, '--prompt', 'x', '--draft', '3'], /no kernels for this draft length \(draft = 3\); allowed: 2, 4/],
    ['prompt longer than the context', () => ['run', dir, '--prompt', 'y'.repeat(300)], /longer than the context/],
    ['bad temperature', () => ['run', dir, '--prompt', 'x', '--temperature', '-1'], /--temperature = -1/],
    ['missing directory', () => ['run', join(root, 'nope'), '--prompt', 'x'], /nope/],
    ['truncated safetensors', () => [
      'run', variantDir('trunc', (d) => truncateSync(join(d, 'model.safetensors'), 1000)), '--prompt', 'x'], /model\.safetensors/],
    ['corrupt header', () => [
      'run', variantDir('corrupt', (d) => { const p = join(d, 'model.safetensors'); const b = readFileSync(p); b.write('{{{{', 8); writeFileSync(p, b); }), '--prompt', 'x'], /model\.safetensors/],
    ['missing tensor', () => [
      'run', variantDir('missing', (d) => {
        const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
        cfg.num_hidden_layers = 3;  // layer 2's tensors are not in the file
        writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
      }), '--prompt', 'x'], /model\.layers\.2\./],
    ['shape mismatch', () => [
      'run', variantDir('shape', (d) => {
        const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
        cfg.intermediate_size = 512;
        writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
      }), '--prompt', 'x'], /shape/],
  ];
  test.for(cases)('%s', { timeout: 120_000 }, async ([, argv, message]) => {
    const r = await run(...argv());
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^tidarc: error: /);
    expect(lines[0]).toMatch(message);
  });
});
