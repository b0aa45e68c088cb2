"""Properties of the FAM family (FAM-01..06): reference == optimized on random models, handler bands
and rules, gating, schedulers, torch.optim conventions (closure, groups, state_dict round trip)."""
from __future__ import annotations

import dis
import inspect
import io
import math
import sys
import textwrap

import pytest
import torch
from hypothesis import example, given, strategies as st

from reprobench.measure import count_host_syncs
from reprobench_documents.optim import fam as fam_module, fam_corrected as fam_corrected_module
from reprobench_documents.optim.fam import FAM, document_momentum
from reprobench_documents.optim.fam_corrected import CorrectedFAM, CorrectedFAMOptimizer, corrected_add_handlers, \
    corrected_band_ranges, corrected_momentum, window_sample
from reprobench_documents.optim.fam_handlers import HANDLER_NAMES, band_matrix, band_ranges, document_handlers
from reprobench_documents.optim.fam_reference import FAMOptimizer, SparseGradientError, add_handlers_to_groups
from reprobench_documents.optim.fam_schedulers import FAMScheduler, FAMScheduler2, reference_lrs, warmup_cosine
from reprobench_documents.optim.simple_fam import SimpleFAM, SimpleFAMFast
from reprobench.registry import get

PAIRS = [(FAMOptimizer, FAM), (CorrectedFAMOptimizer, CorrectedFAM)]
SHAPES = st.sampled_from([(0,), (7,), (50,), (12, 9), (3, 4, 5), (130, 90), (10020,), (8, 4, 3, 3)])


def _run(cls, shapes, groups_of, handlers, grads, missing, config, seed, frozen=()):
    params = [torch.zeros(s, dtype=torch.float64).requires_grad_(i not in frozen) for i, s in enumerate(shapes)]
    groups = []
    for g, handler in enumerate(handlers):
        members = [p for p, owner in zip(params, groups_of) if owner == g]
        if members:
            groups.append({"params": members, "handler": handler} if handler else {"params": members, "names": [f"layer{g}.weight"]})
    opt = cls(groups, **config, generator=torch.Generator().manual_seed(seed))
    for t, step_grads in enumerate(grads):
        for i, (p, g) in enumerate(zip(params, step_grads)):
            p.grad = None if (t, i) in missing or i in frozen else g.clone()
        opt.step()
    return params, opt


@pytest.mark.parametrize("ref_cls,opt_cls", PAIRS, ids=["document", "corrected"])
@given(data=st.data())
def test_optimized_equals_reference_on_random_models(ref_cls, opt_cls, data):
    """Parameters, momentum buffers and band EMAs agree after N steps (frozen, None grads, 0-size)."""
    shapes = data.draw(st.lists(SHAPES, min_size=1, max_size=4), label="shapes")
    n_groups = data.draw(st.integers(1, 3), label="groups")
    groups_of = [data.draw(st.integers(0, n_groups - 1)) for _ in shapes]
    handlers = [data.draw(st.sampled_from(HANDLER_NAMES + (None,))) for _ in range(n_groups)]
    steps = data.draw(st.integers(1, 6), label="steps")
    config = dict(lr=data.draw(st.floats(0.0, 0.1)), alpha=data.draw(st.floats(0.0, 0.99)),
                  beta=data.draw(st.floats(0.0, 0.99)), n_bands=data.draw(st.integers(1, 10)),
                  fam_start_step=data.draw(st.integers(0, 3)), min_size=data.draw(st.integers(0, 60)),
                  weight_decay=data.draw(st.sampled_from([0.0, 0.1])))
    seed = data.draw(st.integers(0, 2**20))
    gen = torch.Generator().manual_seed(seed)
    grads = [[torch.randn(s, dtype=torch.float64, generator=gen).cumsum(-1) if (t + i) % 3 == 0 and len(s)
              else torch.randn(s, dtype=torch.float64, generator=gen) for i, s in enumerate(shapes)] for t in range(steps)]
    missing = {(t, i) for t in range(steps) for i in range(len(shapes)) if data.draw(st.booleans()) and t % 2}
    frozen = {0} if data.draw(st.booleans()) else set()
    ref_p, ref = _run(ref_cls, shapes, groups_of, handlers, grads, missing, config, seed, frozen)
    opt_p, opt = _run(opt_cls, shapes, groups_of, handlers, grads, missing, config, seed, frozen)
    for a, b in zip(ref_p, opt_p):
        torch.testing.assert_close(b, a, atol=1e-9, rtol=1e-7)
        if a in ref.state:
            torch.testing.assert_close(opt.state[b]["step"], ref.state[a]["step"])
            torch.testing.assert_close(opt.state[b]["exp_avg"], ref.state[a]["exp_avg"], atol=1e-9, rtol=1e-7)
            history = ref.state[a]["freq_history"]
            if history:
                expected = torch.tensor([history[f"band_{i}"] for i in range(len(history))], dtype=torch.float64)
                torch.testing.assert_close(opt.state[b]["band_ema"], expected, atol=1e-5, rtol=1e-4)
            else:
                assert "band_ema" not in opt.state[b]


@pytest.mark.parametrize("kind", HANDLER_NAMES)
@given(length=st.integers(1, 300), n_bands=st.integers(1, 12), seed=st.integers(0, 999))
def test_band_matrix_replays_handler_analyze(kind, length, n_bands, seed):
    sample = torch.randn(length, generator=torch.Generator().manual_seed(seed))
    try:
        expected = torch.tensor(document_handlers()[kind].analyze(sample, n_bands))
    except ZeroDivisionError:
        assert band_matrix(kind, length // 2 + 1, n_bands) is None
        return
    power = torch.fft.rfft(sample).abs()
    power = power / (power.sum() + 1e-8)
    torch.testing.assert_close(power @ band_matrix(kind, length // 2 + 1, n_bands), expected, atol=1e-6, rtol=1e-5)
    assert (expected >= 0).all() and expected.sum() <= 1 + 1e-6  # non-negative, sum <= 1


@pytest.mark.parametrize("kind", HANDLER_NAMES)
@given(n_freqs=st.integers(1, 600), n_bands=st.integers(1, 16))
def test_corrected_bands_cover_every_bin_once(kind, n_freqs, n_bands):
    ranges = corrected_band_ranges(kind, n_freqs, n_bands)
    assert len(ranges) == n_bands
    covered = [i for s, e in ranges for i in range(s, e)]
    assert covered == list(range(n_freqs))


def test_document_bands_drop_top_bins_and_attention_high_bands_are_not_finer():
    """Documented defects the reference keeps (FAM-01)."""
    ranges = band_ranges("default", 501, 8)
    assert ranges[-1][1] == 496  # bins 496..500 never counted
    att = band_ranges("attention", 501, 8)
    widths = [e - s for s, e in att]
    assert widths[:4] == [62] * 4 and widths[4:] == [62] * 4  # same width, not finer
    corrected = [e - s for s, e in corrected_band_ranges("attention", 501, 8)]
    assert max(corrected[2:]) < min(corrected[:2])


@pytest.mark.parametrize("kind", HANDLER_NAMES)
@given(bands=st.lists(st.floats(0, 1), min_size=1, max_size=12), alpha=st.floats(0.0, 0.999))
@example(bands=[0, 0, 0, 0, 0, 0, 1, 1], alpha=0.95)  # every "raise" branch, above its cap
@example(bands=[0, 0, 1, 1, 1, 0, 0, 0], alpha=0.95)  # conv's mid branch
@example(bands=[1, 0, 0, 0, 0, 0, 0, 0], alpha=0.5)  # attention's "lower" branch below its floor
def test_batched_momentum_rules_equal_the_handlers(kind, bands, alpha):
    batched = document_momentum(kind, torch.tensor([bands, bands], dtype=torch.float64), alpha)
    assert batched.tolist() == [document_handlers_value(kind, bands, alpha)] * 2


@pytest.mark.parametrize("kind", HANDLER_NAMES)
@given(bands=st.lists(st.floats(0, 1), min_size=1, max_size=12), alpha=st.floats(0.85, 0.9))
def test_document_momentum_stays_within_caps(kind, bands, alpha):
    """For the documented base range the rules keep alpha_eff in [0.85, 0.98] (FAM-01)."""
    value = document_handlers()[kind].get_adaptive_momentum(bands, alpha)
    assert 0.85 - 1e-12 <= value <= 0.98 + 1e-12


@pytest.mark.parametrize("kind", HANDLER_NAMES)
@given(bands=st.lists(st.floats(0, 1), min_size=1, max_size=12), alpha=st.floats(0.0, 0.999))
def test_corrected_momentum_moves_in_the_documented_direction(kind, bands, alpha):
    t = torch.tensor([bands], dtype=torch.float64)
    value = float(corrected_momentum(kind, t, alpha)[0])
    lowering = kind == "attention" and int(t.argmax()) < len(bands) // 4
    assert (value <= alpha) if lowering else (value >= alpha)
    assert value == document_handlers_value(kind, bands, alpha) or alpha < 0.85 or alpha > 0.9


def document_handlers_value(kind, bands, alpha):
    return document_handlers()[kind].get_adaptive_momentum(bands, alpha)


def test_document_rules_move_momentum_the_wrong_way_outside_the_caps():
    assert document_handlers_value("default", [0, 0, 1, 1], 0.99) == 0.95  # "more smoothing" lowers it
    assert document_handlers_value("attention", [1, 0, 0, 0], 0.5) == 0.85  # "less smoothing" raises it


@pytest.mark.parametrize("cls", [FAMOptimizer, FAM, CorrectedFAM])
@given(numel=st.integers(1, 80), steps=st.integers(1, 6), seed=st.integers(0, 999))
def test_fam_is_ema_momentum_before_start_and_for_small_tensors(cls, numel, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    grads = torch.randn(steps, numel, dtype=torch.float64, generator=gen)
    p = torch.zeros(numel, dtype=torch.float64, requires_grad=True)
    opt = cls([p], lr=0.1, alpha=0.8, fam_start_step=3 if numel > 40 else 0, min_size=40)
    buf, expected = torch.zeros(numel, dtype=torch.float64), torch.zeros(numel, dtype=torch.float64)
    for t in range(min(steps, 3)):
        p.grad = grads[t].clone()
        opt.step()
        buf = 0.8 * buf + 0.2 * grads[t]
        expected -= 0.1 * buf
    torch.testing.assert_close(p.detach(), expected, atol=1e-12, rtol=1e-10)


def test_handler_choice_by_group_names():
    names = {"conv": ["encoder.conv1.weight"], "attention": ["blocks.0.self_attn.q_proj.weight"],
             "embedding": ["tok_embed.weight"], "default": ["mlp.fc1.weight"]}
    document = {k: add_handlers_to_groups([{"params": [], "names": v}])[0]["handler"] for k, v in names.items()}
    corrected = {k: corrected_add_handlers([{"params": [], "names": v}])[0]["handler"] for k, v in names.items()}
    assert corrected == {k: k for k in names}
    # the document's shadowed `name` sends every named non-conv group to 'attention' (FAM-02)
    assert document == {"conv": "conv", "attention": "attention", "embedding": "attention", "default": "attention"}
    assert add_handlers_to_groups([{"params": []}])[0]["handler"] == "default"


@pytest.mark.parametrize("cls", [FAM, CorrectedFAM, FAMOptimizer, SimpleFAMFast])
def test_state_dict_round_trip_mid_training(cls, tmp_path):
    """Save after 4 steps, load (weights_only=True) into a fresh optimizer: same trajectory."""
    gen = torch.Generator().manual_seed(0)
    grads = [[torch.randn(s, generator=gen) for s in ((130, 90), (300,), (10))] for _ in range(8)]
    kw = {} if cls is SimpleFAMFast else dict(fam_start_step=1, min_size=50, generator=torch.Generator().manual_seed(3))

    def fresh():
        params = [torch.zeros(g.shape, requires_grad=True) for g in grads[0]]
        return params, cls([{"params": params[:2], "handler": "attention"}, {"params": params[2:]}], lr=0.05, **kw) \
            if cls is not SimpleFAMFast else cls([{"params": params[:2]}, {"params": params[2:]}], lr=0.05)

    def run(params, opt, steps):
        for t in steps:
            for p, g in zip(params, grads[t]):
                p.grad = g.clone()
            opt.step()

    params, opt = fresh()
    run(params, opt, range(4))
    buffer = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in params], "optim": opt.state_dict()}, buffer)
    run(params, opt, range(4, 8))
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    params2, opt2 = fresh()
    with torch.no_grad():
        for p, v in zip(params2, saved["params"]):
            p.copy_(v)
    opt2.load_state_dict(saved["optim"])
    run(params2, opt2, range(4, 8))
    for a, b in zip(params, params2):
        torch.testing.assert_close(b, a, atol=0, rtol=0)


@pytest.mark.parametrize("cls", [FAM, CorrectedFAM])
def test_torch_optim_conventions(cls):
    p = torch.randn(20, 20, requires_grad=True)
    q = torch.randn(3, requires_grad=True)  # never gets a gradient
    opt = cls([p, q], lr=0.1, fam_start_step=0, min_size=10)
    loss = opt.step(lambda: (p ** 2).sum().backward() or (p ** 2).sum())
    assert torch.is_tensor(loss) and q.grad is None and q not in opt.state
    opt.zero_grad()
    assert p.grad is None
    opt.add_param_group({"params": [torch.randn(5, requires_grad=True)], "lr": 0.2})
    assert opt.param_groups[-1]["handler"] == "default" and opt.param_groups[-1]["alpha"] == 0.9


def test_foreach_flag_gives_the_same_result():
    results = []
    for foreach in (True, False):
        gen = torch.Generator().manual_seed(1)
        p = torch.zeros(40, 30, dtype=torch.float64, requires_grad=True)
        opt = FAM([p], lr=0.1, fam_start_step=0, min_size=10, weight_decay=0.1, foreach=foreach,
                  generator=torch.Generator().manual_seed(0))
        for _ in range(3):
            p.grad = torch.randn(40, 30, dtype=torch.float64, generator=gen)
            opt.step()
        results.append(p.detach())
    torch.testing.assert_close(results[0], results[1], atol=0, rtol=0)


def test_step_host_syncs():
    p = torch.randn(130, 90, requires_grad=True)
    for cls, expect_zero in ((FAM, True), (CorrectedFAM, True), (SimpleFAMFast, True), (FAMOptimizer, False)):
        kw = {} if cls is SimpleFAMFast else dict(fam_start_step=0, min_size=10)
        opt = cls([p], lr=0.01, **kw)
        p.grad = torch.randn(130, 90)
        for _ in range(2 if cls is not SimpleFAMFast else 102):
            syncs = count_host_syncs(opt.step)
        assert (syncs == 0) == expect_zero, f"{cls.__name__}: {syncs} host syncs per step"


@pytest.mark.parametrize("cls", [FAMOptimizer, FAM, SimpleFAM, SimpleFAMFast])
def test_bad_arguments_and_sparse_gradients(cls):
    p = torch.zeros(4, requires_grad=True)
    for kwargs, match in ((dict(lr=-1.0), "lr"), (dict(alpha=1.0), "alpha"), (dict(beta=-0.5), "beta")):
        with pytest.raises(ValueError, match=match):
            cls([p], **kwargs)
    if cls in (FAMOptimizer, FAM):
        for kwargs, match in ((dict(eps=-1.0), "eps"), (dict(n_bands=0), "n_bands")):
            with pytest.raises(ValueError, match=match):
                cls([p], **kwargs)
        with pytest.raises(ValueError, match="handler must be one of"):
            cls([{"params": [p], "handler": "wavelet"}])
    opt = cls([p])
    p.grad = torch.zeros(4).to_sparse()
    with pytest.raises(SparseGradientError, match="sparse"):
        opt.step()


@given(alpha=st.floats(0.0, 0.92), steps=st.integers(100, 104), seed=st.integers(0, 99))
def test_simple_fam_rule(alpha, steps, seed):
    """After 100 steps, for tensors over 1000 elements, alpha_eff = min(0.98, alpha + 0.05 * ratio)."""
    g = torch.randn(1200, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    p = torch.zeros(1200, dtype=torch.float64, requires_grad=True)
    opt = SimpleFAMFast([p], lr=0.0, alpha=alpha)
    for _ in range(steps):
        p.grad = g.clone()
        opt.step()
    power = torch.fft.rfft(g[:1000].float()).abs()
    ratio = float(power[250:].sum() / (power.sum() + 1e-8))
    buf = g * (1 - alpha ** 100)  # EMA of a constant gradient after 100 plain steps
    for _ in range(steps - 100):
        eff = min(0.98, alpha + 0.05 * ratio)
        buf = eff * buf + (1 - eff) * g
    torch.testing.assert_close(opt.state[p]["exp_avg"], buf, atol=1e-6, rtol=1e-6)


# --- schedulers -----------------------------------------------------------------------------------

@given(warmup=st.integers(1, 20), extra=st.integers(1, 30), base=st.floats(1e-4, 1.0))
def test_fam_scheduler_shape(warmup, extra, base):
    total = warmup + extra
    lrs = reference_lrs(lambda o: FAMScheduler(o, warmup, total, warmup_start_lr=1e-8, eta_min=1e-6), base,
                        total + 1, torch.float64, "cpu")
    assert math.isclose(lrs[0], 1e-8, abs_tol=1e-15) and math.isclose(lrs[warmup], base, rel_tol=1e-12)
    assert math.isclose(lrs[total], 1e-6, rel_tol=1e-9, abs_tol=1e-15)
    assert (lrs[warmup:].diff() <= 1e-15).all() and (lrs[:warmup + 1].diff() >= -1e-15).all()
    closed = warmup_cosine(torch.arange(total + 1, dtype=torch.float64), base, warmup, warmup, total, 1e-8, 1e-6)
    torch.testing.assert_close(closed, lrs, atol=1e-12, rtol=1e-10)


@given(warmup=st.integers(1, 10), plateau=st.integers(0, 10), extra=st.integers(1, 20), base=st.floats(1e-3, 1.0))
def test_fam_scheduler2_shape(warmup, plateau, extra, base):
    decay, total = warmup + plateau, warmup + plateau + extra
    lrs = reference_lrs(lambda o: FAMScheduler2(o, warmup, total, decay, 1e-6, 1e-6), base, total + 1,
                        torch.float64, "cpu")
    assert math.isclose(lrs[0], 1e-6, rel_tol=1e-12) and math.isclose(lrs[warmup], base + (1e-8 if plateau == 0 else 0),
                                                                       rel_tol=1e-12)
    assert math.isclose(lrs[total], 1e-6 + 1e-8, rel_tol=1e-9)
    assert (lrs[decay:].diff() <= 1e-15).all()
    assert (lrs[1:] - lrs[:-1]).abs().max() <= max(base / warmup, base * math.pi / (2 * extra)) + 1e-7  # no jumps


def test_scheduler_edge_cases():
    # warmup == max_epochs: the document divides by zero; the closed form stays at eta_min
    with pytest.raises(ZeroDivisionError):
        reference_lrs(lambda o: FAMScheduler(o, 5, 5), 0.1, 7, torch.float64, "cpu")
    closed = warmup_cosine(torch.arange(8.0, dtype=torch.float64), 0.1, 5, 5, 5, 1e-8, 1e-8)
    assert torch.isfinite(closed).all() and (closed[5:] == 1e-8).all()
    # past the end the cosine comes back up (not held at eta_min)
    lrs = reference_lrs(lambda o: FAMScheduler(o, 2, 10), 0.1, 15, torch.float64, "cpu")
    assert lrs[14] > lrs[10] + 1e-3


SCHEDULER_TOLERANCES = {torch.float64: dict(atol=1e-12, rtol=1e-10), torch.float32: dict(atol=1e-8, rtol=1e-4),
                        torch.float16: dict(atol=1e-7, rtol=2e-3), torch.bfloat16: dict(atol=1e-8, rtol=1.6e-2)}


@st.composite
def scheduler_cases(draw):
    """A registered scheduler with a random config, and epochs with any offset (negative and past
    the end too), any real dtype, fractional or whole, 0-d, 1-d or 2-d."""
    name = draw(st.sampled_from(["optim.fam_scheduler", "optim.fam_scheduler2"]))
    warmup, extra = draw(st.integers(0, 12)), draw(st.integers(1, 40))
    base = draw(st.floats(1e-4, 1.0))
    if name == "optim.fam_scheduler":
        config = dict(base_lr=base, warmup_epochs=warmup, max_epochs=warmup + extra, warmup_start_lr=1e-8, eta_min=1e-8)
    else:
        decay = draw(st.none() | st.integers(warmup, warmup + 10))
        total = (warmup if decay is None else decay) + extra
        config = dict(base_lr=base, warmup_steps=warmup, total_steps=total, decay_start_step=decay,
                      warmup_start_lr=1e-6, eta_min=1e-6)
    dtype = draw(st.sampled_from([torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.float32, torch.float64]))
    offset = draw(st.integers(-20, 200))
    n = draw(st.integers(1, 30))
    epochs = torch.arange(offset, offset + n, dtype=torch.float64)
    if dtype.is_floating_point and draw(st.booleans(), label="fractional"):
        epochs = epochs + torch.rand(n, dtype=torch.float64, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    epochs = epochs[torch.randperm(n, generator=torch.Generator().manual_seed(n))].to(dtype)
    shape = draw(st.sampled_from(["1d", "2d", "0d"]))
    epochs = epochs[:1].reshape(()) if shape == "0d" else epochs.reshape(1, n) if shape == "2d" else epochs
    return name, config, epochs


@given(case=scheduler_cases())
@example(case=("optim.fam_scheduler", dict(base_lr=0.1, warmup_epochs=5, max_epochs=20, warmup_start_lr=1e-8,
                                            eta_min=1e-8), torch.arange(5, 10, dtype=torch.float64)))
@example(case=("optim.fam_scheduler2", dict(base_lr=0.1, warmup_steps=4, total_steps=20, decay_start_step=8,
                                             warmup_start_lr=1e-6, eta_min=1e-6), torch.arange(0, 10)))
def test_scheduler_twins_agree_on_any_epochs(case):
    """The lr of epoch e is the document's get_lr() at last_epoch = e (impl/reprobench_documents/optim/fam_schedulers.py):
    both twins read the epochs' values (not their positions), keep their shape, give lrs in the
    epochs' float dtype (the default one for integer epochs) and NaN where no lr is defined."""
    name, config, epochs = case
    spec = get(name)
    impls = spec.build(config, torch.device("cpu"), torch.float64, torch.Generator().manual_seed(0))
    ref, opt = impls.reference(epochs), impls.optimized(epochs)
    lr_dtype = epochs.dtype if epochs.is_floating_point() else torch.get_default_dtype()
    for out in (ref, opt):
        assert out.dtype == lr_dtype and out.shape == epochs.shape
    undefined = ~torch.isfinite(epochs.double()) | (epochs.double() < 0)
    assert torch.equal(ref.isnan(), undefined) and torch.equal(opt.isnan(), undefined)
    tol = dict(SCHEDULER_TOLERANCES[lr_dtype])
    # The closed form runs in at least float32. Its rounding error grows with the epoch's magnitude
    # times the schedule's steepest slope, while the reference computes in float64.
    warmup = config.get("warmup_epochs", config.get("warmup_steps"))
    total = config.get("max_epochs", config.get("total_steps"))
    decay = warmup if config.get("decay_start_step") is None else config["decay_start_step"]
    slope = max(config["base_lr"] / max(warmup, 1), math.pi * config["base_lr"] / (2 * (total - decay)))
    largest = float(epochs.double()[~undefined].abs().max()) if (~undefined).any() else 0.0
    tol["atol"] += 4 * torch.finfo(torch.promote_types(lr_dtype, torch.float32)).eps * (1 + largest) * slope
    torch.testing.assert_close(opt, ref, equal_nan=True, **tol)
    # values, not positions: the whole-number epochs equal a training loop stepped that many times
    whole = epochs.double()[~undefined & (epochs.double() == epochs.double().round())]
    if whole.numel():
        make = (lambda o: FAMScheduler(o, **{k: v for k, v in config.items() if k != "base_lr"})) \
            if name == "optim.fam_scheduler" else (lambda o: FAMScheduler2(o, **{k: v for k, v in config.items() if k != "base_lr"}))
        stepped = reference_lrs(make, config["base_lr"], int(whole.max()) + 1, torch.float64, "cpu")
        torch.testing.assert_close(ref.double()[~undefined & (epochs.double() == epochs.double().round())],
                                   stepped[whole.long()].to(lr_dtype).double(), atol=0, rtol=0)


@pytest.mark.parametrize("name", ["optim.fam_scheduler", "optim.fam_scheduler2"])
@pytest.mark.parametrize("epochs, error, match", [
    (torch.tensor([True, False]), TypeError, r"epochs must hold real numbers.*bool"),
    (torch.zeros(3, dtype=torch.complex64), TypeError, r"epochs must hold real numbers.*complex64"),
    (torch.zeros(3, device="meta"), ValueError, r"epochs must be on a device with data"),
    (torch.arange(3).to_sparse(), TypeError, r"epochs must be a dense"),
    ([0, 1, 2], TypeError, r"epochs must be a torch.Tensor"),
])
def test_scheduler_twins_reject_what_has_no_epochs(name, epochs, error, match):
    spec = get(name)
    impls = spec.build(spec.config(), torch.device("cpu"), torch.float64, torch.Generator().manual_seed(0))
    for twin in (impls.reference, impls.optimized):
        with pytest.raises(error, match=match):
            twin(epochs)


@pytest.mark.parametrize("name, overrides, match", [
    ("optim.fam_scheduler", dict(max_epochs=5), r"max_epochs must be greater than warmup_epochs"),
    ("optim.fam_scheduler2", dict(total_steps=8), r"total_steps must be greater than decay_start_step"),
    ("optim.fam_scheduler2", dict(decay_start_step=None, warmup_steps=20), r"total_steps must be greater than warmup_steps"),
])
def test_scheduler_configs_the_reference_cannot_run_are_rejected(name, overrides, match):
    """The document divides by zero when the cosine phase has no length; neither twin takes that config."""
    spec = get(name)
    with pytest.raises(ValueError, match=match):
        spec.build(spec.config(overrides), torch.device("cpu"), torch.float64, torch.Generator().manual_seed(0))


# --- every path of the optimized step, compared with the reference ---------------------------------
#
# The registry's config (alpha 0.9 and 0.8) never reaches the momentum caps: min(0.95, alpha + 0.05)
# equals alpha + 0.05 there, so a twin without the cap agrees with the reference. Here each handler
# meets alphas below the attention floor (0.5), past every document cap (0.93) and past the caps'
# "wrong direction" (0.97, where the corrected rules clamp), with weight decay on and off. The
# gradients are shaped so that every rule's branch is taken: smooth (low bands), white (flat), a
# sine at bin 20 (conv's mid bands), a sine at the middle bin and an alternating sign (top band).
# The parameters are unsampled (600), sampled 1-D (10050) and 2-D (110 x 100), below min_size (30),
# and one has zero gradients (the rFFT power total is 0).

BRANCH_GROUPS = [(kind, alpha, wd) for kind in HANDLER_NAMES for alpha, wd in ((0.5, 0.1), (0.93, 0.0), (0.93, 0.1), (0.97, 0.0))]
BRANCH_SHAPES = [(600,)] * 6 + [(10050,), (110, 100), (30,)]
BRANCH_STEPS = 6


def _shaped_gradient(kind_index, shape, step, generator):
    n = math.prod(shape)
    k = torch.arange(n, dtype=torch.float64)
    noise = torch.randn(n, dtype=torch.float64, generator=generator)
    smooth = noise.cumsum(0) / n ** 0.5
    spectra = [smooth, noise, torch.sin(2 * math.pi * 20 * k / n) + 0.1 * noise,
               torch.sin(math.pi * k / 2) + 0.1 * noise, smooth * (-1) ** k, torch.zeros(n, dtype=torch.float64)]
    return spectra[kind_index % len(spectra)].reshape(shape) * (1 + 0.1 * step)


def _branch_run(cls, groups_spec, record=None, **extra):
    gen = torch.Generator().manual_seed(5)
    params, groups = [], []
    for kind, alpha, wd in groups_spec:
        members = [torch.randn(s, dtype=torch.float64, generator=gen).requires_grad_() for s in BRANCH_SHAPES]
        params.append(members)
        groups.append(dict(params=members, handler=kind, alpha=alpha, weight_decay=wd))
    groups.append(dict(params=[torch.randn(600, dtype=torch.float64, generator=gen).requires_grad_()],
                       handler="attention", n_bands=1))  # the document's ZeroDivisionError -> plain momentum
    params.append(groups[-1]["params"])
    groups.append(dict(params=[torch.zeros(5, dtype=torch.float64)]))  # never has a gradient
    opt = cls(groups, lr=0.01, beta=0.9, n_bands=8, fam_start_step=2, min_size=64,
              generator=torch.Generator().manual_seed(3), **extra)
    if record is not None:  # spy on the reference's handlers: which rule each call took
        for kind, handler in opt.handlers.items():
            def spy(bands, alpha, kind=kind, rule=handler.get_adaptive_momentum):
                record.add(_branch(kind, bands, alpha))
                return rule(bands, alpha)
            handler.get_adaptive_momentum = spy
    grad_gen = torch.Generator().manual_seed(6)
    for t in range(BRANCH_STEPS):
        for members in params:
            for i, p in enumerate(members):
                p.grad = _shaped_gradient(i, p.shape, t, grad_gen)
        opt.step()
    return [p for members in params for p in members], opt


def _branch(kind, bands, alpha):
    """(handler, rule, whether its cap or floor decided the value) for the document's rules."""
    n = len(bands)
    if kind == "attention":
        top = max(range(n), key=lambda i: (bands[i], -i))
        if top < n // 4:
            return kind, "low", alpha - 0.05 < 0.85
        return (kind, "high", alpha + 0.08 > 0.98) if top > 3 * n // 4 else (kind, "base", False)
    if kind == "conv":
        if sum(bands[n // 4:(3 * n) // 4]) > 0.4:
            return kind, "mid", alpha + 0.07 > 0.97
        return (kind, "high", alpha + 0.05 > 0.95) if sum(bands[(3 * n) // 4:]) > 0.3 else (kind, "base", False)
    if kind == "embedding":
        return (kind, "high", alpha + 0.08 > 0.98) if sum(bands[(3 * n) // 4:]) > 0.2 else (kind, "base", False)
    return (kind, "high", alpha + 0.05 > 0.95) if sum(bands[n // 2:]) > 0.3 else (kind, "base", False)


EVERY_BRANCH = {(k, r, c) for k, rules in (("default", ("high",)), ("embedding", ("high",)), ("conv", ("mid", "high")),
                                            ("attention", ("low", "high"))) for r in rules for c in (True, False)} \
    | {(k, "base", False) for k in HANDLER_NAMES}


def _assert_twins_agree(ref_cls, opt_cls, **extra):
    branches = set()
    ref_params, ref = _branch_run(ref_cls, BRANCH_GROUPS, record=branches)
    opt_params, opt = _branch_run(opt_cls, BRANCH_GROUPS, **extra)
    for i, (a, b) in enumerate(zip(ref_params, opt_params)):
        torch.testing.assert_close(b, a, atol=1e-9, rtol=1e-7, msg=lambda m, i=i: f"param {i}: {m}")
        torch.testing.assert_close(opt.state[b]["exp_avg"], ref.state[a]["exp_avg"], atol=1e-9, rtol=1e-7)
    return branches


def _executable_lines(code):
    lines = {line for _, line in dis.findlinestarts(code) if line and line != code.co_firstlineno}
    for const in code.co_consts:
        if inspect.iscode(const):
            lines |= _executable_lines(const)
    return lines


def _lines_run(action, functions):
    """Lines of ``functions`` that ran during action(), and the lines they have."""
    codes = [inspect.unwrap(f).__code__ for f in functions]
    wanted = {(c.co_filename, line) for c in codes for line in _executable_lines(c)}
    files = {c.co_filename for c in codes}
    seen = set()

    def local(frame, event, arg):
        if event == "line":
            seen.add((frame.f_code.co_filename, frame.f_lineno))
        return local

    sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename in files else None)
    try:
        action()
    finally:
        sys.settrace(None)
    return seen & wanted, wanted


OPTIMIZED_PATHS = {
    FAM: [FAM._group_step, FAM._band_matrix, FAM._momentum, document_momentum, fam_module._foreach],
    CorrectedFAM: [FAM._group_step, CorrectedFAM._band_matrix, CorrectedFAM._momentum, corrected_momentum,
                   document_momentum, fam_module._foreach, window_sample],
}


@pytest.mark.parametrize("ref_cls,opt_cls", PAIRS, ids=["document", "corrected"])
def test_every_path_of_the_optimized_step_matches_the_reference(ref_cls, opt_cls):
    """Both twins on BRANCH_GROUPS, with foreach on and off: every line of the optimized step runs,
    every rule of every handler is taken with its cap (or floor) deciding and not deciding, and the
    results agree."""
    branches = set()

    def both_modes():
        for foreach in (True, False):
            branches.update(_assert_twins_agree(ref_cls, opt_cls, foreach=foreach))

    ran, lines = _lines_run(both_modes, OPTIMIZED_PATHS[opt_cls])
    assert branches == EVERY_BRANCH, f"rules never taken: {sorted(EVERY_BRANCH - branches)}"
    missed = {line for _, line in lines - ran} - (_fallback_lines() if opt_cls is CorrectedFAM else set())
    assert not missed, f"lines of the optimized step never run: {sorted(missed)}"


def _fallback_lines() -> set[int]:
    """FAM's 'band matrix is None' branch (the document's n_bands = 1 ZeroDivisionError): the
    corrected bands always exist, so CorrectedFAM cannot reach it."""
    source, start = inspect.getsourcelines(FAM._group_step)
    at = next(i for i, text in enumerate(source) if "the reference's except-branch" in text)
    return {start + at, start + at + 1}


CAP_MUTANTS = [  # (module, function, the cap as written, the same rule without it)
    (fam_module, "document_momentum", "min(0.95, alpha + 0.05)", "alpha + 0.05"),  # default's and conv's high cap
    (fam_module, "document_momentum", "min(0.97, alpha + 0.07)", "alpha + 0.07"),  # conv's mid cap
    (fam_module, "document_momentum", "min(0.98, alpha + 0.08)", "alpha + 0.08"),  # attention's/embedding's cap
    (fam_module, "document_momentum", "max(0.85, alpha - 0.05)", "alpha - 0.05"),  # attention's floor
    (fam_corrected_module, "corrected_momentum", "effective.clamp(min=alpha)", "effective"),  # "never lower"
    (fam_corrected_module, "corrected_momentum", "effective.clamp(max=alpha)", "effective"),  # "never higher"
]


@pytest.mark.parametrize("module, name, cap, uncapped", CAP_MUTANTS, ids=[f"{m[1]}:{m[2]}" for m in CAP_MUTANTS])
def test_a_twin_without_a_cap_is_caught(monkeypatch, module, name, cap, uncapped):
    """Mutation check of the test above: the optimized twin with one cap or clamp removed from its
    source disagrees with the reference on BRANCH_GROUPS. On the registry's config it would not."""
    source = textwrap.dedent(inspect.getsource(getattr(module, name)))
    assert cap in source, f"{name} no longer contains {cap!r}: update CAP_MUTANTS"
    namespace = dict(vars(module))
    exec(compile(source.replace(cap, uncapped), module.__file__, "exec"), namespace)  # noqa: S102
    monkeypatch.setattr(module, name, namespace[name])
    opt_cls = FAM if name == "document_momentum" else CorrectedFAM
    ref_cls = FAMOptimizer if opt_cls is FAM else CorrectedFAMOptimizer
    with pytest.raises(AssertionError):
        _assert_twins_agree(ref_cls, opt_cls)
