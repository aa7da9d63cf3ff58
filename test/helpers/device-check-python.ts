/**
 * Running the device check's Python (scripts/device-check) from a test: whether python3 is
 * here (the tests that need it skip without it), and one call's exit code and output, a
 * failure returned rather than thrown so the test can show its stderr.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** scripts/device-check: the folder its modules import from (the calls' working directory). */
export const DEVICE_CHECK_DIR = resolve('scripts/device-check');

export const hasPython: boolean = await exec('python3', ['-c', 'pass']).then(() => true, () => false);

/** python3 `args` in DEVICE_CHECK_DIR. */
export async function devicePy(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('python3', args, { env, maxBuffer: 64 << 20, cwd: DEVICE_CHECK_DIR });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}
