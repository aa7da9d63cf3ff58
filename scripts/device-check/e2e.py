#!/usr/bin/env python3
"""The device check's end-to-end part (issue 16 item 5): one whole decode step of tidarc's runtime
against Hugging Face transformers eager and against the step's roofline, on the same random-weight
models in the same run.

  python3 scripts/device-check/e2e.py --bundle out/device-check --out $OUT [--budget 240]
  python3 scripts/device-check/e2e.py --dry-run --tidarc-root . --out DIR   (no GPU: cpu backend, torch CPU)

Models (e2e_cost.py): Qwen3-0.6B's shape (28 layers) and Qwen3-8B's widths with EIGHT_B_LAYERS of
its 36 layers (init, save and load of 16 GB would not fit the part's time; the report says so).
Weights: N(0, std^2), norms 1 + N(0, 0.2^2) (e2e_hf.NORM_STD), drawn by torch with a fixed seed on the device, written as a
checkpoint tidarc loads (config.json as src/model/checkpoint.ts hfConfigOf writes it, tidarc's byte
tokenizer, safetensors shards of at most 2 GiB with their index), and the same tensors loaded into
transformers' Qwen3ForCausalLM built from the config dict (attn_implementation="sdpa"). Steps:
L = 1024 and 4096; AR and TiDAR k = 4, 8, 16 with tidarc's token counts (AR 1 token, tidar_k<K>
K(K+1) tokens; lm_head 1 and 2K - 1 rows).
  - tidarc: `tidarc bench-step --backend cuda --json` per (model, L, k), once as it launches by
    default (graphs, where the runtime captures them; programmatic dependent launch (PDL) where the
    kernels, device and driver allow it: the JSON's `pdl`) and once with --no-graphs (launch by
    launch); a CLI that refuses --no-graphs is recorded as "graphs: unsupported" and its default run
    counts as launch by launch. At the points the goals read first (each model's middle k at the
    largest L: Qwen3-8B's and 0.6B's AR and k = 8 at L = 4096) a third run adds --no-pdl (graphs
    without PDL), only where the default run had PDL on, or FAILED (then it is the diagnosis: a note
    says whether the step runs without PDL, and where it does, every later run adds --no-pdl, so the
    budget still gives graphs against launch by launch, and the failed point's row takes its
    --no-pdl run as its graphs figure); a CLI that refuses --no-pdl is recorded as
    "PDL: unsupported". Those two runs replace the --no-graphs runs of the last two points in the
    order (Qwen3-0.6B's k = 4 and k = 16 at L = 1024: no goal reads their launch-by-launch figures;
    its AR at L = 1024 comes with k = 8's), so the part runs as many tidarc commands as before. Median wall time of Decoder.step() (its launches, GPU ms, host ms beside).
    The fold-norms A/B (fold-design.md: the RMSNorms folded into the GEMMs around them, on by default
    where the runtime allows it, bench-step's JSON `foldNorms`): two more runs with --no-fold-norms,
    Qwen3-0.6B's then Qwen3-8B's k = 8 at L = 4096 (each gives AR and k = 8), last in the plan so a
    short budget drops them first; made only where the default run folded (a note says why not
    otherwise), or FAILED (then the diagnosis: does the step run unfolded?). The rows put the measured
    saving (1 - default / --no-fold-norms) beside the predicted one (the bundle's unfolded prediction).
    A CLI that refuses --no-fold-norms is recorded as "fold-norms: unsupported".
  - transformers eager: a DynamicCache prefilled with L random tokens, then per step the same
    token count (its causal mask; tidarc's in-step mask differs in values, not in size), the
    logits of the same lm_head rows, their argmax copied to the host, and the cache cropped back
    to L; median wall time (synchronized) of warm-up then timed calls.
  - roofline: step_cost (src/bench/roofline.ts) over the copy bandwidth and the bf16 matmul rate
    measured in this run (device_check.py's ceilings: a 1 GiB device copy, an 8192^3 matmul).
--budget bounds the part (checkpoints, transformers, then tidarc's points in the order the goals
read them first); points not started in time are listed as skipped.
--dry-run: the small model of e2e_cost.dry_models on the cpu backend and torch CPU (float32), with
the correctness check the GPU run relies on: tidarc's cpu backend and transformers give the same
greedy first token (and say how many of the next agree) on three prompts. --dry-backend cuda runs
tidarc's steps on the emulated driver ($TIDARC_LIBCUDA) instead, graphs on and off as on a GPU.
Writes e2e.json and e2e.md under --out; device_check.py --e2e-budget runs the same part inside it.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
from e2e_cost import DRY_PREFIXES, EIGHT_B_LAYERS, GPU_PREFIXES, dry_models, gpu_models, roofline, step_cost, step_name, step_shape  # noqa: E402
from e2e_hf import DRY_SHARD_BYTES, SHARD_BYTES, hf_greedy, hf_model, hf_steps, write_checkpoint  # noqa: E402
from e2e_report import failed_runs, write_e2e_reports  # noqa: E402

PROMPTS = ('def main(', 'The quick brown fox', '{"a": [1, 2, 3], "b": ')


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- tidarc -----------------------------------------------------------------------------------

def tidarc_cmd(node, root, *args):
    return [node, str(Path(root) / 'bin' / 'tidarc.js'), *args]


def last_line(text):
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:300] if lines else ''


def tidarc_greedy(node, root, ckpt, prompt, n, env):
    """tidarc's greedy AR tokens on the cpu backend (`tidarc run --json`)."""
    r = subprocess.run(tidarc_cmd(node, root, 'run', str(ckpt), '--backend', 'cpu', '--mode', 'ar', '--prompt', prompt, '--max-tokens', str(n), '--ignore-eos', '--json'),
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f'tidarc run: {last_line(r.stderr)}')
    return json.loads(r.stdout.strip().splitlines()[-1])['tokens']


def warm_up(node, root, ckpts, models, backend, env, timeout):
    """One short bench-step per model, all at once: each compiles its model's kernels into the cache
    (nvcc, minutes on a GPU machine) while the others do, so no timed point waits for a compile."""
    t0 = time.time()
    procs = [subprocess.Popen(tidarc_cmd(node, root, 'bench-step', str(ckpt), '--backend', backend, '--draft', str(min(spec['draftLengths'])), '--prefix', '16',
                                         '--reps', '1', '--min-seconds', '0', '--warmup', '0', '--json'),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env) for ckpt, (spec, _) in zip(ckpts, models)]
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(10.0, timeout - (time.time() - t0)))
            out.append({'seconds': time.time() - t0, **({'error': last_line(err) or f'exit code {p.returncode}'} if p.returncode else {})})
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            out.append({'seconds': time.time() - t0, 'error': 'timed out'})
    return out


def tidarc_bench(node, root, ckpt, k, prefix, backend, no_graphs, timing, env, timeout, no_pdl=False, no_fold=False):
    """One `tidarc bench-step --json` (tidar_k<k> and AR at L = prefix): the parsed result, or {'error'} / {'refused'}."""
    args = ['bench-step', str(ckpt), '--backend', backend, '--draft', str(k), '--prefix', str(prefix), '--json',
            '--reps', str(timing['reps']), '--min-seconds', str(timing['minSeconds']), '--warmup', str(timing['warmup'])]
    if no_graphs:
        args.append('--no-graphs')
    if no_pdl:
        args.append('--no-pdl')
    if no_fold:
        args.append('--no-fold-norms')
    t0 = time.time()
    try:
        r = subprocess.run(tidarc_cmd(node, root, *args), capture_output=True, text=True, env=env, timeout=max(10.0, timeout))
    except subprocess.TimeoutExpired:
        return {'error': f'timed out after {timeout:.0f} s', 'seconds': time.time() - t0}
    if r.returncode != 0:
        line = last_line(r.stderr) or f'exit code {r.returncode}'
        # commander's "unknown option '--no-graphs'" (or '--no-pdl', '--no-fold-norms'): this tidarc has no such switch.
        refused = (no_graphs and '--no-graphs' in line) or (no_pdl and '--no-pdl' in line) or (no_fold and '--no-fold-norms' in line)
        return {'refused' if refused else 'error': line, 'seconds': time.time() - t0}
    return {**json.loads(r.stdout.strip().splitlines()[-1]), 'seconds': time.time() - t0}


def step_figures(stats, run=None):
    """What the report keeps of bench-step's StepStats (and of its run: whether PDL was on, where the JSON says)."""
    keys = ('launchesPerStep', 'hostMs', 'gpuMs', 'hostDeviceBytesPerStep', 'rooflineMs', 'rooflineRatio', 'inStepTokens', 'steps')
    pdl = {'pdl': run['pdl'], 'pdlReason': run.get('pdlReason')} if run and 'pdl' in run else {}
    fold = {'foldNorms': run['foldNorms'], 'foldNormsWhy': run.get('foldNormsWhy')} if run and 'foldNorms' in run else {}
    return {'medianMs': stats['stepMs']['median'], 'p20Ms': stats['stepMs']['p20'], 'p80Ms': stats['stepMs']['p80'], **{k: stats.get(k) for k in keys}, **pdl, **fold}


PREDICTIONS = 'e2e_predictions.json'


def load_predictions(bundle, predicted=None):
    """The step cost model's predictions the bundle carries (npm run device-check:prepare writes them), or None:
    those for the machine `predicted` names (machines.predicted_for: this GPU's), with predictedFor set to it."""
    from machines import for_machine
    p = Path(bundle) / PREDICTIONS if bundle else None
    if not (p and p.exists()):
        return None
    out = for_machine(json.loads(p.read_text()), (predicted or {}).get('machine'))
    return {**out, 'predictedFor': predicted} if predicted else out


def predicted_row(predictions, spec, prefix, step):
    """The prediction for this very spec (src/bench/e2e-bundle.ts e2eModels mirrors e2e_cost.py), prefix and step kind."""
    for m in (predictions or {}).get('models', []):
        if m['spec'] == spec:
            return next((r for r in m['rows'] if r['prefix'] == prefix and r['step'] == step), None)
    return None


# ---- the part ---------------------------------------------------------------------------------

def peaks_of_ceilings(c):
    """device_check.py's ceilings (TB/s counting bytes read and written, TFLOP/s) as MachinePeaks."""
    return {'copyBytesPerMs': c['copyTBs'] * 1e9, 'matmulFlopsPerMs': c['matmulTflops'] * 1e9,
            'how': f"device_check ceilings: a 1 GiB device copy at {c['copyTBs']:.2f} TB/s, an 8192^3 bf16 matmul at {c['matmulTflops']:.0f} TFLOP/s"}


def _mid(spec):
    return sorted(spec['draftLengths'])[len(spec['draftLengths']) // 2]


def tidarc_order(models, prefixes):
    """(model index, L, k): the points the issue's goals read first (8B L = 4096 k = 8; 0.6B AR), then the rest."""
    points = [(i, L, k) for i, (spec, _) in enumerate(models) for L in prefixes for k in spec['draftLengths']]
    def rank(p):
        i, L, k = p
        return (k != _mid(models[i][0]), L != max(prefixes), -i, L, k)
    return sorted(points, key=rank)


DEFAULT, NO_GRAPHS, NO_PDL, NO_FOLD = 'default', 'no-graphs', 'no-pdl', 'no-fold-norms'


def no_fold_skip(default_run):
    """Whether the planned --no-fold-norms run follows the default run `default_run` (None: not run): None to run it, else
    why not ('' for no note). Where the default run folded the norms it is the A/B; where the default run FAILED it is the
    diagnosis (does the same step run unfolded?); where the fold was off by default it would time the default run again."""
    if not default_run:
        return ''  # the default run did not run (the budget): nothing to compare or diagnose
    if 'tidar' not in default_run:
        return None if 'error' in default_run else ''
    if 'foldNorms' not in default_run:
        return 'bench-step reports no foldNorms field (a tidarc without the fold)'
    if not default_run['foldNorms']:
        return f"the fold was off by default ({default_run.get('foldNormsWhy') or 'bench-step gives no reason'})"
    return None


def no_fold_diagnosis(model, L, k, default_run, r):
    """The note on a --no-fold-norms run made because the default run failed."""
    head = f"{model} L={L} k={k}: the default run failed ({default_run['error']}); with --no-fold-norms it "
    if 'tidar' in r:
        return head + 'ran: the folded norms (their GEMM epilogues) are the suspect'
    return head + f"failed too ({r.get('error') or r.get('refused')}): not the fold alone"


def no_pdl_skip(default_run):
    """Whether the planned --no-pdl run follows the default run `default_run` (None: not run): None to run it, else why not
    ('' for no note). Where the default run had PDL it is the comparison; where the default run FAILED it is the diagnosis
    (the first PDL run on a GPU is where PDL can break: does the same step run without it?); where PDL was off by default
    it would time the default run again."""
    if not default_run:
        return ''  # the default run did not run (the budget): nothing to compare or diagnose
    if 'tidar' not in default_run:
        return None if 'error' in default_run else ''
    if not default_run.get('pdl'):
        # The JSON's pdl false, or a tidarc without the field.
        return f"PDL was off by default ({default_run.get('pdlReason') or 'bench-step reports no pdl field'})"
    return None


def no_pdl_diagnosis(model, L, k, default_run, r):
    """The note on a --no-pdl run made because the default run failed."""
    head = f"{model} L={L} k={k}: the default run failed ({default_run['error']}); with --no-pdl it "
    if 'tidar' in r:
        return head + 'ran: programmatic dependent launch is the likely cause (the other points\' default runs have it on too)'
    return head + f"failed too ({r.get('error') or r.get('refused')}): not PDL alone"


def tidarc_plan(models, prefixes):
    """(model index, L, k, mode): each point of tidarc_order as it launches by default, then --no-graphs; at each
    model's middle k at the largest L also --no-pdl (graphs without PDL, after the default run). The --no-pdl runs
    take the places of the --no-graphs runs of the last points in the order (as many as there are --no-pdl runs), so
    the part runs as many tidarc commands as before; on the GPU those are Qwen3-0.6B's k = 4 and k = 16 at L = 1024,
    whose launch-by-launch figures no goal reads (its AR at L = 1024 comes with k = 8's run). Last, the fold-norms A/B:
    --no-fold-norms at the same points, the smallest model's first (the fold saves most there), so a short budget drops
    them first."""
    order = tidarc_order(models, prefixes)
    first = [(i, L, k) for i, L, k in order if k == _mid(models[i][0]) and L == max(prefixes)]
    dropped = set([p for p in order if p not in first][-len(first):]) if len(order) > len(first) else set()
    plan = []
    for p in order:
        plan.append((*p, DEFAULT))
        if p in first:
            plan.append((*p, NO_PDL))
        if p not in dropped:
            plan.append((*p, NO_GRAPHS))
    by_size = sorted(first, key=lambda p: models[p[0]][0]['layers'] * models[p[0]][0]['hiddenSize'] ** 2)
    return plan + [(*p, NO_FOLD) for p in by_size]


def run_e2e(torch, node, root, work, budget_s, dry, log=log, peaks=None, device_facts=None, eight_b_layers=EIGHT_B_LAYERS, hf_overrides=None, seed=7, correctness_only=False, save=None, backend=None, predictions=None):
    """The part; save(data), when given, after every tidarc run (a command cut short still reports);
    predictions: load_predictions(bundle), printed beside what is measured."""
    started = time.time()
    left = lambda: budget_s - (time.time() - started)  # noqa: E731
    device = 'cpu' if dry else 'cuda'
    models = dry_models() if dry else gpu_models(eight_b_layers)
    prefixes = DRY_PREFIXES if dry else GPU_PREFIXES
    timing = {'reps': 3, 'minSeconds': 0, 'warmup': 1} if dry else {'reps': 30, 'minSeconds': 0.3, 'warmup': 3}
    hf_dtype = torch.float32 if dry else torch.bfloat16
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, 'TIDARC_CACHE': os.environ.get('TIDARC_CACHE') or str(work / 'cache')}
    data = {'format': 1, 'dryRun': dry, 'backend': backend or ('cpu' if dry else 'cuda'), 'budgetS': budget_s, 'device': device_facts or {},
            'hf': {'dtype': str(hf_dtype).replace('torch.', ''), 'attention': 'sdpa', 'transformers': __import__('transformers').__version__, 'torch': torch.__version__},
            'models': [], 'rows': [], 'skipped': [], 'notes': [], 'tidarcRuns': [],
            'predictions': {k: predictions.get(k) for k in ('machine', 'registers', 'overheads', 'pdlOverheads')} if predictions else None,
            'predictedFor': predictions.get('predictedFor') if predictions else None}
    for spec, full in models:
        data['models'].append({'name': spec['name'], 'layers': spec['layers'], 'fullLayers': full, 'spec': spec})
        if spec['layers'] < full:
            data['notes'].append(f"{spec['name']} keeps {spec['layers']} of Qwen3-8B's {full} layers (every width, the vocabulary and lm_head as they are) to bound init and load time")
        if predictions and not any(m['spec'] == spec for m in predictions.get('models', [])):
            data['notes'].append(f"the bundle's predictions have no model of {spec['name']}'s spec (prepared from another checkout?)")
    std = 0.3 if dry else 0.02
    ckpts, weights, hf_times = [], [], {}
    for i, (spec, _) in enumerate(models):
        t0 = time.time()
        ckpt = work / spec['name']
        weights.append(write_checkpoint(torch, spec, ckpt, seed + i, std, device, DRY_SHARD_BYTES if dry else SHARD_BYTES))
        ckpts.append(ckpt)
        data['models'][i]['checkpointS'] = time.time() - t0
        data['models'][i]['shards'] = len(list(ckpt.glob('model-*.safetensors')))
        log(f"e2e: {spec['name']} checkpoint in {time.time() - t0:.1f} s")
    for i, w in enumerate([] if correctness_only else warm_up(node, root, ckpts, models, data['backend'], env, left())):
        data['models'][i]['warmUp'] = w
        log(f"e2e: {models[i][0]['name']} kernels compiled and loaded in {w['seconds']:.0f} s{': ' + w['error'] if 'error' in w else ''}")
    for i, (spec, _) in enumerate(models):
        ckpt, tensors = ckpts[i], weights[i]
        weights[i] = None
        model = hf_model(torch, spec, tensors, device, hf_dtype)
        if dry:
            data['correctness'] = correctness(torch, node, root, ckpt, spec, model, env, hf_overrides, tensors, device, hf_dtype)
            if correctness_only:
                return data
        for L in prefixes:
            if left() <= 0:
                data['skipped'].append(f"transformers {spec['name']} L={L}")
                continue
            hf_times[(i, L)] = hf_steps(torch, model, spec, L, spec['draftLengths'], device, 5 if dry else 20, 1 if dry else 3, seed)
            log(f"e2e: transformers {spec['name']} L={L}: " + ', '.join(f"{n} {t['medianMs']:.2f} ms" for n, t in hf_times[(i, L)].items()))
        del model, tensors
        if device == 'cuda':
            torch.cuda.empty_cache()
        if save:
            save(tabulate(data, models, prefixes, hf_times, {}, None, peaks, started, predictions))

    def after(runs, graphs, pdl):
        tabulate(data, models, prefixes, hf_times, runs, graphs, peaks, started, predictions, pdl)
        if save:
            save(data)
    bench = lambda i, L, k, no_graphs, no_pdl, no_fold=False: tidarc_bench(node, root, ckpts[i], k, L, data['backend'], no_graphs, timing, env, left(), no_pdl=no_pdl, no_fold=no_fold)  # noqa: E731
    runs, graphs, pdl = run_tidarc_plan(models, prefixes, bench, data, left, log, after)
    return tabulate(data, models, prefixes, hf_times, runs, graphs, peaks, started, predictions, pdl)


def pdl_off_note(model, L, k):
    """The report's one note where every run after the diagnosis adds --no-pdl."""
    return (f"every tidarc run after {model} L={L} k={k}'s diagnosis (its default run failed, its --no-pdl run ran) adds --no-pdl: "
            'programmatic dependent launch is off for the rest of the part, so the budget still measures graphs against launch by launch '
            '(without PDL; their rows say PDL off); the planned --no-pdl runs after it are not made')


def run_tidarc_plan(models, prefixes, bench, data, left, log=log, after=None):
    """tidarc_plan's runs, in order, through bench(i, L, k, no_graphs, no_pdl) -> tidarc_bench's result (the --no-fold-norms
    runs: bench(..., no_fold=True)); after(runs, graphs, pdl), when given, after each. Returns (runs: {(i, L, k, False | True |
    NO_PDL | NO_FOLD): result}, graphs, pdl) as tabulate reads them; appends to data's notes, skipped, tidarcRuns and pdlOff
    and sets data['noFold'] (the CLI's --no-fold-norms: 'supported' or 'unsupported: <its refusal>'). Where a default run FAILED and its --no-pdl run ran
    (no_pdl_diagnosis: PDL the likely cause), every later run adds --no-pdl (data['pdlOff'] says after which point, one
    note says so) and the later planned --no-pdl runs are not made: they would repeat the default runs."""
    graphs = None  # None: not known yet; else 'supported' or 'unsupported: <the CLI's refusal>'
    pdl = None  # likewise for --no-pdl
    pdl_off = None  # the point after whose diagnosis every run adds --no-pdl
    fold = None  # likewise for --no-fold-norms
    runs = {}
    data['plan'] = [{'model': models[i][0]['name'], 'prefix': L, 'draft': k, 'mode': mode} for i, L, k, mode in tidarc_plan(models, prefixes)]
    for i, L, k, mode in tidarc_plan(models, prefixes):
        spec = models[i][0]
        no_graphs, no_pdl, no_fold = mode == NO_GRAPHS, mode == NO_PDL, mode == NO_FOLD
        if no_graphs and graphs is not None and graphs != 'supported':
            continue  # the default run is already launch by launch
        default_run = runs.get((i, L, k, False)) if no_pdl or no_fold else None
        if no_fold:
            why_not = no_fold_skip(default_run)
            if why_not is not None:
                if why_not:
                    data['notes'].append(f"no --no-fold-norms run for {spec['name']} L={L} k={k}: {why_not}")
                continue
            if fold is not None and fold != 'supported':
                continue
        if no_pdl:
            if pdl_off:
                continue  # the default run was made with --no-pdl already
            why_not = no_pdl_skip(default_run)
            if why_not is not None:
                if why_not:
                    data['notes'].append(f"no --no-pdl run for {spec['name']} L={L} k={k}: {why_not}")
                continue
            if pdl is not None and pdl != 'supported':
                continue
        forced = bool(pdl_off) and not no_pdl
        flag = (f' --{mode}' if mode != DEFAULT else '') + (' --no-pdl' if forced else '')
        if left() <= 0:
            data['skipped'].append(f"tidarc {spec['name']} L={L} k={k}{flag}")
            continue
        r = bench(i, L, k, no_graphs, no_pdl or forced, no_fold=True) if no_fold else bench(i, L, k, no_graphs, no_pdl or forced)
        if forced:
            r = {**r, 'forcedNoPdl': True}  # table_rows: a default run without PDL, with no --no-pdl figure beside it
        if no_graphs and graphs is None:
            graphs = f"unsupported: {r['refused']}" if 'refused' in r else 'supported' if 'error' not in r else None
        if no_pdl and pdl is None:
            pdl = f"unsupported: {r['refused']}" if 'refused' in r else 'supported' if 'error' not in r else None
        if no_fold and fold is None:
            fold = f"unsupported: {r['refused']}" if 'refused' in r else 'supported' if 'error' not in r else None
            if fold:
                data['noFold'] = fold
        if no_fold and 'error' in default_run:
            data['notes'].append(no_fold_diagnosis(spec['name'], L, k, default_run, r))
        if no_pdl and 'error' in default_run:
            data['notes'].append(no_pdl_diagnosis(spec['name'], L, k, default_run, r))
            if 'tidar' in r:
                pdl_off = f"{spec['name']} L={L} k={k}"
                data['pdlOff'] = pdl_off
                data['notes'].append(pdl_off_note(spec['name'], L, k))
        runs[(i, L, k, NO_PDL if no_pdl else NO_FOLD if no_fold else no_graphs)] = r
        # What each run cost (the first of a model compiles its kernels): the part's time plan reads these.
        data['tidarcRuns'].append({'model': spec['name'], 'prefix': L, 'draft': k, 'noGraphs': no_graphs, 'noPdl': no_pdl or forced, 'seconds': round(r['seconds'], 1),
                                   **({'pdlOff': True} if forced else {}), **({'noFold': True} if no_fold else {}),
                                   **({'foldNorms': r['foldNorms']} if 'foldNorms' in r else {}),
                                   **({'pdl': r['pdl']} if 'pdl' in r else {}), **({'error': r.get('error') or r.get('refused')} if 'tidar' not in r else {})})
        log(f"e2e: tidarc {spec['name']} L={L} k={k}{flag}: "
            + (r.get('error') or r.get('refused') or f"tidar {r['tidar']['stepMs']['median']:.2f} ms, ar {r['ar']['stepMs']['median']:.2f} ms"
               f"{'' if 'pdl' not in r else ', PDL on' if r['pdl'] else ', PDL off'} ({r['seconds']:.0f} s)"))
        if after:
            after(runs, graphs, pdl)
    return runs, graphs, pdl


def tabulate(data, models, prefixes, hf_times, runs, graphs, peaks, started, predictions=None, pdl=None):
    """data's graphs, PDL switch, peaks and rows from what has run so far."""
    data['graphs'] = graphs or 'not known (no --no-graphs run finished)'
    data['noPdl'] = pdl or 'not known: no --no-pdl run finished'
    graphs_on = graphs == 'supported'
    if data['backend'] == 'cpu':  # its default run is the only one: the dry run still passes the flag, and says what the CLI did
        data['graphs'] = f"not applicable: the cpu backend launches no graphs (--no-graphs {'accepted' if graphs_on else data['graphs']})"
        graphs_on = False
    if peaks is None:  # the dry run: tidarc's own CPU peaks, measured by its bench-step in this run
        peaks = next((r['machine'] for r in runs.values() if 'machine' in r), None)
    data['peaks'] = peaks
    data['rows'] = table_rows(models, prefixes, hf_times, runs, graphs_on, peaks, predictions)
    data['seconds'] = time.time() - started
    return data


def correctness(torch, node, root, ckpt, spec, model, env, overrides, tensors, device, dtype, n=4):
    """tidarc's cpu backend against transformers on the same checkpoint: the same greedy first token per prompt."""
    if overrides:
        model = hf_model(torch, spec, tensors, device, dtype, overrides)
    cases = []
    for prompt in PROMPTS:
        ours = tidarc_greedy(node, root, ckpt, prompt, n, env)
        theirs = hf_greedy(torch, model, list(prompt.encode()), n, device)
        agree = next((j for j, (a, b) in enumerate(zip(ours, theirs)) if a != b['token']), n)
        cases.append({'prompt': prompt, 'tidarc': ours, 'transformers': [t['token'] for t in theirs], 'firstMargin': theirs[0]['margin'],
                      'agreeingPrefix': agree, 'ok': bool(ours and ours[0] == theirs[0]['token'])})
    return {'what': f'greedy AR tokens, tidarc cpu backend vs transformers ({str(dtype).replace("torch.", "")}, sdpa) on the same checkpoint',
            'overrides': overrides or {}, 'cases': cases, 'ok': all(c['ok'] for c in cases)}


def table_rows(models, prefixes, hf_times, runs, graphs_on, peaks, predictions=None):
    """One row per (model, L, step kind): tidarc with and without graphs, transformers, the roofline, the ratios,
    and the step cost model's prediction (GPU ms between events, graphs and launch by launch) where the bundle has one."""
    rows = []
    for i, (spec, _) in enumerate(models):
        for L in prefixes:
            for k in (0, *spec['draftLengths']):
                name = step_name(k)
                shape = step_shape(k, L)
                cost = step_cost(spec, shape)
                row = {'model': spec['name'], 'layers': spec['layers'], 'prefix': L, 'step': name, 'tokens': shape['tokens'], 'lmHeadRows': shape['lmHeadRows'],
                       'cost': cost, **({'roofline': roofline(cost, peaks)} if peaks else {})}

                def run_of(mode):
                    # AR comes with every bench-step run: the first finished one at this L counts.
                    for kk in ((k,) if k else spec['draftLengths']):
                        r = runs.get((i, L, kk, mode))
                        if mode is False and r and 'tidar' not in r:
                            # A default run that failed, whose --no-pdl run ran (the diagnosis): that graphs run stands for it (PDL off).
                            r = runs.get((i, L, kk, NO_PDL)) or r
                        if r and 'tidar' in r:
                            return r
                    return None
                default_run, no_pdl_run, no_fold_run = run_of(False), run_of(NO_PDL), run_of(NO_FOLD)
                figures = lambda r: step_figures(r['tidar'] if k else r['ar'], r) if r else None  # noqa: E731
                default, plain = figures(default_run), figures(run_of(True))
                # Not beside itself, nor beside a default run made with --no-pdl (run_tidarc_plan's forcedNoPdl).
                no_pdl = figures(no_pdl_run) if no_pdl_run is not default_run and not (default_run or {}).get('forcedNoPdl') else None
                graphs, launches = (default, plain) if graphs_on else (None, default)
                hf = hf_times.get((i, L), {}).get(name)
                row['tidarc'] = {'graphs': graphs, 'launches': launches, 'noPdl': no_pdl}
                row['hf'] = hf
                row['tidarcGraphsMs'] = graphs['medianMs'] if graphs else None
                row['tidarcLaunchesMs'] = launches['medianMs'] if launches else None
                # --no-pdl is a graphs run (the default launch mode) without PDL: beside the default run's figure.
                row['tidarcNoPdlMs'] = no_pdl['medianMs'] if no_pdl else None
                # --no-fold-norms: the default run's launch mode with the norms not folded, beside the default run (folded).
                no_fold = figures(no_fold_run)
                row['foldNorms'] = default.get('foldNorms') if default else None
                row['tidarcNoFoldMs'] = no_fold['medianMs'] if no_fold else None
                row['tidarcFoldMs'] = default['medianMs'] if no_fold and default else None
                # Whether the default run had PDL: True / False from bench-step's JSON, None where it does not say.
                row['pdl'] = default.get('pdl') if default else None
                row['hfEagerMs'] = hf['medianMs'] if hf else None
                row['rooflineMs'] = row['roofline']['rooflineMs'] if peaks else None
                pred = predicted_row(predictions, spec, L, name)
                # The prediction of the mode each run had: PDL on (pred['pdl'], predictions since the PDL model) where the default
                # run says pdl true, plain launches otherwise and for --no-pdl; a bundle without PDL predictions gives plain ones.
                on = (pred or {}).get('pdl') if row['pdl'] else None
                pg, pl = (on or pred or {}).get('graphs'), (on or pred or {}).get('launchByLaunch')
                row['predicted'] = {'graphsMs': pg['gpuMs'], 'launchesMs': pl['gpuMs'], 'hostGraphsMs': pg['hostMs'], 'hostLaunchesMs': pl['hostMs'],
                                    'noPdlGraphsMs': pred['graphs']['gpuMs'], 'pdlGraphsMs': pred['pdl']['graphs']['gpuMs'] if pred.get('pdl') else None,
                                    'pdl': bool(on), 'launchesPerStep': pred['launches'], 'rooflineMs': pred['rooflineMs']} if pred else None
                row['predictedGraphsMs'] = pg['gpuMs'] if pred else None
                row['predictedLaunchesMs'] = pl['gpuMs'] if pred else None
                row['predictedNoPdlMs'] = pred['graphs']['gpuMs'] if pred else None
                # The fold's prediction in the default run's mode (graphs or launch by launch, PDL as the run had it): the
                # prediction (folded where the runtime folds) against the bundle's unfolded one (pred['noFold'], absent where
                # the step folds nothing or the bundle predates the fold).
                nf = (pred or {}).get('noFold')
                nf_mode = ((nf.get('pdl') if row['pdl'] else None) or nf) if nf else None
                row['predictedNoFoldMs'] = nf_mode['graphs' if graphs else 'launchByLaunch']['gpuMs'] if nf_mode else None
                row['predictedFoldMs'] = (pg if graphs else pl)['gpuMs'] if nf_mode else None
                # The fastest mode measured (graphs, else launch by launch), against its own prediction.
                row['predictedMs'] = row['predictedGraphsMs'] if graphs else row['predictedLaunchesMs']
                ratio = lambda a, b: (row[a] / row[b]) if row[a] and row[b] else None  # noqa: E731
                row['ratios'] = {'graphsOverRoofline': ratio('tidarcGraphsMs', 'rooflineMs'), 'launchesOverRoofline': ratio('tidarcLaunchesMs', 'rooflineMs'),
                                 'hfOverRoofline': ratio('hfEagerMs', 'rooflineMs'), 'launchesOverGraphs': ratio('tidarcLaunchesMs', 'tidarcGraphsMs'),
                                 'hfOverGraphs': ratio('hfEagerMs', 'tidarcGraphsMs'), 'hfOverLaunches': ratio('hfEagerMs', 'tidarcLaunchesMs'),
                                 'graphsOverPredicted': ratio('tidarcGraphsMs', 'predictedGraphsMs'), 'launchesOverPredicted': ratio('tidarcLaunchesMs', 'predictedLaunchesMs'),
                                 'noPdlOverGraphs': ratio('tidarcNoPdlMs', 'tidarcGraphsMs'), 'noPdlOverPredicted': ratio('tidarcNoPdlMs', 'predictedNoPdlMs')}
                saving = lambda a, b: (1 - row[a] / row[b]) if row[a] and row[b] else None  # noqa: E731
                # What the fold saves: 1 - folded / unfolded, measured (default run vs --no-fold-norms) and predicted.
                row['foldSaving'] = {'measured': saving('tidarcFoldMs', 'tidarcNoFoldMs'), 'predicted': saving('predictedFoldMs', 'predictedNoFoldMs')}
                row['measuredOverPredicted'] = row['ratios']['graphsOverPredicted'] if graphs else row['ratios']['launchesOverPredicted']
                rows.append(row)
    return rows


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bundle', default='out/device-check', help='the device check\'s bundle: its node/ (pack-runtime.sh) carries Node and tidarc')
    ap.add_argument('--out', default=os.environ.get('OUT', 'out/device-check-results'))
    ap.add_argument('--budget', type=float, default=240, help='seconds for the part: no point starts after this long')
    ap.add_argument('--dry-run', action='store_true', help='the small model on the cpu backend and torch CPU, with the correctness check')
    ap.add_argument('--tidarc-root', help='a built tidarc (dist/, bin/) to run with this machine\'s node instead of the bundle\'s, e.g. .')
    ap.add_argument('--eight-b-layers', type=int, default=EIGHT_B_LAYERS, help='layers the Qwen3-8B shape keeps (of 36)')
    ap.add_argument('--dry-backend', choices=('cpu', 'cuda'), default='cpu',
                    help='dry run: the backend tidarc\'s steps run on; cuda needs $TIDARC_LIBCUDA (tidarc emulated-driver): graphs on and off, as on a GPU')
    ap.add_argument('--correctness-only', action='store_true', help='dry run: the correctness check alone (no timing)')
    ap.add_argument('--hf-override', action='append', default=[], metavar='KEY=JSON',
                    help='dry run: change transformers\' config (e.g. rope_theta=1000): the correctness check must then fail')
    ap.add_argument('--work', help='scratch folder for the checkpoints (GBs) and the kernel cache (default: a new one under /tmp, removed after)')
    ap.add_argument('--report-only', metavar='FILE', help='rewrite e2e.md from a recorded e2e.json')
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.report_only:
        print(write_e2e_reports(json.loads(Path(a.report_only).read_text()), out))
        return 0
    overrides = {k: json.loads(v) for k, v in (o.split('=', 1) for o in a.hf_override)}
    try:
        import torch
    except ImportError:
        sys.exit('e2e: needs torch and transformers (python3 -m pip install torch transformers safetensors)')
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix='tidarc-e2e-'))
    facts, peaks = None, None
    if a.tidarc_root:
        node, root = shutil.which('node'), Path(a.tidarc_root).resolve()
    else:
        from gpu import unpack_runtime
        work.mkdir(parents=True, exist_ok=True)
        node, root = unpack_runtime(Path(a.bundle), work)
        if not node:
            sys.exit('e2e: no Node in the bundle: run scripts/device-check/pack-runtime.sh, or pass --tidarc-root')
    if not a.dry_run:
        from gpu import ceilings, gpu_facts
        from kernels import Driver
        torch.cuda.init()
        facts = {**gpu_facts(torch), 'driverVersion': Driver('libcuda.so.1').version}  # as device_check.py records it
        peaks = peaks_of_ceilings(ceilings(torch))
        log(f'e2e: {facts}; {peaks["how"]}')
    from machines import load_machines, predicted_for
    date = time.strftime('%Y-%m-%d')
    partial = lambda d: (out / 'e2e.json').write_text(json.dumps({**d, 'date': date, 'partial': True}, indent=1) + '\n')  # noqa: E731
    if a.dry_run and a.dry_backend == 'cuda' and not os.environ.get('TIDARC_LIBCUDA'):
        sys.exit('e2e: --dry-backend cuda needs TIDARC_LIBCUDA (tidarc emulated-driver)')
    dry_device = {'name': f"tidarc emulated GPU ({os.environ.get('TIDARC_LIBCUDA')}; dry run)" if a.dry_backend == 'cuda' else 'this machine\'s CPU (dry run)'}
    data = run_e2e(torch, node, root, work, a.budget, a.dry_run, peaks=peaks, device_facts=facts or dry_device, eight_b_layers=a.eight_b_layers,
                   hf_overrides=overrides, correctness_only=a.correctness_only, save=partial, backend=None if not a.dry_run else a.dry_backend,
                   predictions=load_predictions(a.bundle, predicted_for(load_machines(a.bundle), (facts or dry_device)['name'])))
    data['date'] = date
    (out / 'e2e.json').write_text(json.dumps(data, indent=1) + '\n')
    print(write_e2e_reports(data, out))
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if data.get('correctness', {'ok': True})['ok'] and (data['rows'] or a.correctness_only) and not failed_runs(data) else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
