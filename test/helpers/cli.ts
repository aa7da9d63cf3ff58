/** Runs the CLI in-process and captures what it writes, as a user's terminal would see it. */
import { afterAll, beforeAll, expect } from 'vitest';
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

/**
 * TIDARC_DEBUG unset while the calling file's tests run, restored after them: with it set the CLI
 * prints stack traces, which some tests rule out. Call at the top level of a test file.
 */
export function withoutDebugEnv(): void {
  let saved: string | undefined;
  beforeAll(() => {
    saved = process.env['TIDARC_DEBUG'];
    delete process.env['TIDARC_DEBUG'];
  });
  afterAll(() => {
    if (saved !== undefined) process.env['TIDARC_DEBUG'] = saved;
  });
}
