/**
 * One wording for an output file that cannot be written (src/fs/atomic-write.ts outputFileError):
 * the refusal before the work (cli/options.ts checkWritableFileOption, e.g. tune --db) and the
 * failed write after it (writeTextFileAtomic, writeBinaryFileAtomic) say the same thing for the
 * same path. Needs: nothing.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { checkWritableFileOption } from '../../src/cli/options.js';
import { TidarcError } from '../../src/errors.js';
import { writeBinaryFileAtomic } from '../../src/fs/atomic-write-binary.js';
import { writeTextFileAtomic } from '../../src/fs/atomic-write.js';
import { scratchDir } from '../helpers/scratch.js';

const caught = async (f: () => unknown): Promise<TidarcError> => {
  try {
    await f();
  } catch (e) {
    expect(e).toBeInstanceOf(TidarcError);
    return e as TidarcError;
  }
  throw new Error('expected a refusal');
};
const words = (e: TidarcError) => ({ message: e.message, code: e.code, details: e.details });

test('before the work and after it, a path that cannot be written is refused in the same words', async () => {
  const dir = await scratchDir('tidarc-output-error-');
  const missing = join(dir, 'no-such-dir', 'tune.json');
  const before = await caught(() => checkWritableFileOption('--db', missing));
  expect(before.message).toContain('cannot write the output file (the directory does not exist)');
  expect(before.details).toMatchObject({ field: '--db', value: missing, allowed: 'a file path in an existing, writable directory' });
  expect(words(await caught(() => writeTextFileAtomic(missing, '{}', '--db')))).toEqual(words(before));
  expect(words(await caught(() => writeBinaryFileAtomic(missing, async (append) => append(new Uint8Array(4)), '--db')))).toEqual(words(before));
  // A part of the path that is a file: the same reason both ways.
  await writeFile(join(dir, 'file'), 'x');
  const underFile = join(dir, 'file', 'tune.json');
  const check = await caught(() => checkWritableFileOption('--db', underFile));
  expect(check.message).toContain('(a part of the path is a file, not a directory)');
  // (The temp file's cleanup failed there with a bare ENOTDIR that hid this error.)
  expect(words(await caught(() => writeTextFileAtomic(underFile, '{}', '--db')))).toEqual(words(check));
  expect(words(await caught(() => writeBinaryFileAtomic(underFile, async (append) => append(new Uint8Array(4)), '--db')))).toEqual(words(check));
  // Without an option the path is the source.
  expect((await caught(() => writeTextFileAtomic(missing, '{}'))).details).toEqual({ source: missing });
});
