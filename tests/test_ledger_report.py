"""The ledger is the claims declared with their experiments, rules compute verdicts, and the report is
written atomically."""
import json
import os

import pytest

from reprobench.claims import report as report_module
from reprobench.claims.experiment import Outcome, load_experiments
from reprobench.claims.ledger import CLAIM_ID_PATTERN, CLAIM_TEXTS, DECLARED_BY
from reprobench.claims.report import ReportError, build_report, load_report, merge_entries, render_markdown, write_report
from reprobench.claims.runner import entry, parse_ids, run_claims, scratch_figures_dir
from reprobench.measure.stats import Estimate, decide

STUDY = "reprobench_documents."  # the five documents' study, loaded by tests/conftest.py


def test_each_claim_is_declared_once_with_the_experiment_that_measures_it():
    """The expected claims are whatever the study declares: no count or list is kept here, so adding a claim
    touches no test. Each is declared by its experiment's own module, so none is reported not-implemented,
    and the folder experiments/<family>/ holds the claims <FAMILY>-NN."""
    experiments = load_experiments()
    declared = {cid for cid, module in DECLARED_BY.items() if module.startswith(STUDY)}
    measured = {cid for cid, fn in experiments.items() if fn.__module__.startswith(STUDY)}
    assert declared, "the study declared no claim: it did not load"
    assert declared == measured, (f"declared without an experiment: {sorted(declared - measured)}; "
                                  f"measured but declared elsewhere: {sorted(measured - declared)}")
    for cid in sorted(declared):
        module = experiments[cid].__module__
        assert CLAIM_ID_PATTERN.match(cid) and cid in CLAIM_TEXTS
        assert DECLARED_BY[cid] == module, f"{cid} is declared by {DECLARED_BY[cid]}, measured in {module}"
        assert module.split(".")[-2] == cid.split("-")[0].lower(), f"{cid} is measured in {module}"


def _holds(**kw):
    return Outcome(claimed="c", measured=kw.pop("measured", {}), rule="r", evidence=kw.pop("evidence", "e"),
                   decisions=[decide("x", 2.0, at_least=1.0)], **kw)


def _fails(**kw):
    return Outcome(claimed="c", measured=kw.pop("measured", {}), rule="r", evidence=kw.pop("evidence", "e"),
                   decisions=[decide("x", 0.5, at_least=1.0)], **kw)


def test_outcome_derives_its_verdict_from_decisions():
    interval = Estimate(point=3.0, low=2.5, high=3.5, confidence=0.95, samples=7, method="m")
    assert _holds().verdict == "holds" and _fails().verdict == "fails"
    mixed = Outcome(claimed="c", measured={}, rule="r", evidence="e",
                    decisions=[decide("a", 2.0, at_least=1.0), decide("b", interval, at_least=3.0)])
    assert mixed.verdict == "inconclusive"  # an undecided part keeps the claim from holds
    with pytest.raises(ValueError, match="leave verdict=None"):
        Outcome(verdict="holds", claimed="c", measured={}, rule="r", evidence="e", decisions=[decide("a", 0, at_most=1)])
    with pytest.raises(ValueError, match="give decisions"):
        Outcome(claimed="c", measured={}, rule="r", evidence="e")
    with pytest.raises(ValueError, match="headline"):
        Outcome(claimed="c", measured={}, rule="r", evidence="e", decisions=[decide("a", 0, at_most=1)], headline="b")
    not_here = Outcome(verdict="not-checkable-here", claimed="c", measured={}, rule="r", evidence="needs a GPU",
                       decisions=[decide("a", 0, at_most=1)])
    assert not_here.verdict == "not-checkable-here"


def test_outcome_rejects_unknown_verdicts_and_tensors():
    import torch
    with pytest.raises(ValueError, match="verdict"):
        Outcome(verdict="mostly", claimed="", measured={}, rule="", evidence="")
    with pytest.raises(TypeError, match="tensor"):
        Outcome(claimed="", measured={"x": torch.tensor(1.0)}, rule="", evidence="", decisions=[decide("a", 0, at_most=1)])


def test_parse_ids_accepts_ids_and_prefixes():
    assert parse_ids("EFF-01") == ["EFF-01"]
    family = sorted(cid for cid in CLAIM_TEXTS if cid.startswith("EQ-"))
    assert family and parse_ids("EQ") == family
    assert parse_ids(None) == sorted(CLAIM_TEXTS)
    with pytest.raises(ValueError, match="'E'"):  # a prefix is a whole family: 'E' selects neither EQ nor EFF
        parse_ids("E")
    with pytest.raises(ValueError, match="eff7"):
        parse_ids("eff7")
    for empty in ("", ",", " , "):
        with pytest.raises(ValueError, match="selects no claim"):
            parse_ids(empty)


def test_missing_experiment_reports_not_implemented(tmp_path, monkeypatch):
    monkeypatch.setattr("reprobench.claims.runner.load_experiments", lambda: {})
    entries = run_claims(["DW-01"], quick=True, device="cpu", figures_dir=tmp_path)
    assert entries[0]["verdict"] == "not-implemented"


def test_crashing_experiment_becomes_error_not_lost_report(tmp_path, monkeypatch):
    def boom(ctx):
        raise RuntimeError("kaput")
    monkeypatch.setattr("reprobench.claims.runner.load_experiments", lambda: {"DW-01": boom})
    entries = run_claims(["DW-01"], quick=True, device="cpu", figures_dir=tmp_path)
    assert entries[0]["verdict"] == "error" and "kaput" in entries[0]["evidence"]


def test_every_experiment_starts_on_the_measurement_threads(tmp_path, monkeypatch):
    import torch

    seen = []

    def changes_threads(ctx):
        seen.append(torch.get_num_threads())
        torch.set_num_threads(2)
        return _holds()

    monkeypatch.setattr("reprobench.claims.runner.MEASURE_THREADS", 1)
    monkeypatch.setattr("reprobench.claims.runner.load_experiments", lambda: {"DW-01": changes_threads,
                                                                              "DW-02": changes_threads})
    before = torch.get_num_threads()
    run_claims(["DW-01", "DW-02"], quick=True, device="cpu", figures_dir=tmp_path)
    assert seen == [1, 1]  # the second starts on 1 thread although the first left 2
    assert torch.get_num_threads() == before  # and the caller's setting comes back


ENV = {"torch_version": "x", "git_commit": "abc123", "git_dirty": False, "timestamp": "t", "device": "cpu",
       "fingerprint": "f00"}


def _report(entries, previous=None, run_id="run-1", quick=True):
    return build_report(entries, previous=previous, environment=dict(ENV), quick=quick, run_id=run_id,
                        generated_at="t")


def test_report_schema_and_markdown(tmp_path):
    rep = _report([entry("EFF-07", _fails(measured={"ratio": 0.5}, figures=["f.png"]), 1.0)])
    write_report(tmp_path, rep, None)
    data = json.loads((tmp_path / "claims.json").read_text())
    assert data["schema"] == 2 and [c["id"] for c in data["claims"]] == ["EFF-07"]  # the claims it ran, no more
    e = data["claims"][0]
    assert {"id", "verdict", "claimed", "measured", "decisions", "headline", "rule", "evidence", "figures",
            "deviations", "provenance"} <= set(e)
    assert set(e["decisions"][0]) >= {"quantity", "estimate", "low", "high", "confidence", "samples", "threshold",
                                      "direction", "outcome"}
    assert e["figures"] == ["figures/f.png"] and e["provenance"]["commit"] == "abc123"
    md = (tmp_path / "claims.md").read_text()
    assert "**1 fails**" in md
    assert "| [EFF-07](#eff-07) | fails | x: 0.5 vs ≥ 1 | c |" in md  # the one-screen summary row
    assert "### EFF-07" in md  # and the evidence section below it


def test_summary_shows_interval_of_the_headline_decision():
    interval = Estimate(point=3.1, low=2.9, high=3.3, confidence=0.95, samples=7, method="m")
    outcome = Outcome(claimed="c", measured={}, rule="r", evidence="e", headline="speedup",
                      decisions=[decide("flops", 4.0, at_least=3.0), decide("speedup", interval, at_least=3.0)])
    md = render_markdown(_report([entry("EFF-01", outcome, 0)]))
    assert "| inconclusive | speedup: 3.1 [2.9, 3.3] vs ≥ 3 (+1) |" in md


def test_partial_run_merges_into_previous_report_with_provenance(tmp_path):
    write_report(tmp_path, _report([entry("EFF-01", _holds(evidence="first"), 0)], run_id="run-1"), None)
    merged = _report([entry("EFF-07", _fails(evidence="second"), 0)], previous=load_report(tmp_path),
                     run_id="run-2", quick=False)
    by_id = {c["id"]: c for c in merged["claims"]}
    assert by_id["EFF-01"]["evidence"] == "first" and by_id["EFF-07"]["evidence"] == "second"
    assert by_id["EFF-01"]["provenance"]["run"] == "run-1" and by_id["EFF-01"]["provenance"]["quick"] is True
    assert by_id["EFF-07"]["provenance"]["run"] == "run-2" and by_id["EFF-07"]["provenance"]["quick"] is False
    assert merged["merged"] and [r["run"] for r in merged["runs"]] == ["run-1", "run-2"]
    assert "Merged report" in render_markdown(merged)
    rerun = _report([entry("EFF-01", _holds(), 0)], previous=merged, run_id="run-3")
    assert [r["run"] for r in rerun["runs"]] == ["run-2", "run-3"]  # run-1 no longer provides any claim


def test_corrupt_report_is_a_clear_error(tmp_path):
    (tmp_path / "claims.json").write_text("{not json")
    with pytest.raises(ReportError, match="not a readable claims report"):
        load_report(tmp_path)
    (tmp_path / "claims.json").write_text("[1, 2]")
    with pytest.raises(ReportError, match="no 'claims' list"):
        load_report(tmp_path)


def test_report_files_get_the_users_normal_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_report(tmp_path, _report([entry("EFF-01", _holds(), 0)]), None)
    finally:
        os.umask(old)
    assert (tmp_path / "claims.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "claims.md").stat().st_mode & 0o777 == 0o644


def test_stale_scratch_directories_are_removed(tmp_path):
    stale = tmp_path / ".figures-999999999-abc"  # no such pid
    stale.mkdir()
    fresh = scratch_figures_dir(tmp_path)
    assert not stale.exists() and fresh.exists()


def test_figures_are_stamped_with_the_verdict(tmp_path, monkeypatch):
    from PIL import Image

    def draws(ctx):
        Image.new("RGB", (200, 100), "white").save(ctx.figure_path("plot.png"))
        return _fails(figures=["plot.png"])

    monkeypatch.setattr("reprobench.claims.runner.load_experiments", lambda: {"DW-01": draws})
    run_claims(["DW-01"], quick=True, device="cpu", figures_dir=tmp_path)
    with Image.open(tmp_path / "plot.png") as image:
        assert image.height > 100  # a banner was added above the figure
        banner = image.crop((0, 0, 200, 28)).convert("RGB")
        pixels = [banner.getpixel((x, y)) for x in range(200) for y in range(28)]
        assert any(p[0] > 120 and p[1] < 60 for p in pixels)  # red text: fails


def test_interrupted_write_leaves_the_last_good_report(tmp_path, monkeypatch):
    write_report(tmp_path, _report([entry("EFF-01", _holds(evidence="good"), 0)]), None)
    before = (tmp_path / "claims.json").read_text()

    real_fsync = os.fsync

    def interrupted(fd):
        raise KeyboardInterrupt  # the user hits Ctrl-C mid-write
    monkeypatch.setattr(report_module.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_report(tmp_path, _report([entry("EFF-01", _fails(evidence="bad"), 0)]), None)
    monkeypatch.setattr(report_module.os, "fsync", real_fsync)
    assert (tmp_path / "claims.json").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".claims")], "temporary files left behind"


def test_markdown_escapes_pipes():
    rep = _report([entry("EFF-01", _holds(measured={"a|b": 1}, evidence="e"), 0)])
    rep["claims"][0]["claimed"] = "x | y"  # a pipe inside a table cell must not split the row
    assert "| x \\| y |" in render_markdown(rep)
