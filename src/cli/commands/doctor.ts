/**
 * `tidarc doctor`: what this machine offers tidarc (compilers, native addon, CUDA driver and
 * GPU, host memory) and, for what is missing, why. Exit code 0 when some backend works (the CPU one: the
 * native addon and a C++ compiler; cuda: what --backend auto picks it for); else 1, the report
 * still printed and its last line saying so.
 */
import type { Command } from 'commander';
import { findCxx, findNvcc } from '../../build/toolchain.js';
import { chooseBackend } from '../../load/model-parts.js';
import { describeHostMemory } from '../../load/host-memory.js';
import { readHostMemory } from '../../load/host-memory-now.js';
import { loadNative } from '../../runtime/native.js';
import { CudaDevice } from '../../runtime/cuda/device.js';
import { formatBytes } from '../../runtime/cuda/device-memory.js';
import { CliExit, type CliIo } from '../io.js';

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** Every check of `tidarc doctor`, in its order (exported for tests). */
export async function doctorChecks(): Promise<Check[]> {
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
  if (cuda.available) out.push(deviceMemory());
  out.push(hostMemory());
  out.push({ name: 'BLAS', ok: true, detail: 'not needed: matrix products use tidarc\'s own threaded CPU kernels' });
  return out;
}

/** Device 0's memory now (cuMemGetInfo): what a model's weights and runners must fit in. */
function deviceMemory(): Check {
  try {
    const device = CudaDevice.open(0);
    try {
      const m = device.memory();
      return { name: 'GPU memory', ok: true, detail: `${formatBytes(m.freeBytes)} free of ${formatBytes(m.totalBytes)} on ${device.info.name}` };
    } finally {
      device.close();  // the primary context too, once no other user of this process holds the device
    }
  } catch (e) {
    return { name: 'GPU memory', ok: false, detail: (e as Error).message };
  }
}

/** The host's memory now (/proc/meminfo within the memory cgroups' limits, naming the one that binds): what a checkpoint, read whole, must fit in (load/host-memory.ts). */
function hostMemory(): Check {
  const m = readHostMemory();
  return m ? { name: 'host memory', ok: true, detail: describeHostMemory(m) } : { name: 'host memory', ok: false, detail: 'could not be read (a load then does not check it)' };
}

/** What --backend auto picks here, and why (cuda only where it can run). */
async function autoBackend(): Promise<{ line: string; cuda: boolean }> {
  try {
    const d = await chooseBackend('auto');
    return { line: `${d.backend} (${d.reason})`, cuda: d.backend === 'cuda' };
  } catch (e) {
    return { line: `cannot decide: ${(e as Error).message}`, cuda: false };
  }
}

/** The last line where no backend can run here. */
const NO_BACKEND = 'no backend is usable here: the cpu backend needs the native addon and a C++ compiler (set CXX), cuda a usable GPU, its driver and nvcc (see above)';

const HELP_AFTER = `
Examples:
  $ tidarc doctor                  # one line per check, then what --backend auto picks and why
  $ tidarc doctor --json           # the checks as [{"name", "ok", "detail"}], for scripts
  $ CXX=clang++ tidarc doctor      # the cpu backend's compiler: is this one found, which version?

Exit code 0 when a backend is usable (cpu: the native addon and a C++ compiler; cuda: a GPU,
its driver and nvcc), 1 when none is.
`;

export function registerDoctorCommand(program: Command, io: CliIo): void {
  program
    .command('doctor')
    .description('Print what this machine offers tidarc (compilers, native addon, CUDA driver, GPU) and why anything is missing. Exit code 1 when no backend is usable.')
    .option('--json', 'print [{"name", "ok", "detail"}] (with no usable backend: exit code 1, and a line on stderr that says so)')
    .addHelpText('after', HELP_AFTER)
    .action(async (flags: { json?: boolean }) => {
      const list = await doctorChecks();
      const cpu = list.find((c) => c.name === 'native addon')!.ok && list.find((c) => c.name === 'C++ compiler')!.ok;
      const auto = await autoBackend();
      if (flags.json) {
        io.stdout(`${JSON.stringify(list, null, 2)}\n`);
        if (!cpu && !auto.cuda) io.stderr(`tidarc: ${NO_BACKEND}\n`);
      } else {
        for (const c of list) io.stdout(`${c.ok ? 'ok     ' : 'missing'}  ${c.name.padEnd(18)} ${c.detail}\n`);
        io.stdout(`backend auto: ${auto.line}${cpu ? '' : ' (the cpu backend is NOT usable: see above)'}\n`);
        if (!cpu && !auto.cuda) io.stdout(`${NO_BACKEND}\n`);
      }
      if (!cpu && !auto.cuda) throw new CliExit(1);
    });
}
