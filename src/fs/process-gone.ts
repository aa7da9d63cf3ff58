/**
 * Whether a process id names no process on this machine: how a leftover temp directory or a
 * lock file of a dead tidarc is told from one still in use.
 */
import { errnoCode } from './fs-error.js';

export function noProcessWithId(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    // EPERM: alive, another user's.
    return errnoCode(e) === 'ESRCH';
  }
}
