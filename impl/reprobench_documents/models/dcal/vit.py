"""A small ViT of our own (timm is not installed): the backbone DCAL's branches share.

Same architecture as timm's VisionTransformer / DeiT (conv patch embedding, CLS token, learned
position embedding, pre-norm blocks of multi-head self-attention and a GELU MLP, final LayerNorm),
built without downloading weights. Backbone names follow timm's (`deit_small_patch16_224`: dim 384,
12 blocks, 6 heads, patch 16); the image size is a separate argument, because DCAL fine-tunes at
448×448 for FGVC (785 tokens) rather than the 224×224 the name records.

The self-attention here always forms the probabilities explicitly: DCAL's GLCA needs every layer's
attention map for the rollout, so the fused SDPA kernel (which never materialises them) cannot be
used on the SA path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from reprobench_documents.attention.base import check_heads, init_linear_


@dataclass(frozen=True)
class BackboneConfig:
    patch_size: int  # side of a square patch in pixels
    dim: int  # embedding width
    depth: int  # number of SA blocks (L)
    num_heads: int  # heads per block; dim must divide by it
    mlp_ratio: float = 4.0  # hidden width of the MLP / dim


BACKBONES = {
    "deit_small_patch16_224": BackboneConfig(patch_size=16, dim=384, depth=12, num_heads=6),
    "deit_tiny_patch16_224": BackboneConfig(patch_size=16, dim=192, depth=12, num_heads=3),
    # Small stand-ins for tests and experiments that must fit a 40 s budget on one core.
    "vit_mini_patch16": BackboneConfig(patch_size=16, dim=96, depth=12, num_heads=3),
    "vit_micro_patch4": BackboneConfig(patch_size=4, dim=32, depth=2, num_heads=2),
}


def backbone_config(name: str) -> BackboneConfig:
    if name not in BACKBONES:
        raise ValueError(f"backbone_name must be one of {sorted(BACKBONES)}, got {name!r}")
    return BACKBONES[name]


class Attention(nn.Module):
    """timm's Attention: x (B, N, D) -> (out (B, N, D), probs (B, H, N, N))."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.head_dim = check_heads(dim, num_heads)
        self.dim, self.num_heads = dim, num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def split_heads(self, x: torch.Tensor):
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]  # each (B, H, N, hd)

    def merge_heads(self, out: torch.Tensor) -> torch.Tensor:
        b, h, n, hd = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, h * hd))

    def forward(self, x: torch.Tensor):
        q, k, v = self.split_heads(x)
        probs = (q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)).softmax(dim=-1)  # (B, H, N, N)
        return self.merge_heads(probs @ v), probs


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; forward returns (tokens, attention probabilities)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        out, probs = self.attn(self.norm1(x))
        x = x + out
        return x + self.mlp(self.norm2(x)), probs


class PatchEmbed(nn.Module):
    def __init__(self, img_size: tuple[int, int], patch_size: int, dim: int):
        super().__init__()
        if img_size[0] % patch_size or img_size[1] % patch_size:
            raise ValueError(f"img_size {img_size} must be a multiple of patch_size={patch_size}")
        self.img_size, self.patch_size = img_size, patch_size
        self.num_patches = (img_size[0] // patch_size) * (img_size[1] // patch_size)
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images):  # (B, 3, H, W) -> (B, num_patches, dim)
        return self.proj(images).flatten(2).transpose(1, 2)


def init_vit_(module: nn.Module, generator: torch.Generator) -> None:
    """Seeded init from an explicit generator: linears and the patch conv uniform ±1/√fan_in,
    LayerNorm (1, 0), CLS token and position embedding N(0, 0.02²) as in timm."""
    with torch.no_grad():
        for name, sub in module.named_modules():
            if isinstance(sub, nn.Linear):
                init_linear_(sub, generator)
            elif isinstance(sub, nn.Conv2d):
                bound = 1.0 / math.sqrt(sub.weight[0].numel())
                sub.weight.uniform_(-bound, bound, generator=generator)
                sub.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(sub, nn.LayerNorm):
                sub.weight.fill_(1.0)
                sub.bias.zero_()
        for name, param in module.named_parameters():
            if name.endswith(("cls_token", "pos_embed")):
                param.normal_(0.0, 0.02, generator=generator)
