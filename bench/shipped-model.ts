/**
 * The shipped trained model (models/tidar-tiny-code) on its held-out prompts (prompts.json,
 * from files it never trained on): per draft length, T/NFE, the accept histogram and
 * tokens/s of TiDAR against AR on the CPU backend, and whether TiDAR's tokens equal AR's
 * (greedy, lossless verification). Prints a markdown table (for MODEL.md) and writes
 * bench/results/shipped-model-<date>.json.
 *
 *   npm run bench:model [-- --tokens 128 --threads N --tuned tune.json --out NAME]
 *
 * Without --threads the operators use every core and each attention call chooses its threads
 * (tuned with --tuned, else the heuristic). --out names the result file (default: the date).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../src/load/load-model.js';
import { packageRoot } from '../src/util/paths.js';

const { values: args } = parseArgs({ options: { tokens: { type: 'string', default: '128' }, threads: { type: 'string' }, tuned: { type: 'string' }, out: { type: 'string' }, model: { type: 'string', default: 'models/tidar-tiny-code' } } });
const root = packageRoot();
const dir = join(root, args.model);
const tokens = Number(args.tokens);
const prompts = JSON.parse(readFileSync(join(dir, 'prompts.json'), 'utf8')) as { source: string; prompt: string }[];
const model = await loadModel(dir, { backend: 'cpu', ...(args.threads === undefined ? {} : { threads: Number(args.threads) }), ...(args.tuned === undefined ? {} : { tuned: args.tuned, log: (l) => l.startsWith('tuned') && console.error(l) }) });

interface Row { mode: string; draft: number; tokens: number; nfe: number; tokensPerNfe: number; histogram: number[]; decodeMs: number; tokensPerSecond: number; equalToAr: number }
const rows: Row[] = [];
const arTokens: number[][] = [];
for (const draft of [0, ...model.spec.draftLengths]) {
  const mode = draft === 0 ? 'ar' : 'tidar';
  const row: Row = { mode, draft, tokens: 0, nfe: 0, tokensPerNfe: 0, histogram: Array<number>(draft + 1).fill(0), decodeMs: 0, tokensPerSecond: 0, equalToAr: 0 };
  for (const [i, p] of prompts.entries()) {
    const r = await model.generate({ prompt: p.prompt, maxTokens: tokens, mode, ...(draft ? { draft } : {}), stopAtEos: false });
    row.tokens += r.tokens.length;
    row.nfe += r.nfe;
    row.decodeMs += r.prefillMs + r.decodeMs;
    r.acceptHistogram.forEach((c, a) => (row.histogram[a]! += c));
    if (mode === 'ar') arTokens[i] = r.tokens;
    else if (r.tokens.every((t, j) => t === arTokens[i]![j]) && r.tokens.length === arTokens[i]!.length) row.equalToAr++;
  }
  row.tokensPerNfe = row.tokens / row.nfe;
  row.tokensPerSecond = row.tokens / (row.decodeMs / 1000);
  rows.push(row);
  process.stderr.write(`${mode}${draft ? ` k=${draft}` : ''}: T/NFE ${row.tokensPerNfe.toFixed(2)}, ${row.tokensPerSecond.toFixed(0)} tokens/s\n`);
}
model.close();

const ar = rows[0]!;
const lines = [
  `Held-out prompts: ${prompts.length} (${prompts.map((p) => p.source).join(', ')}), ${tokens} new tokens each, greedy, beta = 1; CPU backend, ${cpus()[0]?.model ?? 'CPU'} x ${cpus().length}, load ${loadavg()[0]!.toFixed(2)}; ${args.threads === undefined ? 'threads per call' : `${args.threads} threads`}${args.tuned ? `, tuned by ${args.tuned}` : ''}.`,
  '',
  '| mode | k | T/NFE | accepted drafts per step (a = 1..k) | tokens/s | vs AR | same tokens as AR |',
  '|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.mode} | ${r.draft || '-'} | ${r.tokensPerNfe.toFixed(2)} | ${r.draft ? r.histogram.slice(1).join(' / ') : '-'} | ${r.tokensPerSecond.toFixed(0)} | ${(r.tokensPerSecond / ar.tokensPerSecond).toFixed(2)}x | ${r.draft ? `${r.equalToAr}/${prompts.length}` : '-'} |`),
];
console.log(lines.join('\n'));
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
const file = join(root, 'bench', 'results', `shipped-model-${args.out ?? new Date().toISOString().slice(0, 10)}.json`);
writeFileSync(file, `${JSON.stringify({ model: args.model, tokens, prompts: prompts.map((p) => p.source), cpu: cpus()[0]?.model, cores: cpus().length, loadAverage1m: loadavg()[0], threads: args.threads ?? 'per call', tuned: args.tuned ?? null, rows }, null, 1)}\n`);
console.error(`wrote ${file}`);
