"""The end-to-end part's shapes and its roofline arithmetic (issue 16 item 5). Python's standard
library only, so a recorded e2e.json re-renders anywhere.

The models are ModelSpecs (src/ir/model.ts) of Qwen3-0.6B's and Qwen3-8B's shapes; the steps are
tidarc's step kinds with their token counts (docs/tidar.md, src/bench/step-bench.ts stepRoofline):
AR runs 1 token and 1 lm_head row, tidar_k<K> runs K(K+1) tokens and 2K - 1 lm_head rows (K verify
rows, K - 1 next drafts). step_cost is src/bench/roofline.ts's stepCost, line for line;
test/bench/device-check-e2e.test.ts checks the two agree on every shape here.
"""

AR = 'ar'
ELEMENT_BYTES = 2  # every dtype tidarc runs (bf16, fp16) is 16-bit
QWEN3_MASK_TOKEN = 151662  # examples/qwen3-8b.json's mask token (a reserved id of Qwen3's vocabulary)
# Qwen3-8B has 36 layers of full width; init, save and load of all of them (16 GB) would not fit the
# part's time, so the 8B shape keeps this many (every width, the vocabulary and lm_head as they are).
EIGHT_B_LAYERS = 4


def qwen3_spec(name, layers, hidden, q_heads, kv_heads, head_dim, inter, vocab, drafts, tie, mask=QWEN3_MASK_TOKEN, max_pos=40960, rope_theta=1e6):
    return {'name': name, 'family': 'qwen3', 'layers': layers, 'hiddenSize': hidden, 'queryHeads': q_heads, 'kvHeads': kv_heads,
            'headDim': head_dim, 'intermediateSize': inter, 'vocabSize': vocab, 'ropeTheta': rope_theta, 'rmsNormEps': 1e-6,
            'qkNorm': True, 'tieEmbeddings': tie, 'dtype': 'bf16', 'maskTokenId': mask, 'draftLengths': list(drafts),
            'maxPositionEmbeddings': max_pos}


def gpu_models(eight_b_layers=EIGHT_B_LAYERS):
    """(spec, layers of the real model): Qwen3-0.6B whole, Qwen3-8B's widths with fewer layers."""
    return [(qwen3_spec('qwen3-0.6b-shape', 28, 1024, 16, 8, 128, 3072, 151936, (4, 8, 16), True), 28),
            (qwen3_spec(f'qwen3-8b-shape-{eight_b_layers}l', eight_b_layers, 4096, 32, 8, 128, 12288, 151936, (4, 8, 16), False), 36)]


def dry_models():
    """The dry run's model: test/helpers/random-model.ts's small spec (byte vocabulary, GQA 2, QK-norm)."""
    return [(qwen3_spec('e2e-tiny', 2, 128, 4, 2, 64, 256, 260, (2,), True, mask=259, max_pos=4096, rope_theta=10000), 2)]


GPU_PREFIXES = (1024, 4096)
DRY_PREFIXES = (16,)


def step_name(k):
    return AR if k == 0 else f'tidar_k{k}'


def step_shape(k, prefix):
    """k = 0: the AR step; k > 0: tidar_k<k>."""
    return {'tokens': 1, 'lmHeadRows': 1, 'prefix': prefix} if k == 0 else {'tokens': k * (k + 1), 'lmHeadRows': 2 * k - 1, 'prefix': prefix}


def step_cost(spec, shape):
    """src/bench/roofline.ts stepCost: weights read once, committed K/V read once, the step's matrix FLOPs."""
    H, D, I, V = spec['hiddenSize'], spec['headDim'], spec['intermediateSize'], spec['vocabSize']
    q, kv = spec['queryHeads'] * D, spec['kvHeads'] * D
    layer_linear = q * H + 2 * kv * H + H * q + 3 * I * H
    layer_other = 2 * H + (2 * D if spec['qkNorm'] else 0) + (q + 2 * kv if spec['family'] == 'qwen2' else 0)
    lm_head = V * H
    weight_elements = spec['layers'] * (layer_linear + layer_other) + H + lm_head + shape['tokens'] * H
    kv_elements = spec['layers'] * 2 * kv * (shape['prefix'] + shape['tokens'])
    attention = spec['layers'] * 2 * 2 * shape['tokens'] * (shape['prefix'] + shape['tokens']) * q
    flops = 2 * shape['tokens'] * spec['layers'] * layer_linear + 2 * shape['lmHeadRows'] * lm_head + attention
    return {'weightBytes': weight_elements * ELEMENT_BYTES, 'kvBytes': kv_elements * ELEMENT_BYTES, 'flops': flops}


def roofline(cost, peaks):
    """max((weight + KV bytes) / copy bandwidth, FLOPs / matmul rate); peaks as src/bench/roofline.ts's MachinePeaks."""
    memory = (cost['weightBytes'] + cost['kvBytes']) / peaks['copyBytesPerMs']
    compute = cost['flops'] / peaks['matmulFlopsPerMs']
    return {'memoryMs': memory, 'computeMs': compute, 'rooflineMs': max(memory, compute), 'bound': 'memory' if memory >= compute else 'compute'}


if __name__ == '__main__':
    # The test's entry: the costs of every shape above as JSON, for comparison with roofline.ts.
    import json
    rows = []
    for spec, _ in gpu_models() + dry_models():
        for prefix in GPU_PREFIXES + DRY_PREFIXES:
            for k in (0, *spec['draftLengths']):
                rows.append({'spec': spec, 'shape': step_shape(k, prefix), 'cost': step_cost(spec, step_shape(k, prefix))})
    print(json.dumps(rows))
