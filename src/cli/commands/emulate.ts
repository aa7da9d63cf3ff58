/**
 * `tidarc emulate DIR`: runs the generated CUDA kernels of a compiled directory on the CPU
 * SIMT emulator and checks them against the float64 reference. Exit code 1 on a mismatch
 * beyond tolerance or on any emulator finding.
 */
import type { Command } from 'commander';
import { TidarcError } from '../../errors.js';
import { emulateDirectory, type EmulateRow } from '../../emulate/emulate-dir.js';
import { parseArch } from '../../codegen/arch.js';
import type { CliIo } from '../io.js';
import { optionText, parseIntegerList, parseIntegerOption, parseNameList } from '../options.js';

interface EmulateFlags {
  variant?: string;
  batch: string;
  prefix: string;
  splits: string;
  seed: string;
  jobs?: string;
  json?: boolean;
  on: string;
  arch: string;
}

const HELP_AFTER = `
Examples:
  $ tidarc compile --out build/tiny && tidarc emulate build/tiny
  $ tidarc emulate generated/qwen3-8b --variant tidar_k4 --batch 2 --prefix 37,100 --splits 1,4
  $ tidarc emulate build/tiny --json > emu.json
  $ tidarc emulate build/qwen3-8b --on gpu --arch sm_90   # the same checks on a GPU (nvcc + driver)

Each variant is checked once per split count on seeded random inputs (outputs poisoned with
NaN first; the unused cache tail holds NaN). Findings name the kernel, block, thread and
address: out-of-bounds, race (shared memory between barriers), uninitialized-read, cp-async
(read before wait), barrier (not reached by every thread), warp-divergence, alignment.
The emulator is not a GPU: it does not model timing or memory ordering beyond barriers.
`;


function parseTarget(text: string): 'emulator' | 'gpu' {
  if (text !== 'emulator' && text !== 'gpu') throw new TidarcError('invalid-argument', 'unknown target', { field: '--on', value: text, allowed: 'emulator, gpu' });
  return text;
}

function renderTable(rows: readonly EmulateRow[]): string {
  const lines = ['variant        splits  prefix          max error  mean error  tolerance  lse error  result'];
  for (const r of rows) {
    const verdict = r.ok ? 'ok' : !r.completed ? 'STOPPED' : r.findings.length > 0 ? 'FINDINGS' : 'MISMATCH';
    lines.push(`${r.variant.padEnd(14)} ${String(r.splits).padStart(6)}  ${r.prefixLen.join(',').padEnd(14)}  ${r.maxError.toExponential(2).padStart(9)}  ${r.meanError.toExponential(2).padStart(10)}  ${r.tolerance.toExponential(1).padStart(9)}  ${r.lseMaxError.toExponential(2).padStart(9)}  ${verdict}`);
    if (r.timing) lines.push(`    ${r.timing.device}: ${r.timing.ms.toFixed(3)} ms (kernels, CUDA events)`);
    for (const [kind, n] of Object.entries(r.findingCounts)) lines.push(`    ${n} ${kind} finding(s)`);
    for (const f of r.findings.slice(0, 5)) lines.push(`    ${f.kind}: ${f.kernel} block (${f.block.join(',')}) thread (${f.thread.join(',')}): ${f.message}`);
  }
  const bad = rows.filter((r) => !r.ok).length;
  lines.push(bad === 0 ? `all ${rows.length} checks passed` : `${bad} of ${rows.length} checks failed`);
  return `${lines.join('\n')}\n`;
}

export function registerEmulateCommand(program: Command, io: CliIo): void {
  program
    .command('emulate')
    .description('Run the generated CUDA kernels of a compiled directory on the CPU SIMT emulator and check them against a float64 reference.')
    .argument('<dir>', 'a directory written by `tidarc compile`, e.g. tidarc-out/tiny')
    .option('--variant <name,...>', 'only these variants, e.g. tidar_k4 or tidar_k4,ar (default: every variant)')
    .option('--batch <b>', 'sequences per launch, 1..16, e.g. 3', '2')
    .option('--prefix <L,...>', 'cached prefix length per sequence, at most --batch of them, e.g. 17,0,130 with --batch 3; missing ones are L, L-19, ...', '37')
    .option('--splits <s,...>', 'split-KV counts to run, 1..16, e.g. 1,4', '1,3')
    .option('--seed <s>', 'random seed of the inputs, e.g. 7', '1')
    .option('--jobs <n>', 'parallel builds and runs (default: all cores), e.g. 2')
    .option('--on <target>', 'emulator (g++, any machine) or gpu (nvcc and a GPU: the same checks on the device)', 'emulator')
    .option('--arch <sm>', 'the GPU architecture with --on gpu, e.g. sm_80', 'sm_90')
    .option('--json', 'print [{"variant", "maxError", "meanError", "tolerance", "findings", ...}] instead of a table')
    .addHelpText('after', HELP_AFTER)
    .action(async (dir: string, flags: EmulateFlags) => {
      const batch = parseIntegerOption('--batch', flags.batch, 1, 16);
      const prefix = parseIntegerList('--prefix', flags.prefix, 0, 65536);
      // One length a sequence: the ones past --batch were dropped without a word (--prefix 17,0,130 ran 17,0).
      if (prefix.length > batch) {
        throw new TidarcError('invalid-argument', `${prefix.length} prefix lengths for ${batch} sequence${batch === 1 ? '' : 's'}`, {
          field: '--prefix', value: optionText(flags.prefix), allowed: `at most one length a sequence (--batch ${batch}), or --batch ${prefix.length}`,
        });
      }
      const rows = await emulateDirectory(dir, {
        ...(flags.variant === undefined ? {} : { variants: parseNameList('--variant', flags.variant, 'tidar_k4,ar') }),
        batch,
        prefix,
        splits: parseIntegerList('--splits', flags.splits, 1, 16),
        seed: parseIntegerOption('--seed', flags.seed, 0, 2 ** 31 - 1),
        ...(flags.jobs === undefined ? {} : { jobs: parseIntegerOption('--jobs', flags.jobs, 1, 256) }),
        target: parseTarget(flags.on),
        arch: parseArch(flags.arch).name,
        log: flags.json ? () => undefined : (line) => io.stdout(`${line}\n`),
      });
      io.stdout(flags.json ? `${JSON.stringify(rows, null, 2)}\n` : renderTable(rows));
      if (rows.some((r) => !r.ok)) {
        const bad = rows.filter((r) => !r.ok).map((r) => `${r.variant} (splits ${r.splits})`);
        const where = flags.on === 'gpu' ? `on the GPU (${flags.arch})` : 'on the emulator';
        throw new TidarcError('runtime', `kernels failed their check ${where}: ${bad.join(', ')}`);
      }
    });
}
