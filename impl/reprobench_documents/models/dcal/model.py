"""DualAttentionModel: SA + GLCA + PWCA on a ViT backbone — DCAL-03, -06, -08, -09, -11.

Source: "Dual Cross-Attention Model Optimizations" (documents/001_128d0a2e45dbf7cd.txt), usage section:
`DualAttentionModel(backbone_name, num_classes, task_type, cache_attention_rollout, top_k_ratio)`,
`model(images, paired_images)` returning 'sa_logits', 'glca_logits' and (training only) 'pwca_logits';
`get_cache_stats()`, `clear_attention_cache()`; the rollout cache is used in eval mode only.

Architecture (Zhu et al. 2022, L = depth SA blocks, M = 1 GLCA block):
- SA: the ViT of vit.py; every block's attention map is kept for the rollout.
- GLCA: one block with its own weights beside the last SA block: it takes that block's input
  tokens, selects CLS + top-R queries by the rollout of all L layers (CLS row), and classifies from
  the mean of its 1 + R output tokens with its own norm and head. Not from the CLS output alone: with
  one GLCA block the CLS query attends to every key whatever the selection, so its output (and a
  CLS-only head) would not depend on the rollout at all.
- PWCA (training, when `paired_images` is given): image 1 runs through the SA blocks again with
  each block's attention replaced by PWCA against image 2's tokens at that block, with SA's weights
  (`pwca_weights="shared"`, the "after") or a per-call copy of them ("copy", the "before"); it
  uses SA's norm and head. The PWCA path adds no parameters, so before and after share a state_dict.

`path="reference"`: full-product rollout, GLCA reference, PWCA before + explicit softmax;
`path="optimized"`: CLS-row rollout chain, gathered-query GLCA, PWCA after + SDPA (`pwca_weights` and
`rollout_impl` override one piece, so an experiment can change exactly what a claim is about). `return_dict=False`
returns the logits as a tuple (sa, glca[, pwca]) for the registry's generic suites.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from reprobench_documents.models.dcal.glca import GlobalLocalCrossAttention, check_top_k_ratio, gather_tokens, select_queries
from reprobench_documents.models.dcal.pwca import copy_attention, pwca_attend
from reprobench_documents.models.dcal.rollout import rollout_cls_optimized, rollout_cls_reference
from reprobench_documents.models.dcal.rollout_cache import CACHES
from reprobench_documents.models.dcal.vit import Block, Mlp, PatchEmbed, backbone_config, init_vit_
from reprobench.registry import CacheUse, ComponentSpec, ErrorInput, Implementations, SampleInput, register
from reprobench.validation import check_tensor

TASK_IMAGE_SIZES = {"fgvc": (448, 448), "reid": (256, 128)}  # the paper's fine-tuning resolutions
PATHS = ("reference", "optimized")
ROLLOUTS = {"full": rollout_cls_reference, "cls_chain": rollout_cls_optimized}  # L·N³ product / L·N² chain


class DualAttentionModel(nn.Module):
    def __init__(self, backbone_name: str = "deit_small_patch16_224", num_classes: int = 200, task_type: str = "fgvc",
                 cache_attention_rollout: bool = False, top_k_ratio: float = 0.1, img_size=None,
                 cache_kind: str = "stats", cache_size: int = 1000, path: str = "optimized",
                 pwca_weights: str | None = None, rollout_impl: str | None = None, return_dict: bool = True,
                 depth: int | None = None):
        super().__init__()
        cfg = backbone_config(backbone_name)
        if depth is not None:  # the first `depth` blocks only: full width at a fraction of the cost (experiments)
            if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= cfg.depth:
                raise ValueError(f"depth must be an int in [1, {cfg.depth}], got {depth!r}")
            cfg = dataclasses.replace(cfg, depth=depth)
        if task_type not in TASK_IMAGE_SIZES:
            raise ValueError(f"task_type must be one of {sorted(TASK_IMAGE_SIZES)}, got {task_type!r}")
        if path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {path!r}")
        if cache_kind not in CACHES:
            raise ValueError(f"cache_kind must be one of {sorted(CACHES)}, got {cache_kind!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        self.top_k_ratio = check_top_k_ratio(top_k_ratio)
        img_size = img_size if img_size is not None else TASK_IMAGE_SIZES[task_type]
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.path, self.return_dict = path, return_dict
        self.pwca_weights = pwca_weights or ("copy" if path == "reference" else "shared")
        self.pwca_kernel = "explicit" if path == "reference" else "sdpa"
        self.rollout_impl = rollout_impl or ("full" if path == "reference" else "cls_chain")
        if self.pwca_weights not in ("copy", "shared") or self.rollout_impl not in ROLLOUTS:
            raise ValueError(f"pwca_weights must be 'copy' or 'shared' and rollout_impl one of {sorted(ROLLOUTS)}, "
                             f"got {self.pwca_weights!r}, {self.rollout_impl!r}")
        dim = cfg.dim
        self.patch_embed = PatchEmbed(img_size, cfg.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, dim))
        self.blocks = nn.ModuleList(Block(dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)
        self.glca_norm1 = nn.LayerNorm(dim)
        self.glca = GlobalLocalCrossAttention(dim, cfg.num_heads, top_k_ratio, path=path)
        self.glca_norm2, self.glca_mlp = nn.LayerNorm(dim), Mlp(dim, int(dim * cfg.mlp_ratio))
        self.glca_norm, self.glca_head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)
        self.cache_attention_rollout = cache_attention_rollout
        self.rollout_cache = CACHES[cache_kind](max_size=cache_size)

    def reset_parameters(self, generator: torch.Generator) -> "DualAttentionModel":
        init_vit_(self, generator)
        return self

    # --- input checks ---------------------------------------------------------------------------
    def check_images(self, images, name: str) -> None:
        """(batch >= 1, 3, H, W) at the img_size the backbone was built for, dtype and device of the model."""
        h, w = self.patch_embed.img_size
        check_tensor(name, images, shape=("batch", 3, h, w), nonempty=("batch",), like=self.cls_token,
                     like_what="the model's parameters")

    # --- branches -------------------------------------------------------------------------------
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)  # (B, P, D)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed  # (B, N, D)

    def attention_rollout(self, attentions: list[torch.Tensor]) -> torch.Tensor:
        """CLS row of the rollout (B, N); through the cache in eval mode when enabled."""
        compute = ROLLOUTS[self.rollout_impl]
        maps = [a.detach() for a in attentions]  # L × (B, H, N, N); the selection has no gradient
        if self.cache_attention_rollout and not self.training:
            return self.rollout_cache.get_or_compute(maps, compute)  # the cache stacks them for its key
        return compute(maps)  # no stacked copy of the maps on this path

    def pwca_branch(self, x1: torch.Tensor, x2_inputs: list[torch.Tensor]) -> torch.Tensor:
        for block, x2 in zip(self.blocks, x2_inputs):
            # "before": a fresh module with copied weights per call; "after": SA's own projections
            attn = copy_attention(block.attn) if self.pwca_weights == "copy" else block.attn
            x1 = x1 + pwca_attend(attn, block.norm1(x1), block.norm1(x2), self.pwca_kernel)
            x1 = x1 + block.mlp(block.norm2(x1))
        return self.head(self.norm(x1[:, 0]))

    def forward(self, images: torch.Tensor, paired_images: torch.Tensor | None = None):
        self.check_images(images, "images")
        if paired_images is not None:
            if isinstance(paired_images, torch.Tensor) and paired_images.shape != images.shape:
                raise ValueError(f"image pair shape mismatch: paired_images: expected shape {tuple(images.shape)} "
                                 f"like images, got {tuple(paired_images.shape)}")
            self.check_images(paired_images, "paired_images")
        x = self.embed(images)
        attentions, inputs = [], []
        for block in self.blocks:
            inputs.append(x)
            x, probs = block(x)
            attentions.append(probs)
        out = {"sa_logits": self.head(self.norm(x[:, 0]))}
        # GLCA beside the last SA block: its input tokens, rollout through all L layers.
        x_last = inputs[-1]
        index = select_queries(self.attention_rollout(attentions), self.top_k_ratio)  # (B, 1 + R)
        g = gather_tokens(x_last, index) + self.glca.attend(self.glca_norm1(x_last), index)
        g = g + self.glca_mlp(self.glca_norm2(g))
        out["glca_logits"] = self.glca_head(self.glca_norm(g).mean(dim=1))  # pool CLS + R local tokens
        if self.training and paired_images is not None:
            x2, x2_inputs = self.embed(paired_images), []
            for block in self.blocks:
                x2_inputs.append(x2)
                x2, _ = block(x2)
            out["pwca_logits"] = self.pwca_branch(self.embed(images), x2_inputs)
        return out if self.return_dict else tuple(out.values())

    def get_cache_stats(self) -> dict:
        return self.rollout_cache.stats()

    def clear_attention_cache(self) -> None:
        self.rollout_cache.clear()


TEST_CONFIG = dict(backbone_name="vit_micro_patch4", num_classes=5, img_size=16, top_k_ratio=0.25, return_dict=False)


def build_model_pair(config, device, dtype, generator):
    reference = DualAttentionModel(**config, path="reference").to(dtype=dtype).reset_parameters(generator).to(device=device).eval()
    optimized = DualAttentionModel(**config, path="optimized").to(device=device, dtype=dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized)


def image_samples(side: int):
    def sample_inputs(batch, device, dtype, generator):
        return [SampleInput((torch.randn(batch, 3, side, side, device=device, dtype=dtype, generator=generator),),
                            name="eval")]

    return sample_inputs


def _error_inputs(device, dtype, generator):
    side = TEST_CONFIG["img_size"]

    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    return [
        ErrorInput(SampleInput((randn(2, 3, side + 4, side),), name="wrong_size"), ValueError,
                   r"images: expected .* shape \(batch, 3, 16, 16\).*got .*\(2, 3, 20, 16\)"),
        ErrorInput(SampleInput((randn(2, 1, side, side),), name="one_channel"), ValueError,
                   r"images: expected .* shape \(batch, 3, 16, 16\)"),
        ErrorInput(SampleInput((randn(2, 3, side, side), randn(3, 3, side, side)), name="pair_mismatch"), ValueError,
                   r"image pair shape mismatch"),
        ErrorInput(SampleInput((randn(2, 3, side, side),), name="ratio_zero"), ValueError, r"top_k_ratio must be",
                   config=dict(TEST_CONFIG, top_k_ratio=0.0)),
        ErrorInput(SampleInput((randn(2, 3, side, side),), name="ratio_big"), ValueError, r"top_k_ratio must be",
                   config=dict(TEST_CONFIG, top_k_ratio=1.01)),
        ErrorInput(SampleInput((randn(2, 3, side, side),), name="backbone"), ValueError, r"backbone_name must be one of",
                   config=dict(TEST_CONFIG, backbone_name="resnet50")),
    ]


register(ComponentSpec(
    name="models.dcal",
    claims=("DCAL-03", "DCAL-06", "DCAL-08", "DCAL-09", "DCAL-11"),
    description="DualAttentionModel (SA + GLCA, eval); reference full rollout + full-row GLCA, optimized chain + gathered GLCA",
    build=build_model_pair,
    sample_inputs=image_samples(TEST_CONFIG["img_size"]),
    bench_inputs=image_samples(224),
    error_inputs=_error_inputs,
    default_config=TEST_CONFIG,
    # N/dim as DeiT-Small@448 (197 tokens, dim 96, 12 blocks) at a tenth of its cost per forward
    bench_config=dict(backbone_name="vit_mini_patch16", img_size=224, num_classes=200, return_dict=False),
    test_sizes=(1, 2, 3),
    bench_sizes=(1, 2),
    size_name="batch",
    # The eval-mode rollout cache, keyed on the attention maps: exact, and the documented statistics key.
    caches=(CacheUse(dict(cache_attention_rollout=True, cache_kind="exact")),
            CacheUse(dict(cache_attention_rollout=True, cache_kind="stats"), blind_to={
                mutation: "DCAL-07: the documented statistics key is invariant to the batch order, so the cache "
                          "returns the previous batch's rollout rows" for mutation in ("input_reorder", "frozen_input_reorder")})),
))
