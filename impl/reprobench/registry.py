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
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

FAMILIES = ("attention", "rotary", "regularizers", "optim", "equivariant", "models")

# Names of the generic property tests; ExpectedFailure.test must be one of them, so a typo
# fails at registration instead of silently never applying.
GENERIC_TESTS = (
    "matches_reference",
    "gradients_match_reference",
    "outputs_finite",
    "bad_input_raises",
    "probabilities_normalised",
    "state_dict_shared",
    "no_host_syncs",
    "inputs_unchanged",
)


@dataclass(frozen=True)
class Tolerance:
    atol: float  # absolute tolerance of torch.testing.assert_close
    rtol: float  # relative tolerance of torch.testing.assert_close


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
    error_type: type  # ValueError or TypeError
    match: str  # regex that must occur in the message, normally the argument's name
    config: Mapping[str, Any] | None = None  # when set, the error is raised by build(config) itself


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
    """A generic test the component fails on purpose (a documented defect the reference reproduces)."""

    test: str  # one of GENERIC_TESTS
    reason: str  # why: the defect, with the claim ID that records it

    def __post_init__(self):
        if self.test not in GENERIC_TESTS:
            raise ValueError(f"ExpectedFailure.test={self.test!r} is not a generic test; choose one of {GENERIC_TESTS}")
        if not self.reason.strip():
            raise ValueError("ExpectedFailure.reason is empty: say which defect makes the test fail")


@dataclass(frozen=True)
class InputSupport:
    """What a component accepts beyond its samples. The derived bad-input suite
    (suites/properties/test_bad_inputs.py) requires a correct result from both twins for what is
    declared here, and a ValueError/TypeError naming the argument for the rest."""

    low_precision: tuple[torch.dtype, ...] = ()  # float16/bfloat16 it computes in when built in that dtype
    empty_batch: bool = False  # batch 0 gives an empty output, as torch layers do
    empty_sequence: bool = False  # a zero-length sequence (dim -2) gives an empty output
    meta_device: bool = False  # 'meta' inputs give 'meta' outputs of the right shape (no parameters elsewhere)


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
    claims: tuple[str, ...]  # claim IDs from CLAIMS.md this component serves
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
                             f"'acme.fast_attention'); the built-in families are {FAMILIES}")
        for claim in self.claims:
            # Import here: the ledger imports nothing from the registry, and the check must see
            # the full ID list so a typo ('eff7') fails at registration.
            from reprobench.claims.ledger import CLAIM_TEXTS

            if claim not in CLAIM_TEXTS:
                raise ValueError(f"{self.name}: claim ID {claim!r} is not in CLAIMS.md")
        if not self.tolerances:
            raise ValueError(f"{self.name}: tolerances is empty; give at least one dtype")
        if not self.test_sizes or not self.bench_sizes:
            raise ValueError(f"{self.name}: test_sizes and bench_sizes must not be empty")

    def expected_failure(self, test: str) -> ExpectedFailure | None:
        return next((xf for xf in self.expected_failures if xf.test == test), None)

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
        raise ValueError(f"component {spec.name!r} is registered twice: by {_origin(spec)} and by "
                         f"{_origin(_REGISTRY[spec.name])}; give one of them another name")
    _REGISTRY[spec.name] = spec
    return spec


def _origin(spec: ComponentSpec) -> str:
    return getattr(spec.build, "__module__", None) or "?"


def load_all() -> None:
    """Import every component module of every built-in family, which registers them, then the plugins
    installed under the entry-point group `reprobench.plugins`."""
    for family in FAMILIES:
        try:
            package = importlib.import_module(f"reprobench.{family}")
        except ModuleNotFoundError:
            continue
        for info in pkgutil.walk_packages(package.__path__, prefix=f"reprobench.{family}."):
            importlib.import_module(info.name)
    from reprobench.plugins import load_entry_point_plugins

    load_entry_point_plugins()


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
