// Needs: nothing (pure TypeScript and a temp directory).
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import {
  parseSafetensors, readSafetensors, readShardedSafetensors, serializeSafetensors, writeSafetensors,
  type Tensor, type TensorChunks,
} from '../../src/model/safetensors.js';

/** Temp directories of this file, removed when it is done (checkpoints are megabytes). */
const temps: string[] = [];
afterAll(() => Promise.all(temps.map((d) => rm(d, { recursive: true, force: true }))));

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tidarc-st-'));
  temps.push(dir);
  return dir;
}

/** A file from a raw header (object or text) and a data area, to build corrupt files. */
function rawFile(header: unknown, data: Uint8Array | number = 0, headerLength?: bigint): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.byteLength + body.byteLength);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(body, 8 + json.byteLength);
  return out;
}

function errorOf(fn: () => unknown): TidarcError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TidarcError);
    return err as TidarcError;
  }
  throw new Error('expected a TidarcError');
}

const SAMPLE: Record<string, Tensor> = {
  'b.bf16': { dtype: 'BF16', shape: [2, 3], data: Uint16Array.from([0x3f80, 0xbf80, 0, 0x8000, 0x7f80, 0x7fc0]) },
  'a.f32': { dtype: 'F32', shape: [3], data: Float32Array.from([1.5, -2, 3.25]) },
  'c.f16': { dtype: 'F16', shape: [1, 1, 3], data: Uint16Array.from([0x3c00, 0xc000, 0x7bff]) },
  'd.scalar': { dtype: 'F32', shape: [], data: Float32Array.from([42]) },
  'e.empty': { dtype: 'BF16', shape: [0, 4], data: new Uint16Array(0) },
  'f.odd': { dtype: 'BF16', shape: [1], data: Uint16Array.from([0x4000]) },
};

function expectSameTensors(file: { names(): string[]; tensor(n: string): Tensor }, expected: Record<string, Tensor>): void {
  expect(file.names()).toEqual(Object.keys(expected).sort());
  for (const [name, t] of Object.entries(expected)) {
    const got = file.tensor(name);
    expect(got.dtype).toBe(t.dtype);
    expect(got.shape).toEqual(t.shape);
    expect(got.data.constructor).toBe(t.data.constructor);
    expect(Array.from(got.data)).toEqual(Array.from(t.data));
  }
}

describe('safetensors round trip', () => {
  it('writes what the reference writer writes for one F32 tensor', () => {
    const bytes = serializeSafetensors({ a: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) } });
    const json = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    const padded = Math.ceil((8 + json.length) / 8) * 8 - 8;
    expect(Number(new DataView(bytes.buffer).getBigUint64(0, true))).toBe(padded);
    expect(Buffer.from(bytes.subarray(8, 8 + padded)).toString('utf8')).toBe(json.padEnd(padded, ' '));
    expect(Array.from(new Float32Array(bytes.slice(8 + padded).buffer))).toEqual([1, 2]);
  });

  it('keeps every dtype, a 0-d scalar, an empty tensor and metadata, through a file', async () => {
    const path = join(await tempDir(), 'x.safetensors');
    const size = await writeSafetensors(path, SAMPLE, { format: 'pt', note: 'héllo' });
    const file = await readSafetensors(path);
    expect((await readFile(path)).byteLength).toBe(size);
    expectSameTensors(file, SAMPLE);
    expect(file.metadata).toEqual({ format: 'pt', note: 'héllo' });
    expect(file.info('d.scalar')).toEqual({ dtype: 'F32', shape: [] });
    expect(file.has('nope')).toBe(false);
    expect(() => file.tensor('nope')).toThrow(/no such tensor.*"nope"/);
  });

  it('pads the header to 8 bytes, sorts names, puts wide dtypes first and is deterministic', () => {
    const a = serializeSafetensors(SAMPLE, { z: '1', a: '2' });
    const b = serializeSafetensors(Object.fromEntries(Object.entries(SAMPLE).reverse()), { a: '2', z: '1' });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const n = Number(new DataView(a.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(Buffer.from(a.subarray(8, 8 + n)).toString('utf8')) as Record<string, { data_offsets: number[] }>;
    expect(Object.keys(header)).toEqual(['__metadata__', ...Object.keys(SAMPLE).sort()]);
    // F32 tensors first: every tensor starts aligned for its dtype.
    expect(header['a.f32']!.data_offsets).toEqual([0, 12]);
    expect(header['d.scalar']!.data_offsets).toEqual([12, 16]);
  });

  it('tensors are views into one buffer; a misaligned tensor is copied', () => {
    const file = parseSafetensors(serializeSafetensors(SAMPLE));
    expect(file.tensor('a.f32').data.buffer).toBe(file.tensor('b.bf16').data.buffer);
    // A BF16 tensor of one element, then an F32 at data offset 2: not 4-byte aligned.
    const data = new Uint8Array(2 + 8);
    data.set([0x80, 0x3f], 0);
    data.set(new Uint8Array(Float32Array.from([7, -8]).buffer), 2);
    const bytes = rawFile({ h: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] }, x: { dtype: 'F32', shape: [2], data_offsets: [2, 10] } }, data);
    const odd = parseSafetensors(bytes, 'odd.safetensors');
    expect(Array.from(odd.tensor('x').data)).toEqual([7, -8]);
    expect(Array.from(odd.tensor('h').data)).toEqual([0x3f80]);
  });

  it('streams chunked tensors and checks that the chunks add up', async () => {
    const dir = await tempDir();
    const chunked: TensorChunks = { dtype: 'F32', shape: [2, 3], chunks: () => [Float32Array.from([1, 2]), Float32Array.from([3, 4, 5, 6])] };
    const seen: string[] = [];
    const size = await writeSafetensors(join(dir, 'c.safetensors'), { c: chunked }, {}, {
      onProgress: (p) => void seen.push(`${p.tensor} ${p.tensorsDone}/${p.tensorCount} ${p.bytesWritten}/${p.totalBytes}`),
    });
    expect(Array.from((await readSafetensors(join(dir, 'c.safetensors'))).tensor('c').data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(seen).toEqual([`c 0/1 ${size - 16}/${size}`, `c 1/1 ${size}/${size}`]);
    const short: TensorChunks = { dtype: 'F32', shape: [4], chunks: () => [Float32Array.from([1])] };
    await expect(writeSafetensors(join(dir, 'short.safetensors'), { s: short })).rejects.toThrow(/tensor "s"\.data = 1 elements.*allowed: 4 elements/);
    expect((await readdir(dir)).sort()).toEqual(['c.safetensors']); // no temp file, no half file
  });

  it.each([
    ['wrong array type', { t: { dtype: 'BF16', shape: [1], data: Float32Array.from([1]) } }, /tensor "t"\.data = Float32Array.*Uint16Array/],
    ['length mismatch', { t: { dtype: 'F32', shape: [2], data: Float32Array.from([1]) } }, /tensor "t"\.data = 1 elements\); allowed: 2 elements/],
    ['reserved name', { __metadata__: { dtype: 'F32', shape: [1], data: Float32Array.from([1]) } }, /reserved tensor name/],
    ['bad shape', { t: { dtype: 'F32', shape: [-1], data: Float32Array.from([1]) } }, /tensor "t"\.shape = \[-1\]/],
    ['bad dtype', { t: { dtype: 'I64', shape: [1], data: Float32Array.from([1]) } }, /tensor "t"\.dtype = "I64".*BF16, F16, F32/],
  ])('the writer refuses %s', (_what, tensors, pattern) => {
    expect(() => serializeSafetensors(tensors as unknown as Record<string, Tensor>)).toThrow(pattern);
  });
});

describe('safetensors corruption: one clear error each, naming the file and the tensor', () => {
  const ok = { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const cases: [string, () => Uint8Array, RegExp][] = [
    ['a file shorter than 8 bytes', () => new Uint8Array(5), /f\.safetensors: not a safetensors file.*\(file size = 5\)/],
    ['a header length beyond the file (truncated header)', () => rawFile(ok, 8).subarray(0, 30), /header length exceeds the file.*\(header length = 54\); allowed: at most 22/],
    ['a header length beyond 2^53', () => rawFile(ok, 8, 1n << 60n), /header length exceeds the file .*\(header length = 1152921504606846976\)/],
    ['a truncated data area', () => rawFile(ok, 8).subarray(0, 8 + 54 + 5), /tensor data lies outside the data area.*tensor "w"\.data_offsets = \[0,8\].*from 0 to 5/],
    ['malformed header JSON', () => rawFile('{"w": {"dtype": "F32",,}}', 8), /f\.safetensors: malformed safetensors header JSON/],
    ['a header that is not UTF-8', () => { const b = rawFile('{"\u00ff": 1}'); b[10] = 0xff; return b; }, /not valid UTF-8/],
    ['a header that is an array', () => rawFile('[1, 2]'), /header is not a JSON object \(header = \[1,2\]\)/],
    ['unknown dtype I64', () => rawFile({ ids: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, 8), /unsupported tensor dtype \(tensor "ids"\.dtype = "I64"\); allowed: one of BF16, F16, F32/],
    ['a shape that disagrees with the offsets', () => rawFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), /tensor size does not match.*tensor "w"\.data_offsets = \[0,8\].*end - begin = 12 \(3 elements of F32/],
    ['a negative dim', () => rawFile({ w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8), /invalid tensor shape \(tensor "w"\.shape = \[-2\]\); allowed: an array of integers >= 0/],
    ['a fractional dim', () => rawFile({ w: { dtype: 'F32', shape: [2.5], data_offsets: [0, 8] } }, 8), /tensor "w"\.shape = \[2\.5\]/],
    ['a missing shape', () => rawFile({ w: { dtype: 'F32', data_offsets: [0, 8] } }, 8), /invalid tensor shape \(tensor "w"\.shape\)/],
    ['offsets with begin > end', () => rawFile({ w: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, 8), /tensor "w"\.data_offsets = \[8,0\].*0 <= begin <= end/],
    ['three offsets', () => rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 4, 8] } }, 8), /tensor "w"\.data_offsets = \[0,4,8\]/],
    ['overlapping tensors', () => rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12),
      /tensor overlaps tensor "a" \(tensor "b"\.data_offsets = \[4,12\]\); allowed: begin = 8, where tensor "a" ends/],
    ['a gap between tensors', () => rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 12),
      /gap of 4 bytes before the tensor \(tensor "b"\.data_offsets = \[8,12\]\); allowed: begin = 4, where tensor "a" ends \(the format allows no holes\)/],
    ['a gap at the start', () => rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /gap of 4 bytes.*tensor "a".*begin = 0, the start of the data area/],
    ['bytes after the last tensor', () => rawFile(ok, 12), /4 bytes after the last tensor belong to no tensor/],
    ['duplicate names', () => rawFile('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', 4),
      /duplicate tensor name in the header \(tensor "w"\)/],
    ['metadata that is not strings', () => rawFile({ __metadata__: { n: 1 }, ...ok }, 8), /invalid header metadata \(__metadata__\.n = 1\); allowed: a string/],
    ['a tensor entry that is not an object', () => rawFile({ w: 7 }, 0), /invalid tensor entry \(tensor "w" = 7\)/],
    // Parsed fine, then overflowed the stack when the error quoted it, without naming the file.
    ['a header of 100,000 nested brackets', () => rawFile('['.repeat(100_000) + ']'.repeat(100_000)), /JSON nested too deeply \(depth = more than 64\)/],
    ['a tensor nested 100,000 deep', () => rawFile(`{"w": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`), /JSON nested too deeply/],
  ];

  it.each(cases)('%s', (_what, build, pattern) => {
    const err = errorOf(() => parseSafetensors(build(), 'f.safetensors'));
    expect(err.message).toMatch(pattern);
    expect(err.message).toMatch(/^f\.safetensors: /);
    expect(err.message).not.toContain('\n');
  });

  it('a file truncated on disk names the path', async () => {
    const dir = await tempDir();
    const path = join(dir, 'model.safetensors');
    const bytes = serializeSafetensors(SAMPLE);
    await writeFile(path, bytes.subarray(0, bytes.byteLength - 5));
    await expect(readSafetensors(path)).rejects.toThrow(`${path}: tensor data lies outside the data area`);
    await expect(readSafetensors(join(dir, 'nope.safetensors'))).rejects.toThrow(/nope\.safetensors: no such file/);
  });

  it('a nested duplicate key is not a duplicate tensor', () => {
    const header = '{"__metadata__": {"a": "1", "b": "x,\\"a\\":"}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}';
    const file = parseSafetensors(rawFile(header, 4));
    expect(file.names()).toEqual(['a']);
    expect(file.metadata).toEqual({ a: '1', b: 'x,"a":' });
  });
});

describe('sharded safetensors', () => {
  async function shardedDir(weightMap: Record<string, string>): Promise<string> {
    const dir = await tempDir();
    await writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), { a: SAMPLE['a.f32']!, b: SAMPLE['b.bf16']! });
    await writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), { c: SAMPLE['c.f16']!, extra: SAMPLE['d.scalar']! });
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 30 }, weight_map: weightMap }));
    return dir;
  }

  it('reads every shard once and serves tensors by the weight map', async () => {
    const dir = await shardedDir({ a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' });
    const st = await readShardedSafetensors(dir);
    expect(st.names()).toEqual(['a', 'b', 'c']);
    expect(st.metadata).toEqual({ total_size: 30 });
    expect([...st.shards.keys()]).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(st.shardOf('c')).toBe('model-00002-of-00002.safetensors');
    expect(Array.from(st.tensor('a').data)).toEqual([1.5, -2, 3.25]);
    expect(st.info('c')).toEqual({ dtype: 'F16', shape: [1, 1, 3] });
    expect(st.has('extra')).toBe(false); // in a shard, but not in the map
  });

  it.each([
    ['a mapped tensor its shard lacks', { a: 'model-00002-of-00002.safetensors' }, /the shard model-00002-of-00002\.safetensors named by the index has no such tensor \(weight_map\."a" = model-00002/],
    ['a missing shard file', { a: 'model-00009-of-00009.safetensors' }, /model-00009-of-00009\.safetensors: no such file/],
    ['a shard outside the directory', { a: '../model.safetensors' }, /invalid shard file name \(weight_map\."a" = "\.\.\/model\.safetensors"\); allowed: a file name in the same directory/],
    ['a weight map that is not an object', 'x', /invalid shard index \(weight_map = "x"\)/],
  ])('refuses %s', async (_what, weightMap, pattern) => {
    const dir = await shardedDir(weightMap as Record<string, string>);
    await expect(readShardedSafetensors(dir)).rejects.toThrow(pattern);
  });

  it('a missing index names it', async () => {
    const dir = await tempDir();
    await expect(readShardedSafetensors(dir)).rejects.toThrow(/model\.safetensors\.index\.json: no such file/);
  });
});
