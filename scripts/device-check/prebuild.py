"""Fatbins built before the GPU session (`device_check.py --prebuild 90`, run by prepare.ts): nvcc
needs no GPU, and the minutes it takes on the GPU machine (the GEMM search's sources alone are
minutes of CPU) come out of its 15 minutes of device time. prebuilt.json in the bundle records the
arch, the nvcc and ptxas's registers per GEMM kernel; a part uses the prebuilt fatbins only when the
device's arch is the one recorded, and builds them itself otherwise. The fatbins travel packed in
prebuilt.tar.xz (about 35 MiB of cubins are about 1.2 MiB of xz; loose they put the bundle past the
device tool's 64 MiB carry) and are unpacked by the first part that asks for them (prebuilt)."""
import json
import tarfile
import time

from attention import build_fatbins
from gpu import build_gemm_fatbins, log
from tune import build_sm90a_units, nvcc_version

PREBUILT = 'prebuilt.json'
PACKED = 'prebuilt.tar.xz'
UNPACKED = 'prebuilt.unpacked'  # written once the packed fatbins are in place


def prebuilt(bundle, arch):
    """prebuilt.json when its fatbins are for `arch` (e.g. '90'), with them unpacked, else None."""
    path = bundle / PREBUILT
    if not path.exists():
        return None
    p = json.loads(path.read_text())
    if p.get('arch') != arch:
        return None
    if (bundle / PACKED).exists() and not (bundle / UNPACKED).exists():
        with tarfile.open(bundle / PACKED, 'r:xz') as t:
            t.extractall(bundle, filter='data')
        (bundle / UNPACKED).touch()
    return p


def pack(bundle):
    """Every fatbin under the bundle into prebuilt.tar.xz, the loose ones removed."""
    fatbins = sorted(bundle.rglob('*.fatbin'))
    with tarfile.open(bundle / PACKED, 'w:xz') as t:
        for f in fatbins:
            t.add(f, arcname=str(f.relative_to(bundle)))
    for f in fatbins:
        f.unlink()
    return len(fatbins)


def prebuild(bundle, arch):
    """Every fatbin the parts launch, for `arch`: the GEMM units and ops, the GEMM search's sources, the attention
    grid, its tuning tiles and the sm_90a GEMM units (always sm_90a); then prebuilt.json."""
    import gemm_sm90a
    t0 = time.time()
    for old in (PREBUILT, PACKED, UNPACKED):  # a half-done prebuild is no prebuild
        (bundle / old).unlink(missing_ok=True)
    for old in bundle.rglob('*.fatbin'):  # an earlier prepare's: the builds below skip none, but the parts' would
        old.unlink()
    registers = {}
    if (bundle / 'gemm.json').exists():
        gem = json.loads((bundle / 'gemm.json').read_text())
        registers = build_gemm_fatbins(bundle, gem, arch)
        build_gemm_fatbins(bundle, gem, arch, search=True)
        from gemm_tune import build_sm90a_sources
        build_sm90a_sources(bundle, gem, log)  # the search's sm_90a GEMMs (always sm_90a)
    if (bundle / 'grid.json').exists():
        grid = json.loads((bundle / 'grid.json').read_text())
        build_fatbins(bundle, grid, arch)
        build_fatbins(bundle, grid, arch, search=True)
        build_sm90a_units(bundle, grid, log)  # the tuned variants' sm_90a kernels (always sm_90a)
    if (bundle / 'gemm_sm90a.json').exists():
        gemm_sm90a.compile_units(bundle, json.loads((bundle / 'gemm_sm90a.json').read_text()), log)
    if (bundle / 'attention_sm90a.json').exists():  # the sm_90a attention (sm_90a) and its mma.sync twins (sm_90)
        import attention_sm90a
        attention_sm90a.compile_units(bundle, json.loads((bundle / 'attention_sm90a.json').read_text()), log)
    packed = pack(bundle)
    (bundle / PREBUILT).write_text(json.dumps({'arch': arch, 'nvcc': nvcc_version(), 'registers': registers}, indent=1) + '\n')
    log(f'prebuild: every fatbin for sm_{arch} in {time.time() - t0:.0f} s; {packed} packed in {PACKED} ({(bundle / PACKED).stat().st_size / 2**20:.1f} MiB)')
