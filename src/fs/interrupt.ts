/**
 * What an interrupted tidarc leaves behind: nothing. Every unfinished write (a staging
 * directory, a temp file, an earlier output moved aside during a swap) is registered here with
 * a synchronous undo; on SIGINT or SIGTERM the CLI (bin/tidarc.js installs the handlers) kills
 * the compilers it started, runs the undos and exits with 130 or 143. Library users keep their
 * own signal handling: without installInterruptCleanup nothing listens, and the next run that
 * writes beside a leftover removes it (stale-temps.ts).
 */
import { setMaxListeners } from 'node:events';
import { renameSync, rmSync } from 'node:fs';

const pending = new Map<string, () => void>();
const children = new AbortController();
// One listener per running compiler (a tune run starts hundreds): no leak warning on stderr.
setMaxListeners(0, children.signal);
let installed = false;
let graceful: (() => void) | undefined;

/** Pass as execFile's `signal`: an interrupt kills the compiler before its directory is removed. */
export const childProcessSignal: AbortSignal = children.signal;

/**
 * Kills every compiler started with childProcessSignal, and any started later, at once. A
 * terminal's Ctrl-C reaches the compilers already running, not one spawned a moment after.
 */
export function stopChildProcesses(): void {
  children.abort();
}

export function removeOnInterrupt(path: string): void {
  pending.set(path, () => rmSync(path, { recursive: true, force: true, maxRetries: 3 }));
}

/** An earlier output moved aside for a swap: put back when the new one is not in place, else removed. */
export function restoreOnInterrupt(aside: string, original: string): void {
  pending.set(aside, () => {
    try {
      renameSync(aside, original);
    } catch {
      rmSync(aside, { recursive: true, force: true, maxRetries: 3 });
    }
  });
}

/** The write of `path` finished (or was undone by its owner): nothing to do on interrupt. */
export function settled(path: string): void {
  pending.delete(path);
}

/** Whether this process is still writing `path` (stale-temps.ts must not take it for a leftover). */
export function isPending(path: string): boolean {
  return pending.has(path);
}

/** Runs every undo, newest first; one failing does not stop the others. Returns how many ran. */
export function undoPending(): number {
  const undos = [...pending.values()].reverse();
  pending.clear();
  for (const undo of undos) {
    try {
      undo();
    } catch {
      // Best effort on the way out; the next run removes what is left (stale-temps.ts).
    }
  }
  return undos.length;
}

const EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;

/** The CLI's SIGINT/SIGTERM handlers: kill child compilers, undo unfinished writes, exit 130/143. */
export function installInterruptCleanup(stderr: (text: string) => void = (t) => void process.stderr.write(t)): void {
  if (installed) return;
  installed = true;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (signal === 'SIGINT' && graceful) {
        // A command that finishes its current step first (tune); a second Ctrl-C ends it now.
        const handler = graceful;
        graceful = undefined;
        handler();
        return;
      }
      children.abort();
      const undone = undoPending();
      stderr(`tidarc: interrupted (${signal})${undone > 0 ? '; unfinished output removed' : ''}\n`);
      process.exit(EXIT_CODES[signal]);
    });
  }
}

/**
 * Lets a command handle the next SIGINT itself (tune: finish the configuration being timed, keep
 * what was measured). Without the CLI's handlers (library use, in-process tests) it listens to
 * SIGINT directly. Returns the function that stops it.
 */
export function onInterruptGracefully(handler: () => void): () => void {
  if (!installed) {
    process.once('SIGINT', handler);
    return () => void process.removeListener('SIGINT', handler);
  }
  graceful = handler;
  return () => {
    if (graceful === handler) graceful = undefined;
  };
}
