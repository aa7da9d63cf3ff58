"""What every part of the device check shares: the CUDA driver through ctypes, the launch of a
bundle variant (one kernel: with split-KV its last CTA per row group merges), the 16-bit formats, and the float64
references a kernel's output is judged by (numpy; torch on the inputs' device for the large
shapes), with the error of PyTorch's same-precision SDPA that sets FA3's tolerance (and which SDPA
backend ran it), and whether a failed launch left the CUDA context usable."""
import ctypes
import math
import os
import warnings

import numpy as np

from tidarc_abi import ATTENTION, attention_grid

FIXED_TOLERANCE = {'bf16': 2e-2, 'fp16': 3e-3}  # the emulator tests' (src/emulate/emulate-variant.ts)
LSE_TOLERANCE = 2e-3
FA3_EPSILON = 1e-3
CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16


# ---- the CUDA driver through ctypes ---------------------------------------------------------------

class Driver:
    """The driver calls the check needs; every failing call raises with the CUDA error name."""

    def __init__(self, path):
        self.path = path
        self.lib = ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_LOCAL)
        L, u64, vp, sz, i32 = self.lib, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
        sigs = {
            'cuInit': [ctypes.c_uint], 'cuDeviceGet': [ctypes.POINTER(i32), i32],
            'cuDevicePrimaryCtxRetain': [ctypes.POINTER(vp), i32], 'cuCtxSetCurrent': [vp], 'cuCtxSynchronize': [],
            'cuMemAlloc_v2': [ctypes.POINTER(u64), sz], 'cuMemFree_v2': [u64],
            'cuMemcpyHtoD_v2': [u64, vp, sz], 'cuMemcpyDtoH_v2': [vp, u64, sz], 'cuMemsetD8_v2': [u64, ctypes.c_ubyte, sz],
            'cuModuleLoad': [ctypes.POINTER(vp), ctypes.c_char_p], 'cuModuleGetFunction': [ctypes.POINTER(vp), vp, ctypes.c_char_p],
            'cuFuncSetAttribute': [vp, i32, i32],
            'cuLaunchKernel': [vp, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                               ctypes.c_uint, vp, ctypes.POINTER(vp), vp],
            'cuGetErrorName': [i32, ctypes.POINTER(ctypes.c_char_p)], 'cuDriverGetVersion': [ctypes.POINTER(i32)],
            'cuDeviceGetName': [ctypes.c_char_p, i32, i32], 'cuDeviceGetAttribute': [ctypes.POINTER(i32), i32, i32],
        }
        for name, args in sigs.items():
            fn = getattr(L, name)
            fn.argtypes, fn.restype = args, i32
        self.check(L.cuInit(0), 'cuInit')
        dev, ctx = i32(), vp()
        self.check(L.cuDeviceGet(ctypes.byref(dev), 0), 'cuDeviceGet')
        self.check(L.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), 'cuDevicePrimaryCtxRetain')
        self.check(L.cuCtxSetCurrent(ctx), 'cuCtxSetCurrent')
        v = i32()
        L.cuDriverGetVersion(ctypes.byref(v))
        self.version = v.value
        name = ctypes.create_string_buffer(256)
        self.check(L.cuDeviceGetName(name, 256, dev), 'cuDeviceGetName')
        self.name = name.value.decode()
        sms = i32()
        self.check(L.cuDeviceGetAttribute(ctypes.byref(sms), CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev), 'cuDeviceGetAttribute')
        self.sms = sms.value
        self.functions = {}
        self.counters, self.counters_bytes = 0, 0

    def check(self, r, what):
        if r != 0:
            name = ctypes.c_char_p()
            self.lib.cuGetErrorName(r, ctypes.byref(name))
            raise RuntimeError(f'{what} failed: {(name.value or b"?").decode()} ({r})')

    def alloc(self, nbytes):
        p = ctypes.c_uint64()
        self.check(self.lib.cuMemAlloc_v2(ctypes.byref(p), max(1, nbytes)), 'cuMemAlloc')
        return p.value

    def free(self, p):
        self.check(self.lib.cuMemFree_v2(p), 'cuMemFree')

    def upload(self, p, arr):
        arr = np.ascontiguousarray(arr)
        self.check(self.lib.cuMemcpyHtoD_v2(p, arr.ctypes.data, arr.nbytes), 'cuMemcpyHtoD')

    def download(self, p, arr):
        self.check(self.lib.cuMemcpyDtoH_v2(arr.ctypes.data, p, arr.nbytes), 'cuMemcpyDtoH')

    def fill(self, p, byte, nbytes):
        self.check(self.lib.cuMemsetD8_v2(p, byte, nbytes), 'cuMemsetD8')

    def split_counters(self, count):
        """The split-KV id and arrival counters (int32; split_counter_count of them), zeroed once when (re)allocated: every launch leaves them 0."""
        if self.counters_bytes < 4 * count:
            if self.counters:
                self.free(self.counters)
            self.counters, self.counters_bytes = self.alloc(4 * count), 4 * count
            self.fill(self.counters, 0, 4 * count)
        return self.counters

    def function(self, module_path, name, shared):
        key = (module_path, name)
        if key not in self.functions:
            mod, fn = ctypes.c_void_p(), ctypes.c_void_p()
            self.check(self.lib.cuModuleLoad(ctypes.byref(mod), str(module_path).encode()), f'cuModuleLoad({module_path})')
            self.check(self.lib.cuModuleGetFunction(ctypes.byref(fn), mod, name.encode()), f'cuModuleGetFunction({name})')
            self.functions[key] = fn
        fn = self.functions[key]
        if shared > 48 * 1024:
            self.check(self.lib.cuFuncSetAttribute(fn, 8, shared), 'cuFuncSetAttribute')  # MAX_DYNAMIC_SHARED_SIZE_BYTES
        return fn

    def launch(self, fn, grid, block, shared, args):
        buf = ctypes.create_string_buffer(args, len(args))
        params = (ctypes.c_void_p * 1)(ctypes.cast(buf, ctypes.c_void_p))
        self.check(self.lib.cuLaunchKernel(fn, *grid, *block, shared, None, params, None), 'cuLaunchKernel')

    def synchronize(self):
        self.check(self.lib.cuCtxSynchronize(), 'cuCtxSynchronize')


def context_lost(drv):
    """None while the CUDA context works, else why not (the driver's error). A kernel that faults (CUDA_ERROR_ILLEGAL_ADDRESS,
    _LAUNCH_FAILED, _MISALIGNED_ADDRESS, ...) leaves a sticky error: every later call returns it, cuCtxSynchronize too,
    until the process ends; a launch the driver refused (too much shared memory, a bad argument) leaves the context usable."""
    try:
        drv.synchronize()
    except RuntimeError as e:
        return str(e).splitlines()[0][:200]
    return None


def attention_args(q, kc, vc, ks, vs, prefix, o, lse, workspace, counters, batch, capacity, splits):
    """TidarcAttentionArgs, packed by tidarc_abi.py (generated from src/runtime/cuda/op-abi.ts)."""
    return ATTENTION.pack(q=q, k_cache=kc, v_cache=vc, k_step=ks, v_step=vs, prefix_len=prefix, o=o, lse=lse, workspace=workspace,
                          split_counters=counters, batch=batch, cache_capacity=capacity, num_splits=splits, num_threads=0)


def split_counter_count(rows, splits):
    """The split counters a launch needs (abi-fields.ts splitCounters: splits x rows bound the id counter and one per row group)."""
    return splits * rows


def launch_attention(drv, bundle, model, v, ptrs, batch, capacity, splits):
    """The variant's kernel: one launch on tidarc_abi.attention_grid; with splits > 1 every CTA merges a
    slice of the previous row group's partials (the driver's split counters, zero before and after).
    ptrs: q, kc, vc, ks, vs, prefix, o, lse, workspace."""
    module = bundle / v['fatbin']
    rows = batch * v['steps'] * model['qHeads']
    args = attention_args(*ptrs, drv.split_counters(split_counter_count(rows, splits)) if splits > 1 else 0, batch, capacity, splits)
    grid = attention_grid(v['rowTiles'], batch, model['kvHeads'], splits)
    drv.launch(drv.function(module, v['symbol'], v['sharedBytes']), grid, (v['block'], 1, 1), v['sharedBytes'], args)


# ---- 16-bit formats and the reference -----------------------------------------------------------

def to_bits(x, dtype):
    """16-bit patterns, round to nearest even. bf16 in uint32 and in place: a sum that wraps past 2^32 (NaNs
    only) keeps the same bits 16..31, and the lm_head epilogue's 622M weights round in ~1 s, not ~30 s."""
    x = np.asarray(x, np.float32)
    if dtype == 'fp16':
        return x.astype(np.float16).view(np.uint16)
    u = x.view(np.uint32)
    r = u >> 16
    r &= 1
    r += 0x7FFF
    r += u
    r >>= 16
    return r.astype(np.uint16)


def from_bits(bits, dtype):
    if dtype == 'fp16':
        return bits.view(np.float16).astype(np.float64)
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def reference(model, v, q, kc, vc, ks, vs, prefix):
    """float64 attention of the variant's mask: o [B, n, Hq, D], lse [B, n, Hq] (natural log)."""
    B, n, Hq, D = q.shape
    Hkv = model['kvHeads']
    G = Hq // Hkv
    step_vis = np.array([[c == '1' for c in row] for row in v['visible']], bool)
    o = np.zeros((B, n, Hq, D))
    lse = np.full((B, n, Hq), -np.inf)
    for b in range(B):
        L = int(prefix[b])
        vis = np.concatenate([np.full((n, L), v['prefixVisible']), step_vis], axis=1)
        for h in range(Hkv):
            keys = np.concatenate([kc[b, h, :L], ks[b, :, h]], axis=0)
            vals = np.concatenate([vc[b, h, :L], vs[b, :, h]], axis=0)
            for g in range(G):
                s = q[b, :, h * G + g] @ keys.T / math.sqrt(D)
                s = np.where(vis, s, -np.inf)
                m = s.max(axis=1, keepdims=True)
                seen = np.isfinite(m[:, 0])
                p = np.where(vis, np.exp(s - np.where(np.isfinite(m), m, 0)), 0)
                total = p.sum(axis=1, keepdims=True)
                o[b, :, h * G + g] = np.where(seen[:, None], (p / np.where(total > 0, total, 1)) @ vals, 0)
                lse[b, :, h * G + g] = np.where(seen, m[:, 0] + np.log(np.where(total[:, 0] > 0, total[:, 0], 1)), -np.inf)
    return o, lse


def reference_torch(torch, model, v, q, kc, vc, ks, vs, prefix):
    """reference() in float64 with torch on the inputs' device (tensors of any float dtype), one batched product per sequence."""
    B, n, Hq, D = q.shape
    Hkv = model['kvHeads']
    G = Hq // Hkv
    dev = q.device
    step_vis = torch.tensor([[c == '1' for c in row] for row in v['visible']], device=dev)
    o = np.zeros((B, n, Hq, D))
    lse = np.full((B, n, Hq), -np.inf)
    for b in range(B):
        L = int(prefix[b])
        keys = torch.cat([kc[b, :, :L].double(), ks[b].double().transpose(0, 1)], 1)               # [Hkv, L + n, D]
        vals = torch.cat([vc[b, :, :L].double(), vs[b].double().transpose(0, 1)], 1)
        qq = q[b].double().reshape(n, Hkv, G, D).permute(1, 2, 0, 3)                              # [Hkv, G, n, D]
        vis = torch.cat([torch.full((n, L), bool(v['prefixVisible']), device=dev), step_vis], 1)
        s = torch.einsum('hgnd,hkd->hgnk', qq, keys) / math.sqrt(D)
        s = s.masked_fill(~vis, -math.inf)
        l = torch.logsumexp(s, -1)                                                                # -inf for a row that sees nothing
        p = torch.where(torch.isfinite(l)[..., None], torch.exp(s - torch.where(torch.isfinite(l), l, 0)[..., None]), 0)
        o[b] = torch.einsum('hgnk,hkd->nhgd', p, vals).reshape(n, Hq, D).cpu().numpy()
        lse[b] = l.permute(2, 0, 1).reshape(n, Hq).cpu().numpy()
    return o, lse


# torch.nn.attention.SDPBackend's names, fused first. With a boolean mask and enable_gqa, CUDA's flash kernel refuses the
# mask and its memory-efficient one the head groups, so SDPA left to choose may run MATH (unfused, float32 inside).
SDPA_BACKENDS = ('FLASH_ATTENTION', 'EFFICIENT_ATTENTION', 'CUDNN_ATTENTION', 'MATH')


def sdpa_backend(torch, name):
    """The context in which scaled_dot_product_attention runs the named backend alone, or raises."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([getattr(SDPBackend, name)])


def sdpa_runs(torch, call):
    """(backend, call()'s result) for each of SDPA_BACKENDS this torch has that runs call() when forced alone, in that order
    (lazily: next() is the first). A refusal warns why, then raises: the warnings are silenced."""
    from torch.nn.attention import SDPBackend
    for name in SDPA_BACKENDS:
        if not hasattr(SDPBackend, name):
            continue
        try:
            with warnings.catch_warnings(), sdpa_backend(torch, name):
                warnings.simplefilter('ignore')
                out = call()
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
        except RuntimeError:
            continue
        yield name, out


def sdpa_error_torch(torch, model, v, q, kc, vc, ks, vs, prefix, ref_o):
    """The error of PyTorch's same-precision SDPA (dense mask) against the float64 reference, on tensors, and the backend
    that ran it: the first of SDPA_BACKENDS that runs every sequence (the tolerance's base depends on it). (error, backend)"""
    F = torch.nn.functional
    dt = torch.bfloat16 if model['dtype'] == 'bf16' else torch.float16
    Hq, Hkv = model['qHeads'], model['kvHeads']
    dev = q.device
    step_vis = torch.tensor([[c == '1' for c in row] for row in v['visible']], device=dev)

    def sequence(b, L):
        L = int(L)
        qb = q[b].to(dt).transpose(0, 1)[None]
        k = torch.cat([kc[b, :, :L], ks[b].transpose(0, 1)], 1).to(dt)[None]
        val = torch.cat([vc[b, :, :L], vs[b].transpose(0, 1)], 1).to(dt)[None]
        mask = torch.cat([torch.full((step_vis.shape[0], L), bool(v['prefixVisible']), device=dev), step_vis], 1)
        return F.scaled_dot_product_attention(qb, k, val, attn_mask=mask, enable_gqa=Hq != Hkv)[0].transpose(0, 1).double().cpu().numpy()
    first = next(sdpa_runs(torch, lambda: [sequence(b, L) for b, L in enumerate(prefix)]), None)
    if first is None:
        raise RuntimeError(f"no SDPA backend of {', '.join(SDPA_BACKENDS)} runs the {v['name']} mask")
    backend, outs = first
    return max(float(np.abs(o - ref_o[b]).max()) for b, o in enumerate(outs)), backend


def torch_judge(torch, device='cuda'):
    """A correctness case's judge on the GPU: the inputs' 16-bit patterns uploaded once (a quarter of float64's
    bytes: the batch-8 cases move 100s of MB), then reference_torch and sdpa_error_torch on them there.
    judge(model, v, bits, prefix) -> (ref_o, ref_lse, SDPA's error, SDPA's backend), the arrays numpy."""
    def judge(model, v, bits, prefix):
        dt = torch.bfloat16 if model['dtype'] == 'bf16' else torch.float16
        t = {k: torch.from_numpy(np.ascontiguousarray(b).view(np.int16)).to(device).view(dt) for k, b in bits.items()}
        x = [t[k] for k in ('q', 'kc', 'vc', 'ks', 'vs')]
        ref_o, ref_lse = reference_torch(torch, model, v, *x, prefix)
        return (ref_o, ref_lse, *sdpa_error_torch(torch, model, v, *x, prefix, ref_o))
    return judge


def compare(o_bits, lse, ref_o, ref_lse, dtype):
    """Max error of the output (inf when any element is not finite) and of the log-sum-exp where the reference's is finite."""
    o = from_bits(o_bits, dtype).reshape(ref_o.shape)
    err = float(np.nanmax(np.abs(o - ref_o))) if np.isfinite(o).all() else math.inf
    finite = np.isfinite(ref_lse)
    lse_err = float(np.max(np.abs(lse.reshape(ref_lse.shape)[finite] - ref_lse[finite]))) if finite.any() else 0.0
    return err, lse_err
