// Every command that takes a model reads it one way: a checkpoint directory, its config.json, or a
// model.json (run and bench-step need weights: the directory or its config.json). Needs g++.
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { formatModelSpecJson } from '../../src/ir/model-validate.js';
import { expectOneErrorLine, runTidarc } from '../helpers/cli.js';
import { smallSpec, writeRandomModel } from '../helpers/random-model.js';

const cxx = await findCxx();
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-forms-'));
const savedCache = process.env['TIDARC_CACHE'];
let forms: { dir: string; config: string; modelJson: string };

beforeAll(async () => {
  // A byte vocabulary has no default mask token: only config.json's "tidar" object names it.
  const spec = smallSpec('forms', [2], { layers: 1 });
  const dir = await writeRandomModel(scratch, spec, 11);
  const modelJson = join(scratch, 'forms.json');
  writeFileSync(modelJson, formatModelSpecJson(spec));
  forms = { dir, config: join(dir, 'config.json'), modelJson };
  process.env['TIDARC_CACHE'] = join(scratch, 'cache');
});
afterAll(() => {
  if (savedCache === undefined) delete process.env['TIDARC_CACHE'];
  else process.env['TIDARC_CACHE'] = savedCache;
  rmSync(scratch, { recursive: true, force: true });
});

const WEIGHTLESS = 'a model.json describes a model without weights; this command runs one';

test('compile: the three forms compile one model (the same input key)', async () => {
  const keys = [];
  for (const [name, path] of Object.entries(forms)) {
    const out = join(scratch, `compiled-${name}`);
    const r = await runTidarc('compile', path, '--no-build', '--json', '--out', out);
    expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { inputKey: string; model: { name: string; maskTokenId: number } };
    expect(manifest.model).toMatchObject({ name: 'forms', maskTokenId: 259 });
    keys.push(manifest.inputKey);
  }
  expect(new Set(keys).size).toBe(1);
});

describe.skipIf(!cxx.found)('commands that compile and run kernels (needs g++)', () => {
  test('run and bench-step: the directory and its config.json run the same model; a model.json is one error', { timeout: 300_000 }, async () => {
    const tokens = [];
    for (const path of [forms.dir, forms.config]) {
      const r = await runTidarc('run', path, '--prompt', 'ab', '--max-tokens', '3', '--backend', 'cpu', '--threads', '1', '--json');
      expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
      tokens.push((JSON.parse(r.stdout) as { tokens: number[] }).tokens);
    }
    expect(tokens[0]).toHaveLength(3);
    expect(tokens[1]).toEqual(tokens[0]);
    expectOneErrorLine(await runTidarc('run', forms.modelJson, '--prompt', 'ab', '--backend', 'cpu'), WEIGHTLESS, `(model = ${forms.modelJson})`);
    for (const path of [forms.dir, forms.config]) {
      const r = await runTidarc('bench-step', path, '--prefix', '8', '--reps', '1', '--min-seconds', '0', '--warmup', '0', '--backend', 'cpu', '--threads', '1', '--json');
      expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
      expect(JSON.parse(r.stdout)).toMatchObject({ model: 'forms', prefix: 8 });
    }
    expectOneErrorLine(await runTidarc('bench-step', forms.modelJson, '--prefix', '8'), WEIGHTLESS);
    // One kernel cache entry: every form is the same model to the cache.
    expect(readdirSync(join(scratch, 'cache', 'kernels')).filter((n) => !n.endsWith('.lock'))).toEqual([expect.stringMatching(/^forms-cpu-/)]);
  });

  test('tune: the three forms tune one model (the second and third find every shape measured)', { timeout: 300_000 }, async () => {
    const db = join(scratch, 'tune.json');
    const summaries = [];
    for (const path of Object.values(forms)) {
      const r = await runTidarc('tune', path, '--prefix', '16', '--warps', '4', '--tile-n', '64', '--splits', '1', '--threads', '1', '--db', db);
      expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
      summaries.push(r.stdout.split('\n').find((l) => / shapes tuned, /.test(l)));
    }
    expect(summaries).toEqual([`2 shapes tuned, 0 already in ${db}`, `0 shapes tuned, 2 already in ${db}`, `0 shapes tuned, 2 already in ${db}`]);
  });
});
