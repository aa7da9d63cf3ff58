/** `tidarc run` as a user runs it: streaming, the --json contract, and one clear error for bad input. */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { smallSpec, writeRandomModel } from '../helpers/random-model.js';
import { runTidarc } from '../helpers/cli.js';
import { readSafetensors, serializeSafetensors, type Tensor } from '../../src/model/safetensors.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-cli-run-'));
let dir: string;

const run = runTidarc;

/** Rewrites d/config.json through `edit`. */
function editConfig(d: string, edit: (cfg: Record<string, unknown>) => void): void {
  const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
  edit(cfg);
  writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
}

/** Rewrites d/model.safetensors with one tensor's 16-bit words replaced by `fill`. */
async function editTensor(d: string, name: string, fill: (bits: Uint16Array) => void): Promise<void> {
  const file = await readSafetensors(join(d, 'model.safetensors'));
  const tensors: Record<string, Tensor> = {};
  for (const n of file.names()) tensors[n] = file.tensor(n);
  const bits = tensors[name]!.data.slice() as Uint16Array;
  fill(bits);
  tensors[name] = { ...tensors[name]!, data: bits };
  writeFileSync(join(d, 'model.safetensors'), serializeSafetensors(tensors, file.metadata));
}

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
    // The cpu backend has no step graphs: --no-graphs is accepted and changes nothing.
    const ar = await run('run', dir, '--prompt', 'abc', '--max-tokens', '25', '--mode', 'ar', '--ignore-eos', '--no-graphs');
    expect(tidar.code).toBe(0);
    expect(ar.code).toBe(0);
    expect(tidar.stdout).toBe(ar.stdout);
    expect(tidar.stderr).toMatch(/\[tidar k=4, cpu\] \d+ tokens in \d+ forwards/);
  }, 120_000);

  test('the text on stdout ends with one newline (--json: one JSON line); the summary on stderr starts its own line', async () => {
    const args = ['run', dir, '--prompt', 'abc', '--max-tokens', '12', '--ignore-eos', '--draft', '2'];
    const [text, json] = [await run(...args), await run(...args, '--json')];
    expect([text.code, json.code], text.stderr + json.stderr).toEqual([0, 0]);
    const { text: generated } = JSON.parse(json.stdout) as { text: string };
    // A greedy text of 12 tokens that does not end with a newline: the one the CLI adds is what is under test.
    expect(generated.length).toBeGreaterThan(0);
    expect(generated.endsWith('\n')).toBe(false);
    expect(text.stdout).toBe(`${generated}\n`);
    expect(json.stdout).toBe(`${JSON.stringify(JSON.parse(json.stdout))}\n`);
    expect(text.stderr).toMatch(/(^|[^\n]\n)\[tidar k=2, cpu\] 12 tokens in \d+ forwards[^\n]*\n$/);
  }, 120_000);

  test('--top-k 1 keeps only the most likely token: sampling at any temperature gives the greedy text', async () => {
    const greedy = await run('run', dir, '--prompt', 'abc', '--max-tokens', '20', '--ignore-eos', '--draft', '2');
    const topK1 = await run('run', dir, '--prompt', 'abc', '--max-tokens', '20', '--ignore-eos', '--draft', '2', '--temperature', '5', '--top-k', '1', '--seed', '3');
    // Without top-k the same hot sampling wanders off the greedy text (a random model's flat logits).
    const hot = await run('run', dir, '--prompt', 'abc', '--max-tokens', '20', '--ignore-eos', '--draft', '2', '--temperature', '5', '--seed', '3');
    expect(greedy.code).toBe(0);
    expect(topK1.code, topK1.stderr).toBe(0);
    expect(topK1.stdout).toBe(greedy.stdout);
    expect(hot.stdout).not.toBe(greedy.stdout);
  }, 120_000);
});

describe('tidarc run errors: exit 1, one line, no crash', () => {
  const cases: [string, () => string[], RegExp][] = [
    ['missing --prompt', () => ['run', dir], /a prompt is required \(--prompt\)/],
    ['unknown backend', () => ['run', dir, '--prompt', 'x', '--backend', 'tpu'], /unknown backend \(--backend = tpu\); allowed: auto, cpu, cuda/],
    ['cuda backend without a GPU', () => ['run', dir, '--prompt', 'x', '--backend', 'cuda'], /the cuda backend cannot run here: .*libcuda/],
    ['draft not compiled', () => ['run', dir, '--prompt', 'x', '--draft', '3'], /no kernels for this draft length \(--draft = 3\); allowed: .*2, 4/],
    ['prompt longer than the context', () => ['run', dir, '--prompt', 'y'.repeat(300)], /longer than the context/],
    ['bad temperature', () => ['run', dir, '--prompt', 'x', '--temperature', '-1'], /--temperature = -1/],
    ['negative top-k', () => ['run', dir, '--prompt', 'x', '--top-k', '-1'], /--top-k = -1/],
    ['fractional top-k', () => ['run', dir, '--prompt', 'x', '--top-k', '2.5'], /--top-k = 2\.5/],
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

test('a --draft without kernels is refused before anything compiles (it compiled every kernel for 20-36 s first)', async () => {
  const cache = join(root, 'cache-draft-check');
  process.env['TIDARC_CACHE'] = cache;
  try {
    const r = await run('run', dir, '--prompt', 'x', '--draft', '64', '--backend', 'cpu');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--draft = 64/);
    expect(existsSync(cache)).toBe(false);
  } finally {
    process.env['TIDARC_CACHE'] = join(root, 'cache');
  }
});

describe('tidarc run never reports garbage as success (issue 12): exit 1, one line, no tokens', () => {
  const refuse = async (argv: string[], message: RegExp): Promise<void> => {
    const r = await run(...argv);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/^tidarc: error: /);
    expect(r.stderr).toMatch(message);
  };

  test('NaN weights are refused at load, naming the tensor', { timeout: 120_000 }, async () => {
    const d = variantDir('nan', () => undefined);
    await editTensor(d, 'model.norm.weight', (w) => void (w[5] = 0x7fc0));
    await refuse(['run', d, '--prompt', 'x'], /tensor holds non-finite values: 1 of 128, the first at \[5\] is NaN \(tensor "model\.norm\.weight"\)/);
  });

  test('finite weights whose logits overflow stop the run at the step, instead of "accepting" every draft', { timeout: 120_000 }, async () => {
    // bf16 0x7f7f = 3.39e38, the largest finite bf16: the final norm's output overflows float32.
    const d = variantDir('overflow', () => undefined);
    await editTensor(d, 'model.norm.weight', (w) => void w.fill(0x7f7f));
    await refuse(['run', d, '--prompt', 'hello', '--max-tokens', '20', '--json'], /the model produced non-finite logits \(log-sum-exp (NaN|Infinity), row \d+\) in the prefill \(step 0\)/);
  });

  test('a config with fewer layers than the checkpoint names the unused tensors', { timeout: 120_000 }, async () => {
    const d = variantDir('fewer-layers', (dd) => editConfig(dd, (cfg) => void (cfg['num_hidden_layers'] = 1)));
    await refuse(['run', d, '--prompt', 'x'], /holds 11 tensors this config does not use \(model\.layers\.1\.input_layernorm\.weight, .* and 8 more\): the checkpoint has 2 layers, num_hidden_layers is 1/);
  });

  test.for([
    ['rope_theta', 1e-300, /rope_theta = 1e-300\); allowed: a number from 10 to 1e12/],
    ['rope_scaling', { rope_type: 'linear', factor: 1e-300 }, /rope_scaling\.factor = 1e-300\); allowed: a number from 1 to 1024/],
    ['rms_norm_eps', 1e-300, /rms_norm_eps = 1e-300\); allowed: a number from 1e-12 to 0\.1/],
  ] as const)('config %s = %j is refused', { timeout: 120_000 }, async ([key, value, message]) => {
    const d = variantDir(`cfg-${key}`, (dd) => editConfig(dd, (cfg) => void (cfg[key] = value)));
    await refuse(['run', d, '--prompt', 'x'], message);
  });

  test('a mask token on a byte id is refused', { timeout: 120_000 }, async () => {
    const d = variantDir('mask-byte', (dd) => editConfig(dd, (cfg) => void ((cfg['tidar'] as Record<string, unknown>)['mask_token_id'] = 0)));
    await refuse(['run', d, '--prompt', 'x'], /the mask token id is already the byte 0x00 of the byte-level tokenizer \(tidar\.mask_token_id = 0\)/);
  });

  test('--max-tokens is bounded by the family default when the config has no max_position_embeddings', { timeout: 120_000 }, async () => {
    const d = variantDir('no-context', (dd) => editConfig(dd, (cfg) => void delete cfg['max_position_embeddings']));
    // Refused before the kernels compile: this takes well under a second.
    await refuse(['run', d, '--prompt', 'x', '--max-tokens', '40000'], /more tokens than the context holds, even after a 1-token prompt \(--max-tokens = 40000\); allowed: at most 32768 positions \(the qwen3 default: the config sets no max_position_embeddings\)/);
  });
});
