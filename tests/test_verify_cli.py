"""`reprobench verify` and `compare` as a user meets them: exit codes, messages, files, Ctrl-C.

Subprocesses run tests/verify_driver.py, which swaps in instant fake experiments."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("verify_driver.py")


def run(*args, env=None, timeout=120):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(DRIVER), *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def one_line_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("only", ["", ",", " , "])
def test_an_empty_selection_is_an_error(tmp_path, only):
    one_line_error(run("verify", "--only", only, "--out", str(tmp_path)), "selects no claim")
    assert not (tmp_path / "claims.json").exists()


def test_an_unavailable_device_is_refused_before_anything_runs(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal is for machines without it")
    one_line_error(run("verify", "--device", "cuda", "--only", "EFF-01", "--out", str(tmp_path)), "CUDA is not available")
    one_line_error(run("verify", "--device", "tpu9", "--only", "EFF-01", "--out", str(tmp_path)), "not a torch device")
    assert not (tmp_path / "claims.json").exists()


def test_unwritable_out_and_corrupt_report_are_one_line_errors(tmp_path):
    one_line_error(run("verify", "--only", "EFF-01", "--out", "/proc/forbidden"), "--out /proc/forbidden")
    (tmp_path / "claims.json").write_text("{half a report")
    one_line_error(run("verify", "--only", "EFF-01", "--out", str(tmp_path)), "not a readable claims report")
    assert (tmp_path / "claims.json").read_text() == "{half a report"  # left for the user to look at


def test_a_new_report_holds_the_claims_it_ran_and_a_merge_says_so(tmp_path):
    first = run("verify", "--only", "EFF-01", "--out", str(tmp_path))
    assert first.returncode == 0, first.stderr
    data = json.loads((tmp_path / "claims.json").read_text())
    assert [c["id"] for c in data["claims"]] == ["EFF-01"] and not data["merged"]
    assert "[1/1] EFF-01: holds" in first.stdout  # one line per claim when stdout is not a terminal
    second = run("verify", "--only", "DW-01", "--quick", "--out", str(tmp_path))
    assert second.returncode == 0, second.stderr
    data = json.loads((tmp_path / "claims.json").read_text())
    by_id = {c["id"]: c for c in data["claims"]}
    assert set(by_id) == {"EFF-01", "DW-01"} and data["merged"] and len(data["runs"]) == 2
    assert by_id["EFF-01"]["provenance"]["quick"] is False and by_id["DW-01"]["provenance"]["quick"] is True
    assert "Merged report" in (tmp_path / "claims.md").read_text()
    assert "against the report it replaces" in second.stdout


def test_verify_prints_what_changed_against_the_report_it_replaces(tmp_path):
    assert run("verify", "--only", "EFF-01", "--out", str(tmp_path)).returncode == 0
    changed = run("verify", "--only", "EFF-01", "--out", str(tmp_path), env={"FAKE_VERDICT": "fails"})
    assert "EFF-01  holds -> fails  REGRESSION" in changed.stdout


def _default_signal_dispositions():
    """In the child, before exec: SIGINT and SIGTERM as a shell gives them to a foreground command. A test run
    started with SIGINT ignored (nohup, a background job, some CI runners) would otherwise hand that on, and
    the child's Python would keep ignoring the Ctrl-C this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python then installs its KeyboardInterrupt handler at startup
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("signum,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_exits_130_with_one_line_and_leaves_no_debris(tmp_path, signum, code, word):
    """Ctrl-C (SIGINT) and a cancelled CI job (SIGTERM) end verify the same way: one line, 128 + the signal,
    the last good report untouched, no scratch directory left."""
    assert run("verify", "--only", "DW-01", "--out", str(tmp_path)).returncode == 0
    good = (tmp_path / "claims.json").read_text()
    (tmp_path / ".figures-999999999-stale").mkdir()  # left by a run that died long ago
    proc = subprocess.Popen([sys.executable, str(DRIVER), "verify", "--only", "EFF-01", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FAKE_SLEEP": "1"}, preexec_fn=_default_signal_dispositions)
    assert proc.stdout.readline().strip() == "started"
    assert [p for p in tmp_path.glob(".figures-*") if "999999999" not in p.name], "the run has its scratch directory"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, (proc.returncode, err)
    assert len(err.strip().splitlines()) == 1 and word in err and "Traceback" not in err, err
    assert (tmp_path / "claims.json").read_text() == good
    assert not list(tmp_path.glob(".figures-*")), list(tmp_path.iterdir())


def test_compare_gates_on_holds_to_fails(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    assert run("verify", "--only", "EFF", "--out", str(old)).returncode == 0
    assert run("verify", "--only", "EFF", "--out", str(new), env={"FAKE_VERDICT": "fails"}).returncode == 0
    same = run("compare", str(old), str(old))
    assert same.returncode == 0 and "no verdict changes" in same.stdout and "same environment" in same.stdout
    worse = run("compare", str(old), str(new / "claims.json"))
    assert worse.returncode == 1, worse.stdout
    assert "EFF-01  holds -> fails  REGRESSION" in worse.stdout and "2 claim(s) no longer hold" in worse.stdout
    assert "measured quantities that changed" in worse.stdout and "(deterministic)" in worse.stdout  # 2.0 vs 0.5, exact
    better = run("compare", str(new), str(old))
    assert better.returncode == 0 and "fails -> holds" in better.stdout
    one_line_error(run("compare", str(old), str(tmp_path / "nowhere")), "no report at")
