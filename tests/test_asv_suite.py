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

def _tracks(suite) -> dict:
    return {name: getattr(suite, name) for name in dir(suite) if name.startswith("track_")}


def test_claims_suite_has_one_track_per_declared_claim():
    from reprobench.claims.experiment import declaration, load_experiments
    from reprobench.claims.ledger import CLAIM_TEXTS

    claims = importlib.import_module("suites.asv.claims")
    untimed, timed = _tracks(claims.Claims), _tracks(claims.ClaimTimings)
    assert not set(untimed) & set(timed), "each claim is tracked once"
    tracks = {**untimed, **timed}
    assert set(tracks) == {f"track_{cid.replace('-', '_')}" for cid in load_experiments()}
    reported = claims.reported_headlines()
    for claim_id in load_experiments():
        name = f"track_{claim_id.replace('-', '_')}"
        assert (name in timed) == declaration(claim_id).timed, f"{claim_id}: in the class its declaration names"
        track = tracks[name]
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


def _toy_declarations(monkeypatch, claims, timed_ids, sizes=None):
    """Declare `timed_ids` timed (and `sizes`: claim ID -> (full, quick)) for the suite, whatever the study says."""
    from reprobench.claims.experiment import Declaration

    sizes = sizes or {}

    def declaration(claim_id):
        full, quick = sizes.get(claim_id, ({}, {}))
        return Declaration(timed=claim_id in timed_ids, full_sizes=full, quick_sizes=quick)
    monkeypatch.setattr(claims, "declaration", declaration)


def test_timed_claims_get_their_own_class_which_bench_claims_does_not_select(monkeypatch):
    from asv.benchmarks import Benchmarks

    claims = importlib.import_module("suites.asv.claims")
    timed_id, untimed_id = claims.CLAIM_IDS[:2]
    _toy_declarations(monkeypatch, claims, {timed_id})
    monkeypatch.setattr(claims, "Claims", type("Claims", (), {}))
    monkeypatch.setattr(claims, "ClaimTimings", type("ClaimTimings", (), {}))
    claims.add_tracks([timed_id, untimed_id], claims._HEADLINES)
    timed_name, untimed_name = (f"track_{cid.replace('-', '_')}" for cid in (timed_id, untimed_id))
    assert set(_tracks(claims.Claims)) == {untimed_name}
    assert set(_tracks(claims.ClaimTimings)) == {timed_name}
    assert getattr(claims.ClaimTimings, timed_name).__qualname__ == f"ClaimTimings.{timed_name}"

    # asv's own selection: `--bench` is a regular expression searched in claims.<Class>.track_<ID>
    discovered = [{"name": f"claims.{suite.__name__}.{name}", "params": []}
                  for suite in (claims.Claims, claims.ClaimTimings) for name in _tracks(suite)]
    conf = type("Conf", (), {"benchmark_dir": "suites/asv"})()
    assert set(Benchmarks(conf, discovered, regex=["Claims"])) == {f"claims.Claims.{untimed_name}"}
    assert set(Benchmarks(conf, discovered, regex=["ClaimTimings"])) == {f"claims.ClaimTimings.{timed_name}"}


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


def test_each_class_runs_its_own_claims_once_at_the_size_their_headline_calls_for(monkeypatch):
    from reprobench.claims import Estimate

    claims = importlib.import_module("suites.asv.claims")
    exact_id, stat_id, timed_id, timed_exact_id = claims.CLAIM_IDS[:4]
    _toy_declarations(monkeypatch, claims, {timed_id, timed_exact_id})
    monkeypatch.setattr(claims, "_HEADLINES", {exact_id: {"exact": True}, timed_exact_id: {"exact": True}})
    calls = {cid: [] for cid in (exact_id, stat_id, timed_id, timed_exact_id)}
    fakes = {cid: _fake_experiment(lambda ctx: 3.0, calls[cid]) for cid in (exact_id, stat_id, timed_exact_id)}
    fakes[timed_id] = _fake_experiment(lambda ctx: Estimate(2.0, 1.5, 2.5, 0.95, 7, "m"), calls[timed_id])
    monkeypatch.setattr(claims, "load_experiments", lambda: fakes)

    assert set(claims.Claims().setup_cache()) == {exact_id, stat_id}
    # exact in the report: full size at once; not: quick, then full because its headline came out exact
    assert calls == {exact_id: [False], stat_id: [True, False], timed_id: [], timed_exact_id: []}
    cache = claims.ClaimTimings().setup_cache()
    assert set(cache) == {timed_id, timed_exact_id}
    assert calls[timed_id] == [True] and cache[timed_id]["size"] == "quick"
    assert calls[timed_exact_id] == [False] and cache[timed_exact_id]["size"] == "full"


def _sized_experiment(calls, budgets):
    """An exact headline computed from the declared size n, reading nothing else of the context."""
    from reprobench.claims import Outcome, decide

    def run(ctx):
        n = ctx.sizes["n"]
        calls.append(n)
        budgets.append(ctx.decision_budget_s)
        return Outcome(claimed="c", measured={}, rule="r", evidence="e", decisions=[decide("q", float(n), at_least=1)])
    return run


def test_a_quick_run_is_repeated_at_full_size_only_when_it_read_a_size_that_differs(monkeypatch):
    claims = importlib.import_module("suites.asv.claims")
    same_id, other_id = claims.CLAIM_IDS[:2]
    _toy_declarations(monkeypatch, claims, set(), sizes={same_id: ({"n": 64}, {"n": 64}),
                                                         other_id: ({"n": 64}, {"n": 8})})
    calls, budgets = [], []
    same = claims.measure_headline(_sized_experiment(calls, budgets), same_id)
    assert (same["point"], same["size"], calls) == (64.0, "full", [64])  # the quick run was the full-size run
    calls = []
    other = claims.measure_headline(_sized_experiment(calls, budgets), other_id)
    assert (other["point"], other["size"], calls) == (64.0, "full", [8, 64])
    # a full-size run is made for its deterministic headline: its timed decisions get the quick budget
    assert budgets == [claims.QUICK_DECISION_BUDGET_S] * 3
