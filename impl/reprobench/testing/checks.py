"""The checks behind the generic suite, as plain functions so a test can also aim them at a
deliberately broken implementation and watch them fail."""
from __future__ import annotations

import os
import shlex
import sys

import torch

from reprobench.registry import ComponentSpec, Implementations, SampleInput, make_generator


def as_tuple(out) -> tuple[torch.Tensor, ...]:
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, (tuple, list)):
        return tuple(t for t in out if isinstance(t, torch.Tensor))
    raise TypeError(f"component returned {type(out).__name__}; expected a Tensor or a tuple of Tensors")


# pytest's rootdir, recorded in pytest_configure (suites/conftest.py, or reprobench.pytest_plugin when active):
# node ids are relative to it. RERUN_OPTIONS: options the rerun needs too (the plugin's own, when active).
PYTEST_ROOTDIR: str | None = None
RERUN_OPTIONS: tuple[str, ...] = ()
RERUN_PATHS: dict[str, str] = {}  # node id of a module -> the path that reruns it (set by the plugin)


def rerun_hint(test: str, spec: ComponentSpec, dtype: torch.dtype, size: int) -> str:
    """A shell command that reruns exactly the failing case: its node id (``-k`` cannot parse the
    ``=`` in case ids), the interpreter that ran the tests and the hypothesis profile in use.

    The node id is pytest's own (PYTEST_CURRENT_TEST), so it names the test that is actually
    running, hypothesis tests included. Outside pytest the case is only described."""
    current = os.environ.get("PYTEST_CURRENT_TEST")  # "path::test[id] (call)"
    if current is None:
        return f"rerun: not under pytest; the case is test_{test} of {spec.name}, {dtype}, {spec.size_name}={size}"
    return f"rerun: {rerun_command(current.rsplit(' ', 1)[0])}"


def rerun_command(nodeid: str) -> str:
    """The shell command that reruns the test `nodeid` (as pytest names it) from any directory."""
    module, _, test_id = nodeid.partition("::")
    node = f"{RERUN_PATHS.get(module, module)}::{test_id}"
    command = " ".join([shlex.quote(sys.executable), "-m", "pytest", shlex.quote(node), *map(shlex.quote, RERUN_OPTIONS)])
    for variable in ("HYPOTHESIS_PROFILE", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):  # they change what runs
        if os.environ.get(variable):
            command = f"{variable}={shlex.quote(os.environ[variable])} {command}"
    if PYTEST_ROOTDIR is not None:
        command = f"cd {shlex.quote(PYTEST_ROOTDIR)} && {command}"
    return command


def case_message(spec: ComponentSpec, sample: SampleInput, dtype, size: int, seed: int, test: str) -> str:
    return (f"{spec.name} [{str(dtype)}, {spec.size_name}={size}, seed={seed}] on {sample.summary()}\n"
            f"{rerun_hint(test, spec, dtype, size)}")


def build(spec: ComponentSpec, dtype: torch.dtype, seed: int, device="cpu") -> tuple[Implementations, torch.Generator]:
    generator = make_generator(seed)
    return spec.build(spec.config(), torch.device(device), dtype, generator), generator


def assert_matches_reference(spec: ComponentSpec, impls: Implementations, sample: SampleInput, dtype, *,
                             context: str = "", test: str = "matches_reference") -> None:
    """Forward outputs of optimized equal the reference's within the spec's tolerance for `test`."""
    tol = spec.tolerance(dtype, test)
    with torch.no_grad():
        expected = as_tuple(impls.reference(*sample.args, **sample.kwargs))
        actual = as_tuple(impls.optimized(*sample.args, **sample.kwargs))
    assert len(expected) == len(actual), f"reference returned {len(expected)} tensors, optimized {len(actual)}\n{context}"
    for i, (e, a) in enumerate(zip(expected, actual)):
        torch.testing.assert_close(a, e, atol=tol.atol, rtol=tol.rtol, equal_nan=False,
                                   msg=lambda m, i=i: f"output {i}: {m}\n{context}")


def _requires_grad_copy(sample: SampleInput) -> SampleInput:
    args = tuple(a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                 for a in sample.args)
    return SampleInput(args, dict(sample.kwargs), sample.name)


def gradients(fn, sample: SampleInput, weights: list[torch.Tensor] | None, generator: torch.Generator):
    """Gradients of a fixed random projection of the outputs wrt float inputs and parameters."""
    sample = _requires_grad_copy(sample)
    outs = as_tuple(fn(*sample.args, **sample.kwargs))
    if weights is None:
        weights = [torch.randn(o.shape, dtype=o.dtype, device=o.device, generator=generator) for o in outs]
    loss = sum((o * w).sum() for o, w in zip(outs, weights) if o.is_floating_point())
    loss.backward()
    grads = {f"input{i}": a.grad for i, a in enumerate(sample.args) if isinstance(a, torch.Tensor) and a.requires_grad}
    if isinstance(fn, torch.nn.Module):
        grads.update({f"param:{name}": p.grad for name, p in fn.named_parameters() if p.requires_grad})
        fn.zero_grad(set_to_none=True)
    return grads, weights


def assert_gradients_match(spec: ComponentSpec, impls: Implementations, sample: SampleInput, dtype, generator, *,
                           context: str = "") -> None:
    # A declared test tolerance is used as given; the dtype's is widened 10x (gradients accumulate more error).
    declared = spec.test_tolerances.get("gradients_match_reference", {}).get(dtype)
    atol, rtol = (declared.atol, declared.rtol) if declared is not None else (spec.tolerances[dtype].atol * 10,
                                                                              spec.tolerances[dtype].rtol * 10)
    expected, weights = gradients(impls.reference, sample, None, generator)
    actual, _ = gradients(impls.optimized, sample, weights, generator)
    assert expected.keys() == actual.keys(), f"gradient sets differ: {sorted(expected)} vs {sorted(actual)}\n{context}"
    for key in expected:
        e, a = expected[key], actual[key]
        if e is None and a is None:
            continue
        # None means "no gradient flowed", i.e. zero: a branch-free optimized path that multiplies an
        # unused branch by 0 yields zeros where the reference's Python branching yields None.
        e = torch.zeros_like(a) if e is None else e
        a = torch.zeros_like(e) if a is None else a
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol,
                                   msg=lambda m, key=key: f"gradient {key}: {m}\n{context}")
