/**
 * Writes a compile's output atomically: everything goes into a sibling temp directory
 * first, which replaces DIR only when complete. A failed compile leaves DIR as it was.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export async function createStaging(outDir: string): Promise<string> {
  const staging = `${outDir}.tmp-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  return staging;
}

export async function writeFiles(root: string, files: ReadonlyMap<string, string>): Promise<void> {
  for (const [rel, text] of files) {
    const path = join(root, rel);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, text);
  }
}

/** Replaces outDir by staging; the old directory is removed only after the swap. */
export async function commitStaging(staging: string, outDir: string): Promise<void> {
  const old = `${outDir}.old-${process.pid}`;
  const hadOld = existsSync(outDir);
  if (hadOld) await rename(outDir, old);
  try {
    await rename(staging, outDir);
  } catch (e) {
    if (hadOld) await rename(old, outDir);
    throw e;
  }
  if (hadOld) await rm(old, { recursive: true, force: true });
}

export async function discardStaging(staging: string): Promise<void> {
  await rm(staging, { recursive: true, force: true });
}
