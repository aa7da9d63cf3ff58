// Needs: nothing (runs the CLI in-process with captured output).
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchDir } from '../helpers/scratch.js';
import { modelNameFromPath } from '../../src/ir/hf-config.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { expectOneErrorLine, runTidarc } from '../helpers/cli.js';


const run = runTidarc;


const QWEN3 = 'examples/hf/qwen3-8b/config.json';
const LLAMA = 'examples/hf/llama-3.2-1b/config.json';

describe('tidarc import-hf', () => {
  it('prints the bundled example byte for byte', async () => {
    const r = await run('import-hf', QWEN3, '--draft', '4,8,16');
    expect(r).toEqual({ code: 0, stdout: await readFile('examples/qwen3-8b.json', 'utf8'), stderr: '' });
  });

  it('accepts a single draft length, spaces in the list, --mask-token, --name and --dtype', async () => {
    const r = await run('import-hf', LLAMA, '--draft', '8, 4', '--mask-token', '128002', '--name', 'llama-1b', '--dtype', 'fp16');
    expect(r.code).toBe(0);
    expect(parseModelJson(r.stdout)).toMatchObject({ name: 'llama-1b', draftLengths: [4, 8], maskTokenId: 128002, dtype: 'fp16' });
    expect(r.stdout.endsWith('}\n')).toBe(true);
  });

  it('a checkpoint directory: the mask token of its config.json\'s "tidar" object (it asked for --mask-token); --mask-token still wins', async () => {
    const own = await run('import-hf', 'models/tidar-tiny-code');
    expect(own.stderr).toBe('');
    expect(own.code).toBe(0);
    expect(parseModelJson(own.stdout)).toMatchObject({ name: 'tidar-tiny-code', vocabSize: 260, maskTokenId: 259 });
    const given = await run('import-hf', 'models/tidar-tiny-code/config.json', '--mask-token', '258');
    expect(given.code, given.stderr).toBe(0);
    expect(parseModelJson(given.stdout).maskTokenId).toBe(258);
  });

  it('a checkpoint\'s "tidar" object also gives the draft lengths and the name (it wrote [16] and the directory\'s name); --draft and --name still win', async () => {
    const own = parseModelJson((await run('import-hf', 'models/tidar-tiny-code')).stdout);
    expect([own.draftLengths, own.name]).toEqual([[4, 8], 'tidar-tiny-code']);
    const dir = await scratchDir('tidarc-import-tidar-');
    const config = JSON.parse(await readFile('models/tidar-tiny-code/config.json', 'utf8')) as { tidar: Record<string, unknown> };
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, tidar: { ...config.tidar, name: 'from-tidar', draft_lengths: [2, 3] } }));
    expect(parseModelJson((await run('import-hf', dir)).stdout)).toMatchObject({ name: 'from-tidar', draftLengths: [2, 3] });
    expect(parseModelJson((await run('import-hf', dir, '--draft', '4', '--name', 'mine')).stdout)).toMatchObject({ name: 'mine', draftLengths: [4] });
    // Without a "tidar" name the directory's own name, as before.
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, tidar: { mask_token_id: 259 } }));
    expect(parseModelJson((await run('import-hf', dir)).stdout)).toMatchObject({ name: modelNameFromPath(join(dir, 'config.json')), draftLengths: [16] });
    // A bad value is named by its key in the file.
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, tidar: { ...config.tidar, draft_lengths: [0] } }));
    expect((await run('import-hf', dir)).stderr).toMatch(/tidar\.draft_lengths\[0\]/);
  });

  it('--out writes the file atomically and prints one line', async () => {
    const dir = await scratchDir('tidarc-import-');
    const out = join(dir, 'qwen3-8b.json');
    await writeFile(out, 'stale');
    const r = await run('import-hf', QWEN3, '--draft', '16,8,4', '--out', out);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`wrote ${out}: qwen3-8b (qwen3, 36 layers, 32/8 heads x 128, bf16, draft lengths 4,8,16)\n`);
    expect(await readFile(out, 'utf8')).toBe(await readFile('examples/qwen3-8b.json', 'utf8'));
    expect(await readdir(dir)).toEqual(['qwen3-8b.json']); // no temp file left behind
  });

  it('--out refuses a value that looks like an option (`--out --json` wrote a file named --json)', async () => {
    const dir = await scratchDir('tidarc-import-');
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      expectOneErrorLine(await run('import-hf', join(cwd, QWEN3), '--out', '--json'), '--out = --json', 'looks like an option');
      expect(await readdir(dir)).toEqual([]);
    } finally {
      process.chdir(cwd);
    }
  });

  it('--help explains every option with an example', async () => {
    const r = await run('import-hf', '--help');
    expect(r.code).toBe(0);
    for (const flag of ['--draft', '--mask-token', '--name', '--dtype', '--out']) expect(r.stdout).toContain(flag);
    expect(r.stdout).toContain('Examples:');
    expect(r.stdout).toContain('--draft 4,8,16');
  });

  it.each([
    ['missing file', ['examples/hf/nope/config.json'], ['examples/hf/nope/config.json: no such file']],
    ['llama without a mask token', [LLAMA], ['missing mask token id', '(--mask-token); allowed: an integer from 0 to 128255']],
    ['mask token outside the vocabulary', [LLAMA, '--mask-token', '128256'], ['(--mask-token = 128256)', 'an integer from 0 to 128255']],
    ['mask token not a number', [LLAMA, '--mask-token', 'x'], ['(--mask-token = x)']],
    ['draft list malformed', [QWEN3, '--draft', '4;8'], ['(--draft = 4;8)', 'comma list']],
    ['draft length too long', [QWEN3, '--draft', '4,64'], ['(--draft = 64)', 'an integer from 1 to 32']],
    ['duplicate draft length', [QWEN3, '--draft', '4,4'], ['(--draft = 4)', 'distinct']],
    ['bad dtype', [QWEN3, '--dtype', 'fp32'], ['(--dtype = fp32)', 'one of bf16, fp16']],
    ['bad name', [QWEN3, '--name', 'my model'], ['(--name = "my model")']],
    ['output directory missing', [QWEN3, '--out', 'no/such/dir/model.json'], ['no/such/dir/model.json', 'directory does not exist']],
    ['a tidarc model.json instead of a config.json', ['examples/tiny.json'], ['examples/tiny.json: not a Hugging Face config.json', 'model_type']],
  ])('%s: exit 1 and one error line', async (_what, args, pieces) => {
    expectOneErrorLine(await run('import-hf', ...args), ...pieces);
  });

  it('malformed JSON names the file', async () => {
    const dir = await scratchDir('tidarc-import-');
    const path = join(dir, 'config.json');
    await writeFile(path, '{"model_type": "qwen3",,}');
    expectOneErrorLine(await run('import-hf', path), `${path}: malformed JSON`);
  });

  it('yarn RoPE scaling is refused naming rope_scaling', async () => {
    const dir = await scratchDir('tidarc-import-');
    const path = join(dir, 'config.json');
    const config = JSON.parse(await readFile(QWEN3, 'utf8')) as Record<string, unknown>;
    await writeFile(path, JSON.stringify({ ...config, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } }));
    expectOneErrorLine(await run('import-hf', path), 'rope_scaling.rope_type = "yarn"', 'llama3');
  });
});
