/**
 * safetensors, read and written without a dependency. A file is an 8-byte little-endian header
 * length N, N bytes of JSON ({name: {dtype, shape, data_offsets: [begin, end]}, optional
 * "__metadata__": {string: string}}), then the data area, which the tensors cover exactly: no
 * holes, no overlaps (offsets are relative to the data area).
 *
 * Reading checks everything the format promises before any tensor is handed out, and each
 * refusal is one TidarcError naming the file and the tensor. Tensors are views into the one
 * Buffer that holds the data area (zero-copy); a tensor whose offset is not a multiple of its
 * element size is copied, because typed arrays must be aligned. Typed arrays use the host's
 * byte order, so a big-endian host is refused rather than served swapped values.
 *
 * Writing puts the header keys in name order and the data in (element size descending, name)
 * order, as the reference writer does: every tensor then starts aligned for its dtype. The
 * header is padded with spaces to a multiple of 8 bytes. Output is deterministic.
 */
import type { FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { constants as bufferConstants } from 'node:buffer';
import { join } from 'node:path';
import { TidarcError, type ErrorCode } from '../errors.js';
import { writeBinaryFileAtomic } from '../fs/atomic-write-binary.js';
import { readJsonFile } from '../fs/read-json.js';
import { checkJsonDepth } from '../util/json.js';
import { openRegularFile } from '../fs/read-regular-file.js';
import { shownValue } from '../ir/model-validate.js';

export type SafetensorsDType = 'BF16' | 'F16' | 'F32';
export const SAFETENSORS_DTYPES: readonly SafetensorsDType[] = ['BF16', 'F16', 'F32'];
export const ITEM_SIZE: Readonly<Record<SafetensorsDType, number>> = { BF16: 2, F16: 2, F32: 4 };

/** Uint16Array holds BF16 / F16 bit patterns; Float32Array holds F32 values. */
export type TensorArray = Uint16Array | Float32Array;

export interface TensorInfo {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
}

export interface Tensor extends TensorInfo {
  readonly data: TensorArray;
}

/** A tensor produced piece by piece while it is written; the pieces must add up to its size. */
export interface TensorChunks extends TensorInfo {
  chunks(): Iterable<TensorArray>;
}

export type TensorInput = Tensor | TensorChunks;

/** What a single file and a sharded checkpoint both offer. */
export interface TensorStore {
  /** Tensor names, sorted. */
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  tensor(name: string): Tensor;
}

export interface SafetensorsFile extends TensorStore {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
}

interface Entry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

const HEADER_LENGTH_BYTES = 8;
const METADATA_KEY = '__metadata__';
/** The reference implementation's cap: a bigger header is a corrupt length, not a real header. */
export const MAX_HEADER_BYTES = 100_000_000;
const READ_CHUNK_BYTES = 1 << 30;

/** Reads and validates a safetensors file: the header first, then the data area in one Buffer. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  requireLittleEndian(path);
  // A regular file only: a FIFO would block the open forever, a device never end.
  const fh = await openRegularFile(path);
  try {
    const size = (await fh.stat()).size;
    const lengthBytes = await readExactly(fh, 0, Math.min(size, HEADER_LENGTH_BYTES), path);
    const headerLength = headerLengthOf(lengthBytes, size, path);
    const headerBytes = await readExactly(fh, HEADER_LENGTH_BYTES, headerLength, path);
    const dataStart = HEADER_LENGTH_BYTES + headerLength;
    const dataSize = size - dataStart;
    const { entries, metadata } = parseHeader(headerBytes, dataSize, path);
    if (dataSize > bufferConstants.MAX_LENGTH) {
      fail('unsupported', 'data area too large for one buffer', path, 'data size', dataSize, `at most ${bufferConstants.MAX_LENGTH} bytes (shard the checkpoint)`);
    }
    const data = await readExactly(fh, dataStart, dataSize, path);
    return fileOf(path, entries, metadata, data);
  } finally {
    await fh.close();
  }
}

/** Parses a whole safetensors file held in memory (pure); tensors are views into `bytes`. */
export function parseSafetensors(bytes: Uint8Array, source = '<memory>'): SafetensorsFile {
  requireLittleEndian(source);
  const headerLength = headerLengthOf(bytes.subarray(0, HEADER_LENGTH_BYTES), bytes.byteLength, source);
  const dataStart = HEADER_LENGTH_BYTES + headerLength;
  const { entries, metadata } = parseHeader(bytes.subarray(HEADER_LENGTH_BYTES, dataStart), bytes.byteLength - dataStart, source);
  return fileOf(source, entries, metadata, bytes.subarray(dataStart));
}

/** Where a write stands; reported after every piece of tensor data. */
export interface WriteProgress {
  /** The tensor being written (data order: element size descending, then name). */
  readonly tensor: string;
  /** Tensors completely written, this one included once it is done. */
  readonly tensorsDone: number;
  readonly tensorCount: number;
  /** File bytes written so far, header included, and the final file size. */
  readonly bytesWritten: number;
  readonly totalBytes: number;
}

export interface WriteOptions {
  /** The CLI option the path came from, named in file-system errors. */
  readonly option?: string;
  readonly onProgress?: (p: WriteProgress) => void;
}

/** Writes tensors (whole or as chunks) to `path` atomically; resolves to the file size. */
export async function writeSafetensors(
  path: string,
  tensors: Readonly<Record<string, TensorInput>>,
  metadata: Readonly<Record<string, string>> = {},
  options: WriteOptions = {},
): Promise<number> {
  requireLittleEndian(path);
  const layout = layoutOf(tensors, metadata, path);
  const tensorCount = layout.dataOrder.length;
  return writeBinaryFileAtomic(path, async (append) => {
    await append(layout.header);
    let written = layout.header.byteLength;
    let tensorsDone = 0;
    const report = (tensor: string): void => options.onProgress?.({ tensor, tensorsDone, tensorCount, bytesWritten: written, totalBytes: layout.totalBytes });
    for (const name of layout.dataOrder) {
      const t = tensors[name]!;
      let elements = 0;
      const pieces: Iterable<TensorArray> = 'data' in t ? [t.data] : t.chunks();
      for (const piece of pieces) {
        checkArrayType(name, t.dtype, piece, path);
        elements += piece.length;
        if (elements > numelOf(t.shape)) break;
        await append(new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength));
        written += piece.byteLength;
        if (elements < numelOf(t.shape)) report(name);
      }
      if (elements !== numelOf(t.shape)) {
        fail('invalid-argument', 'tensor data length does not match its shape', path, tensorField(name, 'data'), `${elements} elements`, `${numelOf(t.shape)} elements (shape [${t.shape.join(', ')}])`);
      }
      tensorsDone++;
      report(name);
    }
  }, options.option);
}

/** The bytes of a safetensors file (pure; for small files and tests). */
export function serializeSafetensors(tensors: Readonly<Record<string, Tensor>>, metadata: Readonly<Record<string, string>> = {}): Uint8Array {
  requireLittleEndian('<memory>');
  const layout = layoutOf(tensors, metadata, '<memory>');
  const out = new Uint8Array(layout.totalBytes);
  out.set(layout.header, 0);
  let at = layout.header.byteLength;
  for (const name of layout.dataOrder) {
    const t = tensors[name]!;
    checkArrayType(name, t.dtype, t.data, '<memory>');
    if (t.data.length !== numelOf(t.shape)) {
      fail('invalid-argument', 'tensor data length does not match its shape', '<memory>', tensorField(name, 'data'), `${t.data.length} elements`, `${numelOf(t.shape)} elements`);
    }
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** How errors name a tensor's field: `tensor "model.norm.weight".shape`. */
export function tensorField(name: string, key?: string): string {
  return `tensor ${JSON.stringify(name)}${key ? `.${key}` : ''}`;
}

/** The index file of a sharded checkpoint, as transformers writes it. */
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';

export interface ShardedSafetensors extends TensorStore {
  readonly indexPath: string;
  /** The index's "metadata" object (transformers writes {"total_size": N}). */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Shard file name -> the file, each read once. */
  readonly shards: ReadonlyMap<string, SafetensorsFile>;
  /** The shard file a tensor lives in. */
  shardOf(name: string): string;
}

/**
 * Reads a sharded checkpoint: `dir/model.safetensors.index.json` ({"metadata": {...},
 * "weight_map": {tensor: shard file}}) and every shard it names. The weight_map is
 * authoritative: each mapped tensor must exist in its shard; tensors a shard holds but the
 * map does not name are not served.
 */
export async function readShardedSafetensors(dir: string, indexFile = SAFETENSORS_INDEX_FILE): Promise<ShardedSafetensors> {
  const indexPath = join(dir, indexFile);
  const index = await readJsonFile(indexPath, 'shardIndex');
  if (!isObject(index)) fail('invalid-spec', 'invalid shard index', indexPath, 'index', shown(index), 'an object with "weight_map"');
  const meta = index['metadata'] ?? {};
  if (!isObject(meta)) fail('invalid-spec', 'invalid shard index', indexPath, 'metadata', shownValue(meta), 'an object');
  const weightMap = index['weight_map'];
  if (!isObject(weightMap)) fail('invalid-spec', 'invalid shard index', indexPath, 'weight_map', shown(weightMap), 'an object of tensor name -> shard file name');
  const shardOfName = new Map<string, string>();
  for (const [name, file] of Object.entries(weightMap)) {
    if (typeof file !== 'string' || file === '' || file === '.' || file === '..' || /[\\/]/.test(file)) {
      fail('invalid-spec', 'invalid shard file name', indexPath, `weight_map.${JSON.stringify(name)}`, shown(file), 'a file name in the same directory');
    }
    shardOfName.set(name, file);
  }
  const shards = new Map<string, SafetensorsFile>();
  for (const file of [...new Set(shardOfName.values())].sort()) shards.set(file, await readSafetensors(join(dir, file)));
  for (const [name, file] of shardOfName) {
    if (!shards.get(file)!.has(name)) {
      fail('invalid-spec', `the shard ${file} named by the index has no such tensor`, indexPath, `weight_map.${JSON.stringify(name)}`, file, `a tensor that ${file} holds`);
    }
  }
  const names = [...shardOfName.keys()].sort();
  const shardFor = (name: string): SafetensorsFile => {
    const file = shardOfName.get(name);
    if (file === undefined) fail('invalid-argument', 'no such tensor in the checkpoint', indexPath, tensorField(name));
    return shards.get(file)!;
  };
  return {
    indexPath,
    metadata: Object.freeze({ ...meta }),
    shards,
    shardOf: (name) => (shardFor(name), shardOfName.get(name)!),
    names: () => [...names],
    has: (name) => shardOfName.has(name),
    info: (name) => shardFor(name).info(name),
    tensor: (name) => shardFor(name).tensor(name),
  };
}

// ---------------------------------------------------------------------------------------------
// Reading

function headerLengthOf(lengthBytes: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < HEADER_LENGTH_BYTES) {
    fail('invalid-spec', 'not a safetensors file: shorter than its 8-byte header length', source, 'file size', fileSize, 'at least 8 bytes');
  }
  const view = new DataView(lengthBytes.buffer, lengthBytes.byteOffset, HEADER_LENGTH_BYTES);
  const length = view.getBigUint64(0, true);
  const room = fileSize - HEADER_LENGTH_BYTES;
  if (length > BigInt(room)) {
    fail('invalid-spec', 'header length exceeds the file (truncated or not a safetensors file)', source, 'header length', length.toString(), `at most ${room} (file size ${fileSize} - 8)`);
  }
  if (length > BigInt(MAX_HEADER_BYTES)) {
    fail('invalid-spec', 'header length is implausibly large', source, 'header length', length.toString(), `at most ${MAX_HEADER_BYTES}`);
  }
  return Number(length);
}

function parseHeader(bytes: Uint8Array, dataSize: number, source: string): { entries: Entry[]; metadata: Record<string, string> } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return fail('invalid-json', 'safetensors header is not valid UTF-8', source);
  }
  // Before parsing: a value nested 100,000 deep parses, then overflows the stack when quoted.
  checkJsonDepth(text, source);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return fail('invalid-json', `malformed safetensors header JSON: ${(err as Error).message.replace(/\s+/g, ' ')}`, source);
  }
  if (!isObject(raw)) fail('invalid-spec', 'safetensors header is not a JSON object', source, 'header', shownValue(raw), 'an object of tensors');
  const seen = new Set<string>();
  for (const key of topLevelKeys(text)) {
    if (seen.has(key)) fail('invalid-spec', 'duplicate tensor name in the header', source, key === METADATA_KEY ? METADATA_KEY : tensorField(key));
    seen.add(key);
  }
  const metadata = metadataOf(raw[METADATA_KEY], source);
  const entries = Object.keys(raw).filter((k) => k !== METADATA_KEY).map((name) => entryOf(name, raw[name], dataSize, source));
  checkCoverage(entries, dataSize, source);
  return { entries, metadata };
}

function metadataOf(raw: unknown, source: string): Record<string, string> {
  if (raw === undefined) return {};
  if (!isObject(raw)) fail('invalid-spec', 'invalid header metadata', source, METADATA_KEY, shownValue(raw), 'an object of strings');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') fail('invalid-spec', 'invalid header metadata', source, `${METADATA_KEY}.${k}`, shownValue(v), 'a string');
    out[k] = v;
  }
  return out;
}

function entryOf(name: string, raw: unknown, dataSize: number, source: string): Entry {
  if (!isObject(raw)) fail('invalid-spec', 'invalid tensor entry', source, tensorField(name), shownValue(raw), 'an object with dtype, shape and data_offsets');
  const dtype = raw['dtype'];
  if (!SAFETENSORS_DTYPES.includes(dtype as SafetensorsDType)) {
    fail('unsupported', 'unsupported tensor dtype', source, tensorField(name, 'dtype'), shown(dtype), `one of ${SAFETENSORS_DTYPES.join(', ')}`);
  }
  const shape = raw['shape'];
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    fail('invalid-spec', 'invalid tensor shape', source, tensorField(name, 'shape'), shown(shape), 'an array of integers >= 0');
  }
  const offsets = raw['data_offsets'];
  const okOffsets = Array.isArray(offsets) && offsets.length === 2 && offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0) && (offsets[0] as number) <= (offsets[1] as number);
  if (!okOffsets) {
    fail('invalid-spec', 'invalid tensor data_offsets', source, tensorField(name, 'data_offsets'), shown(offsets), 'two integers [begin, end] with 0 <= begin <= end');
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataSize) {
    fail('invalid-spec', 'tensor data lies outside the data area (truncated file?)', source, tensorField(name, 'data_offsets'), offsets, `offsets from 0 to ${dataSize}, the data area's size`);
  }
  const d = dtype as SafetensorsDType;
  const numel = numelOf(shape as number[]);
  const bytes = numel * ITEM_SIZE[d];
  if (bytes !== end - begin) {
    fail('invalid-spec', 'tensor size does not match its shape and dtype', source, tensorField(name, 'data_offsets'), offsets,
      `end - begin = ${bytes} (${numel} elements of ${d}, ${ITEM_SIZE[d]} bytes each, for shape [${(shape as number[]).join(', ')}])`);
  }
  return { name, dtype: d, shape: Object.freeze([...(shape as number[])]), begin, end };
}

/** The format forbids holes and overlaps: sorted by offset, each tensor starts where the last ended. */
function checkCoverage(entries: readonly Entry[], dataSize: number, source: string): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let previous: Entry | undefined;
  for (const e of sorted) {
    const after = previous ? `, where ${tensorField(previous.name)} ends` : ', the start of the data area';
    if (e.begin < at) {
      fail('invalid-spec', `tensor overlaps ${tensorField(previous!.name)}`, source, tensorField(e.name, 'data_offsets'), [e.begin, e.end], `begin = ${at}${after} (tensors may not overlap)`);
    }
    if (e.begin > at) {
      fail('invalid-spec', `gap of ${e.begin - at} bytes before the tensor`, source, tensorField(e.name, 'data_offsets'), [e.begin, e.end], `begin = ${at}${after} (the format allows no holes)`);
    }
    at = e.end;
    previous = e;
  }
  if (at !== dataSize) {
    fail('invalid-spec', `${dataSize - at} bytes after the last tensor belong to no tensor`, source, 'data size', dataSize, `${at}, the end of the last tensor (the format allows no holes)`);
  }
}

/** Keys of the top-level object, in order and with repeats (JSON.parse keeps only the last). */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = depth === 1;
    } else if (c === '}' || c === ']') {
      depth--;
    } else if (c === ',' && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

function fileOf(path: string, entries: readonly Entry[], metadata: Record<string, string>, data: Uint8Array): SafetensorsFile {
  const byName = new Map(entries.map((e) => [e.name, e]));
  const names = [...byName.keys()].sort();
  const entryAt = (name: string): Entry => {
    const e = byName.get(name);
    if (!e) fail('invalid-argument', 'no such tensor in the file', path, tensorField(name));
    return e;
  };
  return {
    path,
    metadata: Object.freeze({ ...metadata }),
    names: () => [...names],
    has: (name) => byName.has(name),
    info: (name) => {
      const e = entryAt(name);
      return { dtype: e.dtype, shape: e.shape };
    },
    tensor: (name) => {
      const e = entryAt(name);
      return { dtype: e.dtype, shape: e.shape, data: viewOf(e, data) };
    },
  };
}

function viewOf(e: Entry, data: Uint8Array): TensorArray {
  const size = ITEM_SIZE[e.dtype];
  const length = (e.end - e.begin) / size;
  const at = data.byteOffset + e.begin;
  if (at % size === 0) return e.dtype === 'F32' ? new Float32Array(data.buffer, at, length) : new Uint16Array(data.buffer, at, length);
  // Misaligned (the writer put an odd-sized tensor before this one): copy, typed arrays must align.
  const copy = e.dtype === 'F32' ? new Float32Array(length) : new Uint16Array(length);
  new Uint8Array(copy.buffer).set(data.subarray(e.begin, e.end));
  return copy;
}

async function readExactly(fh: FileHandle, position: number, length: number, source: string): Promise<Buffer> {
  const buf = Buffer.allocUnsafeSlow(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, Math.min(length - done, READ_CHUNK_BYTES), position + done);
    if (bytesRead === 0) fail('invalid-spec', 'file changed size while being read', source);
    done += bytesRead;
  }
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Writing

interface Layout {
  readonly header: Uint8Array;
  readonly dataOrder: readonly string[];
  readonly totalBytes: number;
}

function layoutOf(tensors: Readonly<Record<string, TensorInfo>>, metadata: Readonly<Record<string, string>>, source: string): Layout {
  const names = Object.keys(tensors).sort();
  for (const name of names) {
    const t = tensors[name]!;
    if (name === METADATA_KEY || name === '') fail('invalid-argument', 'reserved tensor name', source, tensorField(name), undefined, `any name but "" and "${METADATA_KEY}"`);
    if (!SAFETENSORS_DTYPES.includes(t.dtype)) fail('invalid-argument', 'unsupported tensor dtype', source, tensorField(name, 'dtype'), shownValue(t.dtype), `one of ${SAFETENSORS_DTYPES.join(', ')}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail('invalid-argument', 'invalid tensor shape', source, tensorField(name, 'shape'), shownValue(t.shape), 'an array of integers >= 0');
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') fail('invalid-argument', 'invalid metadata value', source, `${METADATA_KEY}.${k}`, shownValue(v), 'a string');
  }
  const dataOrder = [...names].sort((a, b) => ITEM_SIZE[tensors[b]!.dtype] - ITEM_SIZE[tensors[a]!.dtype] || (a < b ? -1 : a > b ? 1 : 0));
  const offsets = new Map<string, [number, number]>();
  let at = 0;
  for (const name of dataOrder) {
    const t = tensors[name]!;
    const bytes = numelOf(t.shape) * ITEM_SIZE[t.dtype];
    offsets.set(name, [at, at + bytes]);
    at += bytes;
  }
  const header: Record<string, unknown> = {};
  const metaKeys = Object.keys(metadata).sort();
  if (metaKeys.length > 0) header[METADATA_KEY] = Object.fromEntries(metaKeys.map((k) => [k, metadata[k]]));
  for (const name of names) {
    const t = tensors[name]!;
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: offsets.get(name) };
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil((HEADER_LENGTH_BYTES + json.byteLength) / 8) * 8 - HEADER_LENGTH_BYTES;
  const bytes = Buffer.alloc(HEADER_LENGTH_BYTES + padded, 0x20);
  bytes.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(bytes, HEADER_LENGTH_BYTES);
  return { header: bytes, dataOrder, totalBytes: bytes.byteLength + at };
}

function checkArrayType(name: string, dtype: SafetensorsDType, data: unknown, source: string): void {
  const ok = dtype === 'F32' ? data instanceof Float32Array : data instanceof Uint16Array;
  if (!ok) {
    const found = (data as object | null)?.constructor?.name ?? typeof data;
    fail('invalid-argument', 'tensor data has the wrong array type for its dtype', source, tensorField(name, 'data'), found, dtype === 'F32' ? 'a Float32Array for F32' : `a Uint16Array of bit patterns for ${dtype}`);
  }
}

// ---------------------------------------------------------------------------------------------

function requireLittleEndian(source: string): void {
  if (endianness() !== 'LE') fail('unsupported', 'safetensors data is little-endian and this host is not', source);
}

function fail(code: ErrorCode, message: string, source: string, field?: string, value?: unknown, allowed?: string): never {
  throw new TidarcError(code, message, {
    ...(field !== undefined ? { field } : {}),
    ...(value !== undefined ? { value } : {}),
    ...(allowed !== undefined ? { allowed } : {}),
    source,
  });
}

/** A found value for an error; absent stays absent, so the sentence does not say "= undefined". */
function shown(value: unknown): unknown {
  return value === undefined ? undefined : shownValue(value);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
