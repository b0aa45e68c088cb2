"""A claim's declaration carries its sizes for full and quick runs and what it needs of the device: the
experiment reads `ctx.sizes`, a quick run that measured at another size is reported unjudged naming the size,
and a device without float64 refuses a claim that needs it before the experiment runs."""
from __future__ import annotations

import importlib

import pytest
import torch

from reprobench.claims.experiment import Outcome, RunContext, declaration, experiment
from reprobench.claims.ledger import CLAIM_TEXTS, DECLARED_BY
from reprobench.claims.runner import run_claims
from reprobench.measure.stats import decide

experiment_module = importlib.import_module("reprobench.claims.experiment")  # the module, not the decorator


@pytest.fixture
def scratch_claims(monkeypatch):
    """Declare toy claims without leaving them in the ledger for other tests."""
    monkeypatch.setattr(experiment_module, "_EXPERIMENTS", dict(experiment_module._EXPERIMENTS))
    monkeypatch.setattr(experiment_module, "_DECLARATIONS", dict(experiment_module._DECLARATIONS))
    texts, by = dict(CLAIM_TEXTS), dict(DECLARED_BY)
    yield
    CLAIM_TEXTS.clear()
    CLAIM_TEXTS.update(texts)
    DECLARED_BY.clear()
    DECLARED_BY.update(by)


def _declare(claim_id, **kw):
    seen = {}

    @experiment(claim_id, text="toy: exact at n", source="tests", **kw)
    def toy(ctx: RunContext) -> Outcome:
        seen["n"] = ctx.sizes["n"]
        seen["dtype"] = ctx.sizes.get("dtype")
        return Outcome(decisions=[decide("error", 0.0, at_most=1e-6)], claimed="toy", measured={"n": seen["n"]},
                       rule="error <= 1e-06", evidence="toy")

    return toy, seen


def test_the_experiment_reads_its_declared_sizes_for_the_runs_mode(scratch_claims, tmp_path):
    toy, seen = _declare("TOY-01", sizes={"full": {"n": 4096, "dtype": "float64"}, "quick": {"n": 256}})
    toy(RunContext(quick=False, device=torch.device("cpu"), figures_dir=tmp_path))
    assert seen == {"n": 4096, "dtype": "float64"}
    toy(RunContext(quick=True, device=torch.device("cpu"), figures_dir=tmp_path))
    assert seen == {"n": 256, "dtype": "float64"}  # a size without a quick value keeps its full one


def test_a_quick_run_at_another_size_is_unjudged_and_names_the_size(scratch_claims, tmp_path):
    _declare("TOY-01", sizes={"full": {"n": 4096}, "quick": {"n": 256}})
    full, = run_claims(["TOY-01"], quick=False, device="cpu", figures_dir=tmp_path)
    quick, = run_claims(["TOY-01"], quick=True, device="cpu", figures_dir=tmp_path)
    assert full["verdict"] == "holds" and full["sizes"] == {"n": 4096} and "unjudged_reason" not in full
    assert quick["verdict"] == "unjudged" and quick["quick_verdict_withheld"] == "holds"
    assert quick["measured_at_other_sizes"] == {"n": {"full": 4096, "quick": 256}}
    assert "n 256 instead of 4096" in quick["unjudged_reason"]


def test_a_quick_run_at_the_claims_own_size_is_judged(scratch_claims, tmp_path):
    _declare("TOY-01", sizes={"full": {"n": 512}, "quick": {"n": 512}})
    quick, = run_claims(["TOY-01"], quick=True, device="cpu", figures_dir=tmp_path)
    assert quick["verdict"] == "holds" and "measured_at_other_sizes" not in quick


def test_a_size_free_rule_declared_quick_judged_is_judged_at_quick_sizes(scratch_claims, tmp_path):
    _declare("TOY-01", sizes={"full": {"n": 4096}, "quick": {"n": 256}}, quick_judged=True)
    quick, = run_claims(["TOY-01"], quick=True, device="cpu", figures_dir=tmp_path)
    assert quick["verdict"] == "holds"


def test_a_claim_that_needs_float64_is_not_checkable_without_it_before_it_runs(scratch_claims, tmp_path):
    toy, seen = _declare("TOY-01", sizes={"full": {"n": 8}}, needs=("float64",))
    outcome = toy(RunContext(quick=True, device=torch.device("mps"), figures_dir=tmp_path))
    assert outcome.verdict == "not-checkable-here" and "float64" in outcome.evidence and not seen
    assert declaration("TOY-01").needs == ("float64",)


def test_reading_an_undeclared_size_names_the_declared_ones(scratch_claims, tmp_path):
    @experiment("TOY-02", text="toy", source="tests", sizes={"full": {"n": 8}})
    def toy(ctx):
        return ctx.sizes["m"]

    with pytest.raises(KeyError, match=r"'m' is not declared.*\['n'\]"):
        toy(RunContext(quick=False, device=torch.device("cpu"), figures_dir=tmp_path))


@pytest.mark.parametrize("sizes, error", [
    ({"quick": {"n": 1}}, TypeError),  # no full sizes: what does the claim speak of?
    ({"full": {"n": 1}, "fast": {"n": 1}}, TypeError),
    ({"full": {"n": 1}, "quick": {"m": 1}}, ValueError),  # a quick size without a full one
    ([("n", 1)], TypeError),
])
def test_malformed_sizes_are_refused_with_what_was_expected(scratch_claims, sizes, error):
    with pytest.raises(error, match="sizes"):
        experiment("TOY-03", text="toy", source="tests", sizes=sizes)


def test_an_unknown_need_is_refused(scratch_claims):
    with pytest.raises(ValueError, match="needs"):
        experiment("TOY-04", text="toy", source="tests", needs=("bfloat17",))


def test_the_documents_declare_sizes_needs_and_timing_where_they_measure():
    # Every built-in claim is declared with its experiment; the float64 ones say so in the declaration, and the
    # claim tests read these declarations instead of keeping lists.
    from reprobench.claims.experiment import load_experiments

    ids = [cid for cid in load_experiments() if DECLARED_BY.get(cid, "").startswith("reprobench_documents")]
    assert len(ids) >= 50
    assert any(declaration(cid).needs == ("float64",) for cid in ids)
    assert any(declaration(cid).timed for cid in ids)


def test_sizes_read_by_one_claim_do_not_mark_the_next(scratch_claims, tmp_path, monkeypatch):
    # The runner shares one context across claims; a claim whose experiment is not wrapped by a declaration
    # (a plain function) must not inherit the sizes the claim before it read at other values.
    toy, _ = _declare("TOY-01", sizes={"full": {"n": 4096}, "quick": {"n": 256}})

    def plain(ctx):
        return Outcome(decisions=[decide("error", 0.0, at_most=1e-6)], claimed="toy", measured={},
                       rule="error <= 1e-06", evidence="toy")

    experiment("TOY-05", text="toy", source="tests")(plain)  # in the ledger; the runner gets the bare function
    monkeypatch.setattr("reprobench.claims.runner.load_experiments", lambda: {"TOY-01": toy, "TOY-05": plain})
    first, second = run_claims(["TOY-01", "TOY-05"], quick=True, device="cpu", figures_dir=tmp_path)
    assert first["verdict"] == "unjudged" and second["verdict"] == "holds"
