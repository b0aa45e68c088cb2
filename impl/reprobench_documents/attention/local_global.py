"""Local+global attention: a sliding window plus a few global tokens — EFF-02, EFF-06/07/08/09.

Source: "Efficient Attention Mechanisms" (documents/004_7701952726fa4164.txt), `LocalGlobalAttention(local_window,
num_global_tokens, dim, num_heads, dropout)`: "each token attends to tokens within a local window;
selected representative tokens attend globally", complexity O(n·w) + O(n·g). Reference pattern:
Longformer (Beltagy et al., 2020), bidirectional (the document's example has no causal mask).

Which pattern. Query i attends key j when
  * |i - j| <= local_window // 2 (the window: w // 2 tokens on each side, so w + 1 keys), or
  * j is a global token (every query sees every global token), or
  * i is a global token (global tokens attend to the whole sequence).
The document does not say how representatives are "selected"; we take g evenly spaced positions
p_k = floor(k·n / g), k = 0..g-1 (position 0 always; the sequence is covered uniformly), a fixed
choice that needs no extra parameters and no data-dependent host sync. g must be <= n.

Reference: dense (n × n) scores with that mask (masked keys -> -inf -> exactly 0).
Optimized: exact and O(n·(w + g)) in time and tensor memory. Queries are cut into blocks of
`block` rows; each block's keys are its own span widened by w // 2 on both sides (an unfold of the
padded keys) followed by the g global keys, so one 4-D SDPA call with a (blocks, block, span + g)
boolean mask does all local work. Global keys are excluded from the local span so no key is counted
twice. The g global query rows are recomputed with full SDPA over all n keys (O(g·n)) and written
back with index_copy. Every step is SDPA/indexing, so the same path trains (forward and backward).
Block size 64 by default: smaller blocks make more, smaller SDPA calls (per-call overhead), larger ones
widen each block's span (wasted masked work); 64 rows was the fastest of 32/64/128 when chosen at
n=8192, w=128 on one CPU thread. The speed against dense SDPA is EFF-02's figure in reports/claims.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reprobench_documents.attention.base import SelfAttentionLayer, build_module_pair, check_positive_int, token_error_inputs, \
    token_samples
from reprobench.registry import ComponentSpec, InputSupport, register


def global_positions(n: int, num_global: int, device=None) -> torch.Tensor:
    """(g,) long: the evenly spaced global token positions floor(k·n/g)."""
    return torch.arange(num_global, device=device) * n // max(num_global, 1)


def local_global_mask(n: int, window: int, num_global: int, device=None) -> torch.Tensor:
    """(n, n) bool: True where query i may attend key j."""
    idx = torch.arange(n, device=device)
    is_global = torch.zeros(n, dtype=torch.bool, device=device)
    is_global[global_positions(n, num_global, device)] = True
    local = (idx[:, None] - idx[None, :]).abs() <= window // 2
    return local | is_global[None, :] | is_global[:, None]


def local_global_sdpa(q, k, v, window: int, num_global: int, block: int = 64, dropout_p: float = 0.0):
    """Exact local+global attention in O(n·(w+g)). q, k, v (B, H, n, hd) -> (B, H, n, hd)."""
    b, h, n, hd = q.shape
    half, device = window // 2, q.device
    block = max(1, min(block, n))
    nb = -(-n // block)  # number of query blocks
    pad_q = nb * block - n
    span = block + 2 * half  # keys a block can see locally
    gpos = global_positions(n, num_global, device)
    is_global = torch.zeros(n, dtype=torch.bool, device=device)
    is_global[gpos] = True

    def key_blocks(t):  # (B, H, n, d) -> (B, H, nb, span, d): block c sees keys c*block - half + [0, span)
        t = F.pad(t, (0, 0, half, half + pad_q))
        return t.unfold(2, span, block).transpose(-1, -2)

    kb, vb = key_blocks(k), key_blocks(v)
    q_pos = torch.arange(nb * block, device=device).view(nb, block, 1)
    k_pos = (torch.arange(nb, device=device) * block).view(nb, 1, 1) - half + torch.arange(span, device=device)
    k_ok = (k_pos >= 0) & (k_pos < n)
    k_ok = k_ok & ~is_global[k_pos.clamp(0, n - 1)]  # global keys come once, from the global slots
    allowed = ((q_pos - k_pos).abs() <= half) & k_ok | (q_pos >= n)  # padded query rows: anything (dropped)
    if num_global:
        kg = k[:, :, gpos].unsqueeze(2).expand(b, h, nb, num_global, hd)
        vg = v[:, :, gpos].unsqueeze(2).expand(b, h, nb, num_global, v.shape[-1])
        kb, vb = torch.cat([kb, kg], dim=3), torch.cat([vb, vg], dim=3)
        allowed = torch.cat([allowed, allowed.new_ones(nb, block, num_global)], dim=2)
    qb = F.pad(q, (0, 0, 0, pad_q)).reshape(b * h, nb, block, hd)
    # 4-D inputs, (batch·heads, blocks, rows, d): the fused kernels take rank 4 only.
    keys = kb.shape[3]  # span (+ g): explicit, since a -1 cannot be inferred at batch 0
    out = F.scaled_dot_product_attention(qb, kb.reshape(b * h, nb, keys, hd), vb.reshape(b * h, nb, keys, v.shape[-1]),
                                         attn_mask=allowed, dropout_p=dropout_p)
    out = out.reshape(b, h, nb * block, v.shape[-1])[:, :, :n]
    if num_global:  # global query rows attend everywhere: O(g·n)
        out_g = F.scaled_dot_product_attention(q[:, :, gpos], k, v, dropout_p=dropout_p)
        out = out.index_copy(2, gpos, out_g)
    return out


class LocalGlobalAttention(SelfAttentionLayer):
    """LocalGlobalAttention(local_window, num_global_tokens, dim, num_heads, dropout). x (B, n, dim) -> (B, n, dim)."""

    accepts_empty_batch = True  # batch 0 gives an empty output, as torch layers do

    def __init__(self, local_window: int, num_global_tokens: int, dim: int, num_heads: int, dropout: float = 0.0,
                 path: str = "optimized", block: int = 64):
        self.local_window = check_positive_int(local_window, "local_window")
        self.num_global_tokens = check_positive_int(num_global_tokens, "num_global_tokens", minimum=0)
        self.block = check_positive_int(block, "block")
        super().__init__(dim, num_heads, dropout, path)

    def check_length(self, n: int) -> None:
        if self.num_global_tokens > n:
            raise ValueError(f"num_global_tokens ({self.num_global_tokens}) must be <= the sequence length ({n})")

    def split_heads(self, x):
        out = super().split_heads(x)
        self.check_length(x.shape[1])
        return out

    def allowed_mask(self, n: int, device) -> torch.Tensor:
        return local_global_mask(n, self.local_window, self.num_global_tokens, device)

    def attend_optimized(self, q, k, v):
        return local_global_sdpa(q, k, v, self.local_window, self.num_global_tokens, self.block,
                                 dropout_p=self.dropout_p if self.training else 0.0)

    def extra_repr(self) -> str:
        return (f"local_window={self.local_window}, num_global_tokens={self.num_global_tokens}, dim={self.dim}, "
                f"num_heads={self.num_heads}, path={self.path}")


def _build(config, device, dtype, generator):
    return build_module_pair(LocalGlobalAttention, config, device, dtype, generator)


TEST_DIM = 32

register(ComponentSpec(
    name="attention.local_global",
    input_support=InputSupport(empty_batch=True),  # batch 0 gives an empty output, as torch layers do
    claims=("EFF-02", "EFF-06", "EFF-07", "EFF-08", "EFF-09", "EFF-10"),
    description="sliding-window + evenly spaced global tokens; reference masked dense, optimized blocked SDPA",
    build=_build,
    sample_inputs=token_samples(TEST_DIM),
    error_inputs=token_error_inputs(TEST_DIM, {
        "window_zero": (dict(local_window=0, num_global_tokens=1, dim=TEST_DIM, num_heads=4), ValueError,
                        r"local_window must be >= 1"),
        "global_negative": (dict(local_window=4, num_global_tokens=-1, dim=TEST_DIM, num_heads=4), ValueError,
                            r"num_global_tokens must be >= 0"),
        "window_float": (dict(local_window=4.0, num_global_tokens=1, dim=TEST_DIM, num_heads=4), TypeError,
                         r"local_window must be an int"),
    }),
    # block=4 in tests so that several blocks, padding and global slots are all exercised at n=16.
    bench_inputs=token_samples(768),
    default_config=dict(local_window=4, num_global_tokens=1, dim=TEST_DIM, num_heads=4, dropout=0.0, block=4),
    bench_config=dict(local_window=128, num_global_tokens=4, dim=768, num_heads=12, dropout=0.0),
    test_sizes=(1, 2, 7, 12, 16),
    bench_sizes=(256, 512, 1024, 2048),
    time_exponent={"reference": 2.0, "optimized": 1.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))
