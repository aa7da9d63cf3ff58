"""What the device check's parts share on a GPU: its facts (name, SMs, driver, CUDA), CUDA-event
timing, the two ceilings measured in the run (a device-to-device copy, a bf16 matmul), the GEMM
units' nvcc build, and the Node + tidarc package that pack-runtime.sh put in the bundle."""
import concurrent.futures
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gemm import ptxas_registers
from tune import LEAD_CYCLES, nvcc_path

HERE = Path(__file__).resolve().parent


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def gpu_facts(torch):
    p = torch.cuda.get_device_properties(0)
    smi = shutil.which('nvidia-smi')
    clocks = subprocess.run([smi, '--query-gpu=driver_version,clocks.max.sm,clocks.max.mem', '--format=csv,noheader'], capture_output=True, text=True).stdout.strip() if smi else ''
    return {'name': p.name, 'sms': p.multi_processor_count, 'capability': f'{p.major}.{p.minor}', 'memoryGiB': round(p.total_memory / 2**30, 1),
            'torch': torch.__version__, 'cuda': torch.version.cuda, 'nvidiaSmi': clocks, 'host': platform.node()}


# The spin before each timed call (torch.cuda._sleep, in GPU clock cycles): at least tune.py's LEAD_CYCLES,
# and at least twice the host's time to queue one call at LEAD_CLOCK_HZ (no Hopper SM clock is above it, so
# the spin lasts at least that long), at most LEAD_MAX_CYCLES (10 ms there).
LEAD_CLOCK_HZ = 2.0e9
LEAD_MAX_CYCLES = 20_000_000
HOST_CALLS = 3  # calls after the warm-up whose host time sizes the spin


def lead_cycles(host_s):
    """The spin that covers a call whose queueing takes host_s seconds of the host (see LEAD_CLOCK_HZ)."""
    return int(min(LEAD_MAX_CYCLES, max(LEAD_CYCLES, math.ceil(2 * host_s * LEAD_CLOCK_HZ))))


def time_events(torch, fn, reps, warmup=10):
    """CUDA events around each of `reps` calls fn(i), after `warmup` calls. Each timed call is queued behind a
    spin kernel (torch.cuda._sleep) longer than the host takes to queue it (measured on HOST_CALLS calls:
    ctypes packing and the launch for tidarc's kernels, the dispatch for torch's ops, the guards of a compiled
    Flex), so that its start event fires when the GPU reaches the call, not before the host has launched it:
    without the spin a kernel shorter than its launch (tidarc's ctypes launch is tens of us) would be timed
    as the host's launch. hostUs: that host time per call; leadCycles: the spin."""
    for _ in range(warmup):
        fn(0)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(HOST_CALLS):
        fn(i)
    host_s = (time.perf_counter() - t0) / HOST_CALLS
    torch.cuda.synchronize()
    sleep = getattr(torch.cuda, '_sleep', None)
    lead = lead_cycles(host_s)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        if sleep:
            sleep(lead)
        starts[i].record()
        fn(i)
        ends[i].record()
    torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    q = lambda f: ms[min(len(ms) - 1, int(f * len(ms)))]  # noqa: E731
    return {'medianUs': q(0.5) * 1e3, 'p20Us': q(0.2) * 1e3, 'p80Us': q(0.8) * 1e3, 'reps': reps, 'hostUs': host_s * 1e6,
            **({'leadCycles': lead} if sleep else {})}


def ceilings(torch):
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device='cuda')
    b = torch.empty_like(a)
    t = time_events(torch, lambda i: b.copy_(a), 20, 3)
    copy_tbs = 2 * n / (t['medianUs'] * 1e-6) / 1e12
    m = 8192
    x = torch.randn(m, m, dtype=torch.bfloat16, device='cuda')
    y = torch.randn(m, m, dtype=torch.bfloat16, device='cuda')
    t = time_events(torch, lambda i: x @ y, 20, 3)
    return {'copyTBs': copy_tbs, 'matmulTflops': 2 * m**3 / (t['medianUs'] * 1e-6) / 1e12}


def build_gemm_fatbins(bundle, gem, arch, search=False):
    """The GEMM units of gemm.json (and the ops module) for the GPU's arch, or with search=True the
    search's sources (a split-K count of a shape each); returns ptxas registers per kernel."""
    nvcc = nvcc_path()
    def build(unit):
        cu = bundle / unit['cu']
        r = subprocess.run([nvcc, '-fatbin', '-O3', '-std=c++17', '-Xptxas', '-v', f'-gencode=arch=compute_{arch},code=sm_{arch}', f"-I{bundle / 'gemm' / 'cuda'}",
                            '-o', str(bundle / unit['fatbin']), str(cu)], capture_output=True, text=True, cwd=cu.parent)
        if r.returncode != 0:
            raise RuntimeError(f'nvcc failed on {cu}:\n{r.stderr[-2000:]}')
        return ptxas_registers(r.stderr)
    t0 = time.time()
    regs = {}
    jobs = [s for t in gem.get('tune', []) for s in t['sources']] if search else list(gem['units']) + ([gem['ops']] if gem.get('ops') else [])
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 4) as pool:
        for r in pool.map(build, jobs):
            regs.update(r)
    log(f"nvcc: {len(jobs)} GEMM fatbins for sm_{arch} in {time.time() - t0:.0f} s")
    return regs


def runtime_check(node, root, work, tokens, drafts, env=None, timeout=None, budget=None):
    """tidarc's runtime on the cuda backend (runtime_check.mjs): greedy TiDAR == AR, exact caches; with PDL on and, as far as
    `budget` (seconds; None: no limit) allows, once more with PDL off."""
    try:
        r = subprocess.run([node, str(HERE / 'runtime_check.mjs'), str(root), str(work), str(tokens), drafts, *([f'{budget:.0f}'] if budget is not None else [])],
                           capture_output=True, text=True, env=env,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {'ok': False, 'error': [f'runtime_check.mjs did not finish in {timeout:.0f} s']}
    if r.returncode != 0:
        return {'ok': False, 'error': r.stderr.strip().splitlines()[-1:] or ['exit code %d' % r.returncode]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def overheads_check(node, root, work, env=None, timeout=None, budget=None):
    """The step cost model's launch and host overheads measured on the device (overheads.mjs): its one JSON line, or
    {'ok': False, 'error': why} when it did not finish, exited non-zero or printed no JSON. budget: seconds it may take (None: its own)."""
    script = HERE / 'overheads.mjs'
    if not script.exists():
        return {'ok': False, 'error': f'{script.name} is not in this checkout'}
    Path(work).mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run([node, str(script), str(root), str(work), *([f'{budget:.0f}'] if budget is not None else [])],
                           capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {'ok': False, 'error': f'overheads.mjs did not finish in {timeout:.0f} s'}
    last = (r.stdout.strip().splitlines() or [''])[-1]
    try:
        out = json.loads(last)
    except ValueError:
        out = None
    if r.returncode != 0 or not isinstance(out, dict):
        why = (r.stderr.strip().splitlines() or [''])[-1] or (f'exit code {r.returncode}' if r.returncode else 'no JSON line on its output')
        return {'ok': False, 'error': why[-400:]}
    return out


def unpack_runtime(bundle, work):
    """The Node and tidarc package that pack-runtime.sh put in the bundle, unpacked under work
    (once: the runtime and e2e parts share it); (None, None) when the bundle has none."""
    packed = bundle / 'node'
    if not (packed / 'node.xz').exists():
        return None, None
    import lzma
    import tarfile
    work = Path(work)
    node, root, done = work / 'node', work / 'tidarc', work / '.unpacked'
    if done.exists():
        return str(node), root
    work.mkdir(parents=True, exist_ok=True)
    with lzma.open(packed / 'node.xz') as src, open(node, 'wb') as dst:  # Python's own xz: no xz binary needed there
        shutil.copyfileobj(src, dst)
    node.chmod(0o755)
    with tarfile.open(packed / 'tidarc.tar.xz', 'r:xz') as tar:
        # Our own archive: trusted as packed (Python 3.12 warns without a filter, 3.14 changes the default).
        tar.extractall(work, **({'filter': 'fully_trusted'} if hasattr(tarfile, 'fully_trusted_filter') else {}))
    done.write_text('')
    return str(node), root


# The runtime part's draft lengths on a GPU (parts.py part_runtime): precompile.mjs compiles its model for the same
# (overheads.mjs takes its GPU operators from that model's cache entry: runtime_spec.mjs with 1,2,4,8).
RUNTIME_DRAFTS = '1,2,4,8'
KERNEL_CACHE = 'kernel-cache'  # under the scratch folder: the runtime and e2e parts' TIDARC_CACHE on a GPU


def device_target():
    """The tidarc target of GPU 0 (sm_90 on an H200) from nvidia-smi, or None."""
    smi = shutil.which('nvidia-smi')
    if not smi:
        return None
    r = subprocess.run([smi, '--query-gpu=compute_cap', '--format=csv,noheader'], capture_output=True, text=True, timeout=30)
    cap = r.stdout.strip().splitlines()[0].strip() if r.returncode == 0 and r.stdout.strip() else ''
    return f"sm_{cap.replace('.', '')}" if cap.replace('.', '').isdigit() else None


def gpu_name():
    """GPU 0's name from nvidia-smi ('NVIDIA H100 80GB HBM3'), or None: which machine's predictions the check prints (machines.py)."""
    smi = shutil.which('nvidia-smi')
    if not smi:
        return None
    try:
        r = subprocess.run([smi, '--query-gpu=name', '--format=csv,noheader'], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = r.stdout.strip().splitlines() if r.returncode == 0 else []
    return lines[0].strip() or None if lines else None


def start_precompile(bundle, scratch, names):
    """precompile.mjs in the background (niced, its own process group) for the overheads, runtime and e2e parts among names,
    into <scratch>/kernel-cache while the parts before them run: {'process', 'log', 'target', 'started'}, or {'skipped': why}."""
    from e2e_cost import gpu_models
    from e2e_hf import hf_config
    node, root = unpack_runtime(bundle, Path(scratch) / 'runtime')
    target = device_target()
    if not node or not target:
        return {'skipped': 'no Node in the bundle' if not node else 'nvidia-smi gave no compute capability'}
    configs = Path(scratch) / 'precompile-configs.json'
    configs.write_text(json.dumps([hf_config(spec) for spec, _ in gpu_models()] if 'e2e' in names else []))
    log_path = Path(scratch) / 'precompile.log'
    cmd = ['nice', '-n', '10', node, str(HERE / 'precompile.mjs'), str(root), str(Path(scratch) / KERNEL_CACHE), target, str(configs),
           *([RUNTIME_DRAFTS] if {'runtime', 'overheads'} & set(names) else [])]  # overheads.mjs: the runtime model's GPU operators
    with open(log_path, 'w') as f:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=f, text=True, process_group=0)
    return {'process': p, 'log': log_path, 'target': target, 'started': time.time()}


def finish_precompile(pre):
    """What the background compile did, for device-check.json: each entry's seconds (or error); killed if still running."""
    if 'skipped' in pre:
        return pre
    p = pre['process']
    killed = p.poll() is None
    if killed:
        os.killpg(p.pid, 9)
    out = p.communicate()[0]
    entries = []
    for line in out.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            pass
    tail = pre['log'].read_text().strip().splitlines()[-1:] if pre['log'].exists() else []
    return {'target': pre['target'], 'entries': entries, **({'killed': 'still compiling at the end of the check'} if killed else {}),
            **({'lastLog': tail[0][:300]} if tail and (killed or p.returncode) else {})}

