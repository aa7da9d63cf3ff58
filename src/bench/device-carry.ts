/**
 * What the GPU session hands the device tool (README "On a GPU: the device check"): the one
 * command, what it carries and its time limit, and whether the bundle and the working tree fit
 * what the tool moves. Pure: scripts/device-check/prepare.ts measures the sizes and prints these.
 *
 * The tool copies the tracked and untracked-not-ignored files of the repository plus the ignored
 * paths named in `carry` (64 MiB in all); the bundle lives under out/ (ignored), so it must be
 * carried, by a path relative to the repository root.
 */
import { TidarcError } from '../errors.js';

/** The device tool's limit on what travels: working tree + carried paths. */
export const CARRY_LIMIT_BYTES = 64 * 2 ** 20;
/** The device check's default budget on a GPU (device_check.py GPU_BUDGET): the kernel parts, the runtime, e2e and the searches. */
export const DEVICE_BUDGET_S = 420;
/**
 * Seconds the command may take past its budget: Python and torch imports, a part killed 20 s
 * past its window (device_check.py GRACE), the report. The tool's limit is 600 s a command.
 */
export const DEVICE_SLACK_S = 60;

export interface DeviceRunCall {
  readonly command: string;
  readonly carry: readonly string[];
  readonly timeout_s: number;
}

/** The device tool's `run` call for a bundle at `bundleDir` (relative to the repository root). */
export function deviceRunCall(bundleDir: string, budgetS = DEVICE_BUDGET_S): DeviceRunCall {
  if (bundleDir.startsWith('/') || bundleDir.split('/').includes('..')) {
    throw new TidarcError('invalid-argument', 'the bundle must lie inside the repository: the device tool carries repository-relative paths',
      { field: '--out', value: bundleDir, allowed: 'a path under the repository root, e.g. out/device-check' });
  }
  const timeout = budgetS + DEVICE_SLACK_S;
  if (timeout > 600) {
    throw new TidarcError('invalid-argument', 'the device command would outlast the device tool\'s 600 s a command', { field: '--budget', value: budgetS, allowed: `at most ${600 - DEVICE_SLACK_S}` });
  }
  return {
    command: `PYTHONUNBUFFERED=1 python3 scripts/device-check/device_check.py --bundle ${bundleDir} --out $OUT --budget ${budgetS}`,
    carry: [bundleDir],
    timeout_s: timeout,
  };
}

/** The sizes that travel; an error when they pass the tool's limit (the call would be refused before it starts a machine). */
export function checkCarry(sizes: { readonly treeBytes: number; readonly bundleBytes: number }, bundleDir: string): { readonly totalBytes: number; readonly spareBytes: number } {
  const totalBytes = sizes.treeBytes + sizes.bundleBytes;
  if (totalBytes > CARRY_LIMIT_BYTES) {
    throw new TidarcError('invalid-argument', `the working tree (${mib(sizes.treeBytes)}) and the bundle (${mib(sizes.bundleBytes)}) are more than the device tool carries`,
      { field: 'carry', value: bundleDir, allowed: `at most ${mib(CARRY_LIMIT_BYTES)} in all` });
  }
  return { totalBytes, spareBytes: CARRY_LIMIT_BYTES - totalBytes };
}

export function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
