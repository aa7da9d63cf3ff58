// A temporary directory for one test, removed when the test finishes (pass or fail).
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';

export async function scratchDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A directory for the whole file with $TIDARC_CACHE pointed inside it (the kernels this file compiles
 * stay its own), both restored and removed after the file. Call at module level.
 */
export function fileScratchWithOwnKernelCache(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const cacheBefore = process.env['TIDARC_CACHE'];
  process.env['TIDARC_CACHE'] = join(dir, 'cache');
  afterAll(() => {
    if (cacheBefore === undefined) delete process.env['TIDARC_CACHE'];
    else process.env['TIDARC_CACHE'] = cacheBefore;
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}
