"""Scaling exponents: fit log(y) = a + b log(n) and report b with its R²."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class ScalingFit:
    exponent: float  # slope b of log y against log n
    r_squared: float  # fit quality; near 1 means a clean power law over the sweep
    sizes: tuple[float, ...]
    values: tuple[float, ...]

    def predict(self, n: float) -> float:
        intercept = _mean([math.log(v) for v in self.values]) - self.exponent * _mean([math.log(s) for s in self.sizes])
        return math.exp(intercept) * n ** self.exponent


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def fit_exponent(sizes: Sequence[float], values: Sequence[float]) -> ScalingFit:
    """Least-squares slope in log-log space. Needs >= 2 sizes and positive values."""
    if len(sizes) != len(values):
        raise ValueError(f"sizes ({len(sizes)}) and values ({len(values)}) must have the same length")
    if len(sizes) < 2:
        raise ValueError("sizes: need at least two points to fit an exponent")
    if any(s <= 0 for s in sizes) or any(v <= 0 for v in values):
        raise ValueError("sizes and values must be positive to fit in log-log space")
    xs = [math.log(s) for s in sizes]
    ys = [math.log(v) for v in values]
    mx, my = _mean(xs), _mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("sizes: all equal; need at least two distinct sizes")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    ss_res = sum((y - (my + slope * (x - mx))) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return ScalingFit(exponent=slope, r_squared=r2, sizes=tuple(map(float, sizes)), values=tuple(map(float, values)))
