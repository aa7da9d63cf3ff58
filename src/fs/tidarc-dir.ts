/**
 * Which directories tidarc may replace. A directory tidarc writes carries a marker file naming
 * what it is (a compile output, a checkpoint, an emulated driver build); only an absent path, an
 * empty directory or a directory of the same kind is replaced, never a user's data. Directories
 * written by an older tidarc (no marker) are recognised by their content: a compile output's
 * manifest.json says "generator": "tidarc ..." and every file is one tidarc writes there; a
 * checkpoint's config.json has the "tidar" object and the directory holds nothing but the three
 * files init-model writes. The root, HOME, the current directory, any parent of it and a git work
 * tree root are never replaced, marker or not.
 */
import { lstatSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, parse, resolve, sep } from 'node:path';
import { TidarcError } from '../errors.js';
import { errnoCode, fsReason } from './fs-error.js';

export type DirKind = 'compile-output' | 'checkpoint' | 'emulated-driver';
const KINDS: readonly DirKind[] = ['compile-output', 'checkpoint', 'emulated-driver'];

/** The marker file; its JSON names the kind. No version or date: compile output stays byte-identical. */
export const MARKER_FILE = '.tidarc-output';

const KIND_WORDS: Readonly<Record<DirKind, string>> = {
  'compile-output': 'a tidarc compile output',
  checkpoint: 'a tidarc checkpoint (init-model)',
  'emulated-driver': 'a tidarc emulated CUDA driver build',
};

/** Where a directory is written, and how errors name it. */
export interface OutputPlace {
  readonly path: string;
  readonly kind: DirKind;
  /** The option or setting the path came from: '--out', 'outDir', 'the kernel cache (TIDARC_CACHE=/x)'. */
  readonly field: string;
}

export function markerText(kind: DirKind): string {
  return `${JSON.stringify({ writtenBy: 'tidarc', kind })}\n`;
}

/** The path as an error shows it: an empty one would be invisible. */
function shown(path: string): string {
  return path === '' ? '""' : path;
}

export function refusal(place: OutputPlace, why: string, allowed?: string): TidarcError {
  return new TidarcError('invalid-argument', why, {
    field: place.field,
    value: shown(place.path),
    allowed: allowed ?? `a new path, an empty directory or ${KIND_WORDS[place.kind]}; tidarc does not replace anything else (remove it yourself or choose another path)`,
  });
}

/** Files bigger than this are not a marker, manifest or config tidarc wrote; not read. */
const MAX_READ_BYTES = 64 << 20;

function readSmallJson(path: string): Record<string, unknown> | undefined {
  try {
    const st = lstatSync(path);
    if (!st.isFile() || st.size > MAX_READ_BYTES) return undefined;
    const data: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return typeof data === 'object' && data !== null && !Array.isArray(data) ? (data as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The kind a marker names, if `dir` has a valid one. */
export function markedKind(dir: string): DirKind | undefined {
  const m = readSmallJson(join(dir, MARKER_FILE));
  return m && m['writtenBy'] === 'tidarc' && KINDS.includes(m['kind'] as DirKind) ? (m['kind'] as DirKind) : undefined;
}

/** Listing stops here: a directory this big is not one tidarc wrote without a marker. */
const MAX_LEGACY_ENTRIES = 10_000;

/** Every file (and link) under `dir`, relative with '/', at most `limit`; undefined when more. */
function listFiles(dir: string, limit: number, prefix = ''): string[] | undefined {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) {
      const sub = listFiles(dir, limit - out.length, rel);
      if (!sub) return undefined;
      out.push(...sub);
    } else {
      out.push(rel);
    }
    if (out.length > limit) return undefined;
  }
  return out;
}

/** The temp file of an atomic write (src/fs/atomic-write.ts): NAME.PID.HEX.tmp. */
export const ATOMIC_TEMP = /^(.+)\.(\d+)\.[0-9a-f]{8}\.tmp$/;
/** What a compile writes besides the manifest's files: the stamp, build products. */
const COMPILE_EXTRA = /^(manifest\.json|\.tidarc-stamp|(cuda|cpu)\/[^/]+\.(fatbin|so|o))$/;
const CHECKPOINT_FILES = new Set(['config.json', 'model.safetensors', 'tokenizer.json']);
const DRIVER_FILES = new Set(['libcuda.so.1', 'libcuda.so.1.stamp']);

/** An output of an older tidarc (no marker), by its content; undefined when not one. */
export function legacyKind(dir: string): DirKind | undefined {
  let files: string[] | undefined;
  try {
    files = listFiles(dir, MAX_LEGACY_ENTRIES);
  } catch {
    return undefined;
  }
  if (!files || files.length === 0) return undefined;
  const own = files.filter((f) => !ATOMIC_TEMP.test(f.slice(f.lastIndexOf('/') + 1)));
  const manifest = readSmallJson(join(dir, 'manifest.json'));
  if (manifest && typeof manifest['generator'] === 'string' && manifest['generator'].startsWith('tidarc ')) {
    const listed = typeof manifest['files'] === 'object' && manifest['files'] !== null ? manifest['files'] as Record<string, unknown> : {};
    if (own.every((f) => Object.hasOwn(listed, f) || COMPILE_EXTRA.test(f))) return 'compile-output';
  }
  const config = readSmallJson(join(dir, 'config.json'));
  const tidar = config?.['tidar'];
  if (typeof tidar === 'object' && tidar !== null && !Array.isArray(tidar) && own.every((f) => CHECKPOINT_FILES.has(f))) return 'checkpoint';
  if (own.length > 0 && own.every((f) => DRIVER_FILES.has(f))) return 'emulated-driver';
  return undefined;
}

/** What tidarc wrote `dir` as (marker first, then an older tidarc's layout); undefined when not tidarc's. */
export function tidarcKind(dir: string): DirKind | undefined {
  return markedKind(dir) ?? legacyKind(dir);
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * Why an existing directory must never be replaced or removed, whatever it holds: `/`, HOME,
 * the current directory, a parent of it, or a git work tree root. Compared by real path.
 */
export function untouchableReason(dir: string): string | undefined {
  const real = realpathOr(resolve(dir));
  if (real === parse(real).root) return 'the output path is the root directory';
  if (real === realpathOr(homedir())) return 'the output path is your home directory';
  const cwd = realpathOr(process.cwd());
  if (real === cwd) return 'the output path is the current directory';
  if (cwd.startsWith(real.endsWith(sep) ? real : real + sep)) return 'the output path contains the current directory';
  try {
    lstatSync(join(real, '.git'));
    return 'the output path is the root of a git work tree';
  } catch {
    return undefined;
  }
}

/**
 * Checks that `place` may be written: 'absent' (nothing there; its parent may be missing too) or
 * 'replace' (an empty directory, or one tidarc wrote as this kind). Throws the reason otherwise.
 */
export function checkReplaceable(place: OutputPlace): 'absent' | 'replace' {
  const abs = resolve(place.path);
  let st;
  try {
    st = lstatSync(abs);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return 'absent';
    throw refusal(place, `cannot use the output path (${fsReason(e)})`, 'a path in a writable directory');
  }
  if (st.isSymbolicLink()) throw refusal(place, 'the output path is a symbolic link, so tidarc does not replace it', 'the directory it points to, a new path or an empty directory');
  if (!st.isDirectory()) throw refusal(place, `the output path is ${st.isFile() ? 'a file' : 'not a regular directory'}, so tidarc does not replace it`);
  const untouchable = untouchableReason(abs);
  if (untouchable) throw refusal(place, `${untouchable}, which tidarc never replaces`, 'a new path or a subdirectory of it');
  let entries: string[];
  try {
    entries = readdirSync(abs);
  } catch (e) {
    throw refusal(place, `cannot read the output directory (${fsReason(e)})`);
  }
  if (entries.length === 0) return 'replace';
  const kind = tidarcKind(abs);
  if (kind === place.kind) return 'replace';
  if (kind) throw refusal(place, `the output directory holds ${KIND_WORDS[kind]}, not ${KIND_WORDS[place.kind]}, so tidarc does not replace it`);
  throw refusal(place, 'the output directory is not empty and was not written by tidarc, so tidarc does not replace it');
}

/** The directory an output's staging and swap happen in. */
export function parentOf(place: OutputPlace): string {
  return dirname(resolve(place.path));
}
