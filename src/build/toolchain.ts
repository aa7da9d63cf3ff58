/**
 * Finds the external compilers (the I/O edge): nvcc for the CUDA kernels, a C++ compiler
 * for the CPU library. NVCC and CXX in the environment override the defaults.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Tool {
  readonly path: string;
  /** First line of `--version` that names the release. */
  readonly version: string;
}

export type ToolProbe = { readonly found: true; readonly tool: Tool } | { readonly found: false; readonly reason: string };

async function probe(candidates: readonly string[], pick: (out: string) => string): Promise<ToolProbe> {
  const tried: string[] = [];
  for (const path of candidates) {
    try {
      const { stdout } = await run(path, ['--version'], { timeout: 20_000 });
      return { found: true, tool: { path, version: pick(stdout) } };
    } catch (e) {
      tried.push(`${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message.split('\n')[0]}`);
    }
  }
  return { found: false, reason: tried.join('; ') };
}

export function findNvcc(): Promise<ToolProbe> {
  const env = process.env['NVCC'];
  const candidates = env ? [env] : ['nvcc', ...(existsSync('/usr/local/cuda/bin/nvcc') ? ['/usr/local/cuda/bin/nvcc'] : [])];
  return probe(candidates, (out) => out.split('\n').find((l) => /release/.test(l))?.trim() ?? out.trim().split('\n').pop()!.trim());
}

export function findCxx(): Promise<ToolProbe> {
  const env = process.env['CXX'];
  return probe(env ? [env] : ['g++', 'c++', 'clang++'], (out) => out.split('\n')[0]!.trim());
}
