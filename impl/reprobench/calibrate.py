"""`reprobench calibrate`: is this machine quiet enough to trust a timed verdict? A/A checks, measured here.

Two checks, both of things that did not change, so every "change" they see is a false one:
- a component against itself: the same forward timed as baseline and as candidate with
  decide_speedup (rounds in worker processes), repeated; a calibrated 95% interval excludes 1 in about
  5% of repeats, and `compare`'s change rule should fire on none of the repeat pairs;
- one claim's decisions repeated in separate invocations of `reprobench verify --only ID`: how often
  two runs' intervals of one quantity fail to overlap (about 0.6% for calibrated 95% intervals), and
  how often one run's estimate falls inside another's interval (about 83% expected).
pyperf's `check` does the same job for its runs: say in plain words when a run looks unstable.
"""
from __future__ import annotations

import argparse

import itertools
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

CALIBRATED_NON_OVERLAP = 0.006  # two independent calibrated 95% intervals of one quantity miss each other
CALIBRATED_COVERAGE = 0.83  # another run's estimate inside a calibrated 95% interval


@dataclass
class Agreement:
    """How separate runs of the same code agree, over every quantity they share."""

    runs: int
    quantities: int
    interval_pairs: int  # ordered-free pairs of intervals of the same quantity
    non_overlapping: int
    coverage_checks: int  # (run i's estimate, run j's interval), i != j
    covered: int
    compare_pairs: int  # pairs of runs
    compare_pairs_quiet: int  # pairs where `compare`'s change rule reported nothing
    verdict_flips: list[tuple[str, str, str]]  # (claim, verdict, verdict) decisive disagreements between runs

    @property
    def non_overlap_rate(self) -> float:
        return self.non_overlapping / self.interval_pairs if self.interval_pairs else 0.0

    @property
    def coverage_rate(self) -> float:
        return self.covered / self.coverage_checks if self.coverage_checks else 1.0

    def summary(self) -> str:
        lines = [f"{self.runs} runs, {self.quantities} timed or sampled quantities",
                 f"interval pairs that do not overlap: {self.non_overlapping}/{self.interval_pairs} "
                 f"({self.non_overlap_rate:.1%}; calibrated 95% intervals: about {CALIBRATED_NON_OVERLAP:.1%})",
                 f"estimates inside another run's interval: {self.covered}/{self.coverage_checks} "
                 f"({self.coverage_rate:.0%}; calibrated: about {CALIBRATED_COVERAGE:.0%})",
                 f"run pairs where compare reports no changed quantity: {self.compare_pairs_quiet}/{self.compare_pairs}",
                 "decisive verdict disagreements (holds vs fails/partial): "
                 + (", ".join(f"{c} {a}/{b}" for c, a, b in self.verdict_flips) or "none")]
        return "\n".join(lines)


def _is_sampled(decision: dict) -> bool:
    """A quantity with a real interval (timed, fitted, seed-sampled), not a deterministic count."""
    return decision["low"] < decision["high"] and decision.get("confidence", 1.0) >= 0.5


def agreement(reports: Iterable[dict]) -> Agreement:
    """Agreement between reports of the same code (claims.json dicts): non-overlap, coverage, compare, verdicts."""
    from reprobench.claims.compare import diff_reports

    reports = list(reports)
    by_quantity: dict[tuple[str, str], list[dict]] = {}
    verdicts: dict[str, set[str]] = {}
    for report in reports:
        for claim in report.get("claims", []):
            verdicts.setdefault(claim["id"], set()).add(claim["verdict"])
            for decision in claim.get("decisions") or []:
                if _is_sampled(decision):
                    by_quantity.setdefault((claim["id"], decision["quantity"]), []).append(decision)
    pairs = non_overlapping = checks = covered = 0
    for decisions in by_quantity.values():
        for a, b in itertools.combinations(decisions, 2):
            pairs += 1
            non_overlapping += a["low"] > b["high"] or b["low"] > a["high"]
        for a, b in itertools.permutations(decisions, 2):
            checks += 1
            covered += b["low"] <= a["estimate"] <= b["high"]
    quiet = total = 0
    for old, new in itertools.combinations(reports, 2):
        total += 1
        quiet += not diff_reports(old, new).interval_changes
    flips = []
    for claim_id, seen in sorted(verdicts.items()):
        if "holds" in seen and seen & {"fails", "partial"}:
            flips.append((claim_id, "holds", "/".join(sorted(seen & {"fails", "partial"}))))
    return Agreement(runs=len(reports), quantities=len(by_quantity), interval_pairs=pairs,
                     non_overlapping=non_overlapping, coverage_checks=checks, covered=covered,
                     compare_pairs=total, compare_pairs_quiet=quiet, verdict_flips=flips)


def self_comparison(component: str, *, repeats: int, budget_s: float, device: str = "cpu") -> dict:
    """The component's optimized forward timed against itself `repeats` times (rounds in worker processes)."""
    import torch

    from reprobench.bench import bench_case
    from reprobench.measure.timing import decide_speedup

    from reprobench.registry import get

    spec_size = get(component).bench_sizes[0]  # the smallest declared bench size: cheap, still a real kernel
    case = bench_case(component, spec_size, "optimized", device)
    forward = case.forward()
    estimates = []
    for _ in range(repeats):
        decision, _ = decide_speedup(forward, forward, quantity="self_speedup", between=(0.5, 2.0),
                                     budget_s=budget_s, device=torch.device(device))
        estimates.append(decision.to_json())
    excluding_one = sum(1 for d in estimates if d["low"] > 1.0 or d["high"] < 1.0)
    from reprobench.claims.compare import diff_reports

    fake_reports = [{"claims": [{"id": "A/A", "verdict": "holds", "measured": {}, "decisions": [d]}]}
                    for d in estimates]
    changes = sum(bool(diff_reports(a, b).interval_changes) for a, b in itertools.combinations(fake_reports, 2))
    return {"component": component, "size": spec_size, "repeats": repeats,
            "estimates": [(d["estimate"], d["low"], d["high"]) for d in estimates],
            "intervals_excluding_1": excluding_one, "pairs_called_changed": changes,
            "pairs": repeats * (repeats - 1) // 2}


def repeated_invocations(only: str, *, invocations: int, extra_args: list[str] | None = None) -> list[dict]:
    """Run `reprobench verify --only ONLY` in `invocations` separate processes; their claims.json reports."""
    reports = []
    with tempfile.TemporaryDirectory(prefix="reprobench-calibrate-") as tmp:
        for i in range(invocations):
            out = Path(tmp) / f"run{i}"
            command = [sys.executable, "-m", "reprobench", "verify", "--only", only, "--out", str(out),
                       *(extra_args or [])]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            reports.append(json.loads((out / "claims.json").read_text()))
    return reports


def _at_least(minimum: int, what: str):
    """An argparse type: an int >= `minimum` (agreement needs two runs to compare), refused with one line."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be >= {minimum} (pairs of runs are compared), got {value}")
        return value
    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--budget must be seconds > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--budget must be seconds > 0, got {text!r}")
    return value


def timed_claims() -> list[str]:
    """The claims whose declarations say their verdict rests on a wall-clock decision."""
    from reprobench.claims.experiment import declaration, load_experiments

    return sorted(cid for cid in load_experiments() if declaration(cid).timed)


def _check_targets(args) -> str | None:
    """Why the component or claims named cannot be calibrated (unknown names), or None; checked before any run."""
    from reprobench.claims.experiment import load_experiments
    from reprobench.registry import list_components

    load_experiments()  # the studies and plugins: their components and claims
    if args.component and args.component not in {spec.name for spec in list_components()}:
        return f"--component {args.component!r} is not a registered component (see `reprobench list`)"
    if args.claim:
        if args.claim == "timed":
            args.claim = ",".join(timed_claims())
            if not args.claim:
                return "--claim timed: no declared claim is timed"
        else:
            from reprobench.claims.runner import parse_ids

            try:
                parse_ids(args.claim)
            except ValueError as exc:
                return f"--claim: {exc}"
    return None


def run_calibrate(args) -> int:
    from reprobench.measure import stats

    lines = []
    result: dict = {}
    problem = _check_targets(args)
    if problem:
        print(f"reprobench calibrate: {problem}", file=sys.stderr)
        return 2
    if args.component:
        aa = self_comparison(args.component, repeats=args.repeats, budget_s=args.budget)
        result["self_comparison"] = aa
        lines += [f"A/A: {aa['component']} (n={aa['size']}) against itself, {aa['repeats']} decisions",
                  f"  intervals of the self-speedup that exclude 1: {aa['intervals_excluding_1']}/{aa['repeats']} "
                  f"(calibrated {stats.CONFIDENCE:.0%} intervals: about {1 - stats.CONFIDENCE:.0%})",
                  f"  pairs that compare calls changed: {aa['pairs_called_changed']}/{aa['pairs']}"]
    if args.claim:
        reports = repeated_invocations(args.claim, invocations=args.invocations)
        agreed = agreement(reports)
        result["repeated_invocations"] = {"only": args.claim, **asdict(agreed),
                                          "non_overlap_rate": agreed.non_overlap_rate,
                                          "coverage_rate": agreed.coverage_rate}
        lines += [f"verify --only {args.claim}, {args.invocations} separate invocations:"]
        lines += ["  " + line for line in agreed.summary().splitlines()]
    if not lines:
        print("reprobench calibrate: give --component NAME and/or --claim IDS (see -h)", file=sys.stderr)
        return 2
    print("\n".join(lines))
    if args.json:
        from reprobench.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return 0


def add_calibrate_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="A/A checks: is this machine quiet enough to trust timed verdicts?",
                       description="A component timed against itself, and one claim repeated in separate "
                                   "invocations: the observed non-overlap rate of intervals, the coverage of "
                                   "another run's estimate, and compare's false changes.")
    p.add_argument("--component", help="registered component to time against itself, e.g. attention.dense")
    p.add_argument("--repeats", type=_at_least(2, "--repeats"), default=5, help="self-comparisons (default 5, at least 2)")
    p.add_argument("--budget", type=_positive_seconds, default=5.0,
                   help="seconds per self-comparison decision (default 5)")
    p.add_argument("--claim", help="claim IDs for `verify --only`, repeated in separate invocations; `timed` for "
                                   "every claim declared timed")
    p.add_argument("--invocations", type=_at_least(2, "--invocations"), default=3,
                   help="separate verify invocations (default 3, at least 2)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=run_calibrate)
