"""acme-attention: a causal sliding-window attention layer (an example of a package that brings its own
component and claims to reprobench; see README.md)."""
from acme_attention.window_attention import WindowAttention, blocked_window_attention, dense_window_attention

__all__ = ["WindowAttention", "blocked_window_attention", "dense_window_attention"]
