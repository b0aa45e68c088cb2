"""acme-attention's reprobench plugin: registers `acme.window_attention` and the claims of its README.

reprobench imports this module through the entry point in pyproject.toml (or `--plugin
acme_attention.reprobench_plugin`). It uses only names from `reprobench.__all__`, the public surface the
README lists (reprobench's tests/test_public_surface.py checks it). The claims that need no code are in
claims.toml beside this package (`reprobench verify --claims claims.toml`).
"""
from __future__ import annotations

import torch

from acme_attention.window_attention import WindowAttention
from reprobench import (ComponentSpec, ErrorInput, Implementations, Outcome, SampleInput, claim, decide,
                        decide_speedup, draw_inputs, experiment, get, make_generator, register)

NAME = "acme.window_attention"
SOURCE = "acme-attention README"
TEST_DIM = 16


def build(config, device, dtype, generator) -> Implementations:
    """Both twins share one set of parameters: drawn once in `dtype` from `generator` on the CPU (so a
    float64 build is float64 throughout), then moved; the optimized twin loads the reference's state_dict."""
    reference = WindowAttention(**config, path="reference", dtype=dtype).reset_parameters(generator)
    reference = reference.to(device).eval()
    optimized = WindowAttention(**config, path="optimized", device=device, dtype=dtype).eval()
    optimized.load_state_dict(reference.state_dict())
    return Implementations(reference=reference, optimized=optimized,
                           probabilities=lambda sample: reference.attention_probs(*sample.args))


def token_inputs(dim: int):
    def sample_inputs(n, device, dtype, generator):
        def draw(batch):  # drawn on the CPU from the CPU generator, then moved: the same values on any device
            return torch.randn(batch, n, dim, dtype=dtype, generator=generator).to(device)
        return [SampleInput((draw(2),), name="batch2"), SampleInput((draw(1),), name="batch1")]
    return sample_inputs


def error_inputs(device, dtype, generator):
    def x(*shape, dt=dtype):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dt)

    def bad_config(**changes):
        return {**dict(dim=TEST_DIM, num_heads=2, window=3), **changes}

    return [
        ErrorInput(SampleInput((x(4, TEST_DIM),), name="rank2"), ValueError, r"x: expected shape"),
        ErrorInput(SampleInput((x(2, 5, TEST_DIM + 1),), name="wrong_dim"), ValueError, r"x: expected shape"),
        ErrorInput(SampleInput((x(2, 0, TEST_DIM),), name="empty_sequence"), ValueError, r"n >= 1"),
        ErrorInput(SampleInput((x(2, 5, TEST_DIM, dt=torch.int64),), name="int_input"), TypeError, r"x: expected a float"),
        ErrorInput(SampleInput((x(2, 5, TEST_DIM),), name="window_zero"), ValueError, r"window: expected an int >= 1",
                   config=bad_config(window=0)),
        ErrorInput(SampleInput((x(2, 5, TEST_DIM),), name="window_float"), TypeError, r"window: expected an int",
                   config=bad_config(window=2.5)),
        ErrorInput(SampleInput((x(2, 5, TEST_DIM),), name="heads_not_dividing"), ValueError,
                   r"dim: expected a multiple of num_heads", config=bad_config(num_heads=3)),
    ]


register(ComponentSpec(
    name=NAME,
    claims=(),  # its claims (ACME-*) are defined below, after the component
    description="causal sliding-window attention; reference dense masked, optimized blocked SDPA",
    build=build,
    sample_inputs=token_inputs(TEST_DIM),
    error_inputs=error_inputs,
    default_config=dict(dim=TEST_DIM, num_heads=2, window=3),
    test_sizes=(1, 5, 8),  # shorter than, not a multiple of, and a multiple of the window
    bench_config=dict(dim=768, num_heads=12, window=128),  # attention.dense's bench shape: comparable inputs
    bench_inputs=token_inputs(768),
    bench_sizes=(512, 1024, 2048, 4096),
    time_exponent={"reference": 2.0, "optimized": 1.0},
    memory_exponent={"reference": 2.0, "optimized": 1.0},
))


# --- claims that need code -------------------------------------------------------------------------

claim("ACME-01", "WindowAttention: each token attends to exactly the `window` most recent tokens, itself "
                 "included; no token outside that window changes its output.", source=SOURCE)
claim("ACME-02", "The blocked WindowAttention is at least 2x faster than its dense reference at n = 2048 "
                 "(window 128, dim 768).", source=SOURCE)


def _outside_window_changes(layer, x: torch.Tensor, window: int, positions, generator, tol) -> int:
    """Output elements at `positions` that move when every token outside their window is redrawn."""
    changed = 0
    with torch.no_grad():
        out = layer(x)
        for i in positions:
            keep = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
            keep[max(0, i - window + 1): i + 1] = True
            noise = torch.randn(x.shape, dtype=x.dtype, generator=generator).to(x.device)
            moved = layer(torch.where(keep[None, :, None], x, noise))
            changed += int((~torch.isclose(moved[:, i], out[:, i], atol=tol.atol, rtol=tol.rtol)).sum())
    return changed


@experiment("ACME-01")
def window_is_exact(ctx) -> Outcome:
    spec, dtype = get(NAME), torch.float64
    n = 16 if ctx.quick else 64
    generator = make_generator(ctx.seed)
    impls = spec.build(spec.config(), ctx.device, dtype, generator)
    window = spec.config()["window"]
    x = draw_inputs(spec, n, ctx.device, dtype, generator)[0].args[0]
    with torch.no_grad():
        probs, allowed = impls.reference.attention_probs(x)
    wrong_rows = int(((probs > 0) != allowed).any(dim=-1).sum())
    positions = sorted({0, window - 1, n // 2, n - 1})
    tol = spec.tolerances[dtype]
    decisions = [decide("rows_attending_outside_the_window", wrong_rows, at_most=0)]
    measured = {"rows_checked": int(probs.shape[0] * probs.shape[1] * probs.shape[2]), "wrong_rows": wrong_rows}
    for label in ("reference", "optimized"):
        changed = _outside_window_changes(getattr(impls, label), x, window, positions, generator, tol)
        measured[f"outputs_moved_by_tokens_outside_window_{label}"] = changed
        decisions.append(decide(f"outputs_moved_by_tokens_outside_window_{label}", changed, at_most=0))
    return Outcome(
        claimed="each token attends to exactly the window most recent tokens; nothing outside it changes its output",
        measured=measured,
        rule="Deterministic counts, each holds if 0: rows of the reference's attention probabilities whose "
             "non-zero weights are not exactly the window; for each twin, output elements at positions "
             f"{positions} that move (beyond the float64 tolerance) when every token outside their window is redrawn.",
        evidence=f"n={n}, window={window}, float64, on {ctx.device}: " + "; ".join(d.describe() for d in decisions),
        decisions=decisions)


@experiment("ACME-02")
def faster_than_reference(ctx) -> Outcome:
    spec = get(NAME)
    n = 256 if ctx.quick else 2048
    generator = make_generator(ctx.seed)
    impls = spec.build(spec.config(bench=True), ctx.device, torch.float32, generator)
    (x,) = draw_inputs(spec, n, ctx.device, torch.float32, generator, bench=True)[-1].args
    tol = spec.tolerances[torch.float32]
    with torch.no_grad():
        reference_out, optimized_out = impls.reference(x), impls.optimized(x)
    # No speed figure for a wrong answer: the twins must agree on this very input first.
    mismatched = int((~torch.isclose(optimized_out, reference_out, atol=10 * tol.atol, rtol=10 * tol.rtol)).sum())
    if mismatched:
        return Outcome(claimed="2x faster than the dense reference at n = 2048", measured={"mismatched": mismatched},
                       rule="precondition: optimized equals reference within 10x the float32 tolerance (count 0)",
                       evidence=f"{mismatched} output elements differ at n={n}: no speed figure for a wrong answer",
                       decisions=[decide("mismatched_output_elements", mismatched, at_most=0)])

    def timed(layer):
        def call():
            with torch.no_grad():
                return layer(x)
        return call

    decision, comparison = decide_speedup(timed(impls.reference), timed(impls.optimized), quantity=f"speedup_n{n}",
                                          at_least=2.0, min_run_time=0.01 if ctx.quick else 0.05,
                                          budget_s=ctx.decision_budget_s, device=ctx.device)
    return Outcome(
        claimed="2x faster than the dense reference at n = 2048",
        measured={"reference_ms": comparison.baseline.median_ms, "optimized_ms": comparison.candidate.median_ms},
        rule=f"Primary: reference time / optimized time of one forward at n={n} (bench config, float32), median of "
             "paired interleaved rounds; holds if the whole interval is >= 2.0, fails if wholly below, else "
             "inconclusive. Precondition: the twins agree within 10x the float32 tolerance on the timed input.",
        evidence=decision.describe(), decisions=[decision])
