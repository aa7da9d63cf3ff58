// The device check's runtime part: tidarc's own runtime on the cuda backend, greedy TiDAR ==
// greedy AR on a random model (k = 1, 2, 4, 8; three prompts; 200 tokens) with the KV-cache
// rule checked after every run. Run by device_check.py with the Node it carries:
//   node runtime_check.mjs TIDARC_ROOT WORK_DIR [TOKENS] [DRAFTS, e.g. 1,2,4,8] [BUDGET_S]
// TIDARC_ROOT is a built tidarc package (dist/, templates/, the addon, production node_modules).
// The kernels compile into WORK_DIR/cache, or into $TIDARC_CACHE where it is set (the tests set it
// to their shared cache, so the model's kernels and emulated modules compile once, not per run).
// Where the model runs with programmatic dependent launch (PDL), the same check runs once more
// with PDL off (loadModel pdl: false) on the same model, prompts and k, and its tokens are compared
// with PDL on's: a PDL race on a GPU (a kernel reading before its wait) would show as a difference.
// BUDGET_S (the part's time left; none: no limit) bounds that second pass: a (prompt, k) whose PDL-on
// run would not fit in what is left is not run, and pdlOff.skipped lists it.
// Prints one JSON object: {backend, reason, pdl ({on, why}; null where the model has none), runs: [{prompt, draft, equal, ar, tidar (tokens), arNfe, tidarNfe, ...}],
// pdlOff ({pdl, runs (as runs, each with samePdlOn: its AR and TiDAR tokens equal PDL on's), skipped, skippedWhy, tokensEqual, ok (null: none ran)},
// or {skipped: why} where PDL was not on), ok (PDL on's runs, and PDL off's where they ran, all ok and the same tokens)}.
// test/runtime/cuda/emulated-backend.test.ts runs it too (emulated driver everywhere, [gpu] on a GPU).
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runtimeCheckSpec } from './runtime_spec.mjs';

const [root, work, tokensText, draftsText, budgetText] = process.argv.slice(2);
const started = performance.now();
const tokens = Number(tokensText ?? 200);
const drafts = (draftsText ?? '1,2,4,8').split(',').map(Number);
/** performance.now() past which the PDL-off pass starts no generate (Infinity: no budget given). */
const deadline = budgetText === undefined ? Infinity : started + 1000 * Number(budgetText);
const tidarc = await import(pathToFileURL(join(root, 'dist', 'src', 'index.js')).href);
const spec = runtimeCheckSpec(drafts);
const dir = join(work, spec.name);
const PROMPTS = ['def main(', 'The quick brown fox', '{"a": [1, 2, 3], "b": '];
await tidarc.initModel({ spec, outDir: dir, seed: 5, std: 0.3 });
const open = (options) => tidarc.loadModel(dir, { backend: 'cuda', cacheDir: process.env.TIDARC_CACHE ?? join(work, 'cache'), log: (l) => process.stderr.write(`${l}\n`), ...options });
const same = (a, b) => a.length === b.length && a.every((t, i) => t === b[i]);

/**
 * Greedy AR, then greedy TiDAR at each k, per prompt, on `model`; each TiDAR run against its AR run (tokens, caches).
 * fits(prompt, draft): whether to run that generate (draft 0: the prompt's AR run); a prompt whose AR run does not fit is skipped whole.
 */
async function check(model, fits = () => true) {
  const runs = [], skipped = [], arMs = {};
  for (const prompt of PROMPTS) {
    if (!fits(prompt, 0)) {
      skipped.push(...spec.draftLengths.map((draft) => ({ prompt, draft })));
      continue;
    }
    let arCache;
    const a0 = performance.now();
    const ar = await model.generate({ prompt, maxTokens: tokens, mode: 'ar', stopAtEos: false, inspectCache: (c) => { arCache = c; } });
    arMs[prompt] = performance.now() - a0;
    for (const draft of spec.draftLengths) {
      if (!fits(prompt, draft)) {
        skipped.push({ prompt, draft });
        continue;
      }
      let tidarCache;
      const t0 = performance.now();
      const tidar = await model.generate({ prompt, maxTokens: tokens, mode: 'tidar', draft, stopAtEos: false, inspectCache: (c) => { tidarCache = c; } });
      const cache = tidarc.compareCaches(arCache, tidarCache, spec.dtype);
      const equal = same(tidar.tokens, ar.tokens);
      const ok = equal && cache.layer0Differing === 0 && cache.maxRelDiff < 2 ** -6 && cache.writtenPastLength === 0;
      runs.push({ prompt, draft, equal, ar: ar.tokens, tidar: tidar.tokens, arNfe: ar.nfe, tidarNfe: tidar.nfe, tidarTokensPerSecond: tidar.tokensPerSecond, arTokensPerSecond: ar.tokensPerSecond, ms: performance.now() - t0, ...cache, ok });
    }
  }
  return { runs, skipped, arMs };
}

const model = await open({});
const on = await check(model);
const runs = on.runs;
model.close();
// pdl: whether the kernels ran with programmatic dependent launch (loadModel's default where the kernels, device and driver allow it), and why (not):
// on an sm_90+ GPU this part is where PDL's correctness is checked (a kernel reading before its wait would race its predecessor).
const pdl = model.pdl ?? null;
let pdlOff;
if (model.backend === 'cuda' && pdl?.on) {
  // The same check with PDL off, as far as the budget allows: each generate if its PDL-on run's time fits in what is left (the kernels are compiled and cached by now).
  const off = await open({ pdl: false });
  const msOf = (prompt, draft) => (draft === 0 ? on.arMs[prompt] : runs.find((r) => r.prompt === prompt && r.draft === draft)?.ms) ?? 0;
  const again = await check(off, (prompt, draft) => performance.now() + msOf(prompt, draft) <= deadline);
  off.close();
  for (const r of again.runs) {
    const was = runs.find((x) => x.prompt === r.prompt && x.draft === r.draft);
    r.samePdlOn = !!was && same(r.ar, was.ar) && same(r.tidar, was.tidar);
  }
  // null where the budget left no run: nothing compared, nothing failed.
  const tokensEqual = again.runs.length ? again.runs.every((r) => r.samePdlOn) : null;
  pdlOff = {
    pdl: off.pdl ?? null, runs: again.runs,
    ...(again.skipped.length ? { skipped: again.skipped, skippedWhy: `the part's time budget (${Number(budgetText).toFixed(0)} s): each (prompt, k) runs only if its PDL-on run's time fits in what is left` } : {}),
    tokensEqual, ok: again.runs.length ? again.runs.every((r) => r.ok) && tokensEqual : null,
  };
} else {
  pdlOff = { skipped: model.backend !== 'cuda' ? 'not the cuda backend' : `PDL was not on (${pdl?.why ?? 'the model reports no PDL decision'}): the check above ran without it` };
}
// A PDL-off run that fails, or gives other tokens than PDL on, fails the part.
const ok = model.backend === 'cuda' && runs.every((r) => r.ok) && pdlOff.ok !== false;
process.stdout.write(`${JSON.stringify({ backend: model.backend, reason: model.backendReason, pdl, runs, pdlOff, ok })}\n`);
