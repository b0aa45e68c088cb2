"""The asv suite imports, covers every registered component, and its methods run."""
import importlib

import pytest

from reprobench.registry import list_components


def test_every_component_has_an_asv_benchmark():
    benchmarks = importlib.import_module("suites.asv.benchmarks")
    names = {name for suite in benchmarks._SUITES for name in suite.params[0]}
    assert names == {spec.name for spec in list_components()}
    assert not hasattr(benchmarks, "FamilySuite"), "the shared base must not be collected as a benchmark"
    cache_lines = {suite.setup_cache.__code__.co_firstlineno for suite in benchmarks._SUITES}
    assert len(cache_lines) == len(benchmarks._SUITES), "asv keys setup_cache by line: one definition per suite"


def test_suite_methods_run_on_one_component():
    benchmarks = importlib.import_module("suites.asv.benchmarks")
    suite = benchmarks.AttentionSuite()
    suite.setup({"attention.strided": True}, "attention.strided", "optimized")
    suite.time_forward(None, "attention.strided", "optimized")
    assert suite.track_peak_tensor_bytes(None, "attention.strided", "optimized") > 0
    assert suite.track_flops(None, "attention.strided", "optimized") > 0


# --- suites/asv/claims.py: one track per declared claim ------------------------------------------------------

def test_claims_suite_has_one_track_per_declared_claim():
    from reprobench.claims.experiment import load_experiments
    from reprobench.claims.ledger import CLAIM_TEXTS

    claims = importlib.import_module("suites.asv.claims")
    tracks = {name: getattr(claims.Claims, name) for name in dir(claims.Claims) if name.startswith("track_")}
    assert set(tracks) == {f"track_{cid.replace('-', '_')}" for cid in load_experiments()}
    reported = claims.reported_headlines()
    for claim_id in load_experiments():
        track = tracks[f"track_{claim_id.replace('-', '_')}"]
        assert CLAIM_TEXTS[claim_id][1] in track.__doc__, f"{claim_id}: the docstring states the claim"
        assert track.pretty_name.startswith(f"{claim_id}: ")
        assert claim_id in track.version
        headline = reported.get(claim_id)
        if headline is None:
            assert track.unit == "value"
        else:
            assert claims.describe_rule(headline) in track.pretty_name, f"{claim_id}: the name carries the rule"
            assert headline["rule"] in track.__doc__
            assert track.unit == claims.unit_of(headline["quantity"], headline["method"])


def test_claim_units_come_from_whole_words_of_the_quantity():
    unit_of = importlib.import_module("suites.asv.claims").unit_of
    assert unit_of("flop_exponent_in_n") == "exponent"
    assert unit_of("doc_max_norm_ratio_error") == "error"  # an error of a ratio is an error
    assert unit_of("largest_mean_share_of_flops_skipped") == "ratio"
    assert unit_of("eval_flops_added_by_pair") == "FLOPs"
    assert unit_of("gradcheck_failures") == "count"
    assert unit_of("default_configuration_rotates") == "value"  # "configuration" holds "ratio", not the word
    assert unit_of("time_ratio") == "ratio"
    assert unit_of("q", "median of paired round ratios, order-statistic interval") == "ratio"


def _fake_experiment(estimate_of, calls):
    from reprobench.claims import Outcome, decide

    def run(ctx):
        calls.append(ctx.quick)
        return Outcome(claimed="c", measured={}, rule="r", evidence="e",
                       decisions=[decide(f"q_{'quick' if ctx.quick else 'full'}", estimate_of(ctx), at_least=1)])
    return run


def test_exact_headlines_are_tracked_at_full_size_timed_ones_at_quick_size():
    from reprobench.claims import Estimate

    measure = importlib.import_module("suites.asv.claims").measure_headline
    calls = []
    exact = measure(_fake_experiment(lambda ctx: 8.0 if ctx.quick else 64.0, calls), "FAKE-1")
    assert (exact["point"], exact["quantity"], exact["size"], calls) == (64.0, "q_full", "full", [True, False])
    calls = []
    timed = measure(_fake_experiment(lambda ctx: Estimate(2.0, 1.5, 2.5, 0.95, 7, "m"), calls), "FAKE-1")
    assert (timed["point"], timed["quantity"], timed["size"], calls) == (2.0, "q_quick", "quick", [True])
    calls = []  # exact in the last report: straight to full size, no quick run first
    known = measure(_fake_experiment(lambda ctx: 8.0 if ctx.quick else 64.0, calls), "FAKE-1", exact_before=True)
    assert (known["point"], known["size"], calls) == (64.0, "full", [False])


def test_a_slow_or_broken_experiment_is_skipped_or_failed_not_fatal(monkeypatch):
    import time

    claims = importlib.import_module("suites.asv.claims")
    monkeypatch.setattr(claims, "RUN_BUDGET_S", 0.2)
    slow = claims.measure_headline(_fake_experiment(lambda ctx: time.sleep(5) or 1.0, []), "FAKE-1")
    assert "quick-size run took over 0.2 s (RUN_BUDGET_S)" in slow["skip"]
    slow_full = claims.measure_headline(_fake_experiment(lambda ctx: 1.0 if ctx.quick else time.sleep(5), []), "F-1")
    assert "full-size run took over 0.2 s" in slow_full["skip"]
    broken = claims.measure_headline(_fake_experiment(lambda ctx: 1 / 0, []), "FAKE-1")
    assert "ZeroDivisionError" in broken["error"]

    claim_id = claims.CLAIM_IDS[0]  # any generated track: its own setup reads the claim's cached result
    track = getattr(claims.Claims, f"track_{claim_id.replace('-', '_')}")
    with pytest.raises(NotImplementedError, match="why"):  # asv reports this as skipped
        track.setup({claim_id: {"skip": "why"}})
    with pytest.raises(RuntimeError, match="how"):  # and this as failed
        track.setup({claim_id: {"error": "how"}})
    measured = {"point": 0.5, "quantity": "q", "size": "quick", "seconds": 1.0}
    track.setup({claim_id: measured})
    assert track(None, {claim_id: measured}) == 0.5


def test_setup_cache_runs_each_claim_once_at_the_size_its_reported_headline_calls_for(monkeypatch):
    claims = importlib.import_module("suites.asv.claims")
    exact_id = next(cid for cid in claims.CLAIM_IDS if claims._HEADLINES.get(cid, {}).get("exact"))
    timed_id = next(cid for cid in claims.CLAIM_IDS if cid in claims._HEADLINES
                    and not claims._HEADLINES[cid]["exact"])
    calls = {exact_id: [], timed_id: []}
    fakes = {cid: _fake_experiment(lambda ctx: 3.0, calls[cid]) for cid in calls}
    monkeypatch.setattr(claims, "load_experiments", lambda: fakes)
    cache = claims.Claims().setup_cache()
    assert set(cache) == {exact_id, timed_id}
    assert calls == {exact_id: [False], timed_id: [True, False]}  # timed_id's fake is exact: rerun at full size
