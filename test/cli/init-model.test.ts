// Needs: nothing (runs the CLI in-process with captured output).
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hfConfigOf, loadCheckpoint } from '../../src/model/checkpoint.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { decode } from '../../src/util/dtype.js';
import { expectOneErrorLine, runTidarc } from '../helpers/cli.js';


const run = runTidarc;


/** Temp directories of this file, removed when it is done (checkpoints are megabytes). */
const temps: string[] = [];
afterAll(() => Promise.all(temps.map((d) => rm(d, { recursive: true, force: true }))));

async function tempRoot(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tidarc-cli-init-'));
  temps.push(dir);
  return dir;
}

describe('tidarc init-model', () => {
  it('writes a checkpoint that loadCheckpoint reads, and says what it wrote', async () => {
    const out = join(await tempRoot(), 'tiny-random');
    const r = await run('init-model', 'examples/tiny.json', '--seed', '1', '--out', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`wrote ${out}: tiny (qwen3, 2 layers, bf16), 1,247,744 parameters, seed 1, std 0.02`);
    expect(lines.slice(1).map((l) => l.trim().split(/\s+/)[0])).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'total']);
    expect(lines[2]).toMatch(/model\.safetensors\s+2,49\d,\d{3} bytes \(2\.4 MiB\)/);
    const ckpt = await loadCheckpoint(out);
    expect(ckpt.spec).toEqual(await loadModelSpecFile('examples/tiny.json'));
  });

  it('same seed, byte-identical files', async () => {
    const root = await tempRoot();
    for (const d of ['a', 'b']) expect((await run('init-model', 'examples/tiny.json', '--seed', '42', '--std', '0.1', '--out', join(root, d))).code).toBe(0);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) {
      expect((await readFile(join(root, 'a', f))).equals(await readFile(join(root, 'b', f)))).toBe(true);
    }
  });

  it('--norm-std: norm weights 1 + N(0, X^2), said in the result line', async () => {
    const out = join(await tempRoot(), 'm');
    const r = await run('init-model', 'examples/tiny.json', '--seed', '1', '--norm-std', '0.25', '--out', out);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(`wrote ${out}: tiny (qwen3, 2 layers, bf16), 1,247,744 parameters, seed 1, std 0.02, norm weights 1 + N(0, 0.25^2)`);
    const norm = (await loadCheckpoint(out)).tensors.get('model.layers.0.self_attn.k_norm.weight')!;
    expect(Array.from(decode('bf16', norm.data as Uint16Array)).filter((v) => v !== 1).length).toBeGreaterThan(32);
  });

  it('takes an HF config.json with a "tidar" object', async () => {
    const root = await tempRoot();
    const spec = { ...(await loadModelSpecFile('examples/tiny.json')), name: 'hf-tiny', family: 'qwen2' as const, qkNorm: false, draftLengths: [8] };
    await writeFile(join(root, 'config.json'), JSON.stringify(hfConfigOf(spec)));
    const r = await run('init-model', join(root, 'config.json'), '--seed', '0', '--out', join(root, 'out'));
    expect(r.code).toBe(0);
    const ckpt = await loadCheckpoint(join(root, 'out'));
    expect(ckpt.spec).toEqual(spec);
    expect(ckpt.tensors.has('model.layers.1.self_attn.v_proj.bias')).toBe(true);
  });

  it('--help explains every option with an example', async () => {
    const r = await run('init-model', '--help');
    expect(r.code).toBe(0);
    for (const flag of ['--seed', '--out', '--std', '--norm-std', 'Examples:', '<|mask|>']) expect(r.stdout).toContain(flag);
  });

  it.each([
    ['missing model file', ['examples/nope.json', '--seed', '1'], ['examples/nope.json: no such file']],
    ['seed not a number', ['examples/tiny.json', '--seed', 'abc'], ['(--seed = abc)', 'an integer from 0 to 4294967295']],
    ['negative seed', ['examples/tiny.json', '--seed', '-1'], ['(--seed = -1)']],
    ['seed too large', ['examples/tiny.json', '--seed', '4294967296'], ['(--seed = 4294967296)']],
    ['bad std', ['examples/tiny.json', '--seed', '1', '--std', 'wide'], ['(--std = wide)', 'a number from 0 to 10']],
    ['std too large', ['examples/tiny.json', '--seed', '1', '--std', '11'], ['(--std = 11)']],
    ['bad norm std', ['examples/tiny.json', '--seed', '1', '--norm-std', '-0.2'], ['(--norm-std = -0.2)', 'a number from 0 to 10']],
    ['no seed', ['examples/tiny.json'], ["required option '--seed <n>' not specified"]],
    ['llama config without a mask token', ['examples/hf/llama-3.2-1b/config.json', '--seed', '1'], ['missing mask token id', 'tidar.mask_token_id']],
  ])('%s: exit 1 and one error line', async (_what, args, pieces) => {
    const out = join(await tempRoot(), 'm');
    expectOneErrorLine(await run('init-model', ...args, ...(args.includes('--out') ? [] : ['--out', out])), ...pieces);
  });

  it('no --out: commander names the option', async () => {
    expectOneErrorLine(await run('init-model', 'examples/tiny.json', '--seed', '1'), "required option '--out <dir>' not specified");
  });

  it('a foreign directory is not replaced', async () => {
    const root = await tempRoot();
    await writeFile(join(root, 'notes.txt'), 'keep me');
    expectOneErrorLine(await run('init-model', 'examples/tiny.json', '--seed', '1', '--out', root), `(--out = ${root})`, 'not empty and was not written by tidarc');
    expect(await readdir(root)).toEqual(['notes.txt']);
  });
});
