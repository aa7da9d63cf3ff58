"""FlexAttention and SDPA as the attention benchmarks time them (attention.py, attention_sm90a.py): the
variant's mask as grid.json describes it (`visible`: which step tokens each step query sees;
`prefixVisible`: whether every query sees the cached prefix) over keys [prefix | step], and
flex_attention compiled with room for one compile per benchmark point."""

# torch.compile recompiles flex_attention for every point (a new mask function, new lengths).
# Past dynamo's recompile_limit (8 compiles of one frame) it runs the call unfused, the eager
# path that materializes every score, and the benchmark would time that as Flex from the 9th
# point on. A part's points (attention: 32; sm90a: 8) stay under this.
RECOMPILE_LIMIT = 128


def compiled_flex(torch, backend='inductor'):
    """torch.compile(flex_attention) with dynamo's recompile limits raised to RECOMPILE_LIMIT (the names of
    torch 2.6+ and the older cache_size_limit, whichever this torch has)."""
    from torch.nn.attention.flex_attention import flex_attention
    config = torch._dynamo.config
    for name in ('recompile_limit', 'cache_size_limit'):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
            break  # the newer name when both exist: the older is its deprecated alias
    return torch.compile(flex_attention, backend=backend)


def step_visibility(torch, visible, device):
    """[n, n] bool: query q sees step token i."""
    return torch.tensor([[c == '1' for c in row] for row in visible], dtype=torch.bool, device=device)


def block_mask(torch, visible, prefix_visible, prefix, device):
    """The BlockMask of n = len(visible) queries over prefix + n keys (key j < prefix: the cache; key prefix + i: step token i)."""
    from torch.nn.attention.flex_attention import create_block_mask
    step = step_visibility(torch, visible, device)
    n, L = len(visible), prefix

    def mask_mod(b, h, q, kv):
        own = step[q, (kv - L).clamp(min=0)] & (kv >= L)  # clamped: a cache key indexes column 0, then is dropped
        return ((kv < L) | own) if prefix_visible else own
    return create_block_mask(mask_mod, None, None, n, L + n, device=device)


def dense_mask(torch, visible, prefix_visible, prefix, device):
    """The same mask as SDPA's attn_mask: [n, prefix + n] bool."""
    step = step_visibility(torch, visible, device)
    return torch.cat([torch.full((step.shape[0], prefix), bool(prefix_visible), dtype=torch.bool, device=device), step], 1)
