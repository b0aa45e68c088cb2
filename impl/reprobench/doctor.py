"""`reprobench doctor --device cuda`: one prepared smoke check of a device, with one summary.

Three steps, each a subprocess under a time limit (a step that runs over is stopped with its whole
process group, and the next one starts):
- ``tests``: the generated correctness tier of the built-in components on the device (the generic
  tests that take a device: matches_reference, gradients, finite outputs, probabilities, state_dict
  sharing, device provenance, inputs unchanged), through reprobench's pytest plugin;
- ``bench``: ``reprobench bench 'attention.*' --device DEV``;
- ``verify``: ``reprobench verify --quick --device DEV --out OUT/verify``.
Each step's output goes to OUT/<step>.log; OUT/doctor.json and OUT/doctor.txt hold the summary (step,
exit code, seconds, the first error line), so the first machine with a GPU answers in one call.
This module imports nothing heavy until the doctor runs (the CLI imports it for every command).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

STEPS = ("tests", "bench", "verify")
DEFAULT_LIMIT_S = 600.0  # per step
DEFAULT_OUT = "doctor-report"
# The generated tests that run on the chosen device; the others (bad inputs, random cases, float64
# builds) run on the CPU whatever the device, so they say nothing about it.
DEVICE_TESTS = "not bad_input and not random_cases and not float64_build"
KILL_GRACE_S = 5.0  # after SIGTERM, how long a step's processes get before SIGKILL
_ERROR_LINE = re.compile(r"^(FAILED|ERROR)\b|^E\s+\S|^\S*(Error|Exception)\b.*:|^reprobench \w+: ")


@dataclass
class StepResult:
    step: str  # one of STEPS
    command: list[str]  # what ran
    rc: int | None  # exit code; None when it ran past the limit
    seconds: float  # wall time
    timed_out: bool
    first_error: str  # the first line that reads as an error, "" when the step passed
    log: str  # path of its output


def first_error_line(text: str, rc: int | None) -> str:
    """The line a reader wants first: pytest's FAILED/ERROR line or an `E` line, an exception, a one-line
    refusal; else, for a failed step, its last line."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if _ERROR_LINE.search(line):
            return line[:300]
    return (lines[-1][:300] if lines else "(no output)") if rc != 0 else ""


def run_step(step: str, command: list[str], *, limit_s: float, log_path: Path, cwd: Path) -> StepResult:
    """Run `command` in its own process group, output to `log_path`; stop the group past `limit_s`."""
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        timed_out = False
        try:
            rc = process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            timed_out, rc = True, None
            _stop_group(process)
    seconds = time.monotonic() - start
    text = log_path.read_text(encoding="utf-8", errors="replace")
    first = f"timed out after {limit_s:g} s (stopped); last line: {first_error_line(text, 1)}" if timed_out \
        else first_error_line(text, rc)
    return StepResult(step, command, rc, round(seconds, 1), timed_out, first, str(log_path))


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the step's process group (verify's workers, pytest's children), SIGKILL after a grace."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=KILL_GRACE_S)
    with contextlib.suppress(ProcessLookupError):  # whatever of the group is left, the leader included
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def step_commands(device: str, out: Path, *, components: str, bench_pattern: str, bench_sizes: list[int],
                  claims: str | None) -> dict[str, list[str]]:
    python = sys.executable
    tests = [python, "-m", "pytest", "--reprobench-components", components, "--reprobench-device", device,
             "-k", DEVICE_TESTS, "-q", "-p", "no:cacheprovider", "-c", str(out / "pytest.ini"), "--rootdir", str(out)]
    bench = [python, "-m", "reprobench", "bench", bench_pattern, "--device", device, "--json", str(out / "bench.json"),
             *(arg for size in bench_sizes for arg in ("--size", str(size)))]
    verify = [python, "-m", "reprobench", "verify", "--quick", "--device", device, "--out", str(out / "verify"),
              *(("--only", claims) if claims else ())]
    return {"tests": tests, "bench": bench, "verify": verify}


def environment(device: str) -> dict:
    import torch

    env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
           "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(device)
    return env


def check_device(device: str) -> str | None:
    """Why `device` cannot run here, or None."""
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        return f"--device {device!r} is not a torch device ({exc})"
    if parsed.type == "cuda" and not torch.cuda.is_available():
        return f"--device {device!r}: no CUDA device is available here (torch {torch.__version__})"
    if parsed.type not in ("cpu", "cuda"):
        return f"--device {device!r}: the doctor checks 'cpu' or 'cuda' devices"
    return None


def table(results: list[StepResult]) -> str:
    rows = [("step", "rc", "seconds", "first error")]
    rows += [(r.step, "timeout" if r.timed_out else str(r.rc), f"{r.seconds:.1f}", r.first_error or "-") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows)


def run_doctor(device: str, out: Path, *, only: list[str], limit_s: float, components: str, bench_pattern: str,
               bench_sizes: list[int], claims: str | None) -> int:
    problem = check_device(device)
    if problem:
        print(f"reprobench doctor: {problem}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    # The generated tests get an empty config of their own, so a project's pytest settings (testpaths,
    # addopts) around OUT do not add its own suites to the run.
    (out / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    commands = step_commands(device, out, components=components, bench_pattern=bench_pattern,
                             bench_sizes=bench_sizes, claims=claims)
    started, results = time.monotonic(), []
    for step in (s for s in STEPS if s in only):
        print(f"reprobench doctor: {step} on {device} (limit {limit_s:g} s) ...", flush=True)
        results.append(run_step(step, commands[step], limit_s=limit_s, log_path=out / f"{step}.log", cwd=out))
        print(f"  rc={'timeout' if results[-1].timed_out else results[-1].rc} in {results[-1].seconds:.1f} s", flush=True)
    summary = {"device": device, "seconds": round(time.monotonic() - started, 1), "limit_s_per_step": limit_s,
               "environment": environment(device), "steps": [asdict(r) for r in results],
               "ok": all(r.rc == 0 for r in results)}
    (out / "doctor.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    text = table(results)
    (out / "doctor.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"reprobench doctor: {'all steps passed' if summary['ok'] else 'some steps failed'} in "
          f"{summary['seconds']:.1f} s; summary in {out / 'doctor.json'}")
    return 0 if summary["ok"] else 1


def add_doctor_parser(sub) -> None:
    """The `doctor` subcommand, for reprobench.cli."""
    p = sub.add_parser("doctor", help="smoke-check a device: generated tests, bench 'attention.*', verify --quick",
                       description=__doc__.split("\n\n")[0] + " Writes OUT/doctor.json and OUT/doctor.txt.")
    p.add_argument("--device", default="cuda", help="device to check (default: cuda)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"report directory (default: {DEFAULT_OUT})")
    p.add_argument("--limit-s", type=_positive_float, default=DEFAULT_LIMIT_S,
                   help=f"time limit of each step in seconds (default: {DEFAULT_LIMIT_S:g})")
    p.add_argument("--only", type=_steps, default=list(STEPS), help=f"comma-separated steps of {','.join(STEPS)}")
    p.add_argument("--components", default="*", help="components of the tests step (shell pattern; default: all)")
    p.add_argument("--bench", default="attention.*", dest="bench_pattern",
                   help="components of the bench step (default: 'attention.*')")
    p.add_argument("--bench-size", type=int, action="append", default=[], dest="bench_sizes",
                   help="bench size(s) (default: each spec's bench_sizes)")
    p.add_argument("--claims", help="verify only these claim IDs or prefixes (default: every claim, quick)")
    p.set_defaults(func=lambda args: run_doctor(args.device, Path(args.out), only=args.only, limit_s=args.limit_s,
                                                components=args.components, bench_pattern=args.bench_pattern,
                                                bench_sizes=args.bench_sizes, claims=args.claims),
                   plugin=[])


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _steps(text: str) -> list[str]:
    steps = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        raise argparse.ArgumentTypeError(f"expected comma-separated steps of {','.join(STEPS)}, got {text!r}")
    return steps
