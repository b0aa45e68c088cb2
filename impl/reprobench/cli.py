"""`reprobench list | verify | bench | profile`."""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from pathlib import Path

DEFAULT_OUT = Path("reports")


LIST_WIDTH = 100  # `reprobench list` fits a 100-column terminal or log; long cells wrap


def _list(args) -> int:
    import textwrap

    from reprobench.claims.declarative import ClaimFileError, parse_claim_file
    from reprobench.registry import list_components

    try:
        declared = [c for path in args.claims for c in parse_claim_file(path)]
    except ClaimFileError as exc:
        print(f"reprobench list: {exc}", file=sys.stderr)
        return 2
    specs = list_components(args.pattern)
    claims = _component_claims(list_components(), declared)
    name_width = max([len("name")] + [len(spec.name) for spec in specs])
    fixed = f"{'':<{name_width}}  {'dtypes':<7}  bwd  time exp  mem exp  "
    claims_width = max(LIST_WIDTH - len(fixed), 16)
    print(f"{'name':<{name_width}}  {'dtypes':<7}  bwd  time exp  mem exp  claims")
    for spec in specs:
        dtypes = " ".join(str(d).replace("torch.", "").replace("float", "f") for d in spec.dtypes)
        cells = (f"{spec.name:<{name_width}}  {dtypes:<7}  {'yes' if spec.supports_backward else 'no':<3}  "
                 f"{_exponents(spec.time_exponent):<8}  {_exponents(spec.memory_exponent):<7}  ")
        wrapped = textwrap.wrap(", ".join(claims[spec.name]) or "-", claims_width, break_on_hyphens=False)
        print(cells + wrapped[0])
        for more in wrapped[1:]:
            print(" " * len(cells) + more)
        for line in textwrap.wrap(spec.description, LIST_WIDTH - 4):
            print("    " + line)
    print(textwrap.fill(f"{len(specs)} component(s). exp: the expected log-log exponent of time and peak tensor bytes in "
                        "the size, reference -> optimized. claims: the spec's own, those its plugin module defines, and "
                        "those of --claims files naming it.", LIST_WIDTH))
    return 0


def _exponents(exps) -> str:
    if not exps:
        return "-"
    ref, opt = exps.get("reference"), exps.get("optimized")
    if ref is not None and opt is not None:
        return f"{ref:g} -> {opt:g}"  # at most 8 columns for exponents such as 1.5
    return ", ".join(f"{k[:3]} {v:g}" for k, v in exps.items())


def _component_claims(specs, declared) -> dict[str, list[str]]:
    """Claim IDs per component: listed on its spec; defined by the plugin module that registered it (when that
    module registered no other component, so the claim can only be about this one); and declared claims (TOML)
    whose `component` it is."""
    from reprobench.claims.ledger import DECLARED_BY
    from reprobench.registry import origin_module

    by_module: dict[str, list[str]] = {}
    for spec in specs:
        by_module.setdefault(origin_module(spec), []).append(spec.name)
    claims = {spec.name: list(spec.claims) for spec in specs}
    for claim_id, module in DECLARED_BY.items():
        owners = by_module.get(module, [])
        if len(owners) == 1 and claim_id not in claims[owners[0]]:
            claims[owners[0]].append(claim_id)
    for item in declared:
        name = item.fields.get("component")
        if name in claims and item.id not in claims[name]:
            claims[name].append(item.id)
    return claims


def _check_device(device: str) -> str | None:
    """None when `device` can be measured on here, else a one-line reason."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        return f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)"
    if parsed.type == "cuda" and not torch.cuda.is_available():
        return f"--device {device}: CUDA is not available on this machine (torch {torch.__version__})"
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        return f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    if parsed.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        return f"--device {device}: MPS is not available on this machine"
    if parsed.type not in ("cpu", "cuda", "mps"):
        return f"--device {device}: reprobench measures on cpu, cuda or mps"
    return None


def _check_out_dir(out_dir: Path) -> str | None:
    """None when reports can be written into `out_dir`, else a one-line reason (checked before any run)."""
    import tempfile

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        return f"--out {out_dir}: cannot write reports there ({exc.strerror or exc})"
    return None


def _verify(args) -> int:
    from reprobench.claims.compare import diff_reports, format_diff
    from reprobench.claims.report import ReportError, build_report, load_report, write_report
    from reprobench.claims.runner import (MEASURE_THREADS, now_iso, parse_ids, remove_stale_scratch, run_claims,
                                          scratch_figures_dir)
    from reprobench.measure.environment import fingerprint, machine_fingerprint

    def fail(message: str) -> int:
        print(f"reprobench verify: {message}", file=sys.stderr)
        return 2

    # Everything a run needs is checked before the first experiment: a bad argument costs no minutes.
    from reprobench.claims.declarative import ClaimFileError, load_claim_files

    try:
        load_claim_files(args.claims)  # after the plugins (their components), before --only reads the ledger
    except ClaimFileError as exc:
        return fail(str(exc))
    try:
        ids = parse_ids(args.only)
    except ValueError as exc:
        return fail(str(exc))
    reason = _check_device(args.device) or _check_out_dir(Path(args.out))
    if reason:
        return fail(reason)
    out_dir = Path(args.out)
    try:
        previous = load_report(out_dir)
    except ReportError as exc:
        return fail(str(exc))

    # The provenance is the code and machine as the run starts: a commit made while it runs is not what ran.
    environment = {**fingerprint(args.device), "measurement_threads": MEASURE_THREADS}
    environment["fingerprint"] = machine_fingerprint(environment)
    scratch = scratch_figures_dir(out_dir)
    try:
        with _sigterm_as_interrupt():
            entries = _run_with_progress(ids, args, scratch, run_claims)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): the same clean-up, 128 + the signal
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
        remove_stale_scratch(out_dir)
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"reprobench verify: {how}; no report written, the last good one is unchanged", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    generated_at = now_iso()
    run_id = f"{generated_at}-{environment['git_commit'][:8]}"
    report = build_report(entries, previous=previous if args.only else None, environment=environment,
                          quick=args.quick, run_id=run_id, generated_at=generated_at)
    write_report(out_dir, report, scratch)
    counts: dict[str, int] = {}
    for e in report["claims"]:
        counts[e["verdict"]] = counts.get(e["verdict"], 0) + 1
    print(f"wrote {out_dir / 'claims.md'} and {out_dir / 'claims.json'}: "
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if previous is not None:
        diff = diff_reports(previous, report)
        print("\nagainst the report it replaces:\n" + format_diff(diff, previous, report, old_name="before",
                                                                   new_name="now"))
    errors = [e["id"] for e in entries if e["verdict"] == "error"]
    if errors:
        print(f"experiments that raised: {', '.join(errors)} (see claims.json)", file=sys.stderr)
        return 1
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job, `kill`), raised where the run is so it unwinds as Ctrl-C does."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While the claims run, SIGTERM raises Terminated instead of killing the process mid-write, so the scratch
    figures are removed and the message is one line. A SIGTERM the parent chose to ignore stays ignored."""
    def terminate(signum, frame):
        raise Terminated()

    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous == signal.SIG_IGN:
            yield
            return
        signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_with_progress(ids, args, scratch, run_claims):
    """A progress bar on a terminal; one line per finished claim with its time otherwise (CI logs, nohup)."""
    import time

    if not sys.stdout.isatty():
        start = time.perf_counter()

        def line(claim_id: str, result: dict | None) -> None:
            if result is not None:
                done = ids.index(claim_id) + 1
                print(f"[{done}/{len(ids)}] {claim_id}: {result['verdict']} ({result.get('seconds', 0):.1f} s; "
                      f"{time.perf_counter() - start:.0f} s elapsed)", flush=True)

        return run_claims(ids, quick=args.quick, device=args.device, figures_dir=scratch, progress=line)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=False) as progress:
        task = progress.add_task("claims", total=len(ids))

        def advance(claim_id: str, result: dict | None) -> None:
            if result is None:
                progress.update(task, description=f"claims: {claim_id}")
            else:
                progress.advance(task)
                progress.console.print(f"{claim_id}: {result['verdict']} ({result.get('seconds', 0):.1f} s)")

        entries = run_claims(ids, quick=args.quick, device=args.device, figures_dir=scratch, progress=advance)
        progress.update(task, description="claims: done")
    return entries


def _compare(args) -> int:
    from reprobench.claims.compare import diff_reports, format_diff
    from reprobench.claims.report import ReportError, load_report, report_path

    reports = []
    for location in (args.old, args.new):
        try:
            report = load_report(Path(location))
        except ReportError as exc:
            print(f"reprobench compare: {exc}", file=sys.stderr)
            return 2
        if report is None:
            print(f"reprobench compare: no report at {report_path(Path(location))}", file=sys.stderr)
            return 2
        reports.append(report)
    diff = diff_reports(*reports)
    print(format_diff(diff, *reports, old_name=args.old, new_name=args.new))
    return diff.exit_code


def _bench(args) -> int:
    if why := _check_device(args.device):
        print(f"reprobench bench: {why}", file=sys.stderr)
        return 2
    from reprobench.bench import run_bench

    rules = {key: getattr(args, key) for key in ("memory_fraction", "max_call_seconds") if getattr(args, key)}
    return run_bench(args.pattern, sizes=args.size, device=args.device, out=args.json, **rules)


def _profile(args) -> int:
    if why := _check_device(args.device):
        print(f"reprobench profile: {why}", file=sys.stderr)
        return 2
    from reprobench.profile import run_profile

    return run_profile(args.component, size=args.size, logdir=Path(args.logdir), device=args.device,
                       implementation=args.implementation, backward=args.backward)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reprobench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="print the component registry")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'attention.*'")
    p.add_argument("--claims", action="append", default=[], metavar="FILE.toml",
                   help="also show the claims of this TOML claim file beside the components they name (repeatable)")
    p.set_defaults(func=_list)

    p = sub.add_parser("verify", help="run the claim experiments and write reports/")
    p.add_argument("--quick", action="store_true", help="smoke run: smaller sizes, fewer repeats")
    p.add_argument("--only", help="comma-separated claim IDs or family prefixes, e.g. EFF-01,ROPE")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="report directory (default: reports)")
    p.add_argument("--claims", action="append", default=[], metavar="FILE.toml",
                   help="also check the [[claim]] tables of this TOML file (repeatable; see the README)")
    p.set_defaults(func=_verify)

    p = sub.add_parser("compare", help="what changed between two reports; exit 1 when a claim stops holding",
                       description="Compare two reports (directories or claims.json files): verdict changes, "
                                   "measured quantities that changed beyond both runs' uncertainty and a 10% noise "
                                   "floor, environment differences. "
                                   "Exit 1 when a claim moves from holds to fails or partial (a CI gate), else 0.")
    p.add_argument("old", help="the earlier report: a directory holding claims.json, or the file")
    p.add_argument("new", help="the later report")
    p.set_defaults(func=_compare)

    def positive(convert, most: float | None = None):
        """argparse type: a number > 0 (and <= most), so a bad value stops the parse before any work."""
        def parse(text: str):
            try:
                value = convert(text)
            except ValueError:
                value = None
            if value is None or not value > 0 or (most is not None and value > most):
                bound = f" and <= {most:g}" if most is not None else ""
                raise argparse.ArgumentTypeError(f"expected {convert.__name__} > 0{bound}, got {text!r}")
            return value
        return parse

    def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """A bad argument prints one line, like every other bench/profile refusal, not the usage block first."""
        parser.error = lambda message: parser.exit(2, f"{parser.prog}: {message} (see {parser.prog} -h)\n")
        return parser

    p = one_line_errors(sub.add_parser("bench", help="time, peak tensor bytes and FLOPs of reference vs optimized",
                       description="Reference vs optimized, one row per implementation as each case completes. "
                                   "An implementation whose estimated tensor peak (FakeTensorMode) exceeds "
                                   "--memory-fraction of the available memory, or whose one forward call is "
                                   "estimated over --max-call-seconds, is skipped with the reason printed."))
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'attention.*'")
    p.add_argument("--size", type=positive(int), action="append",
                   help="size(s) to run; default: the spec's bench_sizes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--memory-fraction", type=positive(float, most=1.0),
                   help="largest share of the available memory one implementation's estimated peak may take "
                        "(default: 0.5)")
    p.add_argument("--max-call-seconds", type=positive(float),
                   help="skip an implementation whose one forward call is estimated longer (default: 3)")
    p.set_defaults(func=_bench)

    p = one_line_errors(sub.add_parser("profile", help="torch.profiler trace for TensorBoard and Perfetto"))
    p.add_argument("component", help="registered name, e.g. attention.strided")
    p.add_argument("--size", type=positive(int), default=None, help="default: the largest of the spec's bench_sizes")
    p.add_argument("--logdir", default="runs", help="TensorBoard log directory (default: runs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--implementation", choices=("optimized", "reference"), default="optimized")
    p.add_argument("--backward", action="store_true", help="profile forward + backward")
    p.set_defaults(func=_profile)
    from reprobench.doctor import add_doctor_parser  # imports nothing heavy

    add_doctor_parser(sub)
    from reprobench.calibrate import add_calibrate_parser  # imports nothing heavy

    add_calibrate_parser(sub)
    for name in ("list", "verify", "bench", "profile", "calibrate"):
        sub.choices[name].add_argument(
            "--plugin", action="append", default=[], metavar="MODULE",
            help="import MODULE first: it registers its own components and claims (repeatable); installed "
                 "plugins (entry-point group reprobench.plugins) load without it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command != "compare":
            from reprobench.plugins import PluginError, load_plugins

            try:
                load_plugins(args.plugin)
            except PluginError as exc:
                print(f"reprobench {args.command}: {exc}", file=sys.stderr)
                return 2
        return args.func(args)
    except KeyboardInterrupt as exc:  # Ctrl-C: one line and the conventional 128 + SIGINT, not a traceback
        terminated = isinstance(exc, Terminated)
        print(f"reprobench {args.command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130


if __name__ == "__main__":
    sys.exit(main())
