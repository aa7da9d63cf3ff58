/**
 * The emulator runtime's objects (buildEmulatorRuntime: a g++ compile of each of its sources, about
 * 13 CPU s) kept in the kernel cache, so `tidarc emulate` compiles them once, not once per run.
 * An entry, <cache>/emu-runtime/<key>, is keyed by a digest of everything those compiles read or
 * depend on: the compiler's path and version, the flags, and every file under the emulator's
 * include directories (runtime/emu, its include/, templates/common); an edit of a source or
 * another compiler names another entry. One process builds an entry under its lock (<entry>.lock,
 * file-lock.ts) in a staging directory (<entry>.tmp-PID) renamed into place when complete, so a
 * concurrent or killed run never leaves a half-written entry where a reader looks. The entry's
 * objects.json lists each object by file name (resolved against the entry, never an absolute path),
 * size and sha256: an entry whose objects do not match it is rebuilt, not trusted.
 */
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Tool } from '../build/toolchain.js';
import { TidarcError } from '../errors.js';
import { cacheField, defaultCacheDir } from '../build/kernel-cache.js';
import { withFileLock } from '../fs/file-lock.js';
import { removeOnInterrupt, settled } from '../fs/interrupt.js';
import { fileTreeDigest } from '../fs/file-tree-digest.js';
import { makeDirs } from '../fs/make-dirs.js';
import { EMULATOR_BUILD } from '../codegen/targets.js';
import { sha256 } from '../util/hash.js';
import { packageRoot } from '../util/paths.js';
import { EMU_FLAGS, EMU_RUNTIME_SOURCES, buildEmulatorRuntime } from './emulator-build.js';

const LIST = 'objects.json';

export interface RuntimeCacheOptions {
  /** Default: defaultCacheDir() ($TIDARC_CACHE or ~/.cache/tidarc). */
  readonly cacheDir?: string;
  readonly log?: (line: string) => void;
  /** How long to wait for another process building the same entry (default: file-lock.ts). */
  readonly lockTimeoutMs?: number;
}

interface ObjectRecord {
  readonly name: string;
  readonly size: number;
  readonly sha256: string;
}

/** The one key (hex) of the runtime built by `cxx`: compiler path and version, flags, sources. */
export function emulatorRuntimeKey(cxx: Tool): string {
  return sha256([
    'emulator runtime 1', cxx.path, cxx.version, EMU_FLAGS.join(' '), EMULATOR_BUILD.includeDirs.join(' '), EMU_RUNTIME_SOURCES.join(' '),
    fileTreeDigest(packageRoot(), EMULATOR_BUILD.includeDirs),
  ].join('\n'));
}

/** The entry's directory; the key is cut to 16 hex digits. */
export function emulatorRuntimeEntry(cxx: Tool, cacheDir?: string): string {
  return join(cacheDir ?? defaultCacheDir(), 'emu-runtime', emulatorRuntimeKey(cxx).slice(0, 16));
}

function record(path: string): ObjectRecord {
  const bytes = readFileSync(path);
  return { name: basename(path), size: bytes.length, sha256: sha256(bytes) };
}

/** The entry's objects (absolute paths) when its list is there and every object matches it; else undefined. */
function intactObjects(dir: string, key: string): string[] | undefined {
  try {
    const list = JSON.parse(readFileSync(join(dir, LIST), 'utf8')) as { key?: unknown; objects?: unknown };
    if (list.key !== key || !Array.isArray(list.objects)) return undefined;
    const objects = list.objects as Partial<ObjectRecord>[];
    const expected = EMU_RUNTIME_SOURCES.map((s) => s.replace(/\.cpp$/, '.o'));
    if (objects.length !== expected.length || objects.some((o, i) => o.name !== expected[i])) return undefined;
    for (const o of objects) {
      const got = record(join(dir, o.name!));
      if (got.size !== o.size || got.sha256 !== o.sha256) return undefined;
    }
    return expected.map((name) => join(dir, name));
  } catch {
    // No list, unreadable, or an object missing: not an entry to trust.
    return undefined;
  }
}

/**
 * The emulator runtime's object files from the kernel cache, compiled by `cxx` first where the
 * entry is missing or not intact. Logs "emulator runtime: cached" or "building the emulator runtime".
 */
export async function cachedEmulatorRuntime(cxx: Tool, options: RuntimeCacheOptions = {}): Promise<string[]> {
  const log = options.log ?? (() => undefined);
  const dir = emulatorRuntimeEntry(cxx, options.cacheDir);
  const key = emulatorRuntimeKey(cxx);
  const cached = intactObjects(dir, key);
  if (cached) {
    log(`emulator runtime: cached (${dir})`);
    return cached;
  }
  const field = cacheField(options.cacheDir);
  makeDirs(dirname(dir), { field, value: options.cacheDir ?? defaultCacheDir() });
  return withFileLock(`${dir}.lock`, {
    what: 'building the emulator runtime', field, log, ...(options.lockTimeoutMs === undefined ? {} : { timeoutMs: options.lockTimeoutMs }),
  }, async () => {
    // Another process may have built it while this one waited for the lock.
    const built = intactObjects(dir, key);
    if (built) {
      log(`emulator runtime: cached (${dir})`);
      return built;
    }
    log(existsSync(dir) ? `building the emulator runtime (the cached one is incomplete or corrupt; kept in ${dir})` : `building the emulator runtime (first use; kept in ${dir})`);
    // Under the lock no other process stages this entry: a staging directory here is a dead run's.
    for (const name of readdirSync(dirname(dir))) {
      if (name.startsWith(`${basename(dir)}.tmp-`)) rmSync(join(dirname(dir), name), { recursive: true, force: true });
    }
    const staging = `${dir}.tmp-${process.pid}`;
    removeOnInterrupt(staging);
    try {
      const objects = await buildEmulatorRuntime(cxx.path, staging);
      writeFileSync(join(staging, LIST), `${JSON.stringify({ key, objects: objects.map(record) }, null, 2)}\n`);
      rmSync(dir, { recursive: true, force: true });
      renameSync(staging, dir);
    } finally {
      rmSync(staging, { recursive: true, force: true });
      settled(staging);
    }
    const fresh = intactObjects(dir, key);
    if (!fresh) throw new TidarcError('runtime', `the emulator runtime just built does not match its list of objects`, { field, source: dir });
    return fresh;
  });
}
