"""`reprobench bench` and `reprobench profile` as a user runs them, in a subprocess:
bad arguments are refused in one line before any work, rows stream as cases complete and fit 80
columns off a terminal, and an implementation that would not fit in memory (or take too long) is
skipped with its reason instead of run. Tiny sizes only; nothing here is timed."""
import json
import os
import queue
import subprocess
import sys
import threading

import pytest

# Runs the CLI after replacing functions named on the command line in the modules that call them (the
# bench's table, the profile), e.g. the available-memory reading, so the memory rule can be exercised
# without filling the machine. Without patches nothing is imported before the CLI, so a refused argument
# costs no torch import.
DRIVER = r"""
import json, sys
patches = json.loads(sys.argv[1])
if "available_bytes" in patches:
    import reprobench.bench.table as table, reprobench.profile as profile
    for module in (table, profile):
        module.available_bytes = lambda device: patches["available_bytes"]
if patches.get("gate_after_first_case"):
    import reprobench.bench.table as table
    run_one, seen = table._estimate_and_run, []
    def gated(*args, **kwargs):
        if seen:  # hold the second case until the test has read the first one's rows
            sys.stdin.readline()
        seen.append(1)
        return run_one(*args, **kwargs)
    table._estimate_and_run = gated
from reprobench.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _env(columns: int = 80) -> dict:
    """A user's pipe: COLUMNS=80 and Python's default block buffering (no PYTHONUNBUFFERED), so rows
    reach the pipe only if the bench flushes them."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    return {**env, "COLUMNS": str(columns)}


def reprobench(*args: str, patches: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", DRIVER, json.dumps(patches or {}), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_env(), stdin=subprocess.DEVNULL)


def assert_one_line_refusal(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert result.stdout == "", "nothing may run (or print) before the arguments are checked"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("args, needle", [
    (("bench", "attention.zoo_base", "--size", "-5"), "--size"),
    (("bench", "attention.zoo_base", "--size", "0"), "--size"),
    (("bench", "attention.zoo_base", "--size", "8", "--size", "-1"), "--size"),
    (("bench", "attention.zoo_base", "--memory-fraction", "1.5"), "--memory-fraction"),
    (("bench", "attention.zoo_base", "--max-call-seconds", "nan"), "--max-call-seconds"),
    (("profile", "attention.zoo_base", "--size", "-5"), "--size"),
    (("bench", "attention.zoo_base", "--device", "nosuchdevice"), "nosuchdevice"),
    (("profile", "attention.zoo_base", "--device", "nosuchdevice"), "nosuchdevice"),
])
def test_bad_arguments_are_refused_in_one_line(args, needle):
    assert_one_line_refusal(reprobench(*args), needle)


@pytest.mark.parametrize("args, needle", [
    (("bench", "attention.nosuch*", "--size", "8"), "attention.nosuch*"),
    (("profile", "attention.nosuch", "--size", "8"), "attention.nosuch"),
])
def test_unknown_components_are_refused_in_one_line(args, needle, tmp_path):
    assert_one_line_refusal(reprobench(*args, "--json" if args[0] == "bench" else "--logdir", str(tmp_path / "out")),
                            needle)


def test_unwritable_json_and_logdir_are_refused_before_any_case(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert_one_line_refusal(reprobench("bench", "attention.zoo_base", "--size", "8", "--json", "/proc/forbidden/b.json"),
                            "--json", "/proc")
    assert_one_line_refusal(reprobench("bench", "attention.zoo_base", "--size", "8", "--json", str(tmp_path)),
                            "--json", "directory")
    logdir = tmp_path / "a_file" / "runs"
    assert_one_line_refusal(reprobench("profile", "attention.zoo_base", "--size", "8", "--logdir", str(logdir)),
                            "--logdir", "not a directory")
    assert_one_line_refusal(reprobench("profile", "attention.zoo_base", "--size", "8", "--logdir", "/proc/forbidden"),
                            "--logdir", "/proc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"], "a refused run leaves nothing behind"


def test_rows_stream_as_each_case_completes():
    """The first case's rows reach a pipe while the second case has not started (the driver holds it
    until the test has read them): rows are printed and flushed per case, not as a table at the end."""
    command = [sys.executable, "-c", DRIVER, json.dumps({"gate_after_first_case": True}),
               "bench", "attention.zoo_base", "--size", "8", "--size", "16"]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen = []
    try:
        while not (seen and seen[-1].lstrip().startswith("optimized")):
            seen.append(lines.get(timeout=300))  # a hang guard, not a timing: unflushed rows never arrive
    except queue.Empty:
        pytest.fail(f"the first case's rows did not arrive before the run ended; got {seen}")
    finally:
        proc.stdin.write("go\n")
        proc.stdin.close()
        proc.wait(timeout=600)
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    assert any("[1/2" in line and "attention.zoo_base n=8" in line for line in seen), seen
    assert not any("[2/2" in line for line in seen), "the second case was held back"


def test_rows_fit_80_columns_off_a_terminal(tmp_path):
    """The longest registered name, on a pipe with COLUMNS=80: every line fits and the name is whole."""
    out = tmp_path / "rows.json"
    result = reprobench("bench", "attention.zoo_relative_force_directional", "--size", "8", "--json", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80, [line for line in lines if len(line) > 80]
    assert any("attention.zoo_relative_force_directional n=8" in line for line in lines), lines
    assert [line.split()[0] for line in lines if line.startswith(("  reference", "  optimized"))] == [
        "reference", "optimized"]
    row = json.loads(out.read_text())["rows"][0]
    assert row["matches_reference"] is True and row["reference_skipped"] is None


def test_memory_rule_skips_the_reference_and_runs_the_optimized(tmp_path):
    """Available memory set (in the subprocess) so that half of it lies between the two estimated peaks:
    the reference is skipped with its reason, the optimized runs, unchecked, and the run still exits 0."""
    from reprobench.bench import estimate_peak_bytes

    ref, _ = estimate_peak_bytes("attention.zoo_base", 16, "reference")
    opt, _ = estimate_peak_bytes("attention.zoo_base", 16, "optimized")
    assert ref > opt
    out = tmp_path / "rows.json"
    result = reprobench("bench", "attention.zoo_base", "--size", "16", "--json", str(out),
                        patches={"available_bytes": ref + opt})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    skipped = [line for line in lines if "skipped" in line and "implementations skipped" not in line]
    assert len(skipped) == 1 and skipped[0].split()[:2] == ["reference", "skipped:"], lines
    assert "est. peak" in skipped[0] and "50% of" in skipped[0] and "available" in skipped[0]
    assert any(line.split()[0] == "optimized" and line.rstrip().endswith("unchecked") for line in lines), lines
    row = json.loads(out.read_text())["rows"][0]
    assert row["reference_ms"] is None and row["optimized_ms"] > 0 and row["matches_reference"] is None
    assert row["estimates"]["reference"]["peak_bytes"] == ref


def test_time_rule_skips_with_its_reason():
    result = reprobench("bench", "attention.zoo_base", "--size", "8", "--max-call-seconds", "1e-9")
    assert result.returncode == 0, result.stderr[-2000:]
    skipped = [line.split(None, 2) for line in result.stdout.splitlines() if "per call > 1e-09 s" in line]
    assert [s[:2] for s in skipped] == [["reference", "skipped:"], ["optimized", "skipped:"]], result.stdout


def test_profile_refuses_a_size_that_would_not_fit(tmp_path):
    logdir = tmp_path / "runs"
    result = reprobench("profile", "attention.zoo_base", "--size", "16", "--logdir", str(logdir),
                        patches={"available_bytes": 1024})
    assert_one_line_refusal(result, "attention.zoo_base", "est. peak", "--size")
    assert not logdir.exists()
