"""DW-01 … DW-03: properties of the invariance, variance and covariance regularizer terms (numpy, torch and
optimized versions agree; invariances and edge cases)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from reprobench.claims import Outcome, RunContext, experiment
from reprobench_documents.experiments.dw._common import F64, rel_diff
from reprobench.measure import decide, fit_exponent_estimate
from reprobench.measure.stats import MIN_R2
from reprobench.registry import make_generator
from reprobench_documents.regularizers.covariance import (covariance_component_torch, covariance_regularization,
                                          covariance_regularization_numpy)
from reprobench_documents.regularizers.invariance import cosine_distance, invariance, invariance_numpy, invariance_reference
from reprobench_documents.regularizers.variance import (variance_component_torch, variance_regularization,
                                        variance_regularization_multi_dim_numpy)


CLAIMED_01 = ("Invariance term -log softmax(logits)[true_class] is 'implemented via cosine similarity' (cosine "
              "distance of query and key)")
RULE_01 = ("exact errors (float64, deterministic draws): (1) max |CE - (1 - cos(q, p_true))| over every draw, logits "
           "10·cos(q, p_c), <= 1e-6; (2) like the cosine distance, CE ignores the non-target prototypes: mean |change "
           "of CE| when only they move <= 1e-9. Both hold -> holds, both fail -> fails, one -> partial")


@experiment("DW-01", quick_judged=True, needs=("float64",),
            sizes={"full": {"draws": 1000}, "quick": {"draws": 200}},
            source='documents/000_294012e263fd6301.txt (Dynamic Weighting Formula Implementation)',
            text=(
                'Invariance term is -log softmax(logits)[true_class] (cross-entropy); the text says it is '
                '"implemented via cosine similarity". Check the formula against the cosine-similarity '
                'implementation: are they the same function?'))
def invariance_vs_cosine(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    draws, classes, dim, scale = ctx.sizes["draws"], 5, 16, 10.0
    q = torch.randn(draws, dim, dtype=F64, generator=g).to(ctx.device)
    prototypes = torch.randn(draws, classes, dim, dtype=F64, generator=g).to(ctx.device)
    labels = torch.randint(0, classes, (draws,), generator=g).to(ctx.device)
    rows = torch.arange(draws, device=ctx.device)
    # The mapping most favourable to the document: logits are scaled cosine similarities.
    logits = scale * F.cosine_similarity(q[:, None], prototypes, dim=-1)
    ce = invariance(logits, labels)
    cos_d = cosine_distance(q, prototypes[rows, labels])
    corr = float(np.corrcoef(ce.cpu().numpy(), cos_d.cpu().numpy())[0, 1])
    # Move only the non-target prototypes: cross-entropy changes, the cosine distance cannot.
    moved = prototypes + torch.randn(draws, classes, dim, dtype=F64, generator=g).to(ctx.device)
    moved[rows, labels] = prototypes[rows, labels]
    ce_moved = invariance(scale * F.cosine_similarity(q[:, None], moved, dim=-1), labels)
    cos_moved = cosine_distance(q, moved[rows, labels])
    numpy_vs_torch = max(rel_diff(invariance_numpy(logits[i].cpu().numpy(), int(labels[i])), ce[i]) for i in range(50))
    # Where the formula as written (-log of an underflowed softmax) becomes inf.
    gaps = torch.arange(1, 1001, dtype=F64, device=ctx.device)
    overflow = {}
    for dtype in (torch.float32, F64):
        row_logits = torch.stack([torch.zeros_like(gaps), gaps], 1).to(dtype)
        bad = torch.isinf(invariance_reference(row_logits, torch.zeros(len(gaps), dtype=torch.long, device=ctx.device)))
        overflow[str(dtype).replace("torch.", "")] = float(gaps[bad][0]) if bad.any() else float("inf")
    measured = {
        "draws": draws, "classes": classes, "max_abs_ce_minus_cosine_distance": float((ce - cos_d).abs().max()),
        "pearson_ce_vs_cosine_distance": corr,
        "mean_abs_ce_change_moving_other_classes": float((ce_moved - ce).abs().mean()),
        "max_abs_cosine_change_moving_other_classes": float((cos_moved - cos_d).abs().max()),
        "max_rel_numpy_vs_torch_ce": numpy_vs_torch,
        "reference_inf_from_logit_gap_float32": overflow["float32"],
        "reference_inf_from_logit_gap_float64": overflow["float64"],
    }
    decisions = [decide("max_abs_ce_minus_cosine_distance", measured["max_abs_ce_minus_cosine_distance"], at_most=1e-6),
                 decide("mean_abs_ce_change_moving_other_classes", measured["mean_abs_ce_change_moving_other_classes"],
                        at_most=1e-9)]
    return Outcome(
        decisions=decisions,
        claimed=CLAIMED_01,
        measured=measured,
        rule=RULE_01,
        evidence=f"{draws} random 16-d queries, 5 class prototypes, float64: max |CE - cosine distance| = "
                 f"{measured['max_abs_ce_minus_cosine_distance']:.3g}, Pearson r = {corr:.3f}; moving only the other "
                 f"classes changes CE by {measured['mean_abs_ce_change_moving_other_classes']:.3g} on average and the "
                 "cosine distance by 0. They are different functions (CE needs a label and all classes).",
        deviations=["`softmax` is undefined in the document's numpy code; resolved as the max-shifted softmax "
                    "(scipy.special.softmax). -log(p) of the underflowed probability still gives inf from the logit "
                    "gap measured above; the optimized twin (cross_entropy) stays finite."],
    )


CLAIMED_02 = ("V(E) = Σ_dims max(0, γ - sqrt(var+ε)) / samples: zero when every std >= γ, non-negative, invariant to "
              "sample order and shifts; numpy and torch agree")
RULE_02 = ("exact errors and counts over the trials (float64, deterministic draws), five decisions: numpy, torch and "
           "optimized agree to <= 1e-10 relative; trials where a twin is not exactly 0 with every per-dim std >= γ: at "
           "most 0; negative values: at most 0; sample order changes it by <= 1e-10 relative; a shift of ~100 by <= 1e-8 "
           "absolute. All hold -> holds, all fail -> fails, else partial")


@experiment("DW-02", quick_judged=True, needs=("float64",),
            sizes={"full": {"trials": 40}, "quick": {"trials": 10}},
            source='documents/000_294012e263fd6301.txt (Dynamic Weighting Formula Implementation)',
            text=(
                'Variance regularization: sum over dims of max(0, gamma - sqrt(var + eps)), divided by the number'
                ' of samples (torch version; the numpy version divides by an undefined `m`). Check: zero when '
                'every per-dim std >= gamma, non-negative, invariant to sample order and to adding a constant; '
                'numpy and torch versions agree.'))
def variance_properties(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    trials, gamma = ctx.sizes["trials"], 1.0
    agree, not_zero, negative, order, shift = 0.0, 0, 0, 0.0, 0.0
    for _ in range(trials):
        n, d = int(torch.randint(2, 64, (1,), generator=g)), int(torch.randint(1, 32, (1,), generator=g))
        E = (torch.randn(n, d, dtype=F64, generator=g) * torch.rand(1, d, dtype=F64, generator=g) * 2).to(ctx.device)
        value = variance_regularization(E, gamma)
        agree = max(agree, rel_diff(variance_component_torch(E, gamma), value),
                    rel_diff(variance_regularization_multi_dim_numpy(E.cpu().numpy(), gamma), value))
        negative += bool(value < 0)
        order = max(order, rel_diff(variance_regularization(E[torch.randperm(n, generator=g).to(ctx.device)], gamma), value))
        offset = 100 * torch.randn(1, d, dtype=F64, generator=g).to(ctx.device)
        shift = max(shift, abs(float(variance_regularization(E + offset, gamma) - value)))
        unit = (E - E.mean(0)) / E.std(0, correction=0)
        not_zero += any(float(fn(unit * gamma * 1.0001, gamma)) != 0.0
                        for fn in (variance_component_torch, variance_regularization))
    measured = {"trials": trials, "max_rel_numpy_torch_optimized": agree, "exactly_zero_when_std_ge_gamma": not_zero == 0,
                "non_negative": negative == 0, "max_rel_change_sample_order": order, "max_abs_change_shift_100": shift}
    decisions = [decide("max_rel_numpy_torch_optimized", agree, at_most=1e-10),
                 decide("trials_not_zero_when_std_ge_gamma", not_zero, at_most=0),
                 decide("negative_values", negative, at_most=0),
                 decide("max_rel_change_sample_order", order, at_most=1e-10),
                 decide("max_abs_change_shift_100", shift, at_most=1e-8)]
    return Outcome(
        decisions=decisions,
        claimed=CLAIMED_02,
        measured=measured,
        rule=RULE_02,
        evidence=f"{trials} random float64 embeddings (2-63 samples, 1-31 dims, per-dim scales in [0, 2)), γ = 1, ε = 1e-8.",
        deviations=["`m` is undefined in the numpy code; resolved as the number of samples, as the document's torch "
                    "version divides by E_reshaped.shape[0] (VICReg itself averages over dims instead)."],
    )


CLAIMED_03 = ("Σ off-diagonal C_ij² of the (K-1)-normalised covariance: zero for decorrelated data, invariant to "
              "sample order and shift, scales as s⁴; numpy and torch agree")
RULE_03 = ("exact errors over the trials (float64, deterministic draws), six decisions: numpy, torch and optimized agree "
           "to <= 1e-10 relative; sample order and feature order change it by <= 1e-10 relative (one decision each); a "
           "shift by <= 1e-8 relative; QR-whitened data gives <= 1e-20 of Σ C_ii²; the log-log exponent of value vs s "
           f"(exact values, so a zero-width slope) is in [3.99, 4.01] (4 ± 0.01) with r² >= {MIN_R2}. All hold -> "
           "holds, all fail -> fails, else partial")


@experiment("DW-03", quick_judged=True, needs=("float64",),
            sizes={"full": {"trials": 40}, "quick": {"trials": 10}},
            source='documents/000_294012e263fd6301.txt (Dynamic Weighting Formula Implementation)',
            text=(
                'Covariance regularization: sum of squared off-diagonal entries of the (K-1)-normalised '
                'covariance. Check: zero for decorrelated data, invariant to sample order and shift, scales as '
                's^4 under E -> sE; numpy and torch agree.'))
def covariance_properties(ctx: RunContext) -> Outcome:
    g = make_generator(ctx.seed)
    trials = ctx.sizes["trials"]
    agree, order, shift, feature, whitened = 0.0, 0.0, 0.0, 0.0, 0.0

    def draw(*shape):  # every draw from the one CPU generator (same values on every device), then moved
        return torch.randn(*shape, dtype=F64, generator=g).to(ctx.device)

    for _ in range(trials):
        n, d = int(torch.randint(2, 64, (1,), generator=g)), int(torch.randint(2, 32, (1,), generator=g))
        E = draw(n, d) @ draw(d, d)
        value = covariance_regularization(E)
        agree = max(agree, rel_diff(covariance_component_torch(E), value),
                    rel_diff(covariance_regularization_numpy(E.cpu().numpy()), value))
        order = max(order, rel_diff(covariance_regularization(E[torch.randperm(n, generator=g).to(ctx.device)]), value))
        feature = max(feature, rel_diff(covariance_regularization(E[:, torch.randperm(d, generator=g).to(ctx.device)]), value))
        shift = max(shift, rel_diff(covariance_regularization(E + 10 * draw(1, d)), value))
        X = draw(n + d, d)
        Q, _ = torch.linalg.qr(X - X.mean(0))  # centered orthonormal columns: C = I / (K - 1)
        diagonal = d / (n + d - 1) ** 2
        whitened = max(whitened, float(covariance_component_torch(Q)) / diagonal, float(covariance_regularization(Q)) / diagonal)
    E = draw(50, 20) @ draw(20, 20)
    scales = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    fit = fit_exponent_estimate(scales, [float(covariance_regularization(s * E)) for s in scales], deterministic=True)
    measured = {"trials": trials, "max_rel_numpy_torch_optimized": agree, "max_rel_change_sample_order": order,
                "max_rel_change_feature_order": feature, "max_rel_change_shift": shift,
                "max_whitened_value_over_diagonal_sum": whitened, "scale_exponent": fit.exponent,
                "scale_exponent_r2": fit.r_squared}
    decisions = [decide("max_rel_numpy_torch_optimized", agree, at_most=1e-10),
                 decide("max_rel_change_sample_order", order, at_most=1e-10),
                 decide("max_rel_change_feature_order", feature, at_most=1e-10),
                 decide("max_rel_change_shift", shift, at_most=1e-8),
                 decide("max_whitened_value_over_diagonal_sum", whitened, at_most=1e-20),
                 decide("scale_exponent", fit.estimate, between=(3.99, 4.01), min_r2=MIN_R2)]
    return Outcome(
        decisions=decisions,
        headline="scale_exponent",
        claimed=CLAIMED_03,
        measured=measured,
        rule=RULE_03,
        evidence=f"{trials} random float64 correlated embeddings (2-63 samples, 2-31 dims) and QR-whitened ones; s in "
                 f"{scales}. Benchmarks of the optimized (Gram/chunked) version are in DW-04.",
        deviations=["`K` is undefined in both the numpy and torch code; resolved as the number of samples. With one "
                    "sample K-1 = 0 gives 0/0 = NaN; we divide by max(K-1, 1), so one sample gives 0.",
                    "torch.eye(dim) in the torch code is created on the CPU; we create it on E's device and dtype."],
    )
