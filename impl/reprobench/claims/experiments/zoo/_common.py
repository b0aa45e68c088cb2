"""Shared by the ZOO experiments: a reference module and its optimized twin with the same weights."""
from __future__ import annotations

import torch


def _pair(cls, generator, dtype=torch.float32, **config):
    ref = cls(**config, path="reference").reset_parameters(generator).to(dtype).eval()
    opt = cls(**config, path="optimized").to(dtype).eval()
    opt.load_state_dict(ref.state_dict())
    return ref, opt
