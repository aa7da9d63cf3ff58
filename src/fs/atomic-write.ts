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
    await rm(temp, { force: true });
    settled(temp);
    const why = errnoCode(err) === 'ENOENT' ? 'the directory does not exist' : fsReason(err);
    throw new TidarcError('invalid-argument', `cannot write the output file (${why})`, {
      ...(option ? { field: option, value: path, allowed: 'a file path in an existing, writable directory' } : { source: path }),
    });
  }
}
