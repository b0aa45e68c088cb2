"""Run the experiments of the ledger and collect one entry per claim ID."""
from __future__ import annotations

import logging
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Iterable

import torch

from reprobench.claims.experiment import Outcome, RunContext, load_experiments
from reprobench.claims.ledger import CLAIM_TEXTS

log = logging.getLogger(__name__)
MEASURE_THREADS = int(os.environ.get("REPROBENCH_THREADS", "1"))


def parse_ids(only: str | Iterable[str] | None) -> list[str]:
    """Claim IDs to run: all, or a comma-separated list / prefixes ('EFF' selects EFF-01..EFF-10)."""
    if not only:
        return sorted(CLAIM_TEXTS)
    tokens = only.split(",") if isinstance(only, str) else list(only)
    selected: list[str] = []
    for token in (t.strip() for t in tokens if t.strip()):
        matches = [cid for cid in sorted(CLAIM_TEXTS) if cid == token or cid.startswith(token + "-")]
        if not matches:
            raise ValueError(f"--only: {token!r} is neither a claim ID nor a family prefix of CLAIMS.md")
        selected.extend(m for m in matches if m not in selected)
    return sorted(selected)


def entry(claim_id: str, outcome: Outcome | None, seconds: float, note: str = "") -> dict:
    source, text = CLAIM_TEXTS[claim_id]
    if outcome is None:
        return {
            "id": claim_id, "verdict": "not-implemented", "claimed": text, "measured": {},
            "rule": "", "evidence": note or "No experiment for this claim yet.", "figures": [],
            "deviations": [], "source": source, "seconds": round(seconds, 2),
        }
    return {
        "id": claim_id, "verdict": outcome.verdict, "claimed": outcome.claimed,
        "measured": outcome.measured, "rule": outcome.rule, "evidence": outcome.evidence,
        "figures": [f"figures/{name}" for name in outcome.figures], "deviations": outcome.deviations,
        "source": source, "seconds": round(seconds, 2),
    }


def run_claims(ids: list[str], *, quick: bool, device: str, figures_dir: Path, progress=None) -> list[dict]:
    """Run the experiments for `ids`; an experiment that raises becomes verdict `error`."""
    experiments = load_experiments()
    ctx = RunContext(quick=quick, device=torch.device(device), figures_dir=figures_dir)
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
            progress(claim_id)
        start = time.perf_counter()
        fn = experiments.get(claim_id)
        if fn is None:
            entries.append(entry(claim_id, None, 0.0))
            continue
        try:
            torch.set_num_threads(MEASURE_THREADS)  # every experiment starts pinned, whatever the last one did
            outcome = fn(ctx)
            entries.append(entry(claim_id, outcome, time.perf_counter() - start))
        except Exception as exc:  # a crashed experiment is a visible result, not a lost report
            log.exception("experiment %s raised", claim_id)
            failed = entry(claim_id, None, time.perf_counter() - start)
            failed.update(verdict="error", evidence=f"experiment raised {type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc(limit=6))
            entries.append(failed)
    return entries


def scratch_figures_dir(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".figures-", dir=out_dir))
