"""Shared by the ZOO experiments: a reference module and its optimized twin with the same weights, and two
estimates the statistics module does not make (a success proportion, the largest of several quantities)."""
from __future__ import annotations

from typing import Sequence

import torch
from scipy import stats as scipy_stats

from reprobench.measure import Estimate
from reprobench.measure.stats import CONFIDENCE


def _pair(cls, generator, dtype=torch.float32, **config):
    ref = cls(**config, path="reference").to(dtype).reset_parameters(generator).eval()
    opt = cls(**config, path="optimized").to(dtype).eval()
    opt.load_state_dict(ref.state_dict())
    return ref, opt


def proportion_estimate(successes: int, trials: int, confidence: float = CONFIDENCE) -> Estimate:
    """successes / trials with the exact (Clopper-Pearson) binomial interval, for 0/1 outcomes of independent
    runs (learners, seeds): a Student-t interval of 0/1 values collapses to a point when all agree."""
    if not 0 <= successes <= trials or trials < 1:
        raise ValueError(f"proportion_estimate: need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    interval = scipy_stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return Estimate(point=successes / trials, low=float(interval.low), high=float(interval.high), confidence=confidence,
                    samples=trials, method="proportion, exact (Clopper-Pearson) binomial interval")


def max_estimate(estimates: Sequence[Estimate]) -> Estimate:
    """The largest of several quantities ("one of these mechanisms reaches X" is "their maximum reaches X").

    max is increasing in each argument, so [max of the lows, max of the highs] covers the true maximum
    whenever every interval covers its own quantity: by Bonferroni, with probability at least
    1 - Σ(1 - confidence_i).
    """
    if not estimates:
        raise ValueError("max_estimate: need at least one estimate")
    if len(estimates) == 1:
        return estimates[0]
    confidence = max(1.0 - sum(1.0 - e.confidence for e in estimates), 1e-12)
    return Estimate(point=max(e.point for e in estimates), low=max(e.low for e in estimates),
                    high=max(e.high for e in estimates), confidence=confidence,
                    samples=min(e.samples for e in estimates),
                    method=f"maximum of {len(estimates)} estimates, Bonferroni coverage")
