"""Shared equivariant encoder + sparse attention + per-example adapters — EQ-04, EQ-05, EQ-07, EQ-10.

Source: "Sparse Attention + Group-Aware Homotopy" (documents/003_cfb6f10add0ba6bf.txt). The document replaces
"one network per example" (``nn.ModuleList([...] for _ in range(N))``, "48,384 × N parameters, N
separate forward passes") by a shared encoder, a ``SparseAttention`` over the examples' pooled
features and low-rank per-example adapters ("14,976 + 256 × N parameters, 1 shared forward pass").

Our learner (the document gives no layer sizes, so the sizes are ours):
  shared_feat = relu(EquivariantBlock(examples))          (N, D, 4, n, n)   C4 lift -> relu -> group conv
  pooled      = shared_feat.mean(group, H, W)             (N, D)            rotation invariant
  attended    = SparseAttention(pooled)                   (N, D)
  modulation  = attended_i @ down_i @ up_i                (N, D)            down (N, D, r), up (N, r, D): 2·D·r per example
  output      = mean_group(output_proj(shared_feat + modulation))   (N, C_out, n, n), equivariant
`SeparateNetworks` is the baseline: N copies of the same network without attention or adapters.

`IndividualMorphismWrapper(learner, i)` is the document's "make adapter-based morphism callable":
it runs the shared encoder on its input but takes the pooled features from
``learner._cached_pooled_features``, cached *detached* by the learner's last forward ("Fix 2").
Its output therefore depends on the last batch the learner saw, not only on its input, and no
gradient reaches the encoder through the attention path (EQ-10). `FreshMorphism(learner, i,
examples)` is the corrected wrapper: it recomputes the pooled features of the examples with the
input in slot i on every call, so f_i(x) == learner(examples with x at i)[i], gradients included.

Reference: per-example loop (N encoder passes, as the ModuleList design runs) with uncached conv
banks and the documented dense top-k attention. Optimized: one batched encoder pass, cached banks,
chunked top-k attention, adapters as one einsum — the "1 shared forward pass" of EQ-07.
"""
from __future__ import annotations

import torch
from torch import nn

from reprobench_documents.attention.base import check_path, check_positive_int
from reprobench_documents.equivariant.equivariant_conv import FROZEN_DATA_WRITE, EquivariantBlock, EquivariantConv2d, check_square
from reprobench_documents.equivariant.sparse_attention import SparseAttention
from reprobench.registry import CacheUse, ComponentSpec, ErrorInput, Implementations, SampleInput, register


class EquivariantNet(nn.Module):
    """One full network: relu(lift -> relu -> group conv) -> 1x1 group conv -> mean over the group."""

    def __init__(self, in_channels: int, out_channels: int, feature_dim: int = 16, kernel_size: int = 3,
                 cache: str = "version"):
        super().__init__()
        self.encoder = EquivariantBlock(in_channels, feature_dim, feature_dim, kernel_size, cache=cache)
        self.output_proj = EquivariantConv2d(feature_dim, out_channels, 1, lifting=False, cache=cache)

    def reset_parameters(self, generator: torch.Generator) -> "EquivariantNet":
        self.encoder.reset_parameters(generator)
        self.output_proj.reset_parameters(generator)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_proj(torch.relu(self.encoder(x))).mean(2)  # (B, C_out, n, n)


class SeparateNetworks(nn.Module):
    """The baseline: one EquivariantNet per example, N separate forward passes."""

    def __init__(self, num_examples: int, in_channels: int, out_channels: int, feature_dim: int = 16,
                 kernel_size: int = 3, cache: str = "version"):
        super().__init__()
        self.individual_morphisms = nn.ModuleList(
            EquivariantNet(in_channels, out_channels, feature_dim, kernel_size, cache) for _ in range(num_examples))

    def reset_parameters(self, generator: torch.Generator) -> "SeparateNetworks":
        for net in self.individual_morphisms:
            net.reset_parameters(generator)
        return self

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        return torch.cat([net(examples[i:i + 1]) for i, net in enumerate(self.individual_morphisms)])


class AdapterLearner(nn.Module):
    """Shared encoder + SparseAttention + per-example adapters: examples (N, C_in, n, n) -> (N, C_out, n, n)."""

    def __init__(self, num_examples: int, in_channels: int, out_channels: int, feature_dim: int = 16,
                 adapter_rank: int = 8, k_neighbors: int = 2, kernel_size: int = 3, path: str = "optimized"):
        super().__init__()
        self.num_examples = check_positive_int(num_examples, "num_examples")
        check_positive_int(adapter_rank, "adapter_rank")
        if check_positive_int(k_neighbors, "k_neighbors") > num_examples:
            raise ValueError(f"k_neighbors ({k_neighbors}) must be <= num_examples ({num_examples})")
        self.path, self.in_channels = check_path(path), in_channels
        cache = "none" if path == "reference" else "version"
        self.shared_encoder = EquivariantBlock(in_channels, feature_dim, feature_dim, kernel_size, cache=cache)
        self.sparse_attention = SparseAttention(feature_dim, k_neighbors, path=path)
        self.example_adapters_down = nn.Parameter(torch.zeros(num_examples, feature_dim, adapter_rank))
        self.example_adapters_up = nn.Parameter(torch.zeros(num_examples, adapter_rank, feature_dim))
        self.output_proj = EquivariantConv2d(feature_dim, out_channels, 1, lifting=False, cache=cache)
        self._cached_pooled_features = None  # the document's "Fix 2"; a plain attribute, not state

    def reset_parameters(self, generator: torch.Generator) -> "AdapterLearner":
        self.shared_encoder.reset_parameters(generator)
        self.sparse_attention.reset_parameters(generator)
        self.output_proj.reset_parameters(generator)
        d, r = self.example_adapters_down.shape[1:]
        with torch.no_grad():
            self.example_adapters_down.normal_(0.0, d ** -0.5, generator=generator)
            self.example_adapters_up.normal_(0.0, 0.1 * r ** -0.5, generator=generator)
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.shared_encoder(x))  # (B, D, 4, n, n)

    def modulate(self, shared_feat, attended, down, up) -> torch.Tensor:
        modulation = torch.einsum("bd,bdr,bre->be", attended, down, up)  # (B, D)
        return self.output_proj(shared_feat + modulation[:, :, None, None, None]).mean(2)

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        check_square(examples, "examples", 4, self.in_channels, self.example_adapters_down)
        if examples.shape[0] != self.num_examples:
            raise ValueError(f"examples has {examples.shape[0]} rows, expected num_examples={self.num_examples}")
        if self.path == "reference":  # N separate encoder passes, one example at a time
            feats = [self.encode(examples[i:i + 1]) for i in range(self.num_examples)]
            pooled = torch.cat([f.mean(dim=(2, 3, 4)) for f in feats])
        else:  # one shared pass
            shared_feat = self.encode(examples)
            pooled = shared_feat.mean(dim=(2, 3, 4))  # (N, D)
        self._cached_pooled_features = pooled.detach()
        attended = self.sparse_attention(pooled)  # (N, D)
        if self.path == "reference":
            return torch.cat([self.modulate(feats[i], attended[i:i + 1], self.example_adapters_down[i:i + 1],
                                            self.example_adapters_up[i:i + 1]) for i in range(self.num_examples)])
        return self.modulate(shared_feat, attended, self.example_adapters_down, self.example_adapters_up)


class IndividualMorphismWrapper(nn.Module):
    """The document's wrapper: f_i(x) with pooled features reused from the learner's last forward."""

    def __init__(self, learner: AdapterLearner, index: int):
        super().__init__()
        self.learner, self.index = learner, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        learner, i = self.learner, self.index
        shared_feat = learner.encode(x)
        if learner._cached_pooled_features is None:
            raise ValueError("the learner has no cached pooled features: call learner(examples) before the wrapper")
        attended = learner.sparse_attention(learner._cached_pooled_features)[i]  # (D,), detached input
        b = x.shape[0]
        return learner.modulate(shared_feat, attended.expand(b, -1), learner.example_adapters_down[i].expand(b, -1, -1),
                                learner.example_adapters_up[i].expand(b, -1, -1))


class FreshMorphism(nn.Module):
    """Corrected wrapper: f_i(x) = learner(examples with x in slot i)[i], recomputed with gradients."""

    def __init__(self, learner: AdapterLearner, index: int, examples: torch.Tensor):
        super().__init__()
        self.learner, self.index, self.examples = learner, index, examples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        learner, i, b = self.learner, self.index, x.shape[0]
        shared_feat = learner.encode(x)  # (B, D, 4, n, n)
        context = learner.encode(self.examples).mean(dim=(2, 3, 4))  # (N, D)
        slot = torch.arange(context.shape[0], device=x.device) == i  # (N,)
        pooled = torch.where(slot[None, :, None], shared_feat.mean(dim=(2, 3, 4))[:, None, :], context[None])  # (B, N, D)
        attended = learner.sparse_attention(pooled)[:, i]  # (B, D)
        return learner.modulate(shared_feat, attended, learner.example_adapters_down[i].expand(b, -1, -1),
                                learner.example_adapters_up[i].expand(b, -1, -1))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _build(config, device, dtype, generator):
    reference = AdapterLearner(**config, path="reference").to(dtype=dtype).reset_parameters(generator).to(device).eval()
    optimized = AdapterLearner(**config, path="optimized").to(device, dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized)


TEST_CONFIG = dict(num_examples=4, in_channels=3, out_channels=2, feature_dim=8, adapter_rank=2, k_neighbors=2)


def _sample_inputs(n, device, dtype, generator):
    x = torch.randn(TEST_CONFIG["num_examples"], TEST_CONFIG["in_channels"], n, n, device=device, dtype=dtype,
                    generator=generator)
    return [SampleInput((x,), name="examples")]


BENCH_CONFIG = dict(num_examples=10, in_channels=10, out_channels=10, feature_dim=16, adapter_rank=8, k_neighbors=5)


def _bench_inputs(n, device, dtype, generator):
    x = torch.randn(BENCH_CONFIG["num_examples"], BENCH_CONFIG["in_channels"], n, n, device=device, dtype=dtype,
                    generator=generator)
    return [SampleInput((x,), name="examples")]


def _error_inputs(device, dtype, generator):
    c, n_ex = TEST_CONFIG["in_channels"], TEST_CONFIG["num_examples"]

    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    return [
        ErrorInput(SampleInput((randn(n_ex + 1, c, 5, 5),), name="wrong_n"), ValueError, r"expected num_examples"),
        ErrorInput(SampleInput((randn(n_ex, c, 5, 4),), name="non_square"), ValueError, r"examples must be square"),
        ErrorInput(SampleInput((randn(n_ex, c + 1, 5, 5),), name="channels"), ValueError, r"expected in_channels"),
        ErrorInput(SampleInput((randn(n_ex, c, 5, 5),), name="k_gt_n"), ValueError, r"k_neighbors \(5\) must be <= num_examples",
                   config={**TEST_CONFIG, "k_neighbors": 5}),
        ErrorInput(SampleInput((randn(n_ex, c, 5, 5),), name="even_kernel"), ValueError, r"kernel_size must be odd",
                   config={**TEST_CONFIG, "kernel_size": 2}),
    ]


register(ComponentSpec(
    name="equivariant.shared_encoder",
    claims=("EQ-04", "EQ-05", "EQ-07", "EQ-10"),
    description="shared C4 encoder + top-k attention + per-example adapters; reference loops over examples, optimized one batched pass",
    build=_build,
    sample_inputs=_sample_inputs,
    error_inputs=_error_inputs,
    default_config=TEST_CONFIG,
    bench_config=BENCH_CONFIG,
    bench_inputs=_bench_inputs,
    test_sizes=(1, 3, 6),
    bench_sizes=(8, 16, 32),
    size_name="grid",
    time_exponent={"reference": 2.0, "optimized": 2.0},
    memory_exponent={"reference": 2.0, "optimized": 2.0},
    caches=(CacheUse(blind_to={"frozen_data_write": FROZEN_DATA_WRITE}),),  # the conv filter banks
))
