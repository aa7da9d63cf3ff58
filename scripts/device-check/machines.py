"""Which machine's predictions the device check prints: the bundle carries every cost-model prediction
once per machine (src/bench/predicted-machines.ts: `byMachine` beside the H200's own fields, and
machines.json saying which GPU names each key is for); this picks the one for the GPU the check runs
on and writes its figures into the records' own fields, so the parts read predictedUs as before.
A GPU no machine matches (the emulator, an A100, an H100 PCIe) gets the default's (the H200's),
labelled as not this GPU. Nothing here computes a prediction. Python's standard library only."""
import json
import re
from pathlib import Path

MACHINES_FILE = 'machines.json'


def load_machines(bundle):
    """machines.json of the bundle, or None (a bundle prepared before it: its predictions are the H200's)."""
    p = Path(bundle) / MACHINES_FILE if bundle else None
    return json.loads(p.read_text()) if p and p.exists() else None


def predicted_for(machines, gpu_name):
    """The machine whose predictions this GPU gets: {'machine': key, 'name', 'gpu', 'thisGpu', 'label', 'copyTBs', 'matmulTflops'}.
    label is what a table header says: the key, or '<key>, not this GPU'."""
    if not machines:
        return {'machine': None, 'name': 'H200 (sm_90, 132 SMs)', 'gpu': gpu_name, 'thisGpu': False,
                'label': 'H200, not checked against this GPU (a bundle without machines.json)'}
    hit = next((m for m in machines['machines'] if gpu_name and re.search(m['gpuName'], gpu_name)), None)
    m = hit or next(m for m in machines['machines'] if m['key'] == machines['default'])
    return {'machine': m['key'], 'name': m['name'], 'gpu': gpu_name, 'thisGpu': hit is not None,
            'label': m['key'] if hit else f"{m['key']}, not this GPU",
            'copyTBs': m.get('copyTBs'), 'matmulTflops': m.get('matmulTflops')}  # the record's rates, beside the ceilings measured


def for_machine(obj, key):
    """obj (grid.json, gemm.json, e2e_predictions.json) with every record that has `byMachine` given
    byMachine[key]'s fields in place of its own, byMachine dropped; unchanged where key is None or absent."""
    if isinstance(obj, list):
        return [for_machine(x, key) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: for_machine(v, key) for k, v in obj.items() if k != 'byMachine'}
    mine = (obj.get('byMachine') or {}).get(key) if key else None
    if mine:
        out.update(mine)
        out['predictedFor'] = key
    return out


def header(predicted):
    """'predicted us (H100)' style suffix for a table header: which machine the column is for."""
    return (predicted or {}).get('label') or 'H200'
