"""torch.optim conformance of every optimizer in the registry, both twins.
The style follows torch's OptimizerInfo tests (test/optim/test_optim.py): each test
is written once and expanded over every registered optimizer component × {reference, optimized}.

A twin is an :class:`~reprobench_documents.optim.fam_runs.OptimizerRun`, and ``run.make(groups)`` builds the
optimizer exactly as the registry's runs do. The model is the registry's layout (fam_runs.LAYOUT):
conv, attention, embedding and default groups, parameters large enough to be sampled, a small one, an
empty one, a frozen one, and a gradient that is missing at some steps.

Copies (deepcopy, pickle, and state_dict through ``torch.save``/``torch.load(weights_only=True)``) are
taken fresh, on the step just before the adaptive path starts, and while it runs (band EMA in the
state). Then the original and the copy step on the same gradients, and their parameters and state
must be bit-identical. FAM samples large gradients with its own generator, so a copy that lost,
reset or shared the generator would draw other samples and fail this check.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import io
import math
import pickle

import pytest
import torch

from reprobench_documents.optim.fam_runs import FROZEN, SHAPES, OptimizerRun, make_groups, optimizer_samples
from reprobench.registry import list_components, make_generator

SEED = 1234
DTYPE = torch.float64


def _components():
    """(name, Implementations) for every registered component whose twins are optimizer runs."""
    found = []
    for spec in list_components("optim.*"):
        impls = spec.build(spec.config(), torch.device("cpu"), DTYPE, make_generator(SEED))
        if isinstance(impls.reference, OptimizerRun) or isinstance(impls.optimized, OptimizerRun):
            found.append((spec.name, impls))
    return found


COMPONENTS = _components()
RUNS = [pytest.param(getattr(impls, label), id=f"{name}-{label}") for name, impls in COMPONENTS
        for label in ("reference", "optimized")]
PAIRS = [pytest.param(impls, id=name) for name, impls in COMPONENTS]


def test_every_optimizer_component_is_covered():
    """The suite must not silently stop applying: every component fed optimizer samples is here, with
    both twins."""
    expected = {spec.name for spec in list_components("optim.*") if spec.sample_inputs is optimizer_samples}
    assert len(expected) >= 3 and expected == {name for name, _ in COMPONENTS}
    for name, impls in COMPONENTS:
        assert isinstance(impls.reference, OptimizerRun) and isinstance(impls.optimized, OptimizerRun), name


# --- the model: parameters, per-step gradients, comparisons --------------------------------------

def _params(dtype=DTYPE):
    gen = make_generator(SEED)
    return [torch.randn(s, dtype=dtype, generator=gen).requires_grad_(i not in FROZEN) for i, s in enumerate(SHAPES)]


def _grads(t, dtype=DTYPE):
    """Step t's gradients, the same for every copy; None for the frozen parameter and for a rotating
    one that has no gradient at this step."""
    gen = make_generator(SEED + 1 + t)
    grads = [torch.randn(s, dtype=dtype, generator=gen) for s in SHAPES]
    return [None if (i in FROZEN or (t + i) % 5 == 4) else g for i, g in enumerate(grads)]


def _params_of(opt):
    return [p for group in opt.param_groups for p in group["params"]]


def _step(opt, t, without=()):
    for i, (p, g) in enumerate(zip(_params_of(opt), _grads(t))):
        p.grad = None if (g is None or i in without) else g
    opt.step()


def _assert_same(a, b, where):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: values differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _assert_identical(opt, other):
    """Same parameter values and the same per-parameter state, bit for bit."""
    for i, (p, q) in enumerate(zip(_params_of(opt), _params_of(other), strict=True)):
        _assert_same(p.detach(), q.detach(), f"params[{i}]")
        _assert_same(opt.state.get(p, {}), other.state.get(q, {}), f"state[params[{i}]]")


def _snapshot(opt):
    return [(p.detach().clone(), copy.deepcopy(opt.state.get(p, {}))) for p in _params_of(opt)]


# --- copies ------------------------------------------------------------------------------------

def _through_state_dict(run, opt):
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in _params_of(opt)], "optim": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    params = [t.clone().requires_grad_(i not in FROZEN) for i, t in enumerate(saved["params"])]
    fresh = run.make(make_groups(params))
    fresh.load_state_dict(saved["optim"])
    return fresh


COPIES = {
    "deepcopy": lambda run, opt: copy.deepcopy(opt),
    "pickle": lambda run, opt: pickle.loads(pickle.dumps(opt)),
    "state_dict": _through_state_dict,
}


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("at", ["fresh", "before_adaptive", "adaptive"])
@pytest.mark.parametrize("run", RUNS)
def test_copy_steps_identically(run, at, how):
    steps_before = {"fresh": 0, "before_adaptive": run.adaptive_from - 1, "adaptive": run.adaptive_from + 1}[at]
    opt = run.make(make_groups(_params()))
    for t in range(steps_before):
        _step(opt, t)
    copied = COPIES[how](run, opt)
    for optimizer in (opt, copied):  # one after the other: a shared generator or buffer would show
        for t in range(steps_before, steps_before + 3):
            _step(optimizer, t)
    _assert_identical(opt, copied)


def _public(opt):
    return {k: v for k, v in vars(opt).items() if not k.startswith("_")}


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("run", RUNS)
def test_copy_keeps_every_public_attribute(run, how):
    """As torch's test_deepcopy_copies_all_public_attrs: torch.optim pickles only defaults, state and
    param_groups; FAM's generator, handlers and flags must come along, and generators not be shared."""
    opt = run.make(make_groups(_params()))
    copied = COPIES[how](run, opt)
    assert _public(copied).keys() == _public(opt).keys()
    assert copied.defaults == opt.defaults
    for name, value in _public(opt).items():
        if isinstance(value, torch.Generator):
            assert copied.__dict__[name] is not value, f"{name} is shared with the copy"
            assert torch.equal(copied.__dict__[name].get_state(), value.get_state()), f"{name} state differs"
        elif isinstance(value, (bool, int, float, str, type(None))):
            assert copied.__dict__[name] == value, name


# --- construction, like torch.optim -------------------------------------------------------------

def _torch_error(make):
    with pytest.raises(Exception) as caught:
        make()
    return caught.value


@pytest.mark.parametrize("run", RUNS)
def test_empty_parameter_list_is_rejected_like_torch(run):
    expected = _torch_error(lambda: torch.optim.SGD([], lr=0.1))
    for empty in ([], (), iter([])):
        with pytest.raises(ValueError) as caught:
            run.make(empty)
        assert str(caught.value) == str(expected) == "optimizer got an empty parameter list"


@pytest.mark.parametrize("run", RUNS)
def test_bare_tensor_params_are_rejected_like_torch(run):
    p = torch.zeros(3, dtype=DTYPE, requires_grad=True)
    expected = _torch_error(lambda: torch.optim.SGD(p, lr=0.1))
    with pytest.raises(TypeError) as caught:
        run.make(p)
    assert type(expected) is TypeError and str(caught.value) == str(expected)


UNSUPPORTED = {
    "complex": (lambda: torch.zeros(300, dtype=torch.complex128, requires_grad=True), TypeError,
                r"params must be real floating-point.*complex128"),
    "integer": (lambda: torch.zeros(300, dtype=torch.int64), TypeError, r"params must be real floating-point.*int64"),
    "meta": (lambda: torch.zeros(300, dtype=DTYPE, device="meta", requires_grad=True), ValueError,
             r"params must be on a device with data.*'meta'"),
}


@pytest.mark.parametrize("kind", UNSUPPORTED)
@pytest.mark.parametrize("run", RUNS)
def test_unsupported_parameters_are_rejected(run, kind):
    """The FAM family analyses real gradients' spectra and reads values: complex, integer and 'meta'
    parameters fail at construction and in add_param_group, not at some later step."""
    make_param, error, match = UNSUPPORTED[kind]
    with pytest.raises(error, match=match):
        run.make([make_param()])
    opt = run.make(make_groups(_params()))
    n_groups = len(opt.param_groups)
    with pytest.raises(error, match=match):
        opt.add_param_group(run.group({"params": [make_param()]}))
    assert len(opt.param_groups) == n_groups


@pytest.mark.parametrize("run", RUNS)
def test_sparse_gradients_are_rejected(run):
    p = torch.zeros(300, dtype=DTYPE, requires_grad=True)
    opt = run.make([p])
    p.grad = torch.randn(300, dtype=DTYPE, generator=make_generator(SEED)).to_sparse()
    with pytest.raises(TypeError, match="does not support sparse gradients"):
        opt.step()


# Bad values for every numeric hyperparameter any optimizer of the family takes.
BAD_VALUES = {
    "lr": (-0.1, math.nan, math.inf, "0.1", True),
    "alpha": (-0.1, 1.0, math.nan),
    "beta": (-0.1, 1.0, math.nan),
    "eps": (-1e-8, math.inf),
    "weight_decay": (-0.01, math.nan),
    "n_bands": (0, 2.5),
    "fam_start_step": (-1, 1.5),
    "min_size": (-1, None),
    "debug_interval": (0, "10"),
}


def _numeric_hyperparameters(cls):
    return {name for name, param in inspect.signature(cls).parameters.items()
            if isinstance(param.default, (int, float)) and not isinstance(param.default, bool)}


@pytest.mark.parametrize("run", RUNS)
def test_bad_hyperparameters_are_rejected_naming_them(run):
    """At construction and per group in add_param_group; the group is not added."""
    names = _numeric_hyperparameters(run.optimizer_class)
    assert names and names <= BAD_VALUES.keys(), f"no bad values to try for {names - BAD_VALUES.keys()}"
    opt = run.make(make_groups(_params()))
    n_groups = len(opt.param_groups)
    for name in sorted(names):
        for bad in BAD_VALUES[name]:
            with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
                dataclasses.replace(run, options={**run.options, name: bad}).make(make_groups(_params()))
            if name in opt.defaults:
                extra = torch.zeros(5, dtype=DTYPE, requires_grad=True)
                with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
                    opt.add_param_group(run.group({"params": [extra], name: bad}))
                assert len(opt.param_groups) == n_groups, f"a group with {name}={bad!r} was added"


# --- stepping, like torch.optim -----------------------------------------------------------------

def _with_weight_decay(run):
    """Weight decay on where the optimizer has it: adding it in place into p.grad is the classic
    way to mutate an input."""
    if "weight_decay" in inspect.signature(run.optimizer_class).parameters:
        return dataclasses.replace(run, options={**run.options, "weight_decay": 0.1})
    return run


@pytest.mark.parametrize("run", RUNS)
def test_step_leaves_every_grad_bit_identical(run):
    """Gradients are inputs: after step() each .grad is the same tensor with the same bits, on
    every path (before and after the adaptive path starts)."""
    run = _with_weight_decay(run)
    opt = run.make(make_groups(_params()))
    for t in range(run.adaptive_from + 2):
        for p, g in zip(_params_of(opt), _grads(t)):
            p.grad = g
        before = [(p.grad, None if p.grad is None else p.grad.clone()) for p in _params_of(opt)]
        opt.step()
        for i, (p, (grad, values)) in enumerate(zip(_params_of(opt), before)):
            assert p.grad is grad, f"step {t}: params[{i}].grad was replaced"
            if grad is not None:
                assert torch.equal(grad.view(torch.int64), values.view(torch.int64)), \
                    f"step {t}: params[{i}].grad was modified in place"


@pytest.mark.parametrize("run", RUNS)
def test_parameters_without_grad_are_skipped(run):
    """A parameter whose .grad is None is not updated and its state does not change (torch.optim's
    convention); a step with no gradients at all changes nothing and creates no state."""
    opt = run.make(make_groups(_params()))
    before = _snapshot(opt)
    opt.step()
    assert not opt.state, "a step without gradients created state"
    for i, (p, (value, _)) in enumerate(zip(_params_of(opt), before)):
        assert torch.equal(p.detach(), value), f"params[{i}] moved without a gradient"
    for t in range(run.adaptive_from + 2):
        before = _snapshot(opt)
        _step(opt, t)
        for i, (p, g, (value, state)) in enumerate(zip(_params_of(opt), _grads(t), before)):
            if g is None:
                _assert_same(p.detach(), value, f"step {t}: params[{i}]")
                _assert_same(opt.state.get(p, {}), state, f"step {t}: state[params[{i}]]")


@pytest.mark.parametrize("run", RUNS)
def test_zero_grad(run):
    opt = run.make(make_groups(_params()))
    _step(opt, 0)
    opt.zero_grad()
    assert all(p.grad is None for p in _params_of(opt))
    _step(opt, 1)
    had = [p.grad is not None for p in _params_of(opt)]
    opt.zero_grad(set_to_none=False)
    for p, flag in zip(_params_of(opt), had):
        assert (p.grad is not None and not p.grad.any()) if flag else p.grad is None


@pytest.mark.parametrize("run", RUNS)
def test_step_with_closure_returns_its_loss(run):
    params = _params()
    opt = run.make(make_groups(params))
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = sum((p ** 2).sum() for p in params if p.requires_grad)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert len(calls) == 1 and torch.is_tensor(loss)
    assert all(p.grad is not None for p in params if p.requires_grad)


@pytest.mark.parametrize("run", RUNS)
def test_add_param_group_later_equals_constructing_with_it(run):
    """Groups added after k steps behave as if they had been there from the start with no gradients
    (torch.optim keeps state per parameter, lazily). Each added group carries the options of the
    constructed one (its handler included), so handler choice by names is not what is tested here."""
    steps = run.adaptive_from + 1
    whole = run.make(make_groups(_params()))
    late_params = set(range(len(whole.param_groups[0]["params"]), len(SHAPES)))
    params = _params()
    split = run.make(make_groups(params)[:1])
    for t in range(steps):
        _step(whole, t, without=late_params)
        _step(split, t)
    start = len(split.param_groups[0]["params"])
    for group in whole.param_groups[1:]:
        options = {k: v for k, v in group.items() if k != "params"}
        split.add_param_group({**options, "params": params[start:start + len(group["params"])]})
        start += len(group["params"])
    for added, constructed in zip(split.param_groups, whole.param_groups, strict=True):
        assert added.keys() == constructed.keys()
    for t in range(steps, steps + 3):
        _step(whole, t)
        _step(split, t)
    _assert_identical(whole, split)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        split.add_param_group(run.group({"params": [params[0]]}))


# --- the twins together: bad values and low precision ------------------------------------------

def _twin_runs(impls, sample):
    return [run(*sample.args, **sample.kwargs) for run in (impls.reference, impls.optimized)]


def _final_state(run, grads):
    """Parameters and momentum buffers after stepping one group of len(grads[0]) parameters."""
    params = [torch.zeros(grads.shape[2:], dtype=grads.dtype, requires_grad=True) for _ in range(grads.shape[1])]
    opt = run.make([{"params": params}])
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
    return [p.detach() for p in params] + [opt.state[p]["exp_avg"] for p in params]


@pytest.mark.parametrize("impls", PAIRS)
def test_nonfinite_gradients_stay_in_their_parameter(impls):
    """Documented result (impl/reprobench_documents/optim/optimizer_checks.py): a NaN or inf gradient makes its
    own parameter non-finite, as torch.optim's SGD does (checking would cost a host sync per step),
    and leaves every other parameter exactly as without it. Here the other parameters share the
    poisoned ones' batched rFFT, and their smooth gradients sit on the low side of the momentum rules,
    so a NaN leaking into their band powers would change their momentum. Both twins put the
    non-finite values in the same places. Which value it is, inf or NaN, may differ: the optimized
    twin's lerp turns inf into NaN."""
    steps = impls.reference.adaptive_from + 2
    at = impls.reference.adaptive_from - 1  # the first adaptive step
    grads = torch.randn(steps, 4, 1200, dtype=DTYPE, generator=make_generator(SEED))
    grads[:, 1::2] = grads[:, 1::2].cumsum(-1) / 1200 ** 0.5  # parameters 1 and 3: smooth
    poisoned = grads.clone()
    poisoned[1, 0, 7] = math.nan  # before the adaptive path; weight decay carries it on
    poisoned[at, 2, 0] = math.inf  # at the first adaptive step
    clean = [_final_state(run, grads) for run in (impls.reference, impls.optimized)]
    dirty = [_final_state(run, poisoned) for run in (impls.reference, impls.optimized)]
    for i in range(8):
        for twin, (c, d) in enumerate(zip(clean, dirty)):
            if i % 4 in (0, 2):
                assert not torch.isfinite(d[i]).all(), f"output {i}: the non-finite gradient vanished"
            else:
                assert torch.equal(c[i], d[i]), f"output {i} of twin {twin} changed by another parameter's NaN/inf"
        ref, opt = dirty[0][i], dirty[1][i]
        assert torch.equal(torch.isfinite(ref), torch.isfinite(opt)), f"output {i}: twins disagree on where"
        torch.testing.assert_close(opt[torch.isfinite(opt)], ref[torch.isfinite(ref)], atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("impls", PAIRS)
def test_low_precision_parameters_follow_the_reference(impls, dtype):
    """Half-precision parameters are supported (as in torch.optim): the twins agree to a few units of
    the dtype's rounding accumulated over the steps, relative to each tensor's scale. They round
    differently (the optimized lerp against mul_/add_), so bitwise equality is not expected."""
    steps = impls.reference.adaptive_from + 3
    for sample in optimizer_samples(steps, torch.device("cpu"), dtype, make_generator(SEED)):
        ref, opt = _twin_runs(impls, sample)
        for i, (a, b) in enumerate(zip(ref, opt)):
            scale = a.double().abs().max() if a.numel() else 1.0
            tol = 16 * torch.finfo(dtype).eps * float(scale)
            torch.testing.assert_close(b.double(), a.double(), atol=tol, rtol=0,
                                       msg=lambda m, i=i: f"{sample.name} output {i} ({dtype}): {m}")
