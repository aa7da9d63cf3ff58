/**
 * Seeded mutations of JSON documents, for the input fuzz test: a valid document goes in, a text
 * that is wrong in a few places comes out. Mutations work on the parsed tree (replace a value by
 * one of another type or an edge value, delete, add keys including prototype names, scale
 * numbers, empty or blow up arrays) and then on the text (truncate, flip a character, nest deep).
 *
 * Values JSON.stringify cannot write (1e400 parses as Infinity, -0, 2^53 + 1) travel through the
 * tree as marked strings and are put back as raw text after stringify.
 */
import type { Rng } from '../../src/util/random.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(0, xs.length - 1)]!;
}

const RAW_MARK = '\u0000raw:';

/** A value written as this exact JSON text. */
export function raw(text: string): string {
  return `${RAW_MARK}${Buffer.from(text).toString('base64')}`;
}

/** JSON text of a tree that may hold raw() values and own "__proto__" keys. */
export function toJsonText(value: Json, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(/"\\u0000raw:([A-Za-z0-9+/=]*)"/g, (_, b64: string) => Buffer.from(b64, 'base64').toString());
}

/** Values of every JSON type and the edges validators miss, as JSON text. */
export const ODD_VALUES: readonly string[] = [
  'null', 'true', 'false', '0', '-0', '1', '-1', '0.5', '-0.5', '1e-300', '1e400', '-1e400', '255', '256', '65535', '65536',
  '2147483647', '2147483648', '4294967296', '4294967301', '9007199254740993', '1e9', '1e15', '1e308', '-1e308',
  '""', '"x"', '"12"', '"1e3"', '"__proto__"', '"constructor"', '"toString"', '"../../etc/passwd"', '"\\u0000"', '"\\n"',
  '"bf16"', '"F32"', '"llama"', '"qwen3"', '"linear"', '"llama3"', '"yarn"',
  '[]', '[1]', '[0,0]', '[-1]', '[1,2,3]', '[1e400]', '[null]', '["a"]', '[[1]]', '{}', '{"a":1}', '{"__proto__":{"x":1}}',
  `"${'x'.repeat(10_000)}"`, `[${Array(5000).fill('1').join(',')}]`,
];

/** Keys added to objects: prototype names, the empty key, near-misses of real keys. */
export const ODD_KEYS: readonly string[] = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '', 'x', '__metadata__', ' name', 'Name'];

function setOwn(obj: Record<string, Json>, key: string, value: Json): void {
  // defineProperty: `obj.__proto__ = v` would change the prototype instead of adding a key.
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

interface Slot {
  readonly parent: Json[] | Record<string, Json>;
  readonly key: string | number;
}

/** Every place in the tree that holds a value (the root has none). */
function slots(value: Json, out: Slot[] = []): Slot[] {
  if (Array.isArray(value)) {
    // A long array contributes a few slots, not thousands: mutations spread over the fields.
    const step = Math.max(1, Math.floor(value.length / 8));
    for (let i = 0; i < value.length; i += step) {
      out.push({ parent: value, key: i });
      slots(value[i]!, out);
    }
  } else if (value !== null && typeof value === 'object') {
    for (const key of Object.keys(value)) {
      out.push({ parent: value, key });
      slots(value[key]!, out);
    }
  }
  return out;
}

function get(s: Slot): Json {
  return (s.parent as Record<string | number, Json>)[s.key]!;
}

function set(s: Slot, v: Json): void {
  if (Array.isArray(s.parent)) s.parent[s.key as number] = v;
  else setOwn(s.parent, s.key as string, v);
}

/** One change somewhere in the tree; `focus` (when given) picks among the slots under it. */
function mutateTree(rng: Rng, root: Json, focus?: (s: Slot) => boolean): void {
  const all = slots(root);
  const candidates = focus ? all.filter(focus) : all;
  const objects = [root, ...all.map(get)].filter((v): v is Record<string, Json> => v !== null && typeof v === 'object' && !Array.isArray(v));
  const op = rng.int(0, 9);
  if ((op === 0 || candidates.length === 0) && objects.length > 0) {
    setOwn(pick(rng, objects), pick(rng, ODD_KEYS), raw(pick(rng, ODD_VALUES)));
    return;
  }
  if (candidates.length === 0) return;
  const s = pick(rng, candidates);
  const v = get(s);
  if (op <= 4) return set(s, raw(pick(rng, ODD_VALUES)));
  if (op === 5) {
    if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 1);
    else delete s.parent[s.key as string];
    return;
  }
  if (typeof v === 'number') {
    const scaled = pick(rng, [v * 2 ** rng.int(1, 40), -v, v + 0.5, v - 1, v + 1, 0, v * 1e300, v / 1e300]);
    return set(s, Number.isFinite(scaled) ? scaled : raw('1e400'));
  }
  if (Array.isArray(v)) {
    return set(s, pick(rng, [[], [...v, ...v], v.slice(1), Array(rng.int(100, 3000)).fill(v[0] ?? 1), [v]] as Json[]));
  }
  if (typeof v === 'string' && !v.startsWith(RAW_MARK)) return set(s, pick(rng, ['', v.toUpperCase(), `${v}x`, v.slice(1), '__proto__', v.repeat(100)]));
  return set(s, raw(pick(rng, ODD_VALUES)));
}

/** Changes to the text itself: what a truncated download or a stray edit leaves. */
function mutateText(rng: Rng, text: string): string {
  switch (rng.int(0, 7)) {
    case 0: return text.slice(0, rng.int(0, text.length));
    case 1: {
      const at = rng.int(0, Math.max(0, text.length - 1));
      return text.slice(0, at) + pick(rng, ['{', '}', '[', ']', '"', ',', ':', '\\', '\u0000', '\uFFFD', 'x']) + text.slice(at + 1);
    }
    case 2: return `${'['.repeat(rng.int(65, 100_000))}${text}`;
    case 3: {
      const n = rng.int(65, 100_000);
      return `${'['.repeat(n)}${text}${']'.repeat(n)}`;
    }
    case 4: return `\uFEFF${text}`;
    case 5: return `${text}${pick(rng, ['x', ',', '}', '{}', '\u0000'])}`;
    case 6: return pick(rng, ['', ' ', 'null', '[]', '"x"', '0', '{', 'NaN', 'Infinity']);
    default: {
      // A duplicate key at the top level: JSON.parse keeps the last one.
      const m = /^\{\s*("(?:[^"\\]|\\.)*")\s*:/.exec(text);
      return m ? `{${m[1]}: ${pick(rng, ODD_VALUES)}, ${text.slice(1)}` : text;
    }
  }
}

export interface MutateOptions {
  /** Tree mutations apply to these slots (e.g. a tokenizer's ids), else anywhere. */
  readonly focus?: (s: { parent: unknown; key: string | number }) => boolean;
  /** Chance that the text is mutated after the tree (default 0.2). */
  readonly textChance?: number;
}

/** 1-3 tree mutations of a copy of `doc`, sometimes a text mutation on top; returns the text. */
export function mutateJson(rng: Rng, doc: Json, options: MutateOptions = {}): string {
  const copy = JSON.parse(JSON.stringify(doc)) as Json;
  const n = rng.int(1, 3);
  for (let i = 0; i < n; i++) mutateTree(rng, copy, options.focus);
  const text = toJsonText(copy, 2);
  return rng.next() < (options.textChance ?? 0.2) ? mutateText(rng, text) : text;
}
