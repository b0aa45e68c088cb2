"""Cache invalidation: a cached component equals a fresh build after anything that changes what it
cached from (one of the four property families).

Driven by the registry. Every ``ComponentSpec.caches`` entry (a config in which the optimized twin
caches values derived from its parameters or inputs) runs through every mutation of
``reprobench.registry.CACHE_MUTATIONS``, with the parameters as built and again frozen
(``frozen_<name>``: ``requires_grad_(False)`` first, where version-keyed caches are allowed to
work). A case fills the cache with a first call, applies the mutation, calls again and compares with
freshly built twins given the same parameters, dtype and requires_grad flags: outputs under
no_grad, then outputs and gradients (wrt the inputs and the trainable parameters) with autograd on.
Twins are compared exactly: the cached and the fresh path run the same arithmetic, so any
difference is a stale value (a tolerance would hide the 1e-8 of a float64 -> float32 -> float64
round trip). A mutation a cache declares itself blind to (``CacheUse.blind_to``) is a strict xfail:
the suite shows the blind spot is real, and fixing it means updating the declaration.

Beside the registry: the rollout caches' public lookup (a caller writing into what it got back),
FAM's band-matrix memo after a change of the group's settings, and the document's EQ-10 wrapper,
whose cached pooled features are stale by design.
"""
from __future__ import annotations

import copy
import functools

import pytest
import torch

from reprobench.registry import CACHE_MUTATIONS, CacheUse, get, list_components, make_generator
from reprobench.testing.checks import as_tuple

SEED = 4321
OTHER_DTYPE = {torch.float64: torch.float32, torch.float32: torch.float64}
MAX_PARAMETERS = 8  # per-parameter writes visit at most this many parameters (a seeded choice)
# Mutations that have no frozen variant: a frozen parameter has nothing to step, and the toggle
# defines its own requires_grad flags.
NOT_FROZEN = ("optimizer_step", "requires_grad_toggle")
INPUT_MUTATIONS = ("input_write", "input_reorder", "output_write")
MUTATIONS = CACHE_MUTATIONS + tuple(f"frozen_{m}" for m in CACHE_MUTATIONS if m not in NOT_FROZEN)


# --- building and comparing --------------------------------------------------------------------------
def _build(spec, use, dtype):
    return spec.build(spec.config(use.config), torch.device("cpu"), dtype, make_generator(SEED)).optimized


@functools.lru_cache(maxsize=None)
def _is_module(name: str, index: int) -> bool:
    spec = get(name)
    return isinstance(_build(spec, spec.caches[index], spec.dtypes[0]), torch.nn.Module)


def _sample(spec, dtype):
    """The first sample at the largest test size (batch >= 2 where the size is the batch)."""
    return spec.sample_inputs(spec.test_sizes[-1], torch.device("cpu"), dtype, make_generator(SEED + 1))[0]


def _call(module, sample):
    return as_tuple(module(*sample.args, **sample.kwargs))


def _float_dtype(module) -> torch.dtype:
    return next(p.dtype for p in module.parameters() if p.is_floating_point())


def _fresh_twin(spec, use, module):
    """A new build holding `module`'s parameters, dtype, requires_grad flags and mode; never called before."""
    if not isinstance(module, torch.nn.Module):
        return _build(spec, use, spec.dtypes[0])
    twin = _build(spec, use, _float_dtype(module))
    twin.load_state_dict(module.state_dict())
    for p, q in zip(module.parameters(), twin.parameters()):
        q.requires_grad_(p.requires_grad)
    return twin.train(module.training)


def _with_grad(fn, sample, weights=None):
    """Outputs and gradients of sum(output · weight) wrt the float inputs and trainable parameters."""
    args = tuple(a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point()
                 else a for a in sample.args)
    params = [p for p in fn.parameters() if p.requires_grad] if isinstance(fn, torch.nn.Module) else []
    outs = as_tuple(fn(*args, **sample.kwargs))
    if weights is None:
        g = make_generator(SEED + 2)
        weights = [torch.randn(o.shape, dtype=o.dtype, generator=g) for o in outs]
    loss = sum((o * w).sum() for o, w in zip(outs, weights) if o.is_floating_point())
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad] + params
    grads = torch.autograd.grad(loss, inputs, allow_unused=True) if loss.requires_grad else [None] * len(inputs)
    grads = [torch.zeros_like(x) if gr is None else gr for x, gr in zip(inputs, grads)]  # None: no gradient flowed
    return [o.detach() for o in outs], grads, weights


def _assert_equal(actual, expected, what: str, context: str):
    assert len(actual) == len(expected), f"{what}: {len(actual)} tensors against {len(expected)}\n{context}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        torch.testing.assert_close(a, e, atol=0, rtol=0, msg=lambda m, i=i: f"{what} {i} differs from a fresh build "
                                                                            f"(stale cache?): {m}\n{context}")


def assert_outputs_fresh(spec, use, module, sample, context: str):
    """module(sample) under no_grad equals a fresh twin's."""
    twin = _fresh_twin(spec, use, module)
    with torch.no_grad():
        _assert_equal(_call(module, sample), _call(twin, sample), "no_grad output", context)


def assert_fresh(spec, use, module, sample, context: str):
    """Outputs under no_grad, then outputs and gradients with autograd on, equal fresh twins'."""
    assert_outputs_fresh(spec, use, module, sample, context)
    outs, grads, weights = _with_grad(module, sample)
    expected_outs, expected_grads, _ = _with_grad(_fresh_twin(spec, use, module), sample, weights)
    _assert_equal(outs, expected_outs, "autograd output", context)
    _assert_equal(grads, expected_grads, "gradient (inputs, then trainable parameters)", context)


# --- mutations ---------------------------------------------------------------------------------------
def _prime(module, sample):
    with torch.no_grad():
        return _call(module, sample)


def _chosen_parameters(module) -> list[str]:
    names = [n for n, p in module.named_parameters() if p.is_floating_point()]
    if len(names) <= MAX_PARAMETERS:
        return names
    order = torch.randperm(len(names), generator=make_generator(SEED))[:MAX_PARAMETERS]
    return [names[i] for i in sorted(order.tolist())]


def _new_values(p: torch.Tensor) -> torch.Tensor:
    return p.detach() * 1.37 + 0.1  # moves zeros too (biases start at 0)


PARAMETER_WRITES = {
    "no_grad_write": lambda module, name, p: p.mul_(1.37).add_(0.1),
    "data_write": lambda module, name, p: p.data.mul_(1.37).add_(0.1),  # .data has its own version counter
    "copy_": lambda module, name, p: p.copy_(_new_values(p)),
    "load_state_dict": lambda module, name, p: module.load_state_dict({**module.state_dict(), name: _new_values(p)}),
}


def _convert(sample, dtype):
    args = tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in sample.args)
    return type(sample)(args, dict(sample.kwargs), sample.name)


def run_mutation(spec, use, dtype, mutation: str) -> None:
    """Build, (freeze,) fill the cache, mutate, and require fresh results; raises AssertionError if stale."""
    module, sample = _build(spec, use, dtype), _sample(spec, dtype)
    context = f"{spec.name} config={dict(use.config)} {dtype} mutation={mutation} on {sample.summary()}"
    base = mutation.removeprefix("frozen_")
    if base != mutation or base == "requires_grad_toggle":
        module.requires_grad_(False)
    if base == "fill_inference_mode":
        with torch.inference_mode():
            _call(module, sample)
    elif base == "fill_training":
        _with_grad(module, sample)  # fills with autograd on and backpropagates through it once
    elif base == "output_write":
        for out in _prime(module, sample):
            out.add_(1.0)  # a caller writing into what it got back
    else:
        _prime(module, sample)

    if base == "optimizer_step":
        trainable = [p for p in module.parameters() if p.requires_grad]
        if trainable:  # a config built frozen has nothing to step
            optimizer = torch.optim.SGD(trainable, lr=0.1)
            outs = as_tuple(module(*sample.args, **sample.kwargs))
            sum(o.pow(2).sum() for o in outs if o.is_floating_point()).backward()
            optimizer.step()
            module.zero_grad(set_to_none=True)
    elif base == "requires_grad_toggle":  # frozen for evaluation, trained by a .data-writing optimizer, frozen again
        module.requires_grad_(True)
        _with_grad(module, sample)
        with torch.no_grad():
            for p in module.parameters():
                if p.is_floating_point():
                    p.data.mul_(1.37).add_(0.1)
        module.requires_grad_(False)
        assert_fresh(spec, use, module, sample, f"{context} (frozen again)")
        module.requires_grad_(True)
    elif base in PARAMETER_WRITES:
        for name in _chosen_parameters(module):
            with torch.no_grad():
                PARAMETER_WRITES[base](module, name, module.get_parameter(name))
            assert_outputs_fresh(spec, use, module, sample, f"{context} (parameter {name})")
    elif base == "to_dtype":
        module.to(OTHER_DTYPE[dtype])
        sample = _convert(sample, OTHER_DTYPE[dtype])
    elif base == "dtype_round_trip":
        module.to(OTHER_DTYPE[dtype]).to(dtype)
    elif base == "input_write":
        with torch.no_grad():
            sample.args[0].mul_(1.37).add_(0.1)  # the same tensor object, written in place
    elif base == "input_reorder":
        sample = type(sample)((sample.args[0].flip(0), *sample.args[1:]), dict(sample.kwargs), sample.name)
    assert_fresh(spec, use, module, sample, context)


def _applies(spec, index: int, mutation: str) -> bool:
    base = mutation.removeprefix("frozen_")
    if base in ("to_dtype", "dtype_round_trip") and OTHER_DTYPE.get(spec.dtypes[0]) not in spec.dtypes:
        return False
    return (base in INPUT_MUTATIONS and base == mutation) or _is_module(spec.name, index)


def _label(config) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(config.items())) or "default"


def _cases():
    params = []
    for spec in list_components():
        for index, use in enumerate(spec.caches):
            for dtype in spec.dtypes:
                for mutation in MUTATIONS:
                    if not _applies(spec, index, mutation):
                        continue
                    reason = use.blind_to.get(mutation)
                    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                    case_id = f"{spec.name}[{_label(use.config)}]-{str(dtype).removeprefix('torch.')}-{mutation}"
                    params.append(pytest.param(spec, use, dtype, mutation, id=case_id, marks=marks))
    return params


def test_cached_components_are_declared():
    """The components known to cache must keep their declaration, or the suite silently tests nothing."""
    declared = {spec.name for spec in list_components() if spec.caches}
    assert {"rotary.rope", "equivariant.conv_c4", "equivariant.shared_encoder", "models.dcal"} <= declared


@pytest.mark.parametrize("spec, use, dtype, mutation", _cases())
def test_cache_equals_fresh_build(spec, use, dtype, mutation):
    run_mutation(spec, use, dtype, mutation)


# --- the check has teeth ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, mutation", [
    ("equivariant.conv_c4_pointer_cache", "optimizer_step"),  # EQ-01: the pointer never moves
    ("equivariant.conv_c4_norm_cache", "fill_no_grad"),  # the norm key ignores grad mode: no gradient reaches the kernel
])
def test_the_check_catches_the_documented_caches(name, mutation):
    with pytest.raises(AssertionError, match="differs from a fresh build"):
        run_mutation(get(name), CacheUse(), torch.float64, mutation)


def test_the_check_catches_a_table_keyed_without_the_version(monkeypatch):
    from reprobench_documents.rotary.rotary_embedding import RotaryTable

    monkeypatch.setattr(RotaryTable, "cache_key", lambda self, dtype: (self.freqs.data_ptr(), dtype))
    with pytest.raises(AssertionError, match="differs from a fresh build"):
        run_mutation(get("rotary.rope"), CacheUse(), torch.float64, "frozen_no_grad_write")


# --- caches outside the registry's twins --------------------------------------------------------------
@pytest.mark.parametrize("kind", ["exact", "stats"])
def test_rollout_cache_lookups_survive_writes_by_the_caller(kind):
    """A caller writing into the rollout it got, or into the maps it passed, never changes a later lookup."""
    from reprobench_documents.models.dcal.rollout import random_attentions, rollout_cls_optimized
    from reprobench_documents.models.dcal.rollout_cache import CACHES

    cache = CACHES[kind](max_size=4)
    maps = random_attentions(2, 2, 2, 7, dtype=torch.float64, generator=make_generator(SEED))
    first = cache.get_or_compute(maps, rollout_cls_optimized)
    first.zero_()  # e.g. masking the CLS column in place
    hit = cache.get_or_compute(maps, rollout_cls_optimized)
    _assert_equal([hit], [rollout_cls_optimized(maps)], "rollout after a write into the missed lookup's result", kind)
    hit.zero_()
    _assert_equal([cache.get_or_compute(maps, rollout_cls_optimized)], [rollout_cls_optimized(maps)],
                  "rollout after a write into a hit's result", kind)
    maps.copy_(random_attentions(2, 2, 2, 7, dtype=torch.float64, generator=make_generator(SEED + 1)))
    _assert_equal([cache.get_or_compute(maps, rollout_cls_optimized)], [rollout_cls_optimized(maps)],
                  "rollout after the caller's maps were overwritten in place", kind)
    assert cache.stats()["hits"] == 2 and cache.stats()["misses"] == 2


@pytest.mark.parametrize("cls_path", ["reprobench_documents.optim.fam.FAM", "reprobench_documents.optim.fam_corrected.CorrectedFAM"])
def test_fam_band_matrices_follow_the_group_settings(cls_path):
    """FAM memoises band-membership matrices; after a change of the group's handler a step equals that of
    a fresh optimizer loaded from the same state_dict (whose memo is empty). (n_bands cannot change
    mid-run: the band EMA in the state has its old length.)"""
    import importlib

    from reprobench_documents.optim.fam import DEFAULT_CONFIG

    module, name = cls_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    g = make_generator(SEED)
    inits = [torch.randn(300, dtype=torch.float64, generator=g), torch.randn(20, 30, dtype=torch.float64, generator=g)]
    grads = [[torch.randn(p.shape, dtype=torch.float64, generator=g) for p in inits] for _ in range(8)]

    def step(optimizer, params, t):
        for p, grad in zip(params, grads[t]):
            p.grad = grad.clone()
        optimizer.step()

    params = [p.clone().requires_grad_(True) for p in inits]
    optimizer = cls(params, **DEFAULT_CONFIG, generator=make_generator(SEED + 1))
    for t in range(4):  # past fam_start_step: the band path runs and fills the memo
        step(optimizer, params, t)
    for group in optimizer.param_groups:
        group["handler"] = "attention"
    twin_params = [p.detach().clone().requires_grad_(True) for p in params]
    twin = cls(twin_params, **DEFAULT_CONFIG, generator=make_generator(0))
    twin.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # torch's loader keeps the state tensors themselves
    for t in range(4, 8):
        step(optimizer, params, t)
        step(twin, twin_params, t)
    _assert_equal([p.detach() for p in params], [p.detach() for p in twin_params], "parameter", cls_path)
    for p, q in zip(params, twin_params):  # the band EMA shows the matrix even where the momentum rule does not flip
        _assert_equal([optimizer.state[p]["band_ema"]], [twin.state[q]["band_ema"]], "band EMA", cls_path)


@pytest.mark.parametrize("wrapper", [
    pytest.param("documented", marks=pytest.mark.xfail(strict=True, reason="EQ-10: the wrapper reads the pooled "
                                                        "features the learner cached (detached) at its last forward")),
    "fresh"])
def test_morphism_wrappers_after_a_parameter_write(wrapper):
    """f_i(x) after the encoder's kernel is written in place equals a fresh learner's f_i(x)."""
    from reprobench_documents.equivariant.shared_encoder import AdapterLearner, FreshMorphism, IndividualMorphismWrapper

    def learner_and_wrapper(state=None):
        learner = AdapterLearner(3, 2, 2, 4, 2, k_neighbors=2).reset_parameters(make_generator(SEED)).double()
        if state is not None:
            learner.load_state_dict(state)
        learner(examples)  # the documented wrapper needs a learner forward first
        return learner, (IndividualMorphismWrapper(learner, 1) if wrapper == "documented"
                         else FreshMorphism(learner, 1, examples))

    g = make_generator(SEED + 1)
    examples, x = torch.randn(3, 2, 5, 5, dtype=torch.float64, generator=g), torch.randn(2, 2, 5, 5, dtype=torch.float64, generator=g)
    learner, f = learner_and_wrapper()
    with torch.no_grad():
        learner.shared_encoder.lift.kernel.mul_(1.37)
        _, fresh = learner_and_wrapper(learner.state_dict())
        _assert_equal([f(x)], [fresh(x)], "f_i(x)", wrapper)
