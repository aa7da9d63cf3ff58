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
// Where the PDL-on pass throws (a refused programmatic launch, a fault), or the load does on a programmatic
// launch (its PDL probe met a fault), the PDL-off pass still runs, in a child process of this script (a fault
// leaves this process's CUDA context unusable), each generate while the budget lasts, stopped 5 s past it:
// `error` says what PDL on threw, `diagnosis` whether PDL off then worked.
// Prints one JSON object: {backend, reason, loadLines (the loads' `cuda: ...` lines: memory preflight, weights, PDL), pdl ({on, why}; null where the model has none), runs: [{prompt, draft, equal, ar, tidar (tokens), arNfe, tidarNfe, ...}],
// pdlOff ({pdl, runs (as runs, each with samePdlOn: its AR and TiDAR tokens equal PDL on's), skipped, skippedWhy, tokensEqual, ok (null: none ran),
// error (what PDL off threw), afterFailure (true: run in a child after PDL on threw; nothing compared), stopped (the child ran past the
// budget and was stopped: its runs are those it finished), notRun (why no child was started: too little budget left)}, or {skipped: why}
// where PDL was not on),
// error ([one line]: what the check with PDL on threw; backend and reason are absent where the model did not load), diagnosis (after a
// failure: whether PDL is the likely cause), ok (PDL on's runs, and PDL off's where they ran, all ok and the same tokens; false after a throw)}.
// test/runtime/cuda/emulated-backend.test.ts runs it too (emulated driver everywhere, [gpu] on a GPU).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runtimeCheckSpec } from './runtime_spec.mjs';

// PASS: 'pdl-off-only' in the child that runs the PDL-off pass after a failed PDL-on pass (below); absent otherwise.
const [root, work, tokensText, draftsText, budgetText, pass] = process.argv.slice(2);
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
/** The loads' own lines about the device (`cuda: ...`: the memory preflight's sentence, the weights on the device, PDL), kept for the report. */
const loadLines = [];
const open = (options) => tidarc.loadModel(dir, {
  backend: 'cuda', cacheDir: process.env.TIDARC_CACHE ?? join(work, 'cache'), ...options,
  log: (l) => {
    process.stderr.write(`${l}\n`);
    if (l.startsWith('cuda: ') && !loadLines.includes(l)) loadLines.push(l);
  },
});
const same = (a, b) => a.length === b.length && a.every((t, i) => t === b[i]);

/**
 * Greedy AR, then greedy TiDAR at each k, per prompt, on `model`; each TiDAR run against its AR run (tokens, caches).
 * fits(prompt, draft): whether to run that generate (draft 0: the prompt's AR run); a prompt whose AR run does not fit is skipped whole.
 * `into` collects the runs as they finish, so a pass that throws keeps the ones before.
 */
async function check(model, fits = () => true, into = { runs: [], skipped: [], arMs: {} }) {
  const { runs, skipped, arMs } = into;
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
  return into;
}

const errorText = (e) => (e instanceof Error ? e.message : String(e)).split('\n')[0];

/** fits() for a pass with no PDL-on times to go by: a generate starts if the last one's time still fits before the deadline. */
function whileBudgetLasts() {
  let last = 0, since = performance.now();
  return () => {
    const now = performance.now();
    last = Math.max(last, now - since);
    since = now;
    return now + last <= deadline;
  };
}

if (pass === 'pdl-off-only') {
  // The child: the PDL-off pass alone, in a fresh CUDA context; one JSON line for the parent.
  const into = { runs: [], skipped: [], arMs: {} };
  let off, error;
  // A line before each generate (the runs so far) and one at the end: the parent keeps the last whole line, so a
  // child stopped at the part's budget still reports what it finished.
  const report = () => process.stdout.write(`${JSON.stringify({ pdl: off?.pdl ?? null, runs: into.runs, skipped: into.skipped, ...(error ? { error } : {}) })}\n`);
  try {
    off = await open({ pdl: false });
    const fits = whileBudgetLasts();
    await check(off, (prompt, draft) => {
      report();
      return fits(prompt, draft);
    }, into);
  } catch (e) {
    error = errorText(e);
  }
  try { off?.close(); } catch { /* a context a fault left unusable: the process ends next */ }
  report();
  process.exit(0);
}

const into = { runs: [], skipped: [], arMs: {} };
let model, onError;
try {
  model = await open({});
  await check(model, () => true, into);
} catch (e) {
  onError = errorText(e);
}
try { model?.close(); } catch (e) { onError ??= errorText(e); }
const on = into, runs = into.runs;
// pdl: whether the kernels ran with programmatic dependent launch (loadModel's default where the kernels, device and driver allow it), and why (not):
// on an sm_90+ GPU this part is where PDL's correctness is checked (a kernel reading before its wait would race its predecessor).
const pdl = model?.pdl ?? null;
// The load threw on a programmatic launch (its PDL probe met a fault: the error names --no-pdl): PDL was on, the model never ran.
const loadFailedOnPdl = !model && onError !== undefined && /--no-pdl/.test(onError);
let pdlOff, diagnosis;
if ((model?.backend === 'cuda' && pdl?.on && onError !== undefined) || loadFailedOnPdl) {
  // PDL on threw: the same check with PDL off in a child (a fault leaves this context unusable), as far as the budget allows.
  // The child is stopped 5 s past the budget's end: device_check.py kills this process 10 s past it (parts.py), and this
  // process still prints its line. The child prints its runs so far before each generate; the last whole line counts.
  // Under CHILD_MIN_S left the child is not started: a fresh process loads the model before its first generate.
  const CHILD_MIN_S = 5;
  const left = deadline === Infinity ? undefined : Math.max(0, (deadline - performance.now()) / 1000);
  let r, stopped;
  if (left !== undefined && left < CHILD_MIN_S) {
    r = { runs: [], skipped: PROMPTS.flatMap((prompt) => spec.draftLengths.map((draft) => ({ prompt, draft }))), notRun: `${left.toFixed(1)} s of the part's budget left, under the ${CHILD_MIN_S} s a fresh process needs to load the model` };
  } else {
    const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), root, work, String(tokens), drafts.join(','), left === undefined ? 'Infinity' : left.toFixed(1), 'pdl-off-only'],
      { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'inherit'], ...(left === undefined ? {} : { timeout: Math.round(1000 * (left + 5)) }) });
    stopped = child.error || child.signal ? `the PDL-off process was stopped (${child.error ? errorText(child.error) : child.signal})` : undefined;
    for (const line of (child.stdout ?? '').trim().split('\n').reverse()) {
      try {
        r = JSON.parse(line);
        break;
      } catch { /* a line cut short by the stop */ }
    }
    r ??= { runs: [], skipped: [], error: stopped ?? `the PDL-off child exited ${child.status} without a result` };
  }
  for (const x of r.runs) x.samePdlOn = false;  // nothing of PDL on's to compare with
  const ok = r.error === undefined && r.runs.length > 0 && r.runs.every((x) => x.ok);
  pdlOff = {
    pdl: r.pdl ?? null, runs: r.runs, afterFailure: true, ...(r.error ? { error: r.error } : {}), ...(stopped ? { stopped } : {}), ...(r.notRun ? { notRun: r.notRun } : {}),
    ...(r.skipped.length ? { skipped: r.skipped, skippedWhy: 'the part\'s time budget: after PDL on failed, each generate ran while its predecessor\'s time still fitted' } : {}),
    tokensEqual: null, ok: r.runs.length || r.error ? ok : null,
  };
  diagnosis = ok
    ? `PDL is the likely cause: with PDL on the ${model ? 'check' : 'load'} threw (${onError}); with PDL off (a fresh process) its ${r.runs.length} runs passed. Run with --no-pdl (loadModel pdl: false) on this GPU and driver, and report it.`
    : !r.error && r.runs.length === 0
      ? `undecided: with PDL on the ${model ? 'check' : 'load'} threw, and PDL off ran nothing (${r.notRun ?? 'no generate fitted in the part\'s budget left'}): whether PDL is the cause is not known.`
      : `not PDL alone: with PDL off (a fresh process) the check ${r.error ? `threw too (${r.error})` : 'failed too'}.`;
} else if (model?.backend === 'cuda' && pdl?.on) {
  // The same check with PDL off, as far as the budget allows: each generate if its PDL-on run's time fits in what is left (the kernels are compiled and cached by now).
  let off;
  const again = { runs: [], skipped: [], arMs: {} };
  const msOf = (prompt, draft) => (draft === 0 ? on.arMs[prompt] : runs.find((r) => r.prompt === prompt && r.draft === draft)?.ms) ?? 0;
  let offError;
  try {
    off = await open({ pdl: false });
    await check(off, (prompt, draft) => performance.now() + msOf(prompt, draft) <= deadline, again);
  } catch (e) {
    offError = errorText(e);
  }
  try { off?.close(); } catch (e) { offError ??= errorText(e); }
  for (const r of again.runs) {
    const was = runs.find((x) => x.prompt === r.prompt && x.draft === r.draft);
    r.samePdlOn = !!was && same(r.ar, was.ar) && same(r.tidar, was.tidar);
  }
  // null where the budget left no run: nothing compared, nothing failed.
  const tokensEqual = again.runs.length ? again.runs.every((r) => r.samePdlOn) : null;
  pdlOff = {
    pdl: off?.pdl ?? null, runs: again.runs, ...(offError ? { error: offError } : {}),
    ...(again.skipped.length ? { skipped: again.skipped, skippedWhy: `the part's time budget (${Number(budgetText).toFixed(0)} s): each (prompt, k) runs only if its PDL-on run's time fits in what is left` } : {}),
    tokensEqual, ok: offError ? false : again.runs.length ? again.runs.every((r) => r.ok) && tokensEqual : null,
  };
  if (offError) diagnosis = `PDL on passed, PDL off threw (${offError})`;
} else {
  pdlOff = { skipped: !model ? 'the model did not load' : model.backend !== 'cuda' ? 'not the cuda backend' : `PDL was not on (${pdl?.why ?? 'the model reports no PDL decision'}): the check above ran without it` };
}
// A PDL-on failure, a PDL-off run that fails, or gives other tokens than PDL on, fails the part.
const ok = onError === undefined && model?.backend === 'cuda' && runs.every((r) => r.ok) && pdlOff.ok !== false;
process.stdout.write(`${JSON.stringify({
  ...(model ? { backend: model.backend, reason: model.backendReason } : {}), loadLines, pdl, runs, pdlOff,
  ...(onError !== undefined ? { error: [`PDL ${pdl?.on ? 'on' : 'as loadModel chose'}: ${onError}`] } : {}), ...(diagnosis ? { diagnosis } : {}), ok,
})}\n`);
