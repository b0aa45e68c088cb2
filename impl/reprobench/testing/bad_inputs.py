"""Bad calls derived from each component's valid sample, and the judge of what the twins did.

The declared ``error_inputs`` test the mistakes a component's author thought of; this module makes
the ones a hostile but fair user makes, the same way for every registered component: from one valid
sample it derives a call per kind (KINDS) — wrong rank, wrong feature dim, integer or half dtypes,
empty sequence, batch 0, NaN/inf, non-contiguous and 'meta' tensors, mixed dtypes, and the kinds a
signature suggests (a bool mask passed as ints, a second argument of the wrong shape, indices out
of range or passed as floats). Both twins are called, and each call must end in one of two ways:

* a **clear error**: a ValueError/TypeError raised by a ``raise`` in the component's code (not from
  inside torch) whose message names an argument of the call and says what was expected; or
* a **correct result**: the twins agree within the spec's tolerance, outputs are finite where the
  inputs are, and the kind's own property holds (a non-contiguous call equals the contiguous one, an
  empty batch gives an empty output, a 'meta' call gives the shapes of the real one).

The twins must agree on which. What a component supports (half precision, batch 0, empty sequences,
'meta' inputs) is declared on its spec (``ComponentSpec.input_support``); a declared case must give
a correct result and an undeclared one a clear error. Run ``python -m reprobench.testing.bad_inputs``
for the table of outcomes per kind.

Each outcome has a tier. *Correctness*: a call the component declares it accepts (InputSupport), or a
valid input in another layout (non_contiguous), that did not give a correct result; and a wrong number
from such a call. *Hygiene*: how an undeclared input was handled (an error from inside torch, an
unsupported input accepted, twins that disagree on raising). The generated suite fails on both for
reprobench's own components; a plugin's hygiene outcomes are findings (reprobench.testing.hygiene).
"""
from __future__ import annotations

import dis
import inspect
import os
import re
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from reprobench.registry import BAD_INPUT_KINDS, ComponentSpec, Implementations, SampleInput, Tolerance, make_generator

SEED = 1234
HANG_SECONDS = 60  # a call still running after this long is a hang (a stuck loop), not slowness
KINDS = BAD_INPUT_KINDS
OK = ("clear error", "correct result")
# Kinds whose call is a valid input in another form: every tensor function must accept it correctly.
VALID_INPUT_KINDS = ("non_contiguous",)
# Verdicts that mean both twins returned and a number is wrong (as opposed to how an input was rejected).
WRONG_NUMBERS = ("twins disagree", "wrong result")
# Twins computing in half precision agree to a few ulps of the format, not to float32's tolerance.
LOW_PRECISION_TOLERANCES = {torch.float16: Tolerance(atol=1e-2, rtol=1e-2),
                            torch.bfloat16: Tolerance(atol=5e-2, rtol=5e-2)}
# The torch package directory, with a trailing separator: a frame whose file lies under it is torch's own
# Python code (torch/nn/functional.py, ...), whose errors are not the component's checks.
TORCH_DIR = str(Path(torch.__file__).parent) + os.sep


@dataclass
class BadCall:
    """One derived call and what counts as handling it."""

    kind: str
    sample: SampleInput
    build_dtype: torch.dtype  # the dtype the twins are built in for this call
    supported: bool | None  # True: must give a correct result; False: must raise clearly; None: either
    baseline: SampleInput | None = None  # a valid call whose result a correct one must reproduce
    # how: "same" (same outputs), "values" (same values, dtype aside: an int or float64 input that is
    # accepted must mean what the float one means), "unbatch" (a leading dim of 1 added to the
    # outputs, or the same outputs where leading dims are reduced over), "first" (the first item
    # along the dropped leading dim)
    relation: str = "same"


@dataclass
class BadInputResult:
    """What one kind of bad call did to a component's twins: a verdict (OK or what went wrong), detail, tier."""

    kind: str
    verdict: str  # one of OK, or what went wrong ("error from inside torch", "twins disagree", ...)
    detail: str = ""
    tier: str = "hygiene"  # "correctness" or "hygiene" (module docstring); meaningful when not ok

    @property
    def ok(self) -> bool:
        return self.verdict in OK


def tier(bad: BadCall, verdict: str) -> str:
    """Correctness for a declared input and for a wrong number from a valid one; hygiene for the rest."""
    if bad.supported or (bad.kind in VALID_INPUT_KINDS and verdict in WRONG_NUMBERS):
        return "correctness"
    return "hygiene"


class CallTimedOut(BaseException):
    """Raised by the alarm; a BaseException so a component's `except Exception` cannot swallow it."""


@contextmanager
def _deadline(seconds: float):
    def expire(signum, frame):
        raise CallTimedOut(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- deriving the calls --------------------------------------------------------------------------

def base_dtype(spec: ComponentSpec) -> torch.dtype:
    return torch.float32 if torch.float32 in spec.dtypes else spec.dtypes[0]


def sample_size(spec: ComponentSpec) -> int:
    """The smallest test size of at least 2 (so dims can be dropped, emptied and transposed)."""
    return min((s for s in spec.test_sizes if s >= 2), default=max(spec.test_sizes))


def valid_samples(spec: ComponentSpec, dtype: torch.dtype) -> list[SampleInput]:
    return spec.sample_inputs(sample_size(spec), torch.device("cpu"), dtype, make_generator(SEED + 1))


def build(spec: ComponentSpec, dtype: torch.dtype) -> Implementations:
    return spec.build(spec.config(), torch.device("cpu"), dtype, make_generator(SEED))


def _slots(sample: SampleInput) -> list[tuple[object, torch.Tensor]]:
    """(slot, tensor) for every tensor argument; a slot is an int (position) or a str (keyword)."""
    slots = [(i, a) for i, a in enumerate(sample.args) if isinstance(a, torch.Tensor)]
    return slots + [(k, v) for k, v in sample.kwargs.items() if isinstance(v, torch.Tensor)]


def _with(sample: SampleInput, changes: dict) -> SampleInput:
    args = tuple(changes.get(i, a) for i, a in enumerate(sample.args))
    kwargs = {k: changes.get(k, v) for k, v in sample.kwargs.items()}
    return SampleInput(args, kwargs, sample.name)


def _is_float(t: torch.Tensor) -> bool:
    return t.is_floating_point()


def _is_index(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _has_float_parameters(impls: Implementations) -> bool:
    return any(p.is_floating_point() for m in impls.modules() for p in m.parameters())


def _non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """Same values, strides that are not contiguous (transposed storage, or every other element)."""
    if t.dim() >= 2 and t.shape[-1] > 1 and t.shape[-2] > 1:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if t.numel() > 1:
        return torch.stack([t, torch.zeros_like(t)], dim=-1)[..., 0]
    return t


def derive(spec: ComponentSpec, kind: str, impls: Implementations | None = None) -> BadCall | None:
    """The call of `kind` derived from the first of the spec's valid samples it applies to, or None
    where it applies to none (e.g. no integer argument to put out of range)."""
    dtype = base_dtype(spec)
    for sample in valid_samples(spec, dtype):
        bad = _derive_from(spec, kind, sample, dtype, impls)
        if bad is not None:
            return bad
    return None


def _derive_from(spec, kind, sample: SampleInput, dtype, impls) -> BadCall | None:
    support = spec.input_support
    slots = _slots(sample)
    floats = [(s, t) for s, t in slots if _is_float(t)]
    if not slots:
        return None
    primary_slot, primary = floats[0] if floats else slots[0]

    def call(changes, supported=None, baseline=None, build_dtype=dtype, relation="same"):
        return BadCall(kind, _with(sample, changes), build_dtype, supported, baseline, relation)

    if kind == "rank_minus":
        if primary.dim() < 1 or primary.shape[0] < 1:
            return None
        return call({primary_slot: primary[0]}, baseline=sample, relation="first")
    if kind == "rank_plus":
        return call({primary_slot: primary.unsqueeze(0)}, baseline=sample, relation="unbatch")
    if kind == "wrong_feature_dim":
        return call({primary_slot: torch.cat([primary, primary[..., :1]], dim=-1)}) if primary.dim() >= 1 else None
    if kind == "int_dtype":
        if not _is_float(primary):
            return None
        rounded = _with(sample, {primary_slot: primary.round()})  # the same values, as floats
        return call({primary_slot: primary.round().to(torch.int64)}, baseline=rounded, relation="values")
    if kind in ("float16", "bfloat16"):
        half = getattr(torch, kind)
        if not floats:
            return None
        supported = half in support.low_precision
        return call({s: t.to(half) for s, t in floats}, supported=supported, build_dtype=half if supported else dtype)
    if kind == "empty_sequence":
        if primary.dim() < 2:
            return None
        return call({primary_slot: primary.narrow(-2, 0, 0)}, supported=support.empty_sequence)
    if kind == "batch_zero":
        if primary.dim() < 1:
            return None
        batch = primary.shape[0]
        return call({s: t.narrow(0, 0, 0) for s, t in slots if t.dim() >= 1 and t.shape[0] == batch},
                    supported=support.empty_batch)
    if kind in ("nan", "inf"):
        if not _is_float(primary) or primary.numel() == 0:
            return None
        poisoned = primary.clone()
        poisoned[(0,) * primary.dim()] = float(kind)
        return call({primary_slot: poisoned})
    if kind == "non_contiguous":
        changes = {s: _non_contiguous(t) for s, t in slots}
        if all(t.is_contiguous() for t in changes.values()):
            return None
        return call(changes, baseline=sample)
    if kind == "meta_device":
        return call({s: t.to("meta") for s, t in slots}, supported=support.meta_device, baseline=sample)
    if kind == "mixed_dtypes":
        other = torch.float64 if dtype != torch.float64 else torch.float32
        rest = [(s, t) for s, t in floats if s != primary_slot]
        if rest:
            return call({rest[0][0]: rest[0][1].to(other)}, baseline=sample, relation="values")
        if floats and impls is not None and _has_float_parameters(impls):  # the input against the parameters
            return call({primary_slot: primary.to(other)}, baseline=sample, relation="values")
        return None
    if kind == "bool_as_int":
        masks = [(s, t) for s, t in slots if t.dtype == torch.bool]
        return call({masks[0][0]: masks[0][1].to(torch.int64)}, baseline=sample) if masks else None
    if kind == "second_arg_shape":
        if len(slots) < 2 or slots[1][1].dim() == 0:
            return None
        slot, t = slots[1]
        return call({slot: torch.cat([t, t[..., :1]], dim=-1)})
    if kind in ("index_out_of_range", "float_index"):
        indices = [(s, t) for s, t in slots if _is_index(t) and t.numel() > 0]
        if not indices:
            return None
        slot, t = indices[0]
        if kind == "float_index":
            return call({slot: t.to(dtype)}, baseline=sample, relation="values")
        bad = t.clone()
        bad[(0,) * t.dim()] = 1_000_000
        return call({slot: bad}, supported=False)
    raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")


# --- judging what the twins did ------------------------------------------------------------------

def argument_names(fn) -> list[str]:
    """Parameter names of a twin's call signature (forward for modules)."""
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        return list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return []


def _unclear(exc: BaseException, names: list[str]) -> str | None:
    """Why an exception is not a clear error, or None when it is."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    # The innermost frame must be the component's own code (not torch's) executing a `raise`, read
    # from the bytecode so an edited source file cannot mislead it; a torch call that failed in C
    # leaves its caller's frame at a CALL instead.
    if (tb is None or tb.tb_frame.f_code.co_filename.startswith(TORCH_DIR)
            or dis.opname[tb.tb_frame.f_code.co_code[tb.tb_lasti]] not in ("RAISE_VARARGS", "RERAISE")):
        return "error from inside torch"
    if not isinstance(exc, (ValueError, TypeError)):
        # A `raise` outside torch of another type: an assert, or a library's own error (einops' EinopsError).
        return f"error from inside {(tb.tb_frame.f_globals.get('__name__') or '?').partition('.')[0]}"
    message = str(exc)
    if not any(re.search(rf"(?<![\w.]){re.escape(n)}\b", message) for n in names):
        return "error names no argument"
    if not re.search(r"\bexpected\b|\bmust\b", message):
        return "error does not say what was expected"
    return None


def _copy(value):
    """A fresh tensor with the same strides, so one twin cannot see the other's in-place writes."""
    if isinstance(value, torch.Tensor):
        out = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device=value.device)
        return out.copy_(value) if value.device.type != "meta" else out
    return value


def _run(fn, sample: SampleInput):
    args = tuple(_copy(a) for a in sample.args)
    kwargs = {k: _copy(v) for k, v in sample.kwargs.items()}
    with torch.no_grad(), _deadline(HANG_SECONDS):
        out = fn(*args, **kwargs)
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(t for t in out if isinstance(t, torch.Tensor)) if isinstance(out, (tuple, list)) else (out,)


def _differs(a: tuple, b: tuple, tol: Tolerance) -> str | None:
    if len(a) != len(b):
        return f"{len(a)} outputs vs {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            return f"output {i} is not a tensor"
        if (x.shape, x.dtype, x.device) != (y.shape, y.dtype, y.device):
            return f"output {i}: {x.dtype}{tuple(x.shape)} on {x.device} vs {y.dtype}{tuple(y.shape)} on {y.device}"
        if x.device.type == "meta":
            continue
        try:
            torch.testing.assert_close(x, y, atol=tol.atol, rtol=tol.rtol, equal_nan=True)
        except AssertionError as e:
            return f"output {i}: " + str(e).splitlines()[0] + " " + " ".join(str(e).splitlines()[1:4])
    return None


def _differs_nonfinite(a: tuple, b: tuple, tol: Tolerance) -> str | None:
    """NaN/inf in: both twins let it out (some output non-finite in both, or in neither) and agree
    wherever both are finite. Where exactly it spreads may differ: a dense reference's 0·NaN reaches
    rows an exact sparse twin never mixes the poisoned token into."""
    if len(a) != len(b):
        return f"{len(a)} outputs vs {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if (x.shape, x.dtype, x.device) != (y.shape, y.dtype, y.device):
            return f"output {i}: {x.dtype}{tuple(x.shape)} on {x.device} vs {y.dtype}{tuple(y.shape)} on {y.device}"
        if not x.is_floating_point():
            if not torch.equal(x, y):
                return f"output {i}: the twins' integer outputs differ"
            continue
        fx, fy = torch.isfinite(x), torch.isfinite(y)
        if bool(fx.all()) != bool(fy.all()):
            return f"output {i}: non-finite input gave a non-finite output in one twin only"
        both = fx & fy
        try:
            torch.testing.assert_close(x[both], y[both], atol=tol.atol, rtol=tol.rtol)
        except AssertionError as e:
            return f"output {i} where both are finite: " + " ".join(str(e).splitlines()[:3])
    return None


def _inputs_finite(sample: SampleInput) -> bool:
    return all(bool(torch.isfinite(t).all()) for _, t in _slots(sample) if _is_float(t) and t.device.type != "meta")


def judge(spec: ComponentSpec, kind: str) -> BadInputResult:
    """Make the call of `kind` on both twins and say how it ended."""
    dtype = base_dtype(spec)
    impls = build(spec, dtype)
    bad = derive(spec, kind, impls)
    if bad is None:
        return BadInputResult(kind, "not applicable")
    if bad.build_dtype != dtype:
        impls = build(spec, bad.build_dtype)
    outcome = _outcome(spec, kind, bad, impls)
    outcome.tier = tier(bad, outcome.verdict)
    return outcome


def _outcome(spec: ComponentSpec, kind: str, bad: BadCall, impls: Implementations) -> BadInputResult:
    names = [n for n in argument_names(impls.reference) + argument_names(impls.optimized)
             if n not in ("self",)]
    results, errors = {}, {}
    for label in ("reference", "optimized"):
        try:
            results[label] = _run(getattr(impls, label), bad.sample)
        except CallTimedOut as e:
            return BadInputResult(kind, "hang", f"{label}: {e}")
        except Exception as e:  # noqa: BLE001 - every exception is judged, none escapes
            errors[label] = e
    detail = f"{bad.sample.summary()} built in {str(bad.build_dtype).replace('torch.', '')}"
    for label, e in errors.items():
        reason = _unclear(e, names)
        if reason is not None:
            return BadInputResult(kind, reason, f"{label}: {type(e).__name__}: {str(e)[:200]} — {detail}")
    if errors and results:
        (label, e), = errors.items()
        return BadInputResult(kind, "twins disagree on raising", f"{label} raised {type(e).__name__}: {str(e)[:160]}, "
                                                          f"the other returned a result — {detail}")
    if errors:
        if bad.supported:
            return BadInputResult(kind, "rejected a supported input",
                           f"{type(errors['reference']).__name__}: {errors['reference']} — {detail}")
        return BadInputResult(kind, "clear error", str(errors["reference"]))
    if bad.supported is False:
        return BadInputResult(kind, "accepted an unsupported input", f"declare it in input_support or reject it — {detail}")
    # A tolerance the spec states for this test and dtype wins; else half precision's, else the dtype's.
    tol = (spec.test_tolerances.get("bad_input_is_handled", {}).get(bad.build_dtype)
           or LOW_PRECISION_TOLERANCES.get(bad.build_dtype) or spec.tolerance(bad.build_dtype))
    ref, opt = results["reference"], results["optimized"]
    problem = _differs_nonfinite(ref, opt, tol) if kind in ("nan", "inf") else _differs(ref, opt, tol)
    if problem:
        return BadInputResult(kind, "twins disagree", f"{problem} — {detail}")
    problem = _kind_property(spec, kind, bad, impls, results, tol)
    if problem:
        return BadInputResult(kind, "wrong result", f"{problem} — {detail}")
    return BadInputResult(kind, "correct result")


def _kind_property(spec, kind, bad: BadCall, impls, results, tol) -> str | None:
    """What a correct result of this kind must satisfy beyond the twins agreeing."""
    outs = results["reference"]
    if kind == "meta_device":
        if not all(o.device.type == "meta" for o in outs):
            return "a 'meta' call returned tensors on another device"
        real = _run(impls.reference, bad.baseline)
        if [o.shape for o in outs] != [o.shape for o in real]:
            return f"'meta' shapes {[tuple(o.shape) for o in outs]} differ from the real {[tuple(o.shape) for o in real]}"
        return None
    if kind not in ("nan", "inf") and _inputs_finite(bad.sample):
        if not all(bool(torch.isfinite(o).all()) for o in outs if o.is_floating_point()):
            return "non-finite output from finite input"
    if kind in ("batch_zero", "empty_sequence") and outs[0].numel() != 0:
        return f"an empty input gave a non-empty output {tuple(outs[0].shape)}"
    if bad.baseline is not None:
        for label in ("reference", "optimized"):
            problem = _related(results[label], _run(getattr(impls, label), bad.baseline), bad.relation, tol)
            if problem:
                return f"{label} differs from the same call with the original input: {problem}"
    return None


def _related(outs: tuple, base: tuple, relation: str, tol: Tolerance) -> str | None:
    """Whether a derived call's outputs stand in `relation` to the valid call's (BadCall.relation)."""
    if relation == "same":
        return _differs(outs, base, tol)
    if len(outs) != len(base):
        return f"{len(outs)} outputs vs {len(base)}"
    expected = []
    for o, b in zip(outs, base):
        if relation == "unbatch" and o.shape != b.shape:  # same shape: the leading dims are reduced over
            b = b.unsqueeze(0)
        elif relation == "first":
            b = b[0] if b.dim() >= 1 else b
        if o.shape != b.shape:
            return f"an output of shape {tuple(o.shape)} where {tuple(b.shape)} was expected"
        expected.append(b.to(o.dtype) if relation == "values" and o.is_floating_point() else b)
    if relation == "values":  # dtype aside: compare in the wider of the two, at the looser tolerance
        outs = tuple(o.double() if o.is_floating_point() else o for o in outs)
        expected = [e.double() if e.is_floating_point() else e for e in expected]
    return _differs(outs, tuple(expected), tol)


def judge_all(pattern: str = "*") -> list[tuple[str, BadInputResult]]:
    from reprobench.registry import list_components

    return [(spec.name, judge(spec, kind)) for spec in list_components(pattern) for kind in KINDS]


def table(outcomes: list[tuple[str, BadInputResult]]) -> str:
    """Counts per kind: clear errors, correct results, not applicable, and failures."""
    header = f"{'kind':<20}{'clear error':>12}{'correct':>9}{'n/a':>6}{'failing':>9}"
    lines = [header, "-" * len(header)]
    for kind in KINDS + ("total",):
        picked = [o for _, o in outcomes if kind in (o.kind, "total")]
        counts = [sum(o.verdict == v for o in picked) for v in ("clear error", "correct result", "not applicable")]
        failing = len(picked) - sum(counts)
        lines.append(f"{kind:<20}{counts[0]:>12}{counts[1]:>9}{counts[2]:>6}{failing:>9}")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Derived bad-input calls over the registry: outcomes per kind")
    parser.add_argument("pattern", nargs="?", default="*", help="components to try (shell pattern)")
    args = parser.parse_args(argv)
    outcomes = judge_all(args.pattern)
    for name, outcome in outcomes:
        if not outcome.ok and outcome.verdict != "not applicable":
            print(f"FAIL ({outcome.tier}) {name} {outcome.kind}: {outcome.verdict}: {outcome.detail}")
    print(table(outcomes))
    return 0 if all(o.ok or o.verdict == "not applicable" for _, o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
