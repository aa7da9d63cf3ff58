/**
 * A kernel cache's entries for one model differ by their tuning (a variant's tile, its call
 * parameters), yet most of their emulated modules come from byte-identical sources: a database
 * that only sets split counts changes no .cu at all. Each module is g++ seconds, so a module built
 * for one entry is kept in the cache's shared directory under the hash of everything its build
 * reads, and an entry whose source hashes the same takes a copy instead of building it again.
 * The copy's emulator messages name the source of the entry that built it: the same text, so the
 * same lines. The GPU operators' module has its own shared directory (emulated-modules.ts).
 */
import { existsSync } from 'node:fs';
import { copyFile, readFile, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { makeDirs } from '../fs/make-dirs.js';
import { templatesDigest } from '../codegen/templates.js';
import { sha256Hasher } from '../util/hash.js';

/**
 * The sources a module built from cuda/`root` reads in `cuda`, sorted: `root` and the headers beside
 * it that it includes, directly or through another. A quoted include not found there resolves in
 * the emulator's or the package's templates, which the emulator key and templatesDigest cover.
 */
export async function sourceInputs(cuda: string, root: string): Promise<string[]> {
  const seen = new Set<string>();
  const visit = async (name: string): Promise<void> => {
    if (seen.has(name)) return;
    const text = await readFile(join(cuda, name), 'utf8').catch(() => undefined);
    if (text === undefined) return;
    seen.add(name);
    for (const [, included] of text.matchAll(/^\s*#\s*include\s*"([^"/]+)"/gm)) await visit(included!);
  };
  await visit(root);
  return [...seen].sort();
}

/** The file in `sharedDir` that holds the module of cuda/`cu` as built under the emulator's `key`. */
export async function sharedModulePath(cuda: string, cu: string, sharedDir: string, key: string): Promise<string> {
  const hash = sha256Hasher();
  hash.update(`${key}\n${templatesDigest()}\n${cu}\n`);
  for (const name of await sourceInputs(cuda, cu)) {
    hash.update(`${name}\n`);
    hash.update(await readFile(join(cuda, name)));
  }
  return join(sharedDir, 'emulated-modules', `${cu.replace(/\.cu$/, '')}-${hash.digest().slice(0, 16)}.emu.so`);
}

/** Every module source of a kernels directory's cuda/ but the operators' (shared on their own). */
async function moduleSources(cuda: string): Promise<string[]> {
  return (await readdir(cuda)).filter((f) => f.endsWith('.cu') && f !== 'tidarc_ops.cu').sort();
}

/** `from` copied to `to` under a temporary name, then renamed: a reader never sees half a library. */
async function copyAtomic(from: string, to: string): Promise<void> {
  const temp = `${to}.${process.pid}.tmp`;
  await copyFile(from, temp);
  await rename(temp, to);
}

/** Copies in each module of `kernelsDir`/cuda that is missing and that `sharedDir` holds; returns their sources. */
export async function adoptSharedModules(kernelsDir: string, sharedDir: string, key: string): Promise<string[]> {
  const cuda = join(kernelsDir, 'cuda');
  const adopted: string[] = [];
  for (const cu of await moduleSources(cuda)) {
    const so = join(cuda, cu.replace(/\.cu$/, '.emu.so'));
    if (existsSync(so)) continue;
    const shared = await sharedModulePath(cuda, cu, sharedDir, key);
    if (!existsSync(shared)) continue;
    await copyAtomic(shared, so);
    adopted.push(cu);
  }
  return adopted;
}

/** Keeps a copy of each module of `kernelsDir`/cuda in `sharedDir` that it does not hold yet; returns their sources. */
export async function publishSharedModules(kernelsDir: string, sharedDir: string, key: string): Promise<string[]> {
  const cuda = join(kernelsDir, 'cuda');
  const published: string[] = [];
  for (const cu of await moduleSources(cuda)) {
    const so = join(cuda, cu.replace(/\.cu$/, '.emu.so'));
    if (!existsSync(so)) continue;
    const shared = await sharedModulePath(cuda, cu, sharedDir, key);
    if (existsSync(shared)) continue;
    makeDirs(join(sharedDir, 'emulated-modules'), { field: `the emulated modules shared by the kernel cache's entries (${sharedDir})`, value: sharedDir });
    await copyAtomic(so, shared);
    published.push(cu);
  }
  return published;
}
