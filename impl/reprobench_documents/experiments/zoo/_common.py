"""Shared by the ZOO experiments: a reference module and its optimized twin with the same weights."""
from __future__ import annotations

import torch

from reprobench.measure.stats import max_estimate, proportion_estimate  # noqa: F401  (the family imports them from here)


def pair(cls, generator, dtype=torch.float32, **config):
    """(reference, optimized) twins of `cls`, in eval mode, the optimized one loaded with the reference's weights."""
    ref = cls(**config, path="reference").to(dtype).reset_parameters(generator).eval()
    opt = cls(**config, path="optimized").to(dtype).eval()
    opt.load_state_dict(ref.state_dict())
    return ref, opt
