/**
 * `tidarc tune`: autotuning benchmark runs for a model's attention kernels (CPU backend here;
 * the CUDA search runs in the device check), and `--report` on what a database holds.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { writeTextFileAtomic } from '../../fs/atomic-write.js';
import { onInterruptGracefully, stopChildProcesses } from '../../fs/interrupt.js';
import { TidarcError } from '../../errors.js';
import { readModelInput } from '../../model/model-input.js';
import { type ModelSpec, contextLength } from '../../ir/model.js';
import { cacheField, defaultCacheDir } from '../../build/kernel-cache.js';
import { invalidate, readTuneDb } from '../../tune/db.js';
import { tuneReport, tuneSvg } from '../../tune/report.js';
import { cpuTuneMeta } from '../../tune/meta.js';
import { tuneCpu } from '../../tune/tune-cpu.js';
import { MAX_CPU_THREADS } from '../../runtime/attention-checks.js';
import { type CliIo, CliExit } from '../io.js';
import { checkWritableFileOption, parseDraftList, parseIntegerList, parseIntegerOption, parsePathOption } from '../options.js';

interface TuneFlags {
  draft?: string;
  prefix: string;
  batch: string;
  backend: string;
  budget?: string;
  db: string;
  report?: boolean;
  warps?: string;
  tileN?: string;
  splits?: string;
  threads?: string;
}

const HELP_AFTER = `
Examples:
  $ tidarc tune examples/qwen3-8b.json --draft 4,8,16 --prefix 1k,4k,16k --batch 1,8 --db tune.json
  $ tidarc tune models/tidar-tiny-code --prefix 256,1k --budget 120
  $ tidarc tune --report --db tune.json            # table + tune.svg: heuristic default vs tuned best
  $ tidarc compile examples/qwen3-8b.json --tuned tune.json

For each variant (tidar_k<K> per draft length, and ar) and shape (batch, prefix rounded up to a
power of two), every configuration that static pruning keeps (warps, tileN, split-KV, threads) is
checked against the float64 reference, then timed: a warm-up call, then 100 calls (or as many
slow ones as fill 100 ms) over input sets that together are twice the last-level cache, median
with p20/p80; the three fastest and the
heuristic are then timed again, interleaved, and the best is chosen on those times. Tiles are
compile-time: one CPU library per tile, all compiled first (one compiler per core) and cached.
The database is written after every shape: Ctrl-C keeps what was measured (exit code 130), and
a rerun skips the shapes the database holds for this machine (same tidarc, compiler and CPU).
`;

/** '1k' = 1024, '4k' = 4096, plain integers as they are. */
export function parsePrefixList(text: string): number[] {
  return text.split(',').map((part) => {
    const t = part.trim().toLowerCase();
    const m = /^(\d+)(k?)$/.exec(t);
    const v = m ? Number(m[1]) * (m[2] ? 1024 : 1) : NaN;
    if (!Number.isInteger(v) || v < 1 || v > 1 << 20) {
      throw new TidarcError('invalid-argument', 'invalid prefix length', { field: '--prefix', value: part, allowed: 'integers from 1 to 1048576, or with a k suffix (1k = 1024), comma separated' });
    }
    return v;
  });
}

/**
 * One line when some prefixes are longer than the model's context: they are tuned all the same
 * (a kernel-library call may take a longer prefix than the model's run does: refusing would break
 * that use), but whoever typed them, or got them by default, learns that run and bench-step
 * never reach them. `defaulted`: the prefixes are --prefix's default.
 */
export function prefixBeyondContextNote(spec: Pick<ModelSpec, 'name' | 'family' | 'maxPositionEmbeddings'>, prefixes: readonly number[], defaulted: boolean): string | undefined {
  const context = contextLength(spec);
  const beyond = [...new Set(prefixes.filter((p) => p > context))];
  if (beyond.length === 0) return undefined;
  // The database's shape bucket: the prefix rounded up to a power of two (shapeBucket).
  const bucket = (p: number): string => (2 ** Math.ceil(Math.log2(p)) === p ? `${p}` : `${p} (tuned as L = ${2 ** Math.ceil(Math.log2(p))})`);
  const what = `${beyond.length === 1 ? 'prefix' : 'prefixes'} ${beyond.map(bucket).join(', ')}${defaulted ? " (--prefix's default)" : ''}`;
  const why = spec.maxPositionEmbeddings !== undefined ? 'max_position_embeddings' : `the ${spec.family} default: the model sets no max_position_embeddings`;
  return `note: ${what} ${beyond.length === 1 ? 'is' : 'are'} longer than ${spec.name}'s context of ${context} positions (${why}): tuned anyway, for kernel-library calls with longer prefixes; run and bench-step stay within ${context}`;
}

export function registerTuneCommand(program: Command, io: CliIo): void {
  program
    .command('tune')
    .description('Autotune the attention kernels of a model per shape (tile, warps, split-KV, threads) and record the winners.')
    .argument('[model]', 'a checkpoint directory, its config.json (or any Hugging Face config.json), or a model.json')
    .option('--draft <k,...>', "draft lengths (default: the model's)")
    .option('--prefix <L,...>', "prefix lengths, e.g. 1k,4k,16k; one longer than the model's context is tuned, with a note", '1k,4k')
    .option('--batch <b,...>', 'batch sizes, e.g. 1,8', '1')
    .option('--backend <name>', 'cpu (the CUDA search runs in the device check)', 'cpu')
    .option('--budget <seconds>', 'about how long the run may take, compiles included: only the tiles it can time are compiled; the first shape is always tuned')
    .option('--db <file>', 'the tuning database (merged into, created when missing)', 'tune.json')
    .option('--report', 'print the database as a table and write an SVG beside it; tune nothing')
    .option('--warps <list>', 'restrict the search: warps per tile, e.g. 2,4')
    .option('--tile-n <list>', 'restrict the search: keys per tile, e.g. 32,64')
    .option('--splits <list>', 'restrict the search: split-KV counts, e.g. 1,2')
    .option('--threads <list>', 'threads to try (0 = all), default 1,0')
    .addHelpText('after', HELP_AFTER)
    .action(async (modelPath: string | undefined, flags: TuneFlags, command: Command) => {
      const dbPath = parsePathOption('--db', flags.db);
      if (flags.report) {
        // A report of a database that is not there would be an empty table and an SVG of nothing.
        if (!existsSync(dbPath)) throw new TidarcError('missing-file', 'no such tuning database', { field: '--db', value: dbPath, allowed: 'a database that tidarc tune wrote' });
        const db = readTuneDb(dbPath);
        io.stdout(tuneReport(db, { cpu: await cpuTuneMeta() }));
        const svg = dbPath.replace(/\.json$/, '') + '.svg';
        await writeTextFileAtomic(svg, tuneSvg(db), '--db');
        io.stdout(`wrote ${svg}\n`);
        return;
      }
      if (flags.backend !== 'cpu') {
        throw new TidarcError('unsupported', 'tidarc tune searches the cpu backend here; the CUDA search runs in the device check (npm run device-check:prepare, then scripts/device-check/device_check.py on the GPU machine: it writes tune-cuda.json for compile/run --tuned)', { field: '--backend', value: flags.backend, allowed: 'cpu' });
      }
      if (modelPath === undefined) throw new TidarcError('invalid-argument', 'a model is required (or --report)', { field: 'model' });
      // The database is written after every shape: a path it cannot take is refused now, not
      // after the first shape's compiles and timings.
      checkWritableFileOption('--db', dbPath);
      const { spec } = await readModelInput(modelPath);
      const prefixes = parsePrefixList(flags.prefix);
      const batches = parseIntegerList('--batch', flags.batch, 1, 256);
      const budgetSeconds = flags.budget === undefined ? undefined : parseIntegerOption('--budget', flags.budget, 1, 7 * 86400);
      const drafts = flags.draft === undefined ? [...spec.draftLengths] : parseDraftList(flags.draft);
      const list = (name: string, text: string | undefined, min: number, max: number) => (text === undefined ? undefined : parseIntegerList(name, text, min, max));
      const warps = list('--warps', flags.warps, 1, 8), tileN = list('--tile-n', flags.tileN, 16, 256), splits = list('--splits', flags.splits, 1, 64), threads = list('--threads', flags.threads, 0, MAX_CPU_THREADS);
      const note = prefixBeyondContextNote(spec, prefixes, command.getOptionValueSource('prefix') === 'default');
      if (note !== undefined) io.stdout(`${note}\n`);
      const controller = new AbortController();
      const onInt = (): void => {
        io.stderr('tidarc tune: interrupted; finishing the configuration being timed, keeping what was measured\n');
        // Compiles start only before the timing: stopping them loses nothing measured.
        stopChildProcesses();
        controller.abort();
      };
      const stopListening = onInterruptGracefully(onInt);
      try {
        const before = readTuneDb(dbPath);
        const meta = await cpuTuneMeta();
        const stale = invalidate(before, meta);
        if (stale.length > 0) io.stdout(`${stale.length} entries of ${dbPath} are from another machine or version and are not used (e.g. ${stale[0]!.key}: ${stale[0]!.why})\n`);
        const r = await tuneCpu({
          spec, drafts, prefixes, batches, dbPath,
          cacheDir: defaultCacheDir(), cacheField: cacheField(), log: (l) => io.stdout(`${l}\n`), signal: controller.signal,
          ...(budgetSeconds === undefined ? {} : { budgetSeconds }),
          space: { ...(warps ? { warps } : {}), ...(tileN ? { tileN } : {}), ...(splits ? { splits } : {}), ...(threads ? { threads } : {}) },
        });
        io.stdout(`${r.tuned} shapes tuned, ${r.cached} already in ${dbPath}${r.skipped.length ? `, ${r.skipped.length} not reached (${r.interrupted ? 'interrupted' : 'budget'}): rerun to resume` : ''}\n`);
        io.stdout(tuneReport(r.db, { cpu: meta }));
        if (r.interrupted) throw new CliExit(130);
      } catch (e) {
        // Ctrl-C in a terminal also stops the compilers of the compile phase: their failure is the interrupt, not an error.
        if (controller.signal.aborted && !(e instanceof CliExit)) throw new CliExit(130);
        throw e;
      } finally {
        stopListening();
      }
    });
}
