"""The declarative kinds on tiny toy components (tests/declarative_toys.py, registered for this module only):
what each call measures, the match checks before any ratio, fresh inputs every timed round, optimizer state,
memory overhead and configs that grow with n. Timed kinds run with a small budget, and only their structure
is asserted (a decision exists, the checks ran, the inputs were redrawn), never a time. Deterministic
measures (tensor bytes) are compared with what the toys' shapes give."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reprobench import optimizer_state_bytes, peak_tensor_bytes
from reprobench.claims.declarative import parse_claim_file
from reprobench.claims.declarative_kinds import experiment_for
from reprobench.claims.experiment import RunContext
from tests.declarative_toys import BUILDS, DIM, Lion, draws, registered, reset_draws, sqrt_ceil

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "acme_attention"
F32 = 4  # bytes per float32 element


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("draws")


@pytest.fixture(scope="module", autouse=True)
def toys(log_dir):
    with registered(log_dir) as specs:
        yield specs


@pytest.fixture
def run_claim(tmp_path):
    """Parse one [[claim]] body and run its experiment (quick, CPU, a one-second decision budget)."""
    def run(body: str):
        path = tmp_path / "claims.toml"
        path.write_text('[[claim]]\nid = "TOY-01"\ntext = "a README sentence"\nsource = "a README"\n' + body)
        (item,) = parse_claim_file(path)
        ctx = RunContext(quick=True, device=torch.device("cpu"), figures_dir=tmp_path / "figures",
                         decision_budget_s=1.0)
        return experiment_for(item)(ctx)
    return run


def speedup(component: str, extra: str = "", baseline: str = 'baseline = "reference"') -> str:
    return f'kind = "speedup"\ncomponent = "{component}"\n{baseline}\nsize = 64\nat_least = 1.0\n{extra}'


def quantities(outcome) -> list[str]:
    return [d.quantity for d in outcome.decisions]


# --- speedup: no figure from a wrong answer ---------------------------------------------------------

def test_speedup_times_nothing_when_the_optimized_twin_is_wrong(run_claim, monkeypatch):
    from reprobench.measure import timing

    def no_timing(*args, **kwargs):
        raise AssertionError("decide_speedup ran: a wrong answer was timed")

    monkeypatch.setattr(timing, "decide_speedup", no_timing)
    outcome = run_claim(speedup("toy.wrong"))
    assert outcome.verdict == "fails" and quantities(outcome) == ["elements_outside_tolerance_n64"]
    assert outcome.measured["elements_outside_tolerance_n64"] == 2 * 64 * DIM  # every output element is 1.5x
    assert "no speed figure was measured" in outcome.evidence and "before timing" in outcome.evidence
    assert not any(key.endswith("_ms_n64") for key in outcome.measured)


def test_speedup_checks_every_round_s_new_inputs(run_claim, log_dir):
    """toy.late_wrong is right on the first two draws and wrong from the third: only a check of each round's
    inputs sees it (in whichever process the round runs)."""
    reset_draws(log_dir, "toy.late_wrong")
    outcome = run_claim(speedup("toy.late_wrong"))
    assert outcome.verdict == "fails" and quantities(outcome) == ["elements_outside_tolerance_n64"], outcome.evidence
    assert "on a later round's inputs (inputs drawn with seed" in outcome.evidence
    assert "no speed figure" in outcome.evidence and draws(log_dir, "toy.late_wrong") == 3


def test_speedup_redraws_the_inputs_before_every_round(run_claim, log_dir):
    reset_draws(log_dir, "toy.linear")
    outcome = run_claim(speedup("toy.linear"))
    (decision,) = outcome.decisions
    rounds = decision.extra["rounds"]
    assert rounds >= 7 and draws(log_dir, "toy.linear") == 1 + rounds  # the first draw, then one per round
    assert outcome.measured["match_checks_before_timing"] == 1 and outcome.measured["rechecked_every_round"]
    reset_draws(log_dir, "toy.linear")
    outcome = run_claim(speedup("toy.linear", "fresh_inputs = false\n"))
    assert draws(log_dir, "toy.linear") == 1 and outcome.measured["fresh_inputs_every_round"] is False


def test_speedup_against_another_component(run_claim):
    same = run_claim(speedup("toy.linear", "same_output = true\n", 'against = "toy.linear_other"'))
    assert quantities(same) == ["speedup_vs_toy_linear_other_optimized_n64"]
    assert same.measured["match_checks_before_timing"] == 3  # each twin vs its reference, then the two
    # Another function (2 y): with same_output it is a mismatch, without it the two are timed.
    differs = run_claim(speedup("toy.linear", "same_output = true\n", 'against = "toy.linear_double"'))
    assert differs.verdict == "fails" and quantities(differs) == ["elements_differing_from_toy_linear_double_n64"]
    timed = run_claim(speedup("toy.linear", "", 'against = "toy.linear_double"'))
    assert quantities(timed) == ["speedup_vs_toy_linear_double_optimized_n64"]
    assert timed.measured["match_checks_before_timing"] == 2
    # The against component's own optimized twin is checked against its reference as well.
    wrong_baseline = run_claim(speedup("toy.linear", "", 'against = "toy.wrong"'))
    assert wrong_baseline.verdict == "fails" and quantities(wrong_baseline) == ["elements_outside_tolerance_toy_wrong_n64"]


@pytest.mark.parametrize("call", ['call = "forward_backward"\nloss = "mean"\n', 'call = "train_step"\noptimizer = "adamw"\n'])
def test_speedup_of_backward_calls_and_training_steps(run_claim, call):
    outcome = run_claim(speedup("toy.linear", call))
    assert quantities(outcome) == ["speedup_vs_toy_linear_reference_n64"], outcome.evidence
    assert outcome.measured["rechecked_every_round"] == ("forward_backward" in call)  # a step changes the state
    assert ("training step" in outcome.rule) == ("train_step" in call)


def test_a_gradient_mismatch_fails_a_backward_speedup(run_claim):
    outcome = run_claim(speedup("toy.wrong", 'call = "forward_backward"\n'))
    # outputs (2 x 64 x DIM), input gradients (2 x 64 x DIM) and the weight's gradient (DIM x DIM) differ
    assert outcome.verdict == "fails" and outcome.measured["elements_outside_tolerance_n64"] >= 2 * 64 * DIM * 2


def test_train_step_needs_parameters(run_claim):
    with pytest.raises(ValueError, match=r"toy.scratch \(optimized\) has no trainable parameters"):
        run_claim(speedup("toy.scratch", 'call = "train_step"\n'))


# --- optimizers ------------------------------------------------------------------------------------

def _state_elements(optimizer_class, n: int) -> int:
    """Bytes of an optimizer's state after one step on an (n, n) weight and an (n,) bias, element by element."""
    params = [torch.zeros(n, n, requires_grad=True), torch.zeros(n, requires_grad=True)]
    optimizer = optimizer_class(params)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    return sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
               if isinstance(t, torch.Tensor))


def test_optimizer_state_ratio_against_another_optimizer(run_claim):
    outcome = run_claim('kind = "memory_ratio"\ncomponent = "toy.lion"\nagainst = "toy.adamw"\ncall = "optimizer_step"\n'
                        'measure = "optimizer_state"\nsize = 64\nat_least = 1.9\n')
    assert outcome.measured["baseline_optimizer_state_bytes_n64"] == _state_elements(torch.optim.AdamW, 64)
    assert outcome.measured["optimized_optimizer_state_bytes_n64"] == (64 * 64 + 64) * F32  # one moment
    assert outcome.verdict == "holds" and quantities(outcome) == ["optimizer_state_ratio_vs_toy_adamw_optimized_n64"]


def test_optimizer_step_time_and_peak(run_claim):
    timed = run_claim(speedup("toy.lion", 'call = "optimizer_step"\n', 'against = "toy.adamw"'))
    assert quantities(timed) == ["speedup_vs_toy_adamw_optimized_n64"]
    assert timed.measured["match_checks_before_timing"] == 2 and not timed.measured["rechecked_every_round"]
    peak = run_claim('kind = "peak_memory"\ncomponent = "toy.adamw"\nimplementation = "optimized"\n'
                     'call = "optimizer_step"\nsize = 64\nat_most_mib = 1\n')
    assert peak.measured["peak_tensor_bytes_n64"] > 0 and quantities(peak) == ["peak_tensor_mib_optimized_n64"]


def test_a_training_step_keeps_the_state_of_the_named_optimizer(run_claim):
    outcome = run_claim('kind = "peak_memory"\ncomponent = "toy.linear"\nimplementation = "optimized"\n'
                        'call = "train_step"\noptimizer = "toy.lion"\nmeasure = "optimizer_state"\nsize = 16\n'
                        'at_most_mib = 1\n')
    assert outcome.measured["optimizer_state_bytes_n16"] == (DIM * DIM + DIM) * F32  # Lion: one moment per parameter


def test_optimizer_state_bytes_counts_each_storage_once():
    p = torch.nn.Parameter(torch.zeros(8, 8))
    optimizer = Lion([p])
    p.grad = torch.ones_like(p)
    optimizer.step()
    assert optimizer_state_bytes(optimizer) == 8 * 8 * F32
    optimizer.state[p]["view"] = optimizer.state[p]["exp_avg"][:2]  # a view shares the moment's storage
    optimizer.state[p]["history"] = [torch.zeros(3)]  # nested values count too
    assert optimizer_state_bytes(optimizer) == 8 * 8 * F32 + 3 * F32
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        optimizer_state_bytes([p])


# --- memory overhead -------------------------------------------------------------------------------

def test_memory_overhead_excludes_inputs_and_outputs(run_claim):
    n = 64
    peak = run_claim(f'kind = "peak_memory"\ncomponent = "toy.scratch"\nimplementation = "optimized"\nsize = {n}\n'
                     'at_most_mib = 1\n').measured["peak_tensor_bytes_n64"]
    overhead = run_claim(f'kind = "peak_memory"\ncomponent = "toy.scratch"\nimplementation = "optimized"\nsize = {n}\n'
                         'at_most_mib = 1\nmeasure = "overhead"\n').measured["overhead_tensor_bytes_n64"]
    assert overhead == peak - 2 * n * DIM * F32  # the output (2, n, DIM) is what the call leaves alive
    assert overhead >= 2 * n * n * F32  # the (2, n, n) scores are working memory


def test_peak_memory_overhead_bytes_is_peak_minus_retained():
    x = torch.randn(16, 16)
    memory = peak_tensor_bytes(lambda: (x @ x).softmax(-1).sum(0))
    assert memory.retained_bytes == 16 * F32 and memory.overhead_bytes == memory.peak_bytes - 16 * F32


# --- configs that grow with n ----------------------------------------------------------------------

def test_config_per_size_sets_the_component_s_config_at_each_size(run_claim):
    BUILDS.clear()
    outcome = run_claim('kind = "memory_exponent"\ncomponent = "toy.linear"\nimplementation = "optimized"\n'
                        'sizes = [16, 64, 200]\nat_most = 1.2\n[claim.config_per_size]\n'
                        'chunk = { power = 0.5, round = "ceil" }\n')
    assert sorted({b["chunk"] for b in BUILDS}) == [sqrt_ceil(16), sqrt_ceil(64), sqrt_ceil(200)]
    assert "chunk=15 (ceil(1 * n^0.5), at least 1)" in outcome.rule
    BUILDS.clear()
    run_claim('kind = "matches_reference"\ncomponent = "toy.linear"\nsizes = [8]\nconfig = { chunk = 5 }\n')
    assert {b["chunk"] for b in BUILDS} == {5}


# --- the other kinds' new fields, and the logic of matches_reference -------------------------------

def test_flops_and_memory_ratios_of_a_backward_call(run_claim):
    flops = run_claim('kind = "flops_ratio"\ncomponent = "toy.linear"\nagainst = "toy.linear_other"\nsame_output = true\n'
                      'call = "forward_backward"\nsize = 32\nat_least = 1\n')
    forward = run_claim('kind = "flops_ratio"\ncomponent = "toy.linear"\nagainst = "toy.linear_other"\nsize = 32\n'
                        'at_least = 1\n')
    # backward of a linear layer: the input and weight gradients are two more matmuls of the forward's size
    assert flops.measured["optimized_flops_n32"] == 3 * forward.measured["optimized_flops_n32"]
    memory = run_claim('kind = "memory_ratio"\ncomponent = "toy.linear"\nbaseline = "reference"\n'
                       'call = "forward_backward"\nmeasure = "overhead"\nsize = 32\nat_least = 0.5\n')
    assert quantities(memory) == ["overhead_ratio_vs_toy_linear_reference_n32"]
    wrong = run_claim('kind = "memory_ratio"\ncomponent = "toy.wrong"\nbaseline = "reference"\nsize = 32\nat_least = 1\n')
    assert wrong.verdict == "fails" and "no memory ratio was measured" in wrong.evidence


def test_time_exponent_redraws_inputs_every_round(run_claim, log_dir):
    reset_draws(log_dir, "toy.linear")
    outcome = run_claim('kind = "time_exponent"\ncomponent = "toy.linear"\nimplementation = "optimized"\n'
                        'sizes = [16, 32]\nat_most = 2\ncall = "forward_backward"\n')
    assert draws(log_dir, "toy.linear") == 2 * 3  # two sizes, three quick rounds
    assert quantities(outcome) == ["time_exponent_optimized"] and outcome.measured["fresh_inputs_every_round"]


def test_matches_reference_is_one_property_over_all_sizes(run_claim, log_dir):
    """Right at two sizes and wrong at the third is a failure of "exact for any n", not a partial success."""
    reset_draws(log_dir, "toy.late_wrong")
    outcome = run_claim('kind = "matches_reference"\ncomponent = "toy.late_wrong"\nsizes = [4, 8, 12]\n')
    counts = [outcome.measured[f"elements_outside_tolerance_n{n}"] for n in (4, 8, 12)]
    assert counts[:2] == [0, 0] and counts[2] > 0
    assert outcome.verdict == "fails" and quantities(outcome) == ["elements_outside_tolerance_all_sizes"]


# --- end to end: the example's extra claim file through the CLI ------------------------------------

def test_the_example_s_memory_claims_run_through_verify(tmp_path):
    """The deterministic claims of claims_more.toml through the CLI. Its timed training step, ACME-20, is only
    checked (verify checks the whole file before running anything); the toys above time training steps at a
    fraction of the cost."""
    out = tmp_path / "reports"
    ids = ["ACME-21", "ACME-22", "ACME-23", "ACME-24"]
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE / "src")}
    result = subprocess.run([sys.executable, "-m", "reprobench", "verify", "--quick", "--only", ",".join(ids),
                             "--claims", str(EXAMPLE / "claims_more.toml"), "--plugin", "acme_attention.reprobench_plugin",
                             "--out", str(out)], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}
    assert sorted(claims) == ids
    # quick sizes differ from the claims' sizes: their figures are reported, unjudged
    assert all(c["verdict"] == "unjudged" and c["decisions"] for c in claims.values()), claims
    assert "attention.dense (optimized) vs its reference" in claims["ACME-21"]["rule"]
    assert "overhead_tensor_bytes_n512" in claims["ACME-22"]["measured"]
    assert "window=16 (ceil(1 * n^0.5)" in claims["ACME-23"]["rule"]
    assert claims["ACME-24"]["measured"]["fake_tensor_mode_sizes"] == 1
