/**
 * `tidarc emulated-driver`: builds the emulated CUDA driver (a libcuda.so.1 over the SIMT
 * emulator) and prints its path, for $TIDARC_LIBCUDA: the cuda backend then runs on a machine
 * without a GPU, every kernel access checked.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { buildEmulatedDriver } from '../../emulate/emulated-driver.js';
import { cacheField, defaultCacheDir } from '../../build/kernel-cache.js';
import type { CliIo } from '../io.js';
import { parsePathOption } from '../options.js';

const HELP_AFTER = `
Examples:
  $ export TIDARC_LIBCUDA=$(tidarc emulated-driver)
  $ tidarc run models/tidar-tiny-code --prompt "def add(a, b):" --backend cuda --max-tokens 16

The runtime dlopens $TIDARC_LIBCUDA instead of libcuda.so.1. The emulated driver reports one
device ("tidarc emulated GPU", sm_90); each module the runtime loads (X.fatbin) is the sibling
X.emu.so, which tidarc builds from the same .cu with g++. It runs every CUDA thread as a fiber:
correct and checked (out-of-bounds, races, barriers: a launch with a finding fails with
CUDA_ERROR_LAUNCH_FAILED), and thousands of times slower than a GPU. For tests and debugging.
`;

export function registerEmulatedDriverCommand(program: Command, io: CliIo): void {
  program
    .command('emulated-driver')
    .description('Build the emulated CUDA driver (libcuda.so.1 on the CPU emulator) and print its path, for TIDARC_LIBCUDA.')
    .option('--out <dir>', 'where to build it: a new, empty or earlier emulated-driver directory (default: the tidarc cache, $TIDARC_CACHE or ~/.cache/tidarc)')
    .addHelpText('after', HELP_AFTER)
    .action(async (flags: { out?: string }) => {
      // A first build is g++ over the emulator (tens of seconds) and stdout is the path alone
      // (for $(...)): say on stderr what the wait is; an up-to-date library prints nothing more.
      const onBuild = (): void => io.stderr('building the emulated CUDA driver with g++ (once per tidarc version and compiler; about 20-60 s)\n');
      const path = flags.out === undefined
        ? await buildEmulatedDriver(join(defaultCacheDir(), 'emulated-driver'), { outField: cacheField(), onBuild })
        : await buildEmulatedDriver(parsePathOption('--out', flags.out), { outField: '--out', onBuild });
      io.stdout(`${path}\n`);
    });
}
