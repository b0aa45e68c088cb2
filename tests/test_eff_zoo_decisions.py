"""The EFF and ZOO experiments' own decision helpers, with fake clocks and known truths, and the untimed
experiments end to end on the CPU (quick mode): decisions present, one JSON type per measured value, float64
on the device exactly where the claim declares it needs float64.

No real timing is asserted: the group-ratio decisions run on a fake machine whose times we choose.
"""
from __future__ import annotations

import json
import math
import random
import time

import pytest
import torch
from torch.overrides import TorchFunctionMode

from reprobench.claims.experiment import DECIDED_VERDICTS, RunContext, declaration, load_experiments
from reprobench_documents.experiments.eff._common import decide_time_ratio, min_estimate, seconds_per_call
from reprobench_documents.experiments.eff.layer_sweep import crossover_fields, crossover_sizes
from reprobench_documents.experiments.zoo._common import max_estimate, proportion_estimate
from reprobench.measure import decide
from reprobench.measure.stats import OUTCOMES, Estimate


class _FakeLayer:
    """A callable whose time on the fake machine is `seconds` per call."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.calls = 0

    def __call__(self):
        self.calls += 1


class _FakeMachine:
    """measure(fn, number): fn's seconds per call, off by a lognormal factor of `noise`, independently per call
    of measure; the clock advances by the time 'spent', so the budget is spent as on a real machine."""

    def __init__(self, seed: int, noise: float = 0.05):
        self.rng, self.noise, self.now = random.Random(seed), noise, 0.0
        self.numbers: dict[float, int] = {}

    def measure(self, fn, number):
        self.numbers[fn.seconds] = number
        seconds = fn.seconds * math.exp(self.rng.gauss(0.0, self.noise))
        self.now += seconds * number
        return seconds

    def clock(self):
        return self.now


def _ratio(numerators, denominators, seed=0, **rule):
    machine = _FakeMachine(seed)
    return decide_time_ratio({k: _FakeLayer(s) for k, s in numerators.items()},
                             {k: _FakeLayer(s) for k, s in denominators.items()}, quantity="ratio", budget_s=30.0,
                             device=torch.device("cpu"), min_run_time=0.05, measure=machine.measure,
                             clock=machine.clock, **rule)


def test_group_ratio_is_fastest_numerator_over_fastest_denominator():
    # fastest numerator 2 ms, fastest denominator 0.5 ms: the ratio is 4, not 3/1 nor 2/1
    decision, timings = _ratio({"a": 3e-3, "b": 2e-3}, {"c": 1e-3, "d": 0.5e-3}, at_least=3.5)
    assert decision.outcome == "holds"
    assert 3.6 < decision.estimate.point < 4.4
    assert _ratio({"a": 3e-3, "b": 2e-3}, {"c": 1e-3, "d": 0.5e-3}, at_least=4.5)[0].outcome == "fails"
    assert set(timings) == {"a", "b", "c", "d"}
    assert all(len(t.round_medians) == decision.extra["rounds"] for t in timings.values())


def test_group_ratio_decides_in_each_direction_and_stays_undecided_at_the_threshold():
    holds = [_ratio({"a": 2.2e-3}, {"b": 1e-3}, seed=s, at_least=2.0)[0].outcome for s in range(40)]
    fails = [_ratio({"a": 1.8e-3}, {"b": 1e-3}, seed=s, at_least=2.0)[0].outcome for s in range(40)]
    at = [_ratio({"a": 2.0e-3}, {"b": 1e-3}, seed=s, at_least=2.0)[0].outcome for s in range(40)]
    assert holds.count("holds") >= 38 and fails.count("fails") >= 38 and at.count("inconclusive") >= 34
    band = _ratio({"a": 1e-3}, {"b": 1e-3}, between=(0.5, 2.0))[0]
    assert band.outcome == "holds" and band.direction == "between"


def test_group_ratio_starts_at_seven_rounds_and_sizes_calls_per_round():
    decision, _ = _ratio({"a": 10e-3}, {"b": 1e-3}, at_least=2.0)  # far from the threshold: decided at the first look
    assert decision.extra["rounds"] == 7
    machine = _FakeMachine(0)
    decide_time_ratio({"slow": _FakeLayer(2.0)}, {"fast": _FakeLayer(1e-3)}, quantity="r", at_least=1.0,
                      budget_s=30.0, device=torch.device("cpu"), min_run_time=0.05, measure=machine.measure,
                      clock=machine.clock)
    # a slow layer costs one call per round, a fast one about 0.05 s of calls (sized from one noisy warm-up timing)
    assert machine.numbers[2.0] == 1 and 40 <= machine.numbers[1e-3] <= 60


def test_a_sweep_round_costs_a_slow_layer_two_calls():
    slow, fast = _FakeLayer(0.0), _FakeLayer(0.0)
    slow_call = lambda: (slow(), time.sleep(0.02))  # noqa: E731 - longer than min_run_time: warm-up + one call
    seconds = seconds_per_call({"slow": slow_call, "fast": fast}, min_run_time=0.01, device=torch.device("cpu"))
    assert set(seconds) == {"slow", "fast"} and all(s > 0 for s in seconds.values())
    assert slow.calls == 2 and fast.calls > 2


def test_group_ratio_rejects_bad_groups():
    with pytest.raises(ValueError, match="numerators and denominators"):
        _ratio({}, {"b": 1e-3}, at_least=1.0)
    with pytest.raises(ValueError, match="both sides"):
        decide_time_ratio({"a": _FakeLayer(1e-3)}, {"a": _FakeLayer(1e-3)}, quantity="r", at_least=1.0, budget_s=1.0,
                          device=torch.device("cpu"))


def _est(point, low, high, confidence=0.95):
    return Estimate(point=point, low=low, high=high, confidence=confidence, samples=7, method="test")


def test_min_estimate_is_the_conjunction_of_at_least_rules():
    parts = [_est(1.5, 1.2, 1.8), _est(3.0, 2.0, 4.0), _est(1.1, 0.9, 1.3)]
    smallest = min_estimate(parts)
    assert (smallest.point, smallest.low, smallest.high) == (1.1, 0.9, 1.3)
    assert smallest.confidence == pytest.approx(1 - 3 * 0.05)
    assert decide("all", smallest, at_least=1.0).outcome == "inconclusive"  # one part undecided
    assert decide("all", min_estimate(parts[:2]), at_least=1.0).outcome == "holds"  # every part holds
    assert decide("all", min_estimate([_est(0.8, 0.7, 0.9), parts[1]]), at_least=1.0).outcome == "fails"
    assert min_estimate([parts[1]]) is parts[1]
    with pytest.raises(ValueError):
        min_estimate([])


def test_max_estimate_is_the_disjunction_of_at_least_rules():
    parts = [_est(0.05, -0.04, 0.15), _est(0.34, 0.12, 0.57)]
    largest = max_estimate(parts)
    assert (largest.point, largest.low, largest.high) == (0.34, 0.12, 0.57)
    assert decide("any", largest, at_least=0.05).outcome == "holds"  # one mechanism is enough
    assert decide("any", max_estimate([_est(0.01, 0.0, 0.03), _est(0.02, 0.01, 0.04)]), at_least=0.05).outcome == "fails"
    assert max_estimate([_est(0.01, 0.0, 0.03), parts[0]]).high == 0.15
    with pytest.raises(ValueError):
        max_estimate([])


def test_proportion_has_the_exact_binomial_interval():
    all_of_16 = proportion_estimate(16, 16)
    assert all_of_16.point == 1.0 and all_of_16.high == 1.0
    assert all_of_16.low == pytest.approx(0.025 ** (1 / 16))  # Clopper-Pearson with no failures
    assert decide("share", all_of_16, at_least=0.9).outcome == "inconclusive"  # 16 runs cannot show 90%
    assert decide("share", proportion_estimate(40, 40), at_least=0.9).outcome == "holds"
    assert decide("share", proportion_estimate(5, 16), at_least=0.9).outcome == "fails"
    for bad in ((17, 16), (-1, 16), (0, 0)):
        with pytest.raises(ValueError):
            proportion_estimate(*bad)


def test_crossovers_beyond_the_sweep_are_null_with_a_note():
    sizes = (256, 512, 1024)
    times = {"Standard": {256: 1.0, 512: 4.0, 1024: 16.0}, "Fast": {256: 2.0, 512: 3.0, 1024: 5.0},
             "Never": {256: 2.0, 512: 8.0, 1024: 32.0}, "Noisy": {256: 0.5, 512: 5.0, 1024: 4.0}}
    crossovers = crossover_sizes(times, sizes)
    assert crossovers == {"Fast": 512, "Never": None, "Noisy": 1024}  # a single point below dense does not count
    fields = crossover_fields(crossovers, sizes)
    assert fields["crossover_n_Fast"] == 512 and fields["crossover_n_Never"] is None
    assert fields["crossover_n_Never_note"] == "beyond the sweep (> 1024)"
    assert all(isinstance(fields[f"crossover_n_{k}_note"], str) for k in crossovers)
    assert all(fields[f"crossover_n_{k}"] is None or type(fields[f"crossover_n_{k}"]) is int for k in crossovers)


FAMILIES = ("EFF", "ZOO")
CLAIMS = sorted(cid for cid in load_experiments() if cid.split("-")[0] in FAMILIES)
# Read from the declarations: the claims whose verdict rests on no wall-clock timing run here in quick mode
# (the timed ones run in `reprobench verify`), and those declaring float64 must refuse a device without it.
UNTIMED = [cid for cid in CLAIMS if not declaration(cid).timed]
FLOAT64 = [cid for cid in CLAIMS if "float64" in declaration(cid).needs]


class _Float64OnDevice(TorchFunctionMode):
    """Records the calls that make a float64 tensor on the experiment's device or move one there (a
    device without float64 could not run them); float64 kept on the host beside the device is not counted."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device, self.calls = device, set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        names_device = "device" in kwargs or any(isinstance(a, (torch.device, str)) for a in args[1:])
        if (isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.device.type == self.device.type
                and names_device):
            self.calls.add(getattr(func, "__name__", repr(func)))
        return out


@pytest.mark.parametrize("claim_id", UNTIMED)
def test_untimed_experiments_decide_on_the_cpu(claim_id, tmp_path):
    ctx = RunContext(quick=True, device=torch.device("cpu"), figures_dir=tmp_path)
    with _Float64OnDevice(ctx.device) as float64_use:
        outcome = load_experiments()[claim_id](ctx)
    assert outcome.decisions and outcome.verdict in DECIDED_VERDICTS
    assert all(d.outcome in OUTCOMES for d in outcome.decisions)
    assert outcome.headline_decision() is not None
    json.dumps(outcome.measured)  # plain numbers, bools, None and strings only
    assert all(not isinstance(v, str) or not v.startswith(">") for v in outcome.measured.values())
    # float64 on the device is declared (needs=("float64",)), and only where it is used
    assert bool(float64_use.calls) == ("float64" in declaration(claim_id).needs), (
        f"{claim_id} declares needs={declaration(claim_id).needs} but makes float64 tensors on the device through "
        f"{sorted(float64_use.calls) or 'nothing'}")


@pytest.mark.parametrize("claim_id", FLOAT64)
def test_float64_claims_are_not_checkable_on_a_device_without_float64(claim_id, tmp_path):
    # No MPS hardware is needed: the declaration refuses the device before the experiment touches it.
    outcome = load_experiments()[claim_id](RunContext(quick=True, device=torch.device("mps"), figures_dir=tmp_path))
    assert outcome.verdict == "not-checkable-here"
    assert "float64" in outcome.evidence and not outcome.decisions
