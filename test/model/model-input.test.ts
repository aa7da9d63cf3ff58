// The one reader of a command's model argument: a checkpoint directory, its config.json, or a model.json.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import { formatModelSpecJson } from '../../src/ir/model-validate.js';
import { checkpointDirOf, readModelInput } from '../../src/model/model-input.js';

const ckpt = 'models/tidar-tiny-code';
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-model-input-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test("a checkpoint directory, its config.json and a model.json of the same model give one spec, the config's tidar object included", async () => {
  const dir = await readModelInput(ckpt);
  const config = await readModelInput(join(ckpt, 'config.json'));
  const modelJson = join(scratch, 'model.json');
  writeFileSync(modelJson, formatModelSpecJson(dir.spec));
  const fromJson = await readModelInput(modelJson);
  // config.json's "tidar" object: mask token 259 (a byte vocabulary has no default), drafts, name.
  expect(config.spec).toMatchObject({ name: 'tidar-tiny-code', maskTokenId: 259, draftLengths: [4, 8] });
  expect(config.spec).toEqual(dir.spec);
  expect(fromJson.spec).toEqual(dir.spec);
  expect([dir.kind, config.kind, fromJson.kind]).toEqual(['checkpoint', 'config', 'model-json']);
  expect([dir.checkpointDir, config.checkpointDir, fromJson.checkpointDir]).toEqual([ckpt, ckpt, undefined]);
});

test('commands that run a model take the directory or its config.json, and refuse a model.json in one line', async () => {
  expect(await checkpointDirOf(ckpt)).toBe(ckpt);
  expect(await checkpointDirOf(join(ckpt, 'config.json'))).toBe(ckpt);
  const modelJson = join(scratch, 'weightless.json');
  writeFileSync(modelJson, readFileSync('examples/tiny.json', 'utf8'));
  const err = await checkpointDirOf(modelJson, '<dir>').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(TidarcError);
  expect((err as Error).message).toBe(`a model.json describes a model without weights; this command runs one (<dir> = ${modelJson}); allowed: a checkpoint directory (config.json, model.safetensors, tokenizer.json) or its config.json; tidarc init-model writes one from a model.json`);
  await expect(readModelInput(join(scratch, 'absent'))).rejects.toThrow(`no such model file or directory (model = ${join(scratch, 'absent')}); allowed: a checkpoint directory, its config.json, or a tidarc model.json`);
});
