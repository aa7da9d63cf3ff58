#!/usr/bin/env python3
"""Train a small TiDAR model (Qwen3 architecture, byte-level vocabulary) on the CPU with JAX.

The training layout, mask and loss are those of docs/tidar.md (training layout):
  input  = S clean tokens, then S mask tokens; position ids [0..S-1, 0..S-1];
  clean token t predicts x[t+1] (AR loss), mask slot t predicts x[t] (diffusion loss);
  loss   = (alpha * AR_CE + DIFF_CE) / (1 + alpha).
The attention mask and the position ids are NOT written here: they come from tidarc itself
(`tidarc mask --kind tidar-train --length S --block B --format json`), so training and inference
cannot disagree about the mask.

The model is the forward of src/runtime/model/forward.ts in JAX: embedding, per layer
RMSNorm -> q/k/v projections -> per-head RMSNorm of q and k (Qwen3) -> RoPE (rotate-half) ->
grouped-query attention -> o projection -> residual; RMSNorm -> SwiGLU MLP -> residual; final
RMSNorm; lm_head tied to the embedding.

Runs are resumable: RUN/state.npz holds parameters, optimizer state, step and data position,
written atomically every --save-every steps, at the time budget and on Ctrl-C. `--export DIR`
writes the model directory `tidarc run` loads (config.json, model.safetensors in bf16,
tokenizer.json) through `tidarc init-model`, plus reference.json: the JAX model's own argmax and
log-sum-exp on a held-out prompt, computed with the exported bf16 weights, which the tests
compare against tidarc's forward.

Usage (see tools/train/README.md):
  python tools/train/train_tidar.py --run runs/tidar-tiny --minutes 60
  python tools/train/train_tidar.py --run runs/tidar-tiny --export models/tidar-tiny-code
"""
import argparse
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TIDARC = [os.environ.get('NODE', 'node'), str(REPO / 'bin' / 'tidarc.js')]

EOS_ID = 256      # byte tokenizer layout (src/model/tokenizer.ts): 256 eos, 257 pad
VOCAB = 260
MASK_ID = 259

# Held-out files of the Python standard library: never trained on, used for the evaluation
# losses, the reference and the prompts of the tests.
HELD_OUT = ('bisect.py', 'colorsys.py', 'fnmatch.py', 'glob.py', 'heapq.py', 'shlex.py',
            'string.py', 'textwrap.py')


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--run', required=True, help='run directory (state.npz, spec, log); resumed when it exists')
    p.add_argument('--data', default=None, help='directory of .py files (default: this python3 standard library)')
    p.add_argument('--layers', type=int, default=3)
    p.add_argument('--hidden', type=int, default=128)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--kv-heads', type=int, default=2)
    p.add_argument('--head-dim', type=int, default=64)
    p.add_argument('--intermediate', type=int, default=384)
    p.add_argument('--seq', type=int, default=256, help='clean tokens per sequence S (the input is 2S)')
    p.add_argument('--block', type=int, default=4, help='mask block size B = the draft length trained for')
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--warmup', type=int, default=100)
    p.add_argument('--steps', type=int, default=3000, help='the learning-rate schedule length')
    p.add_argument('--alpha', type=float, default=1.0, help='AR loss weight')
    p.add_argument('--minutes', type=float, default=None, help='stop (and save) after this much wall time')
    p.add_argument('--save-every', type=int, default=50)
    p.add_argument('--eval-every', type=int, default=100)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--export', default=None, help='write the tidarc model directory DIR from the run and exit')
    p.add_argument('--name', default='tidar-tiny-code', help='model name in the exported config')
    return p.parse_args(argv)


# ---- data -----------------------------------------------------------------------------------

def data_files(data_dir):
    root = Path(data_dir)
    files = sorted(f for f in root.glob('*.py') if f.is_file())
    missing = [h for h in HELD_OUT if not (root / h).is_file()]
    if missing:
        sys.exit(f'train_tidar: error: held-out files missing from {root}: {", ".join(missing)}')
    train = [f for f in files if f.name not in HELD_OUT]
    held = [root / h for h in HELD_OUT]
    return train, held


def token_stream(files):
    """Bytes of each file followed by the end-of-text token, as one int32 stream."""
    parts = []
    for f in files:
        parts.append(np.frombuffer(f.read_bytes(), dtype=np.uint8).astype(np.int32))
        parts.append(np.array([EOS_ID], dtype=np.int32))
    return np.concatenate(parts)


def describe_files(files):
    return [{'file': f.name, 'bytes': f.stat().st_size, 'sha256': hashlib.sha256(f.read_bytes()).hexdigest()} for f in files]


def eval_windows(stream, seq, count):
    """`count` fixed, evenly spaced windows of the held-out stream."""
    starts = np.linspace(0, len(stream) - seq - 1, count).astype(np.int64)
    return np.stack([stream[s:s + seq] for s in starts])


# ---- the mask, from tidarc --------------------------------------------------------------------

def tidarc_train_mask(seq, block):
    out = subprocess.run(TIDARC + ['mask', '--kind', 'tidar-train', '--length', str(seq), '--block', str(block), '--format', 'json'],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f'train_tidar: error: tidarc mask failed (build tidarc first: npm ci):\n{out.stderr}')
    m = json.loads(out.stdout)
    visible = np.array(m['visible'], dtype=bool)
    positions = np.array(m['positions'], dtype=np.int32)
    if visible.shape != (2 * seq, 2 * seq) or positions.shape != (2 * seq,):
        sys.exit(f'train_tidar: error: tidarc mask returned shape {visible.shape}, expected {(2 * seq, 2 * seq)}')
    return visible, positions


# ---- the model --------------------------------------------------------------------------------

def spec_of(args):
    """The tidarc ModelSpec (examples/*.json form) of the run."""
    return {
        'name': args.name, 'family': 'qwen3', 'layers': args.layers, 'hiddenSize': args.hidden,
        'queryHeads': args.heads, 'kvHeads': args.kv_heads, 'headDim': args.head_dim,
        'intermediateSize': args.intermediate, 'vocabSize': VOCAB, 'ropeTheta': 10000,
        'rmsNormEps': 1e-6, 'qkNorm': True, 'tieEmbeddings': True, 'dtype': 'bf16',
        'maskTokenId': MASK_ID, 'draftLengths': sorted({args.block, 2 * args.block}),
        'maxPositionEmbeddings': 2 * args.seq,
    }


def tensor_shapes(spec):
    """HF tensor names and shapes ([out, in] for projections), as src/model/checkpoint.ts expects."""
    H, D, I, V = spec['hiddenSize'], spec['headDim'], spec['intermediateSize'], spec['vocabSize']
    q, kv = spec['queryHeads'] * D, spec['kvHeads'] * D
    shapes = {'model.embed_tokens.weight': (V, H)}
    for i in range(spec['layers']):
        p = f'model.layers.{i}.'
        shapes.update({
            p + 'input_layernorm.weight': (H,), p + 'self_attn.q_proj.weight': (q, H),
            p + 'self_attn.k_proj.weight': (kv, H), p + 'self_attn.v_proj.weight': (kv, H),
            p + 'self_attn.o_proj.weight': (H, q), p + 'self_attn.q_norm.weight': (D,),
            p + 'self_attn.k_norm.weight': (D,), p + 'post_attention_layernorm.weight': (H,),
            p + 'mlp.gate_proj.weight': (I, H), p + 'mlp.up_proj.weight': (I, H), p + 'mlp.down_proj.weight': (H, I),
        })
    shapes['model.norm.weight'] = (H,)
    return shapes


def init_params(spec, seed):
    rng = np.random.default_rng(seed)
    params = {}
    residual_std = 0.02 / math.sqrt(2 * spec['layers'])
    for name, shape in tensor_shapes(spec).items():
        if name.endswith('norm.weight') or 'layernorm' in name:
            params[name] = np.ones(shape, np.float32)
        else:
            std = residual_std if name.endswith(('o_proj.weight', 'down_proj.weight')) else 0.02
            params[name] = rng.normal(0.0, std, shape).astype(np.float32)
    return params


def make_forward(spec):
    import jax
    import jax.numpy as jnp

    H, D = spec['hiddenSize'], spec['headDim']
    Hq, Hkv = spec['queryHeads'], spec['kvHeads']
    G = Hq // Hkv
    eps = spec['rmsNormEps']
    half = D // 2
    inv_freq = 1.0 / (spec['ropeTheta'] ** (np.arange(half, dtype=np.float64) * 2 / D))
    inv_freq = jnp.asarray(inv_freq, jnp.float32)

    def rmsnorm(x, w):
        return w * (x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps))

    def rope(x, positions):  # x [B, T, heads, D]; HF rotate-half convention
        angle = positions.astype(jnp.float32)[:, None] * inv_freq[None, :]
        cos, sin = jnp.cos(angle)[None, :, None, :], jnp.sin(angle)[None, :, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def forward(params, ids, positions, visible):
        """ids [B, T] -> final-normed hidden states [B, T, H] and logits [B, T, V]."""
        B, T = ids.shape
        emb = params['model.embed_tokens.weight']
        x = emb[ids]
        for i in range(spec['layers']):
            p = f'model.layers.{i}.'
            h = rmsnorm(x, params[p + 'input_layernorm.weight'])
            q = (h @ params[p + 'self_attn.q_proj.weight'].T).reshape(B, T, Hq, D)
            k = (h @ params[p + 'self_attn.k_proj.weight'].T).reshape(B, T, Hkv, D)
            v = (h @ params[p + 'self_attn.v_proj.weight'].T).reshape(B, T, Hkv, D)
            q = rope(rmsnorm(q, params[p + 'self_attn.q_norm.weight']), positions)
            k = rope(rmsnorm(k, params[p + 'self_attn.k_norm.weight']), positions)
            # Query head h reads KV head h // G (transformers' repeat_kv).
            k = jnp.repeat(k, G, axis=2)
            v = jnp.repeat(v, G, axis=2)
            scores = jnp.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(D)
            scores = jnp.where(visible[None, None], scores, -jnp.inf)
            o = jnp.einsum('bhqk,bkhd->bqhd', jax.nn.softmax(scores, axis=-1), v).reshape(B, T, Hq * D)
            x = x + o @ params[p + 'self_attn.o_proj.weight'].T
            h = rmsnorm(x, params[p + 'post_attention_layernorm.weight'])
            gate = h @ params[p + 'mlp.gate_proj.weight'].T
            up = h @ params[p + 'mlp.up_proj.weight'].T
            x = x + (jax.nn.silu(gate) * up) @ params[p + 'mlp.down_proj.weight'].T
        h = rmsnorm(x, params['model.norm.weight'])
        return h, h @ emb.T

    return forward


def make_losses(spec, seq, alpha, forward):
    import jax
    import jax.numpy as jnp

    def losses(params, clean, positions, visible):
        """clean [B, S] -> (loss, AR cross-entropy, diffusion cross-entropy), nats per token."""
        B = clean.shape[0]
        ids = jnp.concatenate([clean, jnp.full((B, seq), MASK_ID, clean.dtype)], axis=1)
        _, logits = forward(params, ids, positions, visible)
        logp = jax.nn.log_softmax(logits, axis=-1)
        ar = -jnp.take_along_axis(logp[:, :seq - 1], clean[:, 1:, None], axis=-1).mean()
        diff = -jnp.take_along_axis(logp[:, seq:], clean[:, :, None], axis=-1).mean()
        return (alpha * ar + diff) / (1 + alpha), (ar, diff)

    return losses


# ---- run state --------------------------------------------------------------------------------

def save_state(run, params, opt_state, step, rng_state, history):
    import jax
    leaves, _ = jax.tree_util.tree_flatten(opt_state)
    arrays = {f'param/{k}': np.asarray(v) for k, v in params.items()}
    arrays.update({f'opt/{i}': np.asarray(v) for i, v in enumerate(leaves)})
    meta = json.dumps({'step': step, 'rng': rng_state, 'history': history})
    tmp = run / 'state.tmp.npz'
    np.savez(tmp, meta=np.array(meta), **arrays)
    os.replace(tmp, run / 'state.npz')


def load_state(run, opt_template):
    import jax
    z = np.load(run / 'state.npz')
    meta = json.loads(str(z['meta']))
    params = {k[len('param/'):]: z[k] for k in z.files if k.startswith('param/')}
    leaves, treedef = jax.tree_util.tree_flatten(opt_template)
    opt_leaves = [z[f'opt/{i}'] for i in range(len(leaves))]
    return params, jax.tree_util.tree_unflatten(treedef, opt_leaves), meta


# ---- training ---------------------------------------------------------------------------------

def train(args):
    import jax
    import jax.numpy as jnp
    import optax

    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    spec_file = run / 'spec.json'
    spec = spec_of(args)
    settings = {k: getattr(args, k) for k in ('seq', 'block', 'batch', 'lr', 'warmup', 'steps', 'alpha', 'seed')}
    if spec_file.exists():
        saved = json.loads(spec_file.read_text())
        if saved['spec'] != spec or saved['settings'] != settings:
            sys.exit(f'train_tidar: error: {run} was started with other settings ({spec_file}); use a new --run directory')
    data_dir = Path(args.data) if args.data else Path(sysconfig_stdlib())
    train_files, held_files = data_files(data_dir)
    if not spec_file.exists():
        spec_file.write_text(json.dumps({'spec': spec, 'settings': settings, 'data': str(data_dir),
                                         'train': describe_files(train_files), 'heldOut': describe_files(held_files)}, indent=1))
    stream = token_stream(train_files)
    held = eval_windows(token_stream(held_files), args.seq, 32)
    visible, positions = tidarc_train_mask(args.seq, args.block)
    print(f'data: {len(train_files)} train files ({len(stream):,} tokens), {len(held_files)} held-out files; '
          f'mask from tidarc: {visible.shape[0]}x{visible.shape[1]}, {visible.mean() * 100:.1f}% visible', flush=True)

    forward = make_forward(spec)
    losses = make_losses(spec, args.seq, args.alpha, forward)
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, args.warmup, args.steps, args.lr * 0.1)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, b1=0.9, b2=0.98, weight_decay=0.05))
    params = {k: jnp.asarray(v) for k, v in init_params(spec, args.seed).items()}
    opt_state = opt.init(params)
    step, rng_state, history = 0, None, []
    if (run / 'state.npz').exists():
        p, opt_state, meta = load_state(run, opt_state)
        params = {k: jnp.asarray(v) for k, v in p.items()}
        step, rng_state, history = meta['step'], meta['rng'], meta['history']
        print(f'resumed {run} at step {step}', flush=True)
    rng = np.random.default_rng(args.seed)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    n_params = sum(int(np.prod(v.shape)) for v in params.values())
    print(f'model: {n_params:,} parameters, {spec["layers"]} layers, hidden {spec["hidden" + "Size"]}, '
          f'{spec["queryHeads"]}/{spec["kvHeads"]} heads x {spec["headDim"]}', flush=True)

    vis = jnp.asarray(visible)
    pos = jnp.asarray(positions)

    @jax.jit
    def train_step(params, opt_state, clean):
        (loss, (ar, diff)), grads = jax.value_and_grad(losses, has_aux=True)(params, clean, pos, vis)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, ar, diff

    @jax.jit
    def eval_losses(params, clean):
        return losses(params, clean, pos, vis)

    stop = {'now': False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    started = time.time()
    deadline = started + args.minutes * 60 if args.minutes else None
    tokens_done, t_window = 0, time.time()
    while step < args.steps and not stop['now'] and (deadline is None or time.time() < deadline):
        starts = rng.integers(0, len(stream) - args.seq, args.batch)
        clean = jnp.asarray(np.stack([stream[s:s + args.seq] for s in starts]))
        params, opt_state, loss, ar, diff = train_step(params, opt_state, clean)
        step += 1
        tokens_done += args.batch * args.seq
        if step % 10 == 0:
            jax.block_until_ready(loss)
            rate = tokens_done / (time.time() - t_window)
            left = (args.steps - step) * args.batch * args.seq / rate
            print(f'step {step}/{args.steps}  loss {float(loss):.4f}  ar {float(ar):.4f}  diff {float(diff):.4f}  '
                  f'{rate:,.0f} tok/s  eta {left / 60:.1f} min', flush=True)
            tokens_done, t_window = 0, time.time()
        if step % args.eval_every == 0 or step == args.steps:
            _, (ear, ediff) = eval_losses(params, jnp.asarray(held))
            history.append({'step': step, 'heldOutAr': float(ear), 'heldOutDiffusion': float(ediff),
                            'elapsedS': round(time.time() - started, 1)})
            print(f'eval step {step}: held-out AR {float(ear):.4f} nats ({float(ear) / math.log(2):.3f} bits/byte), '
                  f'diffusion {float(ediff):.4f} nats', flush=True)
        if step % args.save_every == 0:
            save_state(run, params, opt_state, step, rng.bit_generator.state, history)
    save_state(run, params, opt_state, step, rng.bit_generator.state, history)
    why = 'interrupted' if stop['now'] else 'time budget reached' if step < args.steps else 'done'
    print(f'saved {run / "state.npz"} at step {step} ({why})', flush=True)


def sysconfig_stdlib():
    import sysconfig
    return sysconfig.get_paths()['stdlib']


# ---- export -----------------------------------------------------------------------------------

def bf16_bits(x):
    """float32 -> bf16 bit patterns, round to nearest even (as tidarc's encoder)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_values(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors):
    """tensors: name -> (bf16 bits uint16 array, shape); header offsets in name order."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        bits, shape = tensors[name]
        data = bits.astype('<u2').tobytes()
        header[name] = {'dtype': 'BF16', 'shape': list(shape), 'data_offsets': [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header['__metadata__'] = {'format': 'pt'}
    raw = json.dumps(header, separators=(',', ':')).encode()
    raw += b' ' * (-len(raw) % 8)
    tmp = path.with_suffix('.tmp')
    with open(tmp, 'wb') as f:
        f.write(len(raw).to_bytes(8, 'little'))
        f.write(raw)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def export(args):
    import jax.numpy as jnp

    run = Path(args.run)
    saved = json.loads((run / 'spec.json').read_text())
    spec = saved['spec']
    z = np.load(run / 'state.npz')
    meta = json.loads(str(z['meta']))
    params = {k[len('param/'):]: z[k] for k in z.files if k.startswith('param/')}
    out = Path(args.export)
    spec_path = run / 'model.json'
    spec_path.write_text(json.dumps(spec, indent=2) + '\n')
    # config.json and tokenizer.json exactly as tidarc writes them; the weights are replaced.
    r = subprocess.run(TIDARC + ['init-model', str(spec_path), '--seed', '0', '--out', str(out)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f'train_tidar: error: tidarc init-model failed:\n{r.stderr}')
    bits = {name: (bf16_bits(v), v.shape) for name, v in params.items()}
    write_safetensors(out / 'model.safetensors', bits)

    # Reference: the JAX forward with the exported (bf16-rounded) weights on a held-out prompt,
    # plain causal attention (the AR path): argmax and log-sum-exp of every position.
    rounded = {name: jnp.asarray(bf16_values(b).reshape(s)) for name, (b, s) in bits.items()}
    held_files = [Path(saved['data']) / h['file'] for h in saved['heldOut']]
    prompt = held_files[0].read_bytes()[:96]
    ids = np.frombuffer(prompt, np.uint8).astype(np.int32)[None]
    T = ids.shape[1]
    causal = np.tril(np.ones((T, T), bool))
    _, logits = make_forward(spec)(rounded, jnp.asarray(ids), jnp.arange(T, dtype=jnp.int32), jnp.asarray(causal))
    logits = np.asarray(logits[0], np.float64)
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    reference = {'prompt': prompt.decode('utf-8'), 'ids': ids[0].tolist(), 'argmax': logits.argmax(-1).tolist(),
                 'lse': [round(float(v), 5) for v in lse], 'source': held_files[0].name}
    (out / 'reference.json').write_text(json.dumps(reference) + '\n')
    # Held-out prompts for the tests, the benchmark and MODEL.md: 160 bytes of each held-out
    # file, from the first line start after a third of the file.
    prompts = []
    for f in held_files:
        text = f.read_bytes()
        start = text.index(b'\n', len(text) // 3) + 1
        prompts.append({'source': f.name, 'prompt': text[start:start + 160].decode('utf-8', errors='ignore')})
    (out / 'prompts.json').write_text(json.dumps(prompts, indent=1) + '\n')
    (out / 'training.json').write_text(json.dumps({
        'spec': spec, 'settings': saved['settings'], 'steps': meta['step'], 'history': meta['history'],
        'data': {'train': saved['train'], 'heldOut': saved['heldOut']},
    }, indent=1) + '\n')
    size = (out / 'model.safetensors').stat().st_size
    last = meta['history'][-1] if meta['history'] else {}
    print(f'exported {out}: step {meta["step"]}, model.safetensors {size:,} bytes, held-out {last}')


def main(argv):
    args = parse_args(argv)
    if args.export:
        export(args)
    else:
        train(args)


if __name__ == '__main__':
    main(sys.argv[1:])
