"""Claims: the ledger, experiments, decisions and the report writer.

The public surface for plugins: `claim` adds a claim to the ledger, `@experiment(claim_id)` registers the
function that measures it, which returns an `Outcome` whose verdict comes from `decide(...)` decisions
(estimates with intervals from the statistics module).
"""
from reprobench.claims.experiment import Outcome, RunContext, experiment, float64_unavailable, not_checkable, pyplot
from reprobench.claims.ledger import claim
from reprobench.measure.stats import (Decision, Estimate, decide, exact, fit_exponent_estimate, max_estimate,
                                      mean_interval, median_interval, min_estimate, proportion_estimate,
                                      ratio_from_rounds)
from reprobench.measure.timing import decide_speedup

__all__ = ["claim", "experiment", "Outcome", "RunContext", "pyplot", "float64_unavailable", "not_checkable", "Decision", "Estimate", "decide", "exact",
           "fit_exponent_estimate", "mean_interval", "median_interval", "ratio_from_rounds", "decide_speedup",
           "proportion_estimate", "min_estimate", "max_estimate"]
