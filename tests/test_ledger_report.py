"""The ledger covers CLAIMS.md, rules compute verdicts, and the report is written atomically."""
import json
import os
from pathlib import Path

import pytest

from reprobench.claims import report as report_module
from reprobench.claims.experiment import Outcome, at_least, combine, exponent_matches, within_factor
from reprobench.claims.ledger import CLAIM_TEXTS
from reprobench.claims.report import load_report, merge_entries, render_markdown, write_report
from reprobench.claims.runner import entry, parse_ids, run_claims

CLAIMS_MD = Path(__file__).resolve().parents[2] / "shared" / "CLAIMS.md"


def test_ledger_has_sixty_claims_with_canonical_ids():
    assert len(CLAIM_TEXTS) == 60
    families = {cid.split("-")[0] for cid in CLAIM_TEXTS}
    assert families == {"DW", "DCAL", "FAM", "ROPE", "ZOO", "EQ", "EFF"}


@pytest.mark.skipif(not CLAIMS_MD.exists(), reason="shared/CLAIMS.md not beside this checkout")
def test_ledger_matches_claims_md():
    import re
    ids = re.findall(r"^- ((?:DW|DCAL|FAM|ROPE|ZOO|EQ|EFF)-\d\d) ", CLAIMS_MD.read_text(), flags=re.M)
    assert sorted(ids) == sorted(CLAIM_TEXTS)


def test_rules():
    assert at_least(2.5, 3.0, 0.8) == "holds" and at_least(2.3, 3.0, 0.8) == "fails"
    assert within_factor(0.15, 1.5, 2) == "fails" and within_factor(1.0, 1.5, 2) == "holds"
    assert exponent_matches(1.1, 1.0, 0.15) == "holds" and exponent_matches(1.5, 1.0) == "fails"
    assert combine("holds", "holds") == "holds"
    assert combine("holds", "fails") == "partial"
    assert combine("fails") == "fails"
    assert combine("not-checkable-here") == "not-checkable-here"


def test_outcome_rejects_unknown_verdicts_and_tensors():
    import torch
    with pytest.raises(ValueError, match="verdict"):
        Outcome(verdict="mostly", claimed="", measured={}, rule="", evidence="")
    with pytest.raises(TypeError, match="tensor"):
        Outcome(verdict="holds", claimed="", measured={"x": torch.tensor(1.0)}, rule="", evidence="")


def test_parse_ids_accepts_ids_and_prefixes():
    assert parse_ids("EFF-01") == ["EFF-01"]
    assert parse_ids("EQ") == [f"EQ-{i:02d}" for i in range(1, 11)]
    assert len(parse_ids(None)) == 60
    with pytest.raises(ValueError, match="eff7"):
        parse_ids("eff7")


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
        return Outcome("holds", "c", {}, "r", "e")

    monkeypatch.setattr("reprobench.claims.runner.MEASURE_THREADS", 1)
    monkeypatch.setattr("reprobench.claims.runner.load_experiments", lambda: {"DW-01": changes_threads,
                                                                        "DW-02": changes_threads})
    before = torch.get_num_threads()
    run_claims(["DW-01", "DW-02"], quick=True, device="cpu", figures_dir=tmp_path)
    assert seen == [1, 1]  # the second starts on 1 thread although the first left 2
    assert torch.get_num_threads() == before  # and the caller's setting comes back


def _report(entries):
    return {"generated_at": "t", "quick": True, "environment": {"torch_version": "x"},
            "claims": merge_entries(None, entries)}


def test_report_schema_and_markdown(tmp_path):
    outcome = Outcome(verdict="fails", claimed="c", measured={"ratio": 0.5}, rule="r", evidence="e", figures=["f.png"])
    rep = _report([entry("EFF-07", outcome, 1.0)])
    write_report(tmp_path, rep, None)
    data = json.loads((tmp_path / "claims.json").read_text())
    assert [c["id"] for c in data["claims"]] == sorted(CLAIM_TEXTS)
    e = next(c for c in data["claims"] if c["id"] == "EFF-07")
    assert {"id", "verdict", "claimed", "measured", "rule", "evidence", "figures", "deviations"} <= set(e)
    assert e["figures"] == ["figures/f.png"]
    md = (tmp_path / "claims.md").read_text()
    assert "**1 fails**" in md and "**59 not-implemented**" in md
    assert "| EFF-07 | fails | c |" in md


def test_partial_run_merges_into_previous_report(tmp_path):
    first = Outcome(verdict="holds", claimed="c", measured={}, rule="r", evidence="first")
    write_report(tmp_path, _report([entry("EFF-01", first, 0)]), None)
    second = Outcome(verdict="fails", claimed="c", measured={}, rule="r", evidence="second")
    merged = merge_entries(load_report(tmp_path), [entry("EFF-07", second, 0)])
    by_id = {c["id"]: c for c in merged}
    assert by_id["EFF-01"]["evidence"] == "first" and by_id["EFF-07"]["evidence"] == "second"


def test_interrupted_write_leaves_the_last_good_report(tmp_path, monkeypatch):
    good = Outcome(verdict="holds", claimed="c", measured={}, rule="r", evidence="good")
    write_report(tmp_path, _report([entry("EFF-01", good, 0)]), None)
    before = (tmp_path / "claims.json").read_text()

    real_fsync = os.fsync

    def interrupted(fd):
        raise KeyboardInterrupt  # the user hits Ctrl-C mid-write
    monkeypatch.setattr(report_module.os, "fsync", interrupted)
    bad = Outcome(verdict="fails", claimed="c", measured={}, rule="r", evidence="bad")
    with pytest.raises(KeyboardInterrupt):
        write_report(tmp_path, _report([entry("EFF-01", bad, 0)]), None)
    monkeypatch.setattr(report_module.os, "fsync", real_fsync)
    assert (tmp_path / "claims.json").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".claims")], "temporary files left behind"


def test_markdown_escapes_pipes():
    rep = _report([entry("EFF-01", Outcome(verdict="holds", claimed="c", measured={"a|b": 1}, rule="x | y",
                                           evidence="e"), 0)])
    assert "x \\| y" in render_markdown(rep)
