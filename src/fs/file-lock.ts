/**
 * A lock file around work that two processes must not do at once (building one kernel cache
 * entry): created with O_EXCL, it holds the owner's pid and host. A waiter polls, says once what
 * it waits for (and again every PROGRESS_EVERY_MS), and gives up after a bounded time with one
 * error naming the lock file. A lock whose process is gone (SIGKILL, power loss) is broken by the
 * next process; an interrupted CLI removes its own (interrupt.ts).
 */
import { closeSync, linkSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { TidarcError } from '../errors.js';
import { errnoCode, fsReason } from './fs-error.js';
import { removeOnInterrupt, settled } from './interrupt.js';
import { noProcessWithId } from './process-gone.js';

/** Default wait for another process's lock: a cold nvcc build of a large model takes minutes. */
export const DEFAULT_LOCK_TIMEOUT_MS = 20 * 60_000;
const PROGRESS_EVERY_MS = 30_000;
const POLL_MIN_MS = 50;
const POLL_MAX_MS = 1000;
/** A lock file still empty after this long was left by an older tidarc that died between creating and writing it. */
const EMPTY_LOCK_STALE_MS = 10_000;

export interface LockOptions {
  /** What the lock guards, for the progress line and errors ("the kernel cache entry X"). */
  readonly what: string;
  /** How errors name the place the lock is in (an option or setting). */
  readonly field: string;
  readonly timeoutMs?: number;
  readonly log?: (line: string) => void;
}

interface Owner {
  readonly pid: number;
  readonly host: string;
}

function readOwner(path: string): Owner | undefined {
  try {
    const owner = JSON.parse(readFileSync(path, 'utf8')) as Partial<Owner>;
    return typeof owner.pid === 'number' && typeof owner.host === 'string' ? { pid: owner.pid, host: owner.host } : undefined;
  } catch {
    // Absent, or written a moment ago and not yet filled: the caller retries.
    return undefined;
  }
}

function emptyAndOld(path: string): boolean {
  try {
    const st = statSync(path);
    return st.size === 0 && Date.now() - st.mtimeMs > EMPTY_LOCK_STALE_MS;
  } catch {
    return false;
  }
}

/** A lock is stale only when we can tell: same host and no process with its pid. */
function ownerGone(owner: Owner): boolean {
  if (owner.host !== hostname()) return false;
  if (owner.pid === process.pid) return false;
  return noProcessWithId(owner.pid);
}

/**
 * Creates the lock with its owner already written: the owner goes into a private file first, which
 * is then hard-linked to the lock path (link fails with EEXIST when a lock exists). A waiter thus
 * never reads an empty lock and always learns whom it waits for.
 */
function tryCreate(path: string, label: LockOptions): boolean {
  const draft = `${path}.new-${process.pid}-${randomBytes(4).toString('hex')}`;
  const cannot = (e: unknown) => new TidarcError('invalid-argument', `cannot create the lock file ${path} (${fsReason(e)})`, { field: label.field, allowed: 'a writable directory' });
  try {
    const fd = openSync(draft, 'wx');
    try {
      writeSync(fd, `${JSON.stringify({ pid: process.pid, host: hostname() })}\n`);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    rmSync(draft, { force: true });
    throw cannot(e);
  }
  try {
    linkSync(draft, path);
    return true;
  } catch (e) {
    if (errnoCode(e) === 'EEXIST') return false;
    throw cannot(e);
  } finally {
    rmSync(draft, { force: true });
  }
}

/**
 * Removes a stale lock without removing a fresh one another process created meanwhile: the
 * lock is renamed aside first and put back (link fails if a newer lock exists) when what was
 * moved is not the stale owner's.
 */
function breakStale(path: string, stale: Owner | undefined): void {
  const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    renameSync(path, aside);
  } catch {
    return; // already broken by another waiter
  }
  const moved = readOwner(aside);
  if (moved && (moved.pid !== stale?.pid || moved.host !== stale.host)) {
    try {
      linkSync(aside, path);
    } catch {
      // A newer lock is in place; the one moved aside belonged to a process that still thinks
      // it holds it. Both then build, and the output directory's atomic swap keeps one result.
    }
  }
  rmSync(aside, { force: true });
}

/**
 * Runs `work` holding the lock file `path`; waits for another holder up to the timeout. The lock
 * is removed when `work` settles, and on SIGINT/SIGTERM in the CLI.
 */
export async function withFileLock<T>(path: string, options: LockOptions, work: () => Promise<T>): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const started = Date.now();
  let lastProgress = 0;
  let poll = POLL_MIN_MS;
  for (;;) {
    if (tryCreate(path, options)) break;
    const owner = readOwner(path);
    if (owner && ownerGone(owner)) {
      options.log?.(`removing a stale lock of process ${owner.pid}, which is gone: ${path}`);
      breakStale(path, owner);
      continue;
    }
    if (!owner && emptyAndOld(path)) {
      options.log?.(`removing an empty lock file left by a process that died: ${path}`);
      breakStale(path, undefined);
      continue;
    }
    const waited = Date.now() - started;
    if (waited >= timeoutMs) {
      const who = owner ? `process ${owner.pid} on ${owner.host}` : 'another process';
      throw new TidarcError('runtime', `timed out after ${Math.round(waited / 1000)} s waiting for ${who} to finish ${options.what}; if no such process is running, delete the lock file`, {
        field: options.field, source: path,
      });
    }
    if (lastProgress === 0 || waited - lastProgress >= PROGRESS_EVERY_MS) {
      const who = owner ? `process ${owner.pid}` : 'another process';
      options.log?.(lastProgress === 0 ? `waiting for ${who} to finish ${options.what} (lock ${path})` : `still waiting for ${who} (${Math.round(waited / 1000)} s)`);
      lastProgress = Math.max(waited, 1);
    }
    await new Promise((r) => setTimeout(r, Math.min(poll, Math.max(1, timeoutMs - waited))));
    poll = Math.min(POLL_MAX_MS, poll * 2);
  }
  removeOnInterrupt(path);
  try {
    return await work();
  } finally {
    rmSync(path, { force: true });
    settled(path);
  }
}
