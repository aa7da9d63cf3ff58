/**
 * The binary sibling of atomic-write.ts: a file written piece by piece (a multi-gigabyte
 * checkpoint need never sit in memory whole) into a temp file beside it, then renamed, so a
 * reader never sees half a file and a failure leaves none. Errors from the caller's writer
 * (a TidarcError about the data) pass through unchanged; file-system errors name the path.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { TidarcError } from '../errors.js';
import { outputWriteError } from './atomic-write.js';
import { removeOnInterrupt, settled } from './interrupt.js';

/** Appends bytes to the file being written; resolves when they reached the OS. */
export type AppendBytes = (bytes: Uint8Array) => Promise<void>;

/**
 * Creates `path` from what `body` appends, atomically; resolves to the number of bytes written.
 * `option` names the CLI option the path came from, for errors.
 */
export async function writeBinaryFileAtomic(path: string, body: (append: AppendBytes) => Promise<void>, option?: string): Promise<number> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  let written = 0;
  removeOnInterrupt(temp);
  try {
    const fh = await open(temp, 'wx');
    try {
      await body(async (bytes) => {
        let done = 0;
        while (done < bytes.byteLength) {
          const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done);
          done += bytesWritten;
        }
        written += bytes.byteLength;
      });
    } finally {
      await fh.close();
    }
    await rename(temp, path);
    settled(temp);
    return written;
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);  // ENOTDIR where a part of the path is a file: the write's error is the one to report
    settled(temp);
    if (err instanceof TidarcError) throw err;
    throw outputWriteError(err, path, option);
  }
}
