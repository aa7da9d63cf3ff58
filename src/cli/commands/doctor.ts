/**
 * `tidarc doctor`: what this machine offers tidarc (compilers, native addon, CUDA driver and
 * GPU) and, for what is missing, why. Exit code 0 when the CPU path works.
 */
import type { Command } from 'commander';
import { findCxx, findNvcc } from '../../build/toolchain.js';
import { chooseBackend } from '../../load/model-parts.js';
import { loadNative } from '../../runtime/native.js';
import type { CliIo } from '../io.js';

interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

async function checks(): Promise<Check[]> {
  const [cxx, nvcc] = await Promise.all([findCxx(), findNvcc()]);
  const out: Check[] = [{ name: 'node', ok: true, detail: process.version }];
  let cuda = { available: false, reason: 'the native addon is not loaded' };
  try {
    const native = loadNative();
    out.push({ name: 'native addon', ok: true, detail: `loaded (ABI ${native.abiVersion})` });
    cuda = native.cudaStatus();
  } catch (e) {
    out.push({ name: 'native addon', ok: false, detail: (e as Error).message });
  }
  out.push({ name: 'C++ compiler', ok: cxx.found, detail: cxx.found ? `${cxx.tool.path}: ${cxx.tool.version} (CPU kernels, emulator)` : cxx.reason });
  out.push({ name: 'nvcc', ok: nvcc.found, detail: nvcc.found ? `${nvcc.tool.path}: ${nvcc.tool.version} (fatbins, ptxas reports)` : `${nvcc.reason}; CUDA sources are written, not compiled` });
  out.push({ name: 'CUDA driver / GPU', ok: cuda.available, detail: cuda.reason });
  out.push({ name: 'BLAS', ok: true, detail: 'not needed: matrix products use tidarc\'s own threaded CPU kernels' });
  return out;
}

/** What --backend auto picks here, and why. */
async function autoBackend(): Promise<string> {
  try {
    const d = await chooseBackend('auto');
    return `${d.backend} (${d.reason})`;
  } catch (e) {
    return `cannot decide: ${(e as Error).message}`;
  }
}

export function registerDoctorCommand(program: Command, io: CliIo): void {
  program
    .command('doctor')
    .description('Print what this machine offers tidarc (compilers, native addon, CUDA driver, GPU) and why anything is missing.')
    .option('--json', 'print [{"name", "ok", "detail"}]')
    .addHelpText('after', '\nExample:\n  $ tidarc doctor\n')
    .action(async (flags: { json?: boolean }) => {
      const list = await checks();
      if (flags.json) {
        io.stdout(`${JSON.stringify(list, null, 2)}\n`);
      } else {
        for (const c of list) io.stdout(`${c.ok ? 'ok     ' : 'missing'}  ${c.name.padEnd(18)} ${c.detail}\n`);
        const cpu = list.find((c) => c.name === 'native addon')!.ok && list.find((c) => c.name === 'C++ compiler')!.ok;
        io.stdout(`backend auto: ${await autoBackend()}${cpu ? '' : ' (the cpu backend is NOT usable: see above)'}\n`);
      }
    });
}
