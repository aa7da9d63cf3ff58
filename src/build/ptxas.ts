/**
 * Parses `ptxas -v` output (nvcc -Xptxas -v prints it on stderr). sm_80 also reports
 * cmem on the "Used" line, sm_90 does not; static smem appears only when a kernel has some.
 * Result: arch -> kernel -> figures.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { PtxasReport } from '../codegen/manifest.js';

export type PtxasByArch = Record<string, Record<string, PtxasReport>>;

const num = (re: RegExp, line: string): number | undefined => {
  const m = re.exec(line);
  return m ? Number(m[1]) : undefined;
};

export function parsePtxasReport(text: string): PtxasByArch {
  const out: PtxasByArch = {};
  let kernel: string | undefined;
  let arch: string | undefined;
  let props: Partial<PtxasReport> = {};
  for (const line of text.split('\n')) {
    const entry = /Compiling entry function '([^']+)' for '([^']+)'/.exec(line);
    if (entry) {
      kernel = entry[1]!;
      arch = entry[2]!;
      props = {};
      continue;
    }
    if (!kernel || !arch) continue;
    if (/bytes stack frame/.test(line)) {
      props = {
        stackBytes: num(/(\d+) bytes stack frame/, line) ?? 0,
        spillStoreBytes: num(/(\d+) bytes spill stores/, line) ?? 0,
        spillLoadBytes: num(/(\d+) bytes spill loads/, line) ?? 0,
      };
      continue;
    }
    const registers = num(/Used (\d+) registers/, line);
    if (registers !== undefined) {
      const cmem = num(/(\d+) bytes cmem\[0\]/, line);
      const barriers = num(/used (\d+) barriers/, line);
      const report: PtxasReport = {
        registers,
        stackBytes: props.stackBytes ?? 0,
        spillStoreBytes: props.spillStoreBytes ?? 0,
        spillLoadBytes: props.spillLoadBytes ?? 0,
        sharedBytes: num(/(\d+) bytes smem/, line) ?? 0,
        ...(cmem === undefined ? {} : { constantBytes: cmem }),
        ...(barriers === undefined ? {} : { barriers }),
      };
      (out[arch] ??= {})[kernel] = report;
      kernel = undefined;
    }
  }
  return out;
}

/** One line per kernel that spills or uses a stack frame, for the compile's progress output. */
export function ptxasWarnings(variant: string, report: PtxasByArch): string[] {
  const warnings: string[] = [];
  for (const [arch, kernels] of Object.entries(report)) {
    for (const [kernel, r] of Object.entries(kernels)) {
      if (r.spillStoreBytes > 0 || r.spillLoadBytes > 0) {
        warnings.push(`${variant} (${arch}): ${kernel} spills ${r.spillStoreBytes} bytes stored / ${r.spillLoadBytes} loaded with ${r.registers} registers`);
      }
    }
  }
  return warnings;
}

/**
 * ptxas's "Potential Performance Loss" diagnostics (the C75xx family, printed as `ptxas info`,
 * so the build succeeds): on sm_90a e.g. C7520, wgmmas serialized because one sits on a path
 * ptxas cannot prove uniform: every wgmma then waits for the one before. One trimmed line each.
 */
export function ptxasPerformanceLosses(text: string): string[] {
  return text.split('\n').filter((line) => /Potential Performance Loss/.test(line)).map((line) => line.replace(/^ptxas\s+\w+\s*:\s*/, '').trim());
}

/**
 * ptxas's figures of one CUDA source for one arch without a build (nvcc -cubin -Xptxas -v into a
 * scratch directory): registers for tools that predict or pick split counts (bench:attention,
 * the device bundle). Headers are found beside the source.
 */
export async function ptxasOfSource(nvccPath: string, source: string, arch: string): Promise<Record<string, PtxasReport>> {
  const dir = await mkdtemp(join(tmpdir(), 'tidarc-ptxas-'));
  // nvcc runs in the source's directory (its headers are there), so a relative path must not stay relative.
  const path = resolve(source);
  try {
    const { stderr } = await promisify(execFile)(nvccPath, ['-cubin', '-O3', '-std=c++17', `-arch=${arch}`, '-Xptxas', '-v', '-o', join(dir, 'out.cubin'), path],
      { cwd: dirname(path), maxBuffer: 64 << 20 });
    return parsePtxasReport(stderr)[arch] ?? {};
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
