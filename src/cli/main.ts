/**
 * The CLI edge: parses arguments, runs a command, turns any error into one line on
 * stderr and a non-zero exit code (a stack trace only with TIDARC_DEBUG set).
 */
import { Command, CommanderError } from 'commander';
import { TidarcError } from '../errors.js';
import { type CliIo, CliExit, processIo } from './io.js';
import { registerBenchStepCommand } from './commands/bench-step.js';
import { registerCompileCommand } from './commands/compile.js';
import { registerDoctorCommand } from './commands/doctor.js';
import { registerEmulateCommand } from './commands/emulate.js';
import { registerEmulatedDriverCommand } from './commands/emulated-driver.js';
import { registerGraphCommand } from './commands/graph.js';
import { registerImportHfCommand } from './commands/import-hf.js';
import { registerInitModelCommand } from './commands/init-model.js';
import { registerMaskCommand } from './commands/mask.js';
import { registerRunCommand } from './commands/run.js';
import { registerTuneCommand } from './commands/tune.js';
import { TIDARC_VERSION } from '../version.js';

/**
 * Commander reports its own parse errors (unknown option, missing option value, with an
 * optional "Did you mean" on a second line) through outputError. Render them like every
 * other error: one `tidarc: error: ...` line.
 */
function commanderErrorLine(text: string, write: (s: string) => void): void {
  write(`tidarc: ${text.trim().replace(/\s*\n\s*/g, ' ')} (run with --help for usage)\n`);
}

const TOP_HELP = `
Examples:
  $ tidarc compile                                  # bundled tiny model -> tidarc-out/tiny
  $ tidarc compile examples/qwen3-8b.json --draft 4,8,16 --arch sm_80,sm_90 --out build/qwen3-8b
  $ tidarc import-hf ~/models/Qwen3-8B/config.json --draft 16 --out qwen3-8b.json
  $ tidarc emulate tidarc-out/tiny                   # the generated CUDA, run on the CPU emulator
  $ tidarc mask --kind tidar-decode --draft 3 --prefix 3
Run 'tidarc <command> --help' for every option of a command. TIDARC_DEBUG=1 prints stack traces.
`;

export function buildProgram(io: CliIo): Command {
  const program = new Command('tidarc')
    .description('Compile TiDAR models into fused attention kernels per draft length and GPU arch (CUDA + portable C++) and a typed TypeScript library.')
    .version(TIDARC_VERSION)
    .addHelpText('after', TOP_HELP)
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr, outputError: commanderErrorLine })
    .exitOverride();
  registerBenchStepCommand(program, io);
  registerCompileCommand(program, io);
  registerDoctorCommand(program, io);
  registerEmulateCommand(program, io);
  registerEmulatedDriverCommand(program, io);
  registerGraphCommand(program, io);
  registerImportHfCommand(program, io);
  registerInitModelCommand(program, io);
  registerMaskCommand(program, io);
  registerRunCommand(program, io);
  registerTuneCommand(program, io);
  for (const cmd of program.commands) cmd.exitOverride().configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  return program;
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CliExit) return err.code;
    if (err instanceof CommanderError) {
      // Help and version exit with code 0; commander already printed its message.
      return err.exitCode;
    }
    if (process.env['TIDARC_DEBUG']) io.stderr(`${(err as Error).stack ?? String(err)}\n`);
    const message = err instanceof TidarcError ? err.message : (err as Error).message ?? String(err);
    io.stderr(`tidarc: error: ${message}\n`);
    return 1;
  }
}
