"""The component registry: the one place a component is declared.

Modelled on PyTorch's OpInfo and timm's model registry. A component module ends with one
``register(ComponentSpec(...))``; every generic suite (equivalence, finiteness, bad input,
pytest-benchmark, asv) and the CLI iterate :func:`list_components`, so a new component is written
once and registered once.

A spec's ``build(config, device, dtype, generator)`` returns an :class:`Implementations`: the
readable reference and the optimized twin, sharing parameters (same state_dict keys, equal values).
Both are called the same way, ``impl(*sample.args, **sample.kwargs)``, and return a tensor or a
tuple of tensors. Optimizers and whole training loops fit by making the callable "run N steps and
return the final parameters".
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch


# Names of the generic property tests (reprobench.testing.generic_tests, without `test_`);
# ExpectedFailure.test and ComponentSpec.test_tolerances must name one of them, so a typo fails at
# registration instead of silently never applying.
GENERIC_TESTS = (
    "matches_reference",
    "gradients_match_reference",
    "outputs_finite",
    "bad_input_raises",
    "probabilities_normalised",
    "state_dict_shared",
    "no_host_syncs",
    "inputs_unchanged",
    "matches_reference_random_cases",
    "bad_input_is_handled",
    "float64_build_creates_every_tensor_in_float64",
)
# The tests that compare against a tolerance, so the ones ComponentSpec.test_tolerances may loosen.
TOLERANCE_TESTS = ("matches_reference", "gradients_match_reference", "matches_reference_random_cases",
                   "probabilities_normalised", "bad_input_is_handled")
# The bad calls the derived bad-input suite (reprobench.testing.bad_inputs) makes from a valid sample;
# ExpectedFailure(test="bad_input_is_handled", kind=...) names one of them.
BAD_INPUT_KINDS = ("rank_minus", "rank_plus", "wrong_feature_dim", "int_dtype", "float16", "bfloat16",
                   "empty_sequence", "batch_zero", "nan", "inf", "non_contiguous", "meta_device", "mixed_dtypes",
                   "bool_as_int", "second_arg_shape", "index_out_of_range", "float_index")


@dataclass(frozen=True)
class Tolerance:
    atol: float  # absolute tolerance of torch.testing.assert_close
    rtol: float  # relative tolerance of torch.testing.assert_close
    # Why this tolerance: required in ComponentSpec.test_tolerances, and for a plugin's tolerance looser
    # than DEFAULT_TOLERANCES (e.g. "the package adds eps=1e-8 inside the norm").
    reason: str = ""

    def __post_init__(self):
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"Tolerance.{name}={value!r}: expected a number >= 0")
        if not isinstance(self.reason, str):
            raise TypeError(f"Tolerance.reason: expected a string, got {type(self.reason).__name__}")


@dataclass
class SampleInput:
    """One call's arguments; ``summary()`` prints shapes and dtypes, never data."""

    args: tuple  # positional arguments, tensors first
    kwargs: dict = field(default_factory=dict)  # keyword arguments
    name: str = ""  # short label shown in test ids and failure messages

    def summary(self) -> str:
        def describe(value: Any) -> str:
            if isinstance(value, torch.Tensor):
                return f"Tensor{tuple(value.shape)}:{str(value.dtype).replace('torch.', '')}"
            if isinstance(value, (list, tuple)):
                return "[" + ", ".join(describe(v) for v in value) + "]"
            return repr(value)

        parts = [describe(a) for a in self.args] + [f"{k}={describe(v)}" for k, v in self.kwargs.items()]
        return f"{self.name or 'sample'}({', '.join(parts)})"


@dataclass
class ErrorInput:
    """A bad call paired with the exception it must raise and a regex the message must match."""

    sample: SampleInput  # the bad call
    error_type: type  # ValueError or TypeError (or a subclass): what a checked argument raises
    match: str  # regex that must occur in the message, normally the argument's name
    config: Mapping[str, Any] | None = None  # when set, the error is raised by build(config) itself

    def __post_init__(self):
        # A RuntimeError or AssertionError is what torch (or an `assert`) raises when nothing checked the
        # argument: declaring it as the expected error would make the missing check pass.
        if not (isinstance(self.error_type, type) and issubclass(self.error_type, (ValueError, TypeError))):
            raise TypeError(f"ErrorInput {self.sample.name or 'sample'}: error_type={self.error_type!r} is not allowed; "
                            "bad input must raise ValueError or TypeError (or a subclass) naming the argument, so "
                            "check the argument in the component and raise one of those")


@dataclass
class Implementations:
    """What ``build`` returns: the two twins, called identically."""

    reference: Callable  # follows the document; the oracle
    optimized: Callable  # same values within tolerance; faster or leaner
    # Optional: (probabilities, allowed) for a sample, from the reference, where the component
    # forms attention probabilities: probabilities [..., n_query, n_key], allowed a bool mask
    # broadcastable to it (True where a key may receive weight).
    probabilities: Callable[[SampleInput], tuple[torch.Tensor, torch.Tensor]] | None = None

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.reference, self.optimized) if isinstance(m, torch.nn.Module)]


@dataclass(frozen=True)
class ExpectedFailure:
    """A generic test the component fails on purpose (a documented defect, or one of the package under
    test that is known and reported). Strict: a case that starts passing fails, saying to remove this."""

    test: str  # one of GENERIC_TESTS
    reason: str  # why: the defect, with the claim ID or upstream issue that records it
    kind: str | None = None  # bad_input_is_handled only: one of BAD_INPUT_KINDS (None: every kind)
    dtype: torch.dtype | None = None  # only the cases in this dtype (None: every dtype)

    def __post_init__(self):
        if self.test not in GENERIC_TESTS:
            raise ValueError(f"ExpectedFailure.test={self.test!r} is not a generic test; choose one of {GENERIC_TESTS}")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ValueError(f"ExpectedFailure({self.test!r}).reason is empty: say which defect makes the test fail")
        if self.kind is not None and self.test != "bad_input_is_handled":
            raise ValueError(f"ExpectedFailure({self.test!r}, kind={self.kind!r}): kind applies to "
                             "test='bad_input_is_handled' only; drop kind or change the test")
        if self.kind is not None and self.kind not in BAD_INPUT_KINDS:
            raise ValueError(f"ExpectedFailure.kind={self.kind!r} is not a bad-input kind; choose one of {BAD_INPUT_KINDS}")
        if self.dtype is not None and not isinstance(self.dtype, torch.dtype):
            raise TypeError(f"ExpectedFailure.dtype={self.dtype!r}: expected a torch.dtype such as torch.float32")

    def applies(self, test: str, dtype: torch.dtype | None = None, kind: str | None = None) -> bool:
        """Whether this declaration covers the case (test, dtype, kind)."""
        return (self.test == test and (self.dtype is None or dtype is None or self.dtype == dtype)
                and (self.kind is None or self.kind == kind))


@dataclass(frozen=True)
class InputSupport:
    """What a component accepts beyond its samples. The derived bad-input suite
    (suites/properties/test_bad_inputs.py) requires a correct result from both twins for what is
    declared here, and a ValueError/TypeError naming the argument for the rest."""

    low_precision: tuple[torch.dtype, ...] = ()  # float16/bfloat16 it computes in when built in that dtype
    empty_batch: bool = False  # batch 0 gives an empty output, as torch layers do
    empty_sequence: bool = False  # a zero-length sequence (dim -2) gives an empty output
    meta_device: bool = False  # 'meta' inputs give 'meta' outputs of the right shape (no parameters elsewhere)
    reason: str = ""  # why it accepts these (required of a plugin that declares any)

    def __post_init__(self):
        for dtype in self.low_precision:
            if dtype not in (torch.float16, torch.bfloat16):
                raise ValueError(f"InputSupport.low_precision holds {dtype!r}; expected torch.float16 and/or "
                                 "torch.bfloat16 (the dtypes the component is tested in are ComponentSpec.tolerances' keys)")

    def declares_any(self) -> bool:
        return bool(self.low_precision) or self.empty_batch or self.empty_sequence or self.meta_device


# What suites/properties/test_cache_invalidation.py does to a cached component between two calls;
# "frozen_<name>" is the same after requires_grad_(False). CacheUse.blind_to must name them.
CACHE_MUTATIONS = (
    "fill_no_grad", "fill_inference_mode", "fill_training", "optimizer_step", "requires_grad_toggle",
    "no_grad_write", "data_write", "copy_", "load_state_dict", "to_dtype", "dtype_round_trip",
    "input_write", "input_reorder", "output_write",
)


@dataclass(frozen=True)
class CacheUse:
    """A configuration in which the optimized twin caches values derived from its parameters or
    inputs; the cache-invalidation suite requires that it equal a fresh build after every mutation."""

    config: Mapping[str, Any] = field(default_factory=dict)  # overrides of default_config for this case
    blind_to: Mapping[str, str] = field(default_factory=dict)  # mutation -> why the cache cannot see it: a strict xfail

    def __post_init__(self):
        for mutation, reason in self.blind_to.items():
            if mutation.removeprefix("frozen_") not in CACHE_MUTATIONS:
                raise ValueError(f"CacheUse.blind_to names {mutation!r}; choose from {CACHE_MUTATIONS} (or frozen_<name>)")
            if not reason.strip():
                raise ValueError(f"CacheUse.blind_to[{mutation!r}] is empty: say why the cache cannot see it")


DEFAULT_TOLERANCES = {
    torch.float64: Tolerance(atol=1e-9, rtol=1e-7),
    torch.float32: Tolerance(atol=2e-5, rtol=2e-4),
}


@dataclass(frozen=True)
class ComponentSpec:
    name: str  # "<family>.<component>", e.g. "attention.strided"
    claims: tuple[str, ...]  # IDs of the ledger's claims (declared with their experiments) this component serves
    build: Callable[[Mapping[str, Any], torch.device, torch.dtype, torch.Generator], Implementations]
    sample_inputs: Callable[[int, torch.device, torch.dtype, torch.Generator], list[SampleInput]]
    description: str = ""  # one line for `reprobench list`
    default_config: Mapping[str, Any] = field(default_factory=dict)  # small config for property tests
    bench_config: Mapping[str, Any] | None = None  # config for benchmarks; None = default_config
    test_sizes: tuple[int, ...] = (1, 7, 16)  # sizes for property tests (small, odd, even)
    bench_sizes: tuple[int, ...] = (256, 512, 1024, 2048)  # sweep for pytest-benchmark / asv
    size_name: str = "n"  # what the size means (sequence length, tokens, parameters, ...)
    error_inputs: Callable[[torch.device, torch.dtype, torch.Generator], list[ErrorInput]] | None = None
    # Inputs that fit bench_config (e.g. dim=768) when they differ from sample_inputs' (dim=32);
    # None means sample_inputs already fits both configs. Use spec.inputs(..., bench=True).
    bench_inputs: Callable[[int, torch.device, torch.dtype, torch.Generator], list[SampleInput]] | None = None
    tolerances: Mapping[torch.dtype, Tolerance] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    # Per test and dtype, a tolerance other than the dtype's, each with its reason, e.g.
    # {"gradients_match_reference": {torch.float64: Tolerance(1e-7, 1e-6, reason="eps=1e-8 in the norm")}}.
    # Used as given (the gradient check otherwise allows 10x the dtype's tolerance).
    test_tolerances: Mapping[str, Mapping[torch.dtype, Tolerance]] = field(default_factory=dict)
    supports_backward: bool = True  # gradients of reference and optimized are compared
    # Expected log-log exponents in `size` of time and peak tensor bytes, per implementation,
    # e.g. {"reference": 2.0, "optimized": 1.0}; None where the document states nothing.
    time_exponent: Mapping[str, float] | None = None
    memory_exponent: Mapping[str, float] | None = None
    expected_failures: tuple[ExpectedFailure, ...] = ()
    input_support: InputSupport = field(default_factory=InputSupport)  # bad-input contract, see InputSupport
    caches: tuple[CacheUse, ...] = ()  # where the optimized twin caches: checked against a fresh build

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def dtypes(self) -> tuple[torch.dtype, ...]:
        return tuple(self.tolerances)

    def __post_init__(self):
        parts = self.name.split(".", 1) if isinstance(self.name, str) else []
        if len(parts) != 2 or not all(p.replace("_", "a").isalnum() and p[0].isalpha() for p in parts):
            raise ValueError(f"ComponentSpec.name={self.name!r} must be '<family>.<component>' (identifiers, e.g. "
                             f"'acme.fast_attention')")
        for claim in self.claims:
            if not isinstance(claim, str) or not claim.strip():
                raise ValueError(f"{self.name}: claims must be claim IDs such as 'EFF-01', got {claim!r}")
        if not self.tolerances:
            raise ValueError(f"{self.name}: tolerances is empty; give at least one dtype")
        if not self.test_sizes or not self.bench_sizes:
            raise ValueError(f"{self.name}: test_sizes and bench_sizes must not be empty")
        for test, per_dtype in self.test_tolerances.items():
            if test not in TOLERANCE_TESTS:
                raise ValueError(f"{self.name}: test_tolerances names {test!r}; the tests with a tolerance are "
                                 f"{TOLERANCE_TESTS}")
            for dtype, tol in per_dtype.items():
                if not isinstance(tol, Tolerance) or not tol.reason.strip():
                    raise ValueError(f"{self.name}: test_tolerances[{test!r}][{dtype}] needs a Tolerance(atol, rtol, "
                                     "reason=...) whose reason says why this test needs it")
        for xf in self.expected_failures:
            if not isinstance(xf, ExpectedFailure):
                raise TypeError(f"{self.name}: expected_failures holds {xf!r}; expected ExpectedFailure(test, reason)")
            if xf.dtype is not None and xf.dtype not in self.tolerances and xf.test != "bad_input_is_handled":
                raise ValueError(f"{self.name}: ExpectedFailure({xf.test!r}, dtype={xf.dtype}) names a dtype the "
                                 f"component is not tested in; its dtypes are {tuple(self.tolerances)}")

    def expected_failure(self, test: str, *, dtype: torch.dtype | None = None,
                         kind: str | None = None) -> ExpectedFailure | None:
        """The declaration covering this case (a test, optionally one dtype and one bad-input kind), if any."""
        return next((xf for xf in self.expected_failures if xf.applies(test, dtype, kind)), None)

    def tolerance(self, dtype: torch.dtype, test: str | None = None) -> Tolerance | None:
        """The tolerance of `test` in `dtype`: test_tolerances where declared, else the dtype's (None if neither)."""
        declared = self.test_tolerances.get(test, {}).get(dtype) if test is not None else None
        return declared if declared is not None else self.tolerances.get(dtype)

    def inputs(self, size: int, device, dtype, generator, *, bench: bool = False) -> list[SampleInput]:
        """Samples for `size`: bench_inputs for the bench config where given, else sample_inputs."""
        make = self.bench_inputs if (bench and self.bench_inputs is not None) else self.sample_inputs
        return make(size, torch.device(device), dtype, generator)

    def config(self, overrides: Mapping[str, Any] | None = None, *, bench: bool = False) -> dict:
        base = dict(self.bench_config if (bench and self.bench_config is not None) else self.default_config)
        base.update(overrides or {})
        return base


_REGISTRY: dict[str, ComponentSpec] = {}


def register(spec: ComponentSpec) -> ComponentSpec:
    """Record a spec and return it unchanged (timm's register_model)."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"component {spec.name!r} is registered twice: by {origin_module(spec)} and by "
                         f"{origin_module(_REGISTRY[spec.name])}; give one of them another name")
    if not is_builtin(spec):
        _check_plugin_reasons(spec)
    _REGISTRY[spec.name] = spec
    return spec


def origin_module(spec: ComponentSpec) -> str:
    """The module that registered `spec` (its build function's): clash messages and `reprobench list` name it."""
    return getattr(spec.build, "__module__", None) or "?"


_STRICT_PACKAGES: set[str] = set()


def hold_to_strict_hygiene(package: str) -> None:
    """Components registered from `package` (and its submodules) fail the generated suite on input-hygiene
    findings, as correctness failures do, instead of listing them in a findings table. A study of our own
    code opts in (its bad-input handling is part of what it promises); a plugin wrapping someone else's
    package usually does not."""
    if not isinstance(package, str) or not package.strip():
        raise ValueError(f"hold_to_strict_hygiene: package must be a module name, got {package!r}")
    _STRICT_PACKAGES.add(package)


def is_builtin(spec: ComponentSpec) -> bool:
    """Held to strict input hygiene: registered from a package that called hold_to_strict_hygiene."""
    origin = origin_module(spec)
    return any(origin == p or origin.startswith(p + ".") for p in _STRICT_PACKAGES)


def _check_plugin_reasons(spec: ComponentSpec) -> None:
    """A plugin states why it departs from the defaults: what it accepts, and any looser tolerance."""
    if spec.input_support.declares_any() and not spec.input_support.reason.strip():
        raise ValueError(f"{spec.name}: InputSupport declares what the component accepts but gives no reason; add "
                         "reason='...' saying why (e.g. 'the package documents float16 support')")
    for dtype, tol in spec.tolerances.items():
        default = DEFAULT_TOLERANCES.get(dtype)
        looser = default is None or tol.atol > default.atol or tol.rtol > default.rtol
        if looser and not tol.reason.strip():
            raise ValueError(f"{spec.name}: tolerances[{dtype}] = Tolerance(atol={tol.atol}, rtol={tol.rtol}) is looser "
                             f"than the default {default} but gives no reason; add reason='...' saying why")


def load_all() -> None:
    """Load the studies installed under the entry-point group `reprobench.plugins` (each registers its
    components and claims on import), once, then check that every component's claim IDs are declared.
    The core registers nothing itself."""
    from reprobench.plugins import load_entry_point_plugins

    load_entry_point_plugins()
    check_claim_ids()


def check_claim_ids() -> None:
    """Every claim a component serves is in the ledger (checked once all are loaded, since a study declares
    its claims with their experiments, which may import the component first): a typo ('eff7') fails here."""
    from reprobench.claims.ledger import CLAIM_TEXTS

    for spec in _REGISTRY.values():
        unknown = [c for c in spec.claims if c not in CLAIM_TEXTS]
        if unknown:
            raise ValueError(f"{spec.name}: claim ID(s) {unknown} not in the ledger; declare each claim (with its "
                             "experiment, claim(...) or a TOML file) in the study that registers the component")


def get(name: str) -> ComponentSpec:
    load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no component {name!r}; `reprobench list` shows the registered ones") from None


def list_components(pattern: str = "*") -> list[ComponentSpec]:
    """Registered specs whose name matches a shell pattern, sorted by name."""
    load_all()
    return [spec for name, spec in sorted(_REGISTRY.items()) if fnmatch.fnmatch(name, pattern)]


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """All randomness in reprobench comes from an explicit generator made here."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def draw_inputs(spec: ComponentSpec, size: int, device: torch.device | str, dtype: torch.dtype,
                seed: int | torch.Generator, *, bench: bool = False) -> list[SampleInput]:
    """Every sample and benchmark input is drawn here, the same way on every device: the spec's sample
    function runs on the CPU with a CPU generator (made from `seed`, or `seed` itself when it is a CPU
    generator already), and its tensors are then moved to `device`.

    A generator must sit on the device of the draw (torch raises otherwise), and CPU and CUDA generators
    give different streams from one seed; drawing on the CPU and moving gives identical values on every
    device and never hands a CPU generator to a device draw. `bench=True` draws the bench inputs."""
    if isinstance(seed, bool) or not isinstance(seed, (int, torch.Generator)):
        raise TypeError(f"seed must be an int or a CPU torch.Generator, got {type(seed).__name__}")
    if isinstance(seed, torch.Generator) and seed.device.type != "cpu":
        raise ValueError(f"seed must be a CPU generator (inputs are drawn on the CPU, then moved); got one on "
                         f"{seed.device}")
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    device = torch.device(device)
    generator = seed if isinstance(seed, torch.Generator) else make_generator(seed, "cpu")
    from reprobench.measure.provenance import host_side  # lazy: importing the registry stays light

    with host_side():
        samples = spec.inputs(size, torch.device("cpu"), dtype, generator, bench=bench)
    if device.type == "cpu":
        return samples
    moved: dict[int, torch.Tensor] = {}  # one copy per tensor, so inputs that alias on the CPU still alias

    def to_device(value):
        if not isinstance(value, torch.Tensor):
            return value
        if id(value) not in moved:
            moved[id(value)] = value.to(device)
        return moved[id(value)]

    from dataclasses import replace

    from torch.utils._pytree import tree_map

    return [replace(s, args=tree_map(to_device, s.args), kwargs=tree_map(to_device, s.kwargs))
            for s in samples]
