/**
 * Writes one file so that a reader never sees half of it and a failure leaves none:
 * a temp file in the same directory, then rename. Errors name the path and, when the
 * path came from an option, that option.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { TidarcError } from '../errors.js';
import { errnoCode, fsReason } from './fs-error.js';
import { removeOnInterrupt, settled } from './interrupt.js';

export async function writeTextFileAtomic(path: string, text: string, option?: string): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  removeOnInterrupt(temp);
  try {
    await writeFile(temp, text, { encoding: 'utf8', flag: 'wx' });
    await rename(temp, path);
    settled(temp);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);  // ENOTDIR where a part of the path is a file: the write's error is the one to report
    settled(temp);
    throw outputWriteError(err, path, option);
  }
}

/**
 * An output file that cannot be written, in one wording for the refusal before the work
 * (cli/options.ts checkWritableFileOption) and the failed write after it (here and
 * atomic-write-binary.ts): why, and the path as `option`'s value (with what is allowed) or,
 * with no option, as the source.
 */
export function outputFileError(why: string, path: string, option?: string): TidarcError {
  return new TidarcError('invalid-argument', `cannot write the output file (${why})`, {
    ...(option ? { field: option, value: path, allowed: 'a file path in an existing, writable directory' } : { source: path }),
  });
}

/** outputFileError for a write that failed with `err` (ENOENT: the directory is missing). */
export function outputWriteError(err: unknown, path: string, option?: string): TidarcError {
  return outputFileError(errnoCode(err) === 'ENOENT' ? 'the directory does not exist' : fsReason(err), path, option);
}
