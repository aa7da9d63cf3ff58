/**
 * Runs one emulator executable on one set of inputs: writes them to a file, reads O and
 * lse back, and parses the findings the emulator printed (one JSON object per line).
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TidarcError } from '../errors.js';
import type { ManifestVariant } from '../codegen/manifest.js';

const exec = promisify(execFile);

export interface EmulatorFinding {
  readonly kind: string;
  readonly kernel: string;
  readonly block: readonly [number, number, number];
  readonly thread: readonly [number, number, number];
  readonly message: string;
}

export interface EmulatorInputs {
  readonly batch: number;
  readonly cacheCapacity: number;
  readonly prefixLen: readonly number[];
  readonly splits: number;
  readonly q: Uint16Array;
  readonly kCache: Uint16Array;
  readonly vCache: Uint16Array;
  readonly kStep: Uint16Array;
  readonly vStep: Uint16Array;
}

export interface EmulatorResult {
  readonly o: Uint16Array;
  readonly lse: Float32Array;
  readonly findings: readonly EmulatorFinding[];
  /** Findings per kind, including those the emulator stopped storing. */
  readonly counts: Readonly<Record<string, number>>;
  /** False when a launch stopped (deadlock) or the process died on a fault. */
  readonly completed: boolean;
}

export async function runEmulator(exe: string, v: ManifestVariant, inputs: EmulatorInputs, workDir: string, tag: string): Promise<EmulatorResult> {
  const inPath = join(workDir, `${tag}.in`);
  const outPath = join(workDir, `${tag}.out`);
  const parts = [inputs.q, inputs.kCache, inputs.vCache, inputs.kStep, inputs.vStep];
  await writeFile(inPath, Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))));
  const args = [
    '--batch', inputs.batch, '--capacity', inputs.cacheCapacity, '--splits', inputs.splits, '--prefix', inputs.prefixLen.join(','),
    '--steps', v.steps, '--qheads', v.shape.qHeads, '--kvheads', v.shape.kvHeads, '--dim', v.shape.headDim,
    '--row-tiles', v.launch.rowTiles, '--threads', v.launch.block, '--smem', v.launch.dynamicSharedBytes,
    '--in', inPath, '--out', outPath,
  ].map(String);
  let stdout: string;
  let fatal = false;
  try {
    stdout = (await exec(exe, args, { maxBuffer: 64 << 20 })).stdout;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number; message: string };
    if (err.code !== 70 || err.stdout === undefined) {
      throw new TidarcError('runtime', `the emulator of ${v.name} failed (${(err.stderr || err.message).trim().split('\n')[0]})`);
    }
    stdout = err.stdout;  // exit 70: a fault it reported as a finding
    fatal = true;
  }
  const findings: EmulatorFinding[] = [];
  const counts: Record<string, number> = {};
  let completed = false;
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const rec = JSON.parse(line) as Record<string, unknown>;
    if (typeof rec['finding'] === 'string') {
      findings.push({ kind: rec['finding'], kernel: rec['kernel'] as string, block: rec['block'] as [number, number, number], thread: rec['thread'] as [number, number, number], message: rec['message'] as string });
    } else if (typeof rec['count'] === 'string') {
      counts[rec['count']] = rec['n'] as number;
    } else if (rec['done'] === true) {
      completed = rec['completed'] === true;
    }
  }
  const rows = inputs.batch * v.steps * v.shape.qHeads;
  if (fatal) return { o: new Uint16Array(rows * v.shape.headDim).fill(0xffff), lse: new Float32Array(rows).fill(Number.NaN), findings, counts, completed: false };
  const raw = await readFile(outPath);
  const oBytes = rows * v.shape.headDim * 2;
  const copy = new Uint8Array(raw.byteLength);
  copy.set(raw);
  return { o: new Uint16Array(copy.buffer, 0, rows * v.shape.headDim), lse: new Float32Array(copy.buffer, oBytes, rows), findings, counts, completed };
}
