"""`reprobench doctor`: end to end on the CPU with a tiny selection, and its parts (a step past its
time limit is stopped with its whole process group; the first error line; refusals)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reprobench.cli import main
from reprobench.doctor import DEVICE_TESTS, first_error_line, run_step


def test_doctor_runs_end_to_end_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "doctor"
    rc = main(["doctor", "--device", "cpu", "--out", str(out), "--components", "attention.dense",
               "--bench", "attention.dense", "--bench-size", "16", "--claims", "ROPE-01", "--limit-s", "300"])
    summary = json.loads((out / "doctor.json").read_text())
    assert rc == 0 and summary["ok"], (out / "doctor.txt").read_text()
    assert [s["step"] for s in summary["steps"]] == ["tests", "bench", "verify"]
    assert all(s["rc"] == 0 and not s["timed_out"] and s["first_error"] == "" for s in summary["steps"])
    assert summary["environment"]["torch"] == torch.__version__ and summary["device"] == "cpu"
    tests_log = (out / "tests.log").read_text()
    assert "--reprobench-device cpu" in tests_log and " passed" in tests_log and "failed" not in tests_log
    assert json.loads((out / "bench.json").read_text())  # the bench rows
    assert (out / "verify" / "claims.json").exists()
    table = (out / "doctor.txt").read_text().splitlines()
    assert table[0].split() == ["step", "rc", "seconds", "first", "error"] and len(table) == 4
    assert "all steps passed" in capsys.readouterr().out


def test_a_step_past_its_limit_is_stopped_with_its_children(tmp_path):
    child = ("import subprocess, sys, time; "
             "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
             "print('grandchild', p.pid, flush=True); time.sleep(120)")
    start = time.monotonic()
    result = run_step("slow", [sys.executable, "-c", child], limit_s=3, log_path=tmp_path / "slow.log", cwd=tmp_path)
    assert result.timed_out and result.rc is None and time.monotonic() - start < 60
    assert result.first_error.startswith("timed out after 3 s (stopped)")
    announced = [line for line in (tmp_path / "slow.log").read_text().splitlines() if line.startswith("grandchild ")]
    grandchild = int(announced[0].split()[1])
    status = Path(f"/proc/{grandchild}/status")
    deadline = time.monotonic() + 10
    while status.exists() and "State:\tZ" not in status.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not status.exists() or "State:\tZ" in status.read_text(), "the step's grandchild survived the stop"


def test_a_failing_step_reports_its_exit_code_and_first_error(tmp_path):
    command = [sys.executable, "-c", "print('working'); raise ValueError('boom: size must be > 0')"]
    result = run_step("broken", command, limit_s=60, log_path=tmp_path / "broken.log", cwd=tmp_path)
    assert result.rc == 1 and not result.timed_out
    assert result.first_error == "ValueError: boom: size must be > 0"


def test_first_error_line():
    pytest_output = "....F.\n=== short test summary info ===\nFAILED t.py::test_x[a-cpu] - AssertionError: no\n"
    assert first_error_line(pytest_output, 1) == "FAILED t.py::test_x[a-cpu] - AssertionError: no"
    assert first_error_line("reprobench bench: no component matches 'x.*'\n", 2) == \
        "reprobench bench: no component matches 'x.*'"
    assert first_error_line("all good\n", 0) == ""
    assert first_error_line("something odd\nlast words\n", 3) == "last words"
    assert first_error_line("", 3) == "(no output)"


def unusable_devices():
    devices = [("nonsense", "is not a torch device")]
    if not torch.cuda.is_available():
        devices.append(("cuda", "no CUDA device is available here"))
    return devices


@pytest.mark.parametrize("device,message", unusable_devices())
def test_an_unusable_device_is_refused_before_any_step(tmp_path, capsys, device, message):
    assert main(["doctor", "--device", device, "--out", str(tmp_path / "d")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "d").exists()


@pytest.mark.parametrize("argv,message", [(["--only", "tests,nap"], "expected comma-separated steps"),
                                          (["--limit-s", "0"], "expected seconds > 0")])
def test_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["doctor", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_pytest_device_option_parametrizes_the_device_tests_on_that_device(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--reprobench-components", "attention.dense", "--reprobench-device", "meta",
         "-k", DEVICE_TESTS, "--collect-only", "-q", "-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini"),
         "--rootdir", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    ids = [line for line in collected.stdout.splitlines() if "::test_" in line]
    assert collected.returncode == 0 and ids, collected.stdout + collected.stderr
    assert all("-meta-" in node for node in ids) and not any("-cpu-" in node for node in ids)
