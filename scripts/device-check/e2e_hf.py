"""The end-to-end part's model on both sides (issue 16 item 5): the random-weight checkpoint tidarc
loads and transformers' Qwen3ForCausalLM with the same tensors, and transformers' eager steps.
torch and transformers are imported by the caller (e2e.py) and passed in; this module only needs
them when called."""
import json
import shutil
import statistics
import time
from pathlib import Path

from e2e_cost import step_name, step_shape


# ---- the checkpoint both sides load ----------------------------------------------------------------

def hf_config(spec):
    """config.json as src/model/checkpoint.ts hfConfigOf writes it for a qwen3 spec (tidarc validates it on load)."""
    return {'architectures': ['Qwen3ForCausalLM'], 'attention_bias': False, 'eos_token_id': 256, 'head_dim': spec['headDim'], 'hidden_act': 'silu',
            'hidden_size': spec['hiddenSize'], 'intermediate_size': spec['intermediateSize'], 'max_position_embeddings': spec['maxPositionEmbeddings'],
            'model_type': 'qwen3', 'num_attention_heads': spec['queryHeads'], 'num_hidden_layers': spec['layers'], 'num_key_value_heads': spec['kvHeads'],
            'rms_norm_eps': spec['rmsNormEps'], 'rope_scaling': None, 'rope_theta': spec['ropeTheta'],
            'tidar': {'draft_lengths': spec['draftLengths'], 'mask_token_id': spec['maskTokenId'], 'name': spec['name']},
            'tie_word_embeddings': spec['tieEmbeddings'], 'torch_dtype': 'bfloat16', 'vocab_size': spec['vocabSize']}


def byte_tokenizer(spec):
    """tidarc's byte-level tokenizer.json (src/model/tokenizer.ts byteTokenizerConfig)."""
    specials = sorted({'<|endoftext|>': 256, '<|pad|>': 257, '<|mask|>': spec['maskTokenId']}.items(), key=lambda kv: kv[1])
    return {'type': 'tidarc-byte', 'vocab_size': spec['vocabSize'], 'specials': dict(specials), 'eos_token': '<|endoftext|>'}


def hf_model_class(torch, spec, overrides=None):
    from transformers import Qwen3Config, Qwen3ForCausalLM
    cfg = {k: v for k, v in hf_config(spec).items() if k not in ('tidar', 'architectures', 'torch_dtype')}
    cfg.update(overrides or {})
    return Qwen3ForCausalLM, Qwen3Config(**cfg, attn_implementation='sdpa')


# Node 20's Buffer holds at most 4 GiB, and tidarc reads a safetensors file's data into one: the 8B
# shape's 4 GB (more with more layers) goes into shards with an index, as Hugging Face writes them.
SHARD_BYTES = 2 << 30
DRY_SHARD_BYTES = 256 << 10  # the dry run shards its 1 MB model too, so the GPU run's loading path is the tested one


# Norm weights 1 + N(0, NORM_STD^2), not HF's init of ones: with ones, a backend that drops a norm weight,
# swaps q_norm and k_norm or reads another layer's norm computes the same logits, and the greedy check
# against transformers could not see it (tidarc init-model --norm-std, test/helpers/random-model.ts).
NORM_STD = 0.2


def write_checkpoint(torch, spec, out_dir, seed, std, device, shard_bytes=SHARD_BYTES):
    """Random weights (norms 1 + N(0, NORM_STD^2), the rest N(0, std^2)) in transformers' parameter order, drawn on `device`
    with a seeded generator; written as a tidarc checkpoint (shards of at most shard_bytes and
    model.safetensors.index.json). Returns the tensors (bf16, on `device`)."""
    from safetensors.torch import save_file
    cls, cfg = hf_model_class(torch, spec)
    with torch.device('meta'):
        shapes = [(n, tuple(p.shape)) for n, p in cls(cfg).named_parameters()]  # a tied lm_head is not listed twice
    gen = torch.Generator(device=device).manual_seed(seed)
    tensors = {}
    for name, shape in shapes:
        if name.endswith('norm.weight'):
            tensors[name] = (1 + torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * NORM_STD).to(torch.bfloat16)
        else:
            tensors[name] = (torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * std).to(torch.bfloat16)
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / 'config.json').write_text(json.dumps(hf_config(spec), indent=2) + '\n')
    (out_dir / 'tokenizer.json').write_text(json.dumps(byte_tokenizer(spec), indent=2) + '\n')
    shards, size = [[]], 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    weight_map = {}
    for i, names in enumerate(shards):
        file = f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors'
        save_file({k: tensors[k].cpu().contiguous() for k in names}, str(out_dir / file), metadata={'format': 'pt'})
        weight_map.update({k: file for k in names})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (out_dir / 'model.safetensors.index.json').write_text(json.dumps({'metadata': {'total_size': total}, 'weight_map': weight_map}, indent=2) + '\n')
    return tensors


def hf_model(torch, spec, tensors, device, dtype, overrides=None):
    """transformers' Qwen3ForCausalLM from the config dict, with the checkpoint's tensors."""
    cls, cfg = hf_model_class(torch, spec, overrides)
    with torch.device(device):
        model = cls(cfg)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not (spec['tieEmbeddings'] and m == 'lm_head.weight')]
    if missing or unexpected:
        raise RuntimeError(f'transformers model vs checkpoint: missing {missing[:4]}, unexpected {unexpected[:4]}')
    model.tie_weights()
    return model.to(dtype).eval()


# ---- transformers eager -----------------------------------------------------------------------

def hf_greedy(torch, model, prompt_ids, n, device):
    """n greedy tokens after the prompt, one token a forward through the DynamicCache."""
    from transformers import DynamicCache
    cache, ids, out = DynamicCache(config=model.config), torch.tensor([prompt_ids], device=device), []
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[0, -1].float()
            top = torch.topk(logits, 2)
            out.append({'token': int(top.indices[0]), 'margin': float(top.values[0] - top.values[1])})
            ids = top.indices[:1].view(1, 1)
    return out


def hf_steps(torch, model, spec, prefix, drafts, device, reps, warmup, seed):
    """Median ms per step kind (k = 0 AR, else tidar_k<k>) at committed prefix `prefix`."""
    from transformers import DynamicCache
    gen = torch.Generator(device='cpu').manual_seed(seed)
    vocab = spec['vocabSize']
    cache = DynamicCache(config=model.config)
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    times = {}
    with torch.no_grad():
        model(input_ids=torch.randint(0, vocab - 2, (1, prefix), generator=gen).to(device), past_key_values=cache, use_cache=True, logits_to_keep=1)
        for k in (0, *drafts):
            shape = step_shape(k, prefix)
            ids = torch.randint(0, vocab - 2, (1, shape['tokens']), generator=gen).to(device)
            pos = torch.arange(prefix, prefix + shape['tokens'], device=device)[None]

            def once():
                logits = model(input_ids=ids, past_key_values=cache, use_cache=True, position_ids=pos, logits_to_keep=shape['lmHeadRows']).logits
                logits.argmax(-1).cpu()  # the step's tokens come back to the host, as tidarc's do
                cache.crop(-shape["tokens"])  # back to L (a negative count: what transformers 5.18 keeps)
            for _ in range(warmup):
                once()
            ms = []
            for _ in range(reps):
                sync()
                t0 = time.perf_counter()
                once()
                sync()
                ms.append((time.perf_counter() - t0) * 1e3)
            if cache.get_seq_length() != prefix:
                raise RuntimeError(f'transformers cache holds {cache.get_seq_length()} tokens after crop, expected {prefix}')
            times[step_name(k)] = {'medianMs': statistics.median(ms), 'p20Ms': sorted(ms)[len(ms) // 5], 'p80Ms': sorted(ms)[(4 * len(ms)) // 5], 'reps': reps}
    return times
