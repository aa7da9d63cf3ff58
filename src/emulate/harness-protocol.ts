/**
 * The run protocol of the variant harnesses, as data: runtime/emu/emu_main.cpp runs a compiled
 * attention variant on the emulator, runtime/gpu/gpu_main.cu on a GPU, and emulator-run.ts
 * drives both. renderHarnessHeader writes the C++ reader of the options (runtime/emu/harness_args.h,
 * by scripts/generate-abi.ts; test/emulate/harness-protocol.test.ts fails when it differs).
 *   argv     every option below as `--flag value`
 *   --in     the argument's input arrays (op-abi.ts ATTENTION_ARRAYS of role in or cache), in
 *            declaration order, raw little-endian
 *   --out    written by the harness: the output arrays (role out), in declaration order
 *   stdout   JSON lines: findings, counts, {"timing"} on a GPU, then {"done", "completed"}
 * Pure: no I/O.
 */
import type { ManifestVariant } from '../codegen/manifest.js';
import { TidarcError } from '../errors.js';
import { ATTENTION_ARRAYS, ATTENTION_DIMS, type AttentionArrayField, type AttentionDim, type AttentionDims, attentionArrayFields, attentionElements, cFieldName } from '../runtime/cuda/op-abi.js';

/** One run of a variant's harness. */
export interface HarnessRun {
  readonly variant: ManifestVariant;
  readonly batch: number;
  readonly cacheCapacity: number;
  readonly splits: number;
  /** The order the emulator runs the blocks in: 0 = x fastest (default), 1 = reversed (a GPU ignores it). */
  readonly blockOrder?: 0 | 1;
  /** A programmatic dependent launch (the PDL attribute; default false): on the emulator every global
   *  access before a thread's grid_dependency_wait is a "pdl" finding (a GPU ignores it). */
  readonly programmatic?: boolean;
  readonly inPath: string;
  readonly outPath: string;
}

interface HarnessOption {
  /** The flag without its dashes; the C++ field is its snake_case (paths: <flag>_path). */
  readonly flag: string;
  readonly kind: 'int' | 'path';
  /** The smallest value the harness accepts (ints). */
  readonly min?: number;
  /** The attention dim it is: the harness sizes the arrays from these. */
  readonly dim?: AttentionDim;
  /** Its value in the usage line. */
  readonly meta: string;
  readonly value: (r: HarnessRun) => number | string;
}

export const HARNESS_OPTIONS: readonly HarnessOption[] = [
  { flag: 'batch', kind: 'int', min: 1, dim: 'batch', meta: 'B', value: (r) => r.batch },
  { flag: 'capacity', kind: 'int', min: 0, dim: 'cacheCapacity', meta: 'C', value: (r) => r.cacheCapacity },
  { flag: 'splits', kind: 'int', min: 1, dim: 'numSplits', meta: 'S', value: (r) => r.splits },
  { flag: 'steps', kind: 'int', min: 1, dim: 'n', meta: 'N', value: (r) => r.variant.steps },
  { flag: 'qheads', kind: 'int', min: 1, dim: 'qHeads', meta: 'H', value: (r) => r.variant.shape.qHeads },
  { flag: 'kvheads', kind: 'int', min: 1, dim: 'kvHeads', meta: 'H', value: (r) => r.variant.shape.kvHeads },
  { flag: 'dim', kind: 'int', min: 1, dim: 'headDim', meta: 'D', value: (r) => r.variant.shape.headDim },
  { flag: 'row-tiles', kind: 'int', min: 1, meta: 'R', value: (r) => r.variant.launch.rowTiles },
  { flag: 'threads', kind: 'int', min: 1, meta: 'T', value: (r) => r.variant.launch.block },
  { flag: 'smem', kind: 'int', min: 0, meta: 'BYTES', value: (r) => r.variant.launch.dynamicSharedBytes },
  { flag: 'block-order', kind: 'int', min: 0, meta: '0|1', value: (r) => r.blockOrder ?? 0 },
  { flag: 'programmatic', kind: 'int', min: 0, meta: '0|1', value: (r) => (r.programmatic ? 1 : 0) },
  { flag: 'in', kind: 'path', meta: 'FILE', value: (r) => r.inPath },
  { flag: 'out', kind: 'path', meta: 'FILE', value: (r) => r.outPath },
];

const cField = (o: HarnessOption): string => (o.kind === 'path' ? `${o.flag}_path` : o.flag.replace(/-/g, '_'));

// Every dim of the attention arrays is an option: the harness sizes them from nothing else.
const missingDims = ATTENTION_DIMS.filter((d) => !HARNESS_OPTIONS.some((o) => o.dim === d));
if (missingDims.length > 0) throw new Error(`harness-protocol.ts: no option gives ${missingDims.join(', ')}`);

/** The harness's command line for a run. */
export function harnessArgv(r: HarnessRun): string[] {
  return HARNESS_OPTIONS.flatMap((o) => [`--${o.flag}`, String(o.value(r))]);
}

/** The attention dims of a run: what its arrays are sized by. */
export function harnessDims(r: HarnessRun): AttentionDims {
  return Object.fromEntries(HARNESS_OPTIONS.flatMap((o) => (o.dim === undefined ? [] : [[o.dim, o.value(r) as number]]))) as AttentionDims;
}

type Role = (typeof ATTENTION_ARRAYS)[AttentionArrayField]['role'];
type FieldOfRole<R extends Role> = { [F in AttentionArrayField]: (typeof ATTENTION_ARRAYS)[F]['role'] extends R ? F : never }[AttentionArrayField];
export type HarnessInputField = FieldOfRole<'in' | 'cache'>;
export type HarnessOutputField = FieldOfRole<'out'>;

const VIEWS = { u16: Uint16Array, i32: Int32Array, f32: Float32Array } as const;
const isInput = (f: AttentionArrayField): f is HarnessInputField => ATTENTION_ARRAYS[f].role === 'in' || ATTENTION_ARRAYS[f].role === 'cache';
const isOutput = (f: AttentionArrayField): f is HarnessOutputField => ATTENTION_ARRAYS[f].role === 'out';

/** The --in file: every input array at its element type; a wrong length is refused here (the harness would read past it). */
export function harnessInputBytes(arrays: Readonly<Record<HarnessInputField, ArrayLike<number>>>, dims: AttentionDims): Buffer {
  return Buffer.concat(attentionArrayFields().filter(isInput).map((f) => {
    const want = attentionElements(f, dims), got = arrays[f];
    if (got.length !== want) throw new TidarcError('invalid-argument', 'wrong input length for the harness', { field: f, value: got.length, allowed: `${want} elements` });
    const View = VIEWS[ATTENTION_ARRAYS[f].elem];
    const typed = got instanceof View ? got : View.from(got);
    return Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
  }));
}

export type HarnessOutputs = { readonly [F in HarnessOutputField]: InstanceType<(typeof VIEWS)[(typeof ATTENTION_ARRAYS)[F]['elem']]> };

/** The --out file's arrays (copied into fresh, aligned buffers), or undefined when it is short. */
export function harnessOutputs(raw: Uint8Array, dims: AttentionDims): HarnessOutputs | undefined {
  const out: Record<string, ArrayBufferView> = {};
  let at = 0;
  for (const f of attentionArrayFields().filter(isOutput)) {
    const View = VIEWS[ATTENTION_ARRAYS[f].elem];
    const bytes = attentionElements(f, dims) * View.BYTES_PER_ELEMENT;
    if (at + bytes > raw.byteLength) return undefined;
    out[f] = new View(new Uint8Array(raw.subarray(at, at + bytes)).buffer);  // a copy: a Buffer's subarray shares a pool
    at += bytes;
  }
  return out as HarnessOutputs;
}

/** The outputs a run that produced none reports: every element NaN. */
export function poisonedOutputs(dims: AttentionDims): HarnessOutputs {
  return harnessOutputs(new Uint8Array(attentionArrayFields().filter(isOutput).reduce((n, f) => n + attentionElements(f, dims) * VIEWS[ATTENTION_ARRAYS[f].elem].BYTES_PER_ELEMENT, 0)).fill(0xff), dims)!;
}

export const HARNESS_HEADER = 'runtime/emu/harness_args.h';

/** runtime/emu/harness_args.h: the C++ reader of HARNESS_OPTIONS, for emu_main.cpp and gpu_main.cu. */
export function renderHarnessHeader(): string {
  const ints = HARNESS_OPTIONS.filter((o) => o.kind === 'int');
  const paths = HARNESS_OPTIONS.filter((o) => o.kind === 'path');
  const usage = HARNESS_OPTIONS.map((o) => `--${o.flag} ${o.meta}`).join(' ');
  return [
    '/*! generated by tidarc from src/emulate/harness-protocol.ts (npx tsx scripts/generate-abi.ts) -- do not edit',
    '    The options of the variant harnesses (runtime/emu/emu_main.cpp on the emulator, runtime/gpu/gpu_main.cu',
    '    on a GPU): one protocol, the one src/emulate/emulator-run.ts speaks. Plain C++: nvcc and g++. */',
    '#pragma once',
    '#include <cstdio>',
    '#include <cstdlib>',
    '#include <string>',
    '',
    '#include "tidarc_attention_args.h"',
    '',
    'namespace tidarc_harness {',
    '',
    '// -1: not given (every option is required).',
    'struct Args {',
    ...ints.map((o) => `  long ${cField(o)} = -1;  // --${o.flag}, at least ${o.min}`),
    ...paths.map((o) => `  std::string ${cField(o)};  // --${o.flag}`),
    '};',
    '',
    '[[noreturn]] inline void usage(const char* program, const std::string& why) {',
    `  std::fprintf(stderr, "%s: %s\\nusage: ${usage}\\n", program, why.c_str());`,
    '  std::exit(2);',
    '}',
    '',
    'inline Args parse(int argc, char** argv, const char* program) {',
    '  auto number = [&](const std::string& v) {',
    '    char* end = nullptr;',
    '    const long x = std::strtol(v.c_str(), &end, 10);',
    '    if (v.empty() || *end) usage(program, "not an integer: " + v);',
    '    return x;',
    '  };',
    '  Args a;',
    '  for (int i = 1; i < argc; i += 2) {',
    '    const std::string k = argv[i];',
    '    if (i + 1 == argc) usage(program, "no value for " + k);',
    '    const std::string v = argv[i + 1];',
    ...HARNESS_OPTIONS.map((o, i) => `    ${i === 0 ? 'if' : 'else if'} (k == "--${o.flag}") a.${cField(o)} = ${o.kind === 'int' ? 'number(v)' : 'v'};`),
    '    else usage(program, "unknown option " + k);',
    '  }',
    ...ints.map((o) => `  if (a.${cField(o)} < ${o.min}) usage(program, "missing or invalid --${o.flag} (at least ${o.min})");`),
    ...paths.map((o) => `  if (a.${cField(o)}.empty()) usage(program, "missing --${o.flag}");`),
    '  return a;',
    '}',
    '',
    '// The sizes of the run\'s attention arrays (tidarc_attention_args.h).',
    'inline TidarcAttentionDims dims(const Args& a) {',
    '  TidarcAttentionDims d{};',
    ...ints.flatMap((o) => (o.dim === undefined ? [] : [`  d.${cFieldName(o.dim)} = static_cast<size_t>(a.${cField(o)});`])),
    '  return d;',
    '}',
    '',
    '}  // namespace tidarc_harness',
    '',
  ].join('\n');
}
