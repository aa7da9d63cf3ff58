/**
 * Codegen time of `tidarc compile examples/qwen3-8b.json --draft 4,8,16 --arch sm_80,sm_90`,
 * nvcc and the C++ compiler excluded (--no-build), each figure over REPS fresh processes:
 *   (a) generateModel() in a fresh node process: the import of the codegen modules (ts-morph,
 *       typescript, handlebars) timed apart from the first (cold) call; a second call for scale;
 *   (b) the whole CLI process into an empty output directory;
 *   (c) the same command again on the unchanged output (must report "up to date").
 * The CLI runs from dist/, so this script first runs `tsc -p tsconfig.json` (not timed).
 *
 *   npm run bench:codegen        # = tsx bench/codegen-time.ts; --skip-tsc uses dist/ as it is
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../src/util/paths.js';
import { type Summary, formatMs, summarize } from '../src/bench/stats.js';

const REPS = 5;
const GOAL_MS = 1000;
const MODEL = 'examples/qwen3-8b.json';
const FLAGS = ['--draft', '4,8,16', '--arch', 'sm_80,sm_90'];
const root = packageRoot();

function run(args: readonly string[]): { ms: number; stdout: string } {
  const t = performance.now();
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} failed (${r.status}):\n${r.stderr}${r.stdout}`);
  return { ms, stdout: r.stdout };
}

function buildDist(): void {
  if (process.argv.includes('--skip-tsc')) return console.log('dist/: used as it is (--skip-tsc)');
  const t = performance.now();
  const r = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: root, encoding: 'utf8' });
  // tsc still emits on type errors (no noEmitOnError): dist/ is current, but say so.
  if (r.status !== 0) console.log(`warning: tsc reported errors (dist/ emitted anyway):\n${r.stdout.split('\n').slice(0, 5).join('\n')}`);
  if (!existsSync(join(root, 'dist/src/cli/main.js'))) throw new Error('dist/src/cli/main.js missing after tsc');
  console.log(`dist/: rebuilt with tsc in ${((performance.now() - t) / 1000).toFixed(1)} s (not timed below)`);
}

/** (a): one fresh process; times come from inside it (performance.now() is ms since process start). */
function coldGenerate(): { boot: number; load: number; cold: number; warm: number; files: number } {
  const url = (rel: string): string => pathToFileURL(join(root, rel)).href;
  const code = `
    const boot = performance.now();
    const { loadModelSpecFile } = await import(${JSON.stringify(url('dist/src/ir/model-file.js'))});
    const spec = await loadModelSpecFile(${JSON.stringify(join(root, MODEL))});
    const t0 = performance.now();
    const { generateModel } = await import(${JSON.stringify(url('dist/src/codegen/generate.js'))});
    const t1 = performance.now();
    const options = { drafts: [4, 8, 16], arches: ['sm_80', 'sm_90'] };
    const out = generateModel(spec, options);
    const t2 = performance.now();
    generateModel(spec, options);
    const t3 = performance.now();
    console.log(JSON.stringify({ boot, load: t1 - t0, cold: t2 - t1, warm: t3 - t2, files: out.files.size }));`;
  return JSON.parse(run(['--input-type=module', '-e', code]).stdout);
}

function line(label: string, s: Summary, goal?: string): void {
  console.log(`  ${label.padEnd(44)} ${formatMs(s)}${goal ? `   ${goal}` : ''}`);
}

const verdict = (ms: number): string => `[goal <= ${GOAL_MS} ms: ${ms <= GOAL_MS ? 'met' : 'MISSED'}]`;

buildDist();
const nodeBoot = Array.from({ length: REPS }, () => run(['-e', '0']).ms);
const a = Array.from({ length: REPS }, coldGenerate);
const first: number[] = [], second: number[] = [], cliCodegen: number[] = [];
for (let i = 0; i < REPS; i++) {
  const dir = mkdtempSync(join(tmpdir(), 'tidarc-bench-codegen-'));
  const out = join(dir, 'out');
  try {
    const cmd = ['bin/tidarc.js', 'compile', MODEL, ...FLAGS, '--no-build', '--out', out];
    const r1 = run(cmd);
    const r2 = run(cmd);
    if (!/^up to date/m.test(r2.stdout)) throw new Error(`second run was not "up to date":\n${r2.stdout}`);
    first.push(r1.ms);
    second.push(r2.ms);
    cliCodegen.push(Number(/codegen (\d+) ms/.exec(r1.stdout)?.[1] ?? NaN));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const cold = summarize(a.map((x) => x.cold));
const total = summarize(a.map((x) => x.boot + x.load + x.cold));
console.log(`\ntidarc compile ${MODEL} ${FLAGS.join(' ')} (no nvcc, no C++), ${REPS} fresh processes each, ${a[0]!.files} files`);
console.log(`1-min load average ${loadavg()[0]!.toFixed(2)} (other processes on these cores inflate every figure)`);
console.log('(a) generateModel() in a fresh node process');
line('node start to script (boot)', summarize(a.map((x) => x.boot)));
line('import codegen modules (ts-morph, ts, hbs)', summarize(a.map((x) => x.load)));
line('first generateModel() call (cold)', cold, verdict(cold.median));
line('second call in the same process (warm)', summarize(a.map((x) => x.warm)));
line('boot + import + cold call', total);
console.log('(b), (c) `node bin/tidarc.js compile ... --no-build --out <tmp>`, whole process, wall clock');
line('(b) first run, empty output dir', summarize(first));
line('    its own "codegen N ms" report', summarize(cliCodegen));
const s2 = summarize(second);
line('(c) unchanged second run', s2, verdict(s2.median));
line('for scale: `node -e 0`', summarize(nodeBoot));
