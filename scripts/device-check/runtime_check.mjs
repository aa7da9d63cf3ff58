// The device check's runtime part: tidarc's own runtime on the cuda backend, greedy TiDAR ==
// greedy AR on a random model (k = 1, 2, 4, 8; three prompts; 200 tokens) with the KV-cache
// rule checked after every run. Run by device_check.py with the Node it carries:
//   node runtime_check.mjs TIDARC_ROOT WORK_DIR [TOKENS] [DRAFTS, e.g. 1,2,4,8]
// TIDARC_ROOT is a built tidarc package (dist/, templates/, the addon, production node_modules).
// The kernels compile into WORK_DIR/cache, or into $TIDARC_CACHE where it is set (the tests set it
// to their shared cache, so the model's kernels and emulated modules compile once, not per run).
// Prints one JSON object: {backend, reason, pdl ({on, why}; null where the model has none), runs: [{prompt, draft, equal, ar, tidar (tokens), arNfe, tidarNfe, ...}], ok}.
// test/runtime/cuda/emulated-backend.test.ts runs it too (emulated driver everywhere, [gpu] on a GPU).
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runtimeCheckSpec } from './runtime_spec.mjs';

const [root, work, tokensText, draftsText] = process.argv.slice(2);
const tokens = Number(tokensText ?? 200);
const drafts = (draftsText ?? '1,2,4,8').split(',').map(Number);
const tidarc = await import(pathToFileURL(join(root, 'dist', 'src', 'index.js')).href);
const spec = runtimeCheckSpec(drafts);
const dir = join(work, spec.name);
await tidarc.initModel({ spec, outDir: dir, seed: 5, std: 0.3 });
const model = await tidarc.loadModel(dir, { backend: 'cuda', cacheDir: process.env.TIDARC_CACHE ?? join(work, 'cache'), log: (l) => process.stderr.write(`${l}\n`) });
const runs = [];
for (const prompt of ['def main(', 'The quick brown fox', '{"a": [1, 2, 3], "b": ']) {
  let arCache;
  const ar = await model.generate({ prompt, maxTokens: tokens, mode: 'ar', stopAtEos: false, inspectCache: (c) => { arCache = c; } });
  for (const draft of spec.draftLengths) {
    let tidarCache;
    const t0 = performance.now();
    const tidar = await model.generate({ prompt, maxTokens: tokens, mode: 'tidar', draft, stopAtEos: false, inspectCache: (c) => { tidarCache = c; } });
    const cache = tidarc.compareCaches(arCache, tidarCache, spec.dtype);
    const equal = tidar.tokens.length === ar.tokens.length && tidar.tokens.every((t, i) => t === ar.tokens[i]);
    const ok = equal && cache.layer0Differing === 0 && cache.maxRelDiff < 2 ** -6 && cache.writtenPastLength === 0;
    runs.push({ prompt, draft, equal, ar: ar.tokens, tidar: tidar.tokens, arNfe: ar.nfe, tidarNfe: tidar.nfe, tidarTokensPerSecond: tidar.tokensPerSecond, arTokensPerSecond: ar.tokensPerSecond, ms: performance.now() - t0, ...cache, ok });
  }
}
model.close();
// pdl: whether the kernels ran with programmatic dependent launch (loadModel's default where the kernels, device and driver allow it), and why (not):
// on an sm_90+ GPU this part is where PDL's correctness is checked (a kernel reading before its wait would race its predecessor).
process.stdout.write(`${JSON.stringify({ backend: model.backend, reason: model.backendReason, pdl: model.pdl ?? null, runs, ok: model.backend === 'cuda' && runs.every((r) => r.ok) })}\n`);
