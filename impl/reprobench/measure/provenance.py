"""Device provenance: where each tensor of a call would live on a GPU, checked on the CPU.

On a CPU test device every tensor says ``device='cpu'``, so a forward that builds ``torch.arange(n)``
without ``device=`` and adds it to its input passes every CPU test and stops at the first CUDA call.
This module tracks, per tensor, where it *would* be on the target device (default ``'cuda'``):

- **device**: the call's inputs, the parameters and buffers, a factory call given a device
  (``device=x.device``), ``.to(device)``, and whatever an op computes from any of these;
- **host**: a factory call with no device (``torch.arange(n)``, ``torch.tensor(...)``), ``.cpu()``,
  and whatever an op computes from host tensors only.

Three things that work on the CPU and fail or stall on a GPU are flagged:

- ``host_tensor_mixed``: an op that mixes a non-scalar host tensor into device computation. CUDA
  accepts 0-dim CPU tensors as scalars and CPU index tensors in ``x[idx]``; nothing else.
- ``generator_device``: a random draw whose generator is on another device than the draw. Emulated on
  the CPU: a generator the caller declares as a host one (``host_generators``: the CPU generator a
  harness hands to ``build`` or ``sample_inputs``) must not draw device values. A generator made inside
  the call (``torch.Generator(device=x.device)``) is taken to be on the device it was made for.
- ``device_scalar_read``: a scalar read (``aten._local_scalar_dense``: ``.item()``, ``bool(t)``,
  ``float(t)``, ``int(t)``) of a device value: a device -> host transfer that waits for the GPU. A read of
  host bookkeeping (torch.optim's CPU ``state['step']``) transfers nothing and is not flagged.
  ``device_to_host`` is the same for whole tensors (``.cpu()``, ``.tolist()``, ``.numpy()``).

Limits of the emulation: tensors that exist before the check are device values unless passed as
``host_tensors``; factory calls inside a custom ``autograd.Function.backward`` are not seen (autograd runs
backward without Python function modes), though their mixing with tensors made in the forward and
their scalar reads are; a generator made inside the call is trusted to sit where it was made. Inside
:func:`host_side` nothing is tracked: it marks code that runs on the host by design and hands its
results to the device (the registry's input drawing). Where the target is the CPU itself there is no
host/device boundary, and nothing is flagged.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

RULES = ("host_tensor_mixed", "generator_device", "device_scalar_read", "device_to_host")
SCALAR_READ = torch.ops.aten._local_scalar_dense.default

# Python-level factories: with no `device=` they allocate on the CPU whatever the inputs' device.
FACTORIES = frozenset(f for f in (
    torch.arange, torch.range, torch.linspace, torch.logspace, torch.zeros, torch.ones, torch.empty, torch.full,
    torch.eye, torch.tensor, torch.as_tensor, torch.asarray, torch.scalar_tensor, torch.empty_strided, torch.rand,
    torch.randn, torch.randint, torch.randperm, torch.normal, torch.tril_indices, torch.triu_indices,
    torch.from_numpy, torch.frombuffer, torch.hann_window, torch.hamming_window, torch.blackman_window,
    torch.bartlett_window, torch.kaiser_window) if f is not None)
# Ops that accept CPU tensors beside device ones at these argument positions: index tensors (CUDA
# copies them over) and copy_'s source (a host -> device upload, which does not wait for the GPU).
HOST_ARGUMENT_OK = {
    torch.ops.aten.index.Tensor: {1}, torch.ops.aten._unsafe_index.Tensor: {1},
    torch.ops.aten.index_put.default: {1}, torch.ops.aten.index_put_.default: {1},
    torch.ops.aten._index_put_impl_.default: {1}, torch.ops.aten._unsafe_index_put.default: {1},
    torch.ops.aten.copy_.default: {1},
}
# Ops whose result (a Python value, or an output size) depends on device values: on a GPU each copies to
# the host and waits, although no .item() appears in the code.
_A = torch.ops.aten
HIDDEN_READS = {_A.equal.default, _A.is_nonzero.default, _A.nonzero.default, _A.masked_select.default,
                _A._unique2.default, _A.unique_consecutive.default, _A.unique_dim.default, _A.repeat_interleave.Tensor}
_MASK_INDEXED = {_A.index.Tensor, _A.index_put.default, _A.index_put_.default, _A._index_put_impl_.default}
_HOST_SIDE = contextvars.ContextVar("reprobench_host_side", default=False)
_THIS_FILE = os.path.abspath(__file__)
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


@contextlib.contextmanager
def host_side():
    """Code that runs on the host by design and moves its results to the device (drawing inputs on a
    CPU generator): the check does not look inside, and what it makes counts as device values."""
    token = _HOST_SIDE.set(True)
    try:
        yield
    finally:
        _HOST_SIDE.reset(token)


@dataclass(frozen=True)
class Finding:
    rule: str  # one of RULES
    op: str  # the torch function or aten op that did it
    detail: str  # what happened, in a sentence
    where: str  # innermost Python frame outside torch: "path/file.py:line in function"
    count: int = 1  # how many times this (rule, op, where) happened in the call
    phase: str = ""  # which part of a component check found it: "inputs", "forward", "backward"

    def describe(self) -> str:
        times = f" ({self.count}x)" if self.count > 1 else ""
        phase = f"{self.phase}: " if self.phase else ""
        return f"{phase}[{self.rule}] {self.op} at {self.where}: {self.detail}{times}"


@dataclass
class ProvenanceReport:
    target_device: str  # the device the check emulated or ran on
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def count(self, rule: str) -> int:
        if rule not in RULES:
            raise ValueError(f"rule={rule!r} is not a provenance rule; choose one of {RULES}")
        return sum(f.count for f in self.findings if f.rule == rule)

    def describe(self) -> str:
        if self.ok:
            return f"no device-provenance findings for target {self.target_device!r}"
        lines = [f"{len(self.findings)} device-provenance finding(s) for target {self.target_device!r}:"]
        return "\n".join(lines + [f"  {f.describe()}" for f in self.findings])


def _where() -> str:
    """The innermost frame outside torch and this module: the line to fix."""
    for frame in reversed(traceback.extract_stack()[:-1]):
        path = os.path.abspath(frame.filename)
        if path != _THIS_FILE and not path.startswith(_TORCH_DIR) and "contextlib" not in path:
            short = os.sep.join(path.split(os.sep)[-3:])
            return f"{short}:{frame.lineno} in {frame.name}"
    return "<inside torch>"


def _name(func) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or str(func)
    return name.replace("_VariableFunctionsClass.", "torch.").replace("TensorBase.", "Tensor.")


def _tensors(tree) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _storage(t: torch.Tensor):
    """What a tag sticks to: the storage, so views, nn.Parameter wrappers and `param.data = ...` share
    their tensor's provenance. None for tensors without one (sparse, nested)."""
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None


class _Tracker:
    """Shared state of the two modes: which tensors are host values, and what was found."""

    def __init__(self, target_device, device, host_generators, host_tensors):
        self.target = torch.device(target_device)
        self.device = torch.device(device)
        # Emulating: the call runs on the CPU, standing in for the target, so .device says nothing.
        self.emulating = self.device.type != self.target.type
        self.active = self.target.type != "cpu"
        self.host = WeakIdKeyDictionary()  # storages of host tensors
        self.host_generators = host_generators  # read live: a harness may add the generators it makes
        self.tag(list(host_tensors), host=True)
        self.found: dict[tuple[str, str, str], list] = {}
        self.host_devices: dict[int, torch.device] = {}  # id -> the object, kept alive so the id stays its own

    def is_host(self, t: torch.Tensor) -> bool:
        if not self.emulating and t.device.type != self.target.type:
            return True
        storage = _storage(t)
        return storage is not None and storage in self.host

    def tag(self, out, host: bool) -> None:
        for t in _tensors(out):
            storage = _storage(t)
            if storage is None:
                continue
            if host:
                self.host[storage] = True
            else:
                self.host.pop(storage, None)

    def flag(self, rule: str, op: str, detail: str) -> None:
        key = (rule, op, _where())
        if key in self.found:
            self.found[key][1] += 1
        else:
            self.found[key] = [detail, 1]

    def note_device_of(self, t: torch.Tensor, device: torch.device) -> None:
        """`t.device` returns a new object per read: remember the ones read from host tensors, so that
        `device=x.device` of a host `x` means the host while emulating."""
        if self.emulating and self.is_host(t):
            self.host_devices[id(device)] = device

    def placement_of_device(self, device) -> bool:
        """True where a `device=` argument means the host."""
        if id(device) in self.host_devices:
            return True
        if self.emulating:
            # A literal 'cpu' in component code means the host; the harness passes torch.device objects
            # (or x.device), which stand for the target while emulating.
            return isinstance(device, str) and torch.device(device).type == "cpu"
        return torch.device(device).type != self.target.type

    def generator_is_host(self, generator: torch.Generator) -> bool | None:
        """True/False where the generator's side is known, None where emulation cannot tell."""
        if any(generator is g for g in self.host_generators):
            return True
        if not self.emulating:
            return generator.device.type != self.target.type
        return None if generator.device.type == self.device.type else False

    def report(self) -> ProvenanceReport:
        return ProvenanceReport(str(self.target), [Finding(rule, op, detail, where, count)
                                                   for (rule, op, where), (detail, count) in self.found.items()])


_TO_HOST_METHODS = ("cpu", "numpy", "tolist")
_DEVICE_ATTRIBUTE = torch._C.TensorBase.__dict__["device"]


class _FunctionWatch(TorchFunctionMode):
    """Sees Python-level calls: factories without a device, .to/.cpu, and random draws' generators."""

    def __init__(self, tracker: _Tracker):
        super().__init__()
        self.tracker = tracker

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _HOST_SIDE.get():
            return func(*args, **kwargs)
        tr, name = self.tracker, getattr(func, "__name__", "")
        if getattr(func, "__self__", None) is _DEVICE_ATTRIBUTE and args and isinstance(args[0], torch.Tensor):
            device = func(*args, **kwargs)
            tr.note_device_of(args[0], device)
            return device
        method_of_tensor = bool(args) and isinstance(args[0], torch.Tensor) and _name(func).startswith("Tensor.")
        destination = self._destination(func, name, method_of_tensor, args, kwargs)
        generator = kwargs.get("generator") or next((a for a in args if isinstance(a, torch.Generator)), None)
        if generator is not None:
            self._check_draw(func, args, kwargs, generator, destination)
        if method_of_tensor and name in _TO_HOST_METHODS + ("to",) and not tr.is_host(args[0]):
            if name != "to" or destination is True:
                tr.flag("device_to_host", _name(func), f"copies a device tensor {tuple(args[0].shape)} to the host "
                        f"(on {tr.target.type} a transfer that waits for the device)")
        out = func(*args, **kwargs)
        if destination is not None:
            tr.tag(out, host=destination)
        return out

    def _destination(self, func, name, method_of_tensor, args, kwargs) -> bool | None:
        """Whether the call's result is host (True), device (False), or follows its inputs (None)."""
        tr = self.tracker
        if kwargs.get("device") is not None:
            return tr.placement_of_device(kwargs["device"])
        if method_of_tensor:
            if name == "cpu":
                return True
            if name == "cuda":
                return False
            if name == "to":
                for a in args[1:]:
                    if isinstance(a, torch.Tensor):
                        return tr.is_host(a)
                    if isinstance(a, torch.device) or (isinstance(a, str)):
                        return tr.placement_of_device(a)
            return None
        if func in FACTORIES and not _tensors((args, kwargs)):
            return True
        return None

    def _check_draw(self, func, args, kwargs, generator, destination) -> None:
        tr = self.tracker
        if func in FACTORIES and destination is not None:
            draw_is_host = destination
        else:
            inputs = _tensors((args, kwargs))
            if not inputs:
                return
            draw_is_host = destination if destination is not None else tr.is_host(inputs[0])
        generator_is_host = tr.generator_is_host(generator)
        if generator_is_host is None or generator_is_host == draw_is_host:
            return
        draw_side = "the host" if draw_is_host else f"the target device {tr.target.type!r}"
        gen_side = "a host (CPU) generator" if generator_is_host else f"a generator on {tr.target.type!r}"
        tr.flag("generator_device", _name(func),
                f"draws values for {draw_side} with {gen_side}; torch refuses a generator on another device "
                f"than the draw ('Expected a '{tr.target.type if draw_is_host is False else 'cpu'}' device type "
                "for generator'). Draw on the CPU and move (registry.draw_inputs), or make the generator on the "
                "draw's device")


class _OpWatch(TorchDispatchMode):
    """Sees every aten op, backward included: host values mixed into device ops, scalar reads."""

    def __init__(self, tracker: _Tracker):
        super().__init__()
        self.tracker = tracker

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _HOST_SIDE.get():
            return func(*args, **kwargs)
        tr = self.tracker
        if func is SCALAR_READ:
            if not tr.is_host(args[0]):
                tr.flag("device_scalar_read", "aten._local_scalar_dense",
                        f"reads a device value on the host (.item()/bool()/float()/int()); on {tr.target.type} "
                        "this waits for the device to finish")
            return func(*args, **kwargs)
        if self._reads_device_values(func, args, kwargs):
            tr.flag("device_to_host", str(func.overloadpacket),
                    f"its result or output size depends on device values, so on {tr.target.type} it copies them to "
                    "the host and waits (a boolean mask index, nonzero, unique, equal)")
        exempt = HOST_ARGUMENT_OK.get(func, ())
        host, device = [], []
        for position, value in enumerate(args):
            if position not in exempt:
                for t in _tensors(value):
                    (host if tr.is_host(t) else device).append(t)
        for t in _tensors(kwargs):
            (host if tr.is_host(t) else device).append(t)
        blocking = [t for t in host if t.dim() > 0]
        if device and blocking:
            shapes = ", ".join(str(tuple(t.shape)) for t in blocking[:3])
            tr.flag("host_tensor_mixed", str(func.overloadpacket),
                    f"mixes host tensor(s) of shape {shapes} (made without device=, e.g. torch.arange(n)) with device "
                    f"tensors; on {tr.target.type} this raises 'Expected all tensors to be on the same device'. "
                    "Pass device=<input>.device where it is made")
        out = func(*args, **kwargs)
        all_inputs = _tensors((args, kwargs))
        if all_inputs and not device and len(host) == len(all_inputs):
            tr.tag(out, host=True)
        return out


    def _reads_device_values(self, func, args, kwargs) -> bool:
        tr = self.tracker
        if func in HIDDEN_READS:
            if func is _A.repeat_interleave.Tensor and kwargs.get("output_size") is not None:
                return False
            return any(not tr.is_host(t) for t in _tensors(args[:1]))
        if func in _MASK_INDEXED:  # x[mask], x[mask] = v: the count of True decides the work
            return any(t.dtype == torch.bool and not tr.is_host(t) for t in _tensors(args[1]))
        return False


def check_device_provenance(fn: Callable[[], Any], *, target_device: str | torch.device = "cuda",
                            device: str | torch.device = "cpu", host_generators: Iterable[torch.Generator] = (),
                            host_tensors: Iterable[torch.Tensor] = ()) -> ProvenanceReport:
    """Run ``fn()`` once and report what would break or wait on ``target_device``.

    ``device`` is where ``fn``'s tensors actually live: the CPU standing in for the target (emulation),
    or the target itself. ``host_generators`` are generators known to be CPU ones (a harness's generator
    for ``build``/``sample_inputs``; a list is read as the call runs, so a harness may append the ones it
    makes); ``host_tensors`` are tensors made before the call that live on the
    host by design. Everything else made before the call (inputs, parameters, buffers) is a device value.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable taking no arguments, got {type(fn).__name__}")
    try:
        generators = host_generators if isinstance(host_generators, list) else list(host_generators)
        tracker = _Tracker(target_device, device, generators, list(host_tensors))
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"target_device={target_device!r} and device={device!r} must name torch devices: {exc}") from None
    if not tracker.active:
        fn()
        return tracker.report()
    with _FunctionWatch(tracker), _OpWatch(tracker):
        fn()
    return tracker.report()


def optimizer_host_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The state torch.optim keeps on the host by design: ``step`` counters of groups that are neither
    capturable nor fused (created with ``torch.tensor(0.0)``, no device). For a check that starts after the
    optimizer's first step."""
    host = []
    for group in optimizer.param_groups:
        if group.get("capturable") or group.get("fused"):
            continue
        for p in group["params"]:
            step = optimizer.state.get(p, {}).get("step")
            if isinstance(step, torch.Tensor):
                host.append(step)
    return host


def check_component(build: Callable[[], Any], draw_samples: Callable[[], list], *, backward: bool,
                    host_generators: Iterable[torch.Generator] = (), target_device: str | torch.device = "cuda",
                    device: str | torch.device = "cpu") -> ProvenanceReport:
    """The check over one registered component, in four phases: ``build()`` (returns its Implementations),
    ``draw_samples()`` (returns its SampleInputs), the optimized twin's forward without grad on the first
    sample, and, with ``backward``, a forward and backward of the sum of its outputs. An optimizer
    component's call runs its optimizer steps, so its forward is the step. ``host_generators``: the
    harness's CPU generator(s), handed to build and sample drawing."""
    common = dict(target_device=target_device, device=device, host_generators=list(host_generators))
    made: dict[str, Any] = {}
    phases = [("build", check_device_provenance(lambda: made.update(impls=build()), **common)),
              ("inputs", check_device_provenance(lambda: made.update(samples=draw_samples()), **common))]
    if not made["samples"]:
        raise ValueError("draw_samples() returned no samples")
    optimized, sample = made["impls"].optimized, made["samples"][0]

    def forward():
        with torch.no_grad():
            optimized(*sample.args, **sample.kwargs)

    phases.append(("forward", check_device_provenance(forward, **common)))
    if backward:
        args = tuple(a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point()
                     else a for a in sample.args)

        def forward_backward():
            outs = [o for o in _tensors(optimized(*args, **sample.kwargs)) if o.requires_grad]
            if outs:
                sum(o.sum() for o in outs).backward()

        phases.append(("backward", check_device_provenance(forward_backward, **common)))
    findings, seen = [], set()
    for phase, report in phases:  # the backward phase reruns the forward: report each place once
        for f in report.findings:
            if (f.rule, f.op, f.where) not in seen:
                seen.add((f.rule, f.op, f.where))
                findings.append(replace(f, phase=phase))
    return ProvenanceReport(str(torch.device(target_device)), findings)
