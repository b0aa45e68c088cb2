"""Group-aware homotopy distance d_H and the two-phase (fit, then collapse) loop — EQ-08, EQ-09.

Source: "Sparse Attention + Group-Aware Homotopy" (documents/003_cfb6f10add0ba6bf.txt):

    d_H(f*, f_i) = E_{x, g∈G} [ ||f*(x) - f_i(x)||²  +  ||f*(g·x) - g·f*(x)||² ]

with G = C4 acting on grids by rot90 (outputs are grids too, so g acts on them the same way), and
"the distance is G-invariant". ``homotopy_distance_reference`` follows the formula as written,
loops over x and g; ``homotopy_distance`` is the same number with the four rotations batched into
one call of f* (5 network calls instead of 12 per example). ||·||² sums over a sample's output
elements; E averages over the batch and the group.

As written, the geometric term does not involve g at all and the equivariance term is measured at
the base point x only; replacing x by g·x changes d_H unless f* and f_i are equivariant (EQ-08
measures by how much). ``orbit_homotopy_distance`` is the corrected variant: both terms averaged
over the orbit {h·x}, E_h[ ||f*(hx) - f_i(hx)||² + E_g ||f*(g·hx) - g·f*(hx)||² ], which is exactly
invariant under x -> g·x for any f*, f_i (h -> h·g permutes the terms) and still 0 iff f_i = f* on
the orbit and f* is equivariant there.

`two_phase_training` is the document's loop on synthetic data made in code: N grid examples labelled
by a fixed random equivariant teacher; an `AdapterLearner` (its wrappers are the f_i) and a canonical
`EquivariantNet` f* are fitted (phase 1), then Σ_i d_H(f*, f_i) is added to the loss (phase 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from reprobench_documents.attention.base import check_positive_int
from reprobench_documents.equivariant.equivariant_conv import GROUP_ORDER, rotate
from reprobench_documents.equivariant.shared_encoder import AdapterLearner, EquivariantNet, FreshMorphism, IndividualMorphismWrapper
from reprobench.registry import ComponentSpec, ErrorInput, Implementations, SampleInput, make_generator, register
from reprobench.validation import check_tensor, describe


def _check_grids(x, f_star=None) -> torch.Tensor:
    """x (batch >= 1, channels, n, n), in the dtype and on the device of f_star's parameters."""
    like = next(f_star.parameters(), None) if isinstance(f_star, nn.Module) else None
    check_tensor("x", x, shape=("batch", "channels", "n", "n"), nonempty=("batch",), like=like,
                 like_what="f_star's parameters")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x must be square (n == n) for rotations: expected (batch, channels, n, n), got {describe(x)}")
    return x


def _sq(t: torch.Tensor) -> torch.Tensor:
    return t.pow(2).flatten(1).sum(1)  # per-sample squared norm, (B,)


def homotopy_distance_reference(f_star, f_i, x: torch.Tensor) -> torch.Tensor:
    """The formula as written, one example and one group element at a time."""
    _check_grids(x, f_star)
    total = x.new_zeros(())
    for b in range(x.shape[0]):
        xb = x[b:b + 1]
        for r in range(GROUP_ORDER):
            geometric = (f_star(xb) - f_i(xb)).pow(2).sum()
            violation = (f_star(rotate(xb, r)) - rotate(f_star(xb), r)).pow(2).sum()
            total = total + geometric + violation
    return total / (x.shape[0] * GROUP_ORDER)


def homotopy_distance(f_star, f_i, x: torch.Tensor) -> torch.Tensor:
    """Same value, batched: f* on the whole orbit in one call, f_i once."""
    _check_grids(x, f_star)
    b = x.shape[0]
    orbit = torch.cat([rotate(x, r) for r in range(GROUP_ORDER)])  # (4B, C, n, n), rotation-major
    f_orbit = f_star(orbit).unflatten(0, (GROUP_ORDER, b))  # f*(g·x)
    f_base = f_orbit[0]
    rotated_base = torch.stack([rotate(f_base, r) for r in range(GROUP_ORDER)])  # g·f*(x)
    violation = (f_orbit - rotated_base).pow(2).flatten(2).sum(2).mean()
    return _sq(f_base - f_i(x)).mean() + violation


def orbit_homotopy_distance(f_star, f_i, x: torch.Tensor) -> torch.Tensor:
    """Corrected, exactly G-invariant: both terms averaged over the orbit of x."""
    _check_grids(x, f_star)
    b = x.shape[0]
    orbit = torch.cat([rotate(x, r) for r in range(GROUP_ORDER)])
    f_star_orbit = f_star(orbit).unflatten(0, (GROUP_ORDER, b))  # [h] = f*(h·x)
    geometric = (f_star_orbit - f_i(orbit).unflatten(0, (GROUP_ORDER, b))).pow(2).flatten(2).sum(2).mean()
    violation = torch.stack([
        _sq(f_star_orbit[(g + h) % GROUP_ORDER] - rotate(f_star_orbit[h], g))
        for h in range(GROUP_ORDER) for g in range(GROUP_ORDER)]).mean()
    return geometric + violation


# --- the two-phase loop ----------------------------------------------------------------------------
@dataclass
class TwoPhaseHistory:
    homotopy: list[float] = field(default_factory=list)  # Σ_i d_H(f*, f_i) on the examples, per epoch
    canonical: list[float] = field(default_factory=list)  # ||f*(X) - Y||² per epoch
    fit: list[float] = field(default_factory=list)  # Σ_i ||f_i(x_i) - y_i||² per epoch
    phase1_epochs: int = 0


def two_phase_training(seed: int, *, num_examples: int = 3, grid: int = 7, channels: int = 3, feature_dim: int = 8,
                       adapter_rank: int = 4, k_neighbors: int = 2, epochs: tuple[int, int] = (25, 25),
                       lr: float = 1e-2, collapse_weight: float = 1.0, fresh_wrapper: bool = False,
                       dtype: torch.dtype = torch.float32) -> TwoPhaseHistory:
    """Phase 1 fits the examples (learner and f*); phase 2 adds collapse_weight · Σ_i d_H(f*, f_i)."""
    check_positive_int(num_examples, "num_examples")
    generator = make_generator(seed)
    teacher = EquivariantNet(channels, channels, feature_dim).to(dtype).reset_parameters(generator)
    x = torch.randn(num_examples, channels, grid, grid, generator=generator, dtype=dtype)
    with torch.no_grad():
        y = teacher(x)
    learner = AdapterLearner(num_examples, channels, channels, feature_dim, adapter_rank, k_neighbors)
    learner = learner.to(dtype).reset_parameters(generator)
    canonical = EquivariantNet(channels, channels, feature_dim).to(dtype).reset_parameters(generator)
    morphisms = [FreshMorphism(learner, i, x) if fresh_wrapper else IndividualMorphismWrapper(learner, i)
                 for i in range(num_examples)]
    optimizer = torch.optim.Adam(list(learner.parameters()) + list(canonical.parameters()), lr=lr)
    history = TwoPhaseHistory(phase1_epochs=epochs[0])
    for epoch in range(sum(epochs)):
        fit = (learner(x) - y).pow(2).sum()  # also refreshes the learner's cached pooled features
        canonical_loss = (canonical(x) - y).pow(2).sum()
        collapsing = epoch >= epochs[0]
        with torch.set_grad_enabled(collapsing):  # phase 1 only records d_H
            homotopy = sum(homotopy_distance(canonical, f_i, x) for f_i in morphisms)
        loss = fit + canonical_loss + (collapse_weight * homotopy if collapsing else 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.fit.append(float(fit.detach()))
        history.canonical.append(float(canonical_loss.detach()))
        history.homotopy.append(float(homotopy.detach()))
    with torch.no_grad():  # the state after the last step
        learner(x)
        history.fit.append(float((learner(x) - y).pow(2).sum()))
        history.canonical.append(float((canonical(x) - y).pow(2).sum()))
        history.homotopy.append(float(sum(homotopy_distance(canonical, f_i, x) for f_i in morphisms)))
    return history


# --- registration ----------------------------------------------------------------------------------
class PlainCNN(nn.Module):
    """A non-equivariant grid map (so both terms of d_H are non-zero in tests)."""

    def __init__(self, channels: int, hidden: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.Tanh(), nn.Conv2d(hidden, channels, 3, padding=1))

    def reset_parameters(self, generator: torch.Generator) -> "PlainCNN":
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0.0, 0.3, generator=generator)
        return self

    def forward(self, x):
        return self.net(x)


def _builder(corrected: bool):
    def build(config, device, dtype, generator):
        channels = check_positive_int(config["channels"], "channels")
        f_star = PlainCNN(channels).to(dtype=dtype).reset_parameters(generator).to(device)
        f_i = PlainCNN(channels).to(dtype=dtype).reset_parameters(generator).to(device)
        if corrected:  # reference: the orbit formula by loops over h and g
            def reference(x):
                _check_grids(x, f_star)
                geometric, violation = x.new_zeros(()), x.new_zeros(())
                for h in range(GROUP_ORDER):
                    hx = rotate(x, h)
                    geometric = geometric + _sq(f_star(hx) - f_i(hx)).mean() / GROUP_ORDER
                    for g in range(GROUP_ORDER):
                        violation = violation + _sq(f_star(rotate(hx, g)) - rotate(f_star(hx), g)).mean() / GROUP_ORDER ** 2
                return geometric + violation
            return Implementations(reference=reference, optimized=lambda x: orbit_homotopy_distance(f_star, f_i, x))
        return Implementations(reference=lambda x: homotopy_distance_reference(f_star, f_i, x),
                               optimized=lambda x: homotopy_distance(f_star, f_i, x))
    return build


TEST_CONFIG = dict(channels=2)


def _sample_inputs(n, device, dtype, generator):
    return [SampleInput((torch.randn(3, 2, n, n, device=device, dtype=dtype, generator=generator),), name="grids")]


def _bench_inputs(n, device, dtype, generator):  # bench_config has 4 channels
    return [SampleInput((torch.randn(3, 4, n, n, device=device, dtype=dtype, generator=generator),), name="grids")]


def _error_inputs(device, dtype, generator):
    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype, generator=generator)

    return [ErrorInput(SampleInput((randn(3, 2, 5, 6),), name="non_square"), ValueError, r"x must be square"),
            ErrorInput(SampleInput((randn(2, 5, 5),), name="rank3"), ValueError, r"x: expected .* shape \(batch, channels, n, n\)"),
            ErrorInput(SampleInput((torch.ones(3, 2, 5, 5, dtype=torch.long, device=device),), name="int"),
                       TypeError, r"x: expected a float32 or float64 tensor")]


for _name, _corrected, _description in (
        ("equivariant.homotopy_distance", False,
         "group-aware homotopy distance as documented; reference loops over x and g, optimized batches the orbit"),
        ("equivariant.homotopy_distance_orbit", True,
         "corrected d_H averaged over the orbit {h·x}: exactly invariant under x -> g·x")):
    register(ComponentSpec(
        name=_name, claims=("EQ-08", "EQ-09"), description=_description, build=_builder(_corrected),
        sample_inputs=_sample_inputs, error_inputs=_error_inputs, default_config=TEST_CONFIG,
        bench_config=dict(channels=4), bench_inputs=_bench_inputs, test_sizes=(1, 4, 7), bench_sizes=(8, 16, 32, 64), size_name="grid",
        time_exponent={"reference": 2.0, "optimized": 2.0}, memory_exponent={"reference": 2.0, "optimized": 2.0},
    ))
