"""Runs `reprobench` in a subprocess with fake, instant experiments, so CLI behaviour (exit codes, files,
signals) is tested as a user meets it without minutes of real measurement.

FAKE_VERDICT=holds|fails picks the outcome of every fake experiment; FAKE_SLEEP=1 makes EFF-01 print
"started" and sleep (for the Ctrl-C test).
"""
import os
import sys
import time

from reprobench.claims import runner
from reprobench.claims.experiment import Outcome
from reprobench.measure.stats import decide


def fake(ctx):
    if os.environ.get("FAKE_SLEEP"):
        ctx.figure_path("half_done.png").write_bytes(b"not a figure yet")
        print("started", flush=True)
        time.sleep(60)
    value = 2.0 if os.environ.get("FAKE_VERDICT", "holds") == "holds" else 0.5
    return Outcome(claimed="c", measured={"value": value}, rule="value >= 1", evidence="fake",
                   decisions=[decide("value", value, at_least=1.0)])


runner.load_experiments = lambda: {cid: fake for cid in ("EFF-01", "EFF-02", "DW-01")}

if __name__ == "__main__":
    from reprobench.cli import main

    sys.exit(main(sys.argv[1:]))
