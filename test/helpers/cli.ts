/** Runs the CLI in-process and captures what it writes, as a user's terminal would see it. */
import { expect } from 'vitest';
import { runCli } from '../../src/cli/main.js';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runTidarc(...argv: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) });
  return { code, stdout, stderr };
}

/** Exit code 1, nothing on stdout, exactly one `tidarc: error:` line holding every piece, no stack trace. */
export function expectOneErrorLine(r: Run, ...pieces: string[]): void {
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n');
  expect(lines.length).toBe(2); // one line and its newline
  expect(lines[0]).toMatch(/^tidarc: error: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  for (const piece of pieces) expect(lines[0]).toContain(piece);
}
