/**
 * The GPU operators' module (templates/cuda/tidarc_ops.cu) for a test that runs CudaDevice in a
 * child process: on the emulated driver, its .emu.so beside a .fatbin path that is never
 * written (and the driver library, which the child gets as $TIDARC_LIBCUDA); on a GPU, the
 * fatbin built by nvcc for sm_80 and sm_90 (and no $TIDARC_LIBCUDA: the real libcuda).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findNvcc } from '../../src/build/toolchain.js';
import { ARCHES } from '../../src/codegen/arch.js';
import { nvccFlags } from '../../src/codegen/generate.js';
import { loadNative } from '../../src/runtime/native.js';
import { packageRoot } from '../../src/util/paths.js';
import { sharedEmulatedDriver, sharedOpsModule } from './emulated-driver.js';

const exec = promisify(execFile);

export interface OpsModule {
  /** What CudaDevice.kernel loads. */
  readonly module: string;
  /** The child's environment. */
  readonly env: NodeJS.ProcessEnv;
}

/** Whether this machine has a GPU the real driver opens (no $TIDARC_LIBCUDA), and nvcc to build for it. */
export async function gpuAvailable(): Promise<boolean> {
  return process.env['TIDARC_LIBCUDA'] === undefined && loadNative().cudaStatus().available && (await findNvcc()).found;
}

export async function opsModule(root: string, on: 'emulated' | 'gpu'): Promise<OpsModule> {
  const templates = join(packageRoot(), 'templates');
  const source = join(templates, 'cuda', 'tidarc_ops.cu');
  const module = join(root, `tidarc_ops_${on}.fatbin`);
  if (on === 'gpu') {
    const nvcc = await findNvcc();
    if (!nvcc.found) throw new Error(`nvcc: ${nvcc.reason}`);
    await exec(nvcc.tool.path, [...nvccFlags([ARCHES.sm_80, ARCHES.sm_90]), '-o', module, source], { maxBuffer: 64 << 20 });
    const env = { ...process.env };
    delete env['TIDARC_LIBCUDA'];
    return { module, env };
  }
  // Built once for every test file (test/helpers/emulated-driver.ts): the children only load them.
  const [driver, shared] = await Promise.all([sharedEmulatedDriver(), sharedOpsModule()]);
  return { module: shared, env: { ...process.env, TIDARC_LIBCUDA: driver } };
}
