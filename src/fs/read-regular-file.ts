/**
 * Reading a file a user named, without trusting what is there. Only regular files are read: a
 * FIFO blocks a reader until some writer comes, a device may never end (/dev/zero) and a
 * directory is not data. Reads are capped: at most `maxBytes + 1` bytes come off the handle,
 * whatever stat says, because /dev/zero and /proc files report a size of 0 and a file may grow
 * while it is read.
 *
 * The check runs twice: stat on the path refuses a device before it is opened at all (opening
 * some devices has effects), fstat on the open handle closes the race with a file swapped in
 * between. The open is non-blocking, so a FIFO put there in that window is still refused rather
 * than waited on; for a regular file the flag changes nothing.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { TidarcError } from '../errors.js';

const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);
/** Reads are done in pieces of this size, so a small file under a large cap costs little memory. */
const PIECE_BYTES = 1 << 20;

/** Opens `path` for reading if it is a regular file; anything else is one TidarcError naming it. */
export async function openRegularFile(path: string): Promise<FileHandle> {
  requireRegular(path, await stat(path).catch((err: unknown) => cannotOpen(path, err)));
  const fh = await open(path, OPEN_FLAGS).catch((err: unknown) => cannotOpen(path, err));
  try {
    requireRegular(path, await fh.stat());
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** The whole of a regular file of at most `maxBytes` bytes; `what` names it in the error ("a tokenizer.json"). */
export async function readRegularFile(path: string, maxBytes: number, what: string): Promise<Buffer> {
  const fh = await openRegularFile(path);
  try {
    const pieces: Buffer[] = [];
    let total = 0;
    for (;;) {
      const piece = Buffer.allocUnsafe(Math.min(PIECE_BYTES, maxBytes + 1 - total));
      const { bytesRead } = await fh.read(piece, 0, piece.byteLength, total);
      if (bytesRead === 0) break;
      pieces.push(piece.subarray(0, bytesRead));
      total += bytesRead;
      if (total > maxBytes) tooLarge(path, maxBytes, what);
    }
    return Buffer.concat(pieces, total);
  } finally {
    await fh.close();
  }
}

/** readRegularFile for the synchronous callers (manifest and tuning-database reads). */
export function readRegularFileSync(path: string, maxBytes: number, what: string): Buffer {
  try {
    requireRegular(path, statSync(path));
  } catch (err) {
    if (err instanceof TidarcError) throw err;
    cannotOpen(path, err);
  }
  let fd: number;
  try {
    fd = openSync(path, OPEN_FLAGS);
  } catch (err) {
    return cannotOpen(path, err);
  }
  try {
    requireRegular(path, fstatSync(fd));
    const pieces: Buffer[] = [];
    let total = 0;
    for (;;) {
      const piece = Buffer.allocUnsafe(Math.min(PIECE_BYTES, maxBytes + 1 - total));
      const bytesRead = readSync(fd, piece, 0, piece.byteLength, total);
      if (bytesRead === 0) break;
      pieces.push(piece.subarray(0, bytesRead));
      total += bytesRead;
      if (total > maxBytes) tooLarge(path, maxBytes, what);
    }
    return Buffer.concat(pieces, total);
  } finally {
    closeSync(fd);
  }
}

/** "4 MiB" for a cap, as a reader of the error thinks of it. */
export function bytesText(bytes: number): string {
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)} MiB`;
  if (bytes >= 1 << 10 && bytes % (1 << 10) === 0) return `${bytes / (1 << 10)} KiB`;
  return `${bytes} bytes`;
}

function requireRegular(path: string, st: Stats): void {
  if (st.isFile()) return;
  const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device'
    : st.isBlockDevice() ? 'a block device' : st.isSocket() ? 'a socket' : 'not a file';
  throw new TidarcError('invalid-argument', `not a regular file (${kind})`, { source: path, allowed: 'a regular file' });
}

function cannotOpen(path: string, err: unknown): never {
  const code = (err as NodeJS.ErrnoException).code;
  const why = code === 'ENOENT' ? 'no such file'
    : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
      : code === 'ENOTDIR' ? 'no such file (a part of the path is not a directory)'
        : code === 'ELOOP' ? 'too many symbolic links' : `cannot read file (${code ?? (err as Error).message})`;
  throw new TidarcError('missing-file', why, { source: path });
}

function tooLarge(path: string, maxBytes: number, what: string): never {
  throw new TidarcError('invalid-argument', `file too large for ${what}`, { field: 'size', value: `more than ${maxBytes} bytes`, allowed: `at most ${bytesText(maxBytes)}`, source: path });
}
