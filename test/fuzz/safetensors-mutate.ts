/**
 * Seeded mutations of a valid safetensors file: its header length, its header JSON (dtypes,
 * shapes, offsets, names, metadata, nesting), its data area (truncated, extended) or the whole
 * file (empty, short, random bytes).
 */
import type { Rng } from '../../src/util/random.js';
import { type Json, mutateJson, pick } from './json-mutate.js';

const HEADER_LENGTH_BYTES = 8;

/** The 8-byte length, the header JSON and the data area of a (valid) file. */
function split(file: Uint8Array): { header: Json; data: Uint8Array } {
  const length = Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(Buffer.from(file.subarray(8, 8 + length)).toString('utf8')) as Json;
  return { header, data: file.subarray(8 + length) };
}

function join(headerText: Uint8Array, data: Uint8Array, length: bigint = BigInt(headerText.byteLength)): Uint8Array {
  const out = new Uint8Array(HEADER_LENGTH_BYTES + headerText.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, length, true);
  out.set(headerText, HEADER_LENGTH_BYTES);
  out.set(data, HEADER_LENGTH_BYTES + headerText.byteLength);
  return out;
}

/** Header lengths that lie: off by one, zero, past the file, past 2^53 and 2^63. */
function oddLength(rng: Rng, real: number, fileSize: number): bigint {
  return BigInt.asUintN(64, pick(rng, [0n, 1n, BigInt(real - 1), BigInt(real + 1), BigInt(fileSize), BigInt(fileSize - 8), 100_000_001n, 1n << 32n, (1n << 53n) + 1n, 1n << 63n, -1n]));
}

export function mutateSafetensors(rng: Rng, valid: Uint8Array): Uint8Array {
  const { header, data } = split(valid);
  const kind = rng.int(0, 9);
  if (kind <= 5) {
    // The header JSON, its length kept right (so the checks after the length are reached).
    const text = Buffer.from(mutateJson(rng, header, { textChance: 0.15 }));
    return join(text, data);
  }
  const text = Buffer.from(JSON.stringify(header));
  if (kind === 6) return join(text, data, oddLength(rng, text.byteLength, HEADER_LENGTH_BYTES + text.byteLength + data.byteLength));
  if (kind === 7) {
    // Truncated anywhere (a partial download) or extended by stray bytes.
    const whole = join(text, data);
    return rng.next() < 0.7 ? whole.subarray(0, rng.int(0, whole.byteLength - 1)) : Buffer.concat([whole, new Uint8Array(rng.int(1, 64))]);
  }
  if (kind === 8) {
    // Data bytes flipped: not the parser's business (values are checked at load), must still parse.
    const d = Uint8Array.from(data);
    for (let i = 0; i < 8 && d.length > 0; i++) d[rng.int(0, d.length - 1)] = rng.int(0, 255);
    return join(text, d);
  }
  const bytes = new Uint8Array(pick(rng, [0, 1, 7, 8, 9, 16, 64, 1024]));
  for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(0, 255);
  return bytes;
}
