/**
 * Runs one emulator executable on one set of inputs: writes them to a file, reads O and
 * lse back, and parses the findings the emulator printed (one JSON object per line).
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TidarcError } from '../errors.js';
import type { ManifestVariant } from '../codegen/manifest.js';
import { type HarnessRun, harnessArgv, harnessDims, harnessInputBytes, harnessOutputs, poisonedOutputs } from './harness-protocol.js';

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
  /** The emulator's block order (harness-protocol.ts); default 0. */
  readonly blockOrder?: 0 | 1;
  /** Launch programmatically (PDL: harness-protocol.ts); default false. */
  readonly programmatic?: boolean;
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
  /** On a GPU (runtime/gpu/gpu_main.cu): the device and the kernels' time by CUDA events. */
  readonly timing?: { readonly device: string; readonly ms: number };
}

/** The harness run of a call: its options and files follow harness-protocol.ts. */
function harnessRun(v: ManifestVariant, inputs: EmulatorInputs, inPath: string, outPath: string): HarnessRun {
  return {
    variant: v, batch: inputs.batch, cacheCapacity: inputs.cacheCapacity, splits: inputs.splits, ...(inputs.blockOrder === undefined ? {} : { blockOrder: inputs.blockOrder }),
    ...(inputs.programmatic === undefined ? {} : { programmatic: inputs.programmatic }), inPath, outPath,
  };
}

function inputBytes(run: HarnessRun, inputs: EmulatorInputs): Buffer {
  return harnessInputBytes(inputs, harnessDims(run));
}

/** Exit 70 is a fault the emulator reported as a finding; anything else is a failure to run. */
function failedRun(v: ManifestVariant, e: unknown): string {
  const err = e as { stdout?: string | Buffer; stderr?: string | Buffer; status?: number; code?: number; message: string };
  if ((err.code === 70 || err.status === 70) && err.stdout !== undefined) return err.stdout.toString();
  throw new TidarcError('runtime', `the emulator of ${v.name} failed (${(err.stderr?.toString() || err.message).trim().split('\n')[0]})`);
}

function result(run: HarnessRun, stdout: string, fatal: boolean, raw: Buffer | undefined): EmulatorResult {
  const findings: EmulatorFinding[] = [];
  const counts: Record<string, number> = {};
  let completed = false;
  let timing: EmulatorResult['timing'];
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const rec = JSON.parse(line) as Record<string, unknown>;
    if (typeof rec['finding'] === 'string') {
      findings.push({ kind: rec['finding'], kernel: rec['kernel'] as string, block: rec['block'] as [number, number, number], thread: rec['thread'] as [number, number, number], message: rec['message'] as string });
    } else if (typeof rec['count'] === 'string') {
      counts[rec['count']] = rec['n'] as number;
    } else if (rec['done'] === true) {
      completed = rec['completed'] === true;
    } else if (typeof rec['timing'] === 'object' && rec['timing'] !== null) {
      timing = rec['timing'] as EmulatorResult['timing'];
    }
  }
  const dims = harnessDims(run);
  const outputs = fatal || !raw || !completed ? undefined : harnessOutputs(raw, dims);
  if (!outputs) return { ...poisonedOutputs(dims), findings, counts, completed: false };
  return { ...outputs, findings, counts, completed, ...(timing ? { timing } : {}) };
}

export async function runEmulator(exe: string, v: ManifestVariant, inputs: EmulatorInputs, workDir: string, tag: string): Promise<EmulatorResult> {
  const run = harnessRun(v, inputs, join(workDir, `${tag}.in`), join(workDir, `${tag}.out`));
  await writeFile(run.inPath, inputBytes(run, inputs));
  let stdout: string, fatal = false;
  try {
    stdout = (await exec(exe, harnessArgv(run), { maxBuffer: 64 << 20 })).stdout;
  } catch (e) {
    stdout = failedRun(v, e);
    fatal = true;
  }
  // A run that stopped early (a CUDA error on a GPU) may have written no outputs.
  return result(run, stdout, fatal, fatal ? undefined : await readFile(run.outPath).catch(() => undefined));
}

/** The same, blocking: for runtimes that call kernels synchronously (the emulated backend). */
export function runEmulatorSync(exe: string, v: ManifestVariant, inputs: EmulatorInputs, workDir: string, tag: string): EmulatorResult {
  const run = harnessRun(v, inputs, join(workDir, `${tag}.in`), join(workDir, `${tag}.out`));
  writeFileSync(run.inPath, inputBytes(run, inputs));
  let stdout: string, fatal = false;
  try {
    stdout = execFileSync(exe, harnessArgv(run), { maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  } catch (e) {
    stdout = failedRun(v, e);
    fatal = true;
  }
  return result(run, stdout, fatal, fatal || !existsSync(run.outPath) ? undefined : readFileSync(run.outPath));
}
