/**
 * File-system errors in words: what a user reads instead of `EACCES: ... mkdir '<temp name>'`.
 * The caller says which path and which option or setting it came from; this says why it failed.
 */

const WORDS: Readonly<Record<string, string>> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a part of the path is a file, not a directory',
  EISDIR: 'it is a directory',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EEXIST: 'it already exists',
  ENOTEMPTY: 'the directory is not empty',
  EBUSY: 'it is in use (a mount point?)',
  EXDEV: 'it is on another file system',
  ENAMETOOLONG: 'the name is too long',
  ELOOP: 'too many symbolic links',
  EMFILE: 'too many open files',
  EINVAL: 'the file system does not allow it',
};

/** "permission denied", "read-only file system", ...; the errno code itself when unknown. */
export function fsReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code !== undefined) return WORDS[code] ?? code;
  return err instanceof Error ? err.message.split('\n')[0]! : String(err);
}

export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}
