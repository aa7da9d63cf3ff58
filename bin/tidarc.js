#!/usr/bin/env node
import { runCli } from '../dist/src/cli/main.js';
import { installInterruptCleanup } from '../dist/src/fs/interrupt.js';

// Ctrl-C / SIGTERM: unfinished output is removed, exit code 130 / 143 (src/fs/interrupt.ts).
installInterruptCleanup();

// A closed pipe (`tidarc mask ... | head -1`) ends the command quietly instead of crashing.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await runCli(process.argv.slice(2));
