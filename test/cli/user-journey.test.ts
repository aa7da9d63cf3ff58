/**
 * Bad input a user types on the README's path: each is one `tidarc: error:` line naming what was
 * wrong and what is allowed, before any kernel is compiled.
 * Needs: nothing (every refusal comes before a compile or a model load).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { expectOneErrorLine, runTidarc, withoutDebugEnv } from '../helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'tidarc-cli-journey-'));
const CKPT = join(import.meta.dirname, '../../models/tidar-tiny-code');
const WEIGHTS = join(CKPT, 'model.safetensors');
withoutDebugEnv();
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('--tuned naming a database that is not there: the option as typed, and what is allowed', () => {
  const missing = join(scratch, 'no-such-tune.json');
  test.each([
    ['run', ['run', CKPT, '--prompt', 'def ', '--tuned', missing]],
    ['bench-step', ['bench-step', CKPT, '--prefix', '16', '--tuned', missing]],
    ['compile', ['compile', CKPT, '--no-build', '--out', join(scratch, 'c-tuned'), '--tuned', missing]],
  ])('%s', async (_name, argv) => {
    expectOneErrorLine(await runTidarc(...argv), 'no such tuning database', `(--tuned = ${missing})`, 'allowed: a database that tidarc tune or the device check wrote');
  });
});

describe('a directory without a config.json is not a checkpoint: said so, not "DIR/config.json: no such file"', () => {
  const dir = join(scratch, 'not-a-checkpoint');
  mkdirSync(dir);
  writeFileSync(join(dir, 'notes.txt'), 'a directory of the user\n');
  test.each([
    ['run', ['run', dir, '--prompt', 'hi']],
    ['bench-step', ['bench-step', dir, '--prefix', '16']],
    ['compile', ['compile', dir, '--no-build', '--out', join(scratch, 'c-dir')]],
    ['graph', ['graph', dir, '--step', 'ar']],
    ['tune', ['tune', dir, '--budget', '1', '--db', join(scratch, 'tune.json')]],
  ])('%s', async (_name, argv) => {
    expectOneErrorLine(await runTidarc(...argv), 'not a checkpoint directory: it has no config.json', `(model = ${dir})`, 'allowed: a checkpoint directory, its config.json, or a tidarc model.json');
  });
});

describe("the checkpoint's model.safetensors named as the model", () => {
  test.each([
    ['run', ['run', WEIGHTS, '--prompt', 'hi']],
    ['compile', ['compile', WEIGHTS, '--no-build', '--out', join(scratch, 'c-weights')]],
    ['graph', ['graph', WEIGHTS, '--step', 'ar']],
  ])('%s: a weights file, pointed to its directory', async (_name, argv) => {
    expectOneErrorLine(await runTidarc(...argv), "a weights file, not the model's description", `(model = ${WEIGHTS})`, 'allowed: the checkpoint directory that holds it');
  });

  test.each([
    ['init-model', ['init-model', WEIGHTS, '--seed', '1', '--out', join(scratch, 'im')], '<model>'],
    ['import-hf', ['import-hf', WEIGHTS], '<config.json>'],
  ])('%s: the same line, before the JSON parser quotes its binary header', async (_name, argv, argument) => {
    expectOneErrorLine(await runTidarc(...argv), "a weights file, not the model's description", `(${argument} = ${WEIGHTS})`, 'allowed: ');
  });
});

test('a binary file read as JSON: one printable line, its NUL and other control bytes written \\xNN', async () => {
  const binary = join(scratch, 'weights.bin');
  writeFileSync(binary, Buffer.from([0x0a, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x22, 0x1b, 0x5b, 0x33, 0x31, 0x6d]));
  for (const argv of [['init-model', binary, '--seed', '1', '--out', join(scratch, 'im-bin')], ['import-hf', binary], ['compile', binary, '--no-build', '--out', join(scratch, 'c-bin')]]) {
    const r = await runTidarc(...argv);
    expectOneErrorLine(r, `${binary}: malformed JSON`, '\\x1b');
    expect(r.stderr.trimEnd()).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  }
});

describe('init-model and import-hf take a checkpoint directory for its config.json, as compile, run and tune do', () => {
  test('import-hf DIR prints the model.json of DIR/config.json, named after DIR', async () => {
    const r = await runTidarc('import-hf', CKPT, '--mask-token', '259');  // import-hf reads no "tidar" object
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: 'tidar-tiny-code', family: 'qwen3', layers: 3, vocabSize: 260, maskTokenId: 259 });
  });

  test('init-model DIR writes a checkpoint of the same config', async () => {
    const out = join(scratch, 'from-dir');
    const r = await runTidarc('init-model', CKPT, '--seed', '1', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))).toMatchObject({ num_hidden_layers: 3, hidden_size: 128, tidar: { mask_token_id: 259 } });
  });

  test.each([
    ['init-model', ['--seed', '1', '--out', join(scratch, 'im-dir')], '<model>'],
    ['import-hf', [], '<config.json>'],
  ])('%s of a directory without config.json: one line', async (command, rest, argument) => {
    const dir = join(scratch, `no-config-${command}`);
    mkdirSync(dir);
    expectOneErrorLine(await runTidarc(command, dir, ...rest), 'not a checkpoint directory: it has no config.json', `(${argument} = ${dir})`, 'allowed: ');
  });
});

test("README: each command's heading names every option of the command", () => {
  // A user reads the heading as the command's synopsis (bench-step's text spoke of --seed, and
  // tune's of restricting the search, that their headings left out).
  const headings = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8').split('\n').filter((l) => l.startsWith('### `tidarc '));
  const missing: string[] = [];
  for (const command of buildProgram({ stdout: () => undefined, stderr: () => undefined }).commands) {
    const heading = headings.find((h) => h.startsWith(`### \`tidarc ${command.name()} `));
    if (heading === undefined) {
      missing.push(`${command.name()}: no heading`);
      continue;
    }
    for (const o of command.options) if (o.long !== undefined && !new RegExp(`[[ ]${o.long}[ \\]=]`).test(heading)) missing.push(`${command.name()} ${o.long}`);
  }
  expect(missing).toEqual([]);
});

describe('lists as typed: nothing dropped or misread without a word', () => {
  test('emulate --prefix with more lengths than --batch sequences is refused (was: the extra lengths dropped)', async () => {
    const dir = join(scratch, 'no-compile-needed');
    expectOneErrorLine(await runTidarc('emulate', dir, '--batch', '1', '--prefix', '37,100'), '2 prefix lengths for 1 sequence', '(--prefix = 37,100)', 'allowed: at most one length a sequence (--batch 1), or --batch 2');
    // The help's own example, under the default --batch 2.
    expectOneErrorLine(await runTidarc('emulate', dir, '--prefix', '17,0,130'), '3 prefix lengths for 2 sequences', 'or --batch 3');
  });

  test.each([
    ['compile --arch', ['compile', '--arch', 'sm_80,', '--no-build', '--out', join(scratch, 'c-arch')], '--arch = sm_80,', 'e.g. sm_80,sm_90'],
    ['compile --variant', ['compile', '--variant', 'tidar_k4,,ar', '--no-build', '--out', join(scratch, 'c-variant')], '--variant = tidar_k4,,ar', 'e.g. tidar_k4,ar'],
    ['emulate --variant', ['emulate', join(scratch, 'no-compile-needed'), '--variant', ',ar'], '--variant = ,ar', 'e.g. tidar_k4,ar'],
  ])('%s with an empty entry names the list as typed (was: "(--variant = )" and the like)', async (_name, argv, typed, example) => {
    expectOneErrorLine(await runTidarc(...argv), 'an empty name in the list', `(${typed})`, `allowed: names separated by single commas, ${example}`);
  });
});
