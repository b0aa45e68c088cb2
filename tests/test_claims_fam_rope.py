"""FAM and ROPE: the small helpers the experiments judge with do what their rules say (the checks every untimed
claim gets are in tests/test_claims_untimed.py)."""
from __future__ import annotations

import math

import pytest
import torch


def test_scheduler_points_are_judged_relative_without_absolute_slack():
    from reprobench_documents.experiments.fam.schedulers import off_target

    assert off_target(0.1, 0.1, 1e-12) == 0
    assert off_target(0.1 * (1 + 5e-13), 0.1, 1e-12) == 0
    assert off_target(0.1 * (1 + 2e-12), 0.1, 1e-12) == 1
    # a warmup_start_lr of 1e-8 missed by 5e-16 is off by 5e-8 relative: no absolute tolerance hides it
    assert off_target(1e-8 + 5e-16, 1e-8, 1e-12) == 1
    assert off_target(math.nan, 0.1, 1e-9) == 1


def test_bf16_error_is_none_when_the_module_refuses_bfloat16():
    from reprobench_documents.experiments.rope.standard_path import bf16_error, bf16_words

    truth = torch.zeros(2, dtype=torch.float64)

    def refuses(_):
        raise TypeError("t: expected a float32 or float64 tensor")

    assert bf16_error(refuses, truth.to(torch.bfloat16), truth) is None
    assert bf16_error(lambda t: t + 0.5, truth.to(torch.bfloat16), truth) == 0.5
    with pytest.raises(RuntimeError):  # any other failure is an error, not a refusal
        bf16_error(lambda t: (_ for _ in ()).throw(RuntimeError("boom")), truth.to(torch.bfloat16), truth)
    assert "refused" in bf16_words(None, 0.1) and "0.100" in bf16_words(0.5, 0.1)
