"""EQ-03: C4 equivariance of the lifting + group conv layers, f(g.x) = g.f(x), and what odd kernels buy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.equivariant.equivariant_conv import EquivariantBlock, act_on_features, rotate
from reprobench.measure import decide
from reprobench.registry import make_generator

CLAIMED = "EquivariantConv2d is equivariant to C4 rotations: f(g.x) = g.f(x)"
TOLERANCE = 1e-12  # float64: what is left is rounding
RULE = (f"exact error (float64, deterministic draws): max |f(g.x) - g.f(x)| / max |f(x)| <= {TOLERANCE:g} over g = "
        "90/180/270 degrees, lifting + group layer, odd kernels, stride 1; holds if so, fails otherwise (float32 and "
        "the even kernel are reported, not judged)")


@experiment("EQ-03", quick_judged=True, needs=("float64",),
            sizes={"full": {"grids": (7, 8, 15)}, "quick": {"grids": (7,)}},
            source='documents/003_cfb6f10add0ba6bf.txt (Sparse Attention + Group-Aware Homotopy)',
            text=(
                'The layer is equivariant to the group action (C4 rotations): f(g.x) = g.f(x).'))
def c4_equivariance(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    measured: dict = {}
    worst64 = 0.0
    grids = tuple(ctx.sizes["grids"])
    for n in grids:
        for k in (3, 5):
            block = EquivariantBlock(3, 4, 2, k).reset_parameters(g).to(ctx.device)
            for dtype in (torch.float64, torch.float32):
                block = block.to(dtype)
                x = torch.randn(2, 3, n, n, generator=g).to(device=ctx.device, dtype=dtype)
                with torch.no_grad():
                    err = max(float((block(rotate(x, r)) - act_on_features(block(x), r)).abs().max()) for r in (1, 2, 3))
                    scale = float(block(x).abs().max())
                measured[f"max_error_{str(dtype)[6:]}_n{n}_k{k}"] = err / scale
                if dtype == torch.float64:
                    worst64 = max(worst64, err / scale)
    # What odd kernels buy: an even kernel with 'same' padding is rotated about a half-pixel.
    w = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64).to(ctx.device)
    x = torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64).to(ctx.device)
    def even(t):  # 'same' padding for a 4x4 kernel is asymmetric: 1 before, 2 after
        t = F.pad(t, (1, 2, 1, 2))
        return torch.cat([F.conv2d(t, rotate(w, r)) for r in range(4)], 1).unflatten(1, (4, 2)).transpose(1, 2)
    measured["even_kernel_relative_error_float64"] = float((even(rotate(x, 1)) - act_on_features(even(x), 1)).abs().max()
                                                           / even(x).abs().max())
    measured["worst_relative_error_float64"] = worst64
    return Outcome(
        decisions=[decide("worst_relative_error_float64", worst64, at_most=TOLERANCE)],
        claimed=CLAIMED,
        measured=measured,
        rule=RULE,
        evidence=f"Lifting (3->4) + ReLU + group (4->2) layer, kernel 3 and 5, grids {grids}: "
                 f"worst float64 relative error {worst64:.2g}; an even 4x4 kernel with 'same' padding gives "
                 f"{measured['even_kernel_relative_error_float64']:.2g}.",
        deviations=["Equivariance needs odd kernels, symmetric padding, stride 1 and square inputs; we reject even "
                    "kernels and non-square inputs (the document does not state these conditions)."])
