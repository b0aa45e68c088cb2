"""`reprobench list | verify | bench | profile`."""
from __future__ import annotations

import argparse
import datetime
import logging
import sys
from pathlib import Path

DEFAULT_OUT = Path("reports")


def _list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from reprobench.registry import list_components

    table = Table(title="registered components")
    for column in ("name", "claims", "dtypes", "backward", "exponents (time / memory)", "description"):
        table.add_column(column)
    for spec in list_components(args.pattern):
        exps = f"{dict(spec.time_exponent or {})} / {dict(spec.memory_exponent or {})}"
        table.add_row(spec.name, ", ".join(spec.claims), ", ".join(str(d).replace("torch.", "") for d in spec.dtypes),
                      "yes" if spec.supports_backward else "no", exps, spec.description)
    # Not a terminal (piped, captured): print full-width rows instead of truncating names.
    console = Console() if sys.stdout.isatty() else Console(width=240)
    console.print(table)
    return 0


def _verify(args) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from reprobench.claims.report import load_report, merge_entries, write_report
    from reprobench.claims.runner import MEASURE_THREADS, parse_ids, run_claims, scratch_figures_dir
    from reprobench.measure.environment import fingerprint

    try:
        ids = parse_ids(args.only)
    except ValueError as exc:
        print(f"reprobench verify: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    scratch = scratch_figures_dir(out_dir)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=False) as progress:
        task = progress.add_task("claims", total=len(ids))

        def advance(claim_id: str) -> None:
            progress.update(task, description=f"claims: {claim_id}")
            progress.advance(task) if claim_id != ids[0] else None

        entries = run_claims(ids, quick=args.quick, device=args.device, figures_dir=scratch, progress=advance)
        progress.update(task, completed=len(ids), description="claims: done")
    previous = load_report(out_dir) if args.only else None
    report = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "environment": {**fingerprint(args.device), "measurement_threads": MEASURE_THREADS},
        "claims": merge_entries(previous, entries),
    }
    write_report(out_dir, report, scratch)
    counts: dict[str, int] = {}
    for e in report["claims"]:
        counts[e["verdict"]] = counts.get(e["verdict"], 0) + 1
    print(f"wrote {out_dir / 'claims.md'} and {out_dir / 'claims.json'}: "
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    errors = [e["id"] for e in entries if e["verdict"] == "error"]
    if errors:
        print(f"experiments that raised: {', '.join(errors)} (see claims.json)", file=sys.stderr)
        return 1
    return 0


def _bench(args) -> int:
    from reprobench.bench import run_bench

    return run_bench(args.pattern, sizes=args.size, device=args.device, out=args.json)


def _profile(args) -> int:
    from reprobench.profile import run_profile

    return run_profile(args.component, size=args.size, logdir=Path(args.logdir), device=args.device,
                       implementation=args.implementation, backward=args.backward)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reprobench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="print the component registry")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'attention.*'")
    p.set_defaults(func=_list)

    p = sub.add_parser("verify", help="run the claim experiments and write reports/")
    p.add_argument("--quick", action="store_true", help="smoke run: smaller sizes, fewer repeats")
    p.add_argument("--only", help="comma-separated claim IDs or family prefixes, e.g. EFF-01,ROPE")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="report directory (default: reports)")
    p.set_defaults(func=_verify)

    p = sub.add_parser("bench", help="time, peak tensor bytes and FLOPs of reference vs optimized")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--size", type=int, action="append", help="size(s) to run; default: the spec's bench_sizes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=_bench)

    p = sub.add_parser("profile", help="torch.profiler trace for TensorBoard and Perfetto")
    p.add_argument("component", help="registered name, e.g. attention.strided")
    p.add_argument("--size", type=int, default=None, help="default: the largest of the spec's bench_sizes")
    p.add_argument("--logdir", default="runs", help="TensorBoard log directory (default: runs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--implementation", choices=("optimized", "reference"), default="optimized")
    p.add_argument("--backward", action="store_true", help="profile forward + backward")
    p.set_defaults(func=_profile)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
