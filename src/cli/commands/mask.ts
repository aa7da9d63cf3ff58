/**
 * `tidarc mask`: build a mask of any kind and print or save it as text, JSON or SVG.
 * This is the only place mask rendering touches the file system.
 *
 * Options are validated here rather than with commander's choices/requiredOption so that
 * every mistake becomes one TidarcError sentence naming the option, the value and what is
 * allowed, printed by runCli as a single `tidarc: error:` line.
 */
import type { Command } from 'commander';
import { TidarcError } from '../../errors.js';
import { MASK_KINDS, type MaskKind, type MaskSpec } from '../../ir/mask.js';
import { MAX_DRAFT, MAX_LENGTH, blockDiffusion, causal, tidarDecode, tidarPrefill, tidarTrain, tree } from '../../ir/mask-builders.js';
import { renderMaskJson, renderMaskSvg, renderMaskText } from '../../ir/mask-render.js';
import type { CliIo } from '../io.js';
import { parsePathOption } from '../options.js';
import { writeTextFileAtomic } from '../../fs/atomic-write.js';

const FORMATS = ['text', 'json', 'svg'] as const;
type Format = (typeof FORMATS)[number];

/**
 * Speculative trees in the literature stay far below this (Medusa 64 nodes, EAGLE-2 60,
 * Sequoia up to 768); 8192 nodes made a 134 MB JSON that took 1.2 GB to build.
 */
export const MAX_TREE_NODES = 1024;
/**
 * text and json write every cell (about 2 bytes each, ~10x that while the string is built):
 * 2^24 cells is a 34 MB file built in ~0.4 GB. Every TiDAR decode step up to k = 63 fits at
 * prefix 0; svg draws runs of cells and keeps the renderer's own, larger bound.
 */
export const MAX_DENSE_CELLS = 1 << 24;

type Param = 'draft' | 'prefix' | 'length' | 'block' | 'parents';

interface RawOptions {
  kind?: string;
  draft?: string;
  prefix?: string;
  length?: string;
  block?: string;
  parents?: string;
  format?: string;
  out?: string;
}

/** Which options each kind needs and accepts; anything else given is refused, not ignored. */
const KIND_OPTIONS: Readonly<Record<MaskKind, { required: readonly Param[]; optional: readonly Param[] }>> = {
  'tidar-decode': { required: ['draft'], optional: ['prefix'] },
  'tidar-prefill': { required: ['length', 'draft'], optional: ['prefix'] },
  'tidar-train': { required: ['length', 'block'], optional: [] },
  causal: { required: ['length'], optional: ['prefix'] },
  'block-diffusion': { required: ['block'], optional: ['prefix'] },
  tree: { required: ['parents'], optional: ['prefix'] },
};

/** What a missing option would have accepted, for the error sentence. */
const EXPECTED: Readonly<Record<Param, string>> = {
  draft: `an integer from 1 to ${MAX_DRAFT}, e.g. --draft 16`,
  prefix: `an integer from 0 to ${MAX_LENGTH}, e.g. --prefix 3`,
  length: `an integer from 1 to ${MAX_LENGTH}, e.g. --length 6`,
  block: `an integer from 1 to ${MAX_LENGTH} (tidar-train: up to --length), e.g. --block 3`,
  parents: 'a comma-separated list like --parents=-1,0,0,1 (entry i is -1 or an earlier node)',
};

const NOUN: Readonly<Record<Param, string>> = {
  draft: 'draft length',
  prefix: 'prefix length',
  length: 'sequence length',
  block: 'block size',
  parents: 'parent list',
};

/** Parses a decimal integer option; `1.5`, `abc`, `1e3` and out-of-range values are refused. */
function integerOption(name: Param, raw: string, min: number, max: number): number {
  const allowed = `an integer from ${min} to ${max}`;
  if (!/^[+-]?\d+$/.test(raw.trim())) {
    throw new TidarcError('invalid-argument', `the ${NOUN[name]} must be an integer`, { field: `--${name}`, value: raw, allowed });
  }
  const value = Number(raw.trim());
  if (value < min || value > max) {
    throw new TidarcError('invalid-argument', `the ${NOUN[name]} is out of range`, { field: `--${name}`, value: raw, allowed });
  }
  return value;
}

/** `-1,0,0,1`: node i's parent is -1 (a root) or an earlier node. */
function parentsOption(raw: string): number[] {
  const items = raw.split(',').map((s) => s.trim());
  const allowed = 'a comma-separated list like -1,0,0,1 where entry i is -1 or the index of an earlier node';
  if (items.length > MAX_TREE_NODES) {
    throw new TidarcError('invalid-argument', 'the tree has too many nodes', { field: '--parents', value: `${items.length} nodes`, allowed: `at most ${MAX_TREE_NODES} nodes` });
  }
  if (items.some((s) => !/^-?\d+$/.test(s))) {
    throw new TidarcError('invalid-argument', `the ${NOUN.parents} must be at most ${MAX_TREE_NODES} comma-separated integers`, { field: '--parents', value: raw, allowed });
  }
  const parents = items.map(Number);
  parents.forEach((p, i) => {
    if (p < -1 || p >= i) {
      throw new TidarcError('invalid-argument', `entry ${i} of the ${NOUN.parents} is ${p}, not -1 or an earlier node`, { field: '--parents', value: raw, allowed: i === 0 ? 'entry 0 must be -1' : `entry ${i} from -1 to ${i - 1}` });
    }
  });
  return parents;
}

function buildMask(kind: MaskKind, o: RawOptions): { mask: MaskSpec; prefix: number } {
  const spec = KIND_OPTIONS[kind];
  for (const name of ['draft', 'prefix', 'length', 'block', 'parents'] as const) {
    const given = o[name] !== undefined;
    if (!given && spec.required.includes(name)) {
      throw new TidarcError('invalid-argument', `--kind ${kind} needs a ${NOUN[name]}`, { field: `--${name}`, allowed: EXPECTED[name] });
    }
    if (given && !spec.required.includes(name) && !spec.optional.includes(name)) {
      const accepted = [...spec.required, ...spec.optional].map((p) => `--${p}`).join(', ');
      throw new TidarcError('invalid-argument', `--kind ${kind} takes no ${NOUN[name]}`, { field: `--${name}`, value: o[name], allowed: `options for ${kind}: ${accepted}` });
    }
  }
  const int = (name: 'draft' | 'prefix' | 'length' | 'block', min: number, max: number): number => integerOption(name, o[name]!, min, max);
  const prefix = o.prefix === undefined ? 0 : int('prefix', 0, MAX_LENGTH);
  switch (kind) {
    case 'tidar-decode':
      return { mask: tidarDecode(int('draft', 1, MAX_DRAFT)), prefix };
    case 'tidar-prefill':
      return { mask: tidarPrefill(int('length', 1, MAX_LENGTH), int('draft', 1, MAX_DRAFT)), prefix };
    case 'tidar-train': {
      const length = int('length', 1, MAX_LENGTH);
      return { mask: tidarTrain(length, int('block', 1, length)), prefix };
    }
    case 'causal':
      return { mask: causal(int('length', 1, MAX_LENGTH)), prefix };
    case 'block-diffusion':
      return { mask: blockDiffusion(int('block', 1, MAX_LENGTH)), prefix };
    case 'tree':
      return { mask: tree(parentsOption(o.parents!)), prefix };
  }
}

function parseKind(raw: string | undefined): MaskKind {
  const allowed = `one of ${MASK_KINDS.join(', ')}`;
  if (raw === undefined) throw new TidarcError('invalid-argument', 'a mask kind is required', { field: '--kind', allowed });
  if (!(MASK_KINDS as readonly string[]).includes(raw)) throw new TidarcError('invalid-argument', 'unknown mask kind', { field: '--kind', value: raw, allowed });
  return raw as MaskKind;
}

function parseFormat(raw: string | undefined): Format {
  const value = raw ?? 'text';
  if (!(FORMATS as readonly string[]).includes(value)) {
    throw new TidarcError('invalid-argument', 'unknown output format', { field: '--format', value, allowed: `one of ${FORMATS.join(', ')}` });
  }
  return value as Format;
}

/** Refuses a text or json rendering over MAX_DENSE_CELLS, naming the options that set its size. */
function checkDenseSize(kind: MaskKind, format: Format, rows: number, prefix: number, o: RawOptions): void {
  if (format === 'svg' || rows * (prefix + rows) <= MAX_DENSE_CELLS) return;
  const given = (['draft', 'length', 'block', 'prefix'] as const).filter((p) => o[p] !== undefined).map((p) => `--${p} ${o[p]!}`);
  if (o.parents !== undefined) given.unshift(`--parents (${rows} nodes)`);
  throw new TidarcError('invalid-argument', `the ${kind} mask is too large for --format ${format}: ${rows} queries x ${prefix + rows} keys from ${given.join(', ')}`, {
    field: '--format', value: format, allowed: `at most ${MAX_DENSE_CELLS} cells for text or json (smaller options, or --format svg)`,
  });
}

const RENDER: Readonly<Record<Format, (mask: MaskSpec, prefix: number) => string>> = {
  text: renderMaskText,
  json: renderMaskJson,
  svg: renderMaskSvg,
};


const HELP = `
Options by kind (prefix P = cached keys every in-step query sees, default 0):
  tidar-decode     --draft K [--prefix P]            one TiDAR decode step: K drafts + K blocks of K masks
  tidar-prefill    --length S --draft K [--prefix P] causal prompt of S tokens + one block of K masks
  tidar-train      --length S --block B              training layout: S clean + S mask tokens, no prefix
  causal           --length S [--prefix P]           plain causal attention over S new tokens
  block-diffusion  --block B [--prefix P]            one bidirectional block (BD3-LM, SDAR decode)
  tree             --parents LIST [--prefix P]       speculative tree; LIST[i] = parent of node i, -1 = root

Limits: --draft 1..${MAX_DRAFT}; --length and --prefix up to ${MAX_LENGTH}; tree size up to ${MAX_TREE_NODES};
--block 1..${MAX_LENGTH} (tidar-train: 1..S); text and json at most ${MAX_DENSE_CELLS} cells (queries x keys).

Output: --format text (default) prints a table (1 = visible, . = hidden, | between segments);
json prints {"kind", params..., "prefix", "rows", "cols", "positions", "visible"} with rows =
in-step queries and columns = the P prefix keys then the in-step keys; svg draws the matrix
with segment labels. --out FILE writes the result to FILE instead of standard output.

Examples:
  $ tidarc mask --kind tidar-decode --draft 3 --prefix 3
  $ tidarc mask --kind tidar-decode --draft 16 --format svg --out decode-k16.svg
  $ tidarc mask --kind tidar-prefill --length 8 --draft 4 --format json
  $ tidarc mask --kind tidar-train --length 6 --block 3
  $ tidarc mask --kind causal --length 4 --prefix 2
  $ tidarc mask --kind block-diffusion --block 4 --prefix 2
  $ tidarc mask --kind tree --parents=-1,0,0,1,-1 --prefix 2
`;

export function registerMaskCommand(program: Command, io: CliIo): void {
  program
    .command('mask')
    .description('Build an attention mask (TiDAR decode/prefill/train, causal, block diffusion, tree) and print it as text, JSON or SVG.')
    .option('--kind <kind>', `mask kind: ${MASK_KINDS.join(', ')}`)
    .option('--draft <k>', `draft length K, 1..${MAX_DRAFT} (tidar-decode, tidar-prefill), e.g. --draft 16`)
    .option('--prefix <p>', 'cached prefix length P, default 0 (all kinds but tidar-train), e.g. --prefix 3')
    .option('--length <s>', 'sequence length S (tidar-prefill, tidar-train, causal), e.g. --length 6')
    .option('--block <b>', 'block size B (tidar-train, block-diffusion), e.g. --block 3')
    .option('--parents <list>', 'tree parents, -1 for a root (tree), e.g. --parents=-1,0,0,1')
    .option('--format <format>', 'output format: text (default), json or svg')
    .option('--out <file>', 'write to FILE instead of standard output, e.g. --out mask.svg')
    .addHelpText('after', HELP)
    .action(async (_options: RawOptions, command: Command) => {
      const o = command.opts<RawOptions>();
      const out = o.out === undefined ? undefined : parsePathOption('--out', o.out);
      const kind = parseKind(o.kind);
      const format = parseFormat(o.format);
      const { mask, prefix } = buildMask(kind, o);
      checkDenseSize(kind, format, mask.tokens.length, prefix, o);
      const text = RENDER[format](mask, prefix);
      if (out === undefined) {
        io.stdout(text);
        return;
      }
      await writeTextFileAtomic(out, text, '--out');
      const rows = mask.tokens.length;
      io.stdout(`wrote ${o.out} (${format}, ${kind} mask, ${rows} queries x ${prefix + rows} keys)\n`);
    });
}
