// Needs: nothing (a temp directory; mkfifo, and /dev/zero and /proc where the host has them).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import { JSON_FILE_KINDS, readJsonFile, readJsonFileSync } from '../../src/fs/read-json.js';
import { MAX_JSON_DEPTH, checkJsonDepth } from '../../src/util/json.js';
import { readRegularFile, readRegularFileSync } from '../../src/fs/read-regular-file.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { readSafetensors, readShardedSafetensors } from '../../src/model/safetensors.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { readManifest } from '../../src/runtime/kernel-library.js';
import { readTuneDb } from '../../src/tune/db.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-readjson-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function dir(): string {
  const d = join(root, `d${n++}`);
  mkdirSync(d);
  return d;
}

/** A FIFO nobody writes to: opening it for reading the ordinary way waits forever. */
function fifo(path: string): string {
  execFileSync('mkfifo', [path]);
  return path;
}

const hasFifo = (() => {
  try {
    fifo(join(root, 'probe'));
    return true;
  } catch {
    return false;
  }
})();
const hasDevZero = existsSync('/dev/zero');

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<TidarcError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(TidarcError);
    return err as TidarcError;
  }
  throw new Error('expected a TidarcError');
}

describe('readRegularFile', () => {
  it('reads a file of exactly the cap and refuses one byte more, naming the path, size and kind', async () => {
    const d = dir();
    writeFileSync(join(d, 'ok'), 'x'.repeat(100));
    writeFileSync(join(d, 'big'), 'x'.repeat(101));
    expect((await readRegularFile(join(d, 'ok'), 100, 'a thing')).toString()).toBe('x'.repeat(100));
    expect(readRegularFileSync(join(d, 'ok'), 100, 'a thing').byteLength).toBe(100);
    const e = await rejection(readRegularFile(join(d, 'big'), 100, 'a thing'));
    expect(e.message).toBe(`${join(d, 'big')}: file too large for a thing (size = more than 100 bytes); allowed: at most 100 bytes`);
    expect(() => readRegularFileSync(join(d, 'big'), 100, 'a thing')).toThrow(e.message);
  });

  it.runIf(existsSync('/proc/self/maps'))('caps by bytes read, not by stat size (a /proc file says 0 and has more)', async () => {
    const e = await rejection(readRegularFile('/proc/self/maps', 16, 'a thing'));
    expect(e.message).toContain('file too large for a thing');
  });

  it('refuses a directory and names a missing file', async () => {
    const d = dir();
    expect((await rejection(readRegularFile(d, 10, 'x'))).message).toBe(`${d}: not a regular file (a directory); allowed: a regular file`);
    expect((await rejection(readRegularFile(join(d, 'nope'), 10, 'x'))).message).toBe(`${join(d, 'nope')}: no such file`);
    expect(() => readRegularFileSync(d, 10, 'x')).toThrow('not a regular file (a directory)');
  });
});

describe('checkJsonDepth', () => {
  it(`accepts ${MAX_JSON_DEPTH} levels, refuses one more, and ignores brackets inside strings`, () => {
    expect(() => checkJsonDepth('['.repeat(MAX_JSON_DEPTH) + ']'.repeat(MAX_JSON_DEPTH), 'f')).not.toThrow();
    expect(() => checkJsonDepth(`{"a":${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}}`, 'f')).toThrow(
      `f: JSON nested too deeply (depth = more than ${MAX_JSON_DEPTH}); allowed: at most ${MAX_JSON_DEPTH} levels of [ and {`,
    );
    expect(() => checkJsonDepth(JSON.stringify({ s: '['.repeat(1000), t: 'a\\"[[[[' }), 'f')).not.toThrow();
  });
});

describe('readJsonFile', () => {
  it('names the file for 100,000 nested brackets (was "Maximum call stack size exceeded" from whoever quoted the value)', async () => {
    const path = join(dir(), 'config.json');
    writeFileSync(path, '['.repeat(100_000) + ']'.repeat(100_000));
    expect((await rejection(readJsonFile(path))).message).toMatch(new RegExp(`^${path}: JSON nested too deeply`));
    expect((await rejection(loadModelSpecFile(path))).message).toMatch(/JSON nested too deeply/);
  });

  it('caps each kind of file at its size', async () => {
    const path = join(dir(), 'config.json');
    writeFileSync(path, `[${' '.repeat(JSON_FILE_KINDS.config.maxBytes)}]`);
    expect((await rejection(readJsonFile(path))).message).toBe(`${path}: file too large for a model config (size = more than 4194304 bytes); allowed: at most 4 MiB`);
    expect(await readJsonFile(path, 'tokenizer')).toEqual([]);
  });
});

/**
 * Every reader of a file a user names, each given a FIFO, /dev/zero and deep nesting where it
 * expects its JSON. Before: the FIFO blocked forever, /dev/zero read 0.6-1.1 GB, the nesting
 * overflowed the stack without naming the file.
 */
describe('every reader of user files', () => {
  const readers: [string, string, (d: string) => Promise<unknown> | unknown][] = [
    ['model spec', 'model.json', (d) => loadModelSpecFile(join(d, 'model.json'))],
    ['checkpoint config', 'config.json', (d) => loadCheckpoint(d)],
    ['tokenizer', 'tokenizer.json', (d) => loadTokenizer(d)],
    ['safetensors index', 'model.safetensors.index.json', (d) => readShardedSafetensors(d)],
    ['manifest', 'manifest.json', (d) => readManifest(d)],
    ['tuning database', 'tune.json', (d) => readTuneDb(join(d, 'tune.json'))],
    ['safetensors file', 'model.safetensors', (d) => readSafetensors(join(d, 'model.safetensors'))],
  ];

  it.runIf(hasFifo).each(readers)('%s: a FIFO is refused at once, naming the path', async (_, file, read) => {
    const d = dir();
    fifo(join(d, file));
    const e = await rejection(async () => read(d));
    expect(e.message).toBe(`${join(d, file)}: not a regular file (a FIFO); allowed: a regular file`);
  }, 5000);

  it.runIf(hasDevZero).each(readers)('%s: /dev/zero is refused without reading it', async (_, file, read) => {
    const d = dir();
    symlinkSync('/dev/zero', join(d, file));
    const e = await rejection(async () => read(d));
    expect(e.message).toBe(`${join(d, file)}: not a regular file (a character device); allowed: a regular file`);
  }, 5000);

  it.each(readers.filter(([, file]) => file.endsWith('.json')))('%s: deep nesting names the file', async (_, file, read) => {
    const d = dir();
    writeFileSync(join(d, file), `{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    const e = await rejection(async () => read(d));
    expect(e.message).toContain(join(d, file));
    expect(e.message).toContain('JSON nested too deeply');
  });

  it('readJsonFileSync refuses what readJsonFile refuses', () => {
    const d = dir();
    writeFileSync(join(d, 'x.json'), '['.repeat(100) + ']'.repeat(100));
    expect(() => readJsonFileSync(join(d, 'x.json'))).toThrow(`${join(d, 'x.json')}: JSON nested too deeply`);
  });
});
