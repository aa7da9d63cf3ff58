#!/usr/bin/env python3
"""Turns a device check's output folder into bench/results/<date>-<gpu>/, ready to commit:

  python3 scripts/device-check/results.py DIR [--into bench/results] [--replace]

DIR is what device_check.py wrote under --out (the device tool brings $OUT back read-only under its
files_at folder). Copied: device-check.json, device-check.md, device-check.svg, tune-cuda.json and
device-check.log where present; written: README.md, a short table (GPU, capability, driver, CUDA,
torch, date, budget, each part's result), the check's summary lines and the overheads part's table
(the step cost model's launch and host constants, measured vs assumed). The folder is named by the
run's date and the GPU (NVIDIA H200 -> 2026-12-05-h200). Refused: a dry run (emulator figures are not
a GPU's) and an existing folder unless --replace. Prints the folder.
"""
import argparse
import json
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
from report import write_reports  # noqa: E402
from report_parts import overheads_lines  # noqa: E402

COPIED = ('device-check.json', 'device-check.md', 'device-check.svg', 'tune-cuda.json', 'device-check.log')


def gpu_slug(name):
    """'NVIDIA H200' -> 'h200'; 'NVIDIA H100 80GB HBM3' -> 'h100-80gb-hbm3'."""
    words = [w for w in re.split(r'[^a-z0-9]+', name.lower()) if w and w not in ('nvidia', 'geforce', 'tesla')]
    return '-'.join(words) or 'gpu'


def readme(data, summary):
    dev = data.get('device', {})
    rows = [('GPU', dev.get('name')), ('compute capability', dev.get('capability')), ('SMs', dev.get('sms')),
            ('driver', dev.get('nvidiaSmi') or dev.get('driverVersion')), ('CUDA (torch)', dev.get('cuda')), ('torch', dev.get('torch')),
            ('date', data.get('date')), ('tidarc', data.get('generator')), ('budget', f"{data.get('budgetS', '?')} s")]
    if data.get('ceilings'):
        c = data['ceilings']
        rows.append(('ceilings', f"copy {c['copyTBs']:.2f} TB/s, bf16 matmul {c['matmulTflops']:.0f} TFLOP/s"))
    lines = [f"# Device check on {dev.get('name', '?')}, {data.get('date', '?')}", '',
             'Written by scripts/device-check/results.py from the output of `device_check.py`; the tables are in device-check.md.', '']
    if data.get('partial'):
        lines += ['**Partial:** the command was cut short; what each part saved is kept.', '']
    lines += ['| | |', '|---|---|', *[f'| {k} | {v if v is not None else "?"} |' for k, v in rows], '']
    parts = data.get('parts', [])
    if parts:
        lines += ['| part | result | seconds | note |', '|---|---|---|---|',
                  *[f"| {r['name']} | {r['status']} | {r.get('seconds', '-')} | {r.get('why', '')} |" for r in parts], '']
    lines += ['```', *summary.splitlines(), '```', '']
    oh = overheads_lines(data)
    if oh:  # what the step cost model's constants are on this GPU (bench:step --overheads device-check.json prices the steps with them)
        lines += ['## Launch and host overheads: measured vs assumed', '', *oh]
    return '\n'.join(lines)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('dir', help='the device check\'s output folder (its --out)')
    ap.add_argument('--into', default='bench/results')
    ap.add_argument('--replace', action='store_true', help='replace a folder of the same date and GPU')
    a = ap.parse_args(argv)
    src = Path(a.dir)
    if not (src / 'device-check.json').is_file():
        sys.exit(f'tidarc: error: {src}: no device-check.json (the folder device_check.py --out wrote)')
    data = json.loads((src / 'device-check.json').read_text())
    if data.get('dryRun'):
        sys.exit(f'tidarc: error: {src / "device-check.json"}: a dry run (emulator figures are not a GPU\'s results)')
    dest = Path(a.into) / f"{data.get('date', 'undated')}-{gpu_slug(data.get('device', {}).get('name', 'gpu'))}"
    if dest.exists() and not a.replace:
        sys.exit(f'tidarc: error: {dest}: already exists; allowed: a new folder, or --replace')
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in COPIED:
        if (src / f).is_file():
            shutil.copyfile(src / f, dest / f)
    summary = write_reports(data, dest)  # the markdown again from the JSON: the same tables whatever wrote the folder
    (dest / 'README.md').write_text(readme(data, summary))
    print(dest)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
