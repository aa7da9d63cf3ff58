/**
 * The GPUs the device check's predictions are made for. Sessions are lent an H200 or an H100 SXM,
 * so the bundle carries each prediction once per machine here (`byMachine`, keyed by `key`) beside
 * the H200's in the record's own fields (the machine the planner plans for), and machines.json
 * says which GPU name each key is for. The check (scripts/device-check/machines.py) reads the
 * GPU's name and takes that machine's predictions, or the H200's labelled "not this GPU" for a GPU
 * none matches. One source of truth: every figure comes from the TypeScript cost models here;
 * Python only picks among them.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { H100_SXM, H200, type Machine } from '../codegen/machine.js';

export interface PredictedMachine {
  /** The key of `byMachine` and of device-check.json's predictedFor. */
  readonly key: string;
  readonly machine: Machine;
  /** A regular expression (the same in JavaScript and Python's re) that the GPU's name (torch / nvidia-smi) matches. */
  readonly gpuName: string;
}

/** H200 first: the default, the one the planner plans for. */
export const PREDICTED_MACHINES: readonly PredictedMachine[] = [
  // "NVIDIA H200" (and its NVL board: the same memory); not "NVIDIA GH200 ..." (no word boundary before its H).
  { key: 'H200', machine: H200, gpuName: '\\bH200\\b' },
  // "NVIDIA H100 80GB HBM3" (SXM5), or a name that says SXM; not "H100 PCIe" (114 SMs, HBM2e) nor "H100 NVL".
  { key: 'H100', machine: H100_SXM, gpuName: '\\bH100\\b.*\\b(HBM3|SXM)' },
];
export const DEFAULT_PREDICTED = PREDICTED_MACHINES[0]!;

export const MACHINES_FILE = 'machines.json';

/** The machine whose predictions a GPU of this name gets; `matched: false` when none is for it (the default's then). */
export function machineForGpu(name: string | undefined): { readonly predicted: PredictedMachine; readonly matched: boolean } {
  const hit = name === undefined ? undefined : PREDICTED_MACHINES.find((m) => new RegExp(m.gpuName).test(name));
  return { predicted: hit ?? DEFAULT_PREDICTED, matched: hit !== undefined };
}

/** f's result for every machine, by key. */
export function byMachine<T>(f: (machine: Machine) => T): Record<string, T> {
  return Object.fromEntries(PREDICTED_MACHINES.map((m) => [m.key, f(m.machine)]));
}

export interface MachinesFile {
  readonly format: 1;
  readonly default: string;
  readonly machines: readonly { readonly key: string; readonly name: string; readonly gpuName: string; readonly copyTBs: number; readonly matmulTflops: number; readonly sms: number }[];
}

export function machinesFile(): MachinesFile {
  return {
    format: 1, default: DEFAULT_PREDICTED.key,
    machines: PREDICTED_MACHINES.map((m) => ({ key: m.key, name: m.machine.name, gpuName: m.gpuName, copyTBs: m.machine.copyBytesPerS / 1e12, matmulTflops: m.machine.matmulFlops / 1e12, sms: m.machine.sms })),
  };
}

export async function writeMachinesFile(outDir: string): Promise<MachinesFile> {
  const f = machinesFile();
  await writeFile(join(outDir, MACHINES_FILE), `${JSON.stringify(f, null, 1)}\n`);
  return f;
}
