"""Run the experiments of the ledger and collect one entry per claim ID, with its provenance."""
from __future__ import annotations

import datetime
import logging
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable

import torch

from reprobench.claims.experiment import DECIDED_VERDICTS, Outcome, RunContext, declaration, load_experiments
from reprobench.claims.ledger import CLAIM_TEXTS

log = logging.getLogger(__name__)
MEASURE_THREADS = int(os.environ.get("REPROBENCH_THREADS", "1"))
SCRATCH_PREFIX = ".figures-"


def parse_ids(only: str | Iterable[str] | None) -> list[str]:
    """Claim IDs to run: all (None), or a comma-separated list of IDs / family prefixes ('EFF' selects
    EFF-01..EFF-10). An empty selection ('' or ',') is an error, not a silent 'run everything'."""
    if only is None:
        return sorted(CLAIM_TEXTS)
    tokens = only.split(",") if isinstance(only, str) else list(only)
    tokens = [t.strip() for t in tokens if t.strip()]
    if not tokens:
        raise ValueError(f"--only {only!r} selects no claim; give IDs or family prefixes, e.g. EFF-01,ROPE")
    selected: list[str] = []
    for token in tokens:
        matches = [cid for cid in sorted(CLAIM_TEXTS) if cid == token or cid.startswith(token + "-")]
        if not matches:
            raise ValueError(f"--only: {token!r} is neither a claim ID nor a family prefix of the ledger")
        selected.extend(m for m in matches if m not in selected)
    return sorted(selected)


def provenance(*, environment: dict, quick: bool, run_id: str) -> dict:
    """Where one claim's entry came from: merged reports keep this per claim, so a row measured at
    another commit, in a quick run or on another machine says so."""
    return {"run": run_id, "commit": environment.get("git_commit", "unknown"),
            "dirty": bool(environment.get("git_dirty", False)), "generated_at": environment.get("timestamp", ""),
            "quick": bool(quick), "device": environment.get("device", "?"),
            "environment": environment.get("fingerprint", "")}


def entry(claim_id: str, outcome: Outcome | None, seconds: float, note: str = "") -> dict:
    source, text = CLAIM_TEXTS[claim_id]
    if outcome is None:
        return {
            "id": claim_id, "verdict": "not-implemented", "claimed": text, "measured": {}, "decisions": [],
            "headline": None, "rule": "", "evidence": note or "No experiment for this claim yet.", "figures": [],
            "deviations": [], "source": source, "seconds": round(seconds, 2),
        }
    headline = outcome.headline_decision()
    return {
        "id": claim_id, "verdict": outcome.verdict, "claimed": outcome.claimed,
        "measured": outcome.measured, "decisions": [d.to_json() for d in outcome.decisions],
        "headline": headline.quantity if headline is not None else None,
        "rule": outcome.rule, "evidence": outcome.evidence,
        "figures": [f"figures/{name}" for name in outcome.figures], "deviations": outcome.deviations,
        "source": source, "seconds": round(seconds, 2),
    }


def run_claims(ids: list[str], *, quick: bool, device: str, figures_dir: Path,
               progress: Callable[[str, dict | None], None] | None = None) -> list[dict]:
    """Run the experiments for `ids`; an experiment that raises becomes verdict `error`.

    `progress(claim_id, None)` is called before a claim starts and `progress(claim_id, entry)` after it.
    """
    experiments = load_experiments()
    ctx = RunContext(quick=quick, device=torch.device(device), figures_dir=figures_dir,
                     decision_budget_s=5.0 if quick else 20.0)
    # Fixed threads for every experiment (set again before each one in `_run`): figures comparable across
    # machines and runs, and small ops on a shared machine do not oversubscribe the cores.
    previous_threads = torch.get_num_threads()
    try:
        return _run(ids, experiments, ctx, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _run(ids, experiments, ctx, progress) -> list[dict]:
    entries = []
    for claim_id in ids:
        if progress is not None:
            progress(claim_id, None)
        start = time.perf_counter()
        fn = experiments.get(claim_id)
        if fn is None:
            result = entry(claim_id, None, 0.0)
        else:
            try:
                torch.set_num_threads(MEASURE_THREADS)  # every experiment starts pinned, whatever the last one did
                object.__setattr__(ctx, "quick_read", False)
                # This claim's sizes (its declaration's wrapper sets the same): nothing read by the last claim
                # carries over to one whose experiment is not wrapped.
                object.__setattr__(ctx, "sizes", declaration(claim_id).sizes(object.__getattribute__(ctx, "quick")))
                outcome = fn(ctx)
                if not isinstance(outcome, Outcome):
                    raise TypeError(f"experiment returned {type(outcome).__name__}, expected an Outcome")
                declared = declaration(claim_id)
                outcome.with_logic(declared.logic)
                result = entry(claim_id, outcome, time.perf_counter() - start)
                result["logic"] = declared.logic
                sizes = object.__getattribute__(ctx, "sizes")
                if sizes:
                    result["sizes"] = sizes.for_mode()
                other = sizes.read_at_other_size
                if (object.__getattribute__(ctx, "quick") and ctx.measured_at_other_sizes()
                        and not declared.quick_judged and outcome.verdict in DECIDED_VERDICTS):
                    # A quick run measured this claim at other sizes than its rule speaks of: its figures are
                    # shown, its verdict withheld, so a quick report never contradicts a full one.
                    result["quick_verdict_withheld"] = outcome.verdict
                    result["verdict"] = "unjudged"
                    if other:
                        result["measured_at_other_sizes"] = other
                        named = "; ".join(f"{name} {v['quick']} instead of {v['full']}" for name, v in other.items())
                        result["unjudged_reason"] = (f"--quick measured this claim at other sizes than its rule "
                                                     f"speaks of ({named}); run without --quick to judge it")
                    else:
                        result["unjudged_reason"] = ("--quick measured this claim at smaller sizes or fewer repeats "
                                                     "than its rule speaks of; run without --quick to judge it")
                stamp_figures(ctx.figures_dir, outcome.figures, claim_id, outcome.verdict)
            except Exception as exc:  # a crashed experiment is a visible result, not a lost report
                log.exception("experiment %s raised", claim_id)
                result = entry(claim_id, None, time.perf_counter() - start)
                result.update(verdict="error", evidence=f"experiment raised {type(exc).__name__}: {exc}",
                              traceback=traceback.format_exc(limit=6))
        entries.append(result)
        if progress is not None:
            progress(claim_id, result)
    return entries


def stamp_figures(figures_dir: Path, names: list[str], claim_id: str, verdict: str) -> None:
    """Write the claim ID and its verdict into a banner above each figure, so a figure seen on its own
    still says what it was judged to show (the experiment draws the rule's threshold itself)."""
    if not names:
        return
    from PIL import Image, ImageDraw, ImageFont

    colour = {"holds": (0, 110, 0), "fails": (170, 0, 0), "partial": (170, 100, 0)}.get(verdict, (70, 70, 70))
    for name in names:
        path = figures_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{claim_id}: Outcome.figures names {name!r} but the experiment did not write it")
        with Image.open(path) as image:
            figure = image.convert("RGB")
        banner_height = 28
        stamped = Image.new("RGB", (figure.width, figure.height + banner_height), "white")
        stamped.paste(figure, (0, banner_height))
        draw = ImageDraw.Draw(stamped)
        try:
            font = ImageFont.load_default(size=16)
        except TypeError:  # Pillow < 10.1 has one fixed-size default font
            font = ImageFont.load_default()
        draw.text((8, 5), f"{claim_id}: verdict {verdict}", fill=colour, font=font)
        stamped.save(path)


def scratch_figures_dir(out_dir: Path) -> Path:
    """A private directory for this run's figures inside `out_dir` (same filesystem: moved into place
    atomically). Scratch directories left by runs that died are removed first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(out_dir)
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=out_dir))


def remove_stale_scratch(out_dir: Path) -> None:
    for path in out_dir.glob(f"{SCRATCH_PREFIX}*"):
        pid_text = path.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and _alive(int(pid_text)) and int(pid_text) != os.getpid():
            continue  # another verify is writing into this directory right now
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
