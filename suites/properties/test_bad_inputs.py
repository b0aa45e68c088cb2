"""Derived bad inputs over the registry: every kind of bad call in bad_inputs.KINDS, made on
both twins of every registered component, ends in a clear error or a correct result, the same way
in both twins, as the component's InputSupport declares. Kinds that do not apply to a component (no
integer argument to put out of range, ...) are not generated.

`python -m reprobench.testing.bad_inputs` prints the outcome counts per kind. The judge's own tests
at the bottom aim it at deliberately broken fake components and watch each failure get named.
"""
from __future__ import annotations

import os

import torch

import reprobench.testing.bad_inputs as bad_inputs
from reprobench.registry import ComponentSpec, Implementations, InputSupport, SampleInput, list_components
from reprobench.testing.bad_inputs import KINDS, derive, judge
# The test itself lives in reprobench.testing.generic_tests (the pytest plugin offers it to anyone's components).
from reprobench.testing.generic_tests import (  # noqa: F401 - the test and its parametrizing hook
    bad_input_applies, pytest_generate_tests, test_bad_input_is_handled)


def test_every_kind_applies_somewhere():
    """A kind that no component reaches tests nothing: a derivation bug would hide there."""
    unused = [kind for kind in KINDS if not any(bad_input_applies(spec.name, kind) for spec in list_components())]
    assert not unused, f"kinds derived for no component: {unused}"


# --- the judge, aimed at broken fakes -------------------------------------------------------------

def _fake(reference, optimized, support=InputSupport()):
    """A one-argument component x (batch, n, 4) -> (batch, n, 4); never registered."""
    def samples(n, device, dtype, generator):
        return [SampleInput((torch.randn(2, n, 4, dtype=dtype, generator=generator),), name="x")]

    return ComponentSpec(name="attention.fake", claims=(), description="fake",
                         build=lambda config, device, dtype, generator: Implementations(reference, optimized),
                         sample_inputs=samples, input_support=support)


def _checked(x):
    if not isinstance(x, torch.Tensor) or x.dtype not in (torch.float32, torch.float64) or x.dim() != 3:
        raise TypeError(f"x: expected a float32 or float64 tensor (batch, n, 4), got {x}")
    if x.shape[-1] != 4 or 0 in x.shape or x.device.type == "meta":
        raise ValueError(f"x: expected shape (batch >= 1, n >= 1, 4) with data, got {tuple(x.shape)}")
    return x


def good(x):
    return _checked(x) * 2.0


def test_judge_passes_a_well_behaved_component():
    spec = _fake(good, good)
    outcomes = [judge(spec, kind) for kind in KINDS if derive(spec, kind) is not None]
    assert outcomes and all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]


def test_judge_names_an_error_from_inside_torch():
    def crashes(x):
        return torch.cat([x, torch.zeros(3, 3, dtype=x.dtype)])  # fails inside torch for any x
    outcome = judge(_fake(good, crashes), "rank_plus")
    assert outcome.verdict == "error from inside torch", outcome


def test_judge_names_the_package_an_unchecked_error_comes_from():
    def asserts(x):
        assert x.dim() == 3, "rank"  # an assert is not a check: it vanishes under python -O
        return x * 2.0
    outcome = judge(_fake(asserts, asserts), "rank_plus")
    assert outcome.verdict == f"error from inside {__name__.partition('.')[0]}" and outcome.tier == "hygiene", outcome


def test_judge_names_an_error_that_names_no_argument():
    def vague(x):
        raise ValueError("bad")
    assert judge(_fake(vague, vague), "int_dtype").verdict == "error names no argument"


def test_judge_names_a_silently_accepted_half_input():
    def lenient(x):
        return x * 2.0
    assert judge(_fake(lenient, lenient), "float16").verdict == "accepted an unsupported input"


def test_judge_names_a_declared_case_that_is_rejected():
    spec = _fake(good, good, InputSupport(empty_batch=True))
    assert judge(spec, "batch_zero").verdict == "rejected a supported input"


def test_judge_names_twins_that_disagree_on_acceptance():
    def lenient(x):
        return x * 2.0
    outcome = judge(_fake(good, lenient), "rank_plus")
    assert outcome.verdict == "twins disagree on raising" and outcome.tier == "hygiene", outcome


def test_judge_compares_the_optimized_twin_not_the_reference_with_itself():
    """Both twins accept a valid input in another layout and return different numbers: a wrong answer,
    so a correctness failure even for a plugin (a judge that compared the reference with itself, or ran the
    reference twice, would call it a correct result)."""
    def off(x):
        return good(x) * 1.5
    outcome = judge(_fake(good, off), "non_contiguous")
    assert outcome.verdict == "twins disagree" and outcome.tier == "correctness", outcome


def test_judge_names_an_error_raised_by_torchs_own_python_code():
    """torch/nn/functional.py raises a ValueError that names `input` and says 'must': torch's check, not the
    component's, because the raising frame lies under the torch package directory (TORCH_DIR)."""
    def resize(input):
        if not isinstance(input, torch.Tensor) or input.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"input: expected a float32 or float64 tensor, got {input}")
        return torch.nn.functional.interpolate(input, size=(8,))  # 3-D only: a 4-D input fails in torch's Python

    outcome = judge(_fake(resize, resize), "rank_plus")
    assert outcome.verdict == "error from inside torch", outcome
    assert "functional" not in str(bad_inputs.TORCH_DIR) and bad_inputs.TORCH_DIR.endswith(os.sep)


def test_tiers_declared_inputs_are_correctness_undeclared_ones_hygiene():
    def lenient(x):
        return x * 2.0
    undeclared = judge(_fake(lenient, lenient), "batch_zero")
    assert (undeclared.verdict, undeclared.tier) == ("accepted an unsupported input", "hygiene"), undeclared
    declared = judge(_fake(good, good, InputSupport(empty_batch=True, reason="test")), "batch_zero")
    assert (declared.verdict, declared.tier) == ("rejected a supported input", "correctness"), declared

    def crashes(x):
        return torch.cat([x, torch.zeros(3, 3, dtype=x.dtype)])
    inside = judge(_fake(good, crashes), "rank_plus")
    assert (inside.verdict, inside.tier) == ("error from inside torch", "hygiene"), inside


def test_judge_names_a_nan_one_twin_swallows():
    def swallows(x):
        return torch.nan_to_num(good(x))
    assert judge(_fake(good, swallows), "nan").verdict == "twins disagree"


def test_judge_names_a_result_that_depends_on_strides():
    def stride_sensitive(x):
        return good(x) + (0.0 if x.is_contiguous() else 1.0)
    assert judge(_fake(stride_sensitive, stride_sensitive), "non_contiguous").verdict == "wrong result"


def test_judge_names_a_non_empty_output_for_an_empty_batch():
    def fills(x):
        x = x if x.shape[0] else torch.zeros(1, *x.shape[1:], dtype=x.dtype)
        return x * 2.0
    spec = _fake(fills, fills, InputSupport(empty_batch=True))
    assert judge(spec, "batch_zero").verdict == "wrong result"


def test_judge_names_a_hang(monkeypatch):
    import reprobench.testing.bad_inputs as bad_inputs

    def spins(x):
        while True:  # e.g. a loop whose exit condition a NaN never meets
            pass
    monkeypatch.setattr(bad_inputs, "HANG_SECONDS", 0.2)
    assert judge(_fake(good, spins), "nan").verdict == "hang"


def test_hygiene_is_strict_for_builtins_and_a_finding_for_plugins():
    """reprobench's own components fail on a hygiene problem; a plugin's become findings, unless the run asks
    for strictness or nothing would print the findings table."""
    from types import SimpleNamespace

    from reprobench.testing import hygiene

    def config(strict=False, collector=True):
        return SimpleNamespace(getoption=lambda name, default=None: strict if name == hygiene.STRICT_OPTION else default,
                               pluginmanager=SimpleNamespace(has_plugin=lambda name: collector))

    builtin = next(spec for spec in list_components("attention.*"))
    plugin = _fake(good, good)  # built in this test module: not reprobench.<family>.*
    assert hygiene.strict(config(), builtin)
    assert not hygiene.strict(config(), plugin)
    assert hygiene.strict(config(strict=True), plugin)
    assert hygiene.strict(config(collector=False), plugin)
